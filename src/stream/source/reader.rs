//! The reader of a source in one dataflow (a materialized view over the source): its
//! rows become insert chunks with the hidden row id `split << 40 | row`, unique in the
//! source and the same when a row is read again after a restart; at each barrier the
//! coordinator injects, the reader acknowledges with the state of the splits it read, kept
//! in a positions table of the dataflow, and passes the barrier on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch};
use datafusion::common::ScalarValue;
use tokio::sync::mpsc;

use super::{ReadLimits, SourceConnector, SourceProgress, SplitSet, SplitState, Step};
use crate::catalog::TableDesc;
use crate::common::{Error, Result};
use crate::state::{Epoch, StateStore, TableId, WriteBatch};
use crate::stream::actor::{Ack, DataflowId};
use crate::stream::exchange::{Dispatcher, SendError};
use crate::stream::message::{Chunk, Message};
use crate::stream::watermark::WatermarkExpr;

/// Rows of one split get ids `number << SPLIT_SHIFT | row`.
const SPLIT_SHIFT: u32 = 40;

/// Reads a source's splits for one dataflow and emits their rows as insert chunks,
/// barriers as the coordinator injects them.
pub struct SourceReader {
    /// The source relation (its hidden row id is the last column).
    pub relation: Arc<TableDesc>,
    pub connector: Arc<dyn SourceConnector>,
    pub positions_table: TableId,
    pub store: Arc<dyn StateStore>,
    /// Barriers from the coordinator.
    pub barriers: mpsc::UnboundedReceiver<Epoch>,
    /// Set whenever rows were emitted, so that the coordinator commits them.
    pub active: Arc<AtomicBool>,
    pub output: Dispatcher,
    pub acks: mpsc::UnboundedSender<Ack>,
    pub dataflow: DataflowId,
    pub view: Arc<str>,
    pub limits: ReadLimits,
    pub progress: Arc<SourceProgress>,
}

/// The watermark of a source read by one reader: the minimum over its splits not exhausted
/// of each split's largest watermark-expression value, once every such split has shown
/// one (a split not heard from may bring older rows; a live split that never yields rows
/// holds the watermark back). A split read to its end no longer holds it back. Not persisted: after a
/// restart it starts again from the rows read then (operators keep their own).
struct SourceWatermark {
    expr: WatermarkExpr,
    splits: BTreeMap<u64, i64>,
    published: Option<i64>,
}

impl SourceWatermark {
    /// Takes rows of `split` into account; the source watermark when it advanced (`live`:
    /// the splits not exhausted).
    fn observe(&mut self, split: u64, data: &RecordBatch, live: &[u64]) -> Result<Option<ScalarValue>> {
        if let Some(value) = self.expr.batch_max(data)? {
            let entry = self.splits.entry(split).or_insert(value);
            *entry = (*entry).max(value);
        }
        self.advance(live)
    }

    /// Forgets split `split` (exhausted); the source watermark when that advanced it.
    fn finish(&mut self, split: u64, live: &[u64]) -> Result<Option<ScalarValue>> {
        if self.splits.len() > 1 {
            self.splits.remove(&split);
        }
        self.advance(live)
    }

    /// The minimum over the splits, once every live split has shown a value: a split not
    /// heard from yet may still bring rows older than the others'.
    fn advance(&mut self, live: &[u64]) -> Result<Option<ScalarValue>> {
        if live.iter().any(|split| !self.splits.contains_key(split)) {
            return Ok(None);
        }
        let Some(&minimum) = self.splits.values().min() else { return Ok(None) };
        if self.published.is_some_and(|p| p >= minimum) {
            return Ok(None);
        }
        self.published = Some(minimum);
        Ok(Some(self.expr.scalar(minimum)?))
    }
}

impl SourceReader {
    pub async fn run(mut self) {
        let mut splits = match self.open() {
            Ok(splits) => splits,
            Err(e) => return self.fail(Epoch::MAX, &e),
        };
        let mut watermark = match WatermarkExpr::of(&self.relation) {
            Ok(expr) => expr.map(|expr| SourceWatermark { expr, splits: BTreeMap::new(), published: None }),
            Err(e) => return self.fail(Epoch::MAX, &e),
        };
        loop {
            while let Ok(epoch) = self.barriers.try_recv() {
                if !self.barrier(epoch, &mut splits).await {
                    return;
                }
            }
            let step = match splits.step().await {
                Ok(step) => step,
                Err(e) => return self.fail(Epoch::MAX, &e),
            };
            match step {
                Step::Rows { data, split, first_row } => {
                    if data.num_rows() == 0 {
                        // Only dead letters: they commit with the next epoch.
                        self.active.store(true, Ordering::Release);
                        continue;
                    }
                    let data = match self.with_row_ids(data, split, first_row) {
                        Ok(data) => data,
                        Err(e) => return self.fail(Epoch::MAX, &e),
                    };
                    self.active.store(true, Ordering::Release);
                    let live = splits.live();
                    let advanced =
                        match watermark.as_mut().map(|w| w.observe(split, &data, &live)).transpose() {
                            Ok(advanced) => advanced.flatten(),
                            Err(e) => return self.fail(Epoch::MAX, &e),
                        };
                    if !self.send(Message::Chunk(Chunk::inserts(data))).await
                        || !self.send_watermark(watermark.as_ref(), advanced).await
                    {
                        return;
                    }
                }
                Step::Changed => {
                    self.active.store(true, Ordering::Release);
                    if let Some(source) = watermark.as_mut() {
                        let finished: Vec<u64> =
                            source.splits.keys().copied().filter(|&n| splits.is_done(n)).collect();
                        for number in finished {
                            let advanced = match source.finish(number, &splits.live()) {
                                Ok(advanced) => advanced,
                                Err(e) => return self.fail(Epoch::MAX, &e),
                            };
                            if !self.send_watermark(Some(source), advanced).await {
                                return;
                            }
                        }
                        // A split that ended without rows held it back too.
                        let advanced = match source.advance(&splits.live()) {
                            Ok(advanced) => advanced,
                            Err(e) => return self.fail(Epoch::MAX, &e),
                        };
                        if !self.send_watermark(Some(source), advanced).await {
                            return;
                        }
                    }
                }
                Step::Wait(wait) => {
                    tokio::select! {
                        epoch = self.barriers.recv() => match epoch {
                            Some(epoch) => if !self.barrier(epoch, &mut splits).await { return },
                            None => return,
                        },
                        () = tokio::time::sleep(wait) => {}
                    }
                }
                Step::Finished => match self.barriers.recv().await {
                    Some(epoch) => {
                        if !self.barrier(epoch, &mut splits).await {
                            return;
                        }
                    }
                    None => return,
                },
            }
        }
    }

    /// Passes `message` on; false when the dataflow is gone or failed.
    async fn send(&mut self, message: Message) -> bool {
        match self.output.send(message).await {
            Ok(()) => true,
            Err(SendError::Closed) => false,
            Err(SendError::Failed(e)) => {
                self.fail(Epoch::MAX, &e);
                false
            }
        }
    }

    /// Passes on the source's watermark when it advanced to `value`.
    async fn send_watermark(&mut self, source: Option<&SourceWatermark>, value: Option<ScalarValue>) -> bool {
        match (source, value) {
            (Some(source), Some(value)) => {
                self.send(Message::Watermark { column: source.expr.column, value }).await
            }
            _ => true,
        }
    }

    /// The splits with the state committed in the positions table.
    fn open(&self) -> Result<SplitSet> {
        let mut saved = BTreeMap::new();
        let mut failed = None;
        self.store.snapshot().scan(self.positions_table, &mut |key, value| {
            match SplitState::decode(value) {
                Ok(state) => {
                    saved.insert(String::from_utf8_lossy(key).into_owned(), state);
                }
                Err(e) => failed = Some(e),
            }
            Ok(())
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        SplitSet::open(self.connector.clone(), saved, self.limits, self.progress.clone())
    }

    /// The rows with the hidden row id appended (the relation's last column).
    fn with_row_ids(&self, data: RecordBatch, split: u64, first: u64) -> Result<RecordBatch> {
        let base = (split << SPLIT_SHIFT) + first;
        let ids: ArrayRef =
            Arc::new(Int64Array::from_iter_values((0..data.num_rows() as u64).map(|i| (base + i) as i64)));
        let mut columns = data.columns().to_vec();
        columns.push(ids);
        Ok(RecordBatch::try_new(self.relation.full_schema(), columns)?)
    }

    /// Passes barrier `epoch` on and acknowledges it with the state of the splits read
    /// since the last one. Returns false when the dataflow is gone.
    async fn barrier(&mut self, epoch: Epoch, splits: &mut SplitSet) -> bool {
        let mut batch = WriteBatch::default();
        let taken = splits.take_dirty(epoch).and_then(|dirty| Ok((dirty, splits.take_dead_letters()?)));
        match taken {
            Ok((dirty, dead)) => {
                for (split, value) in dirty {
                    batch.put(self.positions_table, split.as_bytes(), value);
                }
                for (key, value) in dead {
                    batch.put(super::DEAD_LETTERS_TABLE, &key, value);
                }
            }
            Err(e) => {
                self.fail(epoch, &e);
                return false;
            }
        }
        let _ = self.acks.send(Ack { dataflow: self.dataflow, epoch, result: Ok(batch) });
        match self.output.send(Message::Barrier(epoch)).await {
            Ok(()) => true,
            Err(SendError::Closed) => false,
            Err(SendError::Failed(e)) => {
                self.fail(Epoch::MAX, &e);
                false
            }
        }
    }

    fn fail(&self, epoch: Epoch, error: &Error) {
        tracing::error!(view = %self.view, source = %self.relation.name, %error, "source reader failed");
        let failure: Arc<str> =
            Arc::from(format!("reading source {} for {} failed: {error}", self.relation.name, self.view));
        let _ = self.acks.send(Ack { dataflow: self.dataflow, epoch, result: Err(failure) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::watermark::tests::{rows, table};

    /// The source watermark waits for every live split and then is their minimum; an
    /// exhausted split stops holding it back.
    #[test]
    fn the_source_watermark_waits_for_every_live_split() {
        let desc = table("ts");
        let expr = WatermarkExpr::of(&desc).unwrap().unwrap();
        let mut source = SourceWatermark { expr, splits: BTreeMap::new(), published: None };
        let at = |micros: i64| Some(ScalarValue::TimestampMicrosecond(Some(micros), None));
        // Split 1 has not shown a row: split 0 alone does not move the watermark.
        assert_eq!(source.observe(0, &rows(&desc, vec![Some(50)]), &[0, 1]).unwrap(), None);
        assert_eq!(source.observe(1, &rows(&desc, vec![Some(20)]), &[0, 1]).unwrap(), at(20));
        assert_eq!(source.observe(1, &rows(&desc, vec![Some(30)]), &[0, 1]).unwrap(), at(30));
        // Split 2 appears (a new file) and holds it until it shows a row or ends.
        assert_eq!(source.observe(1, &rows(&desc, vec![Some(60)]), &[0, 1, 2]).unwrap(), None);
        assert_eq!(source.advance(&[0, 1]).unwrap(), at(50));
        assert_eq!(source.finish(0, &[1]).unwrap(), at(60));
    }
}
