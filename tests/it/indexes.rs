//! Indexes: batch queries read through them (EXPLAIN shows it) and get the same rows as a
//! full scan; they are maintained through DML, survive a restart, and psql lists them.

use crate::harness::{TestServer, psql_session, rows};

/// The physical plan of `query`, as one string.
async fn plan(client: &tokio_postgres::Client, query: &str) -> String {
    let explained = rows(client, &format!("EXPLAIN {query}")).await;
    explained.into_iter().map(|row| row.join(" ")).collect::<Vec<_>>().join("\n")
}

async fn sorted(client: &tokio_postgres::Client, query: &str) -> Vec<Vec<String>> {
    let mut found = rows(client, query).await;
    found.sort();
    found
}

async fn fill(client: &tokio_postgres::Client) {
    client
        .batch_execute(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, a INT, b TEXT, c DOUBLE PRECISION);
             INSERT INTO t SELECT v, v % 37, 'k' || (v % 11), v / 7.0 FROM generate_series(1, 3000) AS s(v);
             INSERT INTO t VALUES (3001, NULL, NULL, NULL);
             CREATE INDEX t_a ON t (a);
             CREATE INDEX t_b_c ON t (b, c) INCLUDE (a);",
        )
        .await
        .expect("setup");
}

/// Each query with an index-usable filter, and the index its plan must use (None: none).
const QUERIES: &[(&str, Option<&str>)] = &[
    ("SELECT * FROM t WHERE a = 5", Some("t_a")),
    ("SELECT id, b FROM t WHERE a IN (1, 2, 36)", Some("t_a")),
    ("SELECT id FROM t WHERE a > 30", Some("t_a")),
    ("SELECT id FROM t WHERE a >= 3 AND a < 5", Some("t_a")),
    ("SELECT id FROM t WHERE a BETWEEN 10 AND 12 AND id < 500", Some("t_a")),
    ("SELECT id FROM t WHERE 36 <= a AND id > 0", Some("t_a")),
    ("SELECT id, c FROM t WHERE b = 'k3'", Some("t_b_c")),
    ("SELECT id FROM t WHERE b = 'k3' AND c > 100 AND c <= 200", Some("t_b_c")),
    ("SELECT id FROM t WHERE b IN ('k1', 'k10') AND c < 10", Some("t_b_c")),
    ("SELECT id FROM t WHERE b > 'k8'", Some("t_b_c")),
    // Not the leading column of any index: a full scan.
    ("SELECT id FROM t WHERE c > 400", None),
    // The primary key pins the row: no index needed.
    ("SELECT id FROM t WHERE id = 7 AND a = 7", None),
    ("SELECT count(*) FROM t WHERE a IS NULL", None),
];

#[tokio::test]
async fn queries_read_through_indexes_and_match_a_full_scan() {
    let server = TestServer::start().await;
    let client = server.client().await;
    fill(&client).await;
    // Changes after the indexes were built are in them too.
    client
        .batch_execute(
            "UPDATE t SET a = 36 WHERE id % 100 = 0;
             DELETE FROM t WHERE id % 13 = 0;
             INSERT INTO t VALUES (5000, 5, 'k3', 150.5);",
        )
        .await
        .expect("changes");
    for (query, index) in QUERIES {
        let explained = plan(&client, query).await;
        match index {
            Some(index) => assert!(
                explained.contains(&format!("IndexScanExec: table=public.t, index={index}")),
                "{query} should read through {index}:\n{explained}"
            ),
            None => {
                assert!(!explained.contains("IndexScanExec"), "{query} should not use an index:\n{explained}")
            }
        }
        // The same filter, hidden from the scan (a computed column is never an index key).
        let full = query
            .replace(" a ", " (a + 0) ")
            .replace("WHERE b", "WHERE (b || '')")
            .replace("WHERE c", "WHERE (c + 0)");
        assert_ne!(&full, query, "the query can be rewritten");
        assert!(!plan(&client, &full).await.contains("IndexScanExec"), "{full} scans everything");
        assert_eq!(sorted(&client, query).await, sorted(&client, &full).await, "{query}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexes_survive_a_restart_and_are_dropped_with_their_table() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start_in(dir.path()).await;
    let client = server.client().await;
    fill(&client).await;
    let before = sorted(&client, "SELECT id FROM t WHERE a = 5").await;
    drop(client);
    server.stop().await;

    let server = TestServer::start_in(dir.path()).await;
    let client = server.client().await;
    assert_eq!(sorted(&client, "SELECT id FROM t WHERE a = 5").await, before);
    client.batch_execute("INSERT INTO t VALUES (9000, 5, 'z', 1)").await.expect("insert");
    let after = sorted(&client, "SELECT id FROM t WHERE a = 5").await;
    assert_eq!(after.len(), before.len() + 1);
    assert!(plan(&client, "SELECT id FROM t WHERE a = 5").await.contains("index=t_a"));
    client.batch_execute("DROP TABLE t").await.expect("drop the table and its indexes");
    let left = rows(&client, "SELECT count(*) FROM pg_class WHERE relname IN ('t_a', 't_b_c')").await;
    assert_eq!(left, vec![vec!["0".to_string()]]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_lists_indexes() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE bid (id BIGINT PRIMARY KEY, auction BIGINT, price BIGINT);
             CREATE INDEX bid_auction ON bid (auction) INCLUDE (price);",
        )
        .await
        .expect("setup");
    let (out, err) = psql_session(server.addr.port(), &[], &["\\d bid", "\\di"]);
    assert!(err.is_empty(), "psql: {err}");
    assert!(out.contains("Indexes:"), "{out}");
    assert!(out.contains("\"bid_pkey\" PRIMARY KEY, btree (id)"), "{out}");
    assert!(out.contains("\"bid_auction\" btree (auction) INCLUDE (price)"), "{out}");
    let listed = out.lines().find(|l| l.contains("bid_auction") && l.contains("index")).unwrap_or_default();
    assert!(listed.contains("| bid"), "\\di names the table: {out}");
    server.stop().await;
}
