//! As-of joins (`HashJoinNode::asof`): each left row matches the one right row of its join
//! key nearest to it in time, in the inequality's direction (see `sql::asof_join`).
//!
//! Both sides keep their rows in buckets as any join does, ordered by (time, stream key):
//! the time column leads each side's stream key, and a stored row's degree holds the length
//! of its time's encoding, so that times compare as bytes (Arrow's row format is
//! memcomparable, NULLs first). A left row finds its match by binary search in the right
//! bucket. A right row is the match of the left rows in one time range of the left bucket,
//! between its own time and its neighbour's (the next right row for `>=` / `>`, the
//! previous one for `<=` / `<`); before it came those rows matched the neighbour on its
//! other side (the fallback), or nothing. So a right row that comes retracts those rows'
//! output with the fallback and emits them with itself, and one that goes does the
//! reverse: each change touches exactly the output rows whose match it moves, found by two
//! binary searches. Rows are processed one at a time, each seeing the ones before it. A
//! row with a NULL key or time matches nothing (LEFT: a left one shows NULL-padded).

use std::ops::Range;

use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::JoinType;

use super::bucket::JoinRow;
use super::interval::Admitted;
use super::{Encoded, HashJoinOperator, Pending, RowRef};
use crate::common::Result;
use crate::common::row::RowCodec;
use crate::plan::{AsOfBound, AsOfOrder};
use crate::state::Slot;
use crate::stream::message::{Chunk, Op};
use crate::stream::operator::OperatorContext;
use crate::stream::operator::late::encode_bound;

/// What an as-of join adds to a hash join: its order and how each side's times encode.
pub(super) struct AsOf {
    order: AsOfOrder,
    columns: [usize; 2],
    times: RowCodec,
    /// Frees by the watermarks (`AsOfBound::frees`; the left rows through the join's
    /// interval bound).
    frees: bool,
}

impl AsOf {
    pub(super) fn new(bound: &AsOfBound, time_type: &DataType) -> Result<Self> {
        Ok(AsOf {
            order: bound.order,
            columns: [bound.left_column, bound.right_column],
            times: RowCodec::new(std::slice::from_ref(time_type))?,
            frees: bound.frees,
        })
    }
}

/// A stored row's time (the start of its stream key; its degree says how long).
fn time(row: &JoinRow) -> &[u8] {
    &row.stream_key()[..row.degree as usize]
}

/// Whether an encoded time is NULL (the null sentinel of Arrow's row format, NULLs first).
fn is_null(time: &[u8]) -> bool {
    time.first() == Some(&0)
}

/// Whether a right row at time `right` may match a left row at `left` (neither NULL).
fn qualifies(order: AsOfOrder, right: &[u8], left: &[u8]) -> bool {
    match order {
        AsOfOrder::AtOrAfter => right <= left,
        AsOfOrder::After => right < left,
        AsOfOrder::AtOrBefore => right >= left,
        AsOfOrder::Before => right > left,
    }
}

/// The match of a left row at time `left` (not NULL) among `right` (ordered): the last
/// qualifying row for `>=` / `>` (they are a prefix), the first for `<=` / `<` (a suffix).
fn nearest(order: AsOfOrder, right: &[JoinRow], left: &[u8]) -> Option<usize> {
    if order.latest() {
        let at = right.partition_point(|r| qualifies(order, time(r), left)).checked_sub(1)?;
        (!is_null(time(&right[at]))).then_some(at)
    } else {
        let at = right.partition_point(|r| !qualifies(order, time(r), left));
        (at < right.len()).then_some(at)
    }
}

/// The left rows (a range of `left`, ordered) whose match is right row `p` of `right`, and
/// the fallback they match without it (the neighbour on its other side).
fn matched_by(
    order: AsOfOrder,
    right: &[JoinRow],
    p: usize,
    left: &[JoinRow],
) -> (Range<usize>, Option<usize>) {
    let t = time(&right[p]);
    if is_null(t) {
        return (0..0, None);
    }
    // The left rows a right row at `t` may match are a suffix (`>=`, `>`) or, after the
    // NULLs, a prefix (`<=`, `<`) of the left bucket; `ends` finds where it starts or ends.
    let ends = |t: &[u8]| {
        left.partition_point(|l| is_null(time(l)) || (qualifies(order, t, time(l)) != order.latest()))
    };
    let valid = |q: usize| (!is_null(time(&right[q]))).then_some(q);
    let (range, fallback) = if order.latest() {
        let end = right.get(p + 1).map_or(left.len(), |next| ends(time(next)));
        (ends(t)..end, p.checked_sub(1).and_then(valid))
    } else {
        let start = match p.checked_sub(1).and_then(valid) {
            Some(previous) => ends(time(&right[previous])),
            None => left.partition_point(|l| is_null(time(l))),
        };
        (start..ends(t), (p + 1 < right.len()).then_some(p + 1))
    };
    (range.start..range.end.max(range.start), fallback)
}

impl HashJoinOperator {
    /// One chunk of an as-of join. One that frees admits the chunk first: late rows
    /// leave, left rows the right watermark has passed are joined but not stored, and the
    /// stored ones are indexed by time (see `interval.rs`).
    pub(super) fn process_asof(
        &mut self,
        ctx: &OperatorContext,
        input: usize,
        chunk: Chunk,
    ) -> Result<Vec<Chunk>> {
        let admitted = match &mut self.interval {
            Some(interval) => interval.admit(ctx.snapshot.as_ref(), ctx.instance, input, chunk, &ctx.view)?,
            None => Admitted { chunk, store: None, expiry: None },
        };
        let chunk = admitted.chunk;
        let asof = self.asof.as_ref().expect("an as-of join");
        let times = asof.times.encode(&[chunk.data.column(asof.columns[input]).clone()])?;
        let encoded = Encoded::new(&self.sides[input], &chunk)?;
        let through = self.versions_through()?;
        let mut out = Pending::default();
        for (i, op) in chunk.ops.iter().enumerate() {
            let insert = Chunk::is_insert(*op);
            let time = times.row(i);
            let store = admitted.store.as_ref().is_none_or(|s| s[i]);
            match input {
                0 => self.asof_left_row(ctx, &encoded, i, (insert, store), time.data(), &mut out)?,
                _ => self.asof_right_row(ctx, &encoded, i, insert, time.data(), &mut out)?,
            }
            if let (Some(interval), Some(expiry), Some(key)) =
                (&mut self.interval, &admitted.expiry, encoded.join_key(i))
                && store
            {
                interval.record(input, expiry, i, key, encoded.stream_key(i), insert);
            }
        }
        if let Some(through) = through
            && input == 1
        {
            self.free_versions(&encoded, &through);
        }
        let chunks = self.build(out, input, Some(&chunk), Some(&encoded))?;
        for side in &mut self.sides {
            side.buckets.evict_if_over_budget();
        }
        Ok(chunks)
    }

    /// A left row: shown with its match (or padded), and kept unless `store` is false.
    fn asof_left_row(
        &mut self,
        ctx: &OperatorContext,
        encoded: &Encoded,
        i: usize,
        (insert, store): (bool, bool),
        time: &[u8],
        out: &mut Pending,
    ) -> Result<()> {
        let order = self.asof.as_ref().expect("an as-of join").order;
        let op = if insert { Op::Insert } else { Op::Delete };
        let Some(key) = encoded.join_key(i) else {
            if self.join_type == JoinType::Left {
                out.push(op, RowRef::Probe(i as u32), RowRef::Null);
            }
            return Ok(());
        };
        let slot = self.sides[1].bucket(ctx.snapshot.as_ref(), key)?;
        let rows = self.sides[1].buckets.get(slot).map_or(&[][..], |b| &b.rows[..]);
        let matched = if is_null(time) { None } else { nearest(order, rows, time) };
        match matched {
            Some(at) => out.push(op, RowRef::Probe(i as u32), RowRef::Stored(slot, at as u32)),
            None if self.join_type == JoinType::Left => out.push(op, RowRef::Probe(i as u32), RowRef::Null),
            None => {}
        }
        if !store {
            return Ok(());
        }
        let (stream_key, row) = (encoded.stream_key(i), encoded.rows.row(i));
        self.sides[0].bucket(ctx.snapshot.as_ref(), key)?;
        match insert {
            true => self.sides[0].insert(key, stream_key, time.len() as i64, row.data()),
            false => self.sides[0].remove(key, stream_key),
        }
        Ok(())
    }

    /// A right row: the left rows it is nearest to move to it (or, leaving, to the
    /// fallback).
    fn asof_right_row(
        &mut self,
        ctx: &OperatorContext,
        encoded: &Encoded,
        i: usize,
        insert: bool,
        time: &[u8],
        out: &mut Pending,
    ) -> Result<()> {
        let order = self.asof.as_ref().expect("an as-of join").order;
        let Some(key) = encoded.join_key(i) else { return Ok(()) };
        let stream_key = encoded.stream_key(i);
        let right_slot = self.sides[1].bucket(ctx.snapshot.as_ref(), key)?;
        let left_slot: Slot = self.sides[0].bucket(ctx.snapshot.as_ref(), key)?;
        if insert {
            self.sides[1].insert(key, stream_key, time.len() as i64, encoded.rows.row(i).data());
        }
        let right = self.sides[1].buckets.get(right_slot).map_or(&[][..], |b| &b.rows[..]);
        let Ok(p) = right.binary_search_by(|r| r.stream_key().cmp(stream_key)) else { return Ok(()) };
        let left = self.sides[0].buckets.get(left_slot).map_or(&[][..], |b| &b.rows[..]);
        let (range, fallback) = matched_by(order, right, p, left);
        let fallback = match fallback {
            Some(at) => RowRef::Bytes(right[at].row().to_vec()),
            None => RowRef::Null,
        };
        let outer = self.join_type == JoinType::Left;
        let mine = RowRef::Probe(i as u32);
        let (before, after) = if insert { (&fallback, &mine) } else { (&mine, &fallback) };
        for at in range {
            let theirs = RowRef::Stored(left_slot, at as u32);
            if outer || !matches!(before, RowRef::Null) {
                out.push(Op::Delete, theirs.clone(), before.clone());
            }
            if outer || !matches!(after, RowRef::Null) {
                out.push(Op::Insert, theirs, after.clone());
            }
        }
        if !insert {
            self.sides[1].remove(key, stream_key);
        }
        Ok(())
    }
}

impl HashJoinOperator {
    /// The smaller of the two sides' watermarks, encoded as a time, when the join frees:
    /// a version with a later version of its key at or before it can match no row any
    /// more (later left rows are at or after it, and the left rows before it are final).
    fn versions_through(&self) -> Result<Option<Vec<u8>>> {
        let (Some(asof), Some(interval)) = (&self.asof, &self.interval) else { return Ok(None) };
        let (Some(left), Some(right)) = (interval.watermark_of(0), interval.watermark_of(1)) else {
            return Ok(None);
        };
        if !asof.frees {
            return Ok(None);
        }
        let left = encode_bound(&asof.times, left)?;
        let right = encode_bound(&asof.times, right)?;
        Ok(Some(left.min(right)))
    }

    /// Frees the versions of the keys of a right chunk that no row can match any more:
    /// all but the last at or before `through`.
    fn free_versions(&mut self, encoded: &Encoded, through: &[u8]) {
        let keys: std::collections::BTreeSet<&[u8]> =
            (0..encoded.null_key.len()).filter_map(|i| encoded.join_key(i)).collect();
        for key in keys {
            let Some(slot) = self.sides[1].buckets.lookup(key) else { continue };
            let right = self.sides[1].buckets.get(slot).map_or(&[][..], |b| &b.rows[..]);
            let dead = right.partition_point(|r| time(r) <= through).saturating_sub(1);
            let dead: Vec<Box<[u8]>> = right[..dead].iter().map(|r| r.stream_key().into()).collect();
            for stream_key in dead {
                self.sides[1].remove(key, &stream_key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;
    use crate::plan::HashJoinNode;
    use crate::state::StateMemory;
    use crate::stream::operator::Operator;
    use crate::stream::operator::hash_join::Side;
    use crate::stream::operator::testing::{Harness, chunk, lines, pretty, schema};

    /// `(id, k, t) ASOF [LEFT] JOIN (k, t, v) ON k AND l.t OP r.t`; left rows are keyed by
    /// id, right rows by v.
    fn asof_join(join_type: JoinType, order: AsOfOrder) -> HashJoinOperator {
        let bound = AsOfBound { left_column: 2, right_column: 1, order, frees: false };
        asof_join_with(join_type, bound, Vec::new())
    }

    fn inputs() -> [datafusion::arrow::datatypes::SchemaRef; 2] {
        [schema("id:int k:int t:int"), schema("k:int t:int v:int")]
    }

    fn asof_join_with(
        join_type: JoinType,
        bound: AsOfBound,
        intervals: Vec<crate::plan::IntervalBound>,
    ) -> HashJoinOperator {
        let node = HashJoinNode {
            join_type,
            left_keys: vec![1],
            right_keys: vec![0],
            residual: None,
            null_aware: false,
            nulls_equal: false,
            left_table: 101,
            right_table: 102,
            closes: false,
            intervals,
            lookup: false,
            asof: Some(bound.clone()),
            watermarks: Vec::new(),
        };
        let types = vec![DataType::Int64; 3];
        let left = Side::new(vec![1], vec![2, 0], 3, types.clone(), 101, StateMemory::default()).unwrap();
        let right = Side::new(vec![0], vec![1, 2], 3, types, 102, StateMemory::default()).unwrap();
        let fields: Vec<Field> =
            "id k t k2 t2 v".split_whitespace().map(|n| Field::new(n, DataType::Int64, true)).collect();
        HashJoinOperator::new(&node, left, right, Arc::new(Schema::new(fields)))
            .with_intervals(&node.intervals, inputs())
            .unwrap()
            .with_asof(&bound, &DataType::Int64)
            .unwrap()
    }

    fn run(op: &mut HashJoinOperator, h: &mut Harness, input: usize, rows: &str) -> String {
        let out = pretty(&op.on_chunk(&h.ctx, input, chunk(&inputs()[input], rows)).unwrap());
        h.commit(op);
        out
    }

    #[test]
    fn latest_match_moves_as_right_rows_come_and_go() {
        let mut op = asof_join(JoinType::Left, AsOfOrder::AtOrAfter);
        let mut h = Harness::new();
        // No right rows yet: padded; a NULL time or key never matches.
        assert_eq!(
            run(&mut op, &mut h, 0, "+ 1 7 10\n+ 2 7 20\n+ 3 7 .\n+ 4 . 10"),
            lines("+ 1 7 10 . . .\n+ 2 7 20 . . .\n+ 3 7 . . . .\n+ 4 . 10 . . .")
        );
        // A right row at 15 is nearest to the left row at 20 only.
        assert_eq!(run(&mut op, &mut h, 1, "+ 7 15 100"), lines("- 2 7 20 . . .\n+ 2 7 20 7 15 100"));
        // At 5: nearest to 10 (20 keeps 15); at 20: takes 20 from 15.
        assert_eq!(
            run(&mut op, &mut h, 1, "+ 7 5 101\n+ 7 20 102"),
            lines("- 1 7 10 . . .\n+ 1 7 10 7 5 101\n- 2 7 20 7 15 100\n+ 2 7 20 7 20 102")
        );
        // A tie at 20: the greater stream key wins.
        assert_eq!(run(&mut op, &mut h, 1, "+ 7 20 99"), "");
        assert_eq!(run(&mut op, &mut h, 1, "+ 7 20 103"), lines("- 2 7 20 7 20 102\n+ 2 7 20 7 20 103"));
        // Leaving: 5 hands 10 back to nothing, and the 20s back to each other, then to 15.
        assert_eq!(run(&mut op, &mut h, 1, "- 7 5 101"), lines("- 1 7 10 7 5 101\n+ 1 7 10 . . ."));
        assert_eq!(
            run(&mut op, &mut h, 1, "- 7 20 103\n- 7 20 102\n- 7 20 99"),
            lines(
                "- 2 7 20 7 20 103\n+ 2 7 20 7 20 102\n- 2 7 20 7 20 102\n+ 2 7 20 7 20 99\n- 2 7 20 7 20 99\n+ 2 7 20 7 15 100"
            )
        );
        // An update moves a left row to another time (and match).
        assert_eq!(
            run(&mut op, &mut h, 0, "U- 2 7 20\nU+ 2 7 12"),
            lines("- 2 7 20 7 15 100\n+ 2 7 12 . . .")
        );
        // An update of the right row's time: it now precedes 12.
        assert_eq!(
            run(&mut op, &mut h, 1, "U- 7 15 100\nU+ 7 11 100"),
            lines("- 2 7 12 . . .\n+ 2 7 12 7 11 100")
        );
    }

    /// `l.t >= r.t` over append-only inputs watermarked on both times (an event-time
    /// temporal join): left rows go once the right watermark passes them, versions once a
    /// later version is behind both watermarks, and rows behind their own watermark are
    /// late.
    #[test]
    fn watermarks_free_final_rows_and_dead_versions() {
        use datafusion::physical_expr::expressions::Column;
        let bound = AsOfBound { left_column: 2, right_column: 1, order: AsOfOrder::AtOrAfter, frees: true };
        let interval = crate::plan::IntervalBound {
            side: 0,
            expiry: Arc::new(Column::new("t", 2)),
            other_column: 1,
            other: Arc::new(Column::new("t", 1)),
            data_type: DataType::Int64,
            strict: false,
            index_table: 103,
            text: String::new(),
        };
        let mut op = asof_join_with(JoinType::Inner, bound, vec![interval]);
        let inputs = inputs();
        let mut h = Harness::new();
        let play = |op: &mut HashJoinOperator, h: &mut Harness, script: &str| {
            crate::stream::operator::testing::run_script_inputs(op, h, &inputs, script)
        };
        let out = play(
            &mut op,
            &mut h,
            "1: + 7 10 100
             1: + 7 20 101
             1: + 7 30 102
             + 1 7 25
             + 2 7 35
             barrier
             watermark 2 32
             1: watermark 1 31
             barrier",
        );
        assert_eq!(out, lines("+ 1 7 25 7 20 101\n+ 2 7 35 7 30 102"));
        // Left row 1 (25) is final: the right watermark passed it.
        assert_eq!((h.stored_keys(101), h.stored_keys(102)), (1, 3));
        // The versions at 10 and 20 go with the next change of their key (30 is the last
        // before both watermarks); rows behind their own side's watermark are late.
        let out = play(
            &mut op,
            &mut h,
            "1: + 7 40 103
             + 3 7 28
             1: + 7 29 104
             + 4 7 33
             barrier",
        );
        assert_eq!(out, "+ 4 7 33 7 30 102");
        assert_eq!((h.stored_keys(101), h.stored_keys(102)), (2, 2));
        assert_eq!(h.stored_keys(crate::stream::source::DEAD_LETTERS_TABLE), 2);
    }

    #[test]
    fn earliest_strict_match_and_inner_join() {
        let mut op = asof_join(JoinType::Inner, AsOfOrder::Before);
        let mut h = Harness::new();
        assert_eq!(run(&mut op, &mut h, 1, "+ 7 10 100\n+ 7 30 101"), "");
        // l.t < r.t: 10 matches 30 (not 10 itself), 5 matches 10, 30 nothing.
        assert_eq!(
            run(&mut op, &mut h, 0, "+ 1 7 10\n+ 2 7 5\n+ 3 7 30"),
            lines("+ 1 7 10 7 30 101\n+ 2 7 5 7 10 100")
        );
        // A right row at 20 takes 10 from 30; one at 8 takes 5 from 10.
        assert_eq!(
            run(&mut op, &mut h, 1, "+ 7 20 102\n+ 7 8 103"),
            lines("- 1 7 10 7 30 101\n+ 1 7 10 7 20 102\n- 2 7 5 7 10 100\n+ 2 7 5 7 8 103")
        );
        // Deleting 20 hands 10 back to 30; deleting 30 then leaves nothing for it.
        assert_eq!(
            run(&mut op, &mut h, 1, "- 7 20 102\n- 7 30 101"),
            lines("- 1 7 10 7 20 102\n+ 1 7 10 7 30 101\n- 1 7 10 7 30 101")
        );
        assert_eq!(run(&mut op, &mut h, 0, "- 2 7 5"), "- 2 7 5 7 8 103");
    }
}
