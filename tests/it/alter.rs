//! ALTER TABLE and RENAME with views over the changed relations: the views keep following
//! their inputs, survive a restart (their plans are checked against the stored ones), and
//! a change that would alter a view's plan is refused.

use crate::harness::{TestServer, error_code, rows, views_equal_batch};

const VIEWS: &[(&str, &str)] = &[
    ("per_a", "SELECT a, count(*) AS n, sum(b) AS total FROM t2 GROUP BY a"),
    ("positive", "SELECT x FROM u WHERE y > 0"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_tables_keep_their_views_working_across_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start_in(dir.path()).await;
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE t (id INT PRIMARY KEY, a INT, b BIGINT);
             CREATE TABLE u (x TEXT, y INT);
             INSERT INTO t SELECT v, v % 5, v * 1 FROM generate_series(1, 200) AS s(v);
             INSERT INTO u VALUES ('p', 1), ('q', -1), ('r', 2);
             CREATE MATERIALIZED VIEW per_a AS SELECT a, count(*) AS n, sum(b) AS total FROM t GROUP BY a;
             CREATE MATERIALIZED VIEW positive AS SELECT x FROM u WHERE y > 0;
             CREATE INDEX t_b ON t (b);
             CREATE MATERIALIZED VIEW everything AS SELECT * FROM t;",
        )
        .await
        .expect("setup");
    // A view of every column would gain one: the change is refused and names it.
    assert_eq!(error_code(&client, "ALTER TABLE t ADD COLUMN c TEXT").await, "2BP01");
    client.batch_execute("DROP MATERIALIZED VIEW everything").await.expect("drop");
    client
        .batch_execute(
            "ALTER TABLE t ADD COLUMN c TEXT DEFAULT 'x';
             ALTER TABLE u ADD COLUMN z INT DEFAULT 7;
             INSERT INTO t VALUES (201, 1, 1000, 'new');
             INSERT INTO u VALUES ('s', 3, 0);
             ALTER TABLE t DROP COLUMN c;
             ALTER TABLE t RENAME TO t2;
             UPDATE t2 SET b = b + 1 WHERE a = 2;
             DELETE FROM u WHERE x = 'p';",
        )
        .await
        .expect("alter and change");
    views_equal_batch(&client, VIEWS, "after the changes").await;
    assert_eq!(rows(&client, "SELECT z FROM u WHERE x = 'r'").await, [["7"]]);
    assert_eq!(rows(&client, "SELECT id FROM t2 WHERE b = 1000").await, [["201"]]);
    drop(client);
    server.stop().await;

    let server = TestServer::start_in(dir.path()).await;
    let client = server.client().await;
    views_equal_batch(&client, VIEWS, "after a restart").await;
    client
        .batch_execute("INSERT INTO t2 VALUES (300, 4, 5000); INSERT INTO u VALUES ('t', 9, 1)")
        .await
        .expect("writes after the restart");
    views_equal_batch(&client, VIEWS, "after writes since the restart").await;
    assert_eq!(rows(&client, "SELECT id FROM t2 WHERE b = 5000").await, [["300"]]);
    drop(client);
    server.stop().await;
}
