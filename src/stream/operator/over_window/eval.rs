//! Computes window functions for a range of a partition's rows, over the decoded rows
//! they read: positions for ranks, a `take` for lag / lead / first_value / last_value,
//! prefix sums for count / sum / avg, a monotonic queue for min / max (frames only move
//! forward as the current row does).

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Decimal128Array, Float64Array, Int64Array, UInt32Array,
    UInt64Array, new_null_array,
};
use datafusion::arrow::compute::kernels::zip::zip;
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Float64Type};
use datafusion::arrow::row::{RowConverter, SortField};

use super::closing::Summary;
use super::frames::Rows;
use crate::common::Result;
use crate::common::row::RowCodec;
use crate::plan::{WindowCall, WindowKind};

/// What precedes a partition's rows in memory: rows freed under EMIT ON WINDOW CLOSE
/// (their count, distinct ORDER BY values, and the call's summary of them when its frame
/// starts at the partition's start).
#[derive(Default, Clone, Copy)]
pub struct Prior<'a> {
    pub count: u64,
    pub dense: u64,
    pub summary: Option<&'a Summary>,
}

impl Prior<'_> {
    /// The summary's value `pick` as a one-row array of `data_type`.
    fn value(
        &self,
        data_type: &DataType,
        pick: impl Fn(&Summary) -> &Option<Box<[u8]>>,
    ) -> Result<Option<ArrayRef>> {
        let Some(bytes) = self.summary.and_then(|s| pick(s).as_deref()) else { return Ok(None) };
        Ok(Some(RowCodec::new(std::slice::from_ref(data_type))?.decode([bytes])?.swap_remove(0)))
    }
}

/// `arg` with `value` appended (at index `arg.len()`), when there is one.
fn with_prior(arg: &ArrayRef, value: &Option<ArrayRef>) -> Result<ArrayRef> {
    Ok(match value {
        Some(value) => datafusion::arrow::compute::concat(&[arg.as_ref(), value.as_ref()])?,
        None => arg.clone(),
    })
}

/// The value of `call` for each row of `range`; `span` holds the decoded argument
/// column of the rows `span_start..` (covering what the call reads).
pub fn evaluate(
    rows: &Rows<'_>,
    call: &WindowCall,
    range: Range<usize>,
    arg: Option<&ArrayRef>,
    span_start: usize,
    prior: Prior<'_>,
) -> Result<ArrayRef> {
    let len = range.len();
    let array: ArrayRef = match &call.kind {
        WindowKind::RowNumber => {
            Arc::new(UInt64Array::from_iter_values(range.clone().map(|i| prior.count + i as u64 + 1)))
        }
        WindowKind::Rank => {
            let mut start = rows.peer_start(range.start.min(rows.len().saturating_sub(1)));
            let mut values = Vec::with_capacity(len);
            for i in range.clone() {
                if i > start && rows.0[i].order() != rows.0[i - 1].order() {
                    start = i;
                }
                values.push(prior.count + start as u64 + 1);
            }
            Arc::new(UInt64Array::from(values))
        }
        WindowKind::DenseRank => {
            // Distinct ORDER BY values up to the range's first row.
            let mut rank = prior.dense + 1;
            for i in 1..=range.start.min(rows.len().saturating_sub(1)) {
                if rows.0[i].order() != rows.0[i - 1].order() {
                    rank += 1;
                }
            }
            let mut values = Vec::with_capacity(len);
            for i in range.clone() {
                if i > range.start && rows.0[i].order() != rows.0[i - 1].order() {
                    rank += 1;
                }
                values.push(rank);
            }
            Arc::new(UInt64Array::from(values))
        }
        WindowKind::Shift { offset, default } => {
            let arg = arg.expect("lag / lead read their argument");
            let n = rows.len() as i128;
            let at = |i: usize| i as i128 + *offset as i128;
            let indices: UInt32Array = range
                .clone()
                .map(|i| {
                    let j = at(i);
                    (0..n).contains(&j).then(|| (j as usize - span_start) as u32)
                })
                .collect();
            let taken = take(arg.as_ref(), &indices, None)?;
            let taken = cast(&taken, &call.output_type)?;
            if default.is_null() {
                taken
            } else {
                let outside: BooleanArray = range.clone().map(|i| Some(!(0..n).contains(&at(i)))).collect();
                zip(&outside, &default.to_scalar()?, &taken)?
            }
        }
        WindowKind::FirstValue | WindowKind::LastValue => {
            let arg = arg.expect("first_value / last_value read their argument");
            let first = call.kind == WindowKind::FirstValue;
            let valid = |j: usize| !call.ignore_nulls || arg.is_valid(j - span_start);
            // Freed rows come first in a frame from the partition's start.
            let freed = prior.value(arg.data_type(), |s| if first { &s.first } else { &s.last })?;
            let freed_at = freed.as_ref().map(|_| arg.len() as u32);
            let indices: UInt32Array = range
                .clone()
                .map(|i| {
                    let frame = rows.frame(&call.frame, i);
                    let local = if first {
                        frame.clone().find(|&j| valid(j))
                    } else {
                        frame.clone().rev().find(|&j| valid(j))
                    };
                    let local = local.map(|j| (j - span_start) as u32);
                    if first { freed_at.or(local) } else { local.or(freed_at) }
                })
                .collect();
            cast(&take(with_prior(arg, &freed)?.as_ref(), &indices, None)?, &call.output_type)?
        }
        WindowKind::CountRows => {
            let freed = prior.summary.map_or(0, |s| s.rows);
            Arc::new(Int64Array::from_iter_values(
                range.clone().map(|i| freed + rows.frame(&call.frame, i).len() as i64),
            ))
        }
        WindowKind::Count | WindowKind::Sum | WindowKind::Avg => {
            sums(rows, call, range.clone(), arg.expect("aggregates read their argument"), span_start, prior)?
        }
        WindowKind::Session { end, gap } => {
            Arc::new(Int64Array::from(sessions(rows, range.clone(), *gap, *end)))
        }
        WindowKind::Min | WindowKind::Max => extremes(
            rows,
            call,
            range.clone(),
            arg.expect("min / max read their argument"),
            span_start,
            prior,
        )?,
    };
    if array.len() != len {
        return Ok(new_null_array(&call.output_type, len));
    }
    Ok(if array.data_type() == &call.output_type { array } else { cast(&array, &call.output_type)? })
}

/// Each row's session start (or `end`: last value plus `gap`) for the rows of `range`,
/// from the times of the sessions they are in.
fn sessions(rows: &Rows<'_>, range: Range<usize>, gap: i64, end: bool) -> Vec<Option<i64>> {
    if range.is_empty() {
        return Vec::new();
    }
    let first = rows.session_start(range.start, gap);
    let last = rows.session_end(range.end - 1, gap);
    let times: Vec<Option<i64>> = rows.0[first..last].iter().map(|r| r.t).collect();
    let bounds = crate::common::window::session_bounds(&times, gap, end);
    bounds[range.start - first..range.end - first].to_vec()
}

/// count, sum and avg from prefix sums of the span: exact (38-digit decimals) for
/// integers and decimals, floats for floats.
fn sums(
    rows: &Rows<'_>,
    call: &WindowCall,
    range: Range<usize>,
    arg: &ArrayRef,
    span_start: usize,
    prior: Prior<'_>,
) -> Result<ArrayRef> {
    // The freed rows' non-NULL count and sums (none outside EMIT ON WINDOW CLOSE).
    let (freed_count, freed_sum, freed_float) =
        prior.summary.map_or((0, 0, 0.0), |s| (s.count, s.sum, s.sum_float));
    let mut counts = Vec::with_capacity(arg.len() + 1);
    counts.push(0i64);
    for j in 0..arg.len() {
        counts.push(counts[j] + arg.is_valid(j) as i64);
    }
    let frames: Vec<Range<usize>> = range.map(|i| rows.frame(&call.frame, i)).collect();
    let count = |f: &Range<usize>| {
        freed_count + if f.is_empty() { 0 } else { counts[f.end - span_start] - counts[f.start - span_start] }
    };
    if call.kind == WindowKind::Count {
        return Ok(Arc::new(Int64Array::from_iter_values(frames.iter().map(count))));
    }
    let input_type = arg.data_type();
    if matches!(input_type, DataType::Float16 | DataType::Float32 | DataType::Float64) {
        let values = cast(arg, &DataType::Float64)?;
        let values = values.as_primitive::<Float64Type>();
        let mut prefix = Vec::with_capacity(values.len() + 1);
        prefix.push(0f64);
        for j in 0..values.len() {
            prefix.push(prefix[j] + if values.is_valid(j) { values.value(j) } else { 0.0 });
        }
        let out: Float64Array = frames
            .iter()
            .map(|f| {
                let c = count(f);
                (c > 0).then(|| {
                    let local = if f.is_empty() {
                        0.0
                    } else {
                        prefix[f.end - span_start] - prefix[f.start - span_start]
                    };
                    let sum = freed_float + local;
                    if call.kind == WindowKind::Avg { sum / c as f64 } else { sum }
                })
            })
            .collect();
        return Ok(Arc::new(out));
    }
    let scale = match input_type {
        DataType::Decimal128(_, s) => *s,
        _ => 0,
    };
    let values = cast(arg, &DataType::Decimal128(38, scale))?;
    let values = values.as_primitive::<Decimal128Type>();
    let mut prefix = Vec::with_capacity(values.len() + 1);
    prefix.push(0i128);
    for j in 0..values.len() {
        prefix.push(prefix[j].wrapping_add(if values.is_valid(j) { values.value(j) } else { 0 }));
    }
    let sum = |f: &Range<usize>| {
        let local = if f.is_empty() {
            0
        } else {
            prefix[f.end - span_start].wrapping_sub(prefix[f.start - span_start])
        };
        freed_sum.wrapping_add(local)
    };
    if call.kind == WindowKind::Sum {
        let out: Decimal128Array = frames.iter().map(|f| (count(f) > 0).then(|| sum(f))).collect();
        return Ok(Arc::new(out.with_precision_and_scale(38, scale)?));
    }
    match &call.output_type {
        DataType::Decimal128(_, out_scale) => {
            let factor = 10i128.pow((*out_scale as i32 - scale as i32).max(0) as u32);
            let out: Decimal128Array = frames
                .iter()
                .map(|f| {
                    let c = count(f);
                    (c > 0).then(|| sum(f).saturating_mul(factor) / c as i128)
                })
                .collect();
            Ok(Arc::new(out.with_precision_and_scale(38, *out_scale)?))
        }
        _ => {
            let divisor = 10f64.powi(scale as i32);
            let out: Float64Array = frames
                .iter()
                .map(|f| {
                    let c = count(f);
                    (c > 0).then(|| sum(f) as f64 / divisor / c as f64)
                })
                .collect();
            Ok(Arc::new(out))
        }
    }
}

/// min and max over sliding frames: a queue of candidate positions whose values are
/// strictly better than every later one's, compared in Arrow's row format.
fn extremes(
    rows: &Rows<'_>,
    call: &WindowCall,
    range: Range<usize>,
    arg: &ArrayRef,
    span_start: usize,
    prior: Prior<'_>,
) -> Result<ArrayRef> {
    // The freed rows' extreme competes as one more value, after the span's.
    let freed = prior.value(arg.data_type(), |s| &s.extreme)?;
    let arg = &with_prior(arg, &freed)?;
    let freed_at = freed.as_ref().map(|_| arg.len() - 1);
    let converter = RowConverter::new(vec![SortField::new(arg.data_type().clone())])?;
    let encoded = converter.convert_columns(std::slice::from_ref(arg))?;
    let max = call.kind == WindowKind::Max;
    // Whether the value at a beats (or ties) the one at b.
    let beats = |a: usize, b: usize| {
        let (x, y) = (encoded.row(a), encoded.row(b));
        if max { x >= y } else { x <= y }
    };
    let mut queue: VecDeque<usize> = VecDeque::new();
    let mut next = 0usize;
    let mut indices = Vec::with_capacity(range.len());
    for i in range {
        let frame = rows.frame(&call.frame, i);
        let (lo, hi) = (frame.start.saturating_sub(span_start), frame.end.saturating_sub(span_start));
        next = next.max(lo);
        while next < hi {
            if arg.is_valid(next) {
                while queue.back().is_some_and(|&b| beats(next, b)) {
                    queue.pop_back();
                }
                queue.push_back(next);
            }
            next += 1;
        }
        while queue.front().is_some_and(|&f| f < lo) {
            queue.pop_front();
        }
        let local = queue.front().filter(|_| lo < hi).copied();
        let best = match (local, freed_at) {
            (Some(j), Some(f)) => Some(if beats(j, f) { j } else { f }),
            (local, freed) => local.or(freed),
        };
        indices.push(best.map(|j| j as u32));
    }
    Ok(take(arg.as_ref(), &UInt32Array::from(indices), None)?)
}
