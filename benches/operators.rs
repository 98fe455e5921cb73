//! Operator micro-benchmarks: rows per second through the hash aggregate and the hash
//! join on change batches of 1k-8k rows, state in the in-memory store and in RocksDB
//! (an epoch is sealed and committed every 8 batches, as the coordinator would).
//!
//! `cargo bench --bench operators`; figures and how to read them: docs/benchmarks.md.

use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::logical_expr::JoinType;
use sabot::plan::{AggCall, AggKind, AsOfBound, AsOfOrder, HashAggNode, HashJoinNode};
use sabot::state::{MemoryStore, RocksStore, StateMemory, StateStore, WriteBatch};
use sabot::stream::Chunk;
use sabot::stream::Op;
use sabot::stream::operator::hash_agg::HashAggOperator;
use sabot::stream::operator::hash_join::{HashJoinOperator, Side};
use sabot::stream::operator::{Operator, OperatorContext};

const BATCH_ROWS: [usize; 3] = [1024, 4096, 8192];
const EPOCH_BATCHES: usize = 8;

fn schema(names: &[&str]) -> SchemaRef {
    Arc::new(Schema::new(names.iter().map(|n| Field::new(*n, DataType::Int64, true)).collect::<Vec<_>>()))
}

/// `rows` rows: (key, value) with keys cycling through `keys` distinct values.
fn batch(schema: &SchemaRef, rows: usize, keys: i64, seed: i64) -> RecordBatch {
    let key = Int64Array::from_iter_values((0..rows as i64).map(|i| (i * 7919 + seed) % keys));
    let value = Int64Array::from_iter_values((0..rows as i64).map(|i| (i * 31 + seed) % 10_000));
    RecordBatch::try_new(schema.clone(), vec![Arc::new(key), Arc::new(value)]).unwrap()
}

/// The backends a benchmark runs on.
const STORES: [&str; 2] = ["memory", "rocksdb"];

/// A fresh store of kind `kind` (RocksDB in a temporary directory, kept alive beside it).
fn store(kind: &str) -> (Arc<dyn StateStore>, Option<tempfile::TempDir>) {
    match kind {
        "rocksdb" => {
            let dir = tempfile::tempdir().unwrap();
            (Arc::new(RocksStore::open(dir.path(), 64 << 20).unwrap()), Some(dir))
        }
        _ => (Arc::new(MemoryStore::default()), None),
    }
}

/// Runs `iterations` insert+delete rounds of `data` through `operator`, committing every
/// few batches; returns the elapsed time.
fn drive(
    operator: &mut dyn Operator,
    store: &Arc<dyn StateStore>,
    input: usize,
    data: &RecordBatch,
    iterations: u64,
) -> std::time::Duration {
    let mut ctx = OperatorContext {
        snapshot: store.snapshot(),
        view: Arc::from("bench"),
        instance: 0,
        instances: 1,
        failures: Default::default(),
    };
    let start = std::time::Instant::now();
    for i in 0..iterations as usize {
        let ops = if i % 2 == 0 { Op::Insert } else { Op::Delete };
        let chunk = Chunk::new(vec![ops; data.num_rows()], data.clone());
        std::hint::black_box(operator.on_chunk(&ctx, input, chunk).unwrap());
        if i % EPOCH_BATCHES == EPOCH_BATCHES - 1 {
            std::hint::black_box(operator.on_barrier(&ctx, i as u64).unwrap());
            let mut batch = WriteBatch::default();
            operator.checkpoint(&mut batch);
            store.commit(batch).unwrap();
            ctx.snapshot = store.snapshot();
            operator.committed();
        }
    }
    start.elapsed()
}

fn call(kind: AggKind, input: Option<usize>, value_table: Option<u32>) -> AggCall {
    AggCall {
        kind,
        input,
        input_type: DataType::Int64,
        output_type: DataType::Int64,
        value_table,
        order_by: Vec::new(),
        filter: None,
        distinct: false,
    }
}

fn hash_agg(c: &mut Criterion) {
    let input = schema(&["g", "v"]);
    let mut group = c.benchmark_group("hash_agg");
    for (name, calls, output) in [
        (
            "count_sum",
            vec![call(AggKind::CountRows, None, None), call(AggKind::Sum, Some(1), None)],
            schema(&["g", "n", "s"]),
        ),
        (
            "count_sum_max",
            vec![
                call(AggKind::CountRows, None, None),
                call(AggKind::Sum, Some(1), None),
                call(AggKind::Max, Some(1), Some(11)),
            ],
            schema(&["g", "n", "s", "m"]),
        ),
    ] {
        for (kind, rows) in STORES.iter().flat_map(|k| BATCH_ROWS.map(|r| (*k, r))) {
            let data = batch(&input, rows, 1000, 1);
            group.throughput(Throughput::Elements(rows as u64));
            group.bench_with_input(BenchmarkId::new(format!("{name}/{kind}"), rows), &data, |b, data| {
                let node = HashAggNode {
                    group_len: 1,
                    calls: calls.clone(),
                    group_table: 10,
                    merge: false,
                    closing_column: None,
                    emit_on_close: false,
                    empty_set_id: None,
                };
                let (store, _dir) = store(kind);
                let types = [DataType::Int64, DataType::Int64];
                let mut op =
                    HashAggOperator::new(&node, &types, output.clone(), StateMemory::default()).unwrap();
                b.iter_custom(|iterations| drive(&mut op, &store, 0, data, iterations));
            });
        }
    }
    group.finish();
}

fn hash_join(c: &mut Criterion) {
    let left_schema = schema(&["id", "k"]);
    let right_schema = schema(&["k", "w"]);
    let output = schema(&["id", "k", "k2", "w"]);
    let mut group = c.benchmark_group("hash_join");
    // `inner_probe`: an equi-join; `asof_probe`: the same rows as-of joined on
    // `l.id >= r.w` (each side's rows ordered by time in their buckets).
    let asof = AsOfBound { left_column: 0, right_column: 1, order: AsOfOrder::AtOrAfter, frees: false };
    let joins = [("inner_probe", None), ("asof_probe", Some(asof))];
    for ((name, asof), (kind, rows)) in joins
        .iter()
        .flat_map(|j| STORES.iter().flat_map(|k| BATCH_ROWS.map(|r| (*k, r))).map(move |x| (j, x)))
    {
        // 10k left rows with distinct keys; right batches probe them (one match per row).
        let left_ids = Int64Array::from_iter_values(0..10_000);
        let left =
            RecordBatch::try_new(left_schema.clone(), vec![Arc::new(left_ids.clone()), Arc::new(left_ids)])
                .unwrap();
        let data = batch(&right_schema, rows, 10_000, 3);
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_with_input(BenchmarkId::new(format!("{name}/{kind}"), rows), &data, |b, data| {
            let node = HashJoinNode {
                join_type: JoinType::Inner,
                left_keys: vec![1],
                right_keys: vec![0],
                residual: None,
                null_aware: false,
                nulls_equal: false,
                left_table: 1,
                right_table: 2,
                closes: false,
                intervals: Vec::new(),
                lookup: false,
                asof: asof.clone(),
                watermarks: Vec::new(),
            };
            let (store, _dir) = store(kind);
            // An as-of join's time column leads each side's stream key.
            let (left_key, right_key) = match asof {
                Some(_) => (vec![0, 0], vec![1, 0, 1]),
                None => (vec![0], vec![0, 1]),
            };
            let l =
                Side::new(vec![1], left_key, 2, vec![DataType::Int64; 2], 1, StateMemory::default()).unwrap();
            // The right rows' key: (k, w) is unique enough for the benchmark's rows.
            let r = Side::new(vec![0], right_key, 2, vec![DataType::Int64; 2], 2, StateMemory::default())
                .unwrap();
            let mut op = HashJoinOperator::new(&node, l, r, output.clone());
            if let Some(bound) = asof {
                op = op.with_asof(bound, &DataType::Int64).unwrap();
            }
            let ctx = OperatorContext {
                snapshot: store.snapshot(),
                view: Arc::from("bench"),
                instance: 0,
                instances: 1,
                failures: Default::default(),
            };
            op.on_chunk(&ctx, 0, Chunk::inserts(left.clone())).unwrap();
            let mut batch = WriteBatch::default();
            op.checkpoint(&mut batch);
            store.commit(batch).unwrap();
            op.committed();
            b.iter_custom(|iterations| drive(&mut op, &store, 1, data, iterations));
        });
    }
    group.finish();
}

criterion_group!(benches, hash_agg, hash_join);
criterion_main!(benches);
