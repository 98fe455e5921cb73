//! The Postgres wire protocol frontend (pgwire): simple and extended query protocols,
//! COPY FROM STDIN, TLS and SCRAM-SHA-256 authentication, one [`Session`] per connection.
//!
//! Defences (see `docs/security.md`): every message is checked before pgwire decodes it
//! (`frames`); connections that have not started up within `startup_timeout_ms` are
//! closed and, when more than `connections_max` are starting at once, the oldest makes
//! way; established connections beyond `connections_max` are refused with 53300; a
//! panic while serving a connection closes that connection only.
//!
//! [`Session`]: crate::engine::Session

mod auth;
mod connection;
mod copy_out;
mod encode;
pub mod frames;
mod handlers;
mod params;
mod tls;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use pgwire::api::ConnectionManager;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot};

use crate::common::config::AuthMode;
use crate::common::{Error, Result};
use crate::engine::Database;

pub use auth::DATABASE_NAME;

/// In debug builds (tests), this exact simple query makes the connection's task panic,
/// to test that a panic stays contained; release builds treat it as ordinary SQL.
pub const DEBUG_PANIC_QUERY: &str = "SELECT sabot_debug_panic()";

/// What `server_version` reports to clients (drivers read the leading number).
pub const SERVER_VERSION: &str = crate::common::SERVER_VERSION;

/// What every connection of one server shares.
pub struct Shared {
    db: Arc<Database>,
    auth: auth::Authenticator,
    tls: Option<pgwire::tokio::TlsAcceptor>,
    /// Live connections, for cancel requests (psql's Ctrl-C).
    cancel: Arc<ConnectionManager>,
    /// One permit per established connection (`connections_max`).
    slots: Arc<Semaphore>,
}

/// Serves pgwire connections on `listener` until `shutdown` resolves. Each connection
/// runs on the database's session runtime.
pub async fn serve(
    db: Arc<Database>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let shared = Arc::new(shared(db.clone())?);
    let starting = Arc::new(StartingConnections::new(db.config().connections_max));
    let runtime = db.session_runtime();
    tokio::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors, typically: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let place = starting.enter();
        runtime.spawn(connection::serve(socket, peer, shared.clone(), place));
    }
}

fn shared(db: Arc<Database>) -> Result<Shared> {
    let config = db.config();
    let (tls, certificate) = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            let pem = std::fs::read(cert)
                .map_err(|e| Error::internal(format!("cannot read {}: {e}", cert.display())))?;
            (Some(tls::acceptor(cert, key)?), Some(pem))
        }
        (None, None) => (None, None),
        _ => return Err(Error::internal("TLS needs both a certificate (--tls-cert) and a key (--tls-key)")),
    };
    if config.auth == AuthMode::Password && tls.is_none() && !config.listen.ip().is_loopback() {
        tracing::warn!(
            listen = %config.listen,
            "passwords are checked with SCRAM but the connection is not encrypted: queries and results cross the network in the clear (give --tls-cert and --tls-key)"
        );
    }
    let cancel = Arc::new(ConnectionManager::new());
    Ok(Shared {
        auth: auth::Authenticator::new(&db, cancel.clone(), certificate.as_deref())?,
        tls,
        cancel,
        slots: Arc::new(Semaphore::new(config.connections_max)),
        db,
    })
}

/// Binds `address` (port 0 picks a free port) and returns the listener and its address.
pub async fn bind(address: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(address).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Connections that have not completed their startup yet, oldest first. There are at
/// most `max`: a new connection evicts the oldest, so that sockets which connect and
/// send nothing cannot lock real clients out.
struct StartingConnections {
    max: usize,
    next_id: std::sync::atomic::AtomicU64,
    waiting: Mutex<VecDeque<(u64, oneshot::Sender<()>)>>,
}

impl StartingConnections {
    fn new(max: usize) -> Self {
        StartingConnections { max: max.max(1), next_id: Default::default(), waiting: Default::default() }
    }

    fn enter(self: &Arc<Self>) -> Starting {
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (evict, evicted) = oneshot::channel();
        let mut waiting = self.waiting.lock();
        while waiting.len() >= self.max {
            let Some((_, oldest)) = waiting.pop_front() else { break };
            let _ = oldest.send(());
        }
        waiting.push_back((id, evict));
        Starting { id, evicted: Some(evicted), all: self.clone() }
    }
}

/// A connection's place among those starting up; leaving (dropping it) frees the place.
pub struct Starting {
    id: u64,
    evicted: Option<oneshot::Receiver<()>>,
    all: Arc<StartingConnections>,
}

impl Starting {
    /// Resolves when a newer connection took this one's place.
    async fn evicted(&mut self) {
        match self.evicted.as_mut() {
            Some(receiver) => {
                if receiver.await.is_err() {
                    self.evicted = None;
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending::<()>().await,
        }
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        self.all.waiting.lock().retain(|(id, _)| *id != self.id);
    }
}

/// Logs panics through `tracing`, once, with the client they happened for (peer and role)
/// when there is one. The process keeps running: a panic ends only the task it happened
/// in; in a connection's task the client gets XX000 and the connection closes, in a
/// statement's task on the compute runtime the statement fails with XX000.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        let thread = std::thread::current().name().unwrap_or("unnamed").to_string();
        let client =
            crate::engine::execute::CLIENT.try_with(|c| (c.peer.to_string(), c.user.lock().clone())).ok();
        match client {
            Some((peer, user)) => tracing::error!(
                %message, %location, %thread, %peer, user = %user.as_deref().unwrap_or("(not logged in)"),
                "panic while serving a client; its statement or connection ends, the server keeps running"
            ),
            None => tracing::error!(%message, %location, %thread, "panic"),
        }
    }));
}
