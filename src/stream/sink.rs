//! The sink side of connectors: a [`Sink`] consumes a view's changelog and publishes it
//! once per committed epoch, and [`SinkOperator`] drives it as the root of a sink's
//! dataflow.
//!
//! Delivery is a two-phase commit (the shape of Flink's two-phase-commit sinks): at each
//! barrier the sink *seals* what it took since the last one — durable, but not yet
//! visible to anyone outside — and returns a [`Publish`] action; the action runs once the
//! coordinator has committed the epoch, which makes the rows visible (a file renamed
//! into place, later a Kafka transaction committed). If the server stops between the
//! two, the sink's connector finishes the publication of every sealed epoch the store
//! committed, and discards the rest, when it is opened again: the epochs after the
//! committed one are computed again from the committed state and source positions.
//!
//! Which sealed epochs were committed is itself committed: the operator writes the epoch
//! of its last seal into its state table (the sink's own id) with the epoch's other
//! writes. Epoch numbers alone would not do, since a restart commits new epochs with the
//! numbers of the ones a crash lost.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, RecordBatch, StringArray};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use tokio::sync::{mpsc, watch};

use super::coordinator::Committed;
use super::message::{Chunk, Op};
use super::operator::{Operator, OperatorContext};
use crate::common::{Error, Result};
use crate::state::{Epoch, TableId, WriteBatch};

/// What makes a sealed epoch visible; run after the epoch is committed.
pub type Publish = Box<dyn FnOnce() -> Result<()> + Send>;

/// A configured sink connector: opens the sink of one dataflow.
pub trait SinkConnector: Send + Sync {
    /// Opens the sink after a (re)start. `sealed` is the last epoch whose seal was
    /// committed (none before the first): the sink publishes what it sealed up to it and
    /// discards anything sealed later.
    fn open(&self, sealed: Option<Epoch>) -> Result<Box<dyn Sink>>;
}

/// Where a sink's changelog goes.
pub trait Sink: Send {
    /// Takes changes: `data` has the sink's columns, then (in [`SinkMode::Changelog`])
    /// an `op` column (`+I`, `-D`, `-U`, `+U`, Flink's row kinds).
    fn write(&mut self, data: &RecordBatch) -> Result<()>;

    /// Seals what was written since the last seal as epoch `epoch`'s; returns what
    /// publishes it once the epoch commits (nothing when there is nothing to publish).
    fn seal(&mut self, epoch: Epoch) -> Result<Option<Publish>>;
}

/// What a sink writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinkMode {
    /// Every change, with an `op` column (`type = 'changelog'`, the default).
    Changelog,
    /// Only the rows inserted, without an op column (`type = 'append-only'`). The query
    /// must be append-only, unless `force`: then deletes, and the old row of each update,
    /// are dropped and the new row of an update is written as a row.
    AppendOnly { force: bool },
}

/// The key, in a sink's state table, of the epoch of its last committed seal.
pub const SEALED_KEY: &[u8] = b"sealed";

/// The epoch of `sink`'s last committed seal, as of `snapshot`.
pub fn committed_seal(snapshot: &dyn crate::state::Snapshot, sink: TableId) -> Result<Option<Epoch>> {
    match snapshot.get(sink, SEALED_KEY)? {
        None => Ok(None),
        Some(value) => {
            let bytes: [u8; 8] = value
                .as_slice()
                .try_into()
                .map_err(|_| Error::internal("a sink's sealed epoch is corrupt"))?;
            Ok(Some(Epoch::from_be_bytes(bytes)))
        }
    }
}

/// The name of the op column a sink writes.
pub const OP_COLUMN: &str = "op";

fn op_name(op: Op) -> &'static str {
    match op {
        Op::Insert => "+I",
        Op::Delete => "-D",
        Op::UpdateDelete => "-U",
        Op::UpdateInsert => "+U",
    }
}

/// The root of a sink's dataflow: hands the visible columns of each chunk, with their
/// ops, to the sink, and seals it at each barrier.
pub struct SinkOperator {
    sink: Box<dyn Sink>,
    /// The sink's state table (its own id).
    table: TableId,
    /// The epoch sealed at the last barrier, to commit with it.
    sealed: Option<Epoch>,
    mode: SinkMode,
    /// The sink's visible columns, then `op` in changelog mode.
    schema: SchemaRef,
    visible: usize,
    publisher: mpsc::UnboundedSender<(Epoch, Publish)>,
}

impl SinkOperator {
    /// `columns`: the sink's visible columns. Publications run in a task of `runtime`
    /// that waits for each epoch's commit on `committed`.
    pub fn new(
        sink: Box<dyn Sink>,
        mode: SinkMode,
        table: TableId,
        columns: &Schema,
        committed: watch::Receiver<Committed>,
        runtime: &tokio::runtime::Handle,
        name: Arc<str>,
    ) -> Self {
        let mut fields: Vec<Field> = columns.fields().iter().map(|f| f.as_ref().clone()).collect();
        if mode == SinkMode::Changelog {
            fields.push(Field::new(OP_COLUMN, DataType::Utf8, false));
        }
        let (publisher, publications) = mpsc::unbounded_channel();
        runtime.spawn(publish(publications, committed, name));
        SinkOperator {
            sink,
            mode,
            table,
            sealed: None,
            visible: columns.fields().len(),
            schema: Arc::new(Schema::new(fields)),
            publisher,
        }
    }
}

/// Runs each sealed epoch's publication once the epoch is committed, in epoch order;
/// ends when its sink is gone. A failed commit (the store stopped) publishes nothing more.
async fn publish(
    mut publications: mpsc::UnboundedReceiver<(Epoch, Publish)>,
    mut committed: watch::Receiver<Committed>,
    name: Arc<str>,
) {
    while let Some((epoch, action)) = publications.recv().await {
        let done = committed.wait_for(|c| c.epoch >= epoch || c.failure.is_some()).await;
        match done {
            Ok(c) if c.failure.is_none() => {}
            _ => return,
        }
        if let Err(error) = action() {
            tracing::error!(sink = %name, epoch, %error, "a committed epoch could not be published; it is published when the sink is opened again");
            return;
        }
    }
}

impl Operator for SinkOperator {
    fn name(&self) -> &'static str {
        "Sink"
    }

    fn state_tables(&self) -> Vec<TableId> {
        vec![self.table]
    }

    fn checkpoint(&mut self, batch: &mut WriteBatch) {
        if let Some(epoch) = self.sealed.take() {
            batch.put(self.table, SEALED_KEY, epoch.to_be_bytes().to_vec());
        }
    }

    fn on_chunk(&mut self, _ctx: &OperatorContext, _input: usize, chunk: Chunk) -> Result<Vec<Chunk>> {
        if chunk.is_empty() {
            return Ok(Vec::new());
        }
        let mut columns: Vec<ArrayRef> = chunk.data.columns()[..self.visible].to_vec();
        if self.mode == SinkMode::Changelog {
            columns.push(Arc::new(StringArray::from_iter_values(chunk.ops.iter().map(|op| op_name(*op)))));
        }
        let mut data = RecordBatch::try_new(self.schema.clone(), columns)?;
        if self.mode != SinkMode::Changelog
            && chunk.ops.iter().any(|op| !matches!(op, Op::Insert | Op::UpdateInsert))
        {
            let keep = BooleanArray::from_iter(
                chunk.ops.iter().map(|op| Some(matches!(op, Op::Insert | Op::UpdateInsert))),
            );
            data = filter_record_batch(&data, &keep)?;
        }
        if data.num_rows() > 0 {
            self.sink.write(&data)?;
        }
        Ok(Vec::new())
    }

    fn on_barrier(&mut self, _ctx: &OperatorContext, epoch: Epoch) -> Result<Vec<Chunk>> {
        if let Some(action) = self.sink.seal(epoch)? {
            self.sealed = Some(epoch);
            self.publisher
                .send((epoch, action))
                .map_err(|_| Error::internal("the sink's publisher stopped"))?;
        }
        Ok(Vec::new())
    }
}
