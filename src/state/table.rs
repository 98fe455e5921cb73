//! `StateTable`: one table's keyed state, read through a committed snapshot with the
//! current epoch's uncommitted writes layered on top.

use std::collections::BTreeMap;

use super::{Snapshot, StateResult, TableId, WriteBatch};

#[derive(Clone, Debug)]
pub struct StateTable {
    table_id: TableId,
    /// Writes of the epoch in progress: `Some(value)` is a put, `None` a delete.
    pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl StateTable {
    pub fn new(table_id: TableId) -> Self {
        StateTable { table_id, pending: BTreeMap::new() }
    }

    pub fn table_id(&self) -> TableId {
        self.table_id
    }

    pub fn get(&self, snapshot: &dyn Snapshot, key: &[u8]) -> StateResult<Option<Vec<u8>>> {
        match self.pending.get(key) {
            Some(value) => Ok(value.clone()),
            None => snapshot.get(self.table_id, key),
        }
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.pending.insert(key, Some(value));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.pending.insert(key, None);
    }

    /// Visits every live `(key, value)` in key order, pending writes included.
    pub fn scan(
        &self,
        snapshot: &dyn Snapshot,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> StateResult<()>,
    ) -> StateResult<()> {
        let mut pending = self.pending.iter().peekable();
        snapshot.scan(self.table_id, &mut |key, value| {
            // Emit pending keys that sort before this committed key.
            while let Some((pending_key, pending_value)) = pending.peek() {
                if pending_key.as_slice() >= key {
                    break;
                }
                if let Some(v) = pending_value {
                    visit(pending_key, v)?;
                }
                pending.next();
            }
            match pending.peek() {
                Some((pending_key, pending_value)) if pending_key.as_slice() == key => {
                    if let Some(v) = pending_value {
                        visit(key, v)?;
                    }
                    pending.next();
                    Ok(())
                }
                _ => visit(key, value),
            }
        })?;
        for (key, value) in pending {
            if let Some(v) = value {
                visit(key, v)?;
            }
        }
        Ok(())
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Moves this epoch's writes into `batch`.
    pub fn drain_into(&mut self, batch: &mut WriteBatch) {
        for (key, value) in std::mem::take(&mut self.pending) {
            match value {
                Some(v) => batch.put(self.table_id, &key, v),
                None => batch.delete(self.table_id, &key),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{MemoryStore, StateStore};

    #[test]
    fn pending_writes_overlay_committed_state() {
        let store = MemoryStore::default();
        let mut batch = WriteBatch::default();
        for key in [b"a", b"c", b"e"] {
            batch.put(7, key, key.to_vec());
        }
        store.commit(batch).unwrap();

        let mut table = StateTable::new(7);
        table.put(b"b".to_vec(), b"B".to_vec());
        table.delete(b"c".to_vec());
        table.put(b"e".to_vec(), b"E".to_vec());
        table.put(b"f".to_vec(), b"F".to_vec());
        let snapshot = store.snapshot();
        let mut seen = Vec::new();
        table
            .scan(snapshot.as_ref(), &mut |k, v| {
                seen.push(format!("{}={}", String::from_utf8_lossy(k), String::from_utf8_lossy(v)));
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, ["a=a", "b=B", "e=E", "f=F"]);
        assert_eq!(table.get(snapshot.as_ref(), b"c").unwrap(), None);

        let mut batch = WriteBatch::default();
        table.drain_into(&mut batch);
        store.commit(batch).unwrap();
        assert!(!table.has_pending());
        assert_eq!(store.snapshot().get(7, b"b").unwrap(), Some(b"B".to_vec()));
    }
}
