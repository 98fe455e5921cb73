//! Starting servers and connecting clients.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use sabot::{Config, Database};
use tokio::sync::oneshot;
use tokio_postgres::{Client, NoTls};

/// A Sabot server running in this process.
pub struct TestServer {
    pub addr: SocketAddr,
    pub db: Arc<Database>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// An in-memory server on a free port.
    pub async fn start() -> TestServer {
        Self::start_with(Config { ephemeral: true, ..test_config() }).await
    }

    /// A RocksDB-backed server whose state lives in `dir`.
    pub async fn start_in(dir: &Path) -> TestServer {
        Self::start_with(Config { data_dir: dir.to_path_buf(), ..test_config() }).await
    }

    pub async fn start_with(config: Config) -> TestServer {
        let db = Database::open(config.clone()).await.expect("database opens");
        let (listener, addr) = sabot::server::bind(config.listen).await.expect("port 0 binds");
        let (stop, stopped) = oneshot::channel::<()>();
        let server_db = db.clone();
        let task = tokio::spawn(async move {
            sabot::server::serve(server_db, listener, async {
                let _ = stopped.await;
            })
            .await
            .expect("server runs");
        });
        TestServer { addr, db, stop: Some(stop), task: Some(task) }
    }

    pub async fn client(&self) -> Client {
        connect(self.addr).await
    }

    /// Stops accepting connections and commits what is pending.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.db.shutdown().await.expect("clean shutdown");
        // Connection tasks notice their closed sockets and drop their sessions; the store
        // is closed once the last handle on the database is gone.
        for _ in 0..100 {
            if Arc::strong_count(&self.db) == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub fn test_config() -> Config {
    Config { listen: "127.0.0.1:0".parse().expect("valid address"), ..Config::default() }
}

pub fn connection_string(addr: SocketAddr) -> String {
    format!("host={} port={} user=sabot dbname=sabot", addr.ip(), addr.port())
}

pub async fn connect(addr: SocketAddr) -> Client {
    let (client, connection) =
        tokio_postgres::connect(&connection_string(addr), NoTls).await.expect("client connects");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Runs `sql` and returns every row as text (NULL as "NULL"), through the simple protocol.
pub async fn rows(client: &Client, sql: &str) -> Vec<Vec<String>> {
    let messages = client.simple_query(sql).await.unwrap_or_else(|e| match e.as_db_error() {
        Some(db) => panic!("{sql}: {} ({})", db.message(), db.code().code()),
        None => panic!("{sql}: {e}"),
    });
    messages
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => {
                Some((0..row.len()).map(|i| row.get(i).unwrap_or("NULL").to_string()).collect())
            }
            _ => None,
        })
        .collect()
}

/// The SQLSTATE of the error `sql` fails with.
pub async fn error_code(client: &Client, sql: &str) -> String {
    match client.simple_query(sql).await {
        Ok(_) => panic!("expected {sql} to fail"),
        Err(e) => e.code().map(|c| c.code().to_string()).unwrap_or_else(|| format!("no sqlstate: {e}")),
    }
}

/// Path of the repository root.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The real `sabot` binary, serving a data directory on a free port.
pub struct Process {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Process {
    pub fn start(dir: &Path) -> Process {
        Self::start_with(dir, &[], &[], Stdio::null())
    }

    /// Appends the server's log (info level) to `log`.
    pub fn start_logged(dir: &Path, log: &Path) -> Process {
        Self::start_with(dir, &[], &[], Self::log_file(log))
    }

    pub fn log_file(log: &Path) -> Stdio {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file opens");
        Stdio::from(file)
    }

    /// Starts `sabot serve` with extra arguments and environment variables.
    pub fn start_with(dir: &Path, args: &[&str], env: &[(&str, &str)], stderr: Stdio) -> Process {
        let listen: &[&str] = if args.contains(&"--listen") { &[] } else { &["--listen", "127.0.0.1:0"] };
        // Relative paths in statements (a file sink's directory) stay in the test's
        // directory, not the repository.
        std::fs::create_dir_all(dir).expect("the data directory can be made");
        let mut child = Command::new(env!("CARGO_BIN_EXE_sabot"))
            .current_dir(dir)
            .arg("serve")
            .args(listen)
            .arg("--data-dir")
            .arg(dir)
            .args(args)
            .env("SABOT_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
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

    pub fn kill_9(mut self) {
        let status =
            Command::new("kill").args(["-9", &self.child.id().to_string()]).status().expect("kill runs");
        assert!(status.success());
        let _ = self.child.wait();
    }

    pub fn signal(mut self, signal: &str) -> std::process::ExitStatus {
        Command::new("kill").args([signal, &self.child.id().to_string()]).status().expect("kill runs");
        self.child.wait().expect("sabot exits")
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("the child can be polled").is_none()
    }

    /// Resident memory of the process, in bytes.
    pub fn resident_bytes(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("proc status");
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS line");
        let kib: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("VmRSS in kB");
        kib * 1024
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Connects as `user` with `password`; the error's SQLSTATE if the server refuses.
pub async fn connect_as(
    addr: SocketAddr,
    user: &str,
    password: &str,
    dbname: &str,
) -> Result<Client, String> {
    let quote = |value: &str| format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"));
    let config = format!(
        "host={} port={} user={} password={} dbname={}",
        addr.ip(),
        addr.port(),
        quote(user),
        quote(password),
        quote(dbname)
    );
    match tokio_postgres::connect(&config, NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(async move {
                let _ = connection.await;
            });
            Ok(client)
        }
        Err(e) => Err(e.code().map(|c| c.code().to_string()).unwrap_or_else(|| format!("no sqlstate: {e}"))),
    }
}

/// Speaks just enough of the wire protocol to start a session on a raw socket (trust).
pub async fn raw_session(addr: SocketAddr) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connects");
    socket.write_all(&startup_message("sabot", "sabot")).await.expect("startup sent");
    // Read until ReadyForQuery ('Z').
    let mut seen = Vec::new();
    while !seen.windows(6).any(|w| w[0] == b'Z' && w[1..5] == 5i32.to_be_bytes()) {
        let mut buf = [0u8; 1024];
        let n = socket.read(&mut buf).await.expect("reads");
        assert!(n > 0, "server closed during startup: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    socket
}

/// A protocol 3.0 startup packet.
pub fn startup_message(user: &str, database: &str) -> Vec<u8> {
    let mut body = 196_608i32.to_be_bytes().to_vec();
    for part in ["user", user, "database", database] {
        body.extend_from_slice(part.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut message = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    message.extend_from_slice(&body);
    message
}

/// A typed frontend message.
pub fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A simple Query message.
pub fn query_message(sql: &str) -> Vec<u8> {
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    message(b'Q', &body)
}

/// Reads backend messages until one of type `until` (inclusive) or the connection ends;
/// returns each message as (type, body).
pub async fn read_messages(socket: &mut tokio::net::TcpStream, until: u8) -> Vec<(u8, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    loop {
        let mut header = [0u8; 5];
        if socket.read_exact(&mut header).await.is_err() {
            return out;
        }
        let length = i32::from_be_bytes(header[1..].try_into().expect("four bytes")) as usize;
        let mut body = vec![0; length.saturating_sub(4)];
        if socket.read_exact(&mut body).await.is_err() {
            return out;
        }
        let kind = header[0];
        out.push((kind, body));
        if kind == until {
            return out;
        }
    }
}

/// The SQLSTATE of an ErrorResponse body.
pub fn error_code_of(body: &[u8]) -> Option<String> {
    body.split(|&b| b == 0)
        .find(|f| f.first() == Some(&b'C'))
        .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
}

/// Each view equals its query run in batch (rows compared in any order).
pub async fn views_equal_batch(client: &Client, views: &[(&str, &str)], when: &str) {
    for (name, query) in views {
        let mut view = rows(client, &format!("SELECT * FROM {name}")).await;
        let mut batch = rows(client, &format!("SELECT * FROM ({query}) q")).await;
        view.sort();
        batch.sort();
        assert_eq!(view, batch, "{name} {when}");
    }
}

/// Runs the real psql against `port` with `options` (e.g. `-At`) and `commands` as its `-c`
/// options, in order, in one session; returns stdout and stderr.
pub fn psql_session(port: u16, options: &[&str], commands: &[&str]) -> (String, String) {
    let port = port.to_string();
    let mut args = vec!["-X", "-h", "127.0.0.1", "-p", &port, "-U", "sabot", "-d", "sabot"];
    args.extend_from_slice(options);
    for command in commands {
        args.extend(["-c", command]);
    }
    let output = Command::new("psql")
        .args(&args)
        .output()
        .expect("psql is installed (.ci/run installs postgresql-client)");
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
