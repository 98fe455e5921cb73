use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::ScalarValue;

use super::*;
use crate::plan::{Frame, FrameBound, WindowCall, WindowKind};
use crate::stream::operator::testing::{Harness, chunk, lines, pretty, run_script, schema};

fn call(kind: WindowKind, input: Option<usize>, output_type: DataType, frame: Frame) -> WindowCall {
    WindowCall { kind, input, output_type, frame, ignore_nulls: false, text: String::new() }
}

fn rows(start: FrameBound, end: FrameBound) -> Frame {
    Frame { rows: true, start, end }
}

fn range(start: FrameBound, end: FrameBound) -> Frame {
    Frame { rows: false, start, end }
}

use FrameBound::{Offset, Unbounded};

/// Input `id:int g:int ts:int v:int` keyed by id; output the input then one column per
/// call.
fn operator(calls: Vec<WindowCall>, table: TableId) -> OverWindowOperator {
    operator_with(calls, table, false)
}

fn operator_with(calls: Vec<WindowCall>, table: TableId, emit_on_close: bool) -> OverWindowOperator {
    let node = OverWindowNode {
        partition_by: vec![1],
        order_by: vec![(2, SortOptions { descending: false, nulls_first: false })],
        calls: calls.clone(),
        table,
        emit_on_close,
    };
    let mut fields: Vec<Field> =
        ["id", "g", "ts", "v"].iter().map(|n| Field::new(*n, DataType::Int64, true)).collect();
    fields.extend(
        calls.iter().enumerate().map(|(i, c)| Field::new(format!("c{i}"), c.output_type.clone(), true)),
    );
    let types = vec![DataType::Int64; 4];
    OverWindowOperator::new(&node, &types, 4, vec![0], Arc::new(Schema::new(fields)), Default::default())
        .unwrap()
}

#[test]
fn a_change_updates_the_rows_whose_values_it_changes() {
    let calls = vec![
        call(WindowKind::RowNumber, None, DataType::UInt64, rows(Unbounded, Unbounded)),
        call(WindowKind::Sum, Some(3), DataType::Int64, rows(Offset(-1), Offset(0))),
    ];
    let mut op = operator(calls, 9);
    let mut h = Harness::new();
    let s = schema("id:int g:int ts:int v:int");
    let out = op.on_chunk(&h.ctx, 0, chunk(&s, "+ 1 1 10 5\n+ 2 1 20 7\n+ 3 1 30 1\n+ 4 2 10 100")).unwrap();
    assert_eq!(pretty(&out), lines("+ 1 1 10 5 1 5\n+ 2 1 20 7 2 12\n+ 3 1 30 1 3 8\n+ 4 2 10 100 1 100"));
    h.commit(&mut op);
    // A row before the others shifts every row number; the sums change for its
    // neighbour only. Partition 2 is untouched.
    let out = op.on_chunk(&h.ctx, 0, chunk(&s, "+ 5 1 5 2")).unwrap();
    assert_eq!(
        pretty(&out),
        lines(
            "U- 1 1 10 5 1 5\nU+ 1 1 10 5 2 7\nU- 2 1 20 7 2 12\nU+ 2 1 20 7 3 12\n\
             U- 3 1 30 1 3 8\nU+ 3 1 30 1 4 8\n+ 5 1 5 2 1 2"
        )
    );
    h.commit(&mut op);
    // After a restart the partition is read back from the state table.
    let mut op = operator(
        vec![
            call(WindowKind::RowNumber, None, DataType::UInt64, rows(Unbounded, Unbounded)),
            call(WindowKind::Sum, Some(3), DataType::Int64, rows(Offset(-1), Offset(0))),
        ],
        9,
    );
    let out = op.on_chunk(&h.ctx, 0, chunk(&s, "U- 2 1 20 7\nU+ 2 1 20 70\n- 4 2 10 100")).unwrap();
    assert_eq!(
        pretty(&out),
        lines("- 4 2 10 100 1 100\nU- 2 1 20 7 3 12\nU+ 2 1 20 70 3 75\nU- 3 1 30 1 4 8\nU+ 3 1 30 1 4 71")
    );
    h.commit(&mut op);
    assert_eq!(h.stored_keys(9), 4);
}

/// xorshift: deterministic test randomness.
struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The rows a change stream adds up to, as a multiset of row texts; a delete of a row
/// that is not there fails.
fn apply(shown: &mut BTreeMap<String, i64>, text: &str) {
    for line in text.lines().filter(|l| !l.is_empty()) {
        let (op, row) = line.split_once(' ').unwrap();
        let delta = if op.ends_with('-') { -1 } else { 1 };
        let count = shown.entry(row.to_string()).or_default();
        *count += delta;
        assert!(*count >= 0, "deleted a row not shown: {row}");
        if *count == 0 {
            shown.remove(row);
        }
    }
}

#[test]
fn random_changes_keep_every_call_equal_to_a_fresh_computation() {
    let calls = || {
        vec![
            call(WindowKind::RowNumber, None, DataType::UInt64, rows(Unbounded, Unbounded)),
            call(WindowKind::Rank, None, DataType::UInt64, rows(Unbounded, Unbounded)),
            call(WindowKind::DenseRank, None, DataType::UInt64, rows(Unbounded, Unbounded)),
            call(
                WindowKind::Shift { offset: -1, default: ScalarValue::Int64(None) },
                Some(3),
                DataType::Int64,
                rows(Unbounded, Unbounded),
            ),
            call(
                WindowKind::Shift { offset: 2, default: ScalarValue::Int64(Some(-1)) },
                Some(3),
                DataType::Int64,
                rows(Unbounded, Unbounded),
            ),
            WindowCall {
                ignore_nulls: true,
                ..call(WindowKind::FirstValue, Some(3), DataType::Int64, rows(Offset(-2), Offset(2)))
            },
            call(WindowKind::LastValue, Some(3), DataType::Int64, range(Offset(0), Offset(0))),
            call(WindowKind::CountRows, None, DataType::Int64, range(Offset(-3), Offset(3))),
            call(WindowKind::Count, Some(3), DataType::Int64, rows(Unbounded, Offset(0))),
            call(WindowKind::Sum, Some(3), DataType::Int64, rows(Offset(-2), Offset(1))),
            call(WindowKind::Avg, Some(3), DataType::Float64, range(Offset(-5), Offset(0))),
            call(WindowKind::Min, Some(3), DataType::Int64, rows(Unbounded, Offset(0))),
            call(WindowKind::Max, Some(3), DataType::Int64, range(Offset(0), Unbounded)),
            call(WindowKind::Max, Some(3), DataType::Int64, rows(Offset(1), Offset(3))),
            call(WindowKind::Sum, Some(3), DataType::Int64, range(Unbounded, Offset(2))),
            call(
                WindowKind::Session { end: false, gap: 3 },
                None,
                DataType::Int64,
                rows(Unbounded, Unbounded),
            ),
            call(
                WindowKind::Session { end: true, gap: 3 },
                None,
                DataType::Int64,
                rows(Unbounded, Unbounded),
            ),
        ]
    };
    let s = schema("id:int g:int ts:int v:int");
    let mut random = Random(0x5eed);
    let mut h = Harness::new();
    let mut op = operator(calls(), 11);
    // id -> (g, ts, v)
    let mut table: BTreeMap<u64, (u64, u64, Option<u64>)> = BTreeMap::new();
    let mut shown = BTreeMap::new();
    let text = |id: u64, (g, ts, v): (u64, u64, Option<u64>)| {
        format!("{id} {g} {ts} {}", v.map_or(".".to_string(), |v| v.to_string()))
    };
    for step in 0..60 {
        let mut changes = String::new();
        for _ in 0..1 + random.below(6) {
            let id = random.below(40);
            let new = (random.below(3), random.below(12), (random.below(5) > 0).then(|| random.below(20)));
            match table.get(&id).copied() {
                Some(old) if random.below(3) == 0 => {
                    changes += &format!("- {}\n", text(id, old));
                    table.remove(&id);
                }
                Some(old) => {
                    changes += &format!("U- {}\nU+ {}\n", text(id, old), text(id, new));
                    table.insert(id, new);
                }
                None => {
                    changes += &format!("+ {}\n", text(id, new));
                    table.insert(id, new);
                }
            }
        }
        apply(&mut shown, &pretty(&op.on_chunk(&h.ctx, 0, chunk(&s, &changes)).unwrap()));
        if step % 7 == 0 {
            h.commit(&mut op);
        }
        if step % 20 == 19 {
            // A restart: partitions come back from the state table.
            h.commit(&mut op);
            op = operator(calls(), 11);
        }
        let everything: String = table.iter().map(|(&id, &row)| format!("+ {}\n", text(id, row))).collect();
        let mut fresh = BTreeMap::new();
        let mut scratch = operator(calls(), 12);
        apply(
            &mut fresh,
            &pretty(&scratch.on_chunk(&Harness::new().ctx, 0, chunk(&s, &everything)).unwrap()),
        );
        assert_eq!(shown, fresh, "after step {step}: {changes}");
    }
}

#[test]
fn emit_on_window_close_emits_final_rows_once_and_frees_old_ones() {
    let calls = || {
        vec![
            call(WindowKind::RowNumber, None, DataType::UInt64, rows(Unbounded, Unbounded)),
            call(WindowKind::Sum, Some(3), DataType::Int64, range(Unbounded, Offset(0))),
            call(
                WindowKind::Shift { offset: -1, default: ScalarValue::Int64(None) },
                Some(3),
                DataType::Int64,
                rows(Unbounded, Unbounded),
            ),
        ]
    };
    let s = schema("id:int g:int ts:int v:int");
    let mut h = Harness::new();
    let mut op = operator_with(calls(), 21, true);
    // Rows below the watermark are final: they show once, with the watermark after them.
    let out = run_script(&mut op, &mut h, &s, "+ 1 1 10 5\n+ 2 1 20 7\n+ 3 2 15 1\nwatermark 2 16\nbarrier");
    assert_eq!(out, lines("+ 1 1 10 5 1 5 .\n+ 3 2 15 1 1 1 .\nwatermark 2 16"));
    // A row behind the watermark is late; the partition's first rows are freed once no
    // row reads them (lag reads one row back).
    let out = run_script(&mut op, &mut h, &s, "+ 4 1 25 2\n+ 5 1 12 9\nwatermark 2 30\nbarrier");
    assert_eq!(out, lines("+ 2 1 20 7 2 12 5\n+ 4 1 25 2 3 14 7\nwatermark 2 30"));
    let out = run_script(&mut op, &mut h, &s, "+ 6 1 40 1\nwatermark 2 50\nbarrier");
    assert_eq!(out, lines("+ 6 1 40 1 4 15 2\nwatermark 2 50"));
    // Kept: partition 1's row 40 and summary, partition 2's row 15 (the next row's lag)
    // and summary, and the watermark reached.
    assert_eq!(h.stored_keys(21), 5);
    assert_eq!(h.stored_keys(crate::stream::source::DEAD_LETTERS_TABLE), 1);
    // After a restart: row numbers and the running sum go on from the summary; the
    // watermark reached still makes rows late.
    let mut op = operator_with(calls(), 21, true);
    let out = run_script(&mut op, &mut h, &s, "+ 7 1 55 3\n+ 8 2 5 1\nwatermark 2 60\nbarrier");
    assert_eq!(out, lines("+ 7 1 55 3 5 18 1\nwatermark 2 60"));
    assert_eq!(h.stored_keys(crate::stream::source::DEAD_LETTERS_TABLE), 2);
}

#[test]
fn emit_on_window_close_waits_for_the_rows_a_frame_reads_ahead() {
    let calls = vec![
        call(WindowKind::Sum, Some(3), DataType::Int64, rows(Offset(-1), Offset(1))),
        call(WindowKind::Max, Some(3), DataType::Int64, range(Offset(0), Offset(5))),
    ];
    let s = schema("id:int g:int ts:int v:int");
    let mut h = Harness::new();
    let mut op = operator_with(calls, 22, true);
    // ts 10 needs the next row (ROWS 1 FOLLOWING) and values up to 15 (RANGE 5 FOLLOWING).
    let out = run_script(&mut op, &mut h, &s, "+ 1 1 10 5\n+ 2 1 14 7\nwatermark 2 15\nbarrier");
    assert_eq!(out, "");
    let out = run_script(&mut op, &mut h, &s, "+ 3 1 21 1\nwatermark 2 16\nbarrier");
    assert_eq!(out, "+ 1 1 10 5 12 7");
    let out = run_script(&mut op, &mut h, &s, "+ 4 1 30 2\nwatermark 2 40\nbarrier");
    assert_eq!(out, lines("+ 2 1 14 7 13 7\n+ 3 1 21 1 10 1"));
}

/// Parallel instances share the state table: after a restart each finds the partitions
/// with rows waiting that it owns, and every row is emitted once.
#[test]
fn parallel_instances_emit_only_their_own_waiting_partitions() {
    use crate::state::StateStore;
    let calls = || vec![call(WindowKind::RowNumber, None, DataType::UInt64, rows(Unbounded, Unbounded))];
    let s = schema("id:int g:int ts:int v:int");
    let mut h = Harness::new();
    let rows: Vec<(i64, i64)> = (0..24).map(|i| (i, i % 6)).collect();
    let groups: datafusion::arrow::array::ArrayRef =
        Arc::new(datafusion::arrow::array::Int64Array::from_iter_values(rows.iter().map(|r| r.1)));
    let targets = crate::stream::exchange::targets(&[groups], rows.len(), 2).unwrap();
    let contexts = |h: &Harness| -> Vec<OperatorContext> {
        (0..2).map(|instance| OperatorContext { instance, instances: 2, ..h.context() }).collect()
    };
    let mut ops: Vec<OverWindowOperator> = (0..2).map(|_| operator_with(calls(), 23, true)).collect();
    let ctxs = contexts(&h);
    for (instance, op) in ops.iter_mut().enumerate() {
        let text: String = rows
            .iter()
            .zip(&targets)
            .filter(|(_, t)| **t == instance)
            .map(|((id, g), _)| format!("+ {id} {g} {} 1\n", 100 + id))
            .collect();
        assert!(op.on_chunk(&ctxs[instance], 0, chunk(&s, &text)).unwrap().is_empty());
    }
    let mut batch = WriteBatch::default();
    for op in &mut ops {
        op.checkpoint(&mut batch);
    }
    h.store.commit(batch).unwrap();
    h.ctx.snapshot = h.store.snapshot();
    // Restarted instances: the watermark passes every row.
    let mut ops: Vec<OverWindowOperator> = (0..2).map(|_| operator_with(calls(), 23, true)).collect();
    let ctxs = contexts(&h);
    let mut shown = Vec::new();
    for (instance, op) in ops.iter_mut().enumerate() {
        op.on_watermark(&ctxs[instance], 0, 2, &ScalarValue::Int64(Some(1000))).unwrap();
        let out = op.on_barrier(&ctxs[instance], 2).unwrap();
        shown.extend(pretty(&out).lines().map(str::to_string));
    }
    shown.sort();
    let mut expected: Vec<String> =
        rows.iter().map(|(id, g)| format!("+ {id} {g} {} 1 {}", 100 + id, id / 6 + 1)).collect();
    expected.sort();
    assert_eq!(shown, expected);
}

#[test]
fn sessions_close_behind_the_watermark_and_free_their_rows() {
    let calls = || {
        vec![
            call(
                WindowKind::Session { end: false, gap: 5 },
                None,
                DataType::Int64,
                rows(Unbounded, Unbounded),
            ),
            call(
                WindowKind::Session { end: true, gap: 5 },
                None,
                DataType::Int64,
                rows(Unbounded, Unbounded),
            ),
        ]
    };
    let s = schema("id:int g:int ts:int v:int");
    let mut h = Harness::new();
    let mut op = operator(calls(), 31);
    // Rows show as they come; a row between two sessions joins them.
    let out = run_script(&mut op, &mut h, &s, "+ 1 1 10 0\n+ 2 1 18 0\n+ 3 2 11 0\nbarrier");
    assert_eq!(out, lines("+ 1 1 10 0 10 15\n+ 2 1 18 0 18 23\n+ 3 2 11 0 11 16"));
    let out = run_script(&mut op, &mut h, &s, "+ 4 1 14 0\nbarrier");
    assert_eq!(
        out,
        lines("U- 1 1 10 0 10 15\nU+ 1 1 10 0 10 23\nU- 2 1 18 0 18 23\nU+ 2 1 18 0 10 23\n+ 4 1 14 0 10 23")
    );
    // At 20 partition 2's session (ending at 16) is closed and freed; partition 1's
    // (ending at 23) stays open. The sessions' ends carry the watermark (column 5), one
    // past it: an open session ends after it.
    let out = run_script(&mut op, &mut h, &s, "watermark 2 20\nbarrier");
    assert_eq!(out, lines("watermark 5 21"));
    // A row behind the watermark is late, even where it would join an open session.
    let out = run_script(&mut op, &mut h, &s, "+ 5 1 19 0\n+ 6 1 40 0\nwatermark 2 30\nbarrier");
    assert_eq!(out, lines("+ 6 1 40 0 40 45\nwatermark 5 31"));
    assert_eq!(h.stored_keys(crate::stream::source::DEAD_LETTERS_TABLE), 1);
    // Kept: the open session's row (40), partition 1's marker and the watermark reached.
    assert_eq!(h.stored_keys(31), 3);
    // After a restart the watermark reached still makes rows late.
    let mut op = operator(calls(), 31);
    let out = run_script(&mut op, &mut h, &s, "+ 7 1 25 0\n+ 8 1 42 0\nbarrier");
    assert_eq!(out, lines("U- 6 1 40 0 40 45\nU+ 6 1 40 0 40 47\n+ 8 1 42 0 40 47"));
    assert_eq!(h.stored_keys(crate::stream::source::DEAD_LETTERS_TABLE), 2);
}
