use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};

use super::*;
use crate::state::StateMemory;
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

/// Applies `input` and ends the epoch's processing: the aggregate emits at the barrier.
fn step(agg: &mut HashAggOperator, harness: &Harness, input: Chunk) -> Vec<Chunk> {
    let mut out = agg.on_chunk(&harness.ctx, 0, input).unwrap();
    out.extend(agg.on_barrier(&harness.ctx, 1).unwrap());
    out
}

fn grouped() -> HashAggOperator {
    grouped_within(StateMemory::default())
}

fn grouped_within(memory: StateMemory) -> HashAggOperator {
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
        merge: false,
    };
    let fields: Vec<Field> = ["g", "n", "sum", "min", "max", "distinct"]
        .iter()
        .map(|n| Field::new(*n, DataType::Int64, true))
        .collect();
    HashAggOperator::new(&node, &[i.clone(), i], Arc::new(Schema::new(fields)), memory).unwrap()
}

#[test]
fn min_and_max_survive_deleting_the_extreme() {
    let mut agg = grouped();
    let mut harness = Harness::new();
    let input = schema("g:int v:int");
    let out = step(&mut agg, &harness, chunk(&input, "+ 1 10\n+ 1 30\n+ 1 30\n+ 2 5"));
    assert_eq!(pretty(&out), lines("+ 1 3 70 10 30 2\n+ 2 1 5 5 5 1"));
    harness.commit(&mut agg);

    // Delete one copy of the max: it stays; delete the other: the next one shows.
    let out = step(&mut agg, &harness, chunk(&input, "- 1 30"));
    assert_eq!(pretty(&out), lines("U- 1 3 70 10 30 2\nU+ 1 2 40 10 30 2"));
    let out = step(&mut agg, &harness, chunk(&input, "- 1 30\n- 2 5"));
    assert_eq!(pretty(&out), lines("U- 1 2 40 10 30 2\nU+ 1 1 10 10 10 1\n- 2 1 5 5 5 1"));
    harness.commit(&mut agg);

    // An update that moves a row between groups; NULLs are ignored but counted by count(*).
    let out = step(&mut agg, &harness, chunk(&input, "U- 1 10\nU+ 3 10\n+ 3 ."));
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
        merge: false,
    };
    let out_schema = Arc::new(Schema::new(vec![
        Field::new("n", i.clone(), true),
        Field::new("s", i.clone(), true),
        Field::new("all", DataType::Boolean, true),
        Field::new("names", DataType::Utf8, true),
    ]));
    let types = [i, DataType::Boolean, DataType::Utf8];
    let mut agg = HashAggOperator::new(&node, &types, out_schema, StateMemory::default()).unwrap();
    let mut harness = Harness::new();
    let out = agg.on_barrier(&harness.ctx, 1).unwrap();
    assert_eq!(pretty(&out), "+ 0 . . .");
    harness.commit(&mut agg);

    let input = schema("v:int b:bool s:text");
    let out = step(&mut agg, &harness, chunk(&input, "+ 4 true b\n+ 6 false a"));
    assert_eq!(pretty(&out), lines("U- 0 . . .\nU+ 2 10 false a,b"));
    harness.commit(&mut agg);
    let out = step(&mut agg, &harness, chunk(&input, "- 4 true b\n- 6 false a"));
    assert_eq!(pretty(&out), lines("U- 2 10 false a,b\nU+ 0 . . ."));

    // After a restart (a fresh operator over the committed state) nothing is re-emitted.
    harness.commit(&mut agg);
    let mut restarted =
        HashAggOperator::new(&node, &types, agg.schema.clone(), StateMemory::default()).unwrap();
    assert!(restarted.on_barrier(&harness.ctx, 5).unwrap().is_empty());
}

#[test]
fn a_group_changed_many_times_in_an_epoch_emits_once() {
    let mut agg = grouped();
    let mut harness = Harness::new();
    let input = schema("g:int v:int");
    assert!(agg.on_chunk(&harness.ctx, 0, chunk(&input, "+ 1 10\n+ 2 5")).unwrap().is_empty());
    assert!(agg.on_chunk(&harness.ctx, 0, chunk(&input, "+ 1 20\n- 2 5\n+ 3 7")).unwrap().is_empty());
    let out = agg.on_barrier(&harness.ctx, 1).unwrap();
    // Group 2 came and went within the epoch: nothing to show.
    assert_eq!(pretty(&out), lines("+ 1 2 30 10 20 2\n+ 3 1 7 7 7 1"));
    harness.commit(&mut agg);
    // Back to what it showed: no update.
    agg.on_chunk(&harness.ctx, 0, chunk(&input, "+ 1 5")).unwrap();
    agg.on_chunk(&harness.ctx, 0, chunk(&input, "- 1 5")).unwrap();
    assert!(agg.on_barrier(&harness.ctx, 2).unwrap().is_empty());
}

/// Applies a changelog in text form to the rows it describes, keyed by the first column.
fn apply(view: &mut std::collections::BTreeMap<String, String>, chunks: &[Chunk]) {
    for line in pretty(chunks).lines() {
        let (op, row) = line.split_once(' ').unwrap();
        let key = row.split(' ').next().unwrap().to_string();
        match op {
            "+" | "U+" => assert!(view.insert(key, row.to_string()).is_none(), "{line}: the row exists"),
            _ => assert_eq!(view.remove(&key).as_deref(), Some(row), "{line}: no such row"),
        }
    }
}

/// The same changes through an aggregate whose cache holds a few groups and one that
/// holds all: evicted groups reload exactly, so both show the same rows.
#[test]
fn a_tiny_cache_budget_gives_the_same_results() {
    let mut tiny = grouped_within(StateMemory::new(600, usize::MAX / 2));
    let mut roomy = grouped();
    let (mut h1, mut h2) = (Harness::new(), Harness::new());
    let input = schema("g:int v:int");
    let mut text = Vec::new();
    let mut live: Vec<(i64, i64)> = Vec::new();
    let (mut tiny_view, mut roomy_view) = (Default::default(), Default::default());
    for epoch in 0..6i64 {
        for i in 0..40i64 {
            let (g, v) = ((i * 7 + epoch) % 23, (i * 13 + epoch * 5) % 17);
            if (i + epoch) % 3 == 0 && !live.is_empty() {
                let (g, v) = live.remove((i as usize * 5) % live.len());
                text.push(format!("- {g} {v}"));
            } else {
                live.push((g, v));
                text.push(format!("+ {g} {v}"));
            }
        }
        let data = chunk(&input, &text.join("\n"));
        text.clear();
        let a = step(&mut tiny, &h1, data.clone());
        let b = step(&mut roomy, &h2, data);
        apply(&mut tiny_view, &a);
        apply(&mut roomy_view, &b);
        assert_eq!(tiny_view, roomy_view, "epoch {epoch}");
        h1.commit(&mut tiny);
        h2.commit(&mut roomy);
        assert!(tiny.groups.len() < 23, "the tiny cache holds {} groups", tiny.groups.len());
    }
}

/// min and max over an append-only input keep their extreme inline (no value table):
/// right answers, NULLs ignored, the state survives a restart, and a retraction (which
/// the planner rules out) is an error rather than a wrong answer.
#[test]
fn append_only_min_and_max_keep_the_extreme_inline() {
    let i = DataType::Int64;
    let node = HashAggNode {
        group_len: 1,
        calls: vec![
            call(AggKind::Min, Some(1), i.clone(), i.clone(), None),
            call(AggKind::Max, Some(1), i.clone(), i.clone(), None),
            call(AggKind::CountRows, None, DataType::Null, i.clone(), None),
        ],
        group_table: 30,
        merge: false,
    };
    let fields: Vec<Field> =
        ["g", "mn", "mx", "n"].iter().map(|n| Field::new(*n, DataType::Int64, true)).collect();
    let schema_out = Arc::new(Schema::new(fields));
    let types = [i.clone(), i];
    let mut agg = HashAggOperator::new(&node, &types, schema_out.clone(), StateMemory::default()).unwrap();
    assert_eq!(agg.state_tables(), [30]);
    let mut harness = Harness::new();
    let input = schema("g:int v:int");
    let out = step(&mut agg, &harness, chunk(&input, "+ 1 10\n+ 1 -3\n+ 2 .\n+ 1 7"));
    assert_eq!(pretty(&out), lines("+ 1 -3 10 3\n+ 2 . . 1"));
    harness.commit(&mut agg);

    let mut restarted = HashAggOperator::new(&node, &types, schema_out, StateMemory::default()).unwrap();
    let out = step(&mut restarted, &harness, chunk(&input, "+ 2 5\n+ 1 4\n+ 1 11"));
    assert_eq!(pretty(&out), lines("U- 2 . . 1\nU+ 2 5 5 2\nU- 1 -3 10 3\nU+ 1 -3 11 5"));
    assert!(restarted.on_chunk(&harness.ctx, 0, chunk(&input, "- 1 11")).is_err());
}

/// count(*), count, sum, avg and bool_or, in two phases (the inline min / max of
/// append-only inputs is covered by the differential test).
fn two_phase() -> (Vec<partial::PartialAggOperator>, HashAggOperator) {
    let (i, f, b) = (DataType::Int64, DataType::Float64, DataType::Boolean);
    let calls = vec![
        call(AggKind::CountRows, None, DataType::Null, i.clone(), None),
        call(AggKind::Count, Some(1), i.clone(), i.clone(), None),
        call(AggKind::Sum, Some(1), i.clone(), i.clone(), None),
        call(AggKind::Avg, Some(2), f.clone(), f.clone(), None),
        call(AggKind::BoolOr, Some(3), b.clone(), b.clone(), None),
    ];
    let input_types = [i.clone(), i.clone(), f.clone(), b.clone()];
    // Partial columns: g, _rows, count(v), sum(v) count and sum, avg(w) count and sum,
    // bool_or(x) trues and falses.
    let mut partial_fields = vec![Field::new("g", i.clone(), true), Field::new("_rows", i.clone(), true)];
    let mut merging = Vec::new();
    for c in &calls {
        let first = partial_fields.len();
        for (j, t) in c.partial_types().into_iter().enumerate() {
            partial_fields.push(Field::new(format!("p{first}_{j}"), t, true));
        }
        let input = if c.kind == AggKind::CountRows { None } else { Some(first) };
        merging.push(AggCall { input, ..c.clone() });
    }
    let partial_schema = Arc::new(Schema::new(partial_fields));
    let partial_node = crate::plan::PartialAggNode { group_len: 1, calls: calls.clone() };
    let partials = (0..2)
        .map(|_| {
            partial::PartialAggOperator::new(&partial_node, &input_types, partial_schema.clone()).unwrap()
        })
        .collect();
    let node = HashAggNode { group_len: 1, calls: merging, group_table: 20, merge: true };
    let fields: Vec<Field> = [("g", &i), ("n", &i), ("nv", &i), ("sv", &i), ("aw", &f), ("any", &b)]
        .iter()
        .map(|(n, t)| Field::new(*n, (*t).clone(), true))
        .collect();
    let partial_types: Vec<DataType> =
        partial_schema.fields().iter().map(|f| f.data_type().clone()).collect();
    let merged =
        HashAggOperator::new(&node, &partial_types, Arc::new(Schema::new(fields)), StateMemory::default())
            .unwrap();
    (partials, merged)
}

#[test]
fn two_phases_merge_partials_in_any_order() {
    let (mut partials, mut merged) = two_phase();
    let mut harness = Harness::new();
    let input = schema("g:int v:int w:float x:bool");
    // Instance 1 sees a row's insert; instance 0 its delete, which arrives first.
    let mut epoch = |partials: &mut Vec<partial::PartialAggOperator>, chunks: [&str; 2]| {
        let mut out = Vec::new();
        for (i, text) in chunks.iter().enumerate() {
            let mut partial = partials[i].on_chunk(&harness.ctx, 0, chunk(&input, text)).unwrap();
            partial.extend(partials[i].on_barrier(&harness.ctx, 1).unwrap());
            for c in partial {
                out.extend(merged.on_chunk(&harness.ctx, 0, c).unwrap());
            }
        }
        out.extend(merged.on_barrier(&harness.ctx, 1).unwrap());
        harness.commit(&mut merged);
        pretty(&out)
    };
    assert_eq!(
        epoch(&mut partials, ["+ 1 10 1.5 false\n+ 2 7 . .", "+ 1 20 2.5 true\n+ 1 . . false"]),
        lines("+ 1 3 2 30 2.0 true\n+ 2 1 1 7 . .")
    );
    assert_eq!(
        epoch(&mut partials, ["- 2 7 . .", "+ 2 7 . .\n+ 1 5 0.5 false"]),
        lines("U- 1 3 2 30 2.0 true\nU+ 1 4 3 35 1.5 true")
    );
    // A group whose rows all go, across instances.
    let out = epoch(&mut partials, ["- 2 7 . .\n- 1 5 0.5 false", "- 1 20 2.5 true"]);
    assert_eq!(out, lines("- 2 1 1 7 . .\nU- 1 4 3 35 1.5 true\nU+ 1 2 1 10 1.5 false"));
}
