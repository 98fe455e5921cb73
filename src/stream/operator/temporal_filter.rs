//! Temporal filter: conditions comparing a row with `now()` (`ts > now() - INTERVAL '1
//! hour'`). Each condition gives the row a time from which it shows (`enters`) or until
//! which it shows; a row shows while the barrier clock is in `[enter, leave)`.
//!
//! The clock is read when a barrier reaches the operator and stays fixed until the next
//! one, so every row of an epoch is judged at the same time. A row that shows now is
//! passed on; one that will show later waits in the state table under its enter time, and
//! one that shows now but will leave is kept under its leave time. At each barrier the
//! rows due by the new time are read by one range scan per kind and moved: waiting rows
//! enter (or skip straight past, when they would leave by then too), shown rows leave.
//! A row that can never show again (its leave time passed) is not kept: state holds only
//! rows that will still change the output. A deletion is judged the same way, so it
//! retracts the row where it is (shown, or waiting).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, UInt32Array};
use datafusion::arrow::compute::{cast, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef};

use super::{Operator, OperatorContext, evaluate};
use crate::common::Result;
use crate::common::row::RowCodec;
use crate::plan::TemporalCondition;
use crate::state::{Epoch, StateTable, TableId, WriteBatch};
use crate::stream::message::{Chunk, Op};

/// The barrier clock: microseconds since the Unix epoch, UTC.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The wall clock.
pub fn wall_clock() -> Clock {
    Arc::new(|| chrono::Utc::now().timestamp_micros())
}

/// State key prefix of rows waiting to enter (by enter time).
const WAITING: u8 = 1;
/// State key prefix of shown rows waiting to leave (by leave time).
const SHOWN: u8 = 2;

pub struct TemporalFilterOperator {
    conditions: Vec<TemporalCondition>,
    rows: RowCodec,
    stream_key: Vec<usize>,
    stream_key_codec: Option<RowCodec>,
    table: StateTable,
    clock: Clock,
    /// The time of the last barrier (read on first use before any).
    now: Option<i64>,
    schema: SchemaRef,
}

/// When a row shows: from `enter` (inclusive) until `leave` (exclusive).
#[derive(Clone, Copy)]
struct Span {
    enter: i64,
    leave: i64,
}

impl Span {
    fn shows_at(self, now: i64) -> bool {
        self.enter <= now && now < self.leave
    }
}

impl TemporalFilterOperator {
    pub fn new(
        conditions: Vec<TemporalCondition>,
        stream_key: Vec<usize>,
        table: TableId,
        schema: SchemaRef,
        clock: Clock,
    ) -> Result<Self> {
        let types: Vec<DataType> = schema.fields().iter().map(|f| f.data_type().clone()).collect();
        let key_types: Vec<DataType> = stream_key.iter().map(|&i| types[i].clone()).collect();
        Ok(TemporalFilterOperator {
            conditions,
            rows: RowCodec::new(&types)?,
            stream_key_codec: if key_types.is_empty() { None } else { Some(RowCodec::new(&key_types)?) },
            stream_key,
            table: StateTable::new(table),
            clock,
            now: None,
            schema,
        })
    }

    fn now(&mut self) -> i64 {
        *self.now.get_or_insert_with(|| (self.clock)())
    }

    /// Each row's span (None: a condition is NULL, so the row never shows).
    fn spans(&self, ctx: &OperatorContext, chunk: &Chunk) -> Result<Vec<Option<Span>>> {
        let mut spans = vec![Some(Span { enter: i64::MIN, leave: i64::MAX }); chunk.len()];
        for condition in &self.conditions {
            let times = evaluate(&condition.time, &chunk.data, ctx)?;
            let times = cast(&times, &DataType::Int64)?;
            let times = times.as_primitive::<Int64Type>();
            for (row, span) in spans.iter_mut().enumerate() {
                let Some(s) = span else { continue };
                if times.is_null(row) {
                    *span = None;
                    continue;
                }
                let time = times.value(row);
                match (condition.enters, condition.inclusive) {
                    (true, true) => s.enter = s.enter.max(time),
                    (true, false) => s.enter = s.enter.max(time.saturating_add(1)),
                    (false, true) => s.leave = s.leave.min(time.saturating_add(1)),
                    (false, false) => s.leave = s.leave.min(time),
                }
            }
        }
        Ok(spans)
    }

    fn key(kind: u8, time: i64, stream_key: &[u8]) -> Vec<u8> {
        let mut key = Vec::with_capacity(9 + stream_key.len());
        key.push(kind);
        key.extend_from_slice(&((time as u64) ^ (1 << 63)).to_be_bytes());
        key.extend_from_slice(stream_key);
        key
    }

    /// The end of the keys of `kind` due by `now` (time <= now).
    fn due_end(kind: u8, now: i64) -> Vec<u8> {
        match now.checked_add(1) {
            Some(next) => Self::key(kind, next, &[]),
            None => vec![kind + 1],
        }
    }

    /// Moves the rows due by `now`: waiting rows enter (unless they leave by then too),
    /// shown rows leave. Returns the output chunk's ops and encoded rows.
    fn move_due(&mut self, ctx: &OperatorContext, now: i64) -> Result<(Vec<Op>, Vec<Vec<u8>>)> {
        let mut due: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let collect = |kind: u8, due: &mut Vec<(Vec<u8>, Vec<u8>)>| {
            self.table.scan_range(
                ctx.snapshot.as_ref(),
                &[kind],
                Some(&Self::due_end(kind, now)),
                &mut |k, v| {
                    due.push((k.to_vec(), v.to_vec()));
                    Ok(true)
                },
            )
        };
        collect(WAITING, &mut due)?;
        let waiting = due.len();
        collect(SHOWN, &mut due)?;
        let (mut ops, mut rows) = (Vec::new(), Vec::new());
        for (i, (key, value)) in due.into_iter().enumerate() {
            self.table.delete(key.clone());
            if value.len() < 8 {
                return Err(crate::state::StateError::Corrupt("a temporal filter row".into()).into());
            }
            let leave = i64::from_be_bytes(value[..8].try_into().expect("eight bytes"));
            let row = value[8..].to_vec();
            if i < waiting {
                // It enters now; it stays only if it has not left by now too.
                if now < leave {
                    if leave != i64::MAX {
                        let stream_key = &key[9..];
                        self.table.put(Self::key(SHOWN, leave, stream_key), value.clone());
                    }
                    ops.push(Op::Insert);
                    rows.push(row);
                }
            } else {
                ops.push(Op::Delete);
                rows.push(row);
            }
        }
        Ok((ops, rows))
    }
}

impl Operator for TemporalFilterOperator {
    fn name(&self) -> &'static str {
        "TemporalFilter"
    }

    fn state_tables(&self) -> Vec<TableId> {
        vec![self.table.table_id()]
    }

    fn on_chunk(&mut self, ctx: &OperatorContext, _input: usize, chunk: Chunk) -> Result<Vec<Chunk>> {
        let now = self.now();
        let spans = self.spans(ctx, &chunk)?;
        let encoded = self.rows.encode(chunk.data.columns())?;
        let key_columns: Vec<ArrayRef> =
            self.stream_key.iter().map(|&i| chunk.data.column(i).clone()).collect();
        let stream_keys = match &self.stream_key_codec {
            Some(codec) => Some(codec.encode(&key_columns)?),
            None => None,
        };
        let (mut ops, mut indices) = (Vec::new(), Vec::new());
        for (i, span) in spans.into_iter().enumerate() {
            let Some(span) = span.filter(|s| s.enter < s.leave) else { continue };
            let insert = Chunk::is_insert(chunk.ops[i]);
            let stream_key = stream_keys.as_ref().map_or(&[][..], |k| k.row(i).data());
            let kept = if span.shows_at(now) {
                ops.push(if insert { Op::Insert } else { Op::Delete });
                indices.push(i as u32);
                (span.leave != i64::MAX).then(|| Self::key(SHOWN, span.leave, stream_key))
            } else if now < span.enter {
                Some(Self::key(WAITING, span.enter, stream_key))
            } else {
                // It has left for good.
                None
            };
            if let Some(key) = kept {
                if insert {
                    let mut value = span.leave.to_be_bytes().to_vec();
                    value.extend_from_slice(encoded.row(i).data());
                    self.table.put(key, value);
                } else {
                    self.table.delete(key);
                }
            }
        }
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let data = take_record_batch(&chunk.data, &UInt32Array::from(indices))?;
        Ok(vec![Chunk::new(ops, data)])
    }

    fn on_barrier(&mut self, ctx: &OperatorContext, _epoch: Epoch) -> Result<Vec<Chunk>> {
        // The clock never goes back.
        let now = (self.clock)().max(self.now.unwrap_or(i64::MIN));
        self.now = Some(now);
        let (ops, rows) = self.move_due(ctx, now)?;
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let columns = self.rows.decode(rows.iter().map(Vec::as_slice))?;
        let data = datafusion::arrow::array::RecordBatch::try_new(self.schema.clone(), columns)?;
        Ok(vec![Chunk::new(ops, data)])
    }

    fn checkpoint(&mut self, batch: &mut WriteBatch) {
        self.table.seal_into(batch);
    }

    fn committed(&mut self) {
        self.table.committed();
    }
}

#[cfg(test)]
mod tests;
