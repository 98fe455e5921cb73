use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};

use super::*;
use crate::state::StateMemory;
use crate::stream::operator::testing::{Harness, chunk, lines, pretty, run_script, schema};

fn call(
    kind: AggKind,
    input: Option<usize>,
    input_type: DataType,
    output_type: DataType,
    value_table: Option<TableId>,
) -> AggCall {
    AggCall {
        kind,
        input,
        input_type,
        output_type,
        value_table,
        order_by: Vec::new(),
        filter: None,
        distinct: false,
    }
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
        closing_column: None,
        emit_on_close: false,
        empty_set_id: None,
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
        closing_column: None,
        emit_on_close: false,
        empty_set_id: None,
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
        closing_column: None,
        emit_on_close: false,
        empty_set_id: None,
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
    let partial_node = crate::plan::PartialAggNode {
        group_len: 1,
        calls: calls.clone(),
        closing_column: None,
        group_table: 20,
    };
    let partials = (0..2)
        .map(|_| {
            partial::PartialAggOperator::new(&partial_node, &input_types, partial_schema.clone()).unwrap()
        })
        .collect();
    let node = HashAggNode {
        group_len: 1,
        calls: merging,
        group_table: 20,
        merge: true,
        closing_column: None,
        emit_on_close: false,
        empty_set_id: None,
    };
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

/// GROUP BY k, ws with ws's watermark closing groups: count(*) and max(v) over a
/// retracting input (a value table), optionally EMIT ON WINDOW CLOSE.
fn windowed(emit_on_close: bool) -> (HashAggNode, SchemaRef) {
    let i = DataType::Int64;
    let node = HashAggNode {
        group_len: 2,
        calls: vec![
            call(AggKind::CountRows, None, DataType::Null, i.clone(), None),
            call(AggKind::Max, Some(2), i.clone(), i.clone(), Some(41)),
        ],
        group_table: 40,
        merge: false,
        closing_column: Some(1),
        emit_on_close,
        empty_set_id: None,
    };
    let fields: Vec<Field> =
        ["k", "ws", "n", "top"].iter().map(|n| Field::new(*n, DataType::Int64, true)).collect();
    (node, Arc::new(Schema::new(fields)))
}

fn windowed_agg(node: &HashAggNode, out: &SchemaRef) -> HashAggOperator {
    let i = DataType::Int64;
    HashAggOperator::new(node, &[i.clone(), i.clone(), i], out.clone(), StateMemory::default()).unwrap()
}

/// Keys of `table` in the committed store.
fn dead_letters(harness: &Harness) -> Vec<crate::stream::source::DeadLetterRecord> {
    let mut records = Vec::new();
    harness
        .ctx
        .snapshot
        .scan(crate::stream::source::DEAD_LETTERS_TABLE, &mut |_, value| {
            records.push(serde_json::from_slice(value).unwrap());
            Ok(())
        })
        .unwrap();
    records
}

/// Groups behind the watermark are freed in memory and in the store (group and value
/// tables); a later row for one is late: not applied, kept as a dead letter. A NULL
/// window never closes.
#[test]
fn groups_behind_the_watermark_are_freed_and_late_rows_kept() {
    let (node, out) = windowed(false);
    let mut agg = windowed_agg(&node, &out);
    let mut harness = Harness::new();
    let input = schema("k:int ws:int v:int");
    let output = run_script(
        &mut agg,
        &mut harness,
        &input,
        "+ 1 10 5
         + 1 20 6
         + 2 10 7
         + 3 . 1
         watermark 1 15
         barrier",
    );
    assert_eq!(
        output,
        lines(
            "+ 1 10 1 5
             + 1 20 1 6
             + 2 10 1 7
             + 3 . 1 1
             watermark 1 15"
        )
    );
    // Left: groups (1, 20) and (3, NULL), and the closed bound; their max values.
    assert_eq!(agg.groups.len(), 2);
    assert_eq!(harness.stored_keys(40), 3);
    assert_eq!(harness.stored_keys(41), 2);

    // A row of a closed window is late; one of an open window counts.
    let output = run_script(&mut agg, &mut harness, &input, "+ 2 10 9\n+ 1 20 8\n- 1 10 5\nbarrier");
    assert_eq!(output, lines("U- 1 20 1 6\nU+ 1 20 2 8"));
    let late = dead_letters(&harness);
    assert_eq!(late.len(), 2);
    assert!(late.iter().all(|l| l.reason == "late"));
    assert_eq!(late[0].payload, r#"{"k":2,"ws":10,"v":9}"#);
    assert_eq!(late[0].error, "late row: ws 10 is behind the watermark 15");
    assert!(late[1].error.starts_with("late retraction"), "{}", late[1].error);

    // A restarted operator knows the bound from its state.
    let mut restarted = windowed_agg(&node, &out);
    let output = run_script(&mut restarted, &mut harness, &input, "+ 1 12 1\n+ 4 30 1\nbarrier");
    assert_eq!(output, "+ 4 30 1 1");
    assert_eq!(dead_letters(&harness).len(), 3);
}

/// EMIT ON WINDOW CLOSE: nothing shows while a window is open; each closed group shows
/// once, in window order, including groups only in the store after a restart.
#[test]
fn emit_on_window_close_shows_each_group_once_when_it_closes() {
    let (node, out) = windowed(true);
    let mut agg = windowed_agg(&node, &out);
    let mut harness = Harness::new();
    let input = schema("k:int ws:int v:int");
    let output = run_script(
        &mut agg,
        &mut harness,
        &input,
        "+ 2 10 5\n+ 1 20 6\n+ 1 10 7\n- 2 10 5\n+ 2 10 3\nbarrier",
    );
    assert_eq!(output, "");
    let output = run_script(&mut agg, &mut harness, &input, "+ 1 10 1\nwatermark 1 11\nbarrier");
    assert_eq!(output, lines("+ 1 10 2 7\n+ 2 10 1 3\nwatermark 1 11"));

    let mut restarted = windowed_agg(&node, &out);
    let output =
        run_script(&mut restarted, &mut harness, &input, "+ 1 20 9\n+ 5 10 1\nwatermark 1 20\nbarrier");
    assert_eq!(output, lines("watermark 1 20"));
    let output = run_script(&mut restarted, &mut harness, &input, "watermark 1 21\nbarrier");
    assert_eq!(output, lines("+ 1 20 2 9\nwatermark 1 21"));
    assert_eq!(harness.stored_keys(40), 1, "only the closed bound is left");
    assert_eq!(harness.stored_keys(41), 0);
    assert_eq!(dead_letters(&harness).len(), 1);
}

/// Parallel instances share the group table: closing groups found only in the store
/// (after a restart), each instance emits just the groups that hash to it — each group
/// once in all (the bug: every instance emitted every stored group).
#[test]
fn parallel_instances_emit_only_their_own_stored_groups() {
    let (node, out) = windowed(true);
    let input = schema("k:int ws:int v:int");
    let mut harness = Harness::new();
    let rows = chunk(&input, "+ 1 10 1\n+ 2 10 2\n+ 3 10 3\n+ 4 10 4\n+ 5 20 5");
    let keys = rows.data.columns()[..2].to_vec();
    let targets = crate::stream::exchange::targets(&keys, rows.len(), 2).unwrap();
    let contexts: Vec<OperatorContext> =
        (0..2).map(|instance| OperatorContext { instance, instances: 2, ..harness.context() }).collect();
    let mut instances: Vec<HashAggOperator> = (0..2).map(|_| windowed_agg(&node, &out)).collect();
    for (i, agg) in instances.iter_mut().enumerate() {
        let mine: Vec<bool> = targets.iter().map(|&t| t == i).collect();
        agg.on_chunk(&contexts[i], 0, rows.filter(&mine).unwrap()).unwrap();
        assert!(agg.on_barrier(&contexts[i], 1).unwrap().is_empty());
    }
    let mut batch = crate::state::WriteBatch::default();
    for agg in &mut instances {
        agg.checkpoint(&mut batch);
    }
    crate::state::StateStore::commit(harness.store.as_ref(), batch).unwrap();
    harness.ctx.snapshot = crate::state::StateStore::snapshot(harness.store.as_ref());

    // Restarted: the groups are only in the store.
    let mut shown = Vec::new();
    for instance in 0..2 {
        let ctx = OperatorContext { instance, instances: 2, ..harness.context() };
        let mut agg = windowed_agg(&node, &out);
        agg.on_watermark(&ctx, 0, 1, &ScalarValue::Int64(Some(15))).unwrap();
        shown.extend(agg.on_barrier(&ctx, 2).unwrap());
    }
    let mut lines: Vec<String> = pretty(&shown).lines().map(str::to_string).collect();
    lines.sort();
    assert_eq!(lines, ["+ 1 10 1 1", "+ 2 10 1 2", "+ 3 10 1 3", "+ 4 10 1 4"]);
}
