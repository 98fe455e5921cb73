//! SQL functions (`CREATE FUNCTION ... LANGUAGE SQL`): kept across a restart with the
//! views that inline them, and listed by psql's `\df` as Postgres lists them.

use crate::harness::{TestServer, error_code, rows, views_equal_batch};

const VIEWS: &[(&str, &str)] = &[
    ("totals", "SELECT customer, sum(net(amount, discount)) AS total FROM orders GROUP BY customer"),
    ("loud", "SELECT id, shout(customer) AS name FROM orders WHERE net(amount) > 50"),
];

const SETUP: &str = "CREATE TABLE orders (id INT PRIMARY KEY, customer TEXT, amount INT, discount INT);
     INSERT INTO orders VALUES (1, 'ann', 100, NULL), (2, 'bob', 250, 10), (3, 'ann', 40, 5);
     CREATE FUNCTION net(amount int, discount int DEFAULT 0) RETURNS int
         LANGUAGE SQL IMMUTABLE RETURN amount - coalesce(discount, 0);
     CREATE FUNCTION shout(text) RETURNS text LANGUAGE SQL STRICT AS $$ SELECT upper($1) || '!' $$;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_functions_survive_a_restart_with_the_views_that_use_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start_in(dir.path()).await;
    let client = server.client().await;
    client.batch_execute(SETUP).await.expect("setup");
    for (name, query) in VIEWS {
        client.batch_execute(&format!("CREATE MATERIALIZED VIEW {name} AS {query}")).await.expect("view");
    }
    client
        .batch_execute(
            "UPDATE orders SET discount = 20 WHERE id = 1; INSERT INTO orders VALUES (4, 'cy', 70, NULL)",
        )
        .await
        .expect("changes");
    views_equal_batch(&client, VIEWS, "before the restart").await;
    drop(client);
    server.stop().await;

    let server = TestServer::start_in(dir.path()).await;
    let client = server.client().await;
    views_equal_batch(&client, VIEWS, "after a restart").await;
    client
        .batch_execute("DELETE FROM orders WHERE id = 2; INSERT INTO orders VALUES (5, 'bob', 90, 1)")
        .await
        .expect("changes after the restart");
    views_equal_batch(&client, VIEWS, "after changes since the restart").await;
    assert_eq!(rows(&client, "SELECT net(7, 2), shout('a')").await, [["5", "A!"]]);
    // The views still use both functions: neither can go, nor change under them.
    assert_eq!(error_code(&client, "DROP FUNCTION net").await, "2BP01");
    assert_eq!(
        error_code(
            &client,
            "CREATE OR REPLACE FUNCTION shout(text) RETURNS text LANGUAGE SQL AS 'SELECT $1'"
        )
        .await,
        "2BP01"
    );
    client.batch_execute("DROP FUNCTION shout(text) CASCADE").await.expect("drop with its view");
    assert_eq!(error_code(&client, "SELECT * FROM loud").await, "42P01");
    drop(client);
    server.stop().await;

    let server = TestServer::start_in(dir.path()).await;
    let client = server.client().await;
    assert_eq!(error_code(&client, "SELECT shout('a')").await, "42883");
    views_equal_batch(&client, &VIEWS[..1], "after the drop and a restart").await;
    drop(client);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_lists_sql_functions_as_postgres_does() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.batch_execute(SETUP).await.expect("setup");
    let port = server.addr.port();
    let (out, err) = tokio::task::spawn_blocking(move || crate::harness::psql_session(port, &[], &["\\df"]))
        .await
        .unwrap();
    // What Postgres 15's psql prints for the same two functions.
    let expected = "                                   List of functions
 Schema | Name  | Result data type |            Argument data types             | Type 
--------+-------+------------------+--------------------------------------------+------
 public | net   | integer          | amount integer, discount integer DEFAULT 0 | func
 public | shout | text             | text                                       | func
(2 rows)

";
    assert_eq!(err, "");
    assert_eq!(out, expected, "{out}");
}
