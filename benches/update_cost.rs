//! Update cost against data size: with an aggregate view and a join view over a table of
//! 100k rows and of 1M rows, the time from inserting 1k rows to FLUSH returning. An
//! incremental engine pays for the change, not for the data, so the ratio between the two
//! sizes should be close to 1. Both sizes run in this process, on RocksDB in a temporary
//! directory, with the same settings.
//!
//! `cargo bench --bench update_cost` (SABOT_BENCH_ROUNDS, default 20, rounds per size).

use std::fmt::Write;
use std::time::{Duration, Instant};

use sabot::{Config, Database, Session};

const SIZES: [usize; 2] = [100_000, 1_000_000];
const CHANGE_ROWS: usize = 1000;
const GROUPS: usize = 1000;

/// Runs `sql` and reads every result row (results stream: a query runs as it is read).
async fn run(session: &mut Session, sql: &str) {
    for result in session.execute(sql).await {
        let rows = result.map(|outcome| outcome.rows);
        let read = match rows {
            Ok(Some(rows)) => rows.collect().await.map(|_| ()),
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = read {
            panic!("{}: {e}", &sql[..sql.len().min(120)]);
        }
    }
}

/// Loads `rows` rows with COPY, 100k at a time.
async fn load(session: &mut Session, rows: usize) {
    let mut start = 0;
    while start < rows {
        let end = (start + 100_000).min(rows);
        let mut copy = String::from("COPY t FROM STDIN;\n");
        for id in start..end {
            let _ = writeln!(copy, "{id}\t{}\t{}", id % GROUPS, id % 997);
        }
        copy.push_str("\\.\n");
        run(session, &copy).await;
        start = end;
    }
}

/// For scale: the views' queries evaluated in batch over the whole table (what a
/// recomputing engine would pay per change), median of three.
async fn recompute(session: &mut Session) -> Duration {
    let mut times = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        run(session, "SELECT g, count(*), sum(v), max(v) FROM t GROUP BY g").await;
        run(session, "SELECT count(*) FROM t JOIN dim ON t.g = dim.g").await;
        times.push(start.elapsed());
    }
    median(&mut times)
}

async fn measure(rows: usize, rounds: usize) -> (Duration, Vec<Duration>, Duration) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = Config { data_dir: dir.path().to_path_buf(), ..Config::default() };
    let db = Database::open(config).await.expect("database opens");
    let mut session = db.session();
    run(&mut session, "CREATE TABLE t (id BIGINT PRIMARY KEY, g INT, v INT); CREATE TABLE dim (g INT PRIMARY KEY, label TEXT)").await;
    let mut dim = String::from("COPY dim FROM STDIN;\n");
    for g in 0..GROUPS {
        let _ = writeln!(dim, "{g}\tgroup {g}");
    }
    dim.push_str("\\.\n");
    run(&mut session, &dim).await;
    let started = Instant::now();
    load(&mut session, rows).await;
    run(&mut session, "CREATE MATERIALIZED VIEW per_group AS SELECT g, count(*) AS n, sum(v) AS s, max(v) AS m FROM t GROUP BY g").await;
    run(
        &mut session,
        "CREATE MATERIALIZED VIEW labelled AS SELECT t.id, t.v, dim.label FROM t JOIN dim ON t.g = dim.g",
    )
    .await;
    let setup = started.elapsed();
    run(&mut session, "SET implicit_flush = off").await;
    let mut times = Vec::with_capacity(rounds);
    let mut next_id = rows;
    for _ in 0..rounds {
        let mut insert = String::from("INSERT INTO t VALUES ");
        for i in 0..CHANGE_ROWS {
            let id = next_id + i;
            let _ = write!(
                insert,
                "{}({id}, {}, {})",
                if i == 0 { "" } else { ", " },
                (id * 7) % GROUPS,
                id % 991
            );
        }
        next_id += CHANGE_ROWS;
        let start = Instant::now();
        run(&mut session, &insert).await;
        run(&mut session, "FLUSH").await;
        times.push(start.elapsed());
    }
    let batch = recompute(&mut session).await;
    drop(session);
    db.shutdown().await.expect("clean shutdown");
    (setup, times, batch)
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let rounds = std::env::var("SABOT_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(20);
    // `cargo test --benches` runs this in test mode: a tiny smoke run.
    let smoke = std::env::args().any(|a| a == "--test" || a == "--list");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let sizes: Vec<usize> = if smoke { vec![1000] } else { SIZES.to_vec() };
    let mut medians = Vec::new();
    for rows in sizes {
        let (setup, mut times, batch) = runtime.block_on(measure(rows, if smoke { 2 } else { rounds }));
        let m = median(&mut times);
        println!(
            "table rows {rows:>9}: load + create views {:>5.1} s; insert {CHANGE_ROWS} rows + FLUSH: median {:>6.2} ms (min {:.2}, max {:.2}) over {} rounds; both queries in batch: {:.0} ms",
            setup.as_secs_f64(),
            m.as_secs_f64() * 1e3,
            times[0].as_secs_f64() * 1e3,
            times[times.len() - 1].as_secs_f64() * 1e3,
            times.len(),
            batch.as_secs_f64() * 1e3
        );
        medians.push(m);
    }
    if let [small, large] = medians[..] {
        println!("update cost ratio 1M / 100k rows: {:.2}", large.as_secs_f64() / small.as_secs_f64());
    }
}
