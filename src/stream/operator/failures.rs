//! Expressions that fail while a view is maintained (a division by zero, a cast that
//! fails): the value is NULL for the row, so that one bad row cannot stop a stream (as
//! RisingWave does), and the row is kept as a dead letter of the view — the input row as
//! JSON and the error — in `sabot_catalog.dead_letters` with reason `expression`,
//! committed with the epoch. At most [`EXPRESSION_FAILURES_KEPT_PER_EPOCH_MAX`] rows per
//! operator instance and epoch are kept one by one; the rest are counted in one more
//! letter.

use datafusion::arrow::array::RecordBatch;

use super::late::json_rows;
use crate::common::Result;
use crate::state::{Epoch, WriteBatch};
use crate::stream::source::{DEAD_LETTERS_TABLE, DeadLetterRecord, dead_letter_key};

pub const EXPRESSION_FAILURES_KEPT_PER_EPOCH_MAX: usize = 1_000;

/// The failures of one operator instance since its last barrier.
#[derive(Default)]
pub struct ExpressionFailures(parking_lot::Mutex<Failures>);

#[derive(Default)]
struct Failures {
    /// The failed rows (as JSON) and their errors.
    rows: Vec<(String, String)>,
    /// Failed rows beyond those kept.
    overflow: u64,
}

impl ExpressionFailures {
    /// Row `row` of `batch` failed with `error`.
    pub fn record(&self, batch: &RecordBatch, row: usize, error: String) {
        let mut failures = self.0.lock();
        if failures.rows.len() >= EXPRESSION_FAILURES_KEPT_PER_EPOCH_MAX {
            failures.overflow += 1;
            return;
        }
        let payload =
            json_rows(&batch.slice(row, 1)).ok().and_then(|mut rows| rows.pop()).unwrap_or_default();
        failures.rows.push((payload, error));
    }

    /// Writes the epoch's failures as dead letters of `view` into `batch`, keyed by the
    /// operator instance (`reader`) and their place in the epoch; how many there were.
    pub fn write_dead_letters(
        &self,
        view: &str,
        reader: &str,
        epoch: Epoch,
        batch: &mut WriteBatch,
    ) -> Result<u64> {
        let Failures { rows, overflow } = std::mem::take(&mut *self.0.lock());
        let count = rows.len() as u64 + overflow;
        if count == 0 {
            return Ok(0);
        }
        let recorded_at = chrono::Utc::now().timestamp_micros();
        let mut write = |position: String, payload: String, error: String| -> Result<()> {
            let record = DeadLetterRecord { payload, error, reason: "expression".into(), recorded_at };
            let value = serde_json::to_vec(&record)
                .map_err(|e| crate::common::Error::internal(format!("cannot encode a dead letter: {e}")))?;
            batch.put(DEAD_LETTERS_TABLE, &dead_letter_key(view, reader, &position), value);
            Ok(())
        };
        for (n, (payload, error)) in rows.into_iter().enumerate() {
            write(format!("epoch {epoch} row {n}"), payload, error)?;
        }
        if overflow > 0 {
            let error = format!(
                "{overflow} more rows failed in this epoch; they were counted but not kept one by one (at most {EXPRESSION_FAILURES_KEPT_PER_EPOCH_MAX} are)"
            );
            write(format!("epoch {epoch} overflow"), String::new(), error)?;
        }
        tracing::warn!(
            view,
            operator = reader,
            rows = count,
            epoch,
            "expressions failed while maintaining a view; the values are NULL and the rows are kept in sabot_catalog.dead_letters"
        );
        Ok(count)
    }
}
