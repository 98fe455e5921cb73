//! SQL front end: parsing with Sabot's extensions and binding of DDL against the catalog.

pub mod alias_lists;
pub mod asof_join;
pub mod assignments;
pub mod catalog_subquery;
pub mod checks;
pub mod copy;
pub mod ddl;
pub mod decorrelate;
pub mod depth;
pub mod fields;
pub mod frame_exclusion;
pub mod from_functions;
pub mod functions;
pub mod jsonb;
pub mod multiset;
pub mod on_conflict;
pub mod ordered_set;
pub mod parser;
pub mod pg_casts;
pub mod pg_compat;
pub mod pg_format;
pub mod pg_functions;
pub mod pg_intervals;
pub mod pg_timestamps;
pub mod proctime;
pub mod select_lists;
pub mod session_window;
pub mod source_ddl;
pub mod stream_plan;
pub mod subquery_forms;
pub mod temporal_join;
pub mod uniques;
pub mod views;
pub mod window;

pub use parser::{Statement, parse, parse_generated, parse_within};
