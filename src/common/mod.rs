//! Value types, Arrow schema helpers, row/key encoding, errors and configuration.

pub mod config;
pub mod error;
pub mod failpoint;
pub mod proctime;
pub mod row;
pub mod types;
pub mod window;

pub use error::{Error, Result, SqlState};
pub use types::SqlType;
