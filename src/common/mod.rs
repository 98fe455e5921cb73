//! Value types, Arrow schema helpers, row/key encoding, errors and configuration.

pub mod config;
pub mod error;
pub mod failpoint;
pub mod pg_text;
pub mod proctime;
pub mod row;
pub mod types;
pub mod window;

pub use error::{Error, Result, SqlState};
pub use types::SqlType;

/// The version Sabot reports to clients (`server_version`, `version()`): the Postgres
/// version whose protocol and catalog it follows, then its own.
pub const SERVER_VERSION: &str = concat!("16.6 (Sabot ", env!("CARGO_PKG_VERSION"), ")");
