//! Late rows: rows behind their stream's watermark where an operator has freed (or may
//! have freed) the state they would need. They are never dropped silently: each is kept
//! in `sabot_catalog.dead_letters` with reason `late`, the row as JSON and the watermark
//! it missed, and counted in a log line per epoch.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, Scalar};
use datafusion::arrow::compute::kernels::cmp::lt;
use datafusion::arrow::compute::{cast, filter_record_batch, not, prep_null_mask_filter};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;

use crate::common::Result;
use crate::common::row::RowCodec;
use crate::state::{Epoch, Snapshot, StateError, TableId, WriteBatch};
use crate::stream::message::{Chunk, Op};
use crate::stream::source::{DEAD_LETTERS_TABLE, DeadLetterRecord, dead_letter_key};

/// The first key whose leading (closing) column is not NULL: closed ranges start here
/// (the row format starts every value with 0 for NULL or 1).
pub const FIRST_CLOSABLE: &[u8] = &[1];

/// Late rows kept per epoch at most as dead letters with their payload; beyond it, rows
/// are counted in one dead letter (a flood of late rows must not grow one epoch's batch
/// without bound).
const LATE_ROWS_KEPT_PER_EPOCH_MAX: usize = 10_000;

/// The late-row bound of one watermarked input column, and the epoch's late rows.
pub struct LateRows {
    /// The input column whose watermark decides lateness.
    column: usize,
    data_type: DataType,
    /// Rows below this are late.
    bound: Option<ScalarValue>,
    /// Late rows of this epoch: payload (the row as JSON) and error.
    late: Vec<(String, String)>,
    /// Late rows beyond what is kept one by one, this epoch.
    late_overflow: u64,
    /// Dead letters to write at the checkpoint, keyed.
    dead_letters: Vec<(Vec<u8>, Vec<u8>)>,
}

impl LateRows {
    pub fn new(column: usize, data_type: DataType) -> Self {
        LateRows {
            column,
            data_type,
            bound: None,
            late: Vec::new(),
            late_overflow: 0,
            dead_letters: Vec::new(),
        }
    }

    pub fn column(&self) -> usize {
        self.column
    }

    pub fn bound(&self) -> Option<&ScalarValue> {
        self.bound.as_ref()
    }

    /// Moves the bound up to `value` (never back; NULL is no watermark). Whether it moved.
    pub fn advance(&mut self, value: &ScalarValue) -> Result<bool> {
        if value.is_null() {
            return Ok(false);
        }
        let value = value.cast_to(&self.data_type)?;
        if self.bound.as_ref().is_none_or(|b| b.partial_cmp(&value) == Some(std::cmp::Ordering::Less)) {
            self.bound = Some(value);
            return Ok(true);
        }
        Ok(false)
    }

    /// The rows of `chunk` that are not late; the late ones are kept for the dead letters.
    pub fn split(&mut self, chunk: Chunk) -> Result<Chunk> {
        let Some(bound) = &self.bound else { return Ok(chunk) };
        let values = chunk.data.column(self.column);
        let late = lt(values, &Scalar::new(bound.to_array()?))?;
        if late.true_count() == 0 {
            return Ok(chunk);
        }
        // A NULL value compares to NULL: such a row is not late.
        let late = match late.null_count() {
            0 => late,
            _ => prep_null_mask_filter(&late),
        };
        let late_rows = filter_record_batch(&chunk.data, &late)?;
        let ops: Vec<Op> =
            chunk.ops.iter().zip(late.iter()).filter(|(_, l)| *l == Some(true)).map(|(o, _)| *o).collect();
        self.keep(&late_rows, &ops)?;
        let on_time = not(&late)?;
        Ok(chunk.filter_mask(&on_time)?)
    }

    fn keep(&mut self, rows: &RecordBatch, ops: &[Op]) -> Result<()> {
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

    /// Turns the epoch's late rows into dead letters of `view`, keyed by the operator
    /// (`reader`) and their place in the epoch, and logs how many there were.
    pub fn report(&mut self, view: &str, reader: &str, epoch: Epoch) -> Result<()> {
        let late = self.stamp(view, reader, epoch)?;
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

    fn stamp(&mut self, view: &str, reader: &str, epoch: Epoch) -> Result<u64> {
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

    /// Writes the reported dead letters.
    pub fn checkpoint(&mut self, batch: &mut WriteBatch) {
        for (key, value) in self.dead_letters.drain(..) {
            batch.put(DEAD_LETTERS_TABLE, &key, value);
        }
    }
}

/// `bound` encoded alone by `codec`: the prefix of the keys it leads.
pub fn encode_bound(codec: &RowCodec, bound: &ScalarValue) -> Result<Vec<u8>> {
    Ok(codec.encode(&[bound.to_array()?])?.row(0).data().to_vec())
}

/// A bound recorded by [`encode_bound`]; `what` names it in the corruption error.
pub fn decode_bound(codec: &RowCodec, encoded: &[u8], what: &str) -> Result<ScalarValue> {
    let value = codec.decode([encoded])?.swap_remove(0);
    if value.len() != 1 || value.is_null(0) {
        return Err(StateError::Corrupt(what.into()).into());
    }
    Ok(ScalarValue::try_from_array(&value, 0)?)
}

/// Whether each value is below `bound` (NULL: not below); None when none is.
pub fn below(values: &ArrayRef, bound: &ScalarValue) -> Result<Option<Vec<bool>>> {
    let below = lt(values, &Scalar::new(bound.to_array()?))?;
    if below.true_count() == 0 {
        return Ok(None);
    }
    Ok(Some((0..below.len()).map(|i| below.is_valid(i) && below.value(i)).collect()))
}

/// Each row of `rows` as a JSON object.
pub(super) fn json_rows(rows: &RecordBatch) -> Result<Vec<String>> {
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

// Closing groups behind a watermark: shared by aggregates and top-N (see
// `hash_agg/closing.rs`).

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
