//! Acknowledged writes survive `kill -9`; a failing statement applies nothing.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::{connect, error_code, rows};

/// The real `sabot` binary, serving a data directory on a free port.
struct Process {
    child: Child,
    addr: std::net::SocketAddr,
}

impl Process {
    fn start(dir: &std::path::Path) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sabot"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("sabot starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("sabot prints its address");
        let addr = line
            .trim()
            .rsplit(' ')
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        Process { child, addr }
    }

    fn kill_9(mut self) {
        let status =
            Command::new("kill").args(["-9", &self.child.id().to_string()]).status().expect("kill runs");
        assert!(status.success());
        let _ = self.child.wait();
    }

    fn signal(mut self, signal: &str) -> std::process::ExitStatus {
        Command::new("kill").args([signal, &self.child.id().to_string()]).status().expect("kill runs");
        self.child.wait().expect("sabot exits")
    }
}

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
