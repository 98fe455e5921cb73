use super::*;
use crate::state::{MemoryStore, StateStore};

impl CacheValue for i64 {
    fn heap_bytes(&self) -> usize {
        0
    }
}

impl StoredValue for i64 {
    fn encode(&self) -> Vec<u8> {
        self.to_le_bytes().to_vec()
    }
    fn decode(bytes: &[u8]) -> Result<Self> {
        Ok(i64::from_le_bytes(bytes.try_into().expect("8 bytes")))
    }
}

fn add(cache: &mut CachedTable<i64>, store: &MemoryStore, key: &[u8], delta: i64) {
    let slot = cache.slot(store.snapshot().as_ref(), key).unwrap();
    let value = cache.get_mut(slot);
    *value = Some(value.unwrap_or(0) + delta);
}

fn commit(cache: &mut CachedTable<i64>, store: &MemoryStore) {
    let mut batch = WriteBatch::default();
    cache.seal_into(&mut batch);
    store.commit(batch).unwrap();
    cache.committed();
}

#[test]
fn evicted_keys_reload_exactly_and_budgets_are_shared() {
    let store = MemoryStore::default();
    let memory = StateMemory::new(2_000, usize::MAX / 2);
    let mut cache: CachedTable<i64> = CachedTable::new(5, memory.clone());
    for round in 0..3 {
        for key in 0..100u32 {
            add(&mut cache, &store, &key.to_be_bytes(), key as i64 + round);
        }
        // Changes not yet committed are never evicted.
        cache.flush();
        cache.evict_if_over_budget();
        assert_eq!(cache.len(), 100);
        let mut batch = WriteBatch::default();
        cache.seal_into(&mut batch);
        cache.evict_if_over_budget();
        assert_eq!(cache.len(), 100);
        store.commit(batch).unwrap();
        cache.committed();
        cache.evict_if_over_budget();
        assert!(cache.len() < 100, "the cache holds {} bytes", cache.bytes());
        assert!(cache.bytes() <= 2_000);
    }
    // Values read back through the cache (evicted ones from the store) are the sums
    // of the three rounds.
    for key in 0..100u32 {
        let slot = cache.slot(store.snapshot().as_ref(), &key.to_be_bytes()).unwrap();
        assert_eq!(cache.get(slot), Some(&(3 * key as i64 + 3)), "key {key}");
    }
    assert_eq!(memory.global.used(), cache.bytes());
    drop(cache);
    assert_eq!(memory.global.used(), 0);
}

#[test]
fn sealed_values_are_written_in_key_order() {
    let store = MemoryStore::default();
    let mut cache: CachedTable<i64> = CachedTable::new(3, StateMemory::default());
    let keys: [&[u8]; 6] = [b"zz", b"abcdefgh2", b"a", b"abcdefgh1", b"", b"abcdefgh"];
    for key in keys {
        add(&mut cache, &store, key, 1);
    }
    let mut batch = WriteBatch::default();
    cache.seal_into(&mut batch);
    let written: Vec<Vec<u8>> = batch
        .ops
        .iter()
        .map(|op| match op {
            crate::state::WriteOp::Put(key, _) => key[4..].to_vec(),
            other => panic!("{other:?}"),
        })
        .collect();
    let mut expected: Vec<Vec<u8>> = keys.iter().map(|k| k.to_vec()).collect();
    expected.sort();
    assert_eq!(written, expected);
}

/// A key's rows: suffix → value, with the suffixes changed since the last seal.
#[derive(Default)]
struct Rows {
    rows: std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
    changed: Vec<Vec<u8>>,
}

impl CacheValue for Rows {
    fn heap_bytes(&self) -> usize {
        self.rows.iter().map(|(k, v)| 64 + k.len() + v.len()).sum()
    }
}

impl RowsValue for Rows {
    fn empty() -> Self {
        Rows::default()
    }
    fn load_row(&mut self, suffix: &[u8], value: &[u8]) -> Result<bool> {
        self.rows.insert(suffix.to_vec(), value.to_vec());
        Ok(true)
    }
    fn seal_rows(&mut self, write: &mut RowWriter<'_>) {
        for suffix in std::mem::take(&mut self.changed) {
            write(&suffix, self.rows.get(&suffix).cloned());
        }
    }
}

#[test]
fn assembled_values_write_only_changed_rows_and_reload_exactly() {
    let store = MemoryStore::default();
    let memory = StateMemory::new(1_000, usize::MAX / 2);
    let mut cache: CachedTable<Rows> = CachedTable::new(7, memory);
    let change = |cache: &mut CachedTable<Rows>, key: u32, suffix: u8, value: Option<u8>| {
        let slot = cache.rows_slot(store.snapshot().as_ref(), &key.to_be_bytes()).unwrap();
        let rows = cache.change(slot);
        match value {
            Some(v) => rows.rows.insert(vec![suffix], vec![v]),
            None => rows.rows.remove(&vec![suffix]),
        };
        rows.changed.push(vec![suffix]);
        cache.recharge(slot);
    };
    for key in 0..50 {
        for suffix in 0..3 {
            change(&mut cache, key, suffix, Some(suffix));
        }
    }
    let mut batch = WriteBatch::default();
    cache.seal_rows_into(&mut batch);
    assert_eq!(batch.ops.len(), 150);
    // Nothing sealed but not committed is evicted.
    cache.evict_if_over_budget();
    assert_eq!(cache.len(), 50);
    store.commit(batch).unwrap();
    cache.committed();
    // One row of key 7 changes: only it is written.
    change(&mut cache, 7, 1, None);
    let mut batch = WriteBatch::default();
    cache.seal_rows_into(&mut batch);
    assert_eq!(batch.ops.len(), 1);
    store.commit(batch).unwrap();
    cache.committed();
    cache.evict_if_over_budget();
    assert!(cache.len() < 50 && cache.bytes() <= 1_000);
    for key in 0..50u32 {
        let slot = cache.rows_slot(store.snapshot().as_ref(), &key.to_be_bytes()).unwrap();
        let suffixes: Vec<u8> = cache.get(slot).unwrap().rows.keys().map(|k| k[0]).collect();
        assert_eq!(suffixes, if key == 7 { vec![0, 2] } else { vec![0, 1, 2] }, "key {key}");
    }
}

#[test]
fn the_global_budget_makes_every_cache_shed() {
    let store = MemoryStore::default();
    let memory = StateMemory::new(usize::MAX / 4, 10_000);
    let mut a: CachedTable<i64> = CachedTable::new(1, memory.clone());
    let mut b: CachedTable<i64> = CachedTable::new(2, memory.clone());
    for key in 0..200u32 {
        add(&mut a, &store, &key.to_be_bytes(), 1);
        add(&mut b, &store, &key.to_be_bytes(), 1);
    }
    commit(&mut a, &store);
    commit(&mut b, &store);
    assert!(memory.global.used() > 10_000);
    while memory.global.used() > 10_000 {
        a.evict_if_over_budget();
        b.evict_if_over_budget();
    }
    assert!(!a.is_empty() && !b.is_empty());
}
