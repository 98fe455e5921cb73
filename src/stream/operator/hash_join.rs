//! Symmetric hash join: inner, left / right / full outer, semi and anti (also the
//! null-aware anti join of NOT IN), with non-equi conditions as a residual filter.
//!
//! Each side keeps its rows in a state table keyed by (join key, row's stream key); the
//! value is the row and its degree, the number of rows on the other side it matches
//! (equal keys and a true residual). Degrees are kept up to date only where they decide
//! something: on a preserved side of an outer join and on the output side of a semi or
//! anti join. A row arriving on one side probes the other side's rows with the same key:
//! - inner pairs are inserted (or deleted, for a deletion) for every match;
//! - a preserved (outer) side emits its row NULL-padded while its degree is 0: the first
//!   match retracts the padded row, the last unmatch re-inserts it;
//! - semi emits a row when its degree leaves 0 and retracts it when it returns to 0; anti
//!   the other way round;
//! - null-aware anti also counts the right side's rows and NULL keys: a NULL on the right
//!   empties the result, an empty right side shows every left row.
//!
//! Update pairs are handled as a delete and an insert. Rows with a NULL key never match.
//! Output columns: left visible, right visible, left hidden, right hidden (semi / anti:
//! the output side's columns only).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, RecordBatchOptions, UInt32Array};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::logical_expr::JoinType;
use datafusion::physical_expr::PhysicalExpr;

use super::{Operator, OperatorContext, evaluate};
use crate::common::Result;
use crate::common::row::RowCodec;
use crate::plan::HashJoinNode;
use crate::state::{StateError, StateTable, TableId, WriteBatch, prefix_end};
use crate::stream::message::{Chunk, Op};

/// Null-aware anti join bookkeeping: right rows and right rows with a NULL key.
const COUNTERS_KEY: &[u8] = &[0xff, b'c'];
/// Null-aware anti join: left rows with a NULL key live under this prefix.
const NULL_KEY_PREFIX: u8 = 0xfe;

/// One side's layout and state.
pub struct Side {
    pub keys: Vec<usize>,
    pub stream_key: Vec<usize>,
    pub visible: usize,
    pub types: Vec<DataType>,
    rows: RowCodec,
    join_key: RowCodec,
    stream_key_codec: Option<RowCodec>,
    state: StateTable,
}

impl Side {
    pub fn new(
        keys: Vec<usize>,
        stream_key: Vec<usize>,
        visible: usize,
        types: Vec<DataType>,
        table: TableId,
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
            state: StateTable::new(table),
        })
    }
}

/// A stored row of one side: its state key, degree and encoded row.
#[derive(Clone)]
struct Stored {
    key: Vec<u8>,
    degree: i64,
    row: Vec<u8>,
}

fn encode_stored(degree: i64, row: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(8 + row.len());
    value.extend_from_slice(&degree.to_le_bytes());
    value.extend_from_slice(row);
    value
}

fn decode_stored(key: &[u8], value: &[u8]) -> Result<Stored> {
    if value.len() < 8 {
        return Err(StateError::Corrupt("join row without degree".into()).into());
    }
    let degree = i64::from_le_bytes(value[..8].try_into().expect("eight bytes"));
    Ok(Stored { key: key.to_vec(), degree, row: value[8..].to_vec() })
}

pub struct HashJoinOperator {
    join_type: JoinType,
    sides: [Side; 2],
    residual: Option<Arc<dyn PhysicalExpr>>,
    null_aware: bool,
    schema: SchemaRef,
}

/// One input row as the join sees it.
struct Probe<'a> {
    side: usize,
    row: &'a [u8],
    /// None when a key column is NULL: the row matches nothing.
    join_key: Option<Vec<u8>>,
    stream_key: &'a [u8],
    insert: bool,
}

/// Output rows: an op and each side's encoded row (None: NULL-padded or not shown).
#[derive(Default)]
struct Pending {
    ops: Vec<Op>,
    rows: [Vec<Option<Vec<u8>>>; 2],
}

impl Pending {
    fn push(&mut self, op: Op, left: Option<Vec<u8>>, right: Option<Vec<u8>>) {
        self.ops.push(op);
        self.rows[0].push(left);
        self.rows[1].push(right);
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
        }
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

    /// Both sides' rows as columns in join order (left visible, right visible, left
    /// hidden, right hidden); None rows become NULLs.
    fn assemble(&self, rows: &[Vec<Option<Vec<u8>>>; 2]) -> Result<Vec<ArrayRef>> {
        let mut sides: Vec<Vec<ArrayRef>> = Vec::with_capacity(2);
        for (s, side) in self.sides.iter().enumerate() {
            let present: Vec<&[u8]> = rows[s].iter().flatten().map(|r| r.as_slice()).collect();
            let decoded = if present.is_empty() {
                side.types.iter().map(|t| datafusion::arrow::array::new_null_array(t, 1)).collect()
            } else {
                side.rows.decode(present)?
            };
            let mut next = 0u32;
            let indices: UInt32Array = rows[s]
                .iter()
                .map(|r| {
                    r.as_ref().map(|_| {
                        next += 1;
                        next - 1
                    })
                })
                .collect();
            let columns = decoded
                .iter()
                .map(|c| Ok(datafusion::arrow::compute::take(c.as_ref(), &indices, None)?))
                .collect::<Result<Vec<ArrayRef>>>()?;
            sides.push(columns);
        }
        let (left, right) = (&sides[0], &sides[1]);
        let (lv, rv) = (self.sides[0].visible, self.sides[1].visible);
        Ok(left[..lv].iter().chain(&right[..rv]).chain(&left[lv..]).chain(&right[rv..]).cloned().collect())
    }

    /// The stored rows of side `side` with join key `key` that satisfy the residual when
    /// joined with `row` (on side `1 - side`).
    fn matches(&self, ctx: &OperatorContext, side: usize, key: &[u8], row: &[u8]) -> Result<Vec<Stored>> {
        let mut candidates = Vec::new();
        let end = prefix_end(key);
        let mut failure = None;
        self.sides[side].state.scan_range(ctx.snapshot.as_ref(), key, end.as_deref(), &mut |k, v| {
            match decode_stored(k, v) {
                Ok(stored) => candidates.push(stored),
                Err(e) => failure = Some(e),
            }
            Ok(true)
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        let Some(residual) = &self.residual else { return Ok(candidates) };
        if candidates.is_empty() {
            return Ok(candidates);
        }
        let mut rows: [Vec<Option<Vec<u8>>>; 2] = [Vec::new(), Vec::new()];
        for candidate in &candidates {
            rows[side].push(Some(candidate.row.clone()));
            rows[1 - side].push(Some(row.to_vec()));
        }
        let batch = self.batch(self.assemble(&rows)?, candidates.len(), true)?;
        let mask = evaluate(residual, &batch, &ctx.view)?;
        let mask = mask.as_boolean();
        Ok(candidates
            .into_iter()
            .enumerate()
            .filter(|(i, _)| mask.is_valid(*i) && mask.value(*i))
            .map(|(_, c)| c)
            .collect())
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

    fn put(&mut self, side: usize, key: Vec<u8>, degree: i64, row: &[u8]) {
        self.sides[side].state.put(key, encode_stored(degree, row));
    }

    /// Null-aware anti join: (right rows, right rows with a NULL key).
    fn counters(&self, ctx: &OperatorContext) -> Result<(i64, i64)> {
        Ok(match self.sides[1].state.get(ctx.snapshot.as_ref(), COUNTERS_KEY)? {
            Some(v) if v.len() == 16 => (
                i64::from_le_bytes(v[..8].try_into().expect("eight bytes")),
                i64::from_le_bytes(v[8..].try_into().expect("eight bytes")),
            ),
            _ => (0, 0),
        })
    }

    /// Null-aware anti join: whether a left row shows.
    fn shows(counters: (i64, i64), left_key_null: bool, degree: i64) -> bool {
        let (rows, nulls) = counters;
        rows == 0 || (nulls == 0 && !left_key_null && degree == 0)
    }

    /// Every left row of a null-aware anti join with whether it shows under `counters`.
    fn all_left(&self, ctx: &OperatorContext, counters: (i64, i64)) -> Result<Vec<(Vec<u8>, bool)>> {
        let mut out = Vec::new();
        let mut failure = None;
        self.sides[0].state.scan(ctx.snapshot.as_ref(), &mut |k, v| {
            match decode_stored(k, v) {
                Ok(stored) => {
                    let shows = Self::shows(counters, k.first() == Some(&NULL_KEY_PREFIX), stored.degree);
                    out.push((stored.row, shows));
                }
                Err(e) => failure = Some(e),
            }
            Ok(())
        })?;
        match failure {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    fn process_row(&mut self, ctx: &OperatorContext, probe: Probe<'_>, out: &mut Pending) -> Result<()> {
        if self.null_aware {
            return self.process_null_aware(ctx, probe, out);
        }
        let Probe { side, row, join_key, stream_key, insert } = probe;
        let other = 1 - side;
        let matches = match &join_key {
            Some(key) => self.matches(ctx, other, key, row)?,
            None => Vec::new(),
        };
        let op = if insert { Op::Insert } else { Op::Delete };
        let sign = if insert { 1 } else { -1 };
        let pair = |mine: &[u8], theirs: &[u8]| -> (Option<Vec<u8>>, Option<Vec<u8>>) {
            if side == 0 {
                (Some(mine.to_vec()), Some(theirs.to_vec()))
            } else {
                (Some(theirs.to_vec()), Some(mine.to_vec()))
            }
        };
        let padded = |s: usize, r: &[u8]| -> (Option<Vec<u8>>, Option<Vec<u8>>) {
            if s == 0 { (Some(r.to_vec()), None) } else { (None, Some(r.to_vec())) }
        };
        match self.filtered_side() {
            Some((output, semi)) if output == side => {
                // The output side: the row shows by its own degree.
                let shows = (matches.is_empty()) != semi;
                if shows {
                    let (l, r) = padded(side, row);
                    out.push(op, l, r);
                }
            }
            Some((_, semi)) => {
                // The filtering side: matched output rows may appear or vanish.
                for m in &matches {
                    let degree = m.degree + sign;
                    if (m.degree == 0) != (degree == 0) {
                        let appears = (degree > 0) == semi;
                        let (l, r) = padded(other, &m.row);
                        out.push(if appears { Op::Insert } else { Op::Delete }, l, r);
                    }
                    self.put(other, m.key.clone(), degree, &m.row);
                }
            }
            None => {
                for m in &matches {
                    let degree = m.degree + sign;
                    if self.preserves(other) && insert && m.degree == 0 {
                        let (l, r) = padded(other, &m.row);
                        out.push(Op::Delete, l, r);
                    }
                    let (l, r) = pair(row, &m.row);
                    out.push(op, l, r);
                    if self.preserves(other) && !insert && degree == 0 {
                        let (l, r) = padded(other, &m.row);
                        out.push(Op::Insert, l, r);
                    }
                    // Degrees matter only for a preserved side's NULL-padded row.
                    if self.preserves(other) {
                        self.put(other, m.key.clone(), degree, &m.row);
                    }
                }
                if self.preserves(side) && matches.is_empty() {
                    let (l, r) = padded(side, row);
                    out.push(op, l, r);
                }
            }
        }
        if let Some(key) = join_key {
            let state_key = [key.as_slice(), stream_key].concat();
            if insert {
                self.put(side, state_key, matches.len() as i64, row);
            } else {
                self.sides[side].state.delete(state_key);
            }
        }
        Ok(())
    }

    fn process_null_aware(
        &mut self,
        ctx: &OperatorContext,
        probe: Probe<'_>,
        out: &mut Pending,
    ) -> Result<()> {
        let Probe { side, row, join_key, stream_key, insert } = probe;
        let counters = self.counters(ctx)?;
        let sign = if insert { 1 } else { -1 };
        if side == 0 {
            let (state_key, degree) = match &join_key {
                Some(key) => (
                    key.iter().chain(stream_key).copied().collect(),
                    self.matches(ctx, 1, key, row)?.len() as i64,
                ),
                None => ([&[NULL_KEY_PREFIX], stream_key].concat(), 0),
            };
            if Self::shows(counters, join_key.is_none(), degree) {
                out.push(if insert { Op::Insert } else { Op::Delete }, Some(row.to_vec()), None);
            }
            if insert {
                self.put(0, state_key, degree, row);
            } else {
                self.sides[0].state.delete(state_key);
            }
            return Ok(());
        }
        let after = (counters.0 + sign, counters.1 + if join_key.is_none() { sign } else { 0 });
        let flips = (counters.0 == 0) != (after.0 == 0) || (counters.1 == 0) != (after.1 == 0);
        let before_rows = if flips { Some(self.all_left(ctx, counters)?) } else { None };
        if let Some(key) = &join_key {
            for m in self.matches(ctx, 0, key, row)? {
                let degree = m.degree + sign;
                if !flips && Self::shows(counters, false, m.degree) != Self::shows(after, false, degree) {
                    let op = if Self::shows(after, false, degree) { Op::Insert } else { Op::Delete };
                    out.push(op, Some(m.row.clone()), None);
                }
                self.put(0, m.key.clone(), degree, &m.row);
            }
            let state_key = [key.as_slice(), stream_key].concat();
            if insert {
                self.put(1, state_key, 0, row);
            } else {
                self.sides[1].state.delete(state_key);
            }
        }
        let mut value = after.0.to_le_bytes().to_vec();
        value.extend_from_slice(&after.1.to_le_bytes());
        self.sides[1].state.put(COUNTERS_KEY.to_vec(), value);
        if let Some(before_rows) = before_rows {
            for ((left, before), (_, now)) in before_rows.into_iter().zip(self.all_left(ctx, after)?) {
                if before != now {
                    out.push(if now { Op::Insert } else { Op::Delete }, Some(left), None);
                }
            }
        }
        Ok(())
    }

    fn build(&self, out: Pending) -> Result<Vec<Chunk>> {
        if out.ops.is_empty() {
            return Ok(Vec::new());
        }
        let columns = self.assemble(&out.rows)?;
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
        Ok(vec![Chunk::new(out.ops.clone(), self.batch(columns, out.ops.len(), false)?)])
    }
}

impl Operator for HashJoinOperator {
    fn name(&self) -> &'static str {
        "HashJoin"
    }

    fn state_tables(&self) -> Vec<TableId> {
        self.sides.iter().map(|s| s.state.table_id()).collect()
    }

    fn on_chunk(&mut self, ctx: &OperatorContext, input: usize, chunk: Chunk) -> Result<Vec<Chunk>> {
        let side = &self.sides[input];
        let rows = side.rows.encode(chunk.data.columns())?;
        let key_columns: Vec<ArrayRef> = side.keys.iter().map(|&i| chunk.data.column(i).clone()).collect();
        let join_keys = side.join_key.encode(&key_columns)?;
        let stream_columns: Vec<ArrayRef> =
            side.stream_key.iter().map(|&i| chunk.data.column(i).clone()).collect();
        let stream_keys =
            super::materialize::encode_keys(side.stream_key_codec.as_ref(), &stream_columns, chunk.len())?;
        let mut out = Pending::default();
        for (i, op) in chunk.ops.iter().enumerate() {
            let has_null = key_columns.iter().any(|c| c.is_null(i));
            let join_key = if has_null { None } else { Some(join_keys.row(i).data().to_vec()) };
            let probe = Probe {
                side: input,
                row: rows.row(i).data(),
                join_key,
                stream_key: &stream_keys[i],
                insert: Chunk::is_insert(*op),
            };
            self.process_row(ctx, probe, &mut out)?;
        }
        self.build(out)
    }

    fn checkpoint(&mut self, batch: &mut WriteBatch) {
        for side in &mut self.sides {
            side.state.seal_into(batch);
        }
    }

    fn committed(&mut self) {
        for side in &mut self.sides {
            side.state.committed();
        }
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;
    use crate::stream::operator::testing::{Harness, chunk, lines, pretty, schema};

    fn join(join_type: JoinType, null_aware: bool, out_columns: &str) -> HashJoinOperator {
        let node = HashJoinNode {
            join_type,
            left_keys: vec![1],
            right_keys: vec![0],
            residual: None,
            null_aware,
            left_table: 1,
            right_table: 2,
        };
        let left = Side::new(vec![1], vec![0], 2, vec![DataType::Int64; 2], 1).unwrap();
        let right = Side::new(vec![0], vec![1], 2, vec![DataType::Int64; 2], 2).unwrap();
        let fields: Vec<Field> =
            out_columns.split_whitespace().map(|n| Field::new(n, DataType::Int64, true)).collect();
        HashJoinOperator::new(&node, left, right, Arc::new(Schema::new(fields)))
    }

    #[test]
    fn left_join_pads_until_the_first_match_and_after_the_last() {
        let mut op = join(JoinType::Left, false, "id k k2 id2");
        let mut h = Harness::new();
        let (l, r) = (schema("id:int k:int"), schema("k:int id:int"));
        assert_eq!(
            pretty(&op.on_chunk(&h.ctx, 0, chunk(&l, "+ 1 7\n+ 2 .")).unwrap()),
            lines("+ 1 7 . .\n+ 2 . . .")
        );
        h.commit(&mut op);
        let out = op.on_chunk(&h.ctx, 1, chunk(&r, "+ 7 100\n+ 7 101")).unwrap();
        assert_eq!(pretty(&out), lines("- 1 7 . .\n+ 1 7 7 100\n+ 1 7 7 101"));
        h.commit(&mut op);
        let out = op.on_chunk(&h.ctx, 1, chunk(&r, "- 7 100\nU- 7 101\nU+ 8 101")).unwrap();
        assert_eq!(pretty(&out), lines("- 1 7 7 100\n- 1 7 7 101\n+ 1 7 . ."));
        let out = op.on_chunk(&h.ctx, 0, chunk(&l, "U- 1 7\nU+ 1 8")).unwrap();
        assert_eq!(pretty(&out), lines("- 1 7 . .\n+ 1 8 8 101"));
    }

    #[test]
    fn semi_and_anti_follow_the_degree() {
        let (l, r) = (schema("id:int k:int"), schema("k:int id:int"));
        let mut semi = join(JoinType::LeftSemi, false, "id k");
        let mut anti = join(JoinType::LeftAnti, false, "id k");
        let h = Harness::new();
        for (op, expected) in [(&mut semi, ""), (&mut anti, "+ 1 7")] {
            assert_eq!(pretty(&op.on_chunk(&h.ctx, 0, chunk(&l, "+ 1 7")).unwrap()), expected);
        }
        assert_eq!(
            pretty(&semi.on_chunk(&h.ctx, 1, chunk(&r, "+ 7 1\n+ 7 2\n- 7 1\n- 7 2")).unwrap()),
            lines("+ 1 7\n- 1 7")
        );
        assert_eq!(pretty(&anti.on_chunk(&h.ctx, 1, chunk(&r, "+ 7 1\n+ 7 2\n- 7 1")).unwrap()), "- 1 7");
    }

    #[test]
    fn not_in_is_empty_while_the_subquery_has_a_null() {
        let (l, r) = (schema("id:int k:int"), schema("k:int id:int"));
        let mut op = join(JoinType::LeftAnti, true, "id k");
        let h = Harness::new();
        // Empty subquery: every row shows, even one with a NULL key.
        assert_eq!(
            pretty(&op.on_chunk(&h.ctx, 0, chunk(&l, "+ 1 7\n+ 2 .\n+ 3 8")).unwrap()),
            lines("+ 1 7\n+ 2 .\n+ 3 8")
        );
        let out = op.on_chunk(&h.ctx, 1, chunk(&r, "+ 7 1")).unwrap();
        assert_eq!(pretty(&out), lines("- 1 7\n- 2 ."));
        assert_eq!(pretty(&op.on_chunk(&h.ctx, 1, chunk(&r, "+ . 2")).unwrap()), "- 3 8");
        assert_eq!(pretty(&op.on_chunk(&h.ctx, 1, chunk(&r, "- . 2")).unwrap()), "+ 3 8");
    }
}
