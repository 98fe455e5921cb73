//! Roles, SCRAM-SHA-256 passwords and TLS, with tokio-postgres, psql and psycopg.

use std::path::PathBuf;
use std::process::Command;

use sabot::Config;
use sabot::common::config::{AuthMode, Secret};

use crate::harness::{Process, TestServer, connect_as, error_code, repo_root, rows};

fn password_config() -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ephemeral: true,
        auth: AuthMode::Password,
        superuser_password: Some(Secret("sup3r secret".into())),
        ..Config::default()
    }
}

fn tls_files() -> (PathBuf, PathBuf) {
    let dir = repo_root().join("tests/it/tls");
    (dir.join("server.crt"), dir.join("server.key"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_are_checked_with_scram() {
    let server = TestServer::start_with(password_config()).await;
    let addr = server.addr;
    assert_eq!(connect_as(addr, "sabot", "wrong", "sabot").await.err().as_deref(), Some("28P01"));
    assert_eq!(connect_as(addr, "nobody", "x", "sabot").await.err().as_deref(), Some("28P01"));
    assert_eq!(connect_as(addr, "sabot", "sup3r secret", "postgres").await.err().as_deref(), Some("3D000"));
    let admin = connect_as(addr, "sabot", "sup3r secret", "sabot").await.expect("the superuser logs in");
    admin
        .batch_execute(
            "CREATE ROLE alice LOGIN PASSWORD 'alice pw';
             CREATE USER bob WITH PASSWORD 'bob pw';
             CREATE ROLE reader PASSWORD 'reader pw';
             CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1);",
        )
        .await
        .unwrap();
    assert_eq!(error_code(&admin, "CREATE ROLE alice").await, "42710");
    assert_eq!(
        error_code(&admin, "CREATE ROLE x PASSWORD 'md5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'").await,
        "0A000"
    );
    // A role without LOGIN cannot log in, even with its password.
    assert_eq!(connect_as(addr, "reader", "reader pw", "sabot").await.err().as_deref(), Some("28000"));
    let alice = connect_as(addr, "alice", "alice pw", "sabot").await.expect("alice logs in");
    assert_eq!(rows(&alice, "SELECT id FROM t").await, [["1"]]);
    assert_eq!(error_code(&alice, "CREATE ROLE eve LOGIN").await, "42501");
    assert_eq!(error_code(&alice, "ALTER ROLE bob PASSWORD 'x'").await, "42501");
    assert_eq!(error_code(&alice, "DROP ROLE bob").await, "42501");
    // Any role may change its own password.
    alice.batch_execute("ALTER ROLE alice PASSWORD 'new pw'").await.unwrap();
    assert_eq!(connect_as(addr, "alice", "alice pw", "sabot").await.err().as_deref(), Some("28P01"));
    connect_as(addr, "alice", "new pw", "sabot").await.expect("the new password works");
    assert!(connect_as(addr, "bob", "bob pw", "sabot").await.is_ok(), "CREATE USER can log in");
    admin.batch_execute("ALTER USER bob WITH PASSWORD NULL").await.unwrap();
    assert_eq!(connect_as(addr, "bob", "bob pw", "sabot").await.err().as_deref(), Some("28P01"));
    admin.batch_execute("DROP ROLE bob; DROP ROLE IF EXISTS nobody").await.unwrap();
    assert_eq!(error_code(&admin, "DROP ROLE bob").await, "42704");
    assert_eq!(error_code(&admin, "DROP ROLE sabot").await, "55006");
    assert_eq!(connect_as(addr, "bob", "bob pw", "sabot").await.err().as_deref(), Some("28P01"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_needs_an_existing_role_and_database() {
    let server = TestServer::start().await;
    let addr = server.addr;
    assert_eq!(connect_as(addr, "nobody", "", "sabot").await.err().as_deref(), Some("28000"));
    assert_eq!(connect_as(addr, "sabot", "", "postgres").await.err().as_deref(), Some("3D000"));
    let admin = server.client().await;
    admin.batch_execute("CREATE ROLE carol LOGIN; CREATE ROLE dave").await.unwrap();
    let carol = connect_as(addr, "carol", "", "sabot").await.expect("carol logs in without a password");
    assert_eq!(rows(&carol, "SELECT 1").await, [["1"]]);
    assert_eq!(connect_as(addr, "dave", "", "sabot").await.err().as_deref(), Some("28000"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_passwords_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config { ephemeral: false, data_dir: dir.path().to_path_buf(), ..password_config() };
    let server = TestServer::start_with(config.clone()).await;
    let admin = connect_as(server.addr, "sabot", "sup3r secret", "sabot").await.unwrap();
    admin.batch_execute("CREATE ROLE erin LOGIN PASSWORD 'erin pw'").await.unwrap();
    drop(admin);
    server.stop().await;
    // Restarted without a superuser password: the stored one still holds.
    let server = TestServer::start_with(Config { superuser_password: None, ..config }).await;
    connect_as(server.addr, "erin", "erin pw", "sabot").await.expect("erin's role was kept");
    connect_as(server.addr, "sabot", "sup3r secret", "sabot").await.expect("the superuser password was kept");
    server.stop().await;
}

/// Runs psql with a connection string; returns stdout, or stderr on failure.
fn psql(conninfo: &str, command: &str, password: Option<&str>) -> Result<String, String> {
    let mut psql = Command::new("psql");
    psql.args([conninfo, "-X", "-A", "-t", "-c", command]);
    if let Some(password) = password {
        psql.env("PGPASSWORD", password);
    }
    let output = psql.output().expect("psql is installed (.ci/run installs postgresql-client)");
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_and_psycopg_connect_over_tls_with_passwords() {
    let (cert, key) = tls_files();
    let config = Config { tls_cert: Some(cert), tls_key: Some(key), ..password_config() };
    let server = TestServer::start_with(config).await;
    let base = format!("host=127.0.0.1 port={} user=sabot dbname=sabot", server.addr.port());
    let task = tokio::task::spawn_blocking(move || {
        let password = Some("sup3r secret");
        let info =
            psql(&format!("{base} sslmode=require"), "\\conninfo", password).expect("psql connects over TLS");
        assert!(info.contains("SSL connection"), "{info}");
        // SCRAM bound to the TLS channel (SCRAM-SHA-256-PLUS).
        let bound =
            psql(&format!("{base} sslmode=require channel_binding=require"), "SELECT 40 + 2", password);
        assert_eq!(bound.expect("channel binding works").trim(), "42");
        // TLS is offered, not forced.
        assert_eq!(psql(&format!("{base} sslmode=disable"), "SELECT 1", password).unwrap().trim(), "1");
        let wrong = psql(&format!("{base} sslmode=require"), "SELECT 1", Some("nope")).unwrap_err();
        assert!(wrong.contains("password authentication failed"), "{wrong}");
        let script = repo_root().join("tests/it/clients/psycopg_tls_check.py");
        let output = Command::new("python3")
            .arg(script)
            .arg(base.split("port=").nth(1).unwrap().split(' ').next().unwrap())
            .output()
            .expect("python3 runs");
        assert!(
            output.status.success(),
            "psycopg over TLS failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    });
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_needs_both_files_and_readable_ones() {
    let (cert, _) = tls_files();
    let db = sabot::Database::open(Config {
        tls_cert: Some(cert.clone()),
        ..Config { listen: "127.0.0.1:0".parse().unwrap(), ephemeral: true, ..Config::default() }
    })
    .await
    .unwrap();
    let (listener, _) = sabot::server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let error = sabot::server::serve(db.clone(), listener, async {}).await.unwrap_err();
    assert!(error.to_string().contains("both"), "{error}");
    db.shutdown().await.unwrap();
    let db = sabot::Database::open(Config {
        tls_cert: Some(cert.clone()),
        tls_key: Some(cert),
        ..Config { listen: "127.0.0.1:0".parse().unwrap(), ephemeral: true, ..Config::default() }
    })
    .await
    .unwrap();
    let (listener, _) = sabot::server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let error = sabot::server::serve(db.clone(), listener, async {}).await.unwrap_err();
    assert!(error.to_string().contains("private key"), "{error}");
    db.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_auth_off_loopback_warns_without_tls_and_needs_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let sabot = || Command::new(env!("CARGO_BIN_EXE_sabot"));
    // Nobody could log in: the server refuses to start.
    let refused = sabot()
        .args(["serve", "--ephemeral", "--auth", "password", "--listen", "127.0.0.1:0"])
        .env_remove("SABOT_PASSWORD")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no role has a password"));
    // Off loopback, password is the default, and without TLS the server warns.
    let log = dir.path().join("server.log");
    let password = dir.path().join("password");
    std::fs::write(&password, "from a file\n").unwrap();
    let server = Process::start_with(
        &dir.path().join("data"),
        &["--listen", "0.0.0.0:0", "--password-file", password.to_str().unwrap()],
        &[],
        Process::log_file(&log),
    );
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], server.addr.port()));
    assert_eq!(connect_as(addr, "sabot", "wrong", "sabot").await.err().as_deref(), Some("28P01"));
    connect_as(addr, "sabot", "from a file", "sabot").await.expect("the password from the file works");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("not encrypted"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_password_command_sets_a_verifier_that_works() {
    let server = TestServer::start_with(password_config()).await;
    let port = server.addr.port().to_string();
    let script = repo_root().join("tests/it/clients/psql_password_check.py");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .args([port.as_str(), "sup3r secret"])
            .output()
            .expect("python3 runs")
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "psql's \\password failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
