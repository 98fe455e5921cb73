//! The in-memory backend, for tests and `--ephemeral`.

use std::ops::Bound;
use std::sync::Arc;

use parking_lot::RwLock;

use super::{
    RangeVisitor, Snapshot, StateResult, StateStore, TableId, WriteBatch, WriteOp, store_range, table_key,
};

/// A persistent ordered map: a clone shares every node, an insert copies only its path.
type Map = imbl::OrdMap<Vec<u8>, Vec<u8>>;

/// Keeps committed state in a persistent map: a snapshot is a clone that shares the
/// whole map (O(1)), and a commit costs O(log n) per write whether or not snapshots are
/// alive — never a copy of the whole state.
#[derive(Default)]
pub struct MemoryStore {
    map: RwLock<Map>,
}

struct MemorySnapshot(Map);

impl Snapshot for MemorySnapshot {
    fn get(&self, table_id: TableId, key: &[u8]) -> StateResult<Option<Vec<u8>>> {
        Ok(self.0.get(&table_key(table_id, key)).cloned())
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
        for (key, value) in self.0.range::<_, Vec<u8>>((Bound::Included(start), Bound::Excluded(end))) {
            if !visit(&key[4..], value)? {
                break;
            }
        }
        Ok(())
    }
}

impl StateStore for MemoryStore {
    fn snapshot(&self) -> Arc<dyn Snapshot> {
        Arc::new(MemorySnapshot(self.map.read().clone()))
    }

    fn commit(&self, batch: WriteBatch) -> StateResult<()> {
        // Nodes shared with live snapshots are copied on write, along the written paths
        // only; the write lock makes the commit atomic for readers.
        let mut map = self.map.write();
        for op in batch.ops {
            match op {
                WriteOp::Put(key, value) => {
                    map.insert(key, value);
                }
                WriteOp::Delete(key) => {
                    map.remove(&key);
                }
                WriteOp::DeleteRange(start, end) => {
                    let doomed: Vec<Vec<u8>> = map
                        .range::<_, Vec<u8>>((Bound::Included(start), Bound::Excluded(end)))
                        .map(|(k, _)| k.clone())
                        .collect();
                    for key in doomed {
                        map.remove(&key);
                    }
                }
            }
        }
        Ok(())
    }
}
