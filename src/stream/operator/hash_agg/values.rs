//! The value multisets of min, max, count(DISTINCT), string_agg, array_agg, first_value,
//! last_value, percentile_cont, percentile_disc and mode over a retracting input: per
//! aggregate call, one row per (group, value) with the value's count in a value table, and
//! per group in memory an ordered map loaded by one prefix scan. The value is encoded
//! after the call's ORDER BY keys, so the map is in the order the aggregate reads it.
//!
//! Order statistics stay logarithmic per change: a percentile keeps a cursor on the entry
//! holding its rank, with the count of the values before it, and each change moves the
//! rank (and the cursor) by at most its own count, a B-tree step each; mode keeps the
//! values ordered by count. Both are built on first use after the group is loaded.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound::{Excluded, Unbounded};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, ListArray, UInt32Array};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::ScalarValue;

use super::state::{self, GroupState};
use crate::common::Result;
use crate::plan::{AggCall, AggKind};
use crate::state::{CacheValue, CachedTable, RowsValue, StateError};
use crate::stream::message::Chunk;
use crate::stream::operator::OperatorContext;

/// The value multisets of one aggregate call, per group in memory: stored as one row per
/// (group, value) with the value's count, the value encoded to sort descending for max.
pub(super) struct ValueSet {
    pub(super) cache: CachedTable<Values>,
    /// Encodes the call's ORDER BY keys and then the value (the key suffix after the
    /// group); the value is the last column it decodes.
    pub(super) converter: RowConverter,
}

/// The encoding of a value-keeping call's entries: its ORDER BY keys (each in its
/// direction), then the value itself ascending — but for the aggregates ordered WITHIN
/// GROUP by the value, whose one key is the value. `input_types`: the input's columns.
pub(super) fn ordered_value_converter(call: &AggCall, input_types: &[DataType]) -> Result<RowConverter> {
    let mut fields: Vec<SortField> = call
        .order_by
        .iter()
        .map(|(column, options)| SortField::new_with_options(input_types[*column].clone(), *options))
        .collect();
    if !call.is_within_group() {
        fields.push(SortField::new(call.input_type.clone()));
    }
    Ok(RowConverter::new(fields)?)
}

/// The encoded entries of `chunk`'s rows for a value-keeping call ([`ordered_value_converter`]).
pub(super) fn encode_entries(
    converter: &RowConverter,
    call: &AggCall,
    chunk: &Chunk,
) -> Result<Option<Rows>> {
    let Some(input) = call.input else { return Ok(None) };
    let mut columns: Vec<ArrayRef> =
        call.order_by.iter().map(|(c, _)| chunk.data.column(*c).clone()).collect();
    if !call.is_within_group() || call.order_by.is_empty() {
        columns.push(chunk.data.column(input).clone());
    }
    Ok(Some(converter.convert_columns(&columns)?))
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
        let slot = set.cache.rows_slot(ctx.snapshot.as_ref(), key)?;
        let converter = &set.converter;
        let Some(group) = set.cache.peek_mut(slot) else {
            values.push(ScalarValue::try_from(&call.output_type)?);
            continue;
        };
        let chosen: Vec<(&[u8], i64)> = match &call.kind {
            // count, sum and avg of DISTINCT values are inline; their value tables only
            // track membership.
            _ if call.inline_over_values() => {
                values.push(ScalarValue::Null);
                continue;
            }
            AggKind::PercentileCont(fraction) => {
                values.push(group.percentile_cont(*fraction, converter, call)?);
                continue;
            }
            AggKind::Min | AggKind::Max | AggKind::FirstValue => group.present().take(1).collect(),
            AggKind::LastValue => group.present().next_back().into_iter().collect(),
            AggKind::PercentileDisc(fraction) => group.percentile_disc(*fraction).into_iter().collect(),
            AggKind::Mode => group.mode().into_iter().collect(),
            _ if call.distinct => group.present().map(|(value, _)| (value, 1)).collect(),
            _ => group.present().collect(),
        };
        values.push(match &call.kind {
            AggKind::StringAgg { delimiter } => joined(converter, &chosen, delimiter, call)?,
            AggKind::ArrayAgg => array_of(converter, &chosen, call)?,
            _ => single(converter, &chosen, call)?,
        });
        set.cache.recharge(slot);
    }
    Ok(values)
}

/// A chunk's inputs to the value multisets, per call: the encoded values and the value
/// column.
pub(super) struct ValueInputs {
    pub(super) encoded: Vec<Option<Rows>>,
    pub(super) inputs: Vec<Option<ArrayRef>>,
    /// Per call with FILTER: the rows it keeps.
    pub(super) filters: Vec<Option<BooleanArray>>,
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
            if (input.is_null(row) && !calls[i].kind.keeps_nulls())
                || self.filters[i].as_ref().is_some_and(|keep| !keep.value(row))
            {
                continue;
            }
            let slot = set.cache.rows_slot(ctx.snapshot.as_ref(), group)?;
            let (before, after) = set.cache.change(slot).add(rows.row(row).data(), sign);
            set.cache.recharge(slot);
            // A value appearing or vanishing moves count / sum / avg of DISTINCT values.
            let moved = match (before > 0, after > 0) {
                (false, true) => 1,
                (true, false) => -1,
                _ => 0,
            };
            if moved != 0 && calls[i].inline_over_values() {
                match &mut state.accumulators[i] {
                    state::Accumulator::Count(n) => *n += moved,
                    sum => state::accumulate(sum, &AggKind::Sum, &state::Input::of(Some(input)), row, moved),
                }
            }
        }
        Ok(())
    }
}

/// One group's multiset of values: each encoded value and its count, in value order.
#[derive(Default)]
pub(super) struct Values {
    counts: BTreeMap<Box<[u8]>, Counted>,
    /// Values whose count changed since the last seal.
    changed: Vec<Box<[u8]>>,
    /// Heap bytes of the values (held twice while changed).
    bytes: usize,
    /// The sum of the counts.
    total: i64,
    /// percentile_cont / percentile_disc: the entry last sought, kept through changes.
    cursor: Option<Cursor>,
    /// mode: the values by count, most frequent first (then in value order).
    frequencies: Option<Frequencies>,
}

/// Values by count, most frequent first, then in value order.
type Frequencies = BTreeSet<(Reverse<i64>, Box<[u8]>)>;

/// A position in a multiset: an entry's key (possibly since removed) and the sum of the
/// counts of the entries before it.
struct Cursor {
    key: Box<[u8]>,
    below: i64,
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
        let after = counted.count;
        if !counted.changed {
            counted.changed = true;
            self.bytes += value.len();
            self.changed.push(value.into());
        }
        self.total += sign;
        if let Some(cursor) = &mut self.cursor
            && value < &*cursor.key
        {
            cursor.below += sign;
        }
        if let Some(frequencies) = &mut self.frequencies {
            if before > 0 {
                frequencies.remove(&(Reverse(before), value.into()));
            }
            if after > 0 {
                frequencies.insert((Reverse(after), value.into()));
            }
        }
        (before, after)
    }

    /// The values present, in order, with their counts.
    fn present(&self) -> impl DoubleEndedIterator<Item = (&[u8], i64)> {
        self.counts.iter().filter(|(_, c)| c.count > 0).map(|(v, c)| (&**v, c.count))
    }

    /// The entry holding the value of 0-based rank `rank` (counting repeats), with its
    /// count and the count of the values before it; the cursor moves there from where it
    /// was, one entry per step.
    fn seek(&mut self, rank: i64) -> Option<(&[u8], i64, i64)> {
        if rank < 0 || rank >= self.total {
            return None;
        }
        let mut cursor = match self.cursor.take() {
            Some(cursor) => cursor,
            None => Cursor { key: self.counts.keys().next()?.clone(), below: 0 },
        };
        loop {
            let count = self.counts.get(&cursor.key).map_or(0, |c| c.count);
            if rank < cursor.below {
                let (key, before) =
                    self.counts.range::<[u8], _>((Unbounded, Excluded(&*cursor.key))).next_back()?;
                cursor = Cursor { key: key.clone(), below: cursor.below - before.count };
            } else if rank >= cursor.below + count {
                let (key, _) = self.counts.range::<[u8], _>((Excluded(&*cursor.key), Unbounded)).next()?;
                cursor = Cursor { key: key.clone(), below: cursor.below + count };
            } else {
                let below = cursor.below;
                let key = &*self.cursor.insert(cursor).key;
                return Some((key, count, below));
            }
        }
    }

    /// percentile_disc: the first value whose rank reaches `fraction` of the values.
    fn percentile_disc(&mut self, fraction: f64) -> Option<(&[u8], i64)> {
        let rank = ((fraction * self.total as f64).ceil() as i64).max(1) - 1;
        self.seek(rank).map(|(key, count, _)| (key, count))
    }

    /// percentile_cont: the values at the ranks around `fraction` of the way from the
    /// first to the last, interpolated (as Postgres: `lo + (hi - lo) * proportion`).
    fn percentile_cont(
        &mut self,
        fraction: f64,
        converter: &RowConverter,
        call: &AggCall,
    ) -> Result<ScalarValue> {
        let null = ScalarValue::try_from(&call.output_type)?;
        let position = fraction * (self.total - 1) as f64;
        let (first, second) = (position.floor() as i64, position.ceil() as i64);
        let Some((key, count, below)) = self.seek(first) else { return Ok(null) };
        let key: Box<[u8]> = key.into();
        let next = if second > first && second >= below + count {
            let range = self.counts.range::<[u8], _>((Excluded(&*key), Unbounded));
            range.into_iter().find(|(_, c)| c.count > 0).map(|(k, _)| k.clone())
        } else {
            None
        };
        let entries: Vec<(&[u8], i64)> = std::iter::once(&key).chain(&next).map(|k| (&**k, 1)).collect();
        let decoded =
            datafusion::arrow::compute::cast(&decode_values(converter, &entries)?, &DataType::Float64)?;
        let decoded = decoded.as_primitive::<datafusion::arrow::datatypes::Float64Type>();
        if decoded.is_null(0) {
            return Ok(null);
        }
        let low = decoded.value(0);
        let high = if decoded.len() > 1 { decoded.value(1) } else { low };
        let value = low + (high - low) * (position - first as f64);
        Ok(ScalarValue::Float64(Some(value)).cast_to(&call.output_type)?)
    }

    /// mode: the most frequent value, the first in order among equally frequent ones.
    fn mode(&mut self) -> Option<(&[u8], i64)> {
        let counts = &self.counts;
        let frequencies = self.frequencies.get_or_insert_with(|| {
            counts.iter().filter(|(_, c)| c.count > 0).map(|(v, c)| (Reverse(c.count), v.clone())).collect()
        });
        frequencies.first().map(|(Reverse(count), value)| (&**value, *count))
    }
}

impl CacheValue for Values {
    fn heap_bytes(&self) -> usize {
        let frequencies = self.frequencies.as_ref().map_or(0, |f| f.len() * VALUE_ENTRY_BYTES) * 2;
        self.bytes + self.changed.capacity() * std::mem::size_of::<Box<[u8]>>() + frequencies
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
        self.total += count;
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

/// The values of `entries` (encoded by `converter`: the last column it decodes).
fn decode_values(converter: &RowConverter, entries: &[(&[u8], i64)]) -> Result<ArrayRef> {
    let parser = converter.parser();
    let rows: Vec<_> = entries.iter().map(|(v, _)| parser.parse(v)).collect();
    Ok(converter.convert_rows(rows)?.pop().expect("a converter has a column"))
}

/// The one value chosen (min, max, first_value, ...), or NULL when there is none.
fn single(converter: &RowConverter, chosen: &[(&[u8], i64)], call: &AggCall) -> Result<ScalarValue> {
    if chosen.is_empty() {
        return Ok(ScalarValue::try_from(&call.output_type)?);
    }
    let array = decode_values(converter, &chosen[..1])?;
    Ok(ScalarValue::try_from_array(&array, 0)?.cast_to(&call.output_type)?)
}

/// The values of `entries` repeated by their counts, in order.
fn repeated(converter: &RowConverter, entries: &[(&[u8], i64)]) -> Result<ArrayRef> {
    let decoded = decode_values(converter, entries)?;
    if entries.iter().all(|(_, count)| *count == 1) {
        return Ok(decoded);
    }
    let indices: UInt32Array = entries
        .iter()
        .enumerate()
        .flat_map(|(i, (_, count))| std::iter::repeat_n(i as u32, *count as usize))
        .collect();
    Ok(datafusion::arrow::compute::take(decoded.as_ref(), &indices, None)?)
}

/// string_agg: the values (repeated by their counts) in order, joined.
fn joined(
    converter: &RowConverter,
    entries: &[(&[u8], i64)],
    delimiter: &str,
    call: &AggCall,
) -> Result<ScalarValue> {
    if entries.is_empty() {
        return Ok(ScalarValue::try_from(&call.output_type)?);
    }
    let decoded = datafusion::arrow::compute::cast(&repeated(converter, entries)?, &DataType::Utf8)?;
    let parts: Vec<&str> = decoded.as_string::<i32>().iter().flatten().collect();
    Ok(ScalarValue::Utf8(Some(parts.join(delimiter))).cast_to(&call.output_type)?)
}

/// array_agg: the values (NULLs too, repeated by their counts) in order, as one array.
fn array_of(converter: &RowConverter, entries: &[(&[u8], i64)], call: &AggCall) -> Result<ScalarValue> {
    let DataType::List(field) = &call.output_type else {
        return Err(crate::common::Error::internal(format!("array_agg returning {}", call.output_type)));
    };
    if entries.is_empty() {
        return Ok(ScalarValue::try_from(&call.output_type)?);
    }
    let values = datafusion::arrow::compute::cast(&repeated(converter, entries)?, field.data_type())?;
    let offsets = OffsetBuffer::from_lengths([values.len()]);
    Ok(ScalarValue::List(Arc::new(ListArray::try_new(field.clone(), offsets, values, None)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The multiset as a sorted list of keys, repeats included.
    fn sorted(values: &Values) -> Vec<Vec<u8>> {
        values.present().flat_map(|(v, n)| std::iter::repeat_n(v.to_vec(), n as usize)).collect()
    }

    #[test]
    fn percentile_and_mode_follow_inserts_and_deletes() {
        let mut values = Values::default();
        let mut seed = 7u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as u32
        };
        let mut live: Vec<u8> = Vec::new();
        for step in 0..2000 {
            // Mostly inserts early, then as many deletes: the rank sought moves both ways.
            let delete = !live.is_empty() && (next() % 100) < if step < 1000 { 30 } else { 70 };
            if delete {
                let value = live.swap_remove(next() as usize % live.len());
                values.add(&[value], -1);
            } else {
                let value = (next() % 40) as u8;
                live.push(value);
                values.add(&[value], 1);
            }
            let all = sorted(&values);
            assert_eq!(all.len() as i64, values.total);
            for fraction in [0.0, 0.1, 0.5, 0.9, 1.0] {
                let expected = (!all.is_empty())
                    .then(|| all[((fraction * all.len() as f64).ceil() as usize).max(1) - 1].clone());
                let found = values.percentile_disc(fraction).map(|(key, _)| key.to_vec());
                assert_eq!(found, expected, "step {step}, fraction {fraction}");
            }
            let mut best: Option<(Vec<u8>, usize)> = None;
            for run in all.chunk_by(|a, b| a == b) {
                if best.as_ref().is_none_or(|(_, n)| run.len() > *n) {
                    best = Some((run[0].clone(), run.len()));
                }
            }
            assert_eq!(values.mode().map(|(key, _)| key.to_vec()), best.map(|(key, _)| key), "step {step}");
        }
    }
}
