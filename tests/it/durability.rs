//! Acknowledged writes survive `kill -9`; a failing statement applies nothing.

use std::time::Duration;

use crate::harness::{Process, connect, error_code, rows};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let server = Process::start(dir.path());
    let client = connect(server.addr).await;
    client
        .batch_execute(
            "CREATE SCHEMA app;
             CREATE TABLE app.kv (k INT PRIMARY KEY, v TEXT NOT NULL);
             CREATE TABLE log (msg TEXT);",
        )
        .await
        .unwrap();
    for i in 0..50 {
        client.execute("INSERT INTO app.kv VALUES ($1, $2)", &[&i, &format!("v{i}")]).await.unwrap();
        client.execute("INSERT INTO log VALUES ($1)", &[&format!("m{i}")]).await.unwrap();
    }
    client
        .batch_execute("UPDATE app.kv SET v = 'changed' WHERE k < 10; DELETE FROM app.kv WHERE k >= 40")
        .await
        .unwrap();
    // The last acknowledged statement, then kill -9 with no chance to flush.
    client.batch_execute("INSERT INTO log VALUES ('last')").await.unwrap();
    server.kill_9();

    let server = Process::start(dir.path());
    let client = connect(server.addr).await;
    assert_eq!(rows(&client, "SELECT count(*), min(k), max(k) FROM app.kv").await, [["40", "0", "39"]]);
    assert_eq!(rows(&client, "SELECT count(*) FROM app.kv WHERE v = 'changed'").await, [["10"]]);
    assert_eq!(rows(&client, "SELECT count(*) FROM log").await, [["51"]]);
    assert_eq!(rows(&client, "SELECT msg FROM log WHERE msg = 'last'").await, [["last"]]);
    // Hidden row ids keep counting after the restart: new rows never collide.
    client.batch_execute("INSERT INTO log VALUES ('after'), ('after')").await.unwrap();
    assert_eq!(rows(&client, "SELECT count(*) FROM log").await, [["53"]]);
    assert_eq!(error_code(&client, "INSERT INTO app.kv VALUES (5, 'dup')").await, "23505");
    let status = server.signal("-TERM");
    assert!(status.success(), "SIGTERM shuts down cleanly: {status:?}");

    // With implicit_flush off the write is acknowledged before its commit; a clean SIGINT
    // shutdown still commits it.
    let server = Process::start(dir.path());
    let client = connect(server.addr).await;
    assert_eq!(rows(&client, "SELECT count(*) FROM log").await, [["53"]]);
    client.batch_execute("SET implicit_flush = off; INSERT INTO log VALUES ('unflushed')").await.unwrap();
    let status = server.signal("-INT");
    assert!(status.success(), "SIGINT shuts down cleanly: {status:?}");

    let server = Process::start(dir.path());
    let client = connect(server.addr).await;
    assert_eq!(rows(&client, "SELECT count(*) FROM log").await, [["54"]]);
    server.kill_9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_multi_row_insert_applies_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Process::start(dir.path());
    let client = connect(server.addr).await;
    client
        .batch_execute("CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL); INSERT INTO t VALUES (1, 1)")
        .await
        .unwrap();
    // Duplicate with an existing row, duplicate within the statement, NULL in NOT NULL.
    assert_eq!(error_code(&client, "INSERT INTO t VALUES (2, 2), (3, 3), (1, 9)").await, "23505");
    assert_eq!(error_code(&client, "INSERT INTO t VALUES (4, 4), (4, 5)").await, "23505");
    assert_eq!(error_code(&client, "INSERT INTO t VALUES (5, 5), (6, NULL)").await, "23502");
    assert_eq!(error_code(&client, "INSERT INTO t VALUES (7, 7), (8, 'x')").await, "22P02");
    tokio::time::sleep(Duration::from_millis(300)).await; // several epochs pass
    server.kill_9();

    let server = Process::start(dir.path());
    let client = connect(server.addr).await;
    assert_eq!(rows(&client, "SELECT id, v FROM t ORDER BY id").await, [["1", "1"]]);
    server.kill_9();
}

/// The views of the recovery test, each with its query over the base tables.
const RECOVERY_VIEWS: &[(&str, &str)] = &[
    ("totals", "SELECT g, count(*) AS n, sum(v) AS s, max(v) AS m FROM t GROUP BY g"),
    ("joined", "SELECT t.id, u.label FROM t LEFT JOIN u ON t.g = u.g"),
    ("leaders", "SELECT id, v FROM t ORDER BY v DESC, id LIMIT 5"),
    ("big_groups", "SELECT g, n FROM totals WHERE n > 3"),
    // Windows over a watermarked append-only table whose times arrive out of order:
    // kill -9 lands in the middle of open windows.
    (
        "windows",
        "SELECT window_start, count(*) AS n, sum(v) AS s FROM TUMBLE(e, at, INTERVAL '30' SECOND) GROUP BY window_start",
    ),
    (
        "hops",
        "SELECT window_end, max(v) AS top, count(*) AS n FROM HOP(e, at, INTERVAL '20' SECOND, INTERVAL '60' SECOND) \
         GROUP BY window_end",
    ),
    // The same windows shown once each, when closed: none lost or shown twice across
    // the crash.
    (
        "closed_windows",
        "SELECT window_start, count(*) AS n, sum(v) AS s FROM TUMBLE(e, at, INTERVAL '30' SECOND) GROUP BY window_start \
         EMIT ON WINDOW CLOSE",
    ),
    // Over windows: one following every change of t, one showing each event once final
    // (with the running total it carries across the crash in its partition summary).
    (
        "ranked",
        "SELECT id, g, row_number() OVER (PARTITION BY g ORDER BY v, id) AS rn, \
         sum(v) OVER (PARTITION BY g ORDER BY v, id ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS s3 FROM t",
    ),
    (
        "running",
        "SELECT id, at, v, sum(v) OVER (ORDER BY at, id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS total, \
         lag(v) OVER (ORDER BY at, id) AS prev FROM e EMIT ON WINDOW CLOSE",
    ),
    // Sessions per value (events of one value come about 50 seconds apart, so some
    // join and some do not): one updated as they grow, one showing each once closed.
    (
        "sessions",
        "SELECT v, window_start, window_end, count(*) AS n FROM SESSION(e, at, INTERVAL '52' SECOND) \
         GROUP BY v, window_start, window_end",
    ),
    (
        "closed_sessions",
        "SELECT v, window_start, window_end, count(*) AS n FROM SESSION(e, at, INTERVAL '52' SECOND) \
         GROUP BY v, window_start, window_end EMIT ON WINDOW CLOSE",
    ),
    // An interval join: each event with the later events of its value within two
    // minutes, both sides freed behind the watermark.
    (
        "followups",
        "SELECT a.id, b.id AS later FROM e a JOIN e b ON a.v = b.v AND b.at > a.at AND b.at <= a.at + INTERVAL '120' SECOND",
    ),
    // The same events each with its later ones, or NULL-padded, shown once final: when
    // the watermark, held back the two minutes a later event may still come, passes it.
    (
        "followups_final",
        "SELECT a.id, a.at, b.id AS later FROM e a LEFT JOIN e b \
         ON a.v = b.v AND b.at > a.at AND b.at <= a.at + INTERVAL '120' SECOND EMIT ON WINDOW CLOSE",
    ),
    // An as-of join whose both sides change: each row of t with the group of its parity
    // whose threshold (30 per group, no two alike) it last passed.
    (
        "thresholds",
        "SELECT t.id, u.g, u.label FROM t ASOF LEFT JOIN u ON t.g % 2 = u.g % 2 AND t.v >= u.g * 30",
    ),
    // A processing-time temporal join: each event with its group as it arrives (groups
    // are never deleted, so the batch join gives the same pairs).
    ("grouped", "SELECT e.id, u.g FROM e JOIN u FOR SYSTEM_TIME AS OF PROCTIME() ON e.v % 3 = u.g"),
    // An event-time temporal join of the events with themselves: each event with the time
    // of the latest event of its value class at or before it, rows and versions freed
    // behind the watermark (the version's time is compared: events tie on their second).
    (
        "as_of",
        "SELECT a.id, b.at AS version FROM e a LEFT JOIN e FOR SYSTEM_TIME AS OF a.at b ON a.v % 5 = b.v % 5",
    ),
];

/// The time of the `n`-th event: a second per event, out of order by up to three seconds
/// (well within the watermark's ten, so that none is late).
fn event_time(n: i32) -> String {
    let second = (n + (n * 7919).rem_euclid(7) - 3).max(0);
    format!("'2026-01-01 {:02}:{:02}:{:02}'", second / 3600, second / 60 % 60, second % 60)
}

/// What a view of the recovery test must equal, in batch. The windowed views leave out
/// event -1, which comes late (behind the watermark) after the restart.
fn batch_query(name: &str, query: &str) -> String {
    let bin = |seconds: u32, plus: u32| {
        format!(
            "date_bin(INTERVAL '{seconds}' SECOND, at, TIMESTAMP '2026-01-01 00:00:00') + INTERVAL '{plus}' SECOND"
        )
    };
    match name {
        "big_groups" => query.replace("FROM totals", "FROM (SELECT g, count(*) AS n FROM t GROUP BY g) x"),
        "windows" => format!(
            "SELECT {} AS window_start, count(*) AS n, sum(v) AS s FROM e WHERE id <> -1 GROUP BY 1",
            bin(30, 0)
        ),
        // The windows the table's watermark has closed.
        "closed_windows" => format!(
            "SELECT * FROM ({}) x WHERE window_start < date_bin(INTERVAL '30' SECOND, \
               (SELECT CAST(watermark AS TIMESTAMP) FROM sabot_catalog.watermarks WHERE object = 'public.e'), \
               TIMESTAMP '2026-01-01 00:00:00')",
            batch_query("windows", "")
        ),
        // The events the table's watermark has passed.
        "running" => format!(
            "SELECT * FROM ({}) x WHERE at < (SELECT CAST(watermark AS TIMESTAMP) FROM sabot_catalog.watermarks \
               WHERE object = 'public.e')",
            query.replace(" EMIT ON WINDOW CLOSE", "").replace("FROM e", "FROM e WHERE id <> -1")
        ),
        // Event -1 is late on both sides: it neither looks up a version nor is one.
        "as_of" => "SELECT id, version FROM (SELECT a.id, b.at AS version, \
                      row_number() OVER (PARTITION BY a.id, a.at ORDER BY b.at DESC) AS rn \
                    FROM e a LEFT JOIN e b ON a.v % 5 = b.v % 5 AND a.at >= b.at AND b.id <> -1 \
                    WHERE a.id <> -1) x WHERE rn = 1"
            .to_string(),
        // The events two minutes behind the table's watermark; event -1 is late on both
        // sides (not joined, not padded).
        "followups_final" => format!(
            "SELECT * FROM ({}) x WHERE id <> -1 AND at < (SELECT CAST(watermark AS TIMESTAMP) \
               FROM sabot_catalog.watermarks WHERE object = 'public.e') - INTERVAL '120' SECOND",
            query.replace(" EMIT ON WINDOW CLOSE", "")
        ),
        // Event -1 (v = 500) is alone in its partition.
        "sessions" => format!("SELECT * FROM ({query}) x WHERE v <> 500"),
        // The sessions the table's watermark has closed.
        "closed_sessions" => format!(
            "SELECT * FROM ({}) x WHERE window_end <= (SELECT CAST(watermark AS TIMESTAMP) \
               FROM sabot_catalog.watermarks WHERE object = 'public.e')",
            batch_query("sessions", &query.replace(" EMIT ON WINDOW CLOSE", ""))
        ),
        "hops" => {
            let ends: Vec<String> = [20, 40, 60]
                .iter()
                .map(|&plus| format!("SELECT {} AS window_end, v FROM e WHERE id <> -1", bin(20, plus)))
                .collect();
            format!(
                "SELECT window_end, max(v) AS top, count(*) AS n FROM ({}) x GROUP BY window_end",
                ends.join(" UNION ALL ")
            )
        }
        _ => query.to_string(),
    }
}

async fn views_match_their_queries(client: &tokio_postgres::Client, at: &str) {
    // A window closes at the barrier after the watermark reaches its aggregate.
    client.batch_execute("FLUSH; FLUSH").await.unwrap();
    for (name, query) in RECOVERY_VIEWS {
        let query = batch_query(name, query);
        let mut view = rows(client, &format!("SELECT * FROM {name}")).await;
        let mut expected = rows(client, &query).await;
        view.sort();
        expected.sort();
        assert_eq!(view, expected, "{name} {at}");
    }
}

/// kill -9 while writes stream in: after the restart every view equals its query over the
/// committed tables, the dataflows resume from their checkpointed state (the log says so
/// and shows no backfill, the only code path that scans a table for a view), and later
/// changes keep the views right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_resume_after_kill_9_without_rescanning() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let data = dir.path().join("data");
    let server = Process::start_logged(&data, &log);
    let client = connect(server.addr).await;
    client
        .batch_execute(
            "CREATE TABLE t (id INT PRIMARY KEY, g INT, v INT);
             CREATE TABLE u (g INT PRIMARY KEY, label TEXT);
             CREATE TABLE e (id INT, at TIMESTAMP, v INT, WATERMARK FOR at AS at - INTERVAL '10' SECOND) APPEND ONLY;
             INSERT INTO u VALUES (0, 'zero'), (1, 'one'), (2, 'two');",
        )
        .await
        .unwrap();
    for i in 0..200 {
        client.execute("INSERT INTO t VALUES ($1, $2, $3)", &[&i, &(i % 7), &(i * 37 % 101)]).await.unwrap();
        let event = format!("INSERT INTO e VALUES ({i}, {}, {})", event_time(i), i % 50);
        client.batch_execute(&event).await.unwrap();
    }
    for (name, query) in RECOVERY_VIEWS {
        client.batch_execute(&format!("CREATE MATERIALIZED VIEW {name} AS {query}")).await.unwrap();
    }
    // A writer streams changes; kill -9 lands while its statements are in flight.
    let writer = connect(server.addr).await;
    let streaming = tokio::spawn(async move {
        let mut acknowledged = 0;
        for i in 0..100_000i32 {
            let sql = match i % 5 {
                0 => format!("INSERT INTO t VALUES ({}, {}, {})", 1000 + i, i % 9, i % 113),
                1 => format!("UPDATE t SET v = v + 1, g = {} WHERE id = {}", i % 5, i % 200),
                2 => format!("DELETE FROM t WHERE id = {}", (i * 7) % 200),
                3 => format!("UPDATE u SET label = 'l{i}' WHERE g = {}", i % 3),
                _ => format!("INSERT INTO e VALUES ({i}, {}, {})", event_time(200 + i), i % 97),
            };
            if writer.batch_execute(&sql).await.is_err() {
                break;
            }
            acknowledged += 1;
        }
        acknowledged
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill_9();
    let acknowledged = streaming.await.unwrap();
    assert!(acknowledged > 20, "the writer should have been mid-stream ({acknowledged} statements)");
    let before_restart = std::fs::read_to_string(&log).unwrap().len();

    let server = Process::start_logged(&data, &log);
    let client = connect(server.addr).await;
    views_match_their_queries(&client, "after kill -9").await;
    let restart_log = std::fs::read_to_string(&log).unwrap()[before_restart..].to_string();
    for (name, _) in RECOVERY_VIEWS {
        assert!(
            restart_log
                .lines()
                .any(|l| l.contains("view resumed from its checkpoint")
                    && l.contains(&format!("public.{name}"))),
            "no resume line for {name} in:\n{restart_log}"
        );
    }
    assert!(!restart_log.contains("backfilled"), "a view was rebuilt by scanning its inputs:\n{restart_log}");

    client
        .batch_execute(
            "DELETE FROM t WHERE id % 3 = 0; UPDATE t SET g = 1 WHERE id % 5 = 1; INSERT INTO u VALUES (3, 'three');
             INSERT INTO t VALUES (-1, 3, 1000), (-2, 3, 999);
             INSERT INTO e VALUES (-1, '2026-01-01 00:00:01', 500), (-2, '2026-01-02 00:00:00', 501)",
        )
        .await
        .unwrap();
    views_match_their_queries(&client, "after changes following the restart").await;
    // Event -1 is late for the windowed views: its windows closed before the crash. It
    // is kept once per window it fell into (one TUMBLE, three HOP windows), once for
    // the over window (its place was emitted before the crash), once per session
    // view (behind the watermark, it could have joined a freed session) and once per
    // side of the interval joins (its partners may be freed) and of the event-time
    // temporal join, and nothing else was late.
    let late = rows(
        &client,
        "SELECT object, payload LIKE '%500%' FROM sabot_catalog.dead_letters WHERE reason = 'late' ORDER BY object",
    )
    .await;
    assert_eq!(
        late,
        [
            ["public.as_of", "t"],
            ["public.as_of", "t"],
            ["public.closed_sessions", "t"],
            ["public.closed_windows", "t"],
            ["public.followups", "t"],
            ["public.followups", "t"],
            ["public.followups_final", "t"],
            ["public.followups_final", "t"],
            ["public.hops", "t"],
            ["public.hops", "t"],
            ["public.hops", "t"],
            ["public.running", "t"],
            ["public.sessions", "t"],
            ["public.windows", "t"]
        ],
        "late rows"
    );
    server.kill_9();
}

/// A table's watermark commits with its rows and survives kill -9: after the restart it
/// neither goes back nor forgets, and keeps advancing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_watermark_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let server = Process::start(dir.path());
    let client = connect(server.addr).await;
    client
        .batch_execute(
            "CREATE TABLE events (k INT, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '1' MINUTE) APPEND ONLY;
             INSERT INTO events VALUES (1, '2026-01-01 10:00:00'), (2, '2026-01-01 10:05:00');
             INSERT INTO events VALUES (3, '2026-01-01 10:02:00');",
        )
        .await
        .unwrap();
    let watermark = "SELECT watermark FROM sabot_catalog.watermarks WHERE object = 'public.events'";
    assert_eq!(rows(&client, watermark).await, [["2026-01-01 10:04:00"]]);
    server.kill_9();

    let server = Process::start(dir.path());
    let client = connect(server.addr).await;
    assert_eq!(rows(&client, watermark).await, [["2026-01-01 10:04:00"]]);
    client.batch_execute("INSERT INTO events VALUES (4, '2026-01-01 09:00:00')").await.unwrap();
    assert_eq!(rows(&client, watermark).await, [["2026-01-01 10:04:00"]]);
    client.batch_execute("INSERT INTO events VALUES (5, '2026-01-01 11:00:00')").await.unwrap();
    assert_eq!(rows(&client, watermark).await, [["2026-01-01 10:59:00"]]);
    assert_eq!(rows(&client, "SELECT count(*) FROM events").await, [["5"]]);
    server.kill_9();
}
