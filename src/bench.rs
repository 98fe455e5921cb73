//! `sabot bench nexmark`: Nexmark queries over the Nexmark generator, each into a
//! blackhole sink, on an embedded database in a temporary directory.
//!
//! Per query it measures from `CREATE SINK` until every split of the sink's sources is
//! exhausted and the last epoch is committed: events (rows the sources produced), wall
//! seconds, CPU seconds of the whole process (generator, dataflow and state store),
//! and peak resident memory (reset before each query). The queries are the standard
//! ones of RisingWave's and Flink's Nexmark suites, written for Sabot's sources; one
//! the engine cannot run yet is reported with the reason.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::common::SqlState;
use crate::common::config::Config;
use crate::engine::Database;
use crate::{Error, Result};

/// The queries, by name: RisingWave's Nexmark SQL (`e2e_test/nexmark`), over the sources
/// `person`, `auction` and `bid`.
pub const QUERIES: &[(&str, &str)] = &[
    ("q0", "SELECT auction, bidder, price, date_time FROM bid"),
    ("q1", "SELECT auction, bidder, 0.908 * price AS price, date_time FROM bid"),
    (
        "q2",
        "SELECT auction, price FROM bid WHERE auction = 1007 OR auction = 1020 OR auction = 2001 OR auction = 2019 OR auction = 2087",
    ),
    (
        "q3",
        "SELECT P.name, P.city, P.state, A.id FROM auction AS A INNER JOIN person AS P ON A.seller = P.id \
         WHERE A.category = 10 AND (P.state = 'or' OR P.state = 'id' OR P.state = 'ca')",
    ),
    (
        "q4",
        "SELECT Q.category, AVG(Q.final) AS avg FROM (SELECT MAX(B.price) AS final, A.category \
         FROM auction A, bid B WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires \
         GROUP BY A.id, A.category) Q GROUP BY Q.category",
    ),
    (
        "q5",
        "SELECT AuctionBids.auction, AuctionBids.num FROM (SELECT bid.auction, count(*) AS num, window_start AS starttime \
         FROM HOP(bid, date_time, INTERVAL '2' SECOND, INTERVAL '10' SECOND) GROUP BY window_start, bid.auction) AS AuctionBids \
         JOIN (SELECT max(CountBids.num) AS maxn, CountBids.starttime_c FROM (SELECT count(*) AS num, window_start AS starttime_c \
         FROM HOP(bid, date_time, INTERVAL '2' SECOND, INTERVAL '10' SECOND) GROUP BY bid.auction, window_start) AS CountBids \
         GROUP BY CountBids.starttime_c) AS MaxBids ON AuctionBids.starttime = MaxBids.starttime_c AND AuctionBids.num >= MaxBids.maxn",
    ),
    // Nexmark's q6 ("the average price of each seller's last ten closed auctions") in
    // RisingWave's group-top-N form; Flink's `AVG(...) OVER (... ROWS BETWEEN 10 PRECEDING
    // AND CURRENT ROW)` form averages every auction's last eleven instead.
    (
        "q6",
        "SELECT Q.seller, AVG(Q.final) AS avg FROM (SELECT C.seller, C.final, \
         ROW_NUMBER() OVER (PARTITION BY C.seller ORDER BY C.date_time DESC) AS rank FROM (SELECT A.seller, A.date_time, \
         MAX(B.price) AS final FROM auction A, bid B WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires \
         GROUP BY A.id, A.seller, A.date_time) C) Q WHERE Q.rank <= 10 GROUP BY Q.seller",
    ),
    (
        "q7",
        "SELECT B.auction, B.price, B.bidder, B.date_time FROM bid B JOIN (SELECT MAX(price) AS maxprice, window_end AS date_time \
         FROM TUMBLE(bid, date_time, INTERVAL '10' SECOND) GROUP BY window_end) B1 ON B.price = B1.maxprice \
         WHERE B.date_time BETWEEN B1.date_time - INTERVAL '10' SECOND AND B1.date_time",
    ),
    (
        "q8",
        "SELECT P.id, P.name, P.starttime FROM (SELECT id, name, window_start AS starttime, window_end AS endtime \
         FROM TUMBLE(person, date_time, INTERVAL '10' SECOND) GROUP BY id, name, window_start, window_end) P \
         JOIN (SELECT seller, window_start AS starttime, window_end AS endtime FROM TUMBLE(auction, date_time, INTERVAL '10' SECOND) \
         GROUP BY seller, window_start, window_end) A ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime",
    ),
    (
        "q9",
        "SELECT id, item_name, description, initial_bid, reserve, date_time, expires, seller, category, auction, bidder, price, \
         bid_date_time FROM (SELECT A.*, B.auction, B.bidder, B.price, B.date_time AS bid_date_time, \
         ROW_NUMBER() OVER (PARTITION BY A.id ORDER BY B.price DESC, B.date_time ASC) AS rownum \
         FROM auction A, bid B WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires) tmp WHERE rownum <= 1",
    ),
    (
        "q10",
        "SELECT auction, bidder, price, date_time, to_char(date_time, 'YYYY-MM-DD') AS date, to_char(date_time, 'HH24:MI') AS time FROM bid",
    ),
    (
        "q11",
        "SELECT B.bidder, count(*) AS bid_count, window_start AS starttime, window_end AS endtime \
         FROM SESSION(bid, date_time, INTERVAL '10' SECOND) B GROUP BY B.bidder, window_start, window_end",
    ),
    // RisingWave's q12 reads a `p_time TIMESTAMPTZ AS PROCTIME()` column of `bid` through
    // TUMBLE; Flink's stamps rows with `PROCTIME()` in a subquery. Here the subquery
    // stamps them and bins the stamp into ten-second windows (the same windows TUMBLE
    // gives; TUMBLE reads only a named relation).
    (
        "q12",
        "SELECT B.bidder, count(*) AS bid_count, B.window_start, B.window_start + INTERVAL '10' SECOND AS window_end \
         FROM (SELECT bidder, date_bin(INTERVAL '10' SECOND, PROCTIME()) AS window_start FROM bid) B \
         GROUP BY B.bidder, B.window_start",
    ),
    // A side input looked up in processing time (`side_input`: 10,000 keys, see
    // `sources_ddl`).
    (
        "q13",
        "SELECT B.auction, B.bidder, B.price, B.date_time, S.value FROM bid B \
         JOIN side_input FOR SYSTEM_TIME AS OF PROCTIME() S ON B.auction % 10000 = S.key",
    ),
    (
        "q14",
        "SELECT auction, bidder, 0.908 * price AS price, CASE WHEN extract(hour FROM date_time) >= 8 AND extract(hour FROM date_time) <= 18 \
         THEN 'dayTime' WHEN extract(hour FROM date_time) <= 6 OR extract(hour FROM date_time) >= 20 THEN 'nightTime' ELSE 'otherTime' END \
         AS bidTimeType, date_time, extra FROM bid WHERE 0.908 * price > 1000000 AND 0.908 * price < 50000000",
    ),
    (
        "q15",
        "SELECT to_char(date_time, 'yyyy-mm-dd') AS day, count(*) AS total_bids, \
         count(*) FILTER (WHERE price < 10000) AS rank1_bids, \
         count(*) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bids, \
         count(*) FILTER (WHERE price >= 1000000) AS rank3_bids, count(DISTINCT bidder) AS total_bidders, \
         count(DISTINCT bidder) FILTER (WHERE price < 10000) AS rank1_bidders, \
         count(DISTINCT bidder) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bidders, \
         count(DISTINCT bidder) FILTER (WHERE price >= 1000000) AS rank3_bidders, count(DISTINCT auction) AS total_auctions, \
         count(DISTINCT auction) FILTER (WHERE price < 10000) AS rank1_auctions, \
         count(DISTINCT auction) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_auctions, \
         count(DISTINCT auction) FILTER (WHERE price >= 1000000) AS rank3_auctions FROM bid GROUP BY to_char(date_time, 'yyyy-mm-dd')",
    ),
    (
        "q16",
        "SELECT channel, to_char(date_time, 'yyyy-mm-dd') AS day, max(to_char(date_time, 'HH24:MI')) AS minute, \
         count(*) AS total_bids, count(*) FILTER (WHERE price < 10000) AS rank1_bids, \
         count(*) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bids, \
         count(*) FILTER (WHERE price >= 1000000) AS rank3_bids, count(DISTINCT bidder) AS total_bidders, \
         count(DISTINCT bidder) FILTER (WHERE price < 10000) AS rank1_bidders, \
         count(DISTINCT bidder) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bidders, \
         count(DISTINCT bidder) FILTER (WHERE price >= 1000000) AS rank3_bidders, count(DISTINCT auction) AS total_auctions, \
         count(DISTINCT auction) FILTER (WHERE price < 10000) AS rank1_auctions, \
         count(DISTINCT auction) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_auctions, \
         count(DISTINCT auction) FILTER (WHERE price >= 1000000) AS rank3_auctions FROM bid \
         GROUP BY channel, to_char(date_time, 'yyyy-mm-dd')",
    ),
    (
        "q17",
        "SELECT auction, to_char(date_time, 'YYYY-MM-DD') AS day, count(*) AS total_bids, \
         count(*) FILTER (WHERE price < 10000) AS rank1_bids, \
         count(*) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bids, \
         count(*) FILTER (WHERE price >= 1000000) AS rank3_bids, min(price) AS min_price, max(price) AS max_price, \
         avg(price) AS avg_price, sum(price) AS sum_price FROM bid GROUP BY auction, to_char(date_time, 'YYYY-MM-DD')",
    ),
    (
        "q18",
        "SELECT auction, bidder, price, channel, url, date_time FROM (SELECT *, ROW_NUMBER() OVER \
         (PARTITION BY bidder, auction ORDER BY date_time DESC) AS rank_number FROM bid) WHERE rank_number <= 1",
    ),
    (
        "q19",
        "SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC) AS rank_number FROM bid) \
         WHERE rank_number <= 10",
    ),
    (
        "q20",
        "SELECT auction, bidder, price, channel, url, B.date_time AS bid_date_time, B.extra AS bid_extra, item_name, description, \
         initial_bid, reserve, A.date_time AS auction_date_time, expires, seller, category, A.extra AS auction_extra \
         FROM bid AS B INNER JOIN auction AS A ON B.auction = A.id WHERE A.category = 10",
    ),
    (
        "q21",
        "SELECT auction, bidder, price, channel, CASE WHEN lower(channel) = 'apple' THEN '0' WHEN lower(channel) = 'google' THEN '1' \
         WHEN lower(channel) = 'facebook' THEN '2' WHEN lower(channel) = 'baidu' THEN '3' \
         ELSE (regexp_match(url, '(&|^)channel_id=([^&]*)'))[2] END AS channel_id FROM bid \
         WHERE (regexp_match(url, '(&|^)channel_id=([^&]*)'))[2] IS NOT NULL OR lower(channel) IN ('apple', 'google', 'facebook', 'baidu')",
    ),
    (
        "q22",
        "SELECT auction, bidder, price, channel, split_part(url, '/', 4) AS dir1, split_part(url, '/', 5) AS dir2, \
         split_part(url, '/', 6) AS dir3 FROM bid",
    ),
    // The Flink peer's `grp` (../shared/peers/flink): a count and sum per auction.
    ("grp", "SELECT auction, count(*) AS bids, sum(price) AS total FROM bid GROUP BY auction"),
    // The Flink peer's `q2`, which filters with a modulo rather than Nexmark's list.
    ("q2mod", "SELECT auction, price FROM bid WHERE auction % 123 = 0"),
    (
        "q101",
        "SELECT a.id AS auction_id, a.item_name AS auction_item_name, b.max_price AS current_highest_bid FROM auction a \
         LEFT OUTER JOIN (SELECT b1.auction, MAX(b1.price) max_price FROM bid b1 GROUP BY b1.auction) b ON a.id = b.auction",
    ),
    (
        "q102",
        "SELECT a.id AS auction_id, a.item_name AS auction_item_name, count(b.auction) AS bid_count FROM auction a \
         JOIN bid b ON a.id = b.auction GROUP BY a.id, a.item_name \
         HAVING count(b.auction) >= (SELECT count(*) / count(DISTINCT auction) FROM bid)",
    ),
    (
        "q103",
        "SELECT a.id AS auction_id, a.item_name AS auction_item_name FROM auction a \
         WHERE a.id IN (SELECT b.auction FROM bid b GROUP BY b.auction HAVING count(*) >= 20)",
    ),
    (
        "q104",
        "SELECT a.id AS auction_id, a.item_name AS auction_item_name FROM auction a \
         WHERE a.id NOT IN (SELECT b.auction FROM bid b GROUP BY b.auction HAVING count(*) < 20)",
    ),
    (
        "q105",
        "SELECT a.id AS auction_id, a.item_name AS auction_item_name, count(b.auction) AS bid_count FROM auction a \
         JOIN bid b ON a.id = b.auction GROUP BY a.id, a.item_name ORDER BY bid_count DESC LIMIT 1000",
    ),
    (
        "q106",
        "SELECT MIN(final) AS min_final FROM (SELECT A.id, MAX(B.price) AS final FROM auction A, bid B \
         WHERE B.auction = A.id AND B.date_time BETWEEN A.date_time AND A.expires GROUP BY A.id) Q",
    ),
];

/// What `sabot bench nexmark` is asked to do.
#[derive(Clone, Debug)]
pub struct NexmarkBench {
    /// Query names; empty: all.
    pub queries: Vec<String>,
    /// Rows each source generates (`nexmark.event.num`).
    pub events: u64,
    /// Splits of each source.
    pub splits: u64,
    /// Where the temporary databases go (a directory under it per query).
    pub work_dir: PathBuf,
    /// Read `bid` from the CSV files of this directory (the Flink peer's `gen_bids.py`
    /// format: auction, bidder, price, channel, url, date_time; no header) instead of
    /// the generator.
    pub bid_dir: Option<PathBuf>,
    /// `streaming_parallelism` of the query's sink (None: the default, one per core).
    pub parallelism: Option<usize>,
    /// Show progress on stderr.
    pub progress: bool,
}

/// One query's figures, or why it could not run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct QueryResult {
    pub query: String,
    pub events: u64,
    pub seconds: f64,
    pub cpu_seconds: f64,
    pub events_per_second: f64,
    pub events_per_cpu_second: f64,
    pub peak_rss_bytes: u64,
    /// Set when the engine cannot run the query (then the figures are zero).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsupported: Option<String>,
}

impl QueryResult {
    fn unsupported(query: &str, why: String) -> Self {
        QueryResult {
            query: query.to_string(),
            events: 0,
            seconds: 0.0,
            cpu_seconds: 0.0,
            events_per_second: 0.0,
            events_per_cpu_second: 0.0,
            peak_rss_bytes: 0,
            unsupported: Some(why),
        }
    }
}

/// The queries `names` asks for (all when empty), or an error naming an unknown one.
pub fn select_queries(names: &[String]) -> Result<Vec<(&'static str, &'static str)>> {
    if names.is_empty() {
        return Ok(QUERIES.to_vec());
    }
    names
        .iter()
        .map(|name| {
            QUERIES.iter().find(|(q, _)| q.eq_ignore_ascii_case(name)).copied().ok_or_else(|| {
                let known: Vec<&str> = QUERIES.iter().map(|(q, _)| *q).collect();
                Error::new(SqlState::InvalidParameterValue, format!("no Nexmark query \"{name}\""))
                    .with_hint(format!("queries: {}", known.join(", ")))
            })
        })
        .collect()
}

/// The event-time watermark of every source, as in RisingWave's Nexmark DDL: windows close
/// (and their state is freed) four seconds of event time after they end.
const WATERMARK: &str = "WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND";

/// The sources' DDL for `events` rows each in `splits` splits (`bid` from the files of
/// `bid_dir` when given).
fn sources_ddl(events: u64, splits: u64, bid_dir: Option<&std::path::Path>) -> String {
    let with = |table: &str| {
        format!(
            "WITH (connector = 'nexmark', nexmark.table.type = '{table}', nexmark.event.num = '{events}', nexmark.split.num = '{splits}')"
        )
    };
    format!(
        "CREATE SOURCE person (id BIGINT, name VARCHAR, email_address VARCHAR, credit_card VARCHAR, city VARCHAR, \
         state VARCHAR, date_time TIMESTAMP, extra VARCHAR, {WATERMARK}) {};\n\
         CREATE SOURCE auction (id BIGINT, item_name VARCHAR, description VARCHAR, initial_bid BIGINT, reserve BIGINT, \
         date_time TIMESTAMP, expires TIMESTAMP, seller BIGINT, category BIGINT, extra VARCHAR, {WATERMARK}) {};\n\
         CREATE SOURCE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, \
         date_time TIMESTAMP{}, {WATERMARK}) {};\n\
         CREATE TABLE side_input (key BIGINT PRIMARY KEY, value VARCHAR);\n\
         INSERT INTO side_input SELECT v AS key, CAST(v AS VARCHAR) AS value FROM generate_series(0, 9999) AS s(v);",
        with("Person"),
        with("Auction"),
        if bid_dir.is_some() { "" } else { ", extra VARCHAR" },
        match bid_dir {
            Some(dir) => format!(
                "WITH (connector = 'posix_fs', posix_fs.root = '{}') FORMAT PLAIN ENCODE CSV (without_header = 'true')",
                dir.display().to_string().replace('\'', "''")
            ),
            None => with("Bid"),
        }
    )
}

/// Runs one query on a fresh embedded database.
pub async fn run_query(bench: &NexmarkBench, name: &str, sql: &str) -> Result<QueryResult> {
    let dir = bench.work_dir.join(format!("sabot-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = Config { data_dir: dir.clone(), ..Config::default() };
    let db = Database::open(config).await?;
    let result = measure(&db, bench, name, sql).await;
    db.shutdown().await?;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn measure(db: &Arc<Database>, bench: &NexmarkBench, name: &str, sql: &str) -> Result<QueryResult> {
    let mut session = db.session();
    for outcome in session.execute(&sources_ddl(bench.events, bench.splits, bench.bid_dir.as_deref())).await {
        outcome?;
    }
    reset_peak_rss();
    let (cpu_start, started) = (cpu_seconds(), Instant::now());
    if let Some(parallelism) = bench.parallelism {
        for outcome in session.execute(&format!("SET streaming_parallelism = {parallelism}")).await {
            outcome?;
        }
    }
    let create = format!("CREATE SINK {name} AS {sql} WITH (connector = 'blackhole')");
    if let Some(Err(e)) = session.execute(&create).await.pop() {
        return Ok(QueryResult::unsupported(name, e.to_string()));
    }
    let reader = format!("public.{name}");
    let progress_sql = format!(
        "SELECT coalesce(sum(rows), 0)::BIGINT, bool_and(done) FROM sabot_catalog.source_splits WHERE reader = '{reader}'"
    );
    let terminal = bench.progress && std::io::stderr().is_terminal();
    let mut last_report = Instant::now();
    let events = loop {
        let (rows, done) = query_progress(&mut session, &progress_sql).await?;
        if done {
            break rows;
        }
        if bench.progress && last_report.elapsed() >= Duration::from_secs(if terminal { 1 } else { 10 }) {
            last_report = Instant::now();
            let line = format!("{name}: {rows} events read, {:.0} s", started.elapsed().as_secs_f64());
            if terminal {
                eprint!("\r{line}   ");
            } else {
                eprintln!("{line}");
            }
            let _ = std::io::stderr().flush();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for outcome in session.execute("FLUSH").await {
        outcome?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_start;
    if terminal {
        eprint!("\r{}\r", " ".repeat(60));
    }
    Ok(QueryResult {
        query: name.to_string(),
        events,
        seconds,
        cpu_seconds: cpu,
        events_per_second: events as f64 / seconds.max(1e-9),
        events_per_cpu_second: events as f64 / cpu.max(1e-9),
        peak_rss_bytes: peak_rss_bytes(),
        unsupported: None,
    })
}

/// Rows the sink's readers have committed, and whether every split is exhausted.
async fn query_progress(session: &mut crate::Session, sql: &str) -> Result<(u64, bool)> {
    use datafusion::arrow::array::{Array, AsArray, Int64Array};
    let outcome = session.execute(sql).await.pop().ok_or_else(|| Error::internal("no result"))??;
    let Some(rows) = outcome.rows else { return Err(Error::internal("the progress query returned no rows")) };
    let batches = rows.collect().await?;
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else { return Ok((0, false)) };
    let rows = batch.column(0).as_any().downcast_ref::<Int64Array>().map(|a| a.value(0)).unwrap_or(0);
    let done = batch.column(1).as_boolean();
    Ok((rows as u64, !done.is_null(0) && done.value(0)))
}

/// The results as a text table (or JSON lines with `json`).
pub fn report(results: &[QueryResult], json: bool) -> String {
    let mut out = String::new();
    if json {
        for result in results {
            let _ = writeln!(out, "{}", serde_json::to_string(result).unwrap_or_default());
        }
        return out;
    }
    let _ = writeln!(
        out,
        "{:<6} {:>12} {:>9} {:>9} {:>14} {:>16} {:>12}",
        "query", "events", "seconds", "cpu s", "events/s", "events/cpu-s", "peak RSS MiB"
    );
    for r in results {
        match &r.unsupported {
            Some(why) => {
                let _ =
                    writeln!(out, "{:<6} not supported yet: {}", r.query, why.lines().next().unwrap_or(""));
            }
            None => {
                let _ = writeln!(
                    out,
                    "{:<6} {:>12} {:>9.2} {:>9.2} {:>14.0} {:>16.0} {:>12.0}",
                    r.query,
                    r.events,
                    r.seconds,
                    r.cpu_seconds,
                    r.events_per_second,
                    r.events_per_cpu_second,
                    r.peak_rss_bytes as f64 / (1 << 20) as f64
                );
            }
        }
    }
    out
}

/// CPU seconds (user and system) of this process so far.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Resets the process's peak resident set (Linux: `clear_refs` 5), so that each query's
/// peak is its own.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident bytes (`VmHWM`) since the last reset.
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_selected_by_name() {
        assert_eq!(select_queries(&["Q1".into()]).unwrap()[0].0, "q1");
        assert_eq!(select_queries(&[]).unwrap().len(), QUERIES.len());
        assert!(select_queries(&["q99".into()]).unwrap_err().to_string().contains("q99"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_query_runs_to_the_end_of_its_sources() {
        let work = std::env::temp_dir();
        let bench = NexmarkBench {
            queries: vec![],
            events: 2000,
            splits: 2,
            work_dir: work,
            bid_dir: None,
            parallelism: Some(2),
            progress: false,
        };
        let result = run_query(&bench, "q0", QUERIES[0].1).await.unwrap();
        assert_eq!(result.unsupported, None);
        assert_eq!(result.events, 2000);
        assert!(result.cpu_seconds > 0.0 && result.peak_rss_bytes > 0, "{result:?}");
        // HOP windows run, as do q15 and q102; a query the engine cannot run yet is
        // reported, not failed.
        let windows = run_query(&bench, "q5", select_queries(&["q5".into()]).unwrap()[0].1).await.unwrap();
        assert_eq!(windows.unsupported, None, "{windows:?}");
        let filtered = run_query(&bench, "q15", select_queries(&["q15".into()]).unwrap()[0].1).await.unwrap();
        assert_eq!(filtered.unsupported, None, "{filtered:?}");
        let subquery =
            run_query(&bench, "q102", select_queries(&["q102".into()]).unwrap()[0].1).await.unwrap();
        assert_eq!(subquery.unsupported, None, "{subquery:?}");
        let unsupported = "SELECT auction, ntile(4) OVER (ORDER BY price) AS quartile FROM bid";
        let refused = run_query(&bench, "ntile", unsupported).await.unwrap();
        assert!(refused.unsupported.is_some(), "{refused:?}");
        // `bid` from files in the Flink peer's format.
        let dir = tempfile::tempdir().unwrap();
        let lines: String = (0..300)
            .map(|i| {
                format!(
                    "{},{},{},Google,https://x/y,2024-01-01 00:00:00.{:03}\n",
                    1000 + i % 7,
                    i,
                    i + 1,
                    i % 1000
                )
            })
            .collect();
        std::fs::write(dir.path().join("part-00000.csv"), lines).unwrap();
        let files = NexmarkBench { bid_dir: Some(dir.path().to_path_buf()), ..bench.clone() };
        let grp = select_queries(&["grp".into()]).unwrap()[0].1;
        let from_files = run_query(&files, "grp", grp).await.unwrap();
        assert_eq!((from_files.unsupported.as_deref(), from_files.events), (None, 300));
        let text = report(&[result, windows, filtered, subquery, refused], false);
        assert!(text.contains("q0") && text.contains("q5") && text.contains("not supported yet"), "{text}");
    }
}
