//! Connectors: one folder per connector, each implementing the `stream::source` traits
//! (and later `stream::sink`), registered here with one line each (STYLE rule 3).
//!
//! A connector is built from a source's `WITH` options and its declared columns. Building
//! validates everything a user can get wrong — unknown options, missing required ones,
//! bad values, columns the connector cannot produce — so that `CREATE SOURCE` fails with a
//! clear error instead of the source failing later. [`prepare_source`] also freezes
//! defaults that must not change across restarts (a generator's base time), so that a
//! source read again after a crash produces the same rows.

pub mod blackhole;
pub mod datagen;
pub mod file;
pub mod format;
pub mod nexmark;
pub mod posix_fs;
mod random;

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use parking_lot::Mutex;

use crate::catalog::{ConnectorDef, FormatDef};
use crate::common::{Error, Result, SqlState};
use crate::stream::sink::{SinkConnector, SinkMode};
use crate::stream::source::SourceConnector;

/// Builds a connector from its options, the source's visible columns and its `FORMAT`
/// clause (`Options::preparing` is true at `CREATE`, when defaults may still be frozen).
type BuildSource = fn(&mut Options, &SchemaRef, Option<&FormatDef>) -> Result<Arc<dyn SourceConnector>>;

/// The source connectors, by `connector = '...'` name.
const SOURCES: &[(&str, BuildSource)] =
    &[("datagen", datagen::build), ("nexmark", nexmark::build), ("posix_fs", posix_fs::build)];

/// Builds a sink connector from its options and the sink's name.
type BuildSink = fn(&mut Options, &str) -> Result<Arc<dyn SinkConnector>>;

/// The sink connectors, by `connector = '...'` name.
const SINKS: &[(&str, BuildSink)] = &[("blackhole", blackhole::build), ("file", file::build)];

/// Options every source accepts, whatever its connector; read by the engine.
pub const GENERIC_SOURCE_OPTIONS: &[&str] = &["source_rate_limit"];

/// The source connector `def` describes, over `schema` (the declared columns).
pub fn source(def: &ConnectorDef, schema: &SchemaRef) -> Result<Arc<dyn SourceConnector>> {
    let mut options = Options::new(def.options.clone());
    build(def, &mut options, schema)
}

/// Validates a new source's definition and freezes the defaults its rows depend on into
/// its options (returned), so that every later build produces the same rows.
pub fn prepare_source(def: &ConnectorDef, schema: &SchemaRef) -> Result<BTreeMap<String, String>> {
    let mut options = Options::new(def.options.clone());
    options.preparing = true;
    build(def, &mut options, schema)?;
    options.finish()?;
    Ok(options.into_values())
}

/// The sink connector `def` describes, for the sink named `name`.
pub fn sink(def: &ConnectorDef, name: &str) -> Result<Arc<dyn SinkConnector>> {
    build_sink(def, &mut Options::new(def.options.clone()), name)
}

/// Validates a new sink's definition; returns its options with defaults frozen.
pub fn prepare_sink(def: &ConnectorDef, name: &str) -> Result<BTreeMap<String, String>> {
    let mut options = Options::new(def.options.clone());
    options.preparing = true;
    build_sink(def, &mut options, name)?;
    options.finish()?;
    Ok(options.into_values())
}

fn build_sink(def: &ConnectorDef, options: &mut Options, name: &str) -> Result<Arc<dyn SinkConnector>> {
    if let Some(format) = &def.format
        && !(format.format == "PLAIN" && format.encode == "JSON" && format.options.is_empty())
    {
        return Err(Error::unsupported(format!(
            "FORMAT {} ENCODE {} for a sink",
            format.format, format.encode
        ))
        .with_hint("sinks write FORMAT PLAIN ENCODE JSON"));
    }
    let Some((_, build)) = SINKS.iter().find(|(n, _)| *n == def.name) else {
        let known: Vec<&str> = SINKS.iter().map(|(n, _)| *n).collect();
        return Err(Error::new(
            SqlState::InvalidParameterValue,
            format!("unknown sink connector \"{}\"", def.name),
        )
        .with_hint(format!("sink connectors: {}", known.join(", "))));
    };
    for key in GENERIC_SINK_OPTIONS {
        options.get(key);
    }
    build(options, name)
}

/// Options every sink accepts, whatever its connector; read by [`sink_mode`].
pub const GENERIC_SINK_OPTIONS: &[&str] = &["type", "force_append_only"];

/// What a sink writes: `type = 'changelog'` (the default) or `'append-only'`, with
/// `force_append_only`.
pub fn sink_mode(def: &ConnectorDef) -> Result<SinkMode> {
    let options = Options::new(def.options.clone());
    let force = options.flag("force_append_only", false)?;
    match options.get("type").map(str::to_ascii_lowercase).as_deref() {
        None | Some("changelog") if !force => Ok(SinkMode::Changelog),
        Some("append-only" | "append_only") => Ok(SinkMode::AppendOnly { force }),
        None | Some("changelog") => Err(Error::new(
            SqlState::InvalidParameterValue,
            "option \"force_append_only\" needs type = 'append-only'",
        )),
        Some(other) => Err(Error::new(
            SqlState::InvalidParameterValue,
            format!("invalid value \"{other}\" for option \"type\": expected 'changelog' or 'append-only'"),
        )),
    }
}

fn build(def: &ConnectorDef, options: &mut Options, schema: &SchemaRef) -> Result<Arc<dyn SourceConnector>> {
    let Some((_, build)) = SOURCES.iter().find(|(name, _)| *name == def.name) else {
        let known: Vec<&str> = SOURCES.iter().map(|(name, _)| *name).collect();
        return Err(Error::new(
            SqlState::InvalidParameterValue,
            format!("unknown connector \"{}\"", def.name),
        )
        .with_hint(format!("source connectors: {}", known.join(", "))));
    };
    for key in GENERIC_SOURCE_OPTIONS {
        options.get(key);
    }
    build(options, schema, def.format.as_ref())
}

/// Refuses a `FORMAT` clause, for connectors that make rows rather than read bytes.
pub fn no_format(connector: &str, format: Option<&FormatDef>) -> Result<()> {
    match format {
        None => Ok(()),
        Some(format) => Err(Error::unsupported(format!(
            "FORMAT {} ENCODE {} with connector {connector}",
            format.format, format.encode
        ))
        .with_hint("generators (datagen, nexmark) take no FORMAT clause")),
    }
}

/// A connector's `WITH` options: typed reads with Postgres-style errors, and a check that
/// every option given was read (an unknown option is an error naming it).
pub struct Options {
    values: BTreeMap<String, String>,
    used: Mutex<BTreeSet<String>>,
    /// Set at `CREATE`: defaults that must not change later are written back.
    preparing: bool,
}

impl Options {
    pub fn new(values: BTreeMap<String, String>) -> Self {
        Options { values, used: Mutex::new(BTreeSet::new()), preparing: false }
    }

    /// The option `key`, if given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.used.lock().insert(key.to_string());
        self.values.get(key).map(String::as_str)
    }

    /// The option `key` parsed as a `T`, or `default` when absent.
    pub fn parse<T: FromStr>(&self, key: &str, default: T) -> Result<T> {
        match self.get(key) {
            None => Ok(default),
            Some(text) => text.trim().parse().map_err(|_| invalid(key, text, std::any::type_name::<T>())),
        }
    }

    /// The option `key` parsed as a `T`, if given.
    pub fn parse_opt<T: FromStr>(&self, key: &str) -> Result<Option<T>> {
        match self.get(key) {
            None => Ok(None),
            Some(text) => {
                text.trim().parse().map(Some).map_err(|_| invalid(key, text, std::any::type_name::<T>()))
            }
        }
    }

    /// A boolean option (`true`/`false`, `on`/`off`, `1`/`0`).
    pub fn flag(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("true" | "on" | "1" | "yes") => Ok(true),
            Some("false" | "off" | "0" | "no") => Ok(false),
            Some(other) => Err(invalid(key, other, "boolean")),
        }
    }

    /// Keys that start with `prefix`, with the prefix removed.
    pub fn keys_with_prefix(&self, prefix: &str) -> Vec<String> {
        self.values.keys().filter_map(|k| k.strip_prefix(prefix)).map(str::to_string).collect()
    }

    /// The value of `key`, frozen at `CREATE` to `default()` when not given.
    pub fn frozen(&mut self, key: &str, default: impl FnOnce() -> String) -> Option<String> {
        if let Some(value) = self.get(key) {
            return Some(value.to_string());
        }
        if self.preparing {
            let value = default();
            self.values.insert(key.to_string(), value.clone());
            return Some(value);
        }
        None
    }

    /// Sets `key` to `value` at `CREATE` (a value made canonical, such as a path).
    pub fn freeze(&mut self, key: &str, value: String) {
        if self.preparing {
            self.values.insert(key.to_string(), value);
        }
    }

    /// Fails on the first option that no one read.
    pub fn finish(&self) -> Result<()> {
        let used = self.used.lock();
        match self.values.keys().find(|k| !used.contains(*k)) {
            Some(unknown) => {
                Err(Error::new(SqlState::InvalidParameterValue, format!("unknown option \"{unknown}\"")))
            }
            None => Ok(()),
        }
    }

    pub fn into_values(self) -> BTreeMap<String, String> {
        self.values
    }
}

fn invalid(key: &str, value: &str, expected: &str) -> Error {
    let expected = match expected.rsplit("::").next().unwrap_or(expected) {
        "u64" | "usize" | "u32" => "a non-negative integer",
        "i64" | "i32" | "i16" => "an integer",
        "f64" | "f32" => "a number",
        other => other,
    };
    Error::new(
        SqlState::InvalidParameterValue,
        format!("invalid value \"{value}\" for option \"{key}\": expected {expected}"),
    )
}

/// The error for an option that must be given.
pub fn missing(key: &str) -> Error {
    Error::new(SqlState::InvalidParameterValue, format!("option \"{key}\" is required"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_and_unknown_ones_are_named() {
        let options = Options::new(BTreeMap::from([
            ("a.n".to_string(), "12".to_string()),
            ("a.flag".to_string(), "TRUE".to_string()),
            ("a.typo".to_string(), "1".to_string()),
        ]));
        assert_eq!(options.parse::<u64>("a.n", 0).unwrap(), 12);
        assert!(options.flag("a.flag", false).unwrap());
        assert_eq!(options.parse::<u64>("a.absent", 7).unwrap(), 7);
        let error = options.finish().unwrap_err();
        assert_eq!(error.sqlstate().code(), "22023");
        assert!(error.to_string().contains("a.typo"), "{error}");
        let bad = Options::new(BTreeMap::from([("n".to_string(), "x".to_string())]));
        assert!(bad.parse::<u64>("n", 0).unwrap_err().to_string().contains("non-negative integer"));
    }
}
