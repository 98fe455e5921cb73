//! UNIQUE constraints beyond what an slt file shows: concurrent transaction blocks taking
//! the same value (one commits, the other fails with 23505), the values surviving a
//! restart, and psql's `\d` listing them as Postgres' psql does.

use crate::harness::{TestServer, error_code, rows};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_blocks_cannot_both_take_a_value() {
    let server = TestServer::start().await;
    let first = server.client().await;
    let second = server.client().await;
    first.batch_execute("CREATE TABLE acct (id INT PRIMARY KEY, email TEXT UNIQUE)").await.unwrap();
    first.batch_execute("BEGIN; INSERT INTO acct VALUES (1, 'a@x')").await.unwrap();
    second.batch_execute("BEGIN; INSERT INTO acct VALUES (2, 'a@x')").await.unwrap();
    first.batch_execute("COMMIT").await.unwrap();
    // The second block saw no conflict when it wrote; its COMMIT finds the committed value.
    let error = second.batch_execute("COMMIT").await.unwrap_err();
    assert_eq!(error.code().map(|c| c.code()), Some("23505"), "{error:?}");
    assert_eq!(rows(&first, "SELECT id, email FROM acct").await, [["1", "a@x"]]);
    // A value freed by a DELETE earlier in the same block can be taken by it.
    first
        .batch_execute("BEGIN; DELETE FROM acct WHERE id = 1; INSERT INTO acct VALUES (3, 'a@x'); COMMIT")
        .await
        .unwrap();
    assert_eq!(rows(&first, "SELECT id FROM acct WHERE email = 'a@x'").await, [["3"]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_values_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start_in(dir.path()).await;
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE acct (id INT PRIMARY KEY, email TEXT UNIQUE, n INT);
             INSERT INTO acct SELECT v, 'u' || v, v * 1 FROM generate_series(1, 100) AS s(v);
             CREATE UNIQUE INDEX acct_n ON acct (n);
             UPDATE acct SET email = 'moved' WHERE id = 7;",
        )
        .await
        .expect("setup");
    drop(client);
    server.stop().await;

    let server = TestServer::start_in(dir.path()).await;
    let client = server.client().await;
    assert_eq!(error_code(&client, "INSERT INTO acct VALUES (200, 'u5', 200)").await, "23505");
    assert_eq!(error_code(&client, "INSERT INTO acct VALUES (200, 'moved', 200)").await, "23505");
    assert_eq!(error_code(&client, "INSERT INTO acct VALUES (200, 'new', 50)").await, "23505");
    // The value id 7 gave up is free.
    client.batch_execute("INSERT INTO acct VALUES (201, 'u7', 201)").await.expect("a freed value");
    client.batch_execute("ALTER TABLE acct DROP CONSTRAINT acct_email_key").await.unwrap();
    client.batch_execute("INSERT INTO acct VALUES (202, 'u8', 202)").await.expect("no constraint now");
    assert_eq!(rows(&client, "SELECT count(*) FROM acct WHERE email = 'u8'").await, [["2"]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_lists_unique_constraints_and_indexes() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE acct (id INT PRIMARY KEY, email TEXT UNIQUE, a INT, b INT,
                                CONSTRAINT acct_ab UNIQUE NULLS NOT DISTINCT (a, b));
             CREATE UNIQUE INDEX acct_b_idx ON acct (b);",
        )
        .await
        .unwrap();
    let port = server.addr.port();
    let (out, err) =
        tokio::task::spawn_blocking(move || crate::harness::psql_session(port, &[], &["\\d acct"]))
            .await
            .unwrap();
    // As psql prints them against Postgres 15.
    let expected = "Indexes:\n    \"acct_pkey\" PRIMARY KEY, btree (id)\n    \
                    \"acct_ab\" UNIQUE CONSTRAINT, btree (a, b) NULLS NOT DISTINCT\n    \
                    \"acct_b_idx\" UNIQUE, btree (b)\n    \
                    \"acct_email_key\" UNIQUE CONSTRAINT, btree (email)\n";
    assert!(out.contains(expected), "{out}{err}");
}
