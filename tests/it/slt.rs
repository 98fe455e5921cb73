//! Runs `sql-tests/**/*.slt` over the real pgwire port: every file through the simple
//! protocol, files under `sql-tests/extended/` also through the extended protocol (binary
//! results), plus the SQLite conformance file `select1.test` from `../shared/conformance`.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Buf;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType, Runner};
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::harness::{TestServer, connect, repo_root};

struct Sabot {
    client: Client,
    extended: bool,
}

/// A client error whose text is the server's message (tokio-postgres prints "db error").
#[derive(Debug)]
struct SltError {
    message: String,
    sqlstate: Option<String>,
}

impl std::fmt::Display for SltError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SltError {}

impl From<tokio_postgres::Error> for SltError {
    fn from(error: tokio_postgres::Error) -> Self {
        match error.as_db_error() {
            Some(db) => {
                SltError { message: db.message().to_string(), sqlstate: Some(db.code().code().to_string()) }
            }
            None => SltError { message: error.to_string(), sqlstate: None },
        }
    }
}

#[async_trait]
impl AsyncDB for Sabot {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Self::Error> {
        let output = if self.extended {
            run_extended(&self.client, sql).await
        } else {
            run_simple(&self.client, sql).await
        };
        Ok(output?)
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "sabot"
    }

    async fn sleep(duration: std::time::Duration) {
        tokio::time::sleep(duration).await
    }

    fn error_sql_state(error: &Self::Error) -> Option<String> {
        error.sqlstate.clone()
    }

    /// `system` records (files for file sources) run without blocking the runtime.
    async fn run_command(command: std::process::Command) -> std::io::Result<std::process::Output> {
        tokio::process::Command::from(command).output().await
    }
}

fn cell(value: Option<&str>) -> String {
    match value {
        None => "NULL".into(),
        Some("") => "(empty)".into(),
        Some(text) => text.to_string(),
    }
}

async fn run_simple(
    client: &Client,
    sql: &str,
) -> Result<DBOutput<DefaultColumnType>, tokio_postgres::Error> {
    let mut rows = Vec::new();
    let mut width = None;
    let mut count = 0;
    for message in client.simple_query(sql).await? {
        match message {
            SimpleQueryMessage::Row(row) => {
                width = Some(row.len());
                rows.push((0..row.len()).map(|i| cell(row.get(i))).collect());
            }
            SimpleQueryMessage::RowDescription(columns) => {
                width = Some(columns.len());
                rows.clear();
            }
            SimpleQueryMessage::CommandComplete(n) => count = n,
            _ => {}
        }
    }
    Ok(match width {
        Some(width) => DBOutput::Rows { types: vec![DefaultColumnType::Any; width], rows },
        None => DBOutput::StatementComplete(count),
    })
}

async fn run_extended(
    client: &Client,
    sql: &str,
) -> Result<DBOutput<DefaultColumnType>, tokio_postgres::Error> {
    let statement = client.prepare(sql).await?;
    if statement.columns().is_empty() {
        return Ok(DBOutput::StatementComplete(client.execute(&statement, &[]).await?));
    }
    let rows = client.query(&statement, &[]).await?;
    let types: Vec<Type> = statement.columns().iter().map(|c| c.type_().clone()).collect();
    let rows = rows
        .iter()
        .map(|row| {
            (0..types.len())
                .map(|i| {
                    cell(row.get::<_, Option<Binary>>(i).map(|b| format_binary(&types[i], &b.0)).as_deref())
                })
                .collect()
        })
        .collect();
    Ok(DBOutput::Rows { types: vec![DefaultColumnType::Any; types.len()], rows })
}

/// A value in binary format, whatever its type.
struct Binary(Vec<u8>);

impl<'a> FromSql<'a> for Binary {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Binary(raw.to_vec()))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Formats a binary value the way Postgres prints it in text, so one expected output
/// serves both protocols.
fn format_binary(ty: &Type, raw: &[u8]) -> String {
    let mut buf = raw;
    let micros_epoch = chrono::NaiveDate::from_ymd_opt(2000, 1, 1)
        .expect("valid date")
        .and_hms_opt(0, 0, 0)
        .expect("valid time");
    match *ty {
        Type::BOOL => if raw[0] == 1 { "t" } else { "f" }.into(),
        Type::INT2 => buf.get_i16().to_string(),
        Type::INT4 => buf.get_i32().to_string(),
        Type::INT8 => buf.get_i64().to_string(),
        Type::FLOAT4 => format_float(buf.get_f32() as f64),
        Type::FLOAT8 => format_float(buf.get_f64()),
        Type::TEXT | Type::VARCHAR => String::from_utf8_lossy(raw).into_owned(),
        Type::JSONB => String::from_utf8_lossy(&raw[1..]).into_owned(),
        Type::BYTEA => format!("\\x{}", raw.iter().map(|b| format!("{b:02x}")).collect::<String>()),
        Type::DATE => (micros_epoch.date() + chrono::Duration::days(buf.get_i32().into())).to_string(),
        Type::TIMESTAMP | Type::TIMESTAMPTZ => {
            let ts = micros_epoch + chrono::Duration::microseconds(buf.get_i64());
            let text = ts.format("%Y-%m-%d %H:%M:%S%.f").to_string();
            if *ty == Type::TIMESTAMPTZ { format!("{text}+00") } else { text }
        }
        Type::TIME => {
            let t = chrono::NaiveTime::MIN + chrono::Duration::microseconds(buf.get_i64());
            t.format("%H:%M:%S%.f").to_string()
        }
        Type::NUMERIC => format_numeric(raw),
        _ => format!("<{} in binary>", ty.name()),
    }
}

fn format_float(value: f64) -> String {
    if value.is_infinite() {
        return if value > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    if value.is_nan() { "NaN".into() } else { value.to_string() }
}

fn format_numeric(raw: &[u8]) -> String {
    let mut buf = raw;
    let (count, weight, sign, scale) = (buf.get_i16(), buf.get_i16(), buf.get_u16(), buf.get_u16() as usize);
    let digits: Vec<i16> = (0..count).map(|_| buf.get_i16()).collect();
    let mut int_part = String::new();
    let mut frac_part = String::new();
    for position in 0..=weight.max(0) {
        let digit = digits.get(position as usize).copied().unwrap_or(0);
        int_part.push_str(&format!("{digit:04}"));
    }
    if weight < 0 {
        int_part = "0".into();
        frac_part.push_str(&"0000".repeat((-weight - 1) as usize));
    }
    for digit in digits.iter().skip((weight + 1).max(0) as usize) {
        frac_part.push_str(&format!("{digit:04}"));
    }
    let int_part = int_part.trim_start_matches('0');
    let int_part = if int_part.is_empty() { "0" } else { int_part };
    let frac: String = frac_part.chars().chain(std::iter::repeat('0')).take(scale).collect();
    let sign = if sign == 0x4000 { "-" } else { "" };
    if scale == 0 { format!("{sign}{int_part}") } else { format!("{sign}{int_part}.{frac}") }
}

fn slt_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> =
        std::fs::read_dir(dir).expect("sql-tests is readable").flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            slt_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "slt") {
            out.push(path);
        }
    }
}

/// Runs one file against a fresh in-memory server; returns the failure, if any.
async fn run_file(path: &Path, extended: bool) -> Option<String> {
    let server = TestServer::start().await;
    let addr = server.addr;
    let mut runner = Runner::new(move || async move { Ok(Sabot { client: connect(addr).await, extended }) });
    let result = runner.run_file_async(path).await;
    drop(runner);
    server.stop().await;
    result.err().map(|e| {
        format!("{} ({}): {}", path.display(), if extended { "extended" } else { "simple" }, e.display(true))
    })
}

/// Runs every slt file under `dir`, each against a fresh server, and reports all failures.
async fn run_all(dir: &Path, extended: bool, at_least: usize) {
    let mut files = Vec::new();
    slt_files(dir, &mut files);
    // While working on one feature: `SABOT_SLT_FILTER=streaming/joins cargo test --test it sql_tests`.
    if let Ok(filter) = std::env::var("SABOT_SLT_FILTER") {
        files.retain(|f| f.to_string_lossy().contains(&filter));
        return run_files(&files, extended).await;
    }
    assert!(files.len() >= at_least, "{} holds only {} slt files", dir.display(), files.len());
    run_files(&files, extended).await;
}

async fn run_files(files: &[PathBuf], extended: bool) {
    let mut failures = Vec::new();
    for file in files {
        if let Some(failure) = run_file(file, extended).await {
            failures.push(failure);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} slt files failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_tests_pass_over_the_simple_protocol() {
    run_all(&repo_root().join("sql-tests"), false, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_tests_pass_over_the_extended_protocol() {
    run_all(&repo_root().join("sql-tests").join("extended"), true, 1).await;
}

/// The SQLite corpus file that Postgres 15 passes whole. It lives in `shared/`, beside the
/// repository (where CI puts it); `SABOT_CONFORMANCE_DIR` points elsewhere. Records Sabot
/// cannot pass yet are listed with their reason in `tests/it/conformance/select1.skip`;
/// the test fails if any other record fails, or if a listed record starts passing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_select1_conformance() {
    let dir = std::env::var_os("SABOT_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("..").join("shared").join("conformance"));
    let file = dir.join("sqlite").join("select1.test");
    assert!(file.exists(), "conformance corpus not found at {} (set SABOT_CONFORMANCE_DIR)", file.display());
    let skip_list =
        std::fs::read_to_string(repo_root().join("tests/it/conformance/select1.skip")).expect("skip list");
    let skipped: std::collections::BTreeMap<u32, &str> = skip_list
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (line, reason) = l.split_once(' ')?;
            Some((line.parse().ok()?, reason))
        })
        .collect();

    let server = TestServer::start().await;
    let addr = server.addr;
    let mut runner =
        Runner::new(move || async move { Ok(Sabot { client: connect(addr).await, extended: false }) });
    let records = sqllogictest::parse_file::<DefaultColumnType>(&file).expect("corpus parses");
    let (mut unexpected, mut fixed, mut ran) = (Vec::new(), Vec::new(), 0);
    for record in records {
        let line = match &record {
            sqllogictest::Record::Statement { loc, .. } | sqllogictest::Record::Query { loc, .. } => {
                Some(loc.line())
            }
            _ => None,
        };
        let result = runner.run_async(record).await;
        let Some(line) = line else { continue };
        ran += 1;
        match (result, skipped.contains_key(&line)) {
            (Err(e), false) => unexpected.push(format!("{line} {}", e.display(false))),
            (Ok(_), true) => fixed.push(line),
            _ => {}
        }
    }
    drop(runner);
    server.stop().await;
    println!("select1.test: {ran} records, {} skipped (listed in select1.skip)", skipped.len());
    assert!(unexpected.is_empty(), "{} records failed:\n{}", unexpected.len(), unexpected.join("\n"));
    assert!(fixed.is_empty(), "these skipped records pass now; remove them from select1.skip: {fixed:?}");
}
