//! Starting servers and connecting clients.

use std::net::SocketAddr;
use std::path::Path;
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

fn test_config() -> Config {
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
