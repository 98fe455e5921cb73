use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};

use super::*;
use crate::stream::operator::testing::{Harness, chunk, lines, pretty, schema};

fn call(
    kind: AggKind,
    input: Option<usize>,
    input_type: DataType,
    output_type: DataType,
    value_table: Option<TableId>,
) -> AggCall {
    AggCall { kind, input, input_type, output_type, value_table }
}

fn grouped() -> HashAggOperator {
    let i = DataType::Int64;
    let node = HashAggNode {
        group_len: 1,
        calls: vec![
            call(AggKind::CountRows, None, DataType::Null, i.clone(), None),
            call(AggKind::Sum, Some(1), i.clone(), i.clone(), None),
            call(AggKind::Min, Some(1), i.clone(), i.clone(), Some(11)),
            call(AggKind::Max, Some(1), i.clone(), i.clone(), Some(12)),
            call(AggKind::CountDistinct, Some(1), i.clone(), i.clone(), Some(13)),
        ],
        group_table: 10,
    };
    let fields: Vec<Field> = ["g", "n", "sum", "min", "max", "distinct"]
        .iter()
        .map(|n| Field::new(*n, DataType::Int64, true))
        .collect();
    HashAggOperator::new(&node, &[i.clone(), i], Arc::new(Schema::new(fields))).unwrap()
}

#[test]
fn min_and_max_survive_deleting_the_extreme() {
    let mut agg = grouped();
    let mut harness = Harness::new();
    let input = schema("g:int v:int");
    let out = agg.on_chunk(&harness.ctx, 0, chunk(&input, "+ 1 10\n+ 1 30\n+ 1 30\n+ 2 5")).unwrap();
    assert_eq!(pretty(&out), lines("+ 1 3 70 10 30 2\n+ 2 1 5 5 5 1"));
    harness.commit(&mut agg);

    // Delete one copy of the max: it stays; delete the other: the next one shows.
    let out = agg.on_chunk(&harness.ctx, 0, chunk(&input, "- 1 30")).unwrap();
    assert_eq!(pretty(&out), lines("U- 1 3 70 10 30 2\nU+ 1 2 40 10 30 2"));
    let out = agg.on_chunk(&harness.ctx, 0, chunk(&input, "- 1 30\n- 2 5")).unwrap();
    assert_eq!(pretty(&out), lines("U- 1 2 40 10 30 2\nU+ 1 1 10 10 10 1\n- 2 1 5 5 5 1"));
    harness.commit(&mut agg);

    // An update that moves a row between groups; NULLs are ignored but counted by count(*).
    let out = agg.on_chunk(&harness.ctx, 0, chunk(&input, "U- 1 10\nU+ 3 10\n+ 3 .")).unwrap();
    assert_eq!(pretty(&out), lines("- 1 1 10 10 10 1\n+ 3 2 10 10 10 1"));
}

#[test]
fn without_group_by_one_row_always_exists() {
    let i = DataType::Int64;
    let node = HashAggNode {
        group_len: 0,
        calls: vec![
            call(AggKind::CountRows, None, DataType::Null, i.clone(), None),
            call(AggKind::Sum, Some(0), i.clone(), i.clone(), None),
            call(AggKind::BoolAnd, Some(1), DataType::Boolean, DataType::Boolean, None),
            call(
                AggKind::StringAgg { delimiter: ",".into() },
                Some(2),
                DataType::Utf8,
                DataType::Utf8,
                Some(21),
            ),
        ],
        group_table: 20,
    };
    let out_schema = Arc::new(Schema::new(vec![
        Field::new("n", i.clone(), true),
        Field::new("s", i.clone(), true),
        Field::new("all", DataType::Boolean, true),
        Field::new("names", DataType::Utf8, true),
    ]));
    let mut agg = HashAggOperator::new(&node, &[i, DataType::Boolean, DataType::Utf8], out_schema).unwrap();
    let mut harness = Harness::new();
    let out = agg.on_barrier(&harness.ctx, 1).unwrap();
    assert_eq!(pretty(&out), "+ 0 . . .");
    harness.commit(&mut agg);

    let input = schema("v:int b:bool s:text");
    let out = agg.on_chunk(&harness.ctx, 0, chunk(&input, "+ 4 true b\n+ 6 false a")).unwrap();
    assert_eq!(pretty(&out), lines("U- 0 . . .\nU+ 2 10 false a,b"));
    harness.commit(&mut agg);
    let out = agg.on_chunk(&harness.ctx, 0, chunk(&input, "- 4 true b\n- 6 false a")).unwrap();
    assert_eq!(pretty(&out), lines("U- 2 10 false a,b\nU+ 0 . . ."));

    // After a restart (a fresh operator over the committed state) nothing is re-emitted.
    harness.commit(&mut agg);
    let mut restarted = HashAggOperator::new(
        &node,
        &[DataType::Int64, DataType::Boolean, DataType::Utf8],
        agg.schema.clone(),
    )
    .unwrap();
    assert!(restarted.on_barrier(&harness.ctx, 5).unwrap().is_empty());
}
