//! The value multisets of min, max, count(DISTINCT) and string_agg over a retracting
//! input: per aggregate call, one row per (group, value) with the value's count in a
//! value table, and per group in memory an ordered map loaded by one prefix scan.

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::row::{RowConverter, Rows};
use datafusion::common::ScalarValue;

use super::state::{self, GroupState};
use crate::common::Result;
use crate::plan::{AggCall, AggKind};
use crate::state::{CacheValue, CachedTable, RowsValue, StateError};
use crate::stream::operator::OperatorContext;

/// The value multisets of one aggregate call, per group in memory: stored as one row per
/// (group, value) with the value's count, the value encoded to sort descending for max.
pub(super) struct ValueSet {
    pub(super) cache: CachedTable<Values>,
    /// Encodes the value (the key suffix after the group).
    pub(super) converter: RowConverter,
}

/// The outputs of the value-table aggregates of group `key`, in call order.
pub(super) fn value_outputs(
    calls: &[AggCall],
    sets: &mut [Option<ValueSet>],
    ctx: &OperatorContext,
    key: &[u8],
) -> Result<Vec<ScalarValue>> {
    let mut values = Vec::new();
    for (call, set) in calls.iter().zip(sets) {
        let Some(set) = set else { continue };
        values.push(match &call.kind {
            AggKind::StringAgg { delimiter } => set.joined(ctx, key, delimiter, call)?,
            AggKind::Min | AggKind::Max => set.first(ctx, key, call)?,
            // count(DISTINCT) counts inline; its value table only tracks membership.
            _ => ScalarValue::Null,
        });
    }
    Ok(values)
}

/// A chunk's inputs to the value multisets, per call: the encoded values and the value
/// column.
pub(super) struct ValueInputs {
    pub(super) encoded: Vec<Option<Rows>>,
    pub(super) inputs: Vec<Option<ArrayRef>>,
}

impl ValueInputs {
    /// Applies row `row` of group `group` to the value multisets; count(DISTINCT) follows
    /// entries that appear or vanish.
    pub(super) fn apply(
        &self,
        values: &mut [Option<ValueSet>],
        calls: &[AggCall],
        state: &mut GroupState,
        (group, row, sign): (&[u8], usize, i64),
        ctx: &OperatorContext,
    ) -> Result<()> {
        for (i, set) in values.iter_mut().enumerate() {
            let (Some(set), Some(rows), Some(input)) = (set, &self.encoded[i], &self.inputs[i]) else {
                continue;
            };
            if input.is_null(row) {
                continue;
            }
            let slot = set.cache.rows_slot(ctx.snapshot.as_ref(), group)?;
            let (before, after) = set.cache.change(slot).add(rows.row(row).data(), sign);
            set.cache.recharge(slot);
            if let (AggKind::CountDistinct, state::Accumulator::Count(n)) =
                (&calls[i].kind, &mut state.accumulators[i])
            {
                if before <= 0 && after > 0 {
                    *n += 1;
                } else if before > 0 && after <= 0 {
                    *n -= 1;
                }
            }
        }
        Ok(())
    }
}

/// One group's multiset of values: each encoded value and its count, in value order.
#[derive(Default)]
pub(super) struct Values {
    counts: std::collections::BTreeMap<Box<[u8]>, Counted>,
    /// Values whose count changed since the last seal.
    changed: Vec<Box<[u8]>>,
    /// Heap bytes of the values (held twice while changed).
    bytes: usize,
}

struct Counted {
    count: i64,
    changed: bool,
}

/// Bytes a B-tree entry costs beyond its key's bytes, roughly (the key's box, the count,
/// the node's share).
const VALUE_ENTRY_BYTES: usize = 48;

impl Values {
    /// Adds `sign` to the count of `value`: its count (before, after). A value whose count
    /// drops to zero stays until the seal, which deletes it.
    fn add(&mut self, value: &[u8], sign: i64) -> (i64, i64) {
        let counted = match self.counts.get_mut(value) {
            Some(counted) => counted,
            None => {
                self.bytes += VALUE_ENTRY_BYTES + value.len();
                self.counts.entry(value.into()).or_insert(Counted { count: 0, changed: false })
            }
        };
        let before = counted.count;
        counted.count += sign;
        if !counted.changed {
            counted.changed = true;
            self.bytes += value.len();
            self.changed.push(value.into());
        }
        (before, counted.count)
    }

    /// The values present, in order, with their counts.
    fn present(&self) -> impl Iterator<Item = (&[u8], i64)> {
        self.counts.iter().filter(|(_, c)| c.count > 0).map(|(v, c)| (&**v, c.count))
    }
}

impl CacheValue for Values {
    fn heap_bytes(&self) -> usize {
        self.bytes + self.changed.capacity() * std::mem::size_of::<Box<[u8]>>()
    }
}

impl RowsValue for Values {
    fn empty() -> Self {
        Values::default()
    }

    fn load_row(&mut self, value: &[u8], count: &[u8]) -> Result<bool> {
        let count = i64::from_le_bytes(
            count.try_into().map_err(|_| StateError::Corrupt("value count of an aggregate".into()))?,
        );
        self.bytes += VALUE_ENTRY_BYTES + value.len();
        self.counts.insert(value.into(), Counted { count, changed: false });
        Ok(true)
    }

    fn seal_rows(&mut self, write: &mut crate::state::RowWriter<'_>) {
        for value in std::mem::take(&mut self.changed) {
            self.bytes -= value.len();
            let Some(counted) = self.counts.get_mut(&value) else { continue };
            counted.changed = false;
            if counted.count > 0 {
                write(&value, Some(counted.count.to_le_bytes().to_vec()));
            } else {
                write(&value, None);
                self.counts.remove(&value);
                self.bytes -= VALUE_ENTRY_BYTES + value.len();
            }
        }
        self.changed.shrink_to(16);
    }
}

impl ValueSet {
    /// The values of `group` (encoded, in order) with their counts, up to `limit`.
    fn values(&mut self, ctx: &OperatorContext, group: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, i64)>> {
        let slot = self.cache.rows_slot(ctx.snapshot.as_ref(), group)?;
        Ok(self.cache.get(slot).map_or_else(Vec::new, |values| {
            values.present().take(limit).map(|(v, n)| (v.to_vec(), n)).collect()
        }))
    }

    fn decode(&self, values: &[(Vec<u8>, i64)]) -> Result<ArrayRef> {
        let parser = self.converter.parser();
        let rows: Vec<_> = values.iter().map(|(v, _)| parser.parse(v)).collect();
        Ok(self.converter.convert_rows(rows)?.swap_remove(0))
    }

    /// min or max: the group's first value.
    fn first(&mut self, ctx: &OperatorContext, group: &[u8], call: &AggCall) -> Result<ScalarValue> {
        let first = self.values(ctx, group, 1)?;
        if first.is_empty() {
            return Ok(ScalarValue::try_from(&call.output_type)?);
        }
        let array = self.decode(&first)?;
        Ok(ScalarValue::try_from_array(&array, 0)?.cast_to(&call.output_type)?)
    }

    /// string_agg: every value (repeated by its count) in value order, joined.
    fn joined(
        &mut self,
        ctx: &OperatorContext,
        group: &[u8],
        delimiter: &str,
        call: &AggCall,
    ) -> Result<ScalarValue> {
        let values = self.values(ctx, group, usize::MAX)?;
        if values.is_empty() {
            return Ok(ScalarValue::try_from(&call.output_type)?);
        }
        let decoded = datafusion::arrow::compute::cast(&self.decode(&values)?, &DataType::Utf8)?;
        let decoded = decoded.as_string::<i32>();
        let mut parts = Vec::new();
        for (i, (_, count)) in values.iter().enumerate() {
            for _ in 0..*count {
                parts.push(decoded.value(i));
            }
        }
        Ok(ScalarValue::Utf8(Some(parts.join(delimiter))).cast_to(&call.output_type)?)
    }
}
