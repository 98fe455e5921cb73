//! Event time over a long stream: windowed views keep state only for their open windows.

use std::time::{Duration, Instant};

use crate::harness::{TestServer, rows};

/// Bids per run: `SABOT_WINDOW_STATE_EVENTS` (the issue's 10M runs with it set), 200 000 by
/// default — 20 seconds of event time at the generator's 10 000 events per second.
fn events() -> u64 {
    std::env::var("SABOT_WINDOW_STATE_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000)
}

/// A windowed aggregate over a watermarked generator source frees every window the
/// watermark passes: at the end its state holds only the open windows' groups, while the
/// view holds every window's row and counts every bid (none is late). The same windows
/// with EMIT ON WINDOW CLOSE show each closed window once, with the same count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windowed_state_holds_only_open_windows() {
    const BUCKETS: u64 = 100;
    let events = events();
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute(&format!(
            "CREATE SOURCE bids (auction BIGINT, price BIGINT, date_time TIMESTAMP,
               WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
               WITH (connector = 'nexmark', nexmark.table.type = 'Bid', nexmark.event.num = '{events}',
               nexmark.split.num = '2', nexmark.base.time = '1700000000000');
             SET streaming_parallelism = 2;
             CREATE MATERIALIZED VIEW per_second AS
               SELECT auction % {BUCKETS} AS bucket, window_start, count(*) AS n, max(price) AS top
               FROM TUMBLE(bids, date_time, INTERVAL '1' SECOND) GROUP BY auction % {BUCKETS}, window_start;
             CREATE MATERIALIZED VIEW closed AS
               SELECT window_start, count(*) AS n FROM TUMBLE(bids, date_time, INTERVAL '1' SECOND)
               GROUP BY window_start EMIT ON WINDOW CLOSE;"
        ))
        .await
        .unwrap();
    let started = Instant::now();
    let timeout = Duration::from_secs(60 + events / 2_000);
    loop {
        let counted = rows(&client, "SELECT coalesce(sum(n), 0) FROM per_second").await;
        if counted[0][0] == events.to_string() {
            break;
        }
        assert!(started.elapsed() < timeout, "the views did not read the source in time: {counted:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    client.batch_execute("FLUSH; FLUSH").await.unwrap();

    let windows = events.div_ceil(10_000);
    let view_rows: u64 = rows(&client, "SELECT count(*) FROM per_second").await[0][0].parse().unwrap();
    assert!(view_rows >= (windows - 1) * BUCKETS, "the view keeps every window: {view_rows}");
    // The aggregate's groups: at most the open windows' (five seconds behind the newest
    // bid), plus the closed bound; the split positions.
    let (own, operators) = state_rows(&client, "public.per_second").await;
    assert_eq!(own, view_rows);
    assert!(operators.iter().all(|&(_, kept)| kept <= 6 * BUCKETS + 1), "{operators:?}");
    let (_, operators) = state_rows(&client, "public.closed").await;
    assert!(operators.iter().all(|&(_, kept)| kept <= 7), "{operators:?}");

    let late = rows(&client, "SELECT count(*) FROM sabot_catalog.dead_letters WHERE reason = 'late'").await;
    assert_eq!(late[0][0], "0");
    // Every closed window shows once, with the count of its bids; only the last few are
    // still open.
    let closed = rows(
        &client,
        "SELECT count(*), count(p.n), coalesce(sum(c.n), 0) FROM closed c LEFT JOIN
           (SELECT window_start, sum(n) AS n FROM per_second GROUP BY window_start) p
           ON c.window_start = p.window_start AND c.n = p.n",
    )
    .await;
    let shown: u64 = closed[0][0].parse().unwrap();
    if closed[0][0] != closed[0][1] {
        eprintln!("closed: {:?}", rows(&client, "SELECT * FROM closed ORDER BY window_start").await);
        eprintln!(
            "open: {:?}",
            rows(&client, "SELECT window_start, sum(n) FROM per_second GROUP BY window_start ORDER BY 1")
                .await
        );
    }
    assert_eq!(closed[0][0], closed[0][1], "closed windows that differ from the open view: {closed:?}");
    assert!(shown + 6 >= windows, "{shown} windows closed of {windows}");
}

/// The rows of a view's own state table (its first) and of each other one, by id.
pub async fn state_rows(client: &tokio_postgres::Client, view: &str) -> (u64, Vec<(u64, u64)>) {
    let sql = format!(
        "SELECT table_id, rows FROM sabot_catalog.state_tables WHERE object = '{view}' ORDER BY table_id"
    );
    let tables: Vec<(u64, u64)> =
        rows(client, &sql).await.iter().map(|r| (r[0].parse().unwrap(), r[1].parse().unwrap())).collect();
    let (own, operators) = tables.split_first().expect("a view has state tables");
    (own.1, operators.to_vec())
}

/// Windowed views — TUMBLE and HOP aggregates, EMIT ON WINDOW CLOSE, two windowed
/// aggregates joined on their window, two streams joined on their watermarked column —
/// against the same queries in batch, after random out-of-order inserts (within the
/// watermark's delay, so no row is late), checked along the way; the closing joins free
/// their state, and so do the interval joins, whose rows under EMIT ON WINDOW CLOSE show
/// once their watermark (held back by the bound) passes them, and never late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windowed_views_match_batch_after_out_of_order_inserts() {
    const DELAY: i64 = 30;
    let server = TestServer::start().await;
    let client = server.client().await;
    let watermark = |table: &str| {
        format!(
            "CREATE TABLE {table} (k INT, v INT, ts TIMESTAMP, \
             WATERMARK FOR ts AS ts - INTERVAL '{DELAY}' SECOND) APPEND ONLY;"
        )
    };
    let windowed = |table: &str| {
        format!(
            "SELECT k, window_start, count(*) AS n FROM TUMBLE({table}, ts, INTERVAL '10' SECOND) GROUP BY k, window_start"
        )
    };
    let views = [
        (
            "tumbled",
            "SELECT k, window_start, count(*) AS n, sum(v) AS s, max(v) AS top FROM TUMBLE(l, ts, INTERVAL '10' SECOND) \
             GROUP BY k, window_start"
                .to_string(),
        ),
        (
            "hopped",
            "SELECT window_start, window_end, count(*) AS n, min(v) AS low \
             FROM HOP(l, ts, INTERVAL '5' SECOND, INTERVAL '15' SECOND) GROUP BY window_start, window_end"
                .to_string(),
        ),
        (
            "windows_joined",
            format!(
                "SELECT a.k, a.window_start, a.n AS left_n, b.n AS right_n FROM ({}) a JOIN ({}) b \
                 ON a.k = b.k AND a.window_start = b.window_start",
                windowed("l"),
                windowed("r")
            ),
        ),
        ("same_second", "SELECT l.k, l.ts, l.v, r.v AS w FROM l JOIN r ON l.k = r.k AND l.ts = r.ts".to_string()),
        (
            "within_five",
            "SELECT l.k, l.ts, l.v, r.v AS w FROM l JOIN r \
             ON l.k = r.k AND r.ts BETWEEN l.ts - INTERVAL '5' SECOND AND l.ts + INTERVAL '5' SECOND"
                .to_string(),
        ),
        (
            "answered",
            "SELECT l.k, l.ts, l.v, r.v AS w FROM l LEFT JOIN r ON l.k = r.k AND r.ts >= l.ts AND r.ts < l.ts + INTERVAL '3' SECOND"
                .to_string(),
        ),
        // The version of r valid at each row of l (rows of r tie on their second: the
        // version's time is compared, not which of the tied rows it is).
        (
            "versioned",
            "SELECT l.k, l.ts, l.v, r.ts AS version FROM l LEFT JOIN r FOR SYSTEM_TIME AS OF l.ts ON l.k = r.k"
                .to_string(),
        ),
    ];
    let mut setup = format!("SET streaming_parallelism = 2; {} {}", watermark("l"), watermark("r"));
    for (name, query) in &views {
        setup.push_str(&format!("CREATE MATERIALIZED VIEW {name} AS {query};"));
    }
    setup.push_str(&format!("CREATE MATERIALIZED VIEW closed AS {} EMIT ON WINDOW CLOSE;", windowed("l")));
    // The interval joins' rows once final: l.ts carries min(l's watermark, r's watermark
    // minus the bound's reach), and a row shows once that passes it.
    let finals = [("answered_final", "answered", 3), ("within_five_final", "within_five", 5)];
    for (name, of, _) in finals {
        let query = &views.iter().find(|(v, _)| *v == of).expect("a view above").1;
        setup.push_str(&format!("CREATE MATERIALIZED VIEW {name} AS {query} EMIT ON WINDOW CLOSE;"));
    }
    client.batch_execute(&setup).await.unwrap();

    let mut random = crate::differential::Random(0x005e_ed0f_e7e7);
    let mut newest = [i64::MIN; 2];
    let mut inserted = 0usize;
    for clock in 0..240i64 {
        for (t, table) in ["l", "r"].into_iter().enumerate() {
            let rows: Vec<String> = (0..random.below(4))
                .map(|_| {
                    // Up to 25 seconds out of order: never behind the watermark.
                    let ts = (clock - random.below(26)).max(0);
                    newest[t] = newest[t].max(ts);
                    inserted += 1;
                    format!(
                        "({}, {}, TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '{ts} seconds')",
                        random.below(4),
                        random.below(100)
                    )
                })
                .collect();
            if !rows.is_empty() {
                client
                    .batch_execute(&format!("INSERT INTO {table} VALUES {}", rows.join(", ")))
                    .await
                    .unwrap();
            }
        }
        if clock % 60 == 59 {
            // Two barriers: a two-phase aggregate closes one barrier after its partials.
            client.batch_execute("FLUSH; FLUSH").await.unwrap();
            for (name, query) in &views {
                let view = rows(&client, &format!("SELECT * FROM {name} ORDER BY 1, 2, 3, 4")).await;
                let batch = rows(&client, &format!("SELECT * FROM ({query}) q ORDER BY 1, 2, 3, 4")).await;
                assert_eq!(view, batch, "{name} after {clock} seconds");
            }
            // Closed: the windows below the window of the watermark.
            let watermark = newest[0] - DELAY;
            let bound = watermark - watermark.rem_euclid(10);
            let closed = rows(&client, "SELECT * FROM closed ORDER BY 1, 2").await;
            let batch = rows(
                &client,
                &format!(
                    "SELECT * FROM ({}) q WHERE window_start < TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '{bound} seconds' ORDER BY 1, 2",
                    windowed("l")
                ),
            )
            .await;
            assert_eq!(closed, batch, "closed windows after {clock} seconds");
            for (name, of, reach) in finals {
                let bound = (newest[0] - DELAY).min(newest[1] - DELAY - reach);
                let view = rows(&client, &format!("SELECT * FROM {name} ORDER BY 1, 2, 3, 4")).await;
                let batch = rows(
                    &client,
                    &format!(
                        "SELECT * FROM {of} WHERE ts < TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '{bound} seconds' ORDER BY 1, 2, 3, 4"
                    ),
                )
                .await;
                assert_eq!(view, batch, "{name} after {clock} seconds");
            }
        }
    }
    let late = rows(&client, "SELECT count(*) FROM sabot_catalog.dead_letters WHERE reason = 'late'").await;
    assert_eq!(late[0][0], "0");
    // The direct join keeps only rows within the watermarks' reach (about the last 30
    // seconds of each stream), not every row.
    // So do the interval joins (their rows, their expiry indexes and recorded watermarks),
    // and the event-time temporal join (rows not yet final, versions still needed).
    for view in ["public.same_second", "public.within_five", "public.answered", "public.versioned"] {
        let (_, operators) = state_rows(&client, view).await;
        let kept: u64 = operators.iter().map(|&(_, rows)| rows).sum();
        assert!(kept * 3 < inserted as u64, "{view} keeps {kept} of {inserted} rows: {operators:?}");
    }
}
