//! Per-group accumulator state of the hash aggregate and its byte encoding.
//!
//! Every accumulator is retractable: counts and sums move both ways, bool_and / bool_or
//! count trues and falses. min, max, count(DISTINCT) and string_agg keep the multiset of
//! their values in a value table instead (see `mod.rs`), except min and max over an
//! append-only input, which keep their extreme inline (it never has to be retracted).

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Decimal128Array, Float64Array, Int64Array,
};
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Float64Type, Int64Type};
use datafusion::common::ScalarValue;

use crate::common::{Error, Result};
use crate::plan::{AggCall, AggKind};
use crate::state::{CacheValue, StateError, StoredValue};

/// A running sum: exact for integers and decimals (unscaled), floating for floats.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sum {
    Exact(i128),
    Float(f64),
}

/// The inline state of one aggregate call.
#[derive(Clone, Debug, PartialEq)]
pub enum Accumulator {
    /// count(*), min, max, string_agg: nothing inline.
    None,
    /// count(x) non-null values, count(DISTINCT x) distinct values.
    Count(i64),
    /// sum / avg: non-null values and their sum.
    Sum { count: i64, sum: Sum },
    /// bool_and / bool_or.
    Bools { trues: i64, falses: i64 },
    /// min / max over an append-only input: the current extreme, as the row-format bytes
    /// of (group, value) that order it first (the value descending for max).
    Extreme(Option<Box<[u8]>>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct GroupState {
    /// Input rows in the group: the group exists while this is positive.
    pub rows: i64,
    /// Inline for up to three calls: a row's accumulators sit in the cache entry that
    /// its group lookup already reached (a pointer chase less per row).
    pub accumulators: Accumulators,
}

pub type Accumulators = smallvec::SmallVec<[Accumulator; 3]>;

impl GroupState {
    pub fn empty(calls: &[AggCall]) -> Self {
        let accumulators = calls
            .iter()
            .map(|call| match call.kind {
                AggKind::Min | AggKind::Max if call.value_table.is_none() => Accumulator::Extreme(None),
                AggKind::CountRows | AggKind::Min | AggKind::Max | AggKind::StringAgg { .. } => {
                    Accumulator::None
                }
                AggKind::Count | AggKind::CountDistinct => Accumulator::Count(0),
                AggKind::Sum | AggKind::Avg => Accumulator::Sum {
                    count: 0,
                    sum: if is_float(&call.input_type) { Sum::Float(0.0) } else { Sum::Exact(0) },
                },
                AggKind::BoolAnd | AggKind::BoolOr => Accumulator::Bools { trues: 0, falses: 0 },
            })
            .collect();
        GroupState { rows: 0, accumulators }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 24 * self.accumulators.len());
        out.extend_from_slice(&self.rows.to_le_bytes());
        for acc in &self.accumulators {
            match acc {
                Accumulator::None => out.push(0),
                Accumulator::Count(n) => {
                    out.push(1);
                    out.extend_from_slice(&n.to_le_bytes());
                }
                Accumulator::Sum { count, sum } => {
                    out.push(2);
                    out.extend_from_slice(&count.to_le_bytes());
                    match sum {
                        Sum::Exact(v) => {
                            out.push(0);
                            out.extend_from_slice(&v.to_le_bytes());
                        }
                        Sum::Float(v) => {
                            out.push(1);
                            out.extend_from_slice(&v.to_le_bytes());
                        }
                    }
                }
                Accumulator::Bools { trues, falses } => {
                    out.push(3);
                    out.extend_from_slice(&trues.to_le_bytes());
                    out.extend_from_slice(&falses.to_le_bytes());
                }
                Accumulator::Extreme(None) => out.push(4),
                Accumulator::Extreme(Some(bytes)) => {
                    out.push(5);
                    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                    out.extend_from_slice(bytes);
                }
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut reader = Reader { bytes, at: 0 };
        let rows = reader.i64()?;
        let mut accumulators = Accumulators::new();
        while reader.at < bytes.len() {
            accumulators.push(match reader.u8()? {
                0 => Accumulator::None,
                1 => Accumulator::Count(reader.i64()?),
                2 => {
                    let count = reader.i64()?;
                    let sum = match reader.u8()? {
                        0 => Sum::Exact(i128::from_le_bytes(reader.take::<16>()?)),
                        _ => Sum::Float(f64::from_le_bytes(reader.take::<8>()?)),
                    };
                    Accumulator::Sum { count, sum }
                }
                3 => Accumulator::Bools { trues: reader.i64()?, falses: reader.i64()? },
                4 => Accumulator::Extreme(None),
                5 => {
                    let len = u32::from_le_bytes(reader.take::<4>()?) as usize;
                    Accumulator::Extreme(Some(reader.slice(len)?.into()))
                }
                tag => return Err(corrupt(format!("accumulator tag {tag}"))),
            });
        }
        Ok(GroupState { rows, accumulators })
    }
}

impl CacheValue for GroupState {
    fn heap_bytes(&self) -> usize {
        let extremes: usize = self
            .accumulators
            .iter()
            .map(|a| match a {
                Accumulator::Extreme(Some(bytes)) => bytes.len(),
                _ => 0,
            })
            .sum();
        let spilled = if self.accumulators.spilled() { self.accumulators.capacity() } else { 0 };
        spilled * std::mem::size_of::<Accumulator>() + extremes
    }
}

impl StoredValue for GroupState {
    fn encode(&self) -> Vec<u8> {
        GroupState::encode(self)
    }

    fn decode(bytes: &[u8]) -> Result<Self> {
        GroupState::decode(bytes)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        let slice =
            self.bytes.get(self.at..self.at + N).ok_or_else(|| corrupt("truncated group state".into()))?;
        self.at += N;
        Ok(slice.try_into().expect("slice has length N"))
    }

    fn slice(&mut self, len: usize) -> Result<&[u8]> {
        let slice =
            self.bytes.get(self.at..self.at + len).ok_or_else(|| corrupt("truncated group state".into()))?;
        self.at += len;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take::<1>()?[0])
    }

    fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.take::<8>()?))
    }
}

fn corrupt(what: String) -> Error {
    StateError::Corrupt(format!("aggregate state: {what}")).into()
}

pub fn is_float(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Float16 | DataType::Float32 | DataType::Float64)
}

/// An aggregate's input column in the form its accumulator adds: Int64 for integers,
/// Decimal128 for decimals, Float64 for floats, Boolean for booleans.
pub fn normalize_input(array: &ArrayRef) -> Result<ArrayRef> {
    use datafusion::arrow::compute::cast;
    Ok(match array.data_type() {
        DataType::Decimal128(_, _) | DataType::Boolean | DataType::Int64 | DataType::Float64 => array.clone(),
        t if is_float(t) => cast(array, &DataType::Float64)?,
        t if t.is_integer() => cast(array, &DataType::Int64)?,
        _ => array.clone(),
    })
}

/// An aggregate's normalized input column, downcast once per chunk.
pub enum Input<'a> {
    /// count(*): no input.
    Absent,
    Int(&'a Int64Array),
    Decimal(&'a Decimal128Array),
    Float(&'a Float64Array),
    Bool(&'a BooleanArray),
    /// Types only value-table aggregates take (min / max / string_agg of text, ...).
    Other(&'a dyn Array),
}

impl<'a> Input<'a> {
    pub fn of(array: Option<&'a ArrayRef>) -> Self {
        let Some(array) = array else { return Input::Absent };
        match array.data_type() {
            DataType::Int64 => Input::Int(array.as_primitive::<Int64Type>()),
            DataType::Decimal128(_, _) => Input::Decimal(array.as_primitive::<Decimal128Type>()),
            DataType::Float64 => Input::Float(array.as_primitive::<Float64Type>()),
            DataType::Boolean => Input::Bool(array.as_boolean()),
            _ => Input::Other(array.as_ref()),
        }
    }

    fn is_null(&self, row: usize) -> bool {
        match self {
            Input::Absent => false,
            Input::Int(a) => a.is_null(row),
            Input::Decimal(a) => a.is_null(row),
            Input::Float(a) => a.is_null(row),
            Input::Bool(a) => a.is_null(row),
            Input::Other(a) => a.is_null(row),
        }
    }
}

/// Adds (`sign` = 1) or retracts (`sign` = -1) row `row` of `input` to `acc`.
#[inline]
pub fn accumulate(acc: &mut Accumulator, kind: &AggKind, input: &Input, row: usize, sign: i64) {
    if matches!(input, Input::Absent) || matches!(acc, Accumulator::None) || input.is_null(row) {
        return;
    }
    match (acc, input) {
        // count(DISTINCT) counts its value table's entries instead.
        (Accumulator::Count(n), _) if *kind == AggKind::Count => *n += sign,
        (Accumulator::Sum { count, sum }, input) => {
            *count += sign;
            match (sum, input) {
                (Sum::Exact(s), Input::Int(a)) => *s += sign as i128 * a.value(row) as i128,
                (Sum::Exact(s), Input::Decimal(a)) => *s += sign as i128 * a.value(row),
                (Sum::Float(s), Input::Float(a)) => *s += sign as f64 * a.value(row),
                (sum, _) => debug_assert!(false, "sum state {sum:?} cannot take its input"),
            }
        }
        (Accumulator::Bools { trues, falses }, Input::Bool(a)) => {
            if a.value(row) {
                *trues += sign;
            } else {
                *falses += sign;
            }
        }
        _ => {}
    }
}

/// A call's partial columns (from a PartialAgg), downcast once per chunk.
pub enum Partial<'a> {
    /// count(*) (the partial's row count serves) and inline min / max (merged as values).
    None,
    Count(&'a Int64Array),
    Sum(&'a Int64Array, Input<'a>),
    Bools(&'a Int64Array, &'a Int64Array),
}

impl<'a> Partial<'a> {
    /// The partial columns of `call`, whose `input` is the first of them.
    pub fn of(call: &AggCall, columns: &'a [ArrayRef]) -> Self {
        let Some(first) = call.input else { return Partial::None };
        let int = |i: usize| columns[i].as_primitive::<Int64Type>();
        match call.kind {
            AggKind::Count => Partial::Count(int(first)),
            AggKind::Sum | AggKind::Avg => Partial::Sum(int(first), Input::of(Some(&columns[first + 1]))),
            AggKind::BoolAnd | AggKind::BoolOr => Partial::Bools(int(first), int(first + 1)),
            _ => Partial::None,
        }
    }
}

/// Merges row `row` of a partial into `acc`.
#[inline]
pub fn merge(acc: &mut Accumulator, partial: &Partial, row: usize) {
    match (acc, partial) {
        (Accumulator::Count(n), Partial::Count(counts)) => *n += counts.value(row),
        (Accumulator::Sum { count, sum }, Partial::Sum(counts, sums)) => {
            *count += counts.value(row);
            match (sum, sums) {
                (Sum::Exact(s), Input::Decimal(a)) => *s += a.value(row),
                (Sum::Float(s), Input::Float(a)) => *s += a.value(row),
                (sum, _) => debug_assert!(false, "sum state {sum:?} cannot merge its partial"),
            }
        }
        (Accumulator::Bools { trues, falses }, Partial::Bools(t, f)) => {
            *trues += t.value(row);
            *falses += f.value(row);
        }
        _ => {}
    }
}

/// The aggregate's value from its inline state (not for value-table aggregates).
pub fn inline_output(acc: &Accumulator, call: &AggCall, rows: i64) -> ScalarValue {
    match (&call.kind, acc) {
        (AggKind::CountRows, _) => ScalarValue::Int64(Some(rows)),
        (AggKind::Count | AggKind::CountDistinct, Accumulator::Count(n)) => ScalarValue::Int64(Some(*n)),
        (AggKind::Sum, Accumulator::Sum { count, sum }) if *count > 0 => sum_output(*sum, call),
        (AggKind::Avg, Accumulator::Sum { count, sum }) if *count > 0 => avg_output(*sum, *count, call),
        (AggKind::BoolAnd, Accumulator::Bools { trues, falses }) if trues + falses > 0 => {
            ScalarValue::Boolean(Some(*falses == 0))
        }
        (AggKind::BoolOr, Accumulator::Bools { trues, falses }) if trues + falses > 0 => {
            ScalarValue::Boolean(Some(*trues > 0))
        }
        _ => ScalarValue::try_from(&call.output_type).unwrap_or(ScalarValue::Null),
    }
}

fn sum_output(sum: Sum, call: &AggCall) -> ScalarValue {
    let value = match (sum, &call.output_type) {
        (Sum::Exact(v), DataType::Decimal128(p, s)) => Some(ScalarValue::Decimal128(Some(v), *p, *s)),
        (Sum::Exact(v), DataType::UInt64) => u64::try_from(v).ok().map(|v| ScalarValue::UInt64(Some(v))),
        (Sum::Exact(v), _) => i64::try_from(v).ok().map(|v| ScalarValue::Int64(Some(v))),
        (Sum::Float(v), _) => Some(ScalarValue::Float64(Some(v))),
    };
    cast_output(value, call)
}

fn avg_output(sum: Sum, count: i64, call: &AggCall) -> ScalarValue {
    let value = match (sum, &call.output_type, &call.input_type) {
        (Sum::Exact(v), DataType::Decimal128(p, s), DataType::Decimal128(_, input_scale)) => {
            // As DataFusion does: rescale to the output scale, then truncate.
            let factor = 10i128.checked_pow((*s as i32 - *input_scale as i32).max(0) as u32);
            factor
                .and_then(|f| v.checked_mul(f))
                .map(|scaled| ScalarValue::Decimal128(Some(scaled / count as i128), *p, *s))
        }
        (Sum::Exact(v), _, _) => Some(ScalarValue::Float64(Some(v as f64 / count as f64))),
        (Sum::Float(v), _, _) => Some(ScalarValue::Float64(Some(v / count as f64))),
    };
    cast_output(value, call)
}

/// Casts to the call's output type; a value that does not fit becomes NULL with a warning.
fn cast_output(value: Option<ScalarValue>, call: &AggCall) -> ScalarValue {
    let null = ScalarValue::try_from(&call.output_type).unwrap_or(ScalarValue::Null);
    match value.map(|v| v.cast_to(&call.output_type)) {
        Some(Ok(v)) => v,
        _ => {
            tracing::warn!(aggregate = ?call.kind, "aggregate result out of range for {}; NULL", call.output_type);
            null
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_state_round_trips() {
        let state = GroupState {
            rows: 3,
            accumulators: smallvec::smallvec![
                Accumulator::None,
                Accumulator::Count(-2),
                Accumulator::Sum { count: 2, sum: Sum::Exact(-170141183460469231731687303715884105728) },
                Accumulator::Sum { count: 1, sum: Sum::Float(0.5) },
                Accumulator::Bools { trues: 1, falses: 4 },
                Accumulator::Extreme(None),
                Accumulator::Extreme(Some(vec![1, 0, 0, 7].into())),
            ],
        };
        assert_eq!(GroupState::decode(&state.encode()).unwrap(), state);
        assert!(GroupState::decode(&[1, 2, 3]).is_err());
    }
}
