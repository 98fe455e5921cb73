//! Over windows: window functions (`f(...) OVER (PARTITION BY ... ORDER BY ... frame)`)
//! maintained incrementally.
//!
//! Every input row is kept in a state table keyed by (partition, order key, stream key);
//! a partition is held in memory as its rows in that order ([`CachedTable`], loaded by one
//! prefix scan, evicted whole). For each partition a chunk touches, the operator finds the
//! rows whose values the chunk's changes can affect ([`frames::Rows::affected`]: later
//! rows for ranks, the rows whose frame meets a change for framed calls), computes the
//! calls for those rows before and after applying the changes — decoding only the rows
//! their frames read — and emits the difference: rows that left are deleted, rows that
//! came are inserted, rows whose values changed are updated. Rows elsewhere in the
//! partition are not recomputed. Outputs are not stored: the rows are.
//!
//! Stored value: order key length (u32), whether the RANGE value is set (u8), the RANGE
//! value (i64), then the encoded input row.

mod closing;
mod eval;
mod frames;
#[cfg(test)]
mod tests;

use std::ops::Range;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::ScalarValue;

use self::closing::Base;
use self::eval::Prior;
use self::frames::{Row, Rows};
use super::{Operator, OperatorContext};
use crate::common::Result;
use crate::common::row::RowCodec;
use crate::plan::{FrameBound, OverWindowNode};
use crate::state::{CacheValue, CachedTable, Epoch, RowsValue, StateMemory, TableId, WriteBatch};
use crate::stream::message::{Chunk, Message, Op};

pub struct OverWindowOperator {
    node: OverWindowNode,
    /// Input columns shown before the calls' columns.
    visible: usize,
    /// Encodes the ORDER BY columns in sort order (None without ORDER BY).
    order: Option<RowConverter>,
    partition_codec: Option<RowCodec>,
    key_codec: Option<RowCodec>,
    rows: RowCodec,
    outputs: RowCodec,
    stream_key: Vec<usize>,
    /// Some call has a RANGE frame with an offset: rows keep their ORDER BY value.
    range_values: bool,
    partitions: CachedTable<Partition>,
    schema: SchemaRef,
    input_types: Vec<DataType>,
    /// EMIT ON WINDOW CLOSE, or the freeing of closed sessions.
    closing: Option<closing::Closer>,
}

/// A partition's rows in key order.
#[derive(Default)]
pub struct Partition {
    /// Under EMIT ON WINDOW CLOSE: what the partition keeps of the rows it freed and how
    /// many it emitted (stored under the partition key itself).
    base: Option<Base>,
    base_changed: bool,
    rows: Vec<Row>,
    /// Keys of rows inserted or deleted since the last seal (maybe repeated).
    changed: Vec<Box<[u8]>>,
    bytes: usize,
}

/// Bytes a row costs beyond its key's and row's bytes, roughly.
const ROW_BYTES: usize = 48;
const HEADER: usize = 13;

impl Partition {
    fn row_bytes(row: &Row) -> usize {
        ROW_BYTES + row.key.len() + row.row.len()
    }

    fn put(&mut self, row: Row) {
        self.bytes += row.key.len();
        self.changed.push(row.key.clone());
        self.bytes += Self::row_bytes(&row);
        let at = Rows(&self.rows).position(&row.key);
        match self.rows.get(at).is_some_and(|r| r.key == row.key) {
            true => {
                self.bytes -= Self::row_bytes(&self.rows[at]);
                self.rows[at] = row;
            }
            false => self.rows.insert(at, row),
        }
    }

    /// Drops the first `n` rows (deleted from the state table at the seal).
    fn free_first(&mut self, n: usize) {
        for row in self.rows.drain(..n) {
            self.bytes -= Self::row_bytes(&row);
            self.bytes += row.key.len();
            self.changed.push(row.key);
        }
    }

    fn delete(&mut self, key: &[u8]) {
        let at = Rows(&self.rows).position(key);
        if self.rows.get(at).is_some_and(|r| &*r.key == key) {
            let row = self.rows.remove(at);
            self.bytes -= Self::row_bytes(&row);
            self.bytes += key.len();
            self.changed.push(key.into());
        }
    }
}

impl CacheValue for Partition {
    fn heap_bytes(&self) -> usize {
        self.bytes + (self.rows.capacity() + self.changed.capacity()) * std::mem::size_of::<Row>()
    }
}

impl RowsValue for Partition {
    fn empty() -> Self {
        Partition::default()
    }

    fn load_row(&mut self, suffix: &[u8], value: &[u8]) -> Result<bool> {
        if suffix.is_empty() {
            self.base = Some(Base::decode(value)?);
            return Ok(true);
        }
        if closing::is_marker(suffix) {
            // The whole table's markers, read with the one partition of a window without
            // PARTITION BY.
            return Ok(true);
        }
        if value.len() < HEADER {
            return Err(crate::common::Error::internal("over-window row without its header"));
        }
        let order_len = u32::from_le_bytes(value[0..4].try_into().expect("4 bytes"));
        let t = (value[4] == 1).then(|| i64::from_le_bytes(value[5..13].try_into().expect("8 bytes")));
        let row = Row { key: suffix.into(), order_len, t, row: value[HEADER..].into() };
        self.bytes += Self::row_bytes(&row);
        self.rows.push(row);
        Ok(true)
    }

    fn seal_rows(&mut self, write: &mut crate::state::RowWriter<'_>) {
        if std::mem::take(&mut self.base_changed) {
            write(&[], self.base.as_ref().map(Base::encode));
        }
        self.bytes -= self.changed.iter().map(|k| k.len()).sum::<usize>();
        for key in &crate::state::take_changed(&mut self.changed) {
            let rows = Rows(&self.rows);
            let at = rows.position(key);
            match self.rows.get(at).filter(|r| r.key == *key) {
                Some(row) => {
                    let mut value = Vec::with_capacity(HEADER + row.row.len());
                    value.extend_from_slice(&row.order_len.to_le_bytes());
                    value.push(row.t.is_some() as u8);
                    value.extend_from_slice(&row.t.unwrap_or(0).to_le_bytes());
                    value.extend_from_slice(&row.row);
                    write(key, Some(value));
                }
                None => write(key, None),
            }
        }
    }
}

/// The calls' values for some of a partition's rows, in key order: (key, row, values).
type Computed = Vec<(Box<[u8]>, Box<[u8]>, Box<[u8]>)>;

impl OverWindowOperator {
    pub fn new(
        node: &OverWindowNode,
        input_types: &[DataType],
        visible: usize,
        stream_key: Vec<usize>,
        schema: SchemaRef,
        memory: StateMemory,
    ) -> Result<Self> {
        let order = if node.order_by.is_empty() {
            None
        } else {
            let fields = node
                .order_by
                .iter()
                .map(|(i, o)| SortField::new_with_options(input_types[*i].clone(), *o))
                .collect();
            Some(RowConverter::new(fields)?)
        };
        let codec = |columns: &[usize]| -> Result<Option<RowCodec>> {
            let types: Vec<DataType> = columns.iter().map(|&i| input_types[i].clone()).collect();
            if types.is_empty() { Ok(None) } else { Ok(Some(RowCodec::new(&types)?)) }
        };
        let output_types: Vec<DataType> = node.calls.iter().map(|c| c.output_type.clone()).collect();
        let range_values = node.emit_on_close
            || node.calls.iter().any(|c| matches!(c.kind, crate::plan::WindowKind::Session { .. }))
            || node.calls.iter().any(|c| {
                !c.frame.rows
                    && [c.frame.start, c.frame.end]
                        .iter()
                        .any(|b| matches!(b, FrameBound::Offset(k) if *k != 0))
            });
        // Under EMIT ON WINDOW CLOSE rows are emitted when final; SESSION windows free
        // the sessions the watermark has passed while emitting as rows change.
        let closing = match node.emit_on_close || node.session_gap().is_some() {
            false => None,
            true => {
                let column = node.order_by[0].0;
                let output = node.watermark_output(visible);
                let mut closer = closing::Closer::new(column, input_types[column].clone(), output)?;
                closer.emits = node.emit_on_close;
                closer.sessions = node.session_gap().is_some();
                Some(closer)
            }
        };
        Ok(OverWindowOperator {
            order,
            partition_codec: codec(&node.partition_by)?,
            key_codec: codec(&stream_key)?,
            rows: RowCodec::new(input_types)?,
            outputs: RowCodec::new(&output_types)?,
            partitions: CachedTable::new(node.table, memory),
            range_values,
            node: node.clone(),
            visible,
            stream_key,
            schema,
            input_types: input_types.to_vec(),
            closing,
        })
    }

    /// The ORDER BY value of each row for RANGE offsets, in sort order.
    fn range_values(&self, chunk: &Chunk) -> Result<Option<Vec<Option<i64>>>> {
        if !self.range_values {
            return Ok(None);
        }
        let (column, options) = self.node.order_by[0];
        let values = closing::as_i64(chunk.data.column(column))?;
        Ok(Some(match options.descending {
            true => values.into_iter().map(|v| v.map(i64::saturating_neg)).collect(),
            false => values,
        }))
    }

    /// The calls' values for the rows of `range`, decoding the rows they read.
    fn compute(&self, rows: &Rows<'_>, base: Option<&Base>, range: Range<usize>) -> Result<Computed> {
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let reads: Vec<Range<usize>> = self.node.calls.iter().map(|c| rows.reads(c, &range)).collect();
        let span = reads
            .iter()
            .filter(|r| !r.is_empty())
            .fold(None, |acc: Option<Range<usize>>, r| match acc {
                None => Some(r.clone()),
                Some(a) => Some(a.start.min(r.start)..a.end.max(r.end)),
            })
            .unwrap_or(0..0);
        let decoded = if span.is_empty() {
            None
        } else {
            Some(self.rows.decode(rows.0[span.clone()].iter().map(|r| &*r.row))?)
        };
        let mut outputs = Vec::with_capacity(self.node.calls.len());
        for (i, call) in self.node.calls.iter().enumerate() {
            let arg = match (call.input, &decoded) {
                (Some(column), Some(columns)) => Some(&columns[column]),
                _ => None,
            };
            let prior = base.map_or_else(Prior::default, |b| Prior {
                count: b.count,
                dense: b.dense,
                summary: b.summaries.get(i).filter(|_| call.reads_from_start()),
            });
            // A frame from the partition's start reads its argument even when the rows
            // it reads in memory are none (the freed rows' summary stands for them).
            let empty;
            let arg = match (arg, call.input) {
                (None, Some(column)) => {
                    empty = datafusion::arrow::array::new_empty_array(&self.input_types[column]);
                    Some(&empty)
                }
                (arg, _) => arg,
            };
            outputs.push(eval::evaluate(rows, call, range.clone(), arg, span.start, prior)?);
        }
        let entry = |i: usize, values: &[u8]| (rows.0[i].key.clone(), rows.0[i].row.clone(), values.into());
        if outputs.is_empty() {
            // No calls (an EOWC sort): the rows alone.
            return Ok(range.map(|i| entry(i, &[])).collect());
        }
        let encoded = self.outputs.encode(&outputs)?;
        Ok(range.zip(encoded.iter()).map(|(i, values)| entry(i, values.data())).collect())
    }

    /// The keys of the rows whose values `changes` (keys, order key lengths, chunk rows)
    /// can change, from the positions they have or take in `rows`.
    fn affected(&self, rows: &Rows<'_>, changes: &[(Box<[u8]>, u32, usize)]) -> KeyRange {
        // Each change shifts later positions by one, in either state.
        let margin = 2 * changes.len() + 1;
        let mut affected: Option<Range<usize>> = None;
        for (key, _, _) in changes {
            let at = rows.position(key);
            let zone = at.saturating_sub(margin)..(at + margin).min(rows.len());
            for call in &self.node.calls {
                let r = rows.affected(call, zone.clone());
                affected = Some(match affected {
                    None => r,
                    Some(a) => a.start.min(r.start)..a.end.max(r.end),
                });
            }
            // The changed row itself (or where it goes).
            let own = at..(at + 1).min(rows.len());
            affected = affected.map(|a| a.start.min(own.start)..a.end.max(own.end)).or(Some(own));
        }
        let affected = affected.unwrap_or(0..0);
        KeyRange {
            after: affected.start.checked_sub(1).map(|i| rows.0[i].key.clone()),
            before: rows.0.get(affected.end).map(|r| r.key.clone()),
        }
    }

    fn build(&self, ops: Vec<Op>, rows: Vec<Box<[u8]>>, values: Vec<Box<[u8]>>) -> Result<Vec<Chunk>> {
        let outputs =
            if ops.is_empty() { Vec::new() } else { self.outputs.decode(values.iter().map(|r| &**r))? };
        super::rows_with_columns(&self.schema, &self.rows, self.visible, ops, &rows, outputs)
    }
}

/// Keys strictly between `after` and `before` (None: unbounded on that side).
struct KeyRange {
    after: Option<Box<[u8]>>,
    before: Option<Box<[u8]>>,
}

impl KeyRange {
    /// The positions of the rows of `rows` within the range.
    fn positions(&self, rows: &Rows<'_>) -> Range<usize> {
        let start = match &self.after {
            None => 0,
            Some(key) => rows.0.partition_point(|r| r.key <= *key),
        };
        let end = match &self.before {
            None => rows.len(),
            Some(key) => rows.position(key),
        };
        start..end.max(start)
    }
}

impl Operator for OverWindowOperator {
    fn name(&self) -> &'static str {
        "OverWindow"
    }

    fn state_tables(&self) -> Vec<TableId> {
        vec![self.node.table]
    }

    fn on_chunk(&mut self, ctx: &OperatorContext, _input: usize, chunk: Chunk) -> Result<Vec<Chunk>> {
        let chunk = match &mut self.closing {
            Some(closer) => {
                closer.load(self.partitions.table(), ctx, self.partition_codec.as_ref())?;
                closer.late.split(chunk)?
            }
            None => chunk,
        };
        let n = chunk.len();
        let columns: Vec<ArrayRef> =
            self.node.partition_by.iter().map(|&i| chunk.data.column(i).clone()).collect();
        let partitions = super::materialize::encode_keys(self.partition_codec.as_ref(), &columns, n)?;
        let orders = match &self.order {
            None => None,
            Some(converter) => {
                let columns: Vec<ArrayRef> =
                    self.node.order_by.iter().map(|(i, _)| chunk.data.column(*i).clone()).collect();
                Some(converter.convert_columns(&columns)?)
            }
        };
        let columns: Vec<ArrayRef> = self.stream_key.iter().map(|&i| chunk.data.column(i).clone()).collect();
        let stream_keys = super::materialize::encode_keys(self.key_codec.as_ref(), &columns, n)?;
        let encoded = self.rows.encode(chunk.data.columns())?;
        let values = self.range_values(&chunk)?;
        let snapshot = ctx.snapshot.as_ref();

        let (mut deletes, mut updates, mut inserts) = (Vec::new(), Vec::new(), Vec::new());
        for (partition, members) in super::rows_by_key(&partitions) {
            let slot = self.partitions.rows_slot(snapshot, partition)?;
            let closing = self.closing.as_ref().is_some_and(|c| c.emits);
            let changes: Vec<(Box<[u8]>, u32, usize)> = members
                .iter()
                .map(|&i| {
                    let order: &[u8] = orders.as_ref().map_or(&[], |o| o.row(i).data());
                    ([order, stream_keys[i].as_slice()].concat().into_boxed_slice(), order.len() as u32, i)
                })
                .collect();
            if let Some(closer) = &mut self.closing
                && !closer.waiting.contains(partition)
            {
                closer.waiting.insert(partition.into());
                self.partitions.table_mut().put(closing::pending_key(partition), Vec::new());
            }
            // The rows the changes can affect, as keys (positions move as rows come and go).
            let range = match closing {
                true => None,
                false => {
                    let part = self.partitions.get(slot).expect("a loaded partition");
                    Some(self.affected(&Rows(&part.rows), &changes))
                }
            };
            // Under EMIT ON WINDOW CLOSE rows show when final (at a barrier), not as they
            // change.
            let before = match &range {
                None => Vec::new(),
                Some(range) => {
                    let part = self.partitions.get(slot).expect("a loaded partition");
                    let rows = Rows(&part.rows);
                    self.compute(&rows, None, range.positions(&rows))?
                }
            };
            let part = self.partitions.change(slot);
            for (key, order_len, i) in changes {
                match Chunk::is_insert(chunk.ops[i]) {
                    true => part.put(Row {
                        key,
                        order_len,
                        t: values.as_ref().and_then(|v| v[i]),
                        row: encoded.row(i).data().into(),
                    }),
                    false => part.delete(&key),
                }
            }
            self.partitions.recharge(slot);
            let after = match &range {
                None => Vec::new(),
                Some(range) => {
                    let part = self.partitions.get(slot).expect("a loaded partition");
                    let rows = Rows(&part.rows);
                    self.compute(&rows, None, range.positions(&rows))?
                }
            };
            diff(before, after, &mut deletes, &mut updates, &mut inserts);
        }
        // A row whose partition or order changed leaves under one key and comes back
        // under another.
        let (ops, rows, values) = super::changes_in_order(deletes, updates, inserts);
        self.build(ops, rows, values)
    }

    fn on_watermark(
        &mut self,
        ctx: &OperatorContext,
        _input: usize,
        column: usize,
        value: &ScalarValue,
    ) -> Result<Vec<Message>> {
        if let Some(closer) = &mut self.closing
            && column == closer.late.column()
        {
            closer.load(self.partitions.table(), ctx, self.partition_codec.as_ref())?;
            if closer.late.advance(value)? {
                closer.due = true;
                // Sessions: rows behind the watermark are late from now on, so every
                // later change is to a session ending beyond it; the output carries it at
                // once (what closes is only freed at the barrier).
                if let (false, Some((column, value))) = (closer.emits, closer.output_watermark()) {
                    return Ok(vec![Message::Watermark { column, value }]);
                }
            }
        }
        Ok(Vec::new())
    }

    fn on_barrier(&mut self, ctx: &OperatorContext, epoch: Epoch) -> Result<Vec<Chunk>> {
        if self.closing.is_none() {
            return Ok(Vec::new());
        }
        let out = self.close(ctx)?;
        let reader = format!("{} {} #{}", self.name(), self.node.table, ctx.instance);
        let closer = self.closing.as_mut().expect("checked above");
        closer.late.report(&ctx.view, &reader, epoch)?;
        Ok(out)
    }

    fn watermarks_after_barrier(&mut self) -> Vec<Message> {
        self.closing.as_mut().map_or_else(Vec::new, |c| c.held.release())
    }

    fn checkpoint(&mut self, batch: &mut WriteBatch) {
        self.partitions.seal_rows_into(batch);
        if let Some(closer) = &mut self.closing {
            closer.late.checkpoint(batch);
        }
    }

    fn committed(&mut self) {
        self.partitions.committed();
        self.partitions.evict_if_over_budget();
    }
}

/// A row as shown: encoded input row and encoded values.
type Shown = (Box<[u8]>, Box<[u8]>);
/// An updated row: its old and new input rows and values.
type Updated = (Box<[u8]>, Box<[u8]>, Box<[u8]>, Box<[u8]>);

/// The changes from `before` to `after` (both in key order).
fn diff(
    before: Computed,
    after: Computed,
    deletes: &mut Vec<Shown>,
    updates: &mut Vec<Updated>,
    inserts: &mut Vec<Shown>,
) {
    let mut before = before.into_iter().peekable();
    let mut after = after.into_iter().peekable();
    loop {
        match (before.peek(), after.peek()) {
            (None, None) => break,
            (Some(_), None) => {
                let (_, row, value) = before.next().expect("peeked");
                deletes.push((row, value));
            }
            (None, Some(_)) => {
                let (_, row, value) = after.next().expect("peeked");
                inserts.push((row, value));
            }
            (Some(b), Some(a)) => match b.0.cmp(&a.0) {
                std::cmp::Ordering::Less => {
                    let (_, row, value) = before.next().expect("peeked");
                    deletes.push((row, value));
                }
                std::cmp::Ordering::Greater => {
                    let (_, row, value) = after.next().expect("peeked");
                    inserts.push((row, value));
                }
                std::cmp::Ordering::Equal => {
                    let (_, old_row, old) = before.next().expect("peeked");
                    let (_, new_row, new) = after.next().expect("peeked");
                    if old_row != new_row || old != new {
                        updates.push((old_row, old, new_row, new));
                    }
                }
            },
        }
    }
}
