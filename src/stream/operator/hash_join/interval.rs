//! An interval join: a join whose residual bounds the time of one side by the other's
//! (`b.ts BETWEEN a.ts AND a.ts + INTERVAL '10' SECOND`, Nexmark's `B.date_time BETWEEN
//! A.date_time AND A.expires`), over watermarked inputs.
//!
//! Each bound (`plan::IntervalBound`) is a condition `other <= expiry` (or `<`) where
//! `other` is a monotone function of the other side's watermarked column. When that
//! watermark reaches `W`, no later row of the other side has `other` below `other(W)`: a
//! row with `expiry < other(W)` can never match again and is freed. Each freed side keeps
//! an index of its rows by expiry — `(instance, expiry, join key, stream key)`, the
//! instance first because parallel instances share the table but own different keys — and
//! at each barrier frees the index range behind the bound, row by row from the side's
//! buckets. A row whose expiry is behind the bound when it arrives is joined with what the
//! other side keeps and not stored; a row whose expiry is NULL fails the condition with
//! every partner and is not stored either.
//!
//! A row behind its *own* side's watermark, where that watermark frees the other side, is
//! late (its partners may be gone): it is not applied but kept in
//! `sabot_catalog.dead_letters`. Each instance records those watermarks in the index table
//! under [`late_key`], so a restarted join knows which rows are late.
//!
//! Outer joins keep their usual form: a preserved row shows NULL-padded until its first
//! match; once freed, it can never match, so its padded row is final.

use std::sync::Arc;

use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::Rows;
use datafusion::common::ScalarValue;
use datafusion::physical_expr::PhysicalExpr;

use crate::common::Result;
use crate::common::row::RowCodec;
use crate::plan::{IntervalBound, JoinWatermark};
use crate::state::{Epoch, Snapshot, StateError, StateTable, WriteBatch, prefix_end};
use crate::stream::message::{Chunk, Message};
use crate::stream::operator::late::{LateRows, decode_bound, encode_bound};
use crate::stream::operator::{OperatorContext, evaluate_one_row};

/// The index table key under which instance `instance` records side `side`'s watermark.
/// No index key starts with 0xff: they start with the instance (below 0xff00).
fn late_key(instance: u16, side: usize) -> Vec<u8> {
    let mut key = b"\xff\xfflate".to_vec();
    key.extend_from_slice(&instance.to_be_bytes());
    key.push(side as u8);
    key
}

/// One side's bound: its rows by expiry, and how far they are freed.
struct SideBound {
    side: usize,
    expiry: Arc<dyn PhysicalExpr>,
    other_column: usize,
    other: Arc<dyn PhysicalExpr>,
    /// The other input's schema (the watermark is evaluated over one row of it).
    other_schema: SchemaRef,
    strict: bool,
    data_type: DataType,
    /// Encodes an expiry value (order-preserving).
    codec: RowCodec,
    index: StateTable,
    /// Index keys (after the instance) below this are to be freed at the next barrier...
    free_end: Option<Vec<u8>>,
    /// ... and below this they are freed.
    freed: Vec<u8>,
}

/// A side whose watermark frees the other side's rows: its late rows.
struct SideLate {
    late: LateRows,
    codec: RowCodec,
    /// Where the watermark is recorded (the index of the side it frees).
    table: crate::state::TableId,
    /// The watermark to record at the checkpoint (when it moved).
    record: Option<Vec<u8>>,
}

/// An output column that carries a side's watermark held back by the other side's (see
/// `plan::HeldBack`): the smaller of the two, passed on when it rises.
struct HeldWatermark {
    side: usize,
    column: usize,
    output: usize,
    other_column: usize,
    lower: Arc<dyn PhysicalExpr>,
    data_type: DataType,
    own: Option<ScalarValue>,
    held: Option<ScalarValue>,
    passed: Option<ScalarValue>,
}

impl HeldWatermark {
    /// Side `side`'s watermark on `column` reached `value`: the output's, if it rose.
    fn advance(
        &mut self,
        schemas: &[SchemaRef; 2],
        side: usize,
        column: usize,
        value: &ScalarValue,
        view: &str,
    ) -> Result<Option<ScalarValue>> {
        let rises = |old: &Option<ScalarValue>, new: &ScalarValue| old.as_ref().is_none_or(|o| o < new);
        if side == self.side && column == self.column && rises(&self.own, value) {
            self.own = Some(value.clone());
        } else if side != self.side && column == self.other_column {
            let lower = evaluate_one_row(&self.lower, &schemas[side], Some((column, value)), view)?;
            let lower = lower.cast_to(&self.data_type)?;
            if lower.is_null() || !rises(&self.held, &lower) {
                return Ok(None);
            }
            self.held = Some(lower);
        } else {
            return Ok(None);
        }
        let (Some(own), Some(held)) = (&self.own, &self.held) else { return Ok(None) };
        let minimum = if own < held { own } else { held };
        if !rises(&self.passed, minimum) {
            return Ok(None);
        }
        self.passed = Some(minimum.clone());
        Ok(self.passed.clone())
    }
}

pub struct IntervalClosing {
    bounds: Vec<SideBound>,
    late: [Option<SideLate>; 2],
    /// Each input's full schema.
    schemas: [SchemaRef; 2],
    watermarks: Vec<HeldWatermark>,
    /// This instance (known once the first context is seen).
    instance: Option<u16>,
}

/// A row to free: its side, join key and stream key.
pub struct Due {
    pub side: usize,
    pub join_key: Vec<u8>,
    pub stream_key: Vec<u8>,
}

/// A chunk after the late rows left it: which rows to store, and each row's encoded
/// expiry (when its side is freed by a bound).
pub struct Admitted {
    pub chunk: Chunk,
    pub store: Option<Vec<bool>>,
    pub expiry: Option<Rows>,
}

impl IntervalClosing {
    /// `schemas`: each input's full schema.
    pub fn new(bounds: &[IntervalBound], schemas: [SchemaRef; 2]) -> Result<Self> {
        let mut late: [Option<SideLate>; 2] = [None, None];
        let mut sides = Vec::with_capacity(bounds.len());
        for bound in bounds {
            let other = 1 - bound.side;
            let other_type = schemas[other].field(bound.other_column).data_type().clone();
            late[other] = Some(SideLate {
                late: LateRows::new(bound.other_column, other_type.clone()),
                codec: RowCodec::new(std::slice::from_ref(&other_type))?,
                table: bound.index_table,
                record: None,
            });
            sides.push(SideBound {
                side: bound.side,
                expiry: bound.expiry.clone(),
                other_column: bound.other_column,
                other: bound.other.clone(),
                other_schema: schemas[other].clone(),
                strict: bound.strict,
                data_type: bound.data_type.clone(),
                codec: RowCodec::new(std::slice::from_ref(&bound.data_type))?,
                index: StateTable::new(bound.index_table),
                free_end: None,
                freed: Vec::new(),
            });
        }
        Ok(IntervalClosing { bounds: sides, late, schemas, watermarks: Vec::new(), instance: None })
    }

    /// The output carries `watermarks`, each at output column `outputs[i]`.
    pub fn with_watermarks(mut self, watermarks: &[JoinWatermark], outputs: &[usize]) -> Result<Self> {
        for (mark, &output) in watermarks.iter().zip(outputs) {
            let Some(held) = &mark.held_back else {
                return Err(crate::common::Error::internal(
                    "an interval join's watermark that is not held back",
                ));
            };
            self.watermarks.push(HeldWatermark {
                side: mark.side,
                column: mark.column,
                output,
                other_column: held.other_column,
                lower: held.lower.clone(),
                data_type: self.schemas[mark.side].field(mark.column).data_type().clone(),
                own: None,
                held: None,
                passed: None,
            });
        }
        Ok(self)
    }

    /// Rows of `side` behind its own watermark on `column` are late too (an as-of join
    /// frees the other side's versions by it); recorded in the first bound's index.
    pub fn late_behind_own_watermark(
        &mut self,
        side: usize,
        column: usize,
        data_type: DataType,
    ) -> Result<()> {
        let table = self.bounds.first().map(|b| b.index.table_id());
        let table =
            table.ok_or_else(|| crate::common::Error::internal("lateness without an interval bound"))?;
        self.late[side] = Some(SideLate {
            late: LateRows::new(column, data_type.clone()),
            codec: RowCodec::new(std::slice::from_ref(&data_type))?,
            table,
            record: None,
        });
        Ok(())
    }

    /// Side `side`'s watermark, where it makes rows late.
    pub fn watermark_of(&self, side: usize) -> Option<&ScalarValue> {
        self.late[side].as_ref()?.late.bound()
    }

    pub fn state_tables(&self) -> impl Iterator<Item = crate::state::TableId> + '_ {
        self.bounds.iter().map(|b| b.index.table_id())
    }

    /// Reads what a previous run of this instance recorded (once): each side's late bound.
    fn load(&mut self, snapshot: &dyn Snapshot, instance: usize) -> Result<u16> {
        if let Some(instance) = self.instance {
            return Ok(instance);
        }
        let id =
            u16::try_from(instance).map_err(|_| crate::common::Error::internal("too many join instances"))?;
        self.instance = Some(id);
        for (side, late) in self.late.iter_mut().enumerate() {
            let Some(late) = late else { continue };
            if let Some(recorded) = snapshot.get(late.table, &late_key(id, side))? {
                late.late.advance(&decode_bound(&late.codec, &recorded, "the watermark of a join side")?)?;
            }
        }
        Ok(id)
    }

    /// The rows of `chunk` (side `side`) that are not late, which of them to store, and
    /// their expiry.
    pub fn admit(
        &mut self,
        snapshot: &dyn Snapshot,
        instance: usize,
        side: usize,
        chunk: Chunk,
        view: &str,
    ) -> Result<Admitted> {
        self.load(snapshot, instance)?;
        let chunk = match &mut self.late[side] {
            Some(late) => late.late.split(chunk)?,
            None => chunk,
        };
        let Some(bound) = self.bounds.iter().find(|b| b.side == side) else {
            return Ok(Admitted { chunk, store: None, expiry: None });
        };
        let values = crate::stream::operator::evaluate_in(&bound.expiry, &chunk.data, view, None)?;
        let expiry = bound.codec.encode(std::slice::from_ref(&values))?;
        let behind = bound.free_end.as_ref().unwrap_or(&bound.freed);
        let store = (0..chunk.len()).map(|i| values.is_valid(i) && expiry.row(i).data() >= behind.as_slice());
        Ok(Admitted { store: Some(store.collect()), chunk, expiry: Some(expiry) })
    }

    /// Row `i` of an admitted chunk of side `side` was stored (`insert`) or removed under
    /// `join_key` and `stream_key`: its index entry follows.
    pub fn record(
        &mut self,
        side: usize,
        expiry: &Rows,
        i: usize,
        join_key: &[u8],
        stream_key: &[u8],
        insert: bool,
    ) {
        let (Some(instance), Some(bound)) = (self.instance, self.bounds.iter_mut().find(|b| b.side == side))
        else {
            return;
        };
        let key = [&instance.to_be_bytes()[..], expiry.row(i).data(), join_key, stream_key].concat();
        if insert {
            let mut value = (join_key.len() as u32).to_le_bytes().to_vec();
            value.extend_from_slice(join_key);
            value.extend_from_slice(stream_key);
            bound.index.put(key, value);
        } else {
            bound.index.delete(key);
        }
    }

    /// Side `side`'s watermark on `column` advanced to `value`: its late bound moves, and
    /// the bound of the rows it frees; returns the output's watermarks that rose.
    pub fn watermark(
        &mut self,
        snapshot: &dyn Snapshot,
        instance: usize,
        side: usize,
        column: usize,
        value: &ScalarValue,
        view: &str,
    ) -> Result<Vec<Message>> {
        self.load(snapshot, instance)?;
        if let Some(late) = &mut self.late[side]
            && late.late.column() == column
            && late.late.advance(value)?
        {
            let bound = late.late.bound().expect("it just advanced");
            late.record = Some(encode_bound(&late.codec, bound)?);
        }
        for bound in self.bounds.iter_mut().filter(|b| b.side != side && b.other_column == column) {
            let other = evaluate_one_row(&bound.other, &bound.other_schema, Some((column, value)), view)?;
            if other.is_null() {
                continue;
            }
            let encoded = encode_bound(&bound.codec, &other.cast_to(&bound.data_type)?)?;
            // `other <= expiry` fails for good once expiry < other(W); `other < expiry`
            // once expiry <= other(W).
            let end = if bound.strict { prefix_end(&encoded).unwrap_or(encoded) } else { encoded };
            if bound.free_end.as_ref().is_none_or(|e| *e < end) && end > bound.freed {
                bound.free_end = Some(end);
            }
        }
        let mut out = Vec::new();
        for mark in &mut self.watermarks {
            if let Some(value) = mark.advance(&self.schemas, side, column, value, view)? {
                out.push(Message::Watermark { column: mark.output, value });
            }
        }
        Ok(out)
    }

    /// Takes out of the indexes every row due to be freed.
    pub fn due(&mut self, snapshot: &dyn Snapshot) -> Result<Vec<Due>> {
        let Some(instance) = self.instance else { return Ok(Vec::new()) };
        let prefix = instance.to_be_bytes();
        let mut due = Vec::new();
        for bound in &mut self.bounds {
            let Some(end) = bound.free_end.take() else { continue };
            let start = [&prefix[..], &bound.freed].concat();
            let stop = [&prefix[..], &end].concat();
            let mut keys = Vec::new();
            let mut corrupt = false;
            bound.index.scan_range(snapshot, &start, Some(&stop), &mut |key, value| {
                match split_value(value) {
                    Some((join_key, stream_key)) => {
                        keys.push(key.to_vec());
                        due.push(Due {
                            side: bound.side,
                            join_key: join_key.to_vec(),
                            stream_key: stream_key.to_vec(),
                        });
                    }
                    None => corrupt = true,
                }
                Ok(true)
            })?;
            if corrupt {
                return Err(StateError::Corrupt("an interval join's expiry index".into()).into());
            }
            for key in keys {
                bound.index.delete(key);
            }
            bound.freed = end;
        }
        Ok(due)
    }

    /// Turns the epoch's late rows into dead letters of `view`; `readers` names each side.
    pub fn report_late(&mut self, view: &str, readers: [&str; 2], epoch: Epoch) -> Result<()> {
        for (late, reader) in self.late.iter_mut().zip(readers) {
            if let Some(late) = late {
                late.late.report(view, reader, epoch)?;
            }
        }
        Ok(())
    }

    /// Writes the epoch's index changes, the watermarks that moved and the dead letters.
    pub fn checkpoint(&mut self, batch: &mut WriteBatch) {
        for bound in &mut self.bounds {
            bound.index.seal_into(batch);
        }
        let instance = self.instance.unwrap_or(0);
        for (side, late) in self.late.iter_mut().enumerate() {
            let Some(late) = late else { continue };
            if let Some(recorded) = late.record.take() {
                batch.put(late.table, &late_key(instance, side), recorded);
            }
            late.late.checkpoint(batch);
        }
    }

    pub fn committed(&mut self) {
        for bound in &mut self.bounds {
            bound.index.committed();
        }
    }
}

/// An index value: the join key and the stream key.
fn split_value(value: &[u8]) -> Option<(&[u8], &[u8])> {
    let length = u32::from_le_bytes(value.get(..4)?.try_into().ok()?) as usize;
    let rest = &value[4..];
    (rest.len() >= length).then(|| rest.split_at(length))
}

impl super::HashJoinOperator {
    /// A chunk of side `input` of an interval join: late rows leave, rows already behind
    /// their bound are not stored, and the stored rows' expiry index follows.
    pub(super) fn process_interval(
        &mut self,
        ctx: &OperatorContext,
        input: usize,
        chunk: Chunk,
    ) -> Result<Vec<Chunk>> {
        let mut interval = self.interval.take().expect("an interval join");
        let result = (|| {
            let admitted = interval.admit(ctx.snapshot.as_ref(), ctx.instance, input, chunk, &ctx.view)?;
            if admitted.chunk.is_empty() {
                return Ok(Vec::new());
            }
            let store = admitted.store.as_deref();
            let (out, encoded) = self.process_chunk(ctx, input, &admitted.chunk, store)?;
            if let Some(expiry) = &admitted.expiry {
                for (i, op) in admitted.chunk.ops.iter().enumerate() {
                    if let Some(key) = encoded.join_key(i)
                        && store.is_none_or(|s| s[i])
                    {
                        interval.record(input, expiry, i, key, encoded.stream_key(i), Chunk::is_insert(*op));
                    }
                }
            }
            Ok(out)
        })();
        self.interval = Some(interval);
        result
    }
}
