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
