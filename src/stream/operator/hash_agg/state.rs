//! Per-group accumulator state of the hash aggregate and its byte encoding.
//!
//! Every accumulator is retractable: counts and sums move both ways, bool_and / bool_or
//! count trues and falses, bit_and / bit_or count per bit the values that set it, bit_xor
//! xors again, and the variance family keeps the count, sum and sum of squares (exact
//! for integers and decimals: wrapping i128 sums, correct whenever the current multiset's
//! sums fit, however many values came and went). min, max, count(DISTINCT) and string_agg keep the multiset of
//! their values in a value table instead (see `mod.rs`), except min and max over an
//! append-only input, which keep their extreme inline (it never has to be retracted).

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Decimal128Array, Float64Array, Int64Array,
};
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Float64Type, Int64Type};
use datafusion::common::ScalarValue;

use crate::common::{Error, Result};
use crate::plan::{AggCall, AggKind, BitOp, Spread};
use crate::state::{CacheValue, StateError, StoredValue};
use crate::stream::message::Chunk;

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
    /// bit_and / bit_or: non-null values and, per bit, how many of them have it set.
    Bits { count: i64, ones: Box<[i64; 64]> },
    /// bit_xor: non-null values and their xor.
    Xor { count: i64, value: i64 },
    /// The variance family: non-null values, their sum and the sum of their squares
    /// (exact sums are unscaled: squares of decimals at twice the input's scale). Boxed:
    /// the accumulators of every other aggregate stay as small as they were.
    Moments(Box<Moments>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Moments {
    pub count: i64,
    pub sum: Sum,
    pub squares: Sum,
    /// Floats sum `x - shift`, the shift being the first value the group saw: sums of
    /// values near their mean cancel far less than sums of the values.
    pub shift: Option<f64>,
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
                AggKind::Bits(BitOp::Xor) => Accumulator::Xor { count: 0, value: 0 },
                AggKind::Bits(_) => Accumulator::Bits { count: 0, ones: Box::new([0; 64]) },
                AggKind::Spread(_) => {
                    let zero = if is_float(&call.input_type) { Sum::Float(0.0) } else { Sum::Exact(0) };
                    Accumulator::Moments(Box::new(Moments {
                        count: 0,
                        sum: zero,
                        squares: zero,
                        shift: None,
                    }))
                }
                _ => Accumulator::None,
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
                    encode_sum(&mut out, *sum);
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
                Accumulator::Bits { count, ones } => {
                    out.push(6);
                    out.extend_from_slice(&count.to_le_bytes());
                    for n in ones.iter() {
                        out.extend_from_slice(&n.to_le_bytes());
                    }
                }
                Accumulator::Xor { count, value } => {
                    out.push(7);
                    out.extend_from_slice(&count.to_le_bytes());
                    out.extend_from_slice(&value.to_le_bytes());
                }
                Accumulator::Moments(moments) => {
                    out.push(8);
                    out.extend_from_slice(&moments.count.to_le_bytes());
                    encode_sum(&mut out, moments.sum);
                    encode_sum(&mut out, moments.squares);
                    out.extend_from_slice(&moments.shift.unwrap_or(f64::NAN).to_le_bytes());
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
                2 => Accumulator::Sum { count: reader.i64()?, sum: reader.sum()? },
                3 => Accumulator::Bools { trues: reader.i64()?, falses: reader.i64()? },
                4 => Accumulator::Extreme(None),
                5 => {
                    let len = u32::from_le_bytes(reader.take::<4>()?) as usize;
                    Accumulator::Extreme(Some(reader.slice(len)?.into()))
                }
                6 => {
                    let count = reader.i64()?;
                    let mut ones = Box::new([0; 64]);
                    for n in ones.iter_mut() {
                        *n = reader.i64()?;
                    }
                    Accumulator::Bits { count, ones }
                }
                7 => Accumulator::Xor { count: reader.i64()?, value: reader.i64()? },
                8 => {
                    let (count, sum, squares) = (reader.i64()?, reader.sum()?, reader.sum()?);
                    let shift = Some(f64::from_le_bytes(reader.take::<8>()?)).filter(|s| !s.is_nan());
                    Accumulator::Moments(Box::new(Moments { count, sum, squares, shift }))
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
                Accumulator::Bits { .. } => 64 * 8,
                Accumulator::Moments(_) => std::mem::size_of::<Moments>(),
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

    fn sum(&mut self) -> Result<Sum> {
        Ok(match self.u8()? {
            0 => Sum::Exact(i128::from_le_bytes(self.take::<16>()?)),
            _ => Sum::Float(f64::from_le_bytes(self.take::<8>()?)),
        })
    }
}

fn encode_sum(out: &mut Vec<u8>, sum: Sum) {
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

/// The input columns of `calls` over `chunk`, normalized ([`normalize_input`]) and NULL
/// in the rows a call's FILTER leaves out (the calls that keep NULL values skip those rows
/// by [`filter_mask`] instead).
pub fn call_inputs(calls: &[AggCall], chunk: &Chunk) -> Result<Vec<Option<ArrayRef>>> {
    use datafusion::arrow::compute::{not, nullif};
    calls
        .iter()
        .map(|call| {
            let Some(column) = call.input else { return Ok(None) };
            let input = normalize_input(chunk.data.column(column))?;
            match filter_mask(call, chunk) {
                Some(keep) if !call.kind.keeps_nulls() => Ok(Some(nullif(&input, &not(&keep)?)?)),
                _ => Ok(Some(input)),
            }
        })
        .collect()
}

/// The rows of `chunk` a call's FILTER keeps (true where the condition is true; NULL
/// counts as false), or None without FILTER.
pub fn filter_mask(call: &AggCall, chunk: &Chunk) -> Option<BooleanArray> {
    let column = chunk.data.column(call.filter?).as_boolean();
    Some(match column.null_count() {
        0 => column.clone(),
        _ => datafusion::arrow::compute::prep_null_mask_filter(column),
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
        (Accumulator::Bits { count, ones }, Input::Int(a)) => {
            *count += sign;
            let mut bits = a.value(row) as u64;
            while bits != 0 {
                ones[bits.trailing_zeros() as usize] += sign;
                bits &= bits - 1;
            }
        }
        (Accumulator::Xor { count, value }, Input::Int(a)) => {
            *count += sign;
            *value ^= a.value(row);
        }
        (Accumulator::Moments(moments), input) => {
            let Moments { count, sum, squares, shift } = moments.as_mut();
            *count += sign;
            match (sum, squares, input) {
                (Sum::Exact(s), Sum::Exact(q), Input::Int(a)) => {
                    let v = a.value(row) as i128;
                    *s = s.wrapping_add(sign as i128 * v);
                    *q = q.wrapping_add((sign as i128).wrapping_mul(v * v));
                }
                (Sum::Exact(s), Sum::Exact(q), Input::Decimal(a)) => {
                    let v = a.value(row);
                    *s = s.wrapping_add(sign as i128 * v);
                    *q = q.wrapping_add((sign as i128).wrapping_mul(v.wrapping_mul(v)));
                }
                (Sum::Float(s), Sum::Float(q), Input::Float(a)) => {
                    let v = a.value(row) - *shift.get_or_insert(a.value(row));
                    *s += sign as f64 * v;
                    *q += sign as f64 * v * v;
                }
                (sum, _, _) => debug_assert!(false, "moments state {sum:?} cannot take its input"),
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
        (AggKind::Bits(op), Accumulator::Bits { count, ones }) if *count > 0 => {
            let set = |b: usize| match op {
                BitOp::And => ones[b] == *count,
                _ => ones[b] > 0,
            };
            let bits = (0..64).filter(|&b| set(b)).fold(0u64, |bits, b| bits | 1 << b);
            cast_output(Some(ScalarValue::Int64(Some(bits as i64))), call)
        }
        (AggKind::Bits(_), Accumulator::Xor { count, value }) if *count > 0 => {
            cast_output(Some(ScalarValue::Int64(Some(*value))), call)
        }
        (AggKind::Spread(spread), Accumulator::Moments(m)) => {
            let value = spread_output(*spread, m.count, m.sum, m.squares, &call.input_type);
            cast_output(value.map(|v| ScalarValue::Float64(Some(v))), call)
        }
        _ => ScalarValue::try_from(&call.output_type).unwrap_or(ScalarValue::Null),
    }
}

/// A variance or standard deviation from the count, sum and sum of squares of the values
/// (None: no values, or one for a sample's). Exact sums give the numerator `n·Σx² − (Σx)²`
/// exactly where it fits in i128 (it is never negative); floats clamp rounding below zero.
fn spread_output(spread: Spread, count: i64, sum: Sum, squares: Sum, input_type: &DataType) -> Option<f64> {
    let n = count as f64;
    let divisor = if spread.sample { n * (n - 1.0) } else { n * n };
    if count <= 0 || (spread.sample && count < 2) {
        return None;
    }
    let numerator = match (sum, squares) {
        (Sum::Exact(s), Sum::Exact(q)) => {
            let scale = match input_type {
                DataType::Decimal128(_, scale) => *scale as i32,
                _ => 0,
            };
            let exact =
                (count as i128).checked_mul(q).zip(s.checked_mul(s)).and_then(|(a, b)| a.checked_sub(b));
            let unscaled = match exact {
                Some(v) => v as f64,
                None => n * q as f64 - (s as f64) * (s as f64),
            };
            unscaled / 10f64.powi(2 * scale)
        }
        (Sum::Float(s), Sum::Float(q)) => (n * q - s * s).max(0.0),
        _ => return None,
    };
    let variance = numerator / divisor;
    Some(if spread.root { variance.sqrt() } else { variance })
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
                Accumulator::Bits { count: 2, ones: Box::new([1; 64]) },
                Accumulator::Xor { count: 1, value: -5 },
                Accumulator::Moments(Box::new(Moments {
                    count: 3,
                    sum: Sum::Exact(-7),
                    squares: Sum::Exact(99),
                    shift: Some(1.5)
                })),
            ],
        };
        assert_eq!(GroupState::decode(&state.encode()).unwrap(), state);
        assert!(GroupState::decode(&[1, 2, 3]).is_err());
    }
}
