use datafusion::arrow::datatypes::{Field, Schema};

use super::*;
use crate::stream::operator::testing::{Harness, chunk, lines, pretty, run_script_inputs, schema};

fn join(join_type: JoinType, null_aware: bool, out_columns: &str) -> HashJoinOperator {
    let node = HashJoinNode {
        join_type,
        left_keys: vec![1],
        right_keys: vec![0],
        residual: None,
        null_aware,
        nulls_equal: false,
        left_table: 1,
        right_table: 2,
        closes: false,
        intervals: Vec::new(),
        lookup: false,
        asof: None,
        watermarks: Vec::new(),
    };
    let left = Side::new(vec![1], vec![0], 2, vec![DataType::Int64; 2], 1, StateMemory::default()).unwrap();
    let right = Side::new(vec![0], vec![1], 2, vec![DataType::Int64; 2], 2, StateMemory::default()).unwrap();
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

/// An inner join of (w, a) and (w, b) on w, which carries a watermark on both sides.
fn windowed_join() -> HashJoinOperator {
    let node = HashJoinNode {
        join_type: JoinType::Inner,
        left_keys: vec![0],
        right_keys: vec![0],
        residual: None,
        null_aware: false,
        nulls_equal: false,
        left_table: 101,
        right_table: 102,
        closes: true,
        intervals: Vec::new(),
        lookup: false,
        asof: None,
        watermarks: Vec::new(),
    };
    let side =
        |table| Side::new(vec![0], vec![1], 2, vec![DataType::Int64; 2], table, StateMemory::default());
    let fields: Vec<Field> =
        "w a w2 b".split_whitespace().map(|n| Field::new(n, DataType::Int64, true)).collect();
    HashJoinOperator::new(&node, side(101).unwrap(), side(102).unwrap(), Arc::new(Schema::new(fields)))
        .with_closing(vec![0, 2])
        .unwrap()
}

#[test]
fn watermarks_on_both_sides_free_rows_that_can_never_match() {
    let inputs = [schema("w:int a:int"), schema("w:int b:int")];
    let mut op = windowed_join();
    let mut h = Harness::new();
    let out = run_script_inputs(
        &mut op,
        &mut h,
        &inputs,
        "+ 10 1
         + 20 2
         1: + 10 100
         1: + 30 101
         watermark 0 15
         1: watermark 0 12
         barrier",
    );
    // The output's watermark is the smaller side's, on both key columns.
    assert_eq!(out, lines("+ 10 1 10 100\nwatermark 0 12\nwatermark 2 12"));
    // Left rows below 12 and right rows below 15 are gone; each table keeps one row and
    // the watermark of its side.
    assert_eq!((h.stored_keys(101), h.stored_keys(102)), (2, 2));

    // Left 12 is behind the left watermark: late. Right 13 is on time but behind the left
    // watermark: joined with what the left keeps (nothing), not stored.
    let out = run_script_inputs(
        &mut op,
        &mut h,
        &inputs,
        "+ 12 3
         1: + 13 102
         + 30 4
         1: + 20 103
         barrier",
    );
    assert_eq!(out, lines("+ 30 4 30 101\n+ 20 2 20 103"));
    assert_eq!((h.stored_keys(101), h.stored_keys(102)), (3, 3));
    assert_eq!(h.stored_keys(crate::stream::source::DEAD_LETTERS_TABLE), 1);

    // A restarted join knows both watermarks: left 14 is late, right 14 is not stored, a
    // retraction of a freed right row is late too; the output watermark moves from the
    // recorded ones.
    let mut op = windowed_join();
    let out = run_script_inputs(
        &mut op,
        &mut h,
        &inputs,
        "1: + 14 104
         + 14 5
         + 16 6
         1: - 10 100
         1: watermark 0 25
         watermark 0 18
         barrier",
    );
    assert_eq!(out, lines("watermark 0 15\nwatermark 2 15\nwatermark 0 18\nwatermark 2 18"));
    assert_eq!(h.stored_keys(crate::stream::source::DEAD_LETTERS_TABLE), 3);
    // Left rows below 25 freed: (16, 6) and (20, 2) go, (30, 4) stays; right rows below
    // 18 are none but (20, 103) and (30, 101) stay.
    assert_eq!((h.stored_keys(101), h.stored_keys(102)), (2, 3));
}

/// `r.ts BETWEEN l.ts AND l.ts + 10` on `l.k = r.k`: left (id k ts), right (k ts id).
fn interval_join(join_type: JoinType) -> HashJoinOperator {
    use datafusion::logical_expr::Operator as BinaryOp;
    use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
    let column = |name: &str, i: usize| -> Arc<dyn PhysicalExpr> { Arc::new(Column::new(name, i)) };
    let plus_ten = |e: Arc<dyn PhysicalExpr>| -> Arc<dyn PhysicalExpr> {
        Arc::new(BinaryExpr::new(e, BinaryOp::Plus, Arc::new(Literal::new(ScalarValue::Int64(Some(10))))))
    };
    let compare = |l, op, r| -> Arc<dyn PhysicalExpr> { Arc::new(BinaryExpr::new(l, op, r)) };
    // Over the joined row: l.id 0, l.k 1, l.ts 2, r.k 3, r.ts 4, r.id 5.
    let residual = compare(
        compare(column("ts2", 4), BinaryOp::GtEq, column("ts", 2)),
        BinaryOp::And,
        compare(column("ts2", 4), BinaryOp::LtEq, plus_ten(column("ts", 2))),
    );
    let bound = |side: usize, expiry, other_column, other, index_table| crate::plan::IntervalBound {
        side,
        expiry,
        other_column,
        other,
        data_type: DataType::Int64,
        strict: false,
        index_table,
        text: String::new(),
    };
    let node = HashJoinNode {
        join_type,
        left_keys: vec![1],
        right_keys: vec![0],
        residual: Some(residual),
        null_aware: false,
        nulls_equal: false,
        left_table: 101,
        right_table: 102,
        closes: false,
        intervals: vec![
            // Right rows go once the left watermark passes their ts; left rows once the
            // right watermark passes ts + 10.
            bound(1, column("ts", 1), 2, column("ts", 2), 104),
            bound(0, plus_ten(column("ts", 2)), 1, column("ts", 1), 103),
        ],
        lookup: false,
        asof: None,
        watermarks: Vec::new(),
    };
    let left = Side::new(vec![1], vec![0], 3, vec![DataType::Int64; 3], 101, StateMemory::default()).unwrap();
    let right =
        Side::new(vec![0], vec![2], 3, vec![DataType::Int64; 3], 102, StateMemory::default()).unwrap();
    let fields: Vec<Field> =
        "id k ts k2 ts2 id2".split_whitespace().map(|n| Field::new(n, DataType::Int64, true)).collect();
    HashJoinOperator::new(&node, left, right, Arc::new(Schema::new(fields)))
        .with_intervals(&node.intervals, [schema("id:int k:int ts:int"), schema("k:int ts:int id:int")])
        .unwrap()
}

/// Drives an [`interval_join`] through a script over its two inputs.
fn run_interval(op: &mut HashJoinOperator, h: &mut Harness, script: &str) -> String {
    run_script_inputs(op, h, &[schema("id:int k:int ts:int"), schema("k:int ts:int id:int")], script)
}

#[test]
fn interval_join_frees_rows_behind_the_other_sides_watermark() {
    let mut op = interval_join(JoinType::Inner);
    let mut h = Harness::new();
    let out = run_interval(
        &mut op,
        &mut h,
        "+ 1 7 100
         + 2 7 105
         1: + 7 103 50
         barrier
         watermark 2 104
         1: watermark 1 112
         barrier",
    );
    assert_eq!(out, "+ 1 7 100 7 103 50");
    // Right row 50 (ts 103) is behind the left watermark 104; left row 1 (ts 100 + 10) is
    // behind the right watermark 112. Each index keeps its rows and the watermark of the
    // side that frees it.
    assert_eq!((h.stored_keys(101), h.stored_keys(102)), (1, 0));
    assert_eq!((h.stored_keys(103), h.stored_keys(104)), (2, 1));
    // Rows behind their own side's watermark are late: kept as dead letters, not joined.
    // A row on time meets what is kept.
    let out = run_interval(
        &mut op,
        &mut h,
        "+ 3 7 90
         1: + 7 100 51
         1: + 7 113 52
         barrier",
    );
    assert_eq!(out, "+ 2 7 105 7 113 52");
    assert_eq!(h.stored_keys(crate::stream::source::DEAD_LETTERS_TABLE), 2);
}

#[test]
fn interval_left_join_keeps_padded_rows_of_freed_rows() {
    let mut op = interval_join(JoinType::Left);
    let mut h = Harness::new();
    let out = run_interval(
        &mut op,
        &mut h,
        "+ 1 7 100
         + 2 8 100
         barrier
         1: + 7 120 50
         1: watermark 1 150
         barrier
         1: + 8 160 51",
    );
    // Row 1 meets no partner in time; row 2's partner would come too late. Both are freed
    // by the right watermark (150 > 110) and keep their padded rows.
    assert_eq!(out, "+ 1 7 100 . . .\n+ 2 8 100 . . .");
    assert_eq!(h.stored_keys(101), 0);
}

#[test]
fn interval_join_output_carries_each_sides_watermark_held_back_by_its_bound() {
    use crate::plan::{HeldBack, JoinWatermark};
    use datafusion::logical_expr::Operator as BinaryOp;
    use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
    let column = |name: &str, i: usize| -> Arc<dyn PhysicalExpr> { Arc::new(Column::new(name, i)) };
    let minus_ten = |e: Arc<dyn PhysicalExpr>| -> Arc<dyn PhysicalExpr> {
        Arc::new(BinaryExpr::new(e, BinaryOp::Minus, Arc::new(Literal::new(ScalarValue::Int64(Some(10))))))
    };
    let node_watermarks = vec![
        // A left row (ts) meets right rows up to ts + 10: the right watermark W reaches back
        // to left rows from W - 10.
        JoinWatermark {
            side: 0,
            column: 2,
            held_back: Some(HeldBack { other_column: 1, lower: minus_ten(column("ts", 1)) }),
            padded: false,
        },
        // A right row meets left rows at or before it: the left watermark W reaches back
        // to right rows from W.
        JoinWatermark {
            side: 1,
            column: 1,
            held_back: Some(HeldBack { other_column: 2, lower: column("ts", 2) }),
            padded: false,
        },
    ];
    let mut op = interval_join(JoinType::Inner).with_held_watermarks(&node_watermarks, &[2, 4]).unwrap();
    let mut h = Harness::new();
    let out = run_interval(
        &mut op,
        &mut h,
        "watermark 2 104
         1: watermark 1 112
         barrier
         watermark 2 130
         1: watermark 1 113
         1: watermark 1 111",
    );
    // Left ts: min(104, 112 - 10), then min(130, 113 - 10); right ts: min(112, 104), then
    // min(112, 130) and min(113, 130). Nothing goes back.
    assert_eq!(out, "watermark 2 102\nwatermark 4 104\nwatermark 4 112\nwatermark 2 103\nwatermark 4 113");
}
