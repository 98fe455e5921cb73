//! Epochs under stress: writes go on while a slow view holds a commit back, and a failing
//! operator fails its epoch with the real error instead of hanging (issue 9, points 3
//! and 5). The server runs as a process with failpoints (`common::failpoint`).

use std::process::Stdio;
use std::time::Duration;

use crate::harness::{Process, connect, rows};

const BOUND: Duration = Duration::from_secs(60);

fn start(dir: &std::path::Path, failpoints: &str) -> Process {
    start_with(dir, failpoints, &[])
}

fn start_with(dir: &std::path::Path, failpoints: &str, args: &[&str]) -> Process {
    let gate = dir.join("gate");
    let gate = gate.to_str().expect("utf-8 path");
    Process::start_with(
        &dir.join("data"),
        args,
        &[("SABOT_FAILPOINTS", failpoints), ("SABOT_FAILPOINT_GATE", gate)],
        Stdio::null(),
    )
}

/// Table `a` and view `s`, its sums per key.
async fn create_sums(client: &tokio_postgres::Client) {
    client
        .batch_execute(
            "CREATE TABLE a (k INT, v INT);
             CREATE MATERIALIZED VIEW s AS SELECT k, sum(v) AS total FROM a GROUP BY k;",
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn writes_go_on_while_a_slow_view_holds_an_epoch_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "block:HashAgg");
    let client = connect(server.addr).await;
    client
        .batch_execute(
            "CREATE TABLE a (k INT, v INT); CREATE TABLE b (x INT);
             CREATE MATERIALIZED VIEW s AS SELECT k, sum(v) AS total FROM a GROUP BY k;",
        )
        .await
        .unwrap();
    // From now on the aggregate holds every barrier until the gate file is removed.
    std::fs::write(dir.path().join("gate"), b"").unwrap();
    client.batch_execute("SET implicit_flush = off; INSERT INTO a VALUES (1, 10)").await.unwrap();
    let flusher = connect(server.addr).await;
    let flush = tokio::spawn(async move { flusher.batch_execute("FLUSH").await });
    // Give the coordinator time to cut the epoch and get stuck in the view.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The writers are not locked by the commit in flight: both tables take writes.
    tokio::time::timeout(
        BOUND,
        client.batch_execute("INSERT INTO b VALUES (1); INSERT INTO a VALUES (2, 20)"),
    )
    .await
    .expect("writes are not held back by a slow view")
    .unwrap();
    assert!(!flush.is_finished(), "FLUSH waits for the view");

    std::fs::remove_file(dir.path().join("gate")).unwrap();
    tokio::time::timeout(BOUND, flush).await.expect("FLUSH returns").unwrap().unwrap();
    client.batch_execute("FLUSH").await.unwrap();
    assert_eq!(rows(&client, "SELECT k, total FROM s ORDER BY k").await, [["1", "10"], ["2", "20"]]);
    assert_eq!(rows(&client, "SELECT count(*) FROM b").await, [["1"]]);
}

#[tokio::test]
async fn an_epoch_a_view_never_acknowledges_fails_after_the_checkpoint_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), "block:HashAgg", &["--checkpoint-timeout-ms", "1500"]);
    let client = connect(server.addr).await;
    create_sums(&client).await;
    assert_eq!(rows(&client, "SHOW checkpoint_timeout_ms").await, [["1500"]]);
    std::fs::write(dir.path().join("gate"), b"").unwrap();
    let error = tokio::time::timeout(BOUND, client.batch_execute("INSERT INTO a VALUES (1, 10)"))
        .await
        .expect("the wait is bounded")
        .expect_err("the epoch fails");
    let db = error.as_db_error().expect("a database error");
    assert_eq!(db.code().code(), "58030");
    assert!(
        db.message().contains("not acknowledged within checkpoint_timeout_ms (1500 ms) by public.s"),
        "{}",
        db.message()
    );
    assert_eq!(rows(&client, "SELECT 1").await, [["1"]]);
    std::fs::remove_file(dir.path().join("gate")).unwrap();
}

#[tokio::test]
async fn writers_blocked_by_a_stuck_view_get_going_when_its_epoch_fails() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--checkpoint-timeout-ms", "1500", "--change-channel-messages-max", "1"];
    let server = start_with(dir.path(), "block:HashAgg", &args);
    let client = connect(server.addr).await;
    client
        .batch_execute(
            "CREATE TABLE a (k INT, v INT);
             CREATE MATERIALIZED VIEW s AS SELECT k, max(v) AS top FROM a GROUP BY k;
             SET implicit_flush = off;",
        )
        .await
        .unwrap();
    std::fs::write(dir.path().join("gate"), b"").unwrap();
    // The view stops taking changes at the next barrier: its one-message channels fill up
    // and the writer of `a` blocks on them, until the epoch fails and the views stop.
    // (max over a table that may retract keeps one phase: no PartialAgg absorbs the rows
    // before the exchange.)
    let writes = async {
        for i in 0..200 {
            if client.batch_execute(&format!("INSERT INTO a VALUES ({i}, 1)")).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(BOUND, writes).await.expect("blocked writers are released");
    let flush = tokio::time::timeout(BOUND, client.batch_execute("FLUSH")).await.expect("FLUSH returns");
    assert_eq!(flush.expect_err("writes are refused").code().map(|c| c.code()), Some("58030"));
    assert_eq!(rows(&client, "SELECT 1").await, [["1"]]);
    std::fs::remove_file(dir.path().join("gate")).unwrap();
}

/// The error a write gets when `operator` fails (`fail` or `panic` failpoint).
async fn failing_epoch(failpoint: &str) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), failpoint);
    let client = connect(server.addr).await;
    create_sums(&client).await;
    let error = tokio::time::timeout(BOUND, client.batch_execute("INSERT INTO a VALUES (1, 10)"))
        .await
        .expect("the failed epoch is reported, not waited for")
        .expect_err("the epoch fails");
    let db = error.as_db_error().expect("a database error");
    // The server still answers, reads work, and later writes are refused with the reason.
    assert_eq!(rows(&client, "SELECT 1").await, [["1"]]);
    assert_eq!(rows(&client, "SELECT count(*) FROM a").await, [["0"]]);
    let again = client.batch_execute("INSERT INTO a VALUES (2, 20)").await.expect_err("writes are refused");
    assert_eq!(again.code().map(|c| c.code()), Some("58030"));
    (db.code().code().to_string(), db.message().to_string())
}

#[tokio::test]
async fn a_failing_operator_fails_its_epoch_with_the_real_error() {
    let (code, message) = failing_epoch("fail:HashAgg").await;
    assert_eq!(code, "58030");
    assert!(
        message.contains("HashAgg of view public.s failed") && message.contains("failpoint fail:HashAgg"),
        "{message}"
    );
}

#[tokio::test]
async fn a_panicking_operator_fails_its_epoch_instead_of_hanging() {
    let (code, message) = failing_epoch("panic:HashAgg").await;
    assert_eq!(code, "58030");
    assert!(message.contains("panicked: failpoint panic:HashAgg"), "{message}");
}
