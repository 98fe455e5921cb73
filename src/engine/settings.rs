//! Session variables: `SET`, `SHOW`, `SHOW ALL`.

use std::collections::BTreeMap;

use crate::common::config::Config;
use crate::common::{Error, Result, SqlState};

/// A variable every session has, with its default and meaning.
struct Variable {
    name: &'static str,
    default: &'static str,
    description: &'static str,
    /// Validates and normalizes a new value; `None` means read-only.
    check: Option<fn(&str) -> Result<String>>,
}

const VARIABLES: &[Variable] = &[
    Variable {
        name: "implicit_flush",
        default: "on",
        description: "Each DML statement returns only once its change is committed and visible.",
        check: Some(check_bool),
    },
    Variable {
        name: "streaming_parallelism",
        default: "",
        description: "Parallel instances of each stateful operator of a new materialized view (default: the number of CPU cores).",
        check: Some(check_parallelism),
    },
    Variable {
        name: "search_path",
        default: "public",
        description: "Schema for unqualified names (the first schema listed is used).",
        check: Some(check_any),
    },
    Variable {
        name: "application_name",
        default: "",
        description: "Name of the connected application.",
        check: Some(check_any),
    },
    Variable {
        name: "client_encoding",
        default: "UTF8",
        description: "Client character set; only UTF8 is supported.",
        check: Some(check_utf8),
    },
    Variable {
        name: "datestyle",
        default: "ISO, MDY",
        description: "Display format of dates and times; only ISO is supported.",
        check: Some(check_datestyle),
    },
    Variable {
        name: "timezone",
        default: "UTC",
        description: "Time zone of timestamptz values; only UTC is supported.",
        check: Some(check_utc),
    },
    Variable {
        name: "intervalstyle",
        default: "postgres",
        description: "Display format of intervals.",
        check: None,
    },
    Variable {
        name: "extra_float_digits",
        default: "1",
        description: "Float output: shortest exact representation (any value is accepted).",
        check: Some(check_int),
    },
    Variable {
        name: "standard_conforming_strings",
        default: "on",
        description: "Backslashes in ordinary string literals are literal.",
        check: None,
    },
    Variable {
        name: "statement_timeout",
        default: "0",
        description: "Statements running longer are cancelled (57014), in milliseconds or with a unit ('5s', '2min'); 0 means no limit.",
        check: Some(check_duration),
    },
    Variable {
        name: "statement_memory_bytes_max",
        default: "",
        description: "Memory one statement may hold (sorts, hash tables, collected results, COPY data), in bytes or with a unit ('64MB'); more fails with 53200. At most the server's limit.",
        check: Some(check_bytes),
    },
    Variable {
        name: "connections_max",
        default: "",
        description: "Server limit: established client connections; one more is refused with 53300.",
        check: None,
    },
    Variable {
        name: "startup_timeout_ms",
        default: "",
        description: "Server limit: milliseconds a connection may take to complete its startup and authentication.",
        check: None,
    },
    Variable {
        name: "message_bytes_max",
        default: "",
        description: "Server limit: bytes of the largest protocol message after authentication (10000 before).",
        check: None,
    },
    Variable {
        name: "expression_depth_max",
        default: "",
        description: "Server limit: levels expressions and set operations may nest; deeper statements fail with 54001.",
        check: None,
    },
    Variable {
        name: "barrier_interval_ms",
        default: "",
        description: "Server setting: milliseconds between epoch commits.",
        check: None,
    },
    Variable {
        name: "checkpoint_timeout_ms",
        default: "",
        description: "Server limit: milliseconds an epoch waits for every view to acknowledge its barrier before it fails.",
        check: None,
    },
    Variable {
        name: "change_channel_messages_max",
        default: "",
        description: "Server limit: messages each change channel between tables and view operators holds.",
        check: None,
    },
    Variable {
        name: "state_cache_bytes_max",
        default: "",
        description: "Server limit: bytes of the RocksDB block cache for state reads.",
        check: None,
    },
    Variable {
        name: "operator_cache_bytes_max",
        default: "",
        description: "Server limit: bytes of state one stateful operator keeps in memory before evicting to the state store.",
        check: None,
    },
    Variable {
        name: "state_memory_bytes_max",
        default: "",
        description: "Server limit: bytes of operator state all operators together keep in memory.",
        check: None,
    },
    Variable {
        name: "authentication_method",
        default: "",
        description: "Server setting: how clients log in (trust or password, verified with SCRAM-SHA-256).",
        check: None,
    },
    Variable {
        name: "password_encryption",
        default: "scram-sha-256",
        description: "How passwords are stored: as SCRAM-SHA-256 verifiers (psql's \\password reads this).",
        check: None,
    },
    Variable {
        name: "ssl",
        default: "off",
        description: "Server setting: whether the server accepts TLS connections.",
        check: None,
    },
    Variable {
        name: "transaction_isolation",
        default: "read committed",
        description: "Every statement reads the newest committed epoch (and its transaction block's own writes).",
        check: None,
    },
    Variable {
        name: "server_version",
        default: concat!("16.6 (Sabot ", env!("CARGO_PKG_VERSION"), ")"),
        description: "The Postgres version whose protocol and catalog Sabot follows.",
        check: None,
    },
    Variable {
        name: "server_version_num",
        default: "160006",
        description: "server_version as a number.",
        check: None,
    },
    Variable { name: "server_encoding", default: "UTF8", description: "Server character set.", check: None },
    Variable {
        name: "integer_datetimes",
        default: "on",
        description: "Timestamps are stored as 64-bit integers.",
        check: None,
    },
];

#[derive(Clone, Debug)]
pub struct Settings {
    values: BTreeMap<&'static str, String>,
    /// The server's `statement_memory_bytes_max`: sessions may only lower it.
    memory_bytes_max: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings::new(&Config::default())
    }
}

impl Settings {
    /// The settings of a new session on a server configured by `config`.
    pub fn new(config: &Config) -> Self {
        let mut values: BTreeMap<&'static str, String> =
            VARIABLES.iter().map(|v| (v.name, default_of(v))).collect();
        let server = [
            ("statement_memory_bytes_max", config.statement_memory_bytes_max.to_string()),
            ("connections_max", config.connections_max.to_string()),
            ("startup_timeout_ms", config.startup_timeout_ms.to_string()),
            ("message_bytes_max", config.message_bytes_max.to_string()),
            ("expression_depth_max", crate::sql::depth::EXPRESSION_DEPTH_MAX.to_string()),
            ("barrier_interval_ms", config.barrier_interval_ms.to_string()),
            ("checkpoint_timeout_ms", config.checkpoint_timeout_ms.to_string()),
            ("change_channel_messages_max", config.change_channel_messages_max.to_string()),
            ("state_cache_bytes_max", config.state_cache_bytes_max.to_string()),
            ("operator_cache_bytes_max", config.operator_cache_bytes_max.to_string()),
            ("state_memory_bytes_max", config.state_memory_bytes_max.to_string()),
            ("authentication_method", config.auth.name().to_string()),
            ("ssl", if config.tls_cert.is_some() { "on" } else { "off" }.to_string()),
        ];
        values.extend(server);
        Settings { values, memory_bytes_max: config.statement_memory_bytes_max }
    }

    pub fn get(&self, name: &str) -> Result<&str> {
        let variable = lookup(name)?;
        Ok(self.values.get(variable.name).map(String::as_str).unwrap_or(variable.default))
    }

    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        let variable = lookup(name)?;
        let check = variable.check.ok_or_else(|| {
            Error::new(
                SqlState::FeatureNotSupported,
                format!("parameter \"{}\" cannot be changed", variable.name),
            )
        })?;
        let value = check(value).map_err(|e| match e {
            Error::Sql { state: SqlState::InvalidParameterValue, message, .. } => Error::new(
                SqlState::InvalidParameterValue,
                format!("invalid value for parameter \"{}\": \"{value}\"", variable.name),
            )
            .with_detail(message),
            other => other,
        })?;
        if variable.name == "statement_memory_bytes_max" && parse_bytes(&value) > Some(self.memory_bytes_max)
        {
            return Err(Error::new(
                SqlState::InvalidParameterValue,
                format!(
                    "statement_memory_bytes_max cannot exceed the server's limit of {} bytes",
                    self.memory_bytes_max
                ),
            ));
        }
        self.values.insert(variable.name, value);
        Ok(())
    }

    pub fn reset(&mut self, name: &str) -> Result<()> {
        let variable = lookup(name)?;
        let value = match variable.name {
            "statement_memory_bytes_max" => self.memory_bytes_max.to_string(),
            _ => default_of(variable),
        };
        self.values.insert(variable.name, value);
        Ok(())
    }

    /// Memory the next statement may reserve, in bytes.
    pub fn statement_memory_bytes_max(&self) -> usize {
        self.values
            .get("statement_memory_bytes_max")
            .and_then(|v| parse_bytes(v))
            .unwrap_or(self.memory_bytes_max)
    }

    /// `statement_timeout`, unless it is 0 (no limit).
    pub fn statement_timeout(&self) -> Option<std::time::Duration> {
        let millis = self.values.get("statement_timeout").and_then(|v| parse_millis(v))?;
        (millis > 0).then(|| std::time::Duration::from_millis(millis))
    }

    /// `(name, setting, description)` of every variable, for `SHOW ALL`.
    pub fn all(&self) -> Vec<(&'static str, String, &'static str)> {
        VARIABLES
            .iter()
            .map(|v| (v.name, self.values.get(v.name).cloned().unwrap_or_default(), v.description))
            .collect()
    }

    pub fn streaming_parallelism(&self) -> usize {
        self.values.get("streaming_parallelism").and_then(|v| v.parse().ok()).unwrap_or(1)
    }

    pub fn implicit_flush(&self) -> bool {
        self.values.get("implicit_flush").is_some_and(|v| v == "on")
    }

    /// The schema unqualified names resolve to.
    pub fn current_schema(&self) -> String {
        let path = self.values.get("search_path").map(String::as_str).unwrap_or("public");
        path.split(',')
            .map(|s| s.trim().trim_matches('"'))
            .find(|s| !s.is_empty() && *s != "$user")
            .unwrap_or("public")
            .to_string()
    }
}

fn lookup(name: &str) -> Result<&'static Variable> {
    let lower = name.to_ascii_lowercase();
    let lower = match lower.as_str() {
        "time zone" => "timezone",
        other => other,
    };
    VARIABLES.iter().find(|v| v.name == lower).ok_or_else(|| {
        Error::new(SqlState::UndefinedObject, format!("unrecognized configuration parameter \"{name}\""))
    })
}

fn check_any(value: &str) -> Result<String> {
    Ok(value.to_string())
}

fn default_of(variable: &Variable) -> String {
    match variable.name {
        "streaming_parallelism" => {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).to_string()
        }
        _ => variable.default.to_string(),
    }
}

fn check_parallelism(value: &str) -> Result<String> {
    match value.trim().parse::<usize>() {
        Ok(n) if (1..=256).contains(&n) => Ok(n.to_string()),
        _ => Err(Error::new(SqlState::InvalidParameterValue, "expected an integer from 1 to 256")),
    }
}

fn check_bool(value: &str) -> Result<String> {
    match value.to_ascii_lowercase().as_str() {
        "on" | "true" | "t" | "yes" | "1" => Ok("on".into()),
        "off" | "false" | "f" | "no" | "0" => Ok("off".into()),
        _ => Err(Error::new(SqlState::InvalidParameterValue, "expected a boolean")),
    }
}

fn check_int(value: &str) -> Result<String> {
    value
        .trim()
        .parse::<i64>()
        .map(|v| v.to_string())
        .map_err(|_| Error::new(SqlState::InvalidParameterValue, "expected an integer"))
}

/// A duration as Postgres writes it: milliseconds, or a number with a unit.
fn parse_millis(value: &str) -> Option<u64> {
    let value = value.trim();
    let digits_end = value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len());
    let number: u64 = value[..digits_end].parse().ok()?;
    let scale = match value[digits_end..].trim().to_ascii_lowercase().as_str() {
        "" | "ms" => 1,
        "s" => 1_000,
        "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    number.checked_mul(scale)
}

fn check_duration(value: &str) -> Result<String> {
    parse_millis(value).map(|ms| ms.to_string()).ok_or_else(|| {
        Error::new(
            SqlState::InvalidParameterValue,
            "expected milliseconds, or a number with ms, s, min, h or d",
        )
    })
}

/// A size as Postgres writes it: bytes, or a number with kB, MB, GB or TB (powers of 1024).
fn parse_bytes(value: &str) -> Option<usize> {
    let value = value.trim();
    let digits_end = value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len());
    let number: usize = value[..digits_end].parse().ok()?;
    let scale: usize = match value[digits_end..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1 << 10,
        "mb" => 1 << 20,
        "gb" => 1 << 30,
        "tb" => 1 << 40,
        _ => return None,
    };
    number.checked_mul(scale)
}

fn check_bytes(value: &str) -> Result<String> {
    match parse_bytes(value) {
        Some(bytes) if bytes > 0 => Ok(bytes.to_string()),
        _ => Err(Error::new(
            SqlState::InvalidParameterValue,
            "expected a positive number of bytes, or a number with kB, MB, GB or TB",
        )),
    }
}

fn check_utf8(value: &str) -> Result<String> {
    match value.to_ascii_uppercase().replace('-', "").as_str() {
        "UTF8" | "UNICODE" => Ok("UTF8".into()),
        _ => Err(Error::new(SqlState::FeatureNotSupported, "only UTF8 is supported")),
    }
}

fn check_datestyle(value: &str) -> Result<String> {
    if value.to_ascii_uppercase().contains("ISO") {
        Ok("ISO, MDY".into())
    } else {
        Err(Error::new(SqlState::FeatureNotSupported, "only the ISO date style is supported"))
    }
}

fn check_utc(value: &str) -> Result<String> {
    match value.to_ascii_uppercase().as_str() {
        "UTC" | "GMT" | "ETC/UTC" | "Z" | "+00:00" | "0" | "UCT" => Ok("UTC".into()),
        _ => Err(Error::new(SqlState::FeatureNotSupported, "only UTC is supported")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_validates_and_show_reads_back() {
        let mut settings = Settings::default();
        assert!(settings.implicit_flush());
        settings.set("IMPLICIT_FLUSH", "false").unwrap();
        assert!(!settings.implicit_flush());
        assert_eq!(settings.get("implicit_flush").unwrap(), "off");
        assert_eq!(settings.set("implicit_flush", "maybe").unwrap_err().sqlstate().code(), "22023");
        assert_eq!(settings.get("nope").unwrap_err().sqlstate().code(), "42704");
        assert_eq!(settings.set("server_version", "1").unwrap_err().sqlstate().code(), "0A000");
        settings.set("search_path", "\"$user\", analytics").unwrap();
        assert_eq!(settings.current_schema(), "analytics");
    }

    #[test]
    fn limits_read_units_and_stay_within_the_server_limit() {
        let config = Config { statement_memory_bytes_max: 1 << 30, ..Config::default() };
        let mut settings = Settings::new(&config);
        assert_eq!(settings.statement_memory_bytes_max(), 1 << 30);
        settings.set("statement_memory_bytes_max", "64MB").unwrap();
        assert_eq!(settings.statement_memory_bytes_max(), 64 << 20);
        assert_eq!(settings.set("statement_memory_bytes_max", "2GB").unwrap_err().sqlstate().code(), "22023");
        settings.reset("statement_memory_bytes_max").unwrap();
        assert_eq!(settings.statement_memory_bytes_max(), 1 << 30);
        assert_eq!(settings.statement_timeout(), None);
        settings.set("statement_timeout", "2s").unwrap();
        assert_eq!(settings.statement_timeout(), Some(std::time::Duration::from_secs(2)));
        settings.set("statement_timeout", "250").unwrap();
        assert_eq!(settings.statement_timeout(), Some(std::time::Duration::from_millis(250)));
        assert_eq!(settings.set("connections_max", "5").unwrap_err().sqlstate().code(), "0A000");
        assert!(settings.all().iter().any(|(name, value, _)| *name == "message_bytes_max" && value == &(64usize << 20).to_string()));
    }
}
