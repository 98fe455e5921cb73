//! The state store: durable, atomically committed key/value state behind one trait.
//!
//! Keys are `(table_id, key)`: a 4-byte big-endian table id followed by the table's own
//! memcomparable key bytes, so a prefix scan yields one table in key order. Table id 0 is
//! the meta table (catalog, committed epoch, counters). Writers never touch a backend
//! directly: they buffer an epoch's writes in a [`StateTable`] and the barrier coordinator
//! commits all buffers of an epoch as one [`WriteBatch`].

mod cache;
mod memory;
mod rocks;
mod table;

use std::sync::Arc;

pub use cache::{
    CacheValue, CachedTable, MemoryBudget, RowWriter, RowsValue, Slot, StateMemory, StoredValue, take_changed,
};
pub use memory::MemoryStore;
pub use rocks::RocksStore;
pub use table::StateTable;

pub type TableId = u32;
pub type Epoch = u64;

/// The table id of the meta table.
pub const META_TABLE: TableId = 0;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state store error: {0}")]
    Backend(String),
    #[error("corrupt state: {0}")]
    Corrupt(String),
}

impl From<rocksdb::Error> for StateError {
    fn from(e: rocksdb::Error) -> Self {
        StateError::Backend(e.into_string())
    }
}

pub type StateResult<T> = Result<T, StateError>;

/// The full store key of `key` in table `table_id`.
pub fn table_key(table_id: TableId, key: &[u8]) -> Vec<u8> {
    let mut full = Vec::with_capacity(4 + key.len());
    full.extend_from_slice(&table_id.to_be_bytes());
    full.extend_from_slice(key);
    full
}

/// The `[start, end)` range of all keys of a table.
fn table_key_of(table_id: TableId, parts: &[&[u8]]) -> Vec<u8> {
    let mut full = Vec::with_capacity(4 + parts.iter().map(|p| p.len()).sum::<usize>());
    full.extend_from_slice(&table_id.to_be_bytes());
    for part in parts {
        full.extend_from_slice(part);
    }
    full
}

pub fn table_range(table_id: TableId) -> (Vec<u8>, Vec<u8>) {
    let start = table_id.to_be_bytes().to_vec();
    let end = match table_id.checked_add(1) {
        Some(next) => next.to_be_bytes().to_vec(),
        None => vec![0xff; 5],
    };
    (start, end)
}

/// One write of a batch, on full store keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOp {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    /// Deletes every key in `[start, end)`.
    DeleteRange(Vec<u8>, Vec<u8>),
}

/// The writes of one epoch, applied atomically.
#[derive(Clone, Debug, Default)]
pub struct WriteBatch {
    pub ops: Vec<WriteOp>,
}

impl WriteBatch {
    pub fn put(&mut self, table_id: TableId, key: &[u8], value: Vec<u8>) {
        self.ops.push(WriteOp::Put(table_key(table_id, key), value));
    }

    pub fn delete(&mut self, table_id: TableId, key: &[u8]) {
        self.ops.push(WriteOp::Delete(table_key(table_id, key)));
    }

    /// A put of the key made of `parts`, concatenated.
    pub fn put_parts(&mut self, table_id: TableId, parts: &[&[u8]], value: Vec<u8>) {
        self.ops.push(WriteOp::Put(table_key_of(table_id, parts), value));
    }

    /// A delete of the key made of `parts`, concatenated.
    pub fn delete_parts(&mut self, table_id: TableId, parts: &[&[u8]]) {
        self.ops.push(WriteOp::Delete(table_key_of(table_id, parts)));
    }

    pub fn delete_table(&mut self, table_id: TableId) {
        let (start, end) = table_range(table_id);
        self.ops.push(WriteOp::DeleteRange(start, end));
    }

    /// Deletes every key of table `table_id` that starts with `prefix`.
    pub fn delete_prefix(&mut self, table_id: TableId, prefix: &[u8]) {
        let start = table_key(table_id, prefix);
        let mut end = start.clone();
        // The first key after every key with the prefix: increment the last byte that can be.
        while let Some(last) = end.pop() {
            if last < 0xff {
                end.push(last + 1);
                break;
            }
        }
        if end.is_empty() {
            let (_, table_end) = table_range(table_id);
            end = table_end;
        }
        self.ops.push(WriteOp::DeleteRange(start, end));
    }

    /// Deletes every key of table `table_id` in `[start, end)`.
    pub fn delete_range(&mut self, table_id: TableId, start: &[u8], end: &[u8]) {
        self.ops.push(WriteOp::DeleteRange(table_key(table_id, start), table_key(table_id, end)));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Called with each `(key, value)` of a range scan; returns whether to go on.
pub type RangeVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> StateResult<bool> + 'a;
/// Called with each `(key, value)` of a full scan.
pub type Visitor<'a> = dyn FnMut(&[u8], &[u8]) -> StateResult<()> + 'a;

/// A consistent, read-only view of the store as of one commit.
pub trait Snapshot: Send + Sync {
    fn get(&self, table_id: TableId, key: &[u8]) -> StateResult<Option<Vec<u8>>>;

    /// Calls `visit` with every `(key, value)` of the table whose key lies in
    /// `[start, end)` (`end = None`: to the end of the table), in key order, until `visit`
    /// returns `false`. Keys are the table's own key bytes (without the table id).
    fn scan_range(
        &self,
        table_id: TableId,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut RangeVisitor<'_>,
    ) -> StateResult<()>;

    /// Calls `visit` with every `(key, value)` of the table in key order.
    fn scan(&self, table_id: TableId, visit: &mut Visitor<'_>) -> StateResult<()> {
        self.scan_range(table_id, &[], None, &mut |k, v| visit(k, v).map(|()| true))
    }
}

/// The smallest key greater than every key that starts with `prefix` (`None`: no bound).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The full-store `[start, end)` of table keys in `[start, end)`.
fn store_range(table_id: TableId, start: &[u8], end: Option<&[u8]>) -> (Vec<u8>, Vec<u8>) {
    let full_start = table_key(table_id, start);
    let full_end = match end {
        Some(end) => table_key(table_id, end),
        None => table_range(table_id).1,
    };
    (full_start, full_end)
}

pub trait StateStore: Send + Sync {
    /// A snapshot of everything committed so far.
    fn snapshot(&self) -> Arc<dyn Snapshot>;

    /// Applies `batch` atomically and durably (the write is synced before this returns).
    fn commit(&self, batch: WriteBatch) -> StateResult<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The contract every backend must meet.
    pub(crate) fn check_store_contract(store: &dyn StateStore) {
        let mut batch = WriteBatch::default();
        batch.put(1, b"b", b"2".to_vec());
        batch.put(1, b"a", b"1".to_vec());
        batch.put(2, b"a", b"x".to_vec());
        store.commit(batch).unwrap();
        let before = store.snapshot();

        let mut batch = WriteBatch::default();
        batch.delete(1, b"a");
        batch.delete_table(2);
        batch.put(1, b"c", b"3".to_vec());
        store.commit(batch).unwrap();

        let mut seen = Vec::new();
        before
            .scan(1, &mut |k, v| {
                seen.push((k.to_vec(), v.to_vec()));
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, vec![(b"a".to_vec(), b"1".to_vec()), (b"b".to_vec(), b"2".to_vec())]);
        assert_eq!(before.get(2, b"a").unwrap(), Some(b"x".to_vec()));

        let after = store.snapshot();
        let mut keys = Vec::new();
        after
            .scan(1, &mut |k, _| {
                keys.push(k.to_vec());
                Ok(())
            })
            .unwrap();
        assert_eq!(keys, vec![b"b".to_vec(), b"c".to_vec()]);
        assert_eq!(after.get(2, b"a").unwrap(), None);
    }

    #[test]
    fn memory_store_meets_contract() {
        check_store_contract(&MemoryStore::default());
    }

    #[test]
    fn rocks_store_meets_contract() {
        let dir = tempfile::tempdir().unwrap();
        check_store_contract(&RocksStore::open(dir.path(), 8 << 20).unwrap());
    }
}
