//! `StateTable`: one table's keyed state, read through a committed snapshot with the
//! current epoch's uncommitted writes layered on top.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::{RangeVisitor, Snapshot, StateResult, TableId, Visitor, WriteBatch};

/// Writes not yet committed: `Some(value)` is a put, `None` a delete.
type Overlay = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Reads go through three layers, newest first: the writes of the epoch in progress, the
/// writes of the last sealed epoch (handed to the coordinator, maybe not yet committed),
/// and the committed snapshot the caller passes in. Owners seal when an epoch is cut and
/// drop the sealed layer once it is committed and they read from a snapshot that holds it.
#[derive(Clone, Debug)]
pub struct StateTable {
    table_id: TableId,
    pending: Overlay,
    sealed: Overlay,
}

impl StateTable {
    pub fn new(table_id: TableId) -> Self {
        StateTable { table_id, pending: BTreeMap::new(), sealed: BTreeMap::new() }
    }

    pub fn table_id(&self) -> TableId {
        self.table_id
    }

    pub fn get(&self, snapshot: &dyn Snapshot, key: &[u8]) -> StateResult<Option<Vec<u8>>> {
        match self.pending.get(key).or_else(|| self.sealed.get(key)) {
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

    /// Visits every live `(key, value)` in key order, uncommitted writes included.
    pub fn scan(&self, snapshot: &dyn Snapshot, visit: &mut Visitor<'_>) -> StateResult<()> {
        self.scan_range(snapshot, &[], None, &mut |k, v| visit(k, v).map(|()| true))
    }

    /// Visits the live `(key, value)`s with keys in `[start, end)` in key order until
    /// `visit` returns `false`.
    pub fn scan_range(
        &self,
        snapshot: &dyn Snapshot,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut RangeVisitor<'_>,
    ) -> StateResult<()> {
        let overlay = self.overlay_range(start, end);
        let mut overlay = overlay.into_iter().peekable();
        let mut stopped = false;
        snapshot.scan_range(self.table_id, start, end, &mut |key, value| {
            // Overlay keys that sort before this committed key come first.
            while let Some((overlay_key, overlay_value)) = overlay.peek() {
                if overlay_key.as_slice() >= key {
                    break;
                }
                if let Some(v) = overlay_value
                    && !visit(overlay_key, v)?
                {
                    stopped = true;
                    return Ok(false);
                }
                overlay.next();
            }
            let keep_going = match overlay.peek() {
                Some((overlay_key, overlay_value)) if overlay_key.as_slice() == key => {
                    let keep_going = match overlay_value {
                        Some(v) => visit(key, v)?,
                        None => true,
                    };
                    overlay.next();
                    keep_going
                }
                _ => visit(key, value)?,
            };
            stopped = !keep_going;
            Ok(keep_going)
        })?;
        if stopped {
            return Ok(());
        }
        for (key, value) in overlay {
            if let Some(v) = value
                && !visit(key, v)?
            {
                break;
            }
        }
        Ok(())
    }

    /// The pending and sealed writes in `[start, end)` in key order, pending winning; a
    /// lazy merge, so that a scan that stops early (the first value of a range) costs
    /// O(log n), not a copy of the range.
    fn overlay_range<'a>(&'a self, start: &[u8], end: Option<&[u8]>) -> OverlayRange<'a> {
        let upper = match end {
            Some(end) => Bound::Excluded(end.to_vec()),
            None => Bound::Unbounded,
        };
        let empty = matches!(&upper, Bound::Excluded(e) if e.as_slice() <= start);
        let range = |map: &'a Overlay| {
            let range = if empty {
                map.range::<Vec<u8>, _>((Bound::Included(start.to_vec()), Bound::Excluded(start.to_vec())))
            } else {
                map.range::<Vec<u8>, _>((Bound::Included(start.to_vec()), upper.clone()))
            };
            range.peekable()
        };
        OverlayRange { pending: range(&self.pending), sealed: range(&self.sealed) }
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Copies this epoch's writes into `batch` and keeps them readable as the sealed layer
    /// until [`StateTable::committed`] (table writers when an epoch is cut, dataflow
    /// operators at a barrier).
    pub fn seal_into(&mut self, batch: &mut WriteBatch) {
        for (key, value) in &self.pending {
            push_write(batch, self.table_id, key, value);
        }
        self.sealed = std::mem::take(&mut self.pending);
    }

    /// The sealed writes are now in the snapshot the caller reads from.
    pub fn committed(&mut self) {
        self.sealed.clear();
    }
}

/// The merge of the pending and sealed writes of a range (see `overlay_range`).
struct OverlayRange<'a> {
    pending: std::iter::Peekable<std::collections::btree_map::Range<'a, Vec<u8>, Option<Vec<u8>>>>,
    sealed: std::iter::Peekable<std::collections::btree_map::Range<'a, Vec<u8>, Option<Vec<u8>>>>,
}

impl<'a> Iterator for OverlayRange<'a> {
    type Item = (&'a Vec<u8>, &'a Option<Vec<u8>>);

    fn next(&mut self) -> Option<Self::Item> {
        match (self.pending.peek(), self.sealed.peek()) {
            (Some((p, _)), Some((s, _))) if p == s => {
                self.sealed.next();
                self.pending.next()
            }
            (Some((p, _)), Some((s, _))) if s < p => self.sealed.next(),
            (Some(_), _) => self.pending.next(),
            (None, _) => self.sealed.next(),
        }
    }
}

fn push_write(batch: &mut WriteBatch, table_id: TableId, key: &[u8], value: &Option<Vec<u8>>) {
    match value {
        Some(v) => batch.put(table_id, key, v.clone()),
        None => batch.delete(table_id, key),
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
        table.seal_into(&mut batch);
        store.commit(batch).unwrap();
        table.committed();
        assert!(!table.has_pending());
        assert_eq!(store.snapshot().get(7, b"b").unwrap(), Some(b"B".to_vec()));
    }

    #[test]
    fn range_scans_merge_sealed_and_pending_layers() {
        let store = MemoryStore::default();
        let mut batch = WriteBatch::default();
        for key in [b"a1", b"a3", b"b1"] {
            batch.put(9, key, key.to_vec());
        }
        store.commit(batch).unwrap();
        let mut table = StateTable::new(9);
        table.put(b"a2".to_vec(), b"x".to_vec());
        table.delete(b"a3".to_vec());
        let mut sealed = WriteBatch::default();
        table.seal_into(&mut sealed);
        table.put(b"a3".to_vec(), b"again".to_vec());
        table.put(b"a4".to_vec(), b"y".to_vec());
        let snapshot = store.snapshot();
        let mut seen = Vec::new();
        table
            .scan_range(snapshot.as_ref(), b"a", Some(b"b"), &mut |k, v| {
                seen.push(format!("{}={}", String::from_utf8_lossy(k), String::from_utf8_lossy(v)));
                Ok(seen.len() < 3)
            })
            .unwrap();
        assert_eq!(seen, ["a1=a1", "a2=x", "a3=again"]);
        assert_eq!(sealed.ops.len(), 2);
        // Once the sealed writes are committed, the fresh snapshot serves them.
        store.commit(sealed).unwrap();
        table.committed();
        assert_eq!(table.get(store.snapshot().as_ref(), b"a2").unwrap(), Some(b"x".to_vec()));
        assert_eq!(table.get(snapshot.as_ref(), b"a2").unwrap(), None);
    }
}
