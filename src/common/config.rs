//! Server configuration: one typed tree with documented defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Where and how a Sabot server runs. Every field has a default (see [`Config::default`]).
#[derive(Clone, Debug)]
pub struct Config {
    /// pgwire listen address. Default `127.0.0.1:5544`.
    pub listen: SocketAddr,
    /// RocksDB directory. Default `./sabot-data`.
    pub data_dir: PathBuf,
    /// Keep all state in memory (nothing survives a restart). Default off.
    pub ephemeral: bool,
    /// How often the barrier coordinator commits an epoch. Default 100 ms.
    pub barrier_interval_ms: u64,
    /// The longest an epoch waits for every view operator to acknowledge its barrier;
    /// past it the epoch fails, with the views still waited for named, and the server
    /// stops accepting writes until restarted. A new view's backfill runs in one epoch and
    /// must finish within it. Default 30 minutes.
    pub checkpoint_timeout_ms: u64,
    /// Bound of each change-stream channel (a table to its subscribers, and between view
    /// operators), in messages. Default 1024.
    pub change_channel_messages_max: usize,
    /// RocksDB's block cache for state reads (tables, view operators), in bytes.
    /// Default 256 MiB.
    pub state_cache_bytes_max: usize,
    /// Bytes of operator state one stateful operator keeps in memory (its groups, join
    /// rows, ...); beyond it the least recently used keys are evicted to the state store
    /// and reloaded on their next use. Default 256 MiB.
    pub operator_cache_bytes_max: usize,
    /// Bytes of operator state all operators together keep in memory. Default 2 GiB.
    pub state_memory_bytes_max: usize,
    /// Rows a source reader emits per chunk, at most (a connector may ask for fewer).
    /// Default 1024.
    pub source_chunk_rows_max: usize,
    /// Bound on established client connections; one more is refused with 53300.
    /// Connections still in their startup handshake are bounded by the same number, the
    /// oldest making way for a new one. Default 1000.
    pub connections_max: usize,
    /// A connection that has not completed its startup handshake (TLS, startup message,
    /// authentication) within this time is closed. Default 10 s.
    pub startup_timeout_ms: u64,
    /// The largest protocol message a client may send after authenticating, in bytes
    /// (before, 10,000 bytes). Default 64 MiB.
    pub message_bytes_max: usize,
    /// Memory one statement may hold in its operators (sorts, hash tables, collected
    /// results, COPY data), in bytes; more fails with 53200. Sessions may lower it with
    /// `SET statement_memory_bytes_max`. Default 1 GiB.
    pub statement_memory_bytes_max: usize,
    /// How clients prove who they are. Default trust (the address is loopback).
    pub auth: AuthMode,
    /// Password of the superuser `sabot`, set at start-up when given.
    pub superuser_password: Option<Secret>,
    /// PEM certificate chain and private key for TLS; both or neither. Default none.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

/// Client authentication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMode {
    /// Any existing role may log in without a password (loopback use).
    Trust,
    /// Roles log in with their password, verified with SCRAM-SHA-256.
    Password,
}

impl AuthMode {
    /// The default for a listen address: trust only on loopback.
    pub fn default_for(listen: &SocketAddr) -> Self {
        if listen.ip().is_loopback() { AuthMode::Trust } else { AuthMode::Password }
    }

    pub fn name(self) -> &'static str {
        match self {
            AuthMode::Trust => "trust",
            AuthMode::Password => "password",
        }
    }
}

/// A secret value whose `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Default for Config {
    fn default() -> Self {
        let listen = SocketAddr::from(([127, 0, 0, 1], 5544));
        Config {
            listen,
            data_dir: PathBuf::from("./sabot-data"),
            ephemeral: false,
            barrier_interval_ms: 100,
            checkpoint_timeout_ms: 1_800_000,
            change_channel_messages_max: 1024,
            state_cache_bytes_max: 256 << 20,
            operator_cache_bytes_max: 256 << 20,
            state_memory_bytes_max: 2 << 30,
            source_chunk_rows_max: 1024,
            connections_max: 1000,
            startup_timeout_ms: 10_000,
            message_bytes_max: 64 << 20,
            statement_memory_bytes_max: 1 << 30,
            auth: AuthMode::default_for(&listen),
            superuser_password: None,
            tls_cert: None,
            tls_key: None,
        }
    }
}
