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
    /// Bound of each change-stream channel (a table to its subscribers, and between view
    /// operators), in messages. Default 1024.
    pub change_channel_messages_max: usize,
    /// RocksDB's block cache for state reads (tables, view operators), in bytes.
    /// Default 256 MiB.
    pub state_cache_bytes_max: usize,
    /// Bound on concurrent client connections. Default 1000.
    pub connections_max: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 5544)),
            data_dir: PathBuf::from("./sabot-data"),
            ephemeral: false,
            barrier_interval_ms: 100,
            change_channel_messages_max: 1024,
            state_cache_bytes_max: 256 << 20,
            connections_max: 1000,
        }
    }
}
