//! EMIT ON WINDOW CLOSE for over windows: rows ordered by a watermarked column are
//! emitted once, when final, and a partition's old rows are freed.
//!
//! With the watermark at `w`, no row below `w` will still come: the rows of a partition
//! below it are complete, in order. Row `i` is final when everything its calls read is
//! complete: its own value below `w` (ranks, lag, frames ending at the current row), the
//! next `n` rows too (lead, `ROWS n FOLLOWING`), or its value plus `k` below `w` (`RANGE k
//! FOLLOWING`). At each barrier after the watermark moved, every partition with rows
//! waiting emits its newly final rows (an append-only output) and frees the rows no
//! waiting or future row reads, keeping what later rows need of them in the partition's
//! [`Base`]: how many rows there were (row numbers, ranks), how many distinct ORDER BY
//! values (dense ranks), and per framed call from UNBOUNDED PRECEDING a summary (count,
//! sum, extreme, first and last value). A row that arrives behind the watermark is late:
//! kept in `sabot_catalog.dead_letters`, not applied.
//!
//! The state table keeps, besides the rows, each partition's base under the partition
//! key itself (an empty suffix; rows always have an ORDER BY key), the partitions with
//! rows waiting under [`PENDING`] + partition, and the watermark reached under
//! [`BOUND_KEY`]. No row key starts with 0xff 0xff: a partition key starts with a row-format
//! null or valid marker (0 or 1), and an ORDER BY key with 1 or a null marker followed by
//! zeros.

use std::collections::BTreeSet;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Float64Type};
use datafusion::common::ScalarValue;

use super::frames::Rows;
use crate::common::row::RowCodec;
use crate::common::{Error, Result};
use crate::plan::{FrameBound, WindowCall, WindowKind};
use crate::state::{StateTable, prefix_end};
use crate::stream::message::{Chunk, Op};
use crate::stream::operator::late::{LateRows, decode_bound, encode_bound};
use crate::stream::operator::{HeldWatermarks, OperatorContext};

pub const PENDING: &[u8] = b"\xff\xffpending\x00";
pub const BOUND_KEY: &[u8] = b"\xff\xffbound";

/// Whether a stored key suffix is one of the markers (not a row).
pub fn is_marker(suffix: &[u8]) -> bool {
    suffix.starts_with(b"\xff\xff")
}

/// What a partition keeps of the rows it freed.
#[derive(Default, Clone, Debug, PartialEq)]
pub struct Base {
    /// Rows freed.
    pub count: u64,
    /// Distinct ORDER BY values among them.
    pub dense: u64,
    /// Rows emitted, the freed ones included.
    pub emitted: u64,
    /// Per call: a summary of the freed rows for framed calls from UNBOUNDED PRECEDING.
    pub summaries: Vec<Summary>,
}

#[derive(Default, Clone, Debug, PartialEq)]
pub struct Summary {
    pub rows: i64,
    /// Non-NULL values.
    pub count: i64,
    /// Sum of integers and decimals (in the argument's scale)...
    pub sum: i128,
    /// ... or of floats.
    pub sum_float: f64,
    /// min / max, first / last value (the last non-NULL ones with IGNORE NULLS), each
    /// encoded alone in the row format.
    pub extreme: Option<Box<[u8]>>,
    pub first: Option<Box<[u8]>>,
    pub last: Option<Box<[u8]>>,
}

impl Base {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for n in [self.count, self.dense, self.emitted] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        out.extend_from_slice(&(self.summaries.len() as u32).to_le_bytes());
        for s in &self.summaries {
            out.extend_from_slice(&s.rows.to_le_bytes());
            out.extend_from_slice(&s.count.to_le_bytes());
            out.extend_from_slice(&s.sum.to_le_bytes());
            out.extend_from_slice(&s.sum_float.to_le_bytes());
            for value in [&s.extreme, &s.first, &s.last] {
                match value {
                    None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
                    Some(bytes) => {
                        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                        out.extend_from_slice(bytes);
                    }
                }
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Base> {
        let mut reader = Reader { bytes, at: 0 };
        let count = u64::from_le_bytes(reader.array()?);
        let dense = u64::from_le_bytes(reader.array()?);
        let emitted = u64::from_le_bytes(reader.array()?);
        let calls = u32::from_le_bytes(reader.array()?) as usize;
        let mut summaries = Vec::with_capacity(calls.min(1024));
        for _ in 0..calls {
            let rows = i64::from_le_bytes(reader.array()?);
            let count = i64::from_le_bytes(reader.array()?);
            let sum = i128::from_le_bytes(reader.array()?);
            let sum_float = f64::from_le_bytes(reader.array()?);
            let extreme = reader.value()?;
            let first = reader.value()?;
            let last = reader.value()?;
            summaries.push(Summary { rows, count, sum, sum_float, extreme, first, last });
        }
        Ok(Base { count, dense, emitted, summaries })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let part = self
            .bytes
            .get(self.at..self.at + n)
            .ok_or_else(|| Error::internal("a corrupt over-window partition base"))?;
        self.at += n;
        Ok(part)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    fn value(&mut self) -> Result<Option<Box<[u8]>>> {
        let len = u32::from_le_bytes(self.array()?);
        if len == u32::MAX {
            return Ok(None);
        }
        Ok(Some(self.take(len as usize)?.into()))
    }
}

/// The first `complete` rows of a partition are below the watermark `bound` (ORDER BY
/// values in sort order, as i64): no row will still come among them.
pub fn complete(rows: &Rows<'_>, bound: i64) -> usize {
    rows.0.partition_point(|r| r.t.is_some_and(|t| t < bound))
}

/// One past the last final row: rows up to it have everything their calls read.
pub fn final_end(rows: &Rows<'_>, calls: &[WindowCall], complete: usize, bound: i64) -> usize {
    calls.iter().fold(complete, |end, call| {
        let limit = match (&call.kind, call.frame.end) {
            (WindowKind::Shift { offset, .. }, _) if *offset > 0 => complete.saturating_sub(*offset as usize),
            (WindowKind::Session { gap, .. }, _) => rows.closed_sessions(*gap, bound),
            (kind, FrameBound::Offset(k)) if kind.uses_frame() && k > 0 => match call.frame.rows {
                true => complete.saturating_sub(k as usize),
                false => rows.0.partition_point(|r| r.t.is_some_and(|t| t.saturating_add(k) < bound)),
            },
            _ => complete,
        };
        end.min(limit)
    })
}

/// The first row that a waiting row (from `waiting` on) or a future one (at or above
/// `bound`) still reads, at the start of its peer group: the rows before it can go.
pub fn keep_from(rows: &Rows<'_>, calls: &[WindowCall], waiting: usize, bound: i64) -> usize {
    let n = rows.len();
    let peers = |i: usize| if i < n { rows.peer_start(i) } else { i };
    let keep = calls.iter().fold(waiting, |keep, call| {
        let need = match (&call.kind, call.frame.start) {
            (WindowKind::RowNumber | WindowKind::Session { .. }, _) => waiting,
            (WindowKind::Rank | WindowKind::DenseRank, _) => peers(waiting),
            (WindowKind::Shift { offset, .. }, _) => {
                waiting.saturating_sub(offset.min(&0).unsigned_abs() as usize)
            }
            (_, FrameBound::Unbounded) => waiting,
            (_, FrameBound::Offset(k)) if call.frame.rows => {
                waiting.saturating_sub(k.min(0).unsigned_abs() as usize)
            }
            (_, FrameBound::Offset(0)) => peers(waiting),
            (_, FrameBound::Offset(k)) => {
                let t = if waiting < n { rows.0[waiting].t } else { Some(bound) };
                match t {
                    Some(t) => rows.0.partition_point(|r| r.t.is_some_and(|v| v < t.saturating_add(k))),
                    None => waiting,
                }
            }
        };
        keep.min(need)
    });
    peers(keep)
}

/// Adds the rows `..freed` to `base` before they are dropped: their count, distinct
/// ORDER BY values, and each summarized call's summary (`args[i]`: call i's argument over
/// those rows).
pub fn absorb(
    base: &mut Base,
    rows: &Rows<'_>,
    freed: usize,
    calls: &[WindowCall],
    args: &[Option<ArrayRef>],
) -> Result<()> {
    if freed == 0 {
        return Ok(());
    }
    base.count += freed as u64;
    base.dense += 1 + (1..freed).filter(|&i| rows.0[i].order() != rows.0[i - 1].order()).count() as u64;
    base.summaries.resize(calls.len(), Summary::default());
    for ((call, summary), arg) in calls.iter().zip(&mut base.summaries).zip(args) {
        if !call.reads_from_start() {
            continue;
        }
        summary.rows += freed as i64;
        let Some(arg) = arg else { continue };
        summary.count += (arg.len() - arg.null_count()) as i64;
        match arg.data_type() {
            DataType::Float16 | DataType::Float32 | DataType::Float64 => {
                let values = cast(arg, &DataType::Float64)?;
                summary.sum_float += values.as_primitive::<Float64Type>().iter().flatten().sum::<f64>();
            }
            t if t.is_numeric() => {
                let scale = match t {
                    DataType::Decimal128(_, s) => *s,
                    _ => 0,
                };
                let values = cast(arg, &DataType::Decimal128(38, scale))?;
                let sum =
                    values.as_primitive::<Decimal128Type>().iter().flatten().fold(0i128, i128::wrapping_add);
                summary.sum = summary.sum.wrapping_add(sum);
            }
            _ => {}
        }
        let codec = RowCodec::new(std::slice::from_ref(arg.data_type()))?;
        let encoded = codec.encode(std::slice::from_ref(arg))?;
        let valid = |i: &usize| arg.is_valid(*i);
        let pick = |i: usize| -> Box<[u8]> { encoded.row(i).data().into() };
        let max = call.kind == WindowKind::Max;
        for i in (0..arg.len()).filter(valid) {
            let value = encoded.row(i).data();
            let better = match &summary.extreme {
                None => true,
                Some(current) => {
                    if max {
                        value > &**current
                    } else {
                        value < &**current
                    }
                }
            };
            if better {
                summary.extreme = Some(value.into());
            }
        }
        if summary.first.is_none() {
            summary.first =
                if call.ignore_nulls { (0..arg.len()).find(valid).map(pick) } else { Some(pick(0)) };
        }
        let last = if call.ignore_nulls { (0..arg.len()).rev().find(valid) } else { Some(arg.len() - 1) };
        if let Some(i) = last {
            summary.last = Some(pick(i));
        }
    }
    Ok(())
}

pub fn pending_key(partition: &[u8]) -> Vec<u8> {
    [PENDING, partition].concat()
}

/// The closing state of an over window under EMIT ON WINDOW CLOSE.
pub struct Closer {
    /// The ORDER BY column's watermark: rows behind it are late.
    pub late: LateRows,
    codec: RowCodec,
    /// The watermark moved since the last barrier: partitions with rows waiting emit.
    pub due: bool,
    /// Rows are emitted once, when final (EMIT ON WINDOW CLOSE); otherwise the operator
    /// emits as rows change and closing only frees sessions the watermark has passed.
    pub emits: bool,
    /// The calls are session bounds: the output watermark is on the sessions' ends,
    /// which lie strictly beyond the input's watermark.
    pub sessions: bool,
    /// Partitions with rows not emitted yet (and the marker writes pending for the table).
    pub waiting: BTreeSet<Box<[u8]>>,
    loaded: bool,
    /// The output column the ORDER BY column becomes, when the output carries its
    /// watermark.
    pub output_column: Option<usize>,
    pub held: HeldWatermarks,
}

impl Closer {
    pub fn new(column: usize, data_type: DataType, output_column: Option<usize>) -> Result<Self> {
        Ok(Closer {
            codec: RowCodec::new(std::slice::from_ref(&data_type))?,
            late: LateRows::new(column, data_type),
            due: false,
            emits: true,
            sessions: false,
            waiting: BTreeSet::new(),
            loaded: false,
            output_column,
            held: HeldWatermarks::default(),
        })
    }

    /// Reads the watermark reached and the waiting partitions once (after a start): those
    /// this instance owns (instances share the state table; each owns the partitions
    /// whose key hashes to it, as the exchange routes them).
    pub fn load(
        &mut self,
        table: &StateTable,
        ctx: &OperatorContext,
        partition_codec: Option<&RowCodec>,
    ) -> Result<()> {
        if self.loaded {
            return Ok(());
        }
        let snapshot = ctx.snapshot.as_ref();
        if let Some(bound) = table.get(snapshot, BOUND_KEY)? {
            self.late.advance(&decode_bound(&self.codec, &bound, "over-window watermark")?)?;
        }
        let mut found: Vec<Box<[u8]>> = Vec::new();
        let end = prefix_end(PENDING);
        table.scan_range(snapshot, PENDING, end.as_deref(), &mut |key, _| {
            found.push(key[PENDING.len()..].into());
            Ok(true)
        })?;
        if let (Some(codec), true) = (partition_codec, ctx.instances > 1 && !found.is_empty()) {
            let columns = codec.decode(found.iter().map(|k| &**k))?;
            let targets = crate::stream::exchange::targets(&columns, found.len(), ctx.instances)?;
            found =
                found.into_iter().zip(targets).filter(|(_, t)| *t == ctx.instance).map(|(k, _)| k).collect();
        }
        self.waiting.extend(found);
        self.loaded = true;
        Ok(())
    }

    /// The output column's watermark: the input's, or for sessions one unit past it (a
    /// session on time ends after it, so the sessions ending exactly at it are closed).
    pub fn output_watermark(&self) -> Option<(usize, ScalarValue)> {
        let (column, bound) = (self.output_column?, self.late.bound()?);
        let value = match (self.sessions, bound) {
            (true, ScalarValue::TimestampSecond(Some(t), tz)) => {
                ScalarValue::TimestampSecond(Some(t + 1), tz.clone())
            }
            (true, ScalarValue::TimestampMillisecond(Some(t), tz)) => {
                ScalarValue::TimestampMillisecond(Some(t + 1), tz.clone())
            }
            (true, ScalarValue::TimestampMicrosecond(Some(t), tz)) => {
                ScalarValue::TimestampMicrosecond(Some(t + 1), tz.clone())
            }
            (true, ScalarValue::TimestampNanosecond(Some(t), tz)) => {
                ScalarValue::TimestampNanosecond(Some(t + 1), tz.clone())
            }
            (true, ScalarValue::Int64(Some(t))) => ScalarValue::Int64(Some(t + 1)),
            (_, bound) => bound.clone(),
        };
        Some((column, value))
    }

    /// The watermark as an i64 in the ORDER BY column's units.
    pub fn bound(&self) -> Result<Option<i64>> {
        let Some(bound) = self.late.bound() else { return Ok(None) };
        Ok(as_i64(&bound.to_array()?)?.first().copied().flatten())
    }

    /// Records the watermark reached (in the table, at the checkpoint).
    pub fn record(&self, table: &mut StateTable) -> Result<()> {
        if let Some(bound) = self.late.bound() {
            table.put(BOUND_KEY.to_vec(), encode_bound(&self.codec, bound)?);
        }
        Ok(())
    }
}

/// Values of a timestamp, date or integer column as i64 (its unit; days for dates).
pub fn as_i64(values: &ArrayRef) -> Result<Vec<Option<i64>>> {
    let values = match values.data_type() {
        DataType::Date32 => cast(&cast(values, &DataType::Int32)?, &DataType::Int64)?,
        _ => cast(values, &DataType::Int64)?,
    };
    Ok(values.as_primitive::<datafusion::arrow::datatypes::Int64Type>().iter().collect())
}

impl super::OverWindowOperator {
    /// At a barrier after the watermark moved: each partition with rows waiting emits the
    /// rows that became final and frees the rows nothing reads any more.
    pub(super) fn close(&mut self, ctx: &OperatorContext) -> Result<Vec<Chunk>> {
        let Some(mut closer) = self.closing.take() else { return Ok(Vec::new()) };
        let result = self.close_with(ctx, &mut closer);
        self.closing = Some(closer);
        result
    }

    fn close_with(&mut self, ctx: &OperatorContext, closer: &mut Closer) -> Result<Vec<Chunk>> {
        let snapshot = ctx.snapshot.as_ref();
        closer.load(self.partitions.table(), ctx, self.partition_codec.as_ref())?;
        if !std::mem::take(&mut closer.due) {
            return Ok(Vec::new());
        }
        let Some(bound) = closer.bound()? else { return Ok(Vec::new()) };
        closer.record(self.partitions.table_mut())?;
        if !closer.emits {
            return self.free_sessions(ctx, closer, bound);
        }
        let calls = &self.node.calls;
        let summary_columns: Vec<Option<usize>> =
            calls.iter().map(|c| c.input.filter(|_| c.reads_from_start())).collect();
        let keeps_base = self.node.keeps_summaries();
        let (mut rows_out, mut values_out) = (Vec::new(), Vec::new());
        let waiting: Vec<Box<[u8]>> = closer.waiting.iter().cloned().collect();
        for partition in waiting {
            let slot = self.partitions.rows_slot(snapshot, &partition)?;
            let part = self.partitions.get(slot).expect("a loaded partition");
            let rows = Rows(&part.rows);
            let mut base = part.base.clone().unwrap_or_default();
            let first_waiting = (base.emitted.saturating_sub(base.count) as usize).min(rows.len());
            let end = final_end(&rows, calls, complete(&rows, bound), bound).max(first_waiting);
            for (_, row, values) in self.compute(&rows, Some(&base), first_waiting..end)? {
                rows_out.push(row);
                values_out.push(values);
            }
            let keep = keep_from(&rows, calls, end, bound).min(end);
            let args: Vec<Option<ArrayRef>> = if keep > 0 && summary_columns.iter().any(Option::is_some) {
                let columns = self.rows.decode(rows.0[..keep].iter().map(|r| &*r.row))?;
                summary_columns.iter().map(|c| c.map(|c| columns[c].clone())).collect()
            } else {
                vec![None; calls.len()]
            };
            absorb(&mut base, &rows, keep, calls, &args)?;
            base.emitted += (end - first_waiting) as u64;
            let waits = end < rows.len();
            let part = self.partitions.change(slot);
            part.free_first(keep);
            part.base = if part.rows.is_empty() && !keeps_base { None } else { Some(base) };
            part.base_changed = true;
            self.partitions.recharge(slot);
            if !waits {
                closer.waiting.remove(&partition);
                self.partitions.table_mut().delete(pending_key(&partition));
            }
        }
        if let Some((column, value)) = closer.output_watermark() {
            closer.held.hold(column, &value);
        }
        let ops = vec![Op::Insert; rows_out.len()];
        self.build(ops, rows_out, values_out)
    }

    /// Frees, in each partition with rows, the sessions the watermark `bound` has passed
    /// (the watermark itself went on when it came: see `on_watermark`):
    /// no row on time can join them (it would be at or above `bound`, and they end at or
    /// below it). Rows behind the watermark are late, so their rows never change again.
    fn free_sessions(
        &mut self,
        ctx: &OperatorContext,
        closer: &mut Closer,
        bound: i64,
    ) -> Result<Vec<Chunk>> {
        let gap = self.node.session_gap().expect("only sessions close without emitting");
        let waiting: Vec<Box<[u8]>> = closer.waiting.iter().cloned().collect();
        for partition in waiting {
            let slot = self.partitions.rows_slot(ctx.snapshot.as_ref(), &partition)?;
            let part = self.partitions.get(slot).expect("a loaded partition");
            let closed = Rows(&part.rows).closed_sessions(gap, bound);
            if closed == 0 {
                continue;
            }
            let part = self.partitions.change(slot);
            part.free_first(closed);
            let empty = part.rows.is_empty();
            self.partitions.recharge(slot);
            if empty {
                closer.waiting.remove(&partition);
                self.partitions.table_mut().delete(pending_key(&partition));
            }
        }
        Ok(Vec::new())
    }
}
