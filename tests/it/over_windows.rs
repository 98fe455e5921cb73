//! Over-window (and session-window) views against the same queries in batch after random
//! inserts, updates (of the value, the order column and the partition) and deletes, across
//! a restart; and closing over windows and sessions behind the watermark.

use crate::differential::Random;
use crate::harness::{TestServer, rows};

const VIEWS: [(&str, &str); 6] = [
    (
        "ranks",
        "SELECT id, g, row_number() OVER (PARTITION BY g ORDER BY ts, id) AS rn, \
         rank() OVER (PARTITION BY g ORDER BY ts) AS rk, \
         dense_rank() OVER (PARTITION BY g ORDER BY ts DESC) AS drk FROM t",
    ),
    (
        "shifts",
        "SELECT id, lag(v) OVER (PARTITION BY g ORDER BY ts, id) AS prev, \
         lead(v, 2, -1) OVER (PARTITION BY g ORDER BY ts, id) AS next2, \
         first_value(v) OVER (PARTITION BY g ORDER BY ts, id ROWS BETWEEN 2 PRECEDING AND 1 FOLLOWING) AS fv, \
         last_value(v) OVER (PARTITION BY g ORDER BY ts, id ROWS BETWEEN CURRENT ROW AND 3 FOLLOWING) AS lv FROM t",
    ),
    (
        "frames",
        "SELECT id, sum(v) OVER (PARTITION BY g ORDER BY ts) AS running, \
         count(*) OVER (PARTITION BY g ORDER BY ts RANGE BETWEEN INTERVAL '3' SECOND PRECEDING AND INTERVAL '1' SECOND FOLLOWING) AS near, \
         min(v) OVER (PARTITION BY g ORDER BY ts, id ROWS BETWEEN 3 PRECEDING AND CURRENT ROW) AS low, \
         max(v) OVER (PARTITION BY g ORDER BY ts RANGE BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING) AS high, \
         count(v) OVER (PARTITION BY g) AS n, \
         round(avg(v) OVER (PARTITION BY g ORDER BY ts, id ROWS BETWEEN 1 PRECEDING AND 1 FOLLOWING), 6) AS mean FROM t",
    ),
    (
        "global",
        "SELECT id, sum(v) OVER (ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS cum FROM t",
    ),
    // Sessions: a change may split a session or join two (their rows' windows change).
    (
        "sessions",
        "SELECT g, window_start, window_end, count(*) AS n, sum(v) AS s \
         FROM SESSION(t, ts, INTERVAL '3' SECOND) GROUP BY g, window_start, window_end",
    ),
    (
        "descending",
        "SELECT id, sum(v) OVER (PARTITION BY g ORDER BY ts DESC RANGE BETWEEN INTERVAL '2' SECOND PRECEDING AND CURRENT ROW) AS s FROM t",
    ),
];

async fn check(client: &tokio_postgres::Client, at: usize) {
    crate::harness::views_equal_batch(client, &VIEWS, &format!("after step {at}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_window_views_match_batch_after_random_changes() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path()).await;
    let client = server.client().await;
    let mut setup =
        "SET streaming_parallelism = 2; CREATE TABLE t (id INT PRIMARY KEY, g INT, ts TIMESTAMP, v INT);"
            .to_string();
    for (name, query) in VIEWS {
        setup.push_str(&format!("CREATE MATERIALIZED VIEW {name} AS {query};"));
    }
    client.batch_execute(&setup).await.unwrap();
    let mut random = Random(0x0e7e_a110_ff5e);
    let mut ids: Vec<i64> = Vec::new();
    let ts = |s: i64| format!("TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '{s} seconds'");
    let mut server = Some(server);
    let mut client = client;
    for step in 0..160 {
        let value = |random: &mut Random| match random.below(6) {
            0 => "NULL".to_string(),
            _ => random.below(50).to_string(),
        };
        let sql = match random.below(8) {
            0..=3 => {
                let rows: Vec<String> = (0..1 + random.below(4))
                    .map(|_| {
                        let id = 1000 * step as i64 + ids.len() as i64;
                        ids.push(id);
                        format!(
                            "({id}, {}, {}, {})",
                            random.below(3),
                            ts(random.below(30)),
                            value(&mut random)
                        )
                    })
                    .collect();
                format!("INSERT INTO t VALUES {}", rows.join(", "))
            }
            _ if ids.is_empty() => continue,
            4 => format!(
                "UPDATE t SET v = {} WHERE id = {}",
                value(&mut random),
                ids[random.below(ids.len() as u64) as usize]
            ),
            5 => format!(
                "UPDATE t SET ts = {} WHERE id = {}",
                ts(random.below(30)),
                ids[random.below(ids.len() as u64) as usize]
            ),
            6 => format!("UPDATE t SET g = {} WHERE id % 7 = {}", random.below(3), random.below(7)),
            _ => {
                let id = ids.swap_remove(random.below(ids.len() as u64) as usize);
                format!("DELETE FROM t WHERE id = {id}")
            }
        };
        client.batch_execute(&sql).await.unwrap();
        if step % 40 == 39 {
            check(&client, step).await;
        }
        if step == 100 {
            // A restart: partitions are read back from the state tables.
            drop(client);
            server.take().unwrap().stop().await;
            let restarted = TestServer::start_in(dir.path()).await;
            client = restarted.client().await;
            server = Some(restarted);
            check(&client, step).await;
        }
    }
    check(&client, 160).await;
    let count = rows(&client, "SELECT count(*) FROM t").await;
    assert!(count[0][0].parse::<u64>().unwrap() > 50, "the sequence should leave rows behind");
}

/// Sessions per key, closed by the watermark in the test below.
const SESSIONS: &str = "SELECT k, window_start, window_end, count(*) AS n, sum(v) AS s \
     FROM SESSION(t, ts, INTERVAL '3' SECOND) GROUP BY k, window_start, window_end";

/// EMIT ON WINDOW CLOSE over windows (and sessions) after random out-of-order inserts (within the
/// watermark's delay): each view holds exactly the rows behind the watermark, with the
/// values the same query gives in batch, and keeps only the rows later rows still read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_over_windows_match_batch_behind_the_watermark() {
    const DELAY: i64 = 20;
    let server = TestServer::start().await;
    let client = server.client().await;
    let query = "SELECT k, ts, v, row_number() OVER (PARTITION BY k ORDER BY ts) AS n, \
         lag(v) OVER (PARTITION BY k ORDER BY ts) AS prev, \
         sum(v) OVER (PARTITION BY k ORDER BY ts ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS total, \
         min(v) OVER (PARTITION BY k ORDER BY ts ROWS BETWEEN 3 PRECEDING AND CURRENT ROW) AS low, \
         count(*) OVER (PARTITION BY k ORDER BY ts RANGE BETWEEN INTERVAL '10' SECOND PRECEDING AND CURRENT ROW) AS recent \
         FROM t";
    client
        .batch_execute(&format!(
            "SET streaming_parallelism = 2; \
             CREATE TABLE t (k INT, v INT, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '{DELAY}' SECOND) APPEND ONLY; \
             CREATE MATERIALIZED VIEW closing AS {query} EMIT ON WINDOW CLOSE; \
             CREATE MATERIALIZED VIEW sessions AS {SESSIONS} EMIT ON WINDOW CLOSE;"
        ))
        .await
        .unwrap();
    let mut random = Random(0x00c1_05ed);
    let mut newest = i64::MIN;
    let mut inserted = 0i64;
    for clock in 0..300i64 {
        let tuples: Vec<String> = (0..random.below(4))
            .map(|_| {
                // Up to 15 seconds out of order: never behind the watermark. The
                // microseconds keep every time distinct (row_number is then the same in batch).
                let ts = (clock - random.below(16)).max(0);
                newest = newest.max(ts);
                inserted += 1;
                format!(
                    "({}, {}, TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '{ts} seconds' + INTERVAL '{inserted} microseconds')",
                    random.below(3),
                    random.below(100)
                )
            })
            .collect();
        if !tuples.is_empty() {
            client.batch_execute(&format!("INSERT INTO t VALUES {}", tuples.join(", "))).await.unwrap();
        }
        if clock % 75 == 74 {
            client.batch_execute("FLUSH; FLUSH").await.unwrap();
            // The watermark: the newest time less the delay (microseconds aside, the
            // newest row's own are below a second).
            let watermark = newest - DELAY;
            let bound = format!("TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '{watermark} seconds'");
            let view =
                rows(&client, &format!("SELECT * FROM closing WHERE ts < {bound} ORDER BY k, ts")).await;
            let batch =
                rows(&client, &format!("SELECT * FROM ({query}) q WHERE ts < {bound} ORDER BY k, ts")).await;
            assert_eq!(view, batch, "after {clock} seconds");
            // Sessions that ended behind the watermark are in the view, as in batch.
            let closed = format!("WHERE window_end <= {bound} ORDER BY k, window_start");
            let view = rows(&client, &format!("SELECT * FROM sessions {closed}")).await;
            let batch = rows(&client, &format!("SELECT * FROM ({SESSIONS}) q {closed}")).await;
            assert_eq!(view, batch, "sessions after {clock} seconds");
            assert!(!view.is_empty(), "sessions should have closed by {clock} seconds");
            let all = rows(&client, "SELECT count(*) FROM closing").await;
            let behind =
                rows(&client, &format!("SELECT count(*) FROM t WHERE ts < {bound} + INTERVAL '1' SECOND"))
                    .await;
            assert!(
                all[0][0].parse::<i64>().unwrap() <= behind[0][0].parse::<i64>().unwrap(),
                "rows shown before final"
            );
        }
    }
    let late = rows(&client, "SELECT count(*) FROM sabot_catalog.dead_letters WHERE reason = 'late'").await;
    assert_eq!(late[0][0], "0");
    // The operator keeps the rows the frames still read (a few per partition) and each
    // partition's summary, not every row.
    let (_, operators) = crate::event_time::state_rows(&client, "public.closing").await;
    let kept: u64 = operators.iter().map(|&(_, rows)| rows).sum();
    assert!(kept * 4 < inserted as u64, "the over window keeps {kept} of {inserted} rows: {operators:?}");
    // The sessions' over window keeps only open sessions' rows (the last 20 seconds' or
    // so), the aggregate only their groups.
    let (_, operators) = crate::event_time::state_rows(&client, "public.sessions").await;
    let kept: u64 = operators.iter().map(|&(_, rows)| rows).sum();
    assert!(kept * 4 < inserted as u64, "the sessions keep {kept} of {inserted} rows: {operators:?}");
}
