//! Groups that close behind a watermark (event-time windows).
//!
//! When a group column carries a watermark (`window_start` of a TUMBLE, or any watermarked
//! column the query groups by), the watermark says that no later row has a smaller value
//! there: every group below it is final. The aggregate then frees those groups, in memory
//! and in the store, and a row that still arrives for one of them is late: it is not
//! applied (its group is gone, and applying it would resurrect a partial group) but kept in
//! `sabot_catalog.dead_letters` with reason `late`, never dropped silently.
//!
//! The closing column leads the stored group key, so the closed groups are the key range
//! from the first non-NULL value up to the watermark's encoding (the row format is
//! memcomparable; NULLs sort first and never close). Each close deletes the range since
//! the previous one from the group table and the value tables, and records how far it got
//! under [`CLOSED_KEY`], so that a restarted operator knows which rows are late.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;

use super::state::GroupState;
use super::values::value_outputs;
use crate::common::Result;
use crate::common::row::RowCodec;
use crate::state::{Epoch, Slot, Snapshot, TableId, WriteBatch};
use crate::stream::message::{Chunk, Op};
use crate::stream::operator::OperatorContext;
use crate::stream::operator::late::{FIRST_CLOSABLE, LateRows, decode_bound, encode_bound};

/// The group table key that records the closed bound (the key prefix below which every
/// group is closed). No group key starts with 0xff: the closing column leads the key, and
/// the row format starts every value with 0 (NULL) or 1.
pub const CLOSED_KEY: &[u8] = b"\xffclosed";

pub struct Closing {
    /// The (merging) aggregate's group table, where the closed bound is recorded.
    group_table: TableId,
    pub emit_on_close: bool,
    /// Encodes a value of the closing column alone: the prefix of the keys it leads.
    codec: RowCodec,
    /// Rows below the bound are late: the newest watermark of the closing column seen
    /// (or, after a restart, the value groups were closed up to).
    late: LateRows,
    /// Every group whose key sorts below this is closed and freed.
    freed: Vec<u8>,
    loaded: bool,
    /// The key range closed in this epoch, to delete from the store at the checkpoint.
    pending_delete: Option<(Vec<u8>, Vec<u8>)>,
}

impl Closing {
    pub fn new(
        column: usize,
        data_type: DataType,
        emit_on_close: bool,
        group_table: TableId,
    ) -> Result<Self> {
        Ok(Closing {
            group_table,
            emit_on_close,
            codec: RowCodec::new(std::slice::from_ref(&data_type))?,
            late: LateRows::new(column, data_type),
            freed: FIRST_CLOSABLE.to_vec(),
            loaded: false,
            pending_delete: None,
        })
    }

    /// The rows of `chunk` that are not late (the late ones are kept for the dead letters).
    pub fn admit(&mut self, snapshot: &dyn Snapshot, chunk: Chunk) -> Result<Chunk> {
        self.load(snapshot)?;
        self.late.split(chunk)
    }

    /// The input's watermark on `column` advanced to `value`: the bound moves with the
    /// closing column's.
    pub fn watermark(&mut self, snapshot: &dyn Snapshot, column: usize, value: &ScalarValue) -> Result<()> {
        if column != self.late.column() {
            return Ok(());
        }
        self.load(snapshot)?;
        self.late.advance(value)?;
        Ok(())
    }

    /// Reads the closed bound a previous run of the operator recorded (once).
    fn load(&mut self, snapshot: &dyn Snapshot) -> Result<()> {
        if self.loaded {
            return Ok(());
        }
        self.loaded = true;
        if let Some(freed) = snapshot.get(self.group_table, CLOSED_KEY)? {
            self.late.advance(&decode_bound(&self.codec, &freed, "the closed bound of an aggregate")?)?;
            self.freed = freed;
        }
        Ok(())
    }

    /// The key range to close now, if the bound moved past what is closed.
    pub fn range_to_close(&self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let Some(bound) = self.late.bound() else { return Ok(None) };
        let end = encode_bound(&self.codec, bound)?;
        Ok((end > self.freed).then(|| (self.freed.clone(), end)))
    }

    /// The groups in `[start, end)` are closed and forgotten in memory.
    pub fn closed(&mut self, start: Vec<u8>, end: Vec<u8>) {
        self.freed = end.clone();
        self.pending_delete = Some(match self.pending_delete.take() {
            Some((first, _)) => (first, end),
            None => (start, end),
        });
    }

    /// Turns the epoch's late rows into dead letters of `view`, keyed by this operator
    /// (`reader`) and their place in the epoch.
    pub fn report_late(&mut self, view: &str, reader: &str, epoch: Epoch) -> Result<()> {
        self.late.report(view, reader, epoch)
    }

    /// Writes the epoch's range delete (in the group table and `value_tables`), the closed
    /// bound and the dead letters.
    pub fn checkpoint(&mut self, batch: &mut WriteBatch, value_tables: &[TableId]) {
        if let Some((start, end)) = self.pending_delete.take() {
            for table in std::iter::once(self.group_table).chain(value_tables.iter().copied()) {
                batch.delete_range(table, &start, &end);
            }
            batch.put(self.group_table, CLOSED_KEY, end);
        }
        self.late.checkpoint(batch);
    }
}

/// The aggregate's side of closing: what a close frees and shows.
impl super::HashAggOperator {
    /// Closes the groups behind the closing column's watermark: frees them in memory (the
    /// store's range is deleted at the checkpoint) and, with EMIT ON WINDOW CLOSE, emits
    /// each one's final row.
    pub(super) fn close(&mut self, ctx: &OperatorContext) -> Result<Vec<Chunk>> {
        let Some(closing) = &self.closing else { return Ok(Vec::new()) };
        let Some((start, end)) = closing.range_to_close()? else { return Ok(Vec::new()) };
        let emit = closing.emit_on_close;
        let slots = self.groups.slots_in(&start, &end);
        let chunks = if emit { self.final_rows(ctx, &slots, (&start, &end))? } else { Vec::new() };
        self.groups.forget(&slots);
        for set in self.values.iter_mut().flatten() {
            let slots = set.cache.slots_in(&start, &end);
            set.cache.forget(&slots);
        }
        if let Some(closing) = &mut self.closing {
            closing.closed(start, end);
        }
        Ok(chunks)
    }

    /// The stored groups of `stored` this instance owns: instances share the group table
    /// and each owns the groups whose key hashes to it, as the exchange routes them.
    fn own_keys(
        &self,
        ctx: &OperatorContext,
        stored: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if ctx.instances <= 1 || stored.is_empty() {
            return Ok(stored);
        }
        let keys: Vec<&[u8]> = stored.iter().map(|(k, _)| k.as_slice()).collect();
        let columns = self.decode_keys(&keys)?;
        let targets = crate::stream::exchange::targets(&columns, stored.len(), ctx.instances)?;
        Ok(stored.into_iter().zip(targets).filter(|(_, t)| *t == ctx.instance).map(|(s, _)| s).collect())
    }

    /// The final rows of the closing groups: those in memory (`slots`) and those only in
    /// the store (evicted, or from before a restart), in key order.
    fn final_rows(
        &mut self,
        ctx: &OperatorContext,
        slots: &[Slot],
        (start, end): (&[u8], &[u8]),
    ) -> Result<Vec<Chunk>> {
        let mut closed: Vec<(Vec<u8>, GroupState)> = Vec::new();
        for &slot in slots {
            if let Some(state) = self.groups.get(slot).filter(|s| s.rows > 0) {
                closed.push((self.groups.key(slot).to_vec(), state.clone()));
            }
        }
        let mut stored: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        ctx.snapshot.scan_range(self.groups.table_id(), start, Some(end), &mut |key, value| {
            stored.push((key.to_vec(), value.to_vec()));
            Ok(true)
        })?;
        let stored = self.own_keys(ctx, stored)?;
        for (key, value) in stored {
            if self.groups.lookup(&key).is_none() {
                let state = <GroupState as crate::state::StoredValue>::decode(&value)?;
                if state.rows > 0 {
                    closed.push((key, state));
                }
            }
        }
        closed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut values: Vec<Vec<ScalarValue>> = Vec::with_capacity(closed.len());
        for (key, _) in &closed {
            values.push(value_outputs(&self.calls, &mut self.values, ctx, key)?);
        }
        let keys: Vec<&[u8]> = closed.iter().map(|(k, _)| k.as_slice()).collect();
        let rows: Vec<(&GroupState, &[ScalarValue])> =
            closed.iter().zip(&values).map(|((_, s), v)| (s, v.as_slice())).collect();
        self.build(vec![Op::Insert; rows.len()], &keys, &rows)
    }
}
