//! Commit cost of the in-memory store (`--ephemeral`) against the size of its state, with
//! a snapshot alive during each commit (as a reading statement or a view's actor holds
//! one). An epoch's commit should cost its writes, not the state: the ratio between the
//! two sizes should be close to 1.
//!
//! `cargo bench --bench memory_store`

use std::time::{Duration, Instant};

use sabot::state::{MemoryStore, StateStore, WriteBatch};

const SIZES: [u64; 2] = [100_000, 1_000_000];
const WRITES: u64 = 1000;
const ROUNDS: usize = 50;

fn key(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

fn measure(size: u64) -> Duration {
    let store = MemoryStore::default();
    let mut batch = WriteBatch::default();
    for i in 0..size {
        batch.put(2000, &key(i), vec![7; 32]);
    }
    store.commit(batch).expect("load");
    let mut times = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS as u64 {
        let _snapshot = store.snapshot();
        let mut batch = WriteBatch::default();
        for i in 0..WRITES {
            batch.put(2000, &key((round * 7919 + i * 104_729) % size), vec![round as u8; 32]);
        }
        let started = Instant::now();
        store.commit(batch).expect("commit");
        times.push(started.elapsed());
    }
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let small = measure(SIZES[0]);
    let large = measure(SIZES[1]);
    println!("memory store, commit of {WRITES} writes with a live snapshot (median of {ROUNDS}):");
    println!("  {:>9} keys: {:?}", SIZES[0], small);
    println!("  {:>9} keys: {:?}", SIZES[1], large);
    println!(
        "commit cost ratio {}k / {}k keys: {:.2}",
        SIZES[1] / 1000,
        SIZES[0] / 1000,
        large.as_secs_f64() / small.as_secs_f64()
    );
}
