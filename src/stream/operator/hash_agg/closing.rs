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
//! under [`CLOSED_KEY`](crate::stream::operator::late::CLOSED_KEY), so that a restarted operator knows which rows are late.

use datafusion::common::ScalarValue;

use super::state::GroupState;
use super::values::value_outputs;
use crate::common::Result;
use crate::state::Slot;
use crate::stream::message::{Chunk, Op};
use crate::stream::operator::OperatorContext;

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
