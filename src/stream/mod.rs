//! The dataflow runtime. For now: the change data model, table writers (the entry point of
//! every table's change stream) and the barrier coordinator that commits epochs.

pub mod coordinator;
pub mod message;
pub mod table_writer;

pub use coordinator::Coordinator;
pub use message::{Chunk, Message, Op};
pub use table_writer::TableWriter;
