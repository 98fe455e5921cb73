//! Sabot: a streaming SQL database. See `docs/architecture.md` for how the modules fit.
//!
//! Modules are listed lowest first; each uses only those above it (DESIGN.md §2).

pub mod batch;
pub mod bench;
pub mod catalog;
pub mod common;
pub mod connector;
pub mod engine;
pub mod plan;
pub mod server;
pub mod sql;
pub mod state;
pub mod stream;

pub use common::config::Config;
pub use common::{Error, Result};
pub use engine::{Database, Session};
