//! Session variables: `SET`, `SHOW`, `SHOW ALL`.

use std::collections::BTreeMap;

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
        description: "Accepted for compatibility; statements are not timed out.",
        check: Some(check_int_or_duration),
    },
    Variable {
        name: "transaction_isolation",
        default: "read committed",
        description: "Every statement reads the newest committed epoch.",
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
}

impl Default for Settings {
    fn default() -> Self {
        Settings { values: VARIABLES.iter().map(|v| (v.name, default_of(v))).collect() }
    }
}

impl Settings {
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
        self.values.insert(variable.name, value);
        Ok(())
    }

    pub fn reset(&mut self, name: &str) -> Result<()> {
        let variable = lookup(name)?;
        self.values.insert(variable.name, default_of(variable));
        Ok(())
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

fn check_int_or_duration(value: &str) -> Result<String> {
    let digits = value.trim().trim_end_matches(|c: char| c.is_ascii_alphabetic()).trim();
    check_int(digits).map(|_| value.trim().to_string())
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
}
