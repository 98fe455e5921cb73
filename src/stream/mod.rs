//! The dataflow runtime: the change data model, table writers (the entry point of every
//! table's change stream), operators and the actors that run them, exchanges between
//! actors, view dataflows, and the barrier coordinator that commits epochs.

pub mod actor;
pub mod coordinator;
pub mod dataflow;
pub mod exchange;
pub mod message;
pub mod operator;
pub mod sink;
pub mod source;
pub mod table_writer;
pub mod unique;
pub mod watermark;

pub use coordinator::Coordinator;
pub use message::{Chunk, Message, Op};
pub use table_writer::TableWriter;
