//! Symmetric hash join: inner, left / right / full outer, semi and anti (also the
//! null-aware anti join of NOT IN), with non-equi conditions as a residual filter.
//!
//! Each side keeps its rows in a state table keyed by (join key, row's stream key); the
//! value is the row and its degree, the number of rows on the other side it matches
//! (equal keys and a true residual). In memory each side keeps a cache of buckets — the
//! rows of one join key, in stream-key order — loaded by one prefix scan on a miss and
//! evicted least recently used first within the operator's budget ([`CachedTable`]).
//! A row changes in its bucket when that is loaded — the bucket remembers the rows it
//! changed and writes just those into the epoch's batch at the barrier, and stays in
//! memory until its epoch is committed — and otherwise in the state table alone (a bucket
//! is loaded to be probed, not to take a row). A load reads both, so an evicted bucket
//! reloads exactly.
//!
//! A chunk is processed as a whole: its rows, join keys and stream keys are encoded at
//! once, each row finds the other side's bucket with one hash lookup, the residual is
//! evaluated once over every candidate pair of the chunk, and the output columns are
//! taken from the chunk (this side) and decoded in one go from the matched rows (the
//! other side). Degrees are kept up to date only where they decide something: on a
//! preserved side of an outer join and on the output side of a semi or anti join:
//! - inner pairs are inserted (or deleted, for a deletion) for every match;
//! - a preserved (outer) side emits its row NULL-padded while its degree is 0: the first
//!   match retracts the padded row, the last unmatch re-inserts it;
//! - semi emits a row when its degree leaves 0 and retracts it when it returns to 0; anti
//!   the other way round;
//! - null-aware anti also counts the right side's rows and NULL keys: a NULL on the right
//!   empties the result, an empty right side shows every left row (this rare form reads
//!   the state table row by row, without the cache; see `null_aware.rs`).
//!
//! Update pairs are handled as a delete and an insert. Rows with a NULL key never match.
//! A join on a key pair with a watermark on both sides frees rows behind the watermarks
//! (see `closing.rs`); an interval join frees each side's rows once the other side's
//! watermark proves a time condition between them fails for good (see `interval.rs`); a
//! processing-time temporal join looks rows up without keeping them (see `lookup.rs`); an
//! as-of join keeps each side's rows in time order and matches each left row with the
//! nearest right one (see `asof.rs`).
//! Output columns: left visible, right visible, left hidden, right hidden (semi / anti:
//! the output side's columns only).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, RecordBatchOptions, UInt32Array};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::row::Rows;
use datafusion::logical_expr::JoinType;
use datafusion::physical_expr::PhysicalExpr;

use datafusion::common::ScalarValue;

use super::{Operator, OperatorContext, evaluate};
use crate::common::Result;
use crate::common::row::RowCodec;
use crate::plan::HashJoinNode;
use crate::state::{CachedTable, Epoch, Slot, Snapshot, StateMemory, StateTable, TableId, WriteBatch};
use crate::stream::message::{Chunk, Message, Op};

mod asof;
mod bucket;
mod closing;
mod interval;
mod lookup;
mod null_aware;

use self::bucket::{Bucket, JoinRow, encode_stored};
use self::closing::JoinClosing;
use self::interval::IntervalClosing;

/// One side's layout and state.
pub struct Side {
    pub keys: Vec<usize>,
    pub stream_key: Vec<usize>,
    pub visible: usize,
    pub types: Vec<DataType>,
    rows: RowCodec,
    join_key: RowCodec,
    stream_key_codec: Option<RowCodec>,
    buckets: CachedTable<Bucket>,
    /// NULL keys match NULL keys (IS NOT DISTINCT FROM).
    nulls_equal: bool,
}

impl Side {
    pub fn new(
        keys: Vec<usize>,
        stream_key: Vec<usize>,
        visible: usize,
        types: Vec<DataType>,
        table: TableId,
        memory: StateMemory,
    ) -> Result<Self> {
        let key_types: Vec<DataType> = keys.iter().map(|&i| types[i].clone()).collect();
        let stream_types: Vec<DataType> = stream_key.iter().map(|&i| types[i].clone()).collect();
        Ok(Side {
            rows: RowCodec::new(&types)?,
            join_key: RowCodec::new(&key_types)?,
            stream_key_codec: if stream_types.is_empty() {
                None
            } else {
                Some(RowCodec::new(&stream_types)?)
            },
            keys,
            stream_key,
            visible,
            types,
            buckets: CachedTable::new(table, memory),
            nulls_equal: false,
        })
    }

    /// A side whose NULL keys match the other side's NULL keys (IS NOT DISTINCT FROM).
    pub fn with_nulls_equal(mut self, nulls_equal: bool) -> Self {
        self.nulls_equal = nulls_equal;
        self
    }

    fn state(&mut self) -> &mut StateTable {
        self.buckets.table_mut()
    }

    /// The slot of the bucket of `key`, loaded by a prefix scan on a miss.
    fn bucket(&mut self, snapshot: &dyn Snapshot, key: &[u8]) -> Result<Slot> {
        self.buckets.rows_slot(snapshot, key)
    }

    /// Stores a row of this side: in its bucket when that is loaded, else in the state
    /// table alone (a bucket not loaded is not read to add a row to it).
    fn insert(&mut self, key: &[u8], stream_key: &[u8], degree: i64, row: &[u8]) {
        match self.buckets.lookup(key) {
            Some(slot) => {
                self.buckets.change(slot).insert(stream_key, degree, row);
                self.buckets.recharge(slot);
            }
            None => self.state().put([key, stream_key].concat(), encode_stored(degree, row)),
        }
    }

    /// Removes a row of this side.
    fn remove(&mut self, key: &[u8], stream_key: &[u8]) {
        match self.buckets.lookup(key) {
            Some(slot) => {
                self.buckets.change(slot).remove(stream_key);
                self.buckets.recharge(slot);
            }
            None => self.state().delete([key, stream_key].concat()),
        }
    }

    /// Sets the degree of row `at` of the bucket in `slot`.
    fn set_degree(&mut self, slot: Slot, at: usize, degree: i64) {
        self.buckets.change(slot).set_degree(at, degree);
    }

    fn stored(&self, slot: Slot, at: usize) -> &JoinRow {
        &self.buckets.get(slot).expect("a loaded bucket").rows[at]
    }

    fn bucket_len(&self, slot: Slot) -> usize {
        self.buckets.get(slot).map_or(0, |b| b.rows.len())
    }
}

pub struct HashJoinOperator {
    join_type: JoinType,
    sides: [Side; 2],
    residual: Option<Arc<dyn PhysicalExpr>>,
    null_aware: bool,
    schema: SchemaRef,
    /// Frees rows behind the watermarks of the first key pair (see `closing.rs`).
    closing: Option<JoinClosing>,
    /// Frees rows by time conditions between the sides (see `interval.rs`).
    interval: Option<IntervalClosing>,
    /// A processing-time temporal join: left chunks held until the first barrier (so that
    /// a new view's right side is backfilled before it is looked up), or None once it
    /// passed; None for other joins.
    held: Option<Vec<Chunk>>,
    /// A processing-time temporal join (`HashJoinNode::lookup`).
    lookup: bool,
    /// An as-of join (see `asof.rs`).
    asof: Option<asof::AsOf>,
}

/// Where an output row's columns of one side come from.
#[derive(Clone)]
enum RowRef {
    /// NULL-padded (or not shown).
    Null,
    /// Row `i` of the input chunk.
    Probe(u32),
    /// Row `at` of the other side's bucket in `slot`.
    Stored(Slot, u32),
    /// An encoded row (the null-aware join).
    Bytes(Vec<u8>),
}

/// Output rows: an op and where each side's columns come from.
#[derive(Default)]
struct Pending {
    ops: Vec<Op>,
    rows: [Vec<RowRef>; 2],
}

impl Pending {
    fn push(&mut self, op: Op, left: RowRef, right: RowRef) {
        self.ops.push(op);
        self.rows[0].push(left);
        self.rows[1].push(right);
    }
}

/// The encoded form of an input chunk.
struct Encoded {
    rows: Rows,
    join_keys: Rows,
    /// Rows whose join key has a NULL (they match nothing, unless NULLs are equal).
    null_key: Vec<bool>,
    stream_keys: Option<Rows>,
}

impl Encoded {
    fn new(side: &Side, chunk: &Chunk) -> Result<Self> {
        let rows = side.rows.encode(chunk.data.columns())?;
        let key_columns: Vec<ArrayRef> = side.keys.iter().map(|&i| chunk.data.column(i).clone()).collect();
        let join_keys = side.join_key.encode(&key_columns)?;
        let mut null_key = vec![false; chunk.len()];
        for column in key_columns.iter().filter(|_| !side.nulls_equal) {
            if let Some(nulls) = column.logical_nulls() {
                for (i, valid) in nulls.iter().enumerate() {
                    null_key[i] |= !valid;
                }
            }
        }
        let stream_columns: Vec<ArrayRef> =
            side.stream_key.iter().map(|&i| chunk.data.column(i).clone()).collect();
        let stream_keys = match &side.stream_key_codec {
            Some(codec) => Some(codec.encode(&stream_columns)?),
            None => None,
        };
        Ok(Encoded { rows, join_keys, null_key, stream_keys })
    }

    fn join_key(&self, i: usize) -> Option<&[u8]> {
        if self.null_key[i] { None } else { Some(self.join_keys.row(i).data()) }
    }

    fn stream_key(&self, i: usize) -> &[u8] {
        self.stream_keys.as_ref().map_or(&[][..], |k| k.row(i).data())
    }
}

impl HashJoinOperator {
    pub fn new(node: &HashJoinNode, left: Side, right: Side, schema: SchemaRef) -> Self {
        HashJoinOperator {
            join_type: node.join_type,
            sides: [left, right],
            residual: node.residual.clone(),
            null_aware: node.null_aware,
            schema,
            closing: None,
            interval: None,
            held: node.lookup.then(Vec::new),
            lookup: node.lookup,
            asof: None,
        }
    }

    /// An as-of join by `bound`, whose time columns have type `time_type` (after
    /// [`HashJoinOperator::with_intervals`]: one that frees makes left rows behind the
    /// left watermark late).
    pub fn with_asof(mut self, bound: &crate::plan::AsOfBound, time_type: &DataType) -> Result<Self> {
        if bound.frees
            && let Some(interval) = &mut self.interval
        {
            interval.late_behind_own_watermark(0, bound.left_column, time_type.clone())?;
        }
        self.asof = Some(asof::AsOf::new(bound, time_type)?);
        Ok(self)
    }

    /// Frees rows behind the watermarks of the first key pair (a node that `closes`);
    /// `output_columns` carry the join's watermark.
    pub fn with_closing(mut self, output_columns: Vec<usize>) -> Result<Self> {
        let [left, right] = &self.sides;
        let tables = [left.buckets.table_id(), right.buckets.table_id()];
        let data_type = left.types[left.keys[0]].clone();
        self.closing =
            Some(JoinClosing::new([left.keys[0], right.keys[0]], data_type, tables, output_columns)?);
        Ok(self)
    }

    /// Frees rows by the node's interval bounds; `schemas`: each input's schema.
    pub fn with_intervals(
        mut self,
        bounds: &[crate::plan::IntervalBound],
        schemas: [SchemaRef; 2],
    ) -> Result<Self> {
        if !bounds.is_empty() {
            self.interval = Some(IntervalClosing::new(bounds, schemas)?);
        }
        Ok(self)
    }

    /// An interval join's output carries `watermarks`, each at output column `outputs[i]`.
    pub fn with_held_watermarks(
        mut self,
        watermarks: &[crate::plan::JoinWatermark],
        outputs: &[usize],
    ) -> Result<Self> {
        if let Some(interval) = self.interval.take() {
            self.interval = Some(interval.with_watermarks(watermarks, outputs)?);
        }
        Ok(self)
    }

    /// Frees each side's rows behind the other side's watermark, in memory (the store's
    /// range is deleted at the checkpoint).
    fn free_behind_watermarks(&mut self) -> Result<()> {
        let Some(closing) = &mut self.closing else { return Ok(()) };
        for (s, side) in self.sides.iter_mut().enumerate() {
            if let Some((start, end)) = closing.range_to_free(s)? {
                let slots = side.buckets.slots_in(&start, &end);
                side.buckets.forget(&slots);
                closing.freed(s, start, end);
            }
        }
        Ok(())
    }

    fn preserves(&self, side: usize) -> bool {
        matches!(
            (self.join_type, side),
            (JoinType::Left | JoinType::Full, 0) | (JoinType::Right | JoinType::Full, 1)
        )
    }

    /// For semi and anti joins: the side whose rows are the output.
    fn filtered_side(&self) -> Option<(usize, bool)> {
        match self.join_type {
            JoinType::LeftSemi => Some((0, true)),
            JoinType::LeftAnti => Some((0, false)),
            JoinType::RightSemi => Some((1, true)),
            JoinType::RightAnti => Some((1, false)),
            _ => None,
        }
    }

    /// One side's columns for `refs`: taken from the chunk when they all come from it,
    /// otherwise decoded from the encoded rows in one go.
    fn side_columns(
        &self,
        s: usize,
        refs: &[RowRef],
        chunk: Option<&Chunk>,
        encoded: Option<&Encoded>,
    ) -> Result<Vec<ArrayRef>> {
        let side = &self.sides[s];
        let from_chunk = refs.iter().all(|r| matches!(r, RowRef::Null | RowRef::Probe(_)));
        if from_chunk && let Some(chunk) = chunk {
            let indices: UInt32Array = refs
                .iter()
                .map(|r| match r {
                    RowRef::Probe(i) => Some(*i),
                    _ => None,
                })
                .collect();
            return chunk
                .data
                .columns()
                .iter()
                .map(|c| Ok(datafusion::arrow::compute::take(c.as_ref(), &indices, None)?))
                .collect();
        }
        let mut present: Vec<&[u8]> = Vec::with_capacity(refs.len());
        let mut next = 0u32;
        let mut indices = Vec::with_capacity(refs.len());
        for r in refs {
            let bytes = match r {
                RowRef::Null => None,
                RowRef::Probe(i) => encoded.map(|e| e.rows.row(*i as usize).data()),
                RowRef::Stored(slot, at) => Some(side.stored(*slot, *at as usize).row()),
                RowRef::Bytes(bytes) => Some(bytes.as_slice()),
            };
            indices.push(bytes.map(|b| {
                present.push(b);
                next += 1;
                next - 1
            }));
        }
        if present.is_empty() {
            return Ok(side
                .types
                .iter()
                .map(|t| datafusion::arrow::array::new_null_array(t, refs.len()))
                .collect());
        }
        let decoded = side.rows.decode(present)?;
        if indices.iter().all(Option::is_some) {
            return Ok(decoded);
        }
        let indices = UInt32Array::from(indices);
        decoded.iter().map(|c| Ok(datafusion::arrow::compute::take(c.as_ref(), &indices, None)?)).collect()
    }

    /// Both sides' columns in join order (left visible, right visible, left hidden,
    /// right hidden).
    fn assemble(
        &self,
        rows: &[Vec<RowRef>; 2],
        input: usize,
        chunk: Option<&Chunk>,
        encoded: Option<&Encoded>,
    ) -> Result<Vec<ArrayRef>> {
        let columns = |s: usize| {
            let (chunk, encoded) = if s == input { (chunk, encoded) } else { (None, None) };
            self.side_columns(s, &rows[s], chunk, encoded)
        };
        let (left, right) = (columns(0)?, columns(1)?);
        let (lv, rv) = (self.sides[0].visible, self.sides[1].visible);
        Ok(left[..lv].iter().chain(&right[..rv]).chain(&left[lv..]).chain(&right[rv..]).cloned().collect())
    }

    fn batch(&self, columns: Vec<ArrayRef>, rows: usize, joined: bool) -> Result<RecordBatch> {
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        let schema = if joined {
            let fields: Vec<_> = columns
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    datafusion::arrow::datatypes::Field::new(format!("c{i}"), c.data_type().clone(), true)
                })
                .collect();
            Arc::new(datafusion::arrow::datatypes::Schema::new(fields))
        } else {
            self.schema.clone()
        };
        Ok(RecordBatch::try_new_with_options(schema, columns, &options)?)
    }

    /// Processes a chunk of side `input` (every join type but null-aware anti); `store`
    /// says which rows to keep in the side's state (None: all).
    fn process_chunk(
        &mut self,
        ctx: &OperatorContext,
        input: usize,
        chunk: &Chunk,
        store: Option<&[bool]>,
    ) -> Result<(Vec<Chunk>, Encoded)> {
        let (side, other) = (input, 1 - input);
        let encoded = Encoded::new(&self.sides[side], chunk)?;
        // Each row's candidates: the other side's bucket of its key (whose rows do not
        // change while this side's chunk is processed; only their degrees do).
        let mut buckets: Vec<Option<Slot>> = Vec::with_capacity(chunk.len());
        for i in 0..chunk.len() {
            buckets.push(match encoded.join_key(i) {
                Some(key) => Some(self.sides[other].bucket(ctx.snapshot.as_ref(), key)?),
                None => None,
            });
        }
        let passes = self.residual_passes(ctx, input, chunk, &encoded, &buckets)?;
        let mut out = Pending::default();
        let mut pair = 0usize;
        let mut matches: Vec<u32> = Vec::new();
        for (i, op) in chunk.ops.iter().enumerate() {
            let insert = Chunk::is_insert(*op);
            matches.clear();
            if let Some(slot) = buckets[i] {
                for at in 0..self.sides[other].bucket_len(slot) as u32 {
                    if passes.as_ref().is_none_or(|p| p[pair]) {
                        matches.push(at);
                    }
                    pair += 1;
                }
            }
            self.apply_row(i, insert, buckets[i], &matches, side, &mut out);
            if let Some(key) = encoded.join_key(i)
                && store.is_none_or(|s| s[i])
            {
                let stream_key = encoded.stream_key(i);
                if insert {
                    let row = encoded.rows.row(i);
                    self.sides[side].insert(key, stream_key, matches.len() as i64, row.data());
                } else {
                    self.sides[side].remove(key, stream_key);
                }
            }
        }
        let chunks = self.build(out, input, Some(chunk), Some(&encoded))?;
        for s in &mut self.sides {
            s.buckets.evict_if_over_budget();
        }
        Ok((chunks, encoded))
    }

    /// Whether each candidate pair of the chunk (rows in order, each with every row of
    /// its bucket) satisfies the residual condition: one evaluation for the chunk.
    fn residual_passes(
        &self,
        ctx: &OperatorContext,
        input: usize,
        chunk: &Chunk,
        encoded: &Encoded,
        buckets: &[Option<Slot>],
    ) -> Result<Option<Vec<bool>>> {
        let Some(residual) = &self.residual else { return Ok(None) };
        let other = 1 - input;
        let mut rows: [Vec<RowRef>; 2] = [Vec::new(), Vec::new()];
        for (i, slot) in buckets.iter().enumerate() {
            let Some(slot) = *slot else { continue };
            for at in 0..self.sides[other].bucket_len(slot) as u32 {
                rows[input].push(RowRef::Probe(i as u32));
                rows[other].push(RowRef::Stored(slot, at));
            }
        }
        let pairs = rows[0].len();
        if pairs == 0 {
            return Ok(Some(Vec::new()));
        }
        let batch = self.batch(self.assemble(&rows, input, Some(chunk), Some(encoded))?, pairs, true)?;
        let mask = evaluate(residual, &batch, ctx)?;
        let mask = mask.as_boolean();
        Ok(Some((0..pairs).map(|i| mask.is_valid(i) && mask.value(i)).collect()))
    }

    /// The output of row `i` of the chunk (side `side`) given its matches (positions in
    /// the other side's bucket `slot`), and the other side's degree changes.
    fn apply_row(
        &mut self,
        i: usize,
        insert: bool,
        slot: Option<Slot>,
        matches: &[u32],
        side: usize,
        out: &mut Pending,
    ) {
        let other = 1 - side;
        let op = if insert { Op::Insert } else { Op::Delete };
        let sign = if insert { 1 } else { -1 };
        let mine = RowRef::Probe(i as u32);
        let pair = |theirs: RowRef| if side == 0 { (mine.clone(), theirs) } else { (theirs, mine.clone()) };
        let padded = |s: usize, r: RowRef| if s == 0 { (r, RowRef::Null) } else { (RowRef::Null, r) };
        match self.filtered_side() {
            Some((output, semi)) if output == side => {
                // The output side: the row shows by its own degree.
                if matches.is_empty() != semi {
                    let (l, r) = padded(side, mine.clone());
                    out.push(op, l, r);
                }
            }
            Some((_, semi)) => {
                // The filtering side: matched output rows may appear or vanish.
                let Some(slot) = slot else { return };
                for &at in matches {
                    let before = self.sides[other].stored(slot, at as usize).degree;
                    let degree = before + sign;
                    if (before == 0) != (degree == 0) {
                        let appears = (degree > 0) == semi;
                        let (l, r) = padded(other, RowRef::Stored(slot, at));
                        out.push(if appears { Op::Insert } else { Op::Delete }, l, r);
                    }
                    self.sides[other].set_degree(slot, at as usize, degree);
                }
            }
            None => {
                let preserved = self.preserves(other);
                for &at in matches {
                    let theirs = RowRef::Stored(slot.expect("matches come from a bucket"), at);
                    let before = match theirs {
                        RowRef::Stored(slot, at) if preserved => {
                            self.sides[other].stored(slot, at as usize).degree
                        }
                        _ => 0,
                    };
                    let degree = before + sign;
                    if preserved && insert && before == 0 {
                        let (l, r) = padded(other, theirs.clone());
                        out.push(Op::Delete, l, r);
                    }
                    let (l, r) = pair(theirs.clone());
                    out.push(op, l, r);
                    if preserved && !insert && degree == 0 {
                        let (l, r) = padded(other, theirs.clone());
                        out.push(Op::Insert, l, r);
                    }
                    // Degrees matter only for a preserved side's NULL-padded row.
                    if preserved && let RowRef::Stored(slot, at) = theirs {
                        self.sides[other].set_degree(slot, at as usize, degree);
                    }
                }
                if self.preserves(side) && matches.is_empty() {
                    let (l, r) = padded(side, mine.clone());
                    out.push(op, l, r);
                }
            }
        }
    }

    fn build(
        &self,
        out: Pending,
        input: usize,
        chunk: Option<&Chunk>,
        encoded: Option<&Encoded>,
    ) -> Result<Vec<Chunk>> {
        if out.ops.is_empty() {
            return Ok(Vec::new());
        }
        let columns = self.assemble(&out.rows, input, chunk, encoded)?;
        let columns = match self.filtered_side() {
            None => columns,
            Some((side, _)) => {
                // Only the output side's columns, in its own order.
                let (lv, rv) = (self.sides[0].visible, self.sides[1].visible);
                let (ln, rn) = (self.sides[0].types.len(), self.sides[1].types.len());
                let (vis, hid) = if side == 0 {
                    (0..lv, lv + rv..lv + rv + ln - lv)
                } else {
                    (lv..lv + rv, lv + rv + ln - lv..lv + rv + ln - lv + rn - rv)
                };
                vis.chain(hid).map(|i| columns[i].clone()).collect()
            }
        };
        let rows = out.ops.len();
        Ok(vec![Chunk::new(out.ops, self.batch(columns, rows, false)?)])
    }
}

impl Operator for HashJoinOperator {
    fn name(&self) -> &'static str {
        "HashJoin"
    }

    fn state_tables(&self) -> Vec<TableId> {
        let index = self.interval.iter().flat_map(|i| i.state_tables());
        self.sides.iter().map(|s| s.buckets.table_id()).chain(index).collect()
    }

    fn on_chunk(&mut self, ctx: &OperatorContext, input: usize, chunk: Chunk) -> Result<Vec<Chunk>> {
        if self.asof.is_some() {
            return self.process_asof(ctx, input, chunk);
        }
        if self.interval.is_some() {
            return self.process_interval(ctx, input, chunk);
        }
        if self.lookup {
            return self.process_lookup(ctx, input, chunk);
        }
        if !self.null_aware {
            let (chunk, store) = match &mut self.closing {
                Some(closing) => closing.admit(ctx.snapshot.as_ref(), input, chunk)?,
                None => (chunk, None),
            };
            if chunk.is_empty() {
                return Ok(Vec::new());
            }
            return Ok(self.process_chunk(ctx, input, &chunk, store.as_deref())?.0);
        }
        let encoded = Encoded::new(&self.sides[input], &chunk)?;
        let mut out = Pending::default();
        for (i, op) in chunk.ops.iter().enumerate() {
            self.process_null_aware(ctx, input, &encoded, i, Chunk::is_insert(*op), &mut out)?;
        }
        self.build(out, input, Some(&chunk), Some(&encoded))
    }

    /// A watermark of the first key pair: the output carries the smaller of the two
    /// sides' (see `closing.rs`); of an interval join: the side's own, held back by the
    /// other side's (see `interval.rs`).
    fn on_watermark(
        &mut self,
        ctx: &OperatorContext,
        input: usize,
        column: usize,
        value: &ScalarValue,
    ) -> Result<Vec<Message>> {
        let mut out = match &mut self.interval {
            Some(interval) => {
                interval.watermark(ctx.snapshot.as_ref(), ctx.instance, input, column, value, &ctx.view)?
            }
            None => Vec::new(),
        };
        if let Some(closing) = &mut self.closing {
            out.extend(closing.watermark(ctx.snapshot.as_ref(), input, column, value)?);
        }
        Ok(out)
    }

    fn on_barrier(&mut self, ctx: &OperatorContext, epoch: Epoch) -> Result<Vec<Chunk>> {
        if let Some(held) = self.held.take() {
            return self.release_held(ctx, held);
        }
        self.free_behind_watermarks()?;
        let readers = [0, 1].map(|s| {
            let which = if s == 0 { "left" } else { "right" };
            format!("HashJoin {} {which} #{}", self.sides[s].buckets.table_id(), ctx.instance)
        });
        if let Some(closing) = &mut self.closing {
            closing.report_late(&ctx.view, [&readers[0], &readers[1]], epoch)?;
        }
        if let Some(interval) = &mut self.interval {
            for due in interval.due(ctx.snapshot.as_ref())? {
                self.sides[due.side].remove(&due.join_key, &due.stream_key);
            }
            interval.report_late(&ctx.view, [&readers[0], &readers[1]], epoch)?;
        }
        Ok(Vec::new())
    }

    fn checkpoint(&mut self, batch: &mut WriteBatch) {
        for side in &mut self.sides {
            side.buckets.seal_rows_into(batch);
        }
        if let Some(closing) = &mut self.closing {
            closing.checkpoint(batch);
        }
        if let Some(interval) = &mut self.interval {
            interval.checkpoint(batch);
        }
    }

    fn committed(&mut self) {
        for side in &mut self.sides {
            side.buckets.committed();
            side.buckets.evict_if_over_budget();
        }
        if let Some(interval) = &mut self.interval {
            interval.committed();
        }
    }
}

#[cfg(test)]
mod tests;
