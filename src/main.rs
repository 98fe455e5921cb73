//! The `sabot` command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sabot::{Config, Database};

#[derive(Parser)]
#[command(
    name = "sabot",
    version,
    about = "Sabot: a streaming SQL database that speaks the Postgres protocol"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server (pgwire on --listen). Stops cleanly on SIGINT or SIGTERM.
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address for Postgres clients (psql -h HOST -p PORT). Port 0 picks a free port.
    #[arg(long, env = "SABOT_LISTEN", default_value = "127.0.0.1:5544")]
    listen: SocketAddr,
    /// Directory of the RocksDB state store; created if missing.
    #[arg(long, env = "SABOT_DATA_DIR", default_value = "./sabot-data")]
    data_dir: PathBuf,
    /// Keep all state in memory: nothing survives a restart.
    #[arg(long, env = "SABOT_EPHEMERAL")]
    ephemeral: bool,
    /// How often an epoch is committed, in milliseconds.
    #[arg(long, env = "SABOT_BARRIER_INTERVAL_MS", default_value_t = 100)]
    barrier_interval_ms: u64,
    /// Most concurrent client connections; more are refused.
    #[arg(long, env = "SABOT_CONNECTIONS_MAX", default_value_t = 1000)]
    connections_max: usize,
    /// Messages each change channel (tables to views, between view operators) holds.
    #[arg(long, env = "SABOT_CHANGE_CHANNEL_MESSAGES_MAX", default_value_t = 1024)]
    change_channel_messages_max: usize,
    /// RocksDB block cache for state reads, in bytes.
    #[arg(long, env = "SABOT_STATE_CACHE_BYTES_MAX", default_value_t = 256 << 20)]
    state_cache_bytes_max: usize,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SABOT_LOG").unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config {
        listen: args.listen,
        data_dir: args.data_dir,
        ephemeral: args.ephemeral,
        barrier_interval_ms: args.barrier_interval_ms,
        connections_max: args.connections_max,
        change_channel_messages_max: args.change_channel_messages_max.max(1),
        state_cache_bytes_max: args.state_cache_bytes_max,
    };
    let db = Database::open(config.clone()).await.context("cannot open the database")?;
    let (listener, address) = sabot::server::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    // Scripts and tests read this line to learn the port.
    tracing::info!(%address, "listening for Postgres clients");
    println!("sabot listening on {address}");
    sabot::server::serve(db.clone(), listener, shutdown_signal()).await?;
    tracing::info!("shutting down");
    db.shutdown().await?;
    Ok(())
}

async fn shutdown_signal() {
    let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
