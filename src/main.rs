//! The `sabot` command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sabot::common::config::{AuthMode, Secret};
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
    /// Run a benchmark on an embedded database.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Nexmark queries over the Nexmark generator, each into a blackhole sink: events,
    /// seconds, CPU seconds, events per second and per CPU-second, peak RSS.
    Nexmark(NexmarkArgs),
}

#[derive(clap::Args)]
struct NexmarkArgs {
    /// Queries to run (q0, q1, ...; repeat or separate with commas); default: all.
    #[arg(long = "query", value_delimiter = ',')]
    queries: Vec<String>,
    /// Rows each source generates.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Splits of each source.
    #[arg(long, default_value_t = 1)]
    splits: u64,
    /// `text` (a table) or `json` (one object per query and line).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    format: String,
    /// Where the temporary databases go.
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    work_dir: PathBuf,
    /// Read `bid` from the CSV files of this directory (the Flink peer's gen_bids.py
    /// format) instead of the generator; `--events` then applies to the other sources.
    #[arg(long)]
    bid_dir: Option<PathBuf>,
    /// Instances of each stateful operator (`streaming_parallelism`); default: the
    /// server's default (one per core).
    #[arg(long)]
    parallelism: Option<usize>,
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
    /// Milliseconds an epoch may wait for every view to acknowledge its barrier (a new
    /// view's backfill included); past it the epoch fails (naming the views) and writes
    /// stop until a restart.
    #[arg(long, env = "SABOT_CHECKPOINT_TIMEOUT_MS", default_value_t = 1_800_000)]
    checkpoint_timeout_ms: u64,
    /// Most established client connections; one more is refused with 53300. As many may
    /// be starting up at once (the oldest makes way for a new one).
    #[arg(long, env = "SABOT_CONNECTIONS_MAX", default_value_t = 1000)]
    connections_max: usize,
    /// Milliseconds a connection may take to complete its startup and authentication.
    #[arg(long, env = "SABOT_STARTUP_TIMEOUT_MS", default_value_t = 10_000)]
    startup_timeout_ms: u64,
    /// Bytes of the largest protocol message a client may send after authenticating.
    #[arg(long, env = "SABOT_MESSAGE_BYTES_MAX", default_value_t = 64 << 20)]
    message_bytes_max: usize,
    /// Bytes of memory one statement may hold (sorts, hash tables, collected results,
    /// COPY data); more fails with 53200.
    #[arg(long, env = "SABOT_STATEMENT_MEMORY_BYTES_MAX", default_value_t = 1 << 30)]
    statement_memory_bytes_max: usize,
    /// How clients log in: `trust` (any existing role, no password) or `password`
    /// (SCRAM-SHA-256). Default: trust when listening on loopback, password otherwise.
    #[arg(long, env = "SABOT_AUTH", value_parser = ["trust", "password"])]
    auth: Option<String>,
    /// A file holding the password of the superuser `sabot` (trailing newline ignored);
    /// the environment variable SABOT_PASSWORD gives it directly.
    #[arg(long, env = "SABOT_PASSWORD_FILE")]
    password_file: Option<PathBuf>,
    /// PEM certificate chain for TLS (with --tls-key).
    #[arg(long, env = "SABOT_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for TLS (with --tls-cert).
    #[arg(long, env = "SABOT_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Messages each change channel (tables to views, between view operators) holds.
    #[arg(long, env = "SABOT_CHANGE_CHANNEL_MESSAGES_MAX", default_value_t = 1024)]
    change_channel_messages_max: usize,
    /// RocksDB block cache for state reads, in bytes.
    #[arg(long, env = "SABOT_STATE_CACHE_BYTES_MAX", default_value_t = 256 << 20)]
    state_cache_bytes_max: usize,
    /// Operator state one stateful operator keeps in memory, in bytes (least recently
    /// used keys beyond it are evicted to the state store).
    #[arg(long, env = "SABOT_OPERATOR_CACHE_BYTES_MAX", default_value_t = 256 << 20)]
    operator_cache_bytes_max: usize,
    /// Operator state all operators together keep in memory, in bytes.
    #[arg(long, env = "SABOT_STATE_MEMORY_BYTES_MAX", default_value_t = 2 << 30)]
    state_memory_bytes_max: usize,
    /// Rows a source reader emits per chunk, at most.
    #[arg(long, env = "SABOT_SOURCE_CHUNK_ROWS_MAX", default_value_t = 1024)]
    source_chunk_rows_max: usize,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SABOT_LOG").unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    sabot::server::install_panic_hook();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
        Command::Bench(BenchCommand::Nexmark(args)) => runtime.block_on(bench_nexmark(args)),
    }
}

async fn bench_nexmark(args: NexmarkArgs) -> anyhow::Result<()> {
    let queries = sabot::bench::select_queries(&args.queries)?;
    let json = args.format == "json";
    let bench = sabot::bench::NexmarkBench {
        queries: args.queries.clone(),
        events: args.events,
        splits: args.splits.max(1),
        work_dir: args.work_dir.clone(),
        bid_dir: args.bid_dir.clone(),
        parallelism: args.parallelism,
        progress: true,
    };
    let mut results = Vec::new();
    for (name, sql) in &queries {
        // With several queries, each runs in a process of its own, so that its CPU time
        // and peak memory are its own.
        let result = if queries.len() == 1 {
            sabot::bench::run_query(&bench, name, sql).await?
        } else {
            bench_in_child(&args, name)?
        };
        if json {
            print!("{}", sabot::bench::report(std::slice::from_ref(&result), true));
        } else {
            eprintln!(
                "{}",
                sabot::bench::report(std::slice::from_ref(&result), false).lines().nth(1).unwrap_or("")
            );
        }
        results.push(result);
    }
    if !json {
        print!("{}", sabot::bench::report(&results, false));
    }
    Ok(())
}

/// Runs one query in a child `sabot bench nexmark` and reads its JSON line.
fn bench_in_child(args: &NexmarkArgs, query: &str) -> anyhow::Result<sabot::bench::QueryResult> {
    let output = std::process::Command::new(std::env::current_exe()?)
        .args(["bench", "nexmark", "--format", "json", "--query", query])
        .args(["--events", &args.events.to_string(), "--splits", &args.splits.to_string()])
        .arg("--work-dir")
        .arg(&args.work_dir)
        .args(args.bid_dir.iter().flat_map(|dir| [std::ffi::OsStr::new("--bid-dir"), dir.as_os_str()]))
        .args(args.parallelism.iter().flat_map(|p| ["--parallelism".to_string(), p.to_string()]))
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run the benchmark's child process")?;
    anyhow::ensure!(output.status.success(), "the benchmark of {query} failed ({})", output.status);
    let line = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(line.trim())
        .with_context(|| format!("bad result from the benchmark of {query}: {line}"))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let auth = match args.auth.as_deref() {
        Some("password") => AuthMode::Password,
        Some(_) => AuthMode::Trust,
        None => AuthMode::default_for(&args.listen),
    };
    let config = Config {
        listen: args.listen,
        data_dir: args.data_dir,
        ephemeral: args.ephemeral,
        barrier_interval_ms: args.barrier_interval_ms,
        checkpoint_timeout_ms: args.checkpoint_timeout_ms.max(1),
        connections_max: args.connections_max.max(1),
        change_channel_messages_max: args.change_channel_messages_max.max(1),
        state_cache_bytes_max: args.state_cache_bytes_max,
        operator_cache_bytes_max: args.operator_cache_bytes_max,
        state_memory_bytes_max: args.state_memory_bytes_max,
        source_chunk_rows_max: args.source_chunk_rows_max.max(1),
        startup_timeout_ms: args.startup_timeout_ms.max(1),
        message_bytes_max: args.message_bytes_max,
        statement_memory_bytes_max: args.statement_memory_bytes_max.max(1),
        auth,
        superuser_password: superuser_password(args.password_file.as_deref())?,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
    };
    let db = Database::open(config.clone()).await.context("cannot open the database")?;
    if auth == AuthMode::Password && !db.catalog().roles().any(|r| r.login && r.password.is_some()) {
        db.shutdown().await?;
        anyhow::bail!(
            "--auth password, but no role has a password: set the superuser's with SABOT_PASSWORD or --password-file"
        );
    }
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

/// The superuser password from SABOT_PASSWORD or the file given.
fn superuser_password(file: Option<&std::path::Path>) -> anyhow::Result<Option<Secret>> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the password file {}", path.display()))?;
        return Ok(Some(Secret(text.trim_end_matches(['\n', '\r']).to_string())));
    }
    Ok(std::env::var("SABOT_PASSWORD").ok().filter(|p| !p.is_empty()).map(Secret))
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
