//! The RocksDB backend (the default): one database, WAL synced on every commit.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{DB, Direction, IteratorMode, Options, ReadOptions, SnapshotWithThreadMode, WriteOptions};

use super::{
    RangeVisitor, Snapshot, StateError, StateResult, StateStore, TableId, WriteBatch, WriteOp, store_range,
    table_key,
};

pub struct RocksStore {
    db: Arc<DB>,
}

impl RocksStore {
    /// Opens (or creates) the store in `path` with a block cache of `cache_bytes`.
    pub fn open(path: &Path, cache_bytes: usize) -> StateResult<Self> {
        std::fs::create_dir_all(path)
            .map_err(|e| StateError::Backend(format!("cannot create {}: {e}", path.display())))?;
        let mut options = Options::default();
        options.create_if_missing(true);
        options.set_compression_type(rocksdb::DBCompressionType::Lz4);
        // Operators and DML read single keys all the time: cache blocks, and keep bloom
        // filters (10 bits per key) so that a read of an absent key rarely touches disk.
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_block_cache(&rocksdb::Cache::new_lru_cache(cache_bytes));
        table.set_bloom_filter(10.0, false);
        table.set_cache_index_and_filter_blocks(true);
        options.set_block_based_table_factory(&table);
        let db = DB::open(&options, path)?;
        Ok(RocksStore { db: Arc::new(db) })
    }
}

/// A RocksDB snapshot that owns a handle on its database.
struct RocksSnapshot {
    // Field order matters: the snapshot is dropped (released) before the database handle.
    snapshot: SnapshotWithThreadMode<'static, DB>,
    _db: Arc<DB>,
}

impl RocksSnapshot {
    fn new(db: Arc<DB>) -> Self {
        let snapshot = db.snapshot();
        // SAFETY: the snapshot borrows the `DB` inside the `Arc`, which lives on the heap at a
        // stable address and is kept alive by `_db` for as long as the snapshot exists (fields
        // drop in declaration order, so the snapshot is released first).
        let snapshot = unsafe {
            std::mem::transmute::<SnapshotWithThreadMode<'_, DB>, SnapshotWithThreadMode<'static, DB>>(
                snapshot,
            )
        };
        RocksSnapshot { snapshot, _db: db }
    }
}

impl Snapshot for RocksSnapshot {
    fn get(&self, table_id: TableId, key: &[u8]) -> StateResult<Option<Vec<u8>>> {
        Ok(self.snapshot.get(table_key(table_id, key))?)
    }

    fn scan_range(
        &self,
        table_id: TableId,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut RangeVisitor<'_>,
    ) -> StateResult<()> {
        let (start, end) = store_range(table_id, start, end);
        if start >= end {
            return Ok(());
        }
        let mut read = ReadOptions::default();
        read.set_iterate_upper_bound(end);
        let iter = self.snapshot.iterator_opt(IteratorMode::From(&start, Direction::Forward), read);
        for item in iter {
            let (key, value) = item?;
            if !visit(&key[4..], &value)? {
                break;
            }
        }
        Ok(())
    }
}

impl StateStore for RocksStore {
    fn snapshot(&self) -> Arc<dyn Snapshot> {
        Arc::new(RocksSnapshot::new(self.db.clone()))
    }

    fn commit(&self, batch: WriteBatch) -> StateResult<()> {
        let mut write = rocksdb::WriteBatch::default();
        for op in batch.ops {
            match op {
                WriteOp::Put(key, value) => write.put(key, value),
                WriteOp::Delete(key) => write.delete(key),
                WriteOp::DeleteRange(start, end) => write.delete_range(start, end),
            }
        }
        let mut options = WriteOptions::default();
        options.set_sync(true);
        Ok(self.db.write_opt(write, &options)?)
    }
}
