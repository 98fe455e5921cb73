//! Differential test of materialized views: random INSERT / UPDATE / DELETE sequences over
//! three tables (NULLs, duplicate rows, key updates, deletes of the current extremes),
//! and after every FLUSH each view must equal its query evaluated in batch by DataFusion
//! over the current tables. Midway the server restarts and the views must resume.
//!
//! Where PostgreSQL answers (127.0.0.1:5432, user postgres, as on these machines), it is a
//! second oracle: every change runs there too (and must succeed or fail as in Sabot), and
//! each view whose query Postgres also runs must equal Postgres' answer for it.

use tokio_postgres::Client;

use crate::differential::Random;
use sabot::Config;

use crate::harness::{TestServer, rows, test_config};

/// (name, CREATE MATERIALIZED VIEW query, the same query over base tables only).
const VIEWS: &[(&str, &str, Option<&str>)] = &[
    (
        "filter_project",
        "SELECT id, v * 2 AS v2, CASE WHEN v > 50 THEN 'hi' ELSE 'lo' END AS band, COALESCE(s, 'none') AS s2, \
         upper(s) AS su, length(s) AS l, CAST(v AS TEXT) AS vt FROM a WHERE v IS NULL OR v % 3 <> 0",
        None,
    ),
    (
        "agg_basic",
        "SELECT g, count(*) AS n, count(v) AS nv, sum(v) AS sv, min(v) AS mn, max(v) AS mx FROM a GROUP BY g",
        None,
    ),
    ("agg_having", "SELECT g, sum(v) AS sv FROM a GROUP BY g HAVING count(*) > 1", None),
    ("agg_avg", "SELECT g, avg(v) AS av FROM a GROUP BY g", None),
    ("agg_distinct", "SELECT g, count(DISTINCT v) AS dv, count(DISTINCT s) AS ds FROM a GROUP BY g", None),
    (
        "agg_bool_string",
        "SELECT g, bool_and(v > 10) AS all_big, bool_or(v > 90) AS any_huge, string_agg(s, ',' ORDER BY s) AS ss \
         FROM a GROUP BY g",
        None,
    ),
    (
        "agg_filtered",
        "SELECT g, count(*) FILTER (WHERE v > 50) AS big, sum(v) FILTER (WHERE s IS NOT NULL) AS sv, \
         min(v) FILTER (WHERE s = 'x') AS mx, count(DISTINCT s) FILTER (WHERE v < 50) AS ds FROM a GROUP BY g",
        None,
    ),
    (
        "agg_ordered_lists",
        "SELECT g, array_agg(v ORDER BY v DESC, id) AS vs, string_agg(s, '/' ORDER BY id DESC) AS ss, \
         first_value(s ORDER BY v NULLS FIRST, id) AS fs, last_value(v ORDER BY s, id) AS lv FROM a GROUP BY g",
        None,
    ),
    (
        "agg_bits_spread",
        "SELECT g, bit_and(v) AS ba, bit_or(v) AS bo, bit_xor(v) AS bx, var_pop(v) AS vp, stddev_samp(v) AS ss \
         FROM a GROUP BY g",
        None,
    ),
    (
        "agg_ordered_sets",
        "SELECT g, percentile_cont(0.5) WITHIN GROUP (ORDER BY v) AS med, \
         percentile_disc(0.25) WITHIN GROUP (ORDER BY v DESC) AS q, mode() WITHIN GROUP (ORDER BY s) AS ms \
         FROM a GROUP BY g",
        None,
    ),
    (
        "agg_ordered_sets_global",
        "SELECT percentile_cont(0.9) WITHIN GROUP (ORDER BY v) AS p90, mode() WITHIN GROUP (ORDER BY v) AS mv FROM a",
        None,
    ),
    (
        "agg_rollup",
        "SELECT g, s, count(*) AS n, sum(v) AS sv, grouping(g, s) AS gid FROM a GROUP BY ROLLUP (g, s)",
        None,
    ),
    ("agg_cube", "SELECT g, s, max(v) AS mx FROM a GROUP BY CUBE (g, s)", None),
    (
        "agg_distinct_mixed",
        "SELECT g, sum(DISTINCT v) AS sv, avg(DISTINCT v) AS av, count(DISTINCT s) AS cs, \
         array_agg(DISTINCT s ORDER BY s) AS ss, sum(v) AS total FROM a GROUP BY g",
        None,
    ),
    ("agg_global", "SELECT count(*) AS n, sum(v) AS sv, max(v) AS mx, min(s) AS ms FROM a", None),
    ("agg_global_filtered", "SELECT count(*) AS n, avg(w) AS aw FROM b WHERE w > 8", None),
    (
        "agg_expr_keys",
        "SELECT g % 2 AS parity, s IS NULL AS no_s, sum(v) AS sv FROM a GROUP BY g % 2, s IS NULL",
        None,
    ),
    ("distinct_rows", "SELECT DISTINCT g, s FROM a", None),
    // Over an append-only table min and max keep only their extreme (no value table).
    (
        "append_only_extremes",
        "SELECT g, min(v) AS lo, max(v) AS hi, max(s) AS ms, count(*) AS n FROM e GROUP BY g",
        None,
    ),
    ("append_only_global", "SELECT min(v) AS lo, max(s) AS ms, count(v) AS nv FROM e", None),
    ("inner_join", "SELECT a.id, b.id AS bid, a.v + b.w AS t FROM a JOIN b ON a.g = b.g", None),
    ("left_join", "SELECT a.id, b.w FROM a LEFT JOIN b ON a.g = b.g", None),
    ("right_join", "SELECT a.v, b.id FROM a RIGHT JOIN b ON a.g = b.g", None),
    ("full_join", "SELECT a.id, b.id AS bid FROM a FULL JOIN b ON a.g = b.g", None),
    ("multi_join", "SELECT a.id, b.id AS bid, c.y FROM a JOIN b ON a.g = b.g JOIN c ON b.w = c.x", None),
    ("self_join", "SELECT x.id, y.id AS yid FROM a x JOIN a y ON x.g = y.g AND x.id < y.id", None),
    ("residual_join", "SELECT a.id, b.id AS bid FROM a JOIN b ON a.g = b.g AND a.v > b.w * 10", None),
    ("left_join_residual", "SELECT a.id, b.id AS bid FROM a LEFT JOIN b ON a.g = b.g AND b.w > 5", None),
    ("semi_exists", "SELECT id, v FROM a WHERE EXISTS (SELECT 1 FROM b WHERE b.g = a.g AND b.w > 5)", None),
    ("anti_not_exists", "SELECT id FROM a WHERE NOT EXISTS (SELECT 1 FROM b WHERE b.g = a.g)", None),
    ("semi_in", "SELECT id FROM a WHERE g IN (SELECT x FROM c)", None),
    ("anti_not_in", "SELECT id FROM a WHERE g NOT IN (SELECT x FROM c)", None),
    ("except_distinct", "SELECT g FROM a EXCEPT SELECT g FROM b", None),
    ("intersect_all", "SELECT g FROM a INTERSECT ALL SELECT g FROM b", None),
    ("null_safe_join", "SELECT a.id, b.id AS bid FROM a JOIN b ON a.g IS NOT DISTINCT FROM b.g", None),
    ("cross_join_residual", "SELECT a.id, b.id AS bid FROM a CROSS JOIN b WHERE a.v > b.w * 9", None),
    // Tests against a subquery's rows (sql::quantified), three-valued.
    (
        "quantified",
        "SELECT id, v > ALL (SELECT w FROM b WHERE b.g = a.g) AS above, v < ANY (SELECT w FROM b) AS below FROM a",
        None,
    ),
    (
        "membership_select",
        "SELECT id, g IN (SELECT x FROM c) AS listed, EXISTS (SELECT 1 FROM b WHERE b.g = a.g) AS has_b FROM a",
        None,
    ),
    ("all_filter", "SELECT id FROM a WHERE v >= ALL (SELECT w FROM b WHERE b.g = a.g)", None),
    ("to_char_hours", "SELECT to_char(t, 'YYYY-MM-DD HH24') AS hour, count(*) AS n FROM w GROUP BY 1", None),
    (
        "scalar_subqueries",
        "SELECT id, v - (SELECT min(v) AS lo FROM a) AS above FROM a WHERE v > (SELECT avg(w) AS mean FROM b)",
        None,
    ),
    (
        "values_join",
        "SELECT a.id, v.label FROM a JOIN (VALUES (0, 'zero'), (1, 'one'), (2, 'two')) v(k, label) ON a.g = v.k",
        None,
    ),
    ("constant_union", "SELECT g FROM a UNION ALL SELECT 7 UNION ALL SELECT NULL", None),
    ("series_rows", "SELECT id, generate_series(1, g) AS i FROM a", None),
    (
        "split_rows",
        "SELECT id, v, unnest(string_to_array(s, 'b')) AS part, generate_series(0, g) AS i FROM a",
        None,
    ),
    (
        "array_values",
        "SELECT id, ARRAY[g, v] AS pair, string_to_array(s, 'b') AS parts FROM a WHERE ARRAY[g] <@ ARRAY[0, 1, 2]",
        None,
    ),
    ("union_all", "SELECT g FROM a UNION ALL SELECT g FROM b", None),
    ("union_distinct", "SELECT g FROM a UNION SELECT x FROM c", None),
    ("top_n", "SELECT id, v FROM a ORDER BY v DESC NULLS LAST, id LIMIT 3", None),
    ("top_n_offset", "SELECT id, v FROM a ORDER BY v, id LIMIT 2 OFFSET 1", None),
    // A group keeps about 2 × (offset + limit) + 16 rows in memory: the deletes of the
    // top rows make this one read on from its state table.
    ("top_1", "SELECT id, v FROM a ORDER BY v DESC NULLS LAST, id LIMIT 1", None),
    ("top_1_append_only", "SELECT v, s FROM e ORDER BY v DESC NULLS LAST, s LIMIT 1", None),
    (
        "group_top_n",
        "SELECT g, id, v, rn FROM (SELECT g, id, v, ROW_NUMBER() OVER (PARTITION BY g ORDER BY v DESC, id) AS rn FROM a) t \
         WHERE rn <= 2",
        None,
    ),
    (
        "agg_over_join",
        "SELECT b.g, count(*) AS n, sum(a.v) AS s FROM a JOIN b ON a.g = b.g GROUP BY b.g",
        None,
    ),
    ("bag_counts", "SELECT x, count(*) AS n, sum(y) AS sy FROM c GROUP BY x", None),
    ("bag_rows", "SELECT x, y FROM c WHERE y > 0", None),
    // SQL functions, inlined: an expression body, a STRICT one, and a query body read as
    // a correlated subquery.
    (
        "sql_functions",
        "SELECT g, sum(scaled(v)) AS s, max(tag(s)) AS t, count(scaled(v, 3)) AS n FROM a GROUP BY g",
        None,
    ),
    ("sql_function_query", "SELECT a.id, b_count(a.g) AS n FROM a", None),
    (
        "view_on_view",
        "SELECT g, n * 10 AS n10, mx FROM agg_basic WHERE n > 1",
        Some(
            "SELECT g, n * 10 AS n10, mx FROM (SELECT g, count(*) AS n, max(v) AS mx FROM a GROUP BY g) s WHERE n > 1",
        ),
    ),
    // Window table functions over w, whose event times arrive out of order, move between
    // windows when updated, and are sometimes NULL.
    (
        "tumble_agg",
        "SELECT k, window_start, window_end, count(*) AS n, sum(v) AS sv, max(v) AS mx \
         FROM TUMBLE(w, t, INTERVAL '10' SECOND) GROUP BY k, window_start, window_end",
        None,
    ),
    (
        "hop_agg",
        "SELECT window_start, count(*) AS n, min(v) AS mn FROM HOP(w, t, INTERVAL '5' SECOND, INTERVAL '15' SECOND) \
         GROUP BY window_start",
        None,
    ),
    (
        "cumulate_agg",
        "SELECT window_start, window_end, count(*) AS n FROM CUMULATE(w, t, INTERVAL '5' SECOND, INTERVAL '20' SECOND) \
         GROUP BY window_start, window_end",
        None,
    ),
    (
        "hop_rows",
        "SELECT id, window_start, window_end, v FROM HOP(w, t, INTERVAL '10' SECOND, INTERVAL '20' SECOND, INTERVAL '3' SECOND) \
         WHERE v > 2",
        None,
    ),
    (
        "view_on_view_join",
        "SELECT l.id, l.w, v.sv FROM left_join l JOIN agg_basic v ON l.w = v.g WHERE l.w IS NOT NULL",
        None,
    ),
];

async fn create_tables(client: &Client) {
    create_tables_in(client, " APPEND ONLY").await;
}

/// The tables; `append_only` marks e (Sabot's `APPEND ONLY`; nothing in Postgres).
async fn create_tables_in(client: &Client, append_only: &str) {
    client
        .batch_execute(&format!(
            "CREATE TABLE a (id INT PRIMARY KEY, g INT, v INT, s TEXT);
             CREATE TABLE b (id INT PRIMARY KEY, g INT, w INT);
             CREATE TABLE c (x INT, y INT);
             CREATE TABLE e (g INT, v INT, s TEXT){append_only};
             CREATE TABLE w (id INT PRIMARY KEY, k INT, v INT, t TIMESTAMP);
             CREATE FUNCTION scaled(x int, by int DEFAULT 2) RETURNS int LANGUAGE SQL RETURN x * by + 1;
             CREATE FUNCTION tag(text) RETURNS text LANGUAGE SQL STRICT AS 'SELECT upper($1) || ''!''';
             CREATE FUNCTION b_count(k int) RETURNS bigint LANGUAGE SQL AS 'SELECT count(*) FROM b WHERE b.g = k';"
        ))
        .await
        .unwrap();
}

fn value(random: &mut Random, range: u64, null_one_in: u64) -> String {
    if random.below(null_one_in) == 0 { "NULL".into() } else { random.below(range).to_string() }
}

fn text(random: &mut Random) -> String {
    match random.below(5) {
        0 => "NULL".into(),
        n => format!("'{}'", ["x", "ab", "b", "abc"][n as usize - 1]),
    }
}

/// An event time within two minutes, out of order; one in eight is NULL.
fn event_time(random: &mut Random) -> String {
    match random.below(8) {
        0 => "NULL".into(),
        _ => {
            let second = random.below(120);
            format!("'2026-01-01 00:{:02}:{:02}'", second / 60, second % 60)
        }
    }
}

/// One random change; statements that fail (a key collision) change nothing.
async fn step(client: &Client, oracle: Option<&Client>, random: &mut Random, next_id: &mut i64) {
    let id = random.below(*next_id as u64 + 1);
    let sql = match random.below(18) {
        0..=2 => {
            *next_id += 1;
            let (g, v, s) = (value(random, 4, 6), value(random, 101, 8), text(random));
            // The append-only table e gets every row a gets, and keeps it.
            format!("INSERT INTO a VALUES ({next_id}, {g}, {v}, {s}); INSERT INTO e VALUES ({g}, {v}, {s})")
        }
        3 => format!("UPDATE a SET v = {} WHERE id = {id}", value(random, 101, 8)),
        4 => format!("UPDATE a SET g = {}, s = {} WHERE id = {id}", value(random, 4, 6), text(random)),
        5 => format!("UPDATE a SET id = id + {} WHERE id = {id}", 1 + random.below(3)),
        6 => format!("DELETE FROM a WHERE id = {id}"),
        7 => "DELETE FROM a WHERE v = (SELECT max(v) FROM a)".into(),
        8 => format!(
            "INSERT INTO b VALUES ({}, {}, {})",
            random.below(30),
            value(random, 4, 6),
            value(random, 11, 8)
        ),
        9 => format!(
            "UPDATE b SET w = {}, g = {} WHERE id = {}",
            value(random, 11, 8),
            value(random, 4, 6),
            random.below(30)
        ),
        10 => format!("DELETE FROM b WHERE id = {}", random.below(30)),
        11 => {
            let row = format!("({}, {})", value(random, 11, 5), value(random, 5, 5));
            format!("INSERT INTO c VALUES {row}, {row}")
        }
        12 => format!("DELETE FROM c WHERE x = {}", random.below(11)),
        13 | 14 => format!(
            "INSERT INTO w VALUES ({}, {}, {}, {})",
            random.below(40),
            value(random, 3, 6),
            value(random, 10, 8),
            event_time(random)
        ),
        15 => format!("UPDATE w SET t = {} WHERE id = {}", event_time(random), random.below(40)),
        16 => format!("DELETE FROM w WHERE id = {}", random.below(40)),
        _ => format!("UPDATE c SET y = y + 1 WHERE x = {}", random.below(11)),
    };
    let ours = client.simple_query(&sql).await;
    if let Some(postgres) = oracle {
        let theirs = postgres.simple_query(&sql).await;
        assert_eq!(
            ours.is_ok(),
            theirs.is_ok(),
            "{sql}: Sabot {:?}, Postgres {:?}",
            ours.err(),
            theirs.err()
        );
    }
}

/// Views whose queries Postgres does not run (window table functions, first_value /
/// last_value aggregates, views over views).
const NOT_IN_POSTGRES: &[&str] =
    &["tumble_agg", "hop_agg", "cumulate_agg", "hop_rows", "agg_ordered_lists", "view_on_view_join"];

/// PostgreSQL as an oracle, when it answers: a fresh database `sabot_oracle_<name>`
/// (byte-order collation, as Sabot compares text) with the test's tables.
async fn postgres_oracle(name: &str) -> Option<Client> {
    let connect = |database: &str| {
        format!("host=127.0.0.1 port=5432 user=postgres dbname={database} connect_timeout=2")
    };
    let (admin, connection) =
        tokio_postgres::connect(&connect("postgres"), tokio_postgres::NoTls).await.ok()?;
    tokio::spawn(connection);
    let database = format!("sabot_oracle_{name}");
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {database}")).await.ok()?;
    admin
        .batch_execute(&format!("CREATE DATABASE {database} TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'"))
        .await
        .ok()?;
    let (client, connection) =
        tokio_postgres::connect(&connect(&database), tokio_postgres::NoTls).await.ok()?;
    tokio::spawn(connection);
    create_tables_in(&client, "").await;
    Some(client)
}

/// Rows as sorted text lines; numbers rounded so that sums in different orders compare.
fn normalized(rows: Vec<Vec<String>>) -> Vec<String> {
    let mut lines: Vec<String> = rows
        .into_iter()
        .map(|row| {
            row.into_iter()
                // Numbers as floats: Postgres' avg of integers is a numeric (`30.0000000000000000`).
                .map(|cell| match cell.parse::<f64>() {
                    Ok(f) if f.is_finite() => format!("{f:.6}"),
                    _ => cell,
                })
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    lines.sort();
    lines
}

async fn check(client: &Client, oracle: Option<&Client>, at: &str) {
    for (name, query, batch) in VIEWS {
        let query = batch.unwrap_or(query);
        let expected = normalized(rows(client, query).await);
        for suffix in ["", "_serial"] {
            let view = normalized(rows(client, &format!("SELECT * FROM {name}{suffix}")).await);
            assert_eq!(view, expected, "view {name}{suffix} after {at}: {query}");
        }
        if let Some(postgres) = oracle.filter(|_| !NOT_IN_POSTGRES.contains(name)) {
            let answer = normalized(rows(postgres, query).await);
            assert_eq!(expected, answer, "view {name} after {at} differs from Postgres' answer: {query}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_equal_their_queries_under_random_changes() {
    views_equal_their_queries(Config::default().operator_cache_bytes_max, None).await;
}

/// The same, with operator caches of 4 KiB (a few groups or join keys each: state is
/// evicted and reloaded all the time) and 3 instances of every stateful operator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_equal_their_queries_with_a_tiny_cache_budget() {
    views_equal_their_queries(4096, Some(3)).await;
}

/// Creates every view twice — hash-partitioned (`parallelism`, or 2 or 3 instances per
/// stateful operator) and with single instances — and checks them against their queries
/// through random changes and a restart.
async fn views_equal_their_queries(operator_cache_bytes_max: usize, parallelism: Option<usize>) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config { data_dir: dir.path().to_path_buf(), operator_cache_bytes_max, ..test_config() };
    let server = TestServer::start_with(config.clone()).await;
    let client = server.client().await;
    create_tables(&client).await;
    let oracle = postgres_oracle(&format!("views_{operator_cache_bytes_max}")).await;
    if oracle.is_none() {
        eprintln!("no PostgreSQL at 127.0.0.1:5432: views are checked against Sabot's batch queries only");
    }
    let oracle = oracle.as_ref();
    let mut random = Random(0x007e_570f_5ab0_71e5);
    let mut next_id = 0;
    // Some rows exist before the views: they are backfilled.
    for _ in 0..30 {
        step(&client, oracle, &mut random, &mut next_id).await;
    }
    for (i, (name, query, _)) in VIEWS.iter().enumerate() {
        for (suffix, parallelism) in [("", parallelism.unwrap_or(2 + i % 2)), ("_serial", 1)] {
            client
                .batch_execute(&format!(
                    "SET streaming_parallelism = {parallelism}; CREATE MATERIALIZED VIEW {name}{suffix} AS {query}"
                ))
                .await
                .unwrap_or_else(|e| panic!("{name}{suffix}: {e}"));
        }
    }
    check(&client, oracle, "the backfill").await;
    client.batch_execute("SET implicit_flush = off").await.unwrap();
    for round in 0..24 {
        for _ in 0..1 + random.below(12) {
            step(&client, oracle, &mut random, &mut next_id).await;
        }
        client.batch_execute("FLUSH").await.unwrap();
        check(&client, oracle, &format!("round {round}")).await;
        if round == 12 {
            drop(client);
            server.stop().await;
            let restarted = TestServer::start_with(config).await;
            let client = restarted.client().await;
            check(&client, oracle, "the restart").await;
            return continue_after_restart(restarted, client, oracle, random, next_id).await;
        }
    }
}

async fn continue_after_restart(
    server: TestServer,
    client: Client,
    oracle: Option<&Client>,
    mut random: Random,
    mut next_id: i64,
) {
    client.batch_execute("SET implicit_flush = off").await.unwrap();
    for round in 13..24 {
        for _ in 0..1 + random.below(12) {
            step(&client, oracle, &mut random, &mut next_id).await;
        }
        client.batch_execute("FLUSH").await.unwrap();
        check(&client, oracle, &format!("round {round} (after the restart)")).await;
    }
    // The sequence must leave the views something to compare.
    let mut empty = Vec::new();
    for (name, _, _) in VIEWS {
        if rows(&client, &format!("SELECT * FROM {name}")).await.is_empty() {
            empty.push(*name);
        }
    }
    assert!(empty.len() <= 3, "views left empty: {empty:?}");
    drop(client);
    server.stop().await;
}

/// A view created while another session writes: the backfill and the change stream meet
/// at one epoch, so no row is missed and none is counted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_created_under_concurrent_writes_misses_nothing() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.batch_execute("CREATE TABLE t (id INT PRIMARY KEY, v INT)").await.unwrap();
    let writer = server.client().await;
    let streaming = tokio::spawn(async move {
        // implicit_flush off: writes are pending in open epochs when the view is created.
        writer.batch_execute("SET implicit_flush = off").await.unwrap();
        for i in 0..3000 {
            let sql = match i % 5 {
                4 => format!("DELETE FROM t WHERE id = {}", i - 2),
                3 => format!("UPDATE t SET v = v + 1 WHERE id = {}", i - 1),
                _ => format!("INSERT INTO t VALUES ({i}, {})", i % 17),
            };
            writer.batch_execute(&sql).await.unwrap();
        }
        writer.batch_execute("FLUSH").await.unwrap();
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let query = "SELECT count(*) AS n, sum(v) AS s, count(DISTINCT id) AS d FROM t";
    client.batch_execute(&format!("CREATE MATERIALIZED VIEW stats AS {query}")).await.unwrap();
    client.batch_execute("CREATE MATERIALIZED VIEW ids AS SELECT id, v FROM t").await.unwrap();
    streaming.await.unwrap();
    client.batch_execute("FLUSH").await.unwrap();
    assert_eq!(rows(&client, "SELECT * FROM stats").await, rows(&client, query).await);
    let view = normalized(rows(&client, "SELECT * FROM ids").await);
    assert_eq!(view, normalized(rows(&client, "SELECT id, v FROM t").await));
    assert!(view.len() > 1000, "the writer ran alongside the backfill");
}

/// Channels of one message: every send waits for its receiver, so backpressure reaches
/// the writers on every chunk. Self-joins and unions read one table twice, and aligned
/// barriers block one input while the other is drained: none of it may deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_channels_do_not_deadlock() {
    let config = sabot::Config {
        ephemeral: true,
        change_channel_messages_max: 1,
        listen: "127.0.0.1:0".parse().unwrap(),
        ..sabot::Config::default()
    };
    let server = TestServer::start_with(config).await;
    let client = server.client().await;
    client.batch_execute("CREATE TABLE t (id INT PRIMARY KEY, g INT, v INT)").await.unwrap();
    let views = [
        ("pairs", "SELECT x.id, y.id AS yid FROM t x JOIN t y ON x.g = y.g AND x.v < y.v"),
        ("both", "SELECT g FROM t UNION ALL SELECT v % 3 FROM t"),
        ("sums", "SELECT g, sum(v) AS s, count(*) AS n FROM t GROUP BY g"),
        ("on_sums", "SELECT s.g, s.n, t.id FROM sums s JOIN t ON s.g = t.g WHERE t.v > 40"),
    ];
    client.batch_execute("SET streaming_parallelism = 3").await.unwrap();
    for (name, query) in views {
        client.batch_execute(&format!("CREATE MATERIALIZED VIEW {name} AS {query}")).await.unwrap();
    }
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let addr = server.addr;
            tokio::spawn(async move {
                let client = crate::harness::connect(addr).await;
                if w == 0 {
                    client.batch_execute("SET implicit_flush = off").await.unwrap();
                }
                for i in 0..60 {
                    let id = w * 1000 + i;
                    let values: Vec<String> = (0..20)
                        .map(|k| format!("({}, {}, {})", id * 100 + k, k % 4, (id + k) % 50))
                        .collect();
                    client
                        .batch_execute(&format!("INSERT INTO t VALUES {}", values.join(", ")))
                        .await
                        .unwrap();
                    client
                        .batch_execute(&format!("UPDATE t SET v = v + 1 WHERE id % 7 = {}", i % 7))
                        .await
                        .unwrap();
                    client.batch_execute(&format!("DELETE FROM t WHERE id % 13 = {}", i % 13)).await.unwrap();
                }
            })
        })
        .collect();
    let all =
        tokio::time::timeout(std::time::Duration::from_secs(240), futures::future::join_all(writers)).await;
    assert!(all.is_ok(), "writers stalled: a deadlock between channels and barriers");
    client.batch_execute("FLUSH").await.unwrap();
    for (name, query) in views {
        let query =
            query.replace("FROM sums s", "FROM (SELECT g, sum(v) AS s, count(*) AS n FROM t GROUP BY g) s");
        assert_eq!(
            normalized(rows(&client, &format!("SELECT * FROM {name}")).await),
            normalized(rows(&client, &query).await),
            "{name}"
        );
    }
}
