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

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, Scalar};
use datafusion::arrow::compute::kernels::cmp::lt;
use datafusion::arrow::compute::{cast, filter_record_batch, not};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;

use super::state::GroupState;
use super::values::value_outputs;
use crate::common::Result;
use crate::common::row::RowCodec;
use crate::state::{Epoch, Slot, Snapshot, StateError, TableId, WriteBatch};
use crate::stream::message::{Chunk, Op};
use crate::stream::operator::OperatorContext;
use crate::stream::source::{DEAD_LETTERS_TABLE, DeadLetterRecord, dead_letter_key};

/// The group table key that records the closed bound (the key prefix below which every
/// group is closed). No group key starts with 0xff: the closing column leads the key, and
/// the row format starts every value with 0 (NULL) or 1.
pub const CLOSED_KEY: &[u8] = b"\xffclosed";

/// The first key of a group whose closing column is not NULL.
const FIRST_CLOSABLE: &[u8] = &[1];

/// Late rows kept per epoch at most as dead letters with their payload; beyond it, rows
/// are counted in one dead letter (a flood of late rows must not grow one epoch's batch
/// without bound).
const LATE_ROWS_KEPT_PER_EPOCH_MAX: usize = 10_000;

pub struct Closing {
    /// The input (group) column whose watermark closes groups.
    column: usize,
    /// The (merging) aggregate's group table, where the closed bound is recorded.
    group_table: TableId,
    pub emit_on_close: bool,
    data_type: DataType,
    /// Encodes a value of the closing column alone: the prefix of the keys it leads.
    codec: RowCodec,
    /// Rows below this are late: the newest watermark seen (or, after a restart, the
    /// value groups were closed up to).
    bound: Option<ScalarValue>,
    /// Every group whose key sorts below this is closed and freed.
    freed: Vec<u8>,
    loaded: bool,
    /// The key range closed in this epoch, to delete from the store at the checkpoint.
    pending_delete: Option<(Vec<u8>, Vec<u8>)>,
    /// Late rows of this epoch: payload (the row as JSON) and error.
    late: Vec<(String, String)>,
    /// Late rows beyond what is kept one by one, this epoch.
    late_overflow: u64,
    /// Dead letters to write at the checkpoint, keyed.
    dead_letters: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Closing {
    pub fn new(
        column: usize,
        data_type: DataType,
        emit_on_close: bool,
        group_table: TableId,
    ) -> Result<Self> {
        Ok(Closing {
            column,
            group_table,
            emit_on_close,
            codec: RowCodec::new(std::slice::from_ref(&data_type))?,
            data_type,
            bound: None,
            freed: FIRST_CLOSABLE.to_vec(),
            loaded: false,
            pending_delete: None,
            late: Vec::new(),
            late_overflow: 0,
            dead_letters: Vec::new(),
        })
    }

    /// The rows of `chunk` that are not late (the late ones are kept for the dead letters).
    pub fn admit(&mut self, snapshot: &dyn Snapshot, chunk: Chunk) -> Result<Chunk> {
        self.load(snapshot)?;
        self.split_late(chunk)
    }

    /// The input's watermark on `column` advanced to `value`: the bound moves with the
    /// closing column's.
    pub fn watermark(&mut self, snapshot: &dyn Snapshot, column: usize, value: &ScalarValue) -> Result<()> {
        if column != self.column {
            return Ok(());
        }
        self.load(snapshot)?;
        self.advance(value)
    }

    /// Reads the closed bound a previous run of the operator recorded (once).
    fn load(&mut self, snapshot: &dyn Snapshot) -> Result<()> {
        if self.loaded {
            return Ok(());
        }
        self.loaded = true;
        if let Some(freed) = snapshot.get(self.group_table, CLOSED_KEY)? {
            let value = self.codec.decode([freed.as_slice()])?.swap_remove(0);
            if value.len() != 1 || value.is_null(0) {
                return Err(StateError::Corrupt("the closed bound of an aggregate".into()).into());
            }
            self.bound = Some(ScalarValue::try_from_array(&value, 0)?);
            self.freed = freed;
        }
        Ok(())
    }

    fn advance(&mut self, value: &ScalarValue) -> Result<()> {
        if value.is_null() {
            return Ok(());
        }
        let value = value.cast_to(&self.data_type)?;
        if self.bound.as_ref().is_none_or(|b| b.partial_cmp(&value) == Some(std::cmp::Ordering::Less)) {
            self.bound = Some(value);
        }
        Ok(())
    }

    fn split_late(&mut self, chunk: Chunk) -> Result<Chunk> {
        let Some(bound) = &self.bound else { return Ok(chunk) };
        let values = chunk.data.column(self.column);
        let late = lt(values, &Scalar::new(bound.to_array()?))?;
        if late.true_count() == 0 {
            return Ok(chunk);
        }
        let late_rows = filter_record_batch(&chunk.data, &late)?;
        let ops: Vec<Op> =
            chunk.ops.iter().zip(late.iter()).filter(|(_, l)| *l == Some(true)).map(|(o, _)| *o).collect();
        self.keep_late(&late_rows, &ops)?;
        // A NULL closing value compares to NULL: such a row is not late (its group never
        // closes).
        let late = match late.null_count() {
            0 => late,
            _ => datafusion::arrow::compute::prep_null_mask_filter(&late),
        };
        let on_time = not(&late)?;
        Ok(chunk.filter_mask(&on_time)?)
    }

    fn keep_late(&mut self, rows: &RecordBatch, ops: &[Op]) -> Result<()> {
        let room = LATE_ROWS_KEPT_PER_EPOCH_MAX.saturating_sub(self.late.len()).min(rows.num_rows());
        self.late_overflow += (rows.num_rows() - room) as u64;
        if room == 0 {
            return Ok(());
        }
        let rows = rows.slice(0, room);
        let payloads = json_rows(&rows)?;
        let name = rows.schema().field(self.column).name().clone();
        let values = display(rows.column(self.column))?;
        let bound = display(&self.bound.as_ref().expect("late rows have a bound").to_array()?)?;
        for (i, payload) in payloads.into_iter().enumerate() {
            let what = if Chunk::is_insert(ops[i]) { "row" } else { "retraction" };
            let error = format!("late {what}: {name} {} is behind the watermark {}", values[i], bound[0]);
            self.late.push((payload, error));
        }
        Ok(())
    }

    /// The key range to close now, if the bound moved past what is closed.
    pub fn range_to_close(&self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let Some(bound) = &self.bound else { return Ok(None) };
        let end = self.codec.encode(&[bound.to_array()?])?.row(0).data().to_vec();
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
    /// (`reader`) and their place in the epoch, and logs how many there were.
    pub fn report_late(&mut self, view: &str, reader: &str, epoch: Epoch) -> Result<()> {
        let late = self.stamp_late(view, reader, epoch)?;
        if late > 0 {
            tracing::warn!(
                view,
                operator = reader,
                rows = late,
                epoch,
                "late rows behind the watermark kept in sabot_catalog.dead_letters"
            );
        }
        Ok(())
    }

    fn stamp_late(&mut self, view: &str, reader: &str, epoch: Epoch) -> Result<u64> {
        let recorded_at = chrono::Utc::now().timestamp_micros();
        let count = self.late.len() as u64 + self.late_overflow;
        let mut record = |position: String, payload: String, error: String| -> Result<()> {
            let record = DeadLetterRecord { payload, error, reason: "late".into(), recorded_at };
            let value = serde_json::to_vec(&record)
                .map_err(|e| crate::common::Error::internal(format!("cannot encode a dead letter: {e}")))?;
            self.dead_letters.push((dead_letter_key(view, reader, &position), value));
            Ok(())
        };
        for (n, (payload, error)) in std::mem::take(&mut self.late).into_iter().enumerate() {
            record(format!("epoch {epoch} row {n}"), payload, error)?;
        }
        if self.late_overflow > 0 {
            let error = format!(
                "{} more late rows in this epoch were counted but not kept one by one (at most {LATE_ROWS_KEPT_PER_EPOCH_MAX} are)",
                self.late_overflow
            );
            record(format!("epoch {epoch} overflow"), String::new(), error)?;
            self.late_overflow = 0;
        }
        Ok(count)
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
        for (key, value) in self.dead_letters.drain(..) {
            batch.put(DEAD_LETTERS_TABLE, &key, value);
        }
    }
}

/// Each row of `rows` as a JSON object.
fn json_rows(rows: &RecordBatch) -> Result<Vec<String>> {
    let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(Vec::new());
    writer.write(rows)?;
    writer.finish()?;
    let text = String::from_utf8_lossy(&writer.into_inner()).into_owned();
    Ok(text.lines().map(str::to_string).collect())
}

/// Values as text (timestamps with a space, as Postgres shows them).
fn display(values: &ArrayRef) -> Result<Vec<String>> {
    let text = cast(values, &DataType::Utf8)?;
    let text = text.as_string::<i32>();
    Ok((0..text.len())
        .map(|i| if text.is_null(i) { "NULL".into() } else { text.value(i).replacen('T', " ", 1) })
        .collect())
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
