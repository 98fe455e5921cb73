//! Operator state in memory: a keyed cache of decoded values over a [`StateTable`],
//! bounded by a byte budget, with RocksDB (or the in-memory store) as the durable tier.
//!
//! An operator finds a key's slot once per row ([`CachedTable::slot`]) — a hash lookup on
//! the encoded key, a store read only on a miss — and works on the decoded value in
//! place. Two kinds of value:
//! - a [`StoredValue`] is one stored value per key (an aggregate's group): a changed
//!   value is written straight into the epoch's batch when the epoch is sealed, once
//!   however often it changed, and stays in memory until the epoch is committed;
//! - a [`RowsValue`] is assembled from the stored rows under its key (a join's bucket of
//!   rows with one join key, an aggregate group's multiset of values), keyed by the key
//!   and a suffix: it is loaded by one prefix scan on a miss, keeps track of the rows it
//!   changed, and writes just those into the epoch's batch when it is sealed. An operator
//!   may also write rows of keys it does not hold to the [`StateTable`] under the cache
//!   (a join row whose bucket is not loaded); a load reads them too, and they are sealed
//!   before the values' rows, which therefore win.
//!
//! A changed entry stays in memory (pinned) from its change until the epoch that holds it
//! is committed. Only entries whose changes are committed are evicted, least recently used
//! first, so an evicted key reloads exactly what it held.
//!
//! Budgets: each cache may hold `operator_cache_bytes_max` bytes; all caches of the
//! server together `state_memory_bytes_max` (a [`MemoryBudget`] shared by every
//! operator). A cache over either sheds a quarter of its entries at its next
//! [`CachedTable::evict_if_over_budget`].

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Snapshot, StateTable, TableId, WriteBatch};
use crate::common::Result;

/// A value kept decoded in a [`CachedTable`].
pub trait CacheValue: Sized {
    /// Bytes the value owns on the heap (for the budget).
    fn heap_bytes(&self) -> usize;
}

/// A value stored under its key as one state-table value (as opposed to values an
/// operator assembles from several stored rows, which it loads with
/// [`CachedTable::slot_with`] and writes itself).
pub trait StoredValue: CacheValue {
    fn encode(&self) -> Vec<u8>;
    fn decode(bytes: &[u8]) -> Result<Self>;
}

/// Takes a changed row of a [`RowsValue`] when it is sealed: its key suffix and its new
/// value, or None when the row is gone.
pub type RowWriter<'a> = dyn FnMut(&[u8], Option<Vec<u8>>) + 'a;

/// A value assembled from the stored rows under its key: each row is stored under the
/// key followed by a suffix that orders the value's rows.
pub trait RowsValue: CacheValue {
    /// The value of a key with no rows.
    fn empty() -> Self;

    /// Adds a stored row (its key suffix and value) while the value is loaded, in key
    /// order; false stops the load (a value that holds only its key's first rows).
    fn load_row(&mut self, suffix: &[u8], value: &[u8]) -> Result<bool>;

    /// Hands over every row changed since the last seal, as `write(suffix, Some(value))`
    /// or, for a row that is gone, `write(suffix, None)`.
    fn seal_rows(&mut self, write: &mut RowWriter<'_>);
}

/// For a [`RowsValue`] that lists the keys of the rows it changes (a key maybe more than
/// once): the list, sorted and each key once, leaving `changed` empty.
pub fn take_changed(changed: &mut Vec<Box<[u8]>>) -> Vec<Box<[u8]>> {
    let mut keys = std::mem::take(changed);
    keys.sort_unstable();
    keys.dedup();
    changed.shrink_to(16);
    keys
}

/// The memory all operator caches of a server share.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
}

impl MemoryBudget {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(MemoryBudget { limit, used: AtomicUsize::new(0) })
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn charge(&self, from: usize, to: usize) {
        if to >= from {
            self.used.fetch_add(to - from, Ordering::Relaxed);
        } else {
            self.used.fetch_sub(from - to, Ordering::Relaxed);
        }
    }

    fn is_over(&self) -> bool {
        self.used() > self.limit
    }
}

/// What an operator's caches may hold: each its own limit, all together the shared one.
#[derive(Clone, Debug)]
pub struct StateMemory {
    pub operator_bytes_max: usize,
    pub global: Arc<MemoryBudget>,
}

impl StateMemory {
    pub fn new(operator_bytes_max: usize, global_bytes_max: usize) -> Self {
        StateMemory { operator_bytes_max, global: MemoryBudget::new(global_bytes_max) }
    }

    /// Generous limits, for tests and tools that do not configure memory.
    pub fn unbounded() -> Self {
        StateMemory::new(usize::MAX / 4, usize::MAX / 2)
    }
}

impl Default for StateMemory {
    fn default() -> Self {
        StateMemory::unbounded()
    }
}

/// Where a key's cached value lives while the caller works on it.
pub type Slot = u32;

struct Entry<V> {
    key: Key,
    /// `None`: the key has no value (absent from the store, or deleted).
    value: Option<V>,
    /// Changed since the last flush.
    dirty: bool,
    /// Changed since the last seal: its value goes into the next epoch's batch.
    unsealed: bool,
    /// Sealed into an epoch that is not known to be committed yet.
    sealed: bool,
    /// The cache's clock when the entry was last used (for eviction).
    used: u64,
    /// Bytes charged to the budget for this entry.
    charged: usize,
    /// Whether the slot holds an entry (false: on the free list).
    live: bool,
}

/// Hints the CPU to load every cache line of `value` (a no-op where there is no such
/// instruction).
#[inline]
fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let start = value as *const T as *const i8;
        for offset in (0..std::mem::size_of::<T>()).step_by(64) {
            // SAFETY: a prefetch reads nothing a program can observe, and the address is
            // inside `value`.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.add(offset)) }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// A key, stored in the entry itself when it is short (most group and join keys are a
/// few integers): a lookup then touches the index and the entry, not a third allocation.
enum Key {
    Inline { len: u8, bytes: [u8; INLINE_KEY] },
    Heap(Box<[u8]>),
}

const INLINE_KEY: usize = 22;

impl Key {
    fn new(key: &[u8]) -> Self {
        if key.len() <= INLINE_KEY {
            let mut bytes = [0u8; INLINE_KEY];
            bytes[..key.len()].copy_from_slice(key);
            Key::Inline { len: key.len() as u8, bytes }
        } else {
            Key::Heap(key.into())
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Key::Inline { .. } => 0,
            Key::Heap(key) => key.len(),
        }
    }
}

impl std::ops::Deref for Key {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Key::Inline { len, bytes } => &bytes[..*len as usize],
            Key::Heap(key) => key,
        }
    }
}

/// Bookkeeping bytes per entry beyond the entry itself, its key and value: the index's
/// slot and control byte.
const ENTRY_OVERHEAD: usize = 4 + 1;

pub struct CachedTable<V> {
    table: StateTable,
    /// Slots by key hash; a slot's key lives in its entry.
    index: hashbrown::HashTable<Slot>,
    hasher: foldhash::fast::FixedState,
    entries: Vec<Entry<V>>,
    free: Vec<Slot>,
    dirty: Vec<Slot>,
    unsealed: Vec<Slot>,
    sealed: Vec<Slot>,
    bytes: usize,
    clock: u64,
    memory: StateMemory,
}

/// Caches of values stored one per key keep every change in memory until it is
/// committed: a changed entry is written straight into the epoch's batch when it is
/// sealed, and stays (pinned) until the commit, so a key the cache does not hold has its
/// last write in the committed snapshot, where a miss reads it.
impl<V: StoredValue> CachedTable<V> {
    /// The slot of `key`, loading its value from the committed snapshot on a miss.
    pub fn slot(&mut self, snapshot: &dyn Snapshot, key: &[u8]) -> Result<Slot> {
        self.slot_with(key, |table, key| match snapshot.get(table.table_id(), key)? {
            Some(bytes) => Ok(Some(V::decode(&bytes)?)),
            None => Ok(None),
        })
    }

    /// Marks every changed value clean (its change has been emitted) and recounts its
    /// bytes; the values are written when the epoch is sealed.
    pub fn flush(&mut self) {
        let mut bytes = self.bytes;
        for slot in std::mem::take(&mut self.dirty) {
            let entry = &mut self.entries[slot as usize];
            entry.dirty = false;
            let charged = entry_bytes(&entry.key, &entry.value);
            bytes = bytes + charged - entry.charged;
            entry.charged = charged;
        }
        self.charge(bytes);
    }

    /// Flushes and writes every value changed in the epoch into `batch` (at a barrier);
    /// they stay in memory until [`CachedTable::committed`].
    pub fn seal_into(&mut self, batch: &mut WriteBatch) {
        self.flush();
        let table_id = self.table.table_id();
        let unsealed = sorted_by_key(&self.entries, std::mem::take(&mut self.unsealed));
        for slot in unsealed {
            let entry = &mut self.entries[slot as usize];
            entry.unsealed = false;
            match &entry.value {
                Some(value) => batch.put(table_id, &entry.key, value.encode()),
                None => batch.delete(table_id, &entry.key),
            }
            if !entry.sealed {
                entry.sealed = true;
                self.sealed.push(slot);
            }
        }
        self.table.seal_into(batch);
        self.clock += 1;
    }
}

/// Caches of values assembled from several rows hold every changed value in memory until
/// it is committed, as stored values do; a sealed value writes only its changed rows.
impl<V: RowsValue> CachedTable<V> {
    /// The slot of `key`, loading its rows on a miss from the committed snapshot and the
    /// writes the operator made to the state table itself (the slot always holds a value,
    /// possibly empty).
    pub fn rows_slot(&mut self, snapshot: &dyn Snapshot, key: &[u8]) -> Result<Slot> {
        self.rows_slot_from(snapshot, key, V::empty)
    }

    /// [`CachedTable::rows_slot`], loading into the value `new` makes.
    pub fn rows_slot_from(
        &mut self,
        snapshot: &dyn Snapshot,
        key: &[u8],
        new: impl FnOnce() -> V,
    ) -> Result<Slot> {
        self.slot_with(key, |table, key| {
            let mut value = new();
            let mut failure = None;
            let end = super::prefix_end(key);
            table.scan_range(snapshot, key, end.as_deref(), &mut |k, v| match value
                .load_row(&k[key.len()..], v)
            {
                Ok(more) => Ok(more),
                Err(e) => {
                    failure = Some(e);
                    Ok(false)
                }
            })?;
            match failure {
                Some(e) => Err(e),
                None => Ok(Some(value)),
            }
        })
    }

    /// The slot's value for changing its rows: it is sealed with the epoch. Call
    /// [`CachedTable::recharge`] after changes that alter its size.
    pub fn change(&mut self, slot: Slot) -> &mut V {
        let entry = &mut self.entries[slot as usize];
        if !entry.unsealed {
            entry.unsealed = true;
            self.unsealed.push(slot);
        }
        entry.value.get_or_insert_with(V::empty)
    }

    /// Writes the rows changed in the epoch into `batch` (at a barrier); the values stay
    /// in memory until [`CachedTable::committed`].
    pub fn seal_rows_into(&mut self, batch: &mut WriteBatch) {
        self.table.seal_into(batch);
        let table_id = self.table.table_id();
        let unsealed = sorted_by_key(&self.entries, std::mem::take(&mut self.unsealed));
        let mut bytes = self.bytes;
        for slot in unsealed {
            let entry = &mut self.entries[slot as usize];
            entry.unsealed = false;
            if let Some(value) = &mut entry.value {
                let key = &*entry.key;
                value.seal_rows(&mut |suffix, row| match row {
                    Some(row) => batch.put_parts(table_id, &[key, suffix], row),
                    None => batch.delete_parts(table_id, &[key, suffix]),
                });
            }
            let charged = entry_bytes(&entry.key, &entry.value);
            bytes = bytes + charged - entry.charged;
            entry.charged = charged;
            if !entry.sealed {
                entry.sealed = true;
                self.sealed.push(slot);
            }
        }
        self.charge(bytes);
        self.clock += 1;
    }
}

impl<V: CacheValue> CachedTable<V> {
    pub fn new(table_id: TableId, memory: StateMemory) -> Self {
        CachedTable {
            table: StateTable::new(table_id),
            index: hashbrown::HashTable::new(),
            hasher: foldhash::fast::FixedState::with_seed(0x5ab07),
            entries: Vec::new(),
            free: Vec::new(),
            dirty: Vec::new(),
            unsealed: Vec::new(),
            sealed: Vec::new(),
            bytes: 0,
            clock: 0,
            memory,
        }
    }

    pub fn table_id(&self) -> TableId {
        self.table.table_id()
    }

    /// The state table under the cache (for range scans of keys the cache does not hold).
    pub fn table(&self) -> &StateTable {
        &self.table
    }

    /// The slot of `key`, loading its value with `load` (given the state table and the
    /// key) on a miss.
    pub fn slot_with(
        &mut self,
        key: &[u8],
        load: impl FnOnce(&StateTable, &[u8]) -> Result<Option<V>>,
    ) -> Result<Slot> {
        if let Some(slot) = self.lookup(key) {
            return Ok(slot);
        }
        let hash = self.hasher.hash_one(key);
        let value = load(&self.table, key)?;
        let key = Key::new(key);
        let charged = entry_bytes(&key, &value);
        let entry = Entry {
            key,
            value,
            dirty: false,
            unsealed: false,
            sealed: false,
            used: self.clock,
            charged,
            live: true,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.entries[slot as usize] = entry;
                slot
            }
            None => {
                self.entries.push(entry);
                (self.entries.len() - 1) as Slot
            }
        };
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.index.insert_unique(hash, slot, |&s| hasher.hash_one(&*entries[s as usize].key));
        self.charge(self.bytes + charged);
        Ok(slot)
    }

    /// Starts loading the entry of `key` into the CPU cache, if the cache holds it: an
    /// operator that looks up a chunk's keys prefetches a run of them first, so that
    /// their memory accesses overlap instead of each lookup waiting for its own.
    pub fn prefetch(&self, key: &[u8]) {
        let hash = self.hasher.hash_one(key);
        if let Some(&slot) = self.index.iter_hash(hash).next() {
            prefetch(&self.entries[slot as usize]);
        }
    }

    /// The slot of `key` if the cache holds it; never reads the store.
    pub fn lookup(&mut self, key: &[u8]) -> Option<Slot> {
        let hash = self.hasher.hash_one(key);
        let entries = &self.entries;
        let slot = *self.index.find(hash, |&s| &*entries[s as usize].key == key)?;
        self.entries[slot as usize].used = self.clock;
        Some(slot)
    }

    pub fn key(&self, slot: Slot) -> &[u8] {
        &self.entries[slot as usize].key
    }

    pub fn get(&self, slot: Slot) -> Option<&V> {
        self.entries[slot as usize].value.as_ref()
    }

    /// Whether the slot has changed since the last flush.
    pub fn is_dirty(&self, slot: Slot) -> bool {
        self.entries[slot as usize].dirty
    }

    /// The slot's value for changing; marks it dirty.
    pub fn get_mut(&mut self, slot: Slot) -> &mut Option<V> {
        let entry = &mut self.entries[slot as usize];
        if !entry.dirty {
            entry.dirty = true;
            self.dirty.push(slot);
        }
        if !entry.unsealed {
            entry.unsealed = true;
            self.unsealed.push(slot);
        }
        &mut entry.value
    }

    /// The slot's value for changing what it derives in memory from its stored state (an
    /// index it builds on first use): nothing to write, so it is not marked changed. Call
    /// [`CachedTable::recharge`] after.
    pub fn peek_mut(&mut self, slot: Slot) -> Option<&mut V> {
        self.entries[slot as usize].value.as_mut()
    }

    /// The value of a slot already marked dirty ([`CachedTable::get_mut`]) since the last
    /// flush, for changing it further.
    pub fn value_mut(&mut self, slot: Slot) -> &mut Option<V> {
        let entry = &mut self.entries[slot as usize];
        debug_assert!(entry.dirty, "value_mut of a clean slot");
        &mut entry.value
    }

    /// Recounts the slot's bytes after a change of its size.
    pub fn recharge(&mut self, slot: Slot) {
        let entry = &mut self.entries[slot as usize];
        let charged = entry_bytes(&entry.key, &entry.value);
        let bytes = self.bytes + charged - entry.charged;
        entry.charged = charged;
        self.charge(bytes);
    }

    /// The state table under the cache, for writes of rows the cache does not hold (the
    /// null-aware anti join's).
    pub fn table_mut(&mut self) -> &mut StateTable {
        &mut self.table
    }

    /// Everything sealed so far is committed.
    pub fn committed(&mut self) {
        self.table.committed();
        for slot in std::mem::take(&mut self.sealed) {
            self.entries[slot as usize].sealed = false;
        }
    }

    /// The slots of every entry whose key lies in `[start, end)`, in key order.
    pub fn slots_in(&self, start: &[u8], end: &[u8]) -> Vec<Slot> {
        let slots: Vec<Slot> = self
            .index
            .iter()
            .copied()
            .filter(|&s| {
                let key = &*self.entries[s as usize].key;
                key >= start && key < end
            })
            .collect();
        sorted_by_key(&self.entries, slots)
    }

    /// Drops `slots` from memory whatever their state, changes not yet sealed included:
    /// for entries whose keys the owner deletes from the store itself (a range delete of
    /// state that can never be read again). Slots handed out before are invalid
    /// afterwards.
    pub fn forget(&mut self, slots: &[Slot]) {
        if slots.is_empty() {
            return;
        }
        let mut bytes = self.bytes;
        for &slot in slots {
            debug_assert!(self.entries[slot as usize].live, "forgetting a free slot");
            bytes -= self.release(slot);
        }
        let entries = &self.entries;
        for list in [&mut self.dirty, &mut self.unsealed, &mut self.sealed] {
            list.retain(|&s| entries[s as usize].live);
        }
        self.charge(bytes);
    }

    /// Takes `slot`'s entry out of the index and puts the slot on the free list; the
    /// bytes it was charged (the caller recharges the total).
    fn release(&mut self, slot: Slot) -> usize {
        let entry = &mut self.entries[slot as usize];
        let hash = self.hasher.hash_one(&*entry.key);
        if let Ok(found) = self.index.find_entry(hash, |&s| s == slot) {
            found.remove();
        }
        let charged = entry.charged;
        *entry = Entry {
            key: Key::new(&[]),
            value: None,
            dirty: false,
            unsealed: false,
            sealed: false,
            used: 0,
            charged: 0,
            live: false,
        };
        self.free.push(slot);
        charged
    }

    /// Whether this cache or all caches together hold more than their budget.
    fn is_over_budget(&self) -> bool {
        self.bytes > self.memory.operator_bytes_max
            || (self.memory.global.is_over() && !self.index.is_empty())
    }

    /// Bytes this cache holds (as charged to the budget).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// When over budget, drops the least recently used clean entries until the cache
    /// holds three quarters of what it did (or of its limit, if lower). Slots handed out
    /// before are invalid afterwards. Entries whose change is not committed yet stay.
    pub fn evict_if_over_budget(&mut self) {
        if !self.is_over_budget() {
            return;
        }
        let target = (self.bytes.min(self.memory.operator_bytes_max) / 4) * 3;
        let mut candidates: Vec<(u64, Slot)> = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.live && !e.dirty && !e.unsealed && !e.sealed)
            .map(|(slot, e)| (e.used, slot as Slot))
            .collect();
        candidates.sort_unstable();
        let mut bytes = self.bytes;
        for (_, slot) in candidates {
            if bytes <= target {
                break;
            }
            bytes -= self.release(slot);
        }
        self.charge(bytes);
        // Later lookups see a newer clock than every surviving entry's last use.
        self.clock += 1;
    }

    fn charge(&mut self, bytes: usize) {
        self.memory.global.charge(self.bytes, bytes);
        self.bytes = bytes;
    }
}

impl<V> Drop for CachedTable<V> {
    fn drop(&mut self) {
        self.memory.global.charge(self.bytes, 0);
    }
}

/// `slots` in key order: RocksDB inserts a run of increasing keys into its memtable next
/// to the previous one instead of searching its skip list from the top for each. Sorted by
/// each key's first eight bytes as an integer, then by the whole key where those tie.
fn sorted_by_key<V>(entries: &[Entry<V>], slots: Vec<Slot>) -> Vec<Slot> {
    let prefix = |key: &[u8]| {
        let mut bytes = [0u8; 8];
        let n = key.len().min(8);
        bytes[..n].copy_from_slice(&key[..n]);
        u64::from_be_bytes(bytes)
    };
    let mut keyed: Vec<(u64, Slot)> =
        slots.into_iter().map(|s| (prefix(&entries[s as usize].key), s)).collect();
    keyed.sort_unstable();
    let mut start = 0;
    while start < keyed.len() {
        let end = start + keyed[start..].iter().take_while(|(p, _)| *p == keyed[start].0).count();
        if end - start > 1 {
            keyed[start..end]
                .sort_unstable_by(|a, b| entries[a.1 as usize].key.cmp(&entries[b.1 as usize].key));
        }
        start = end;
    }
    keyed.into_iter().map(|(_, slot)| slot).collect()
}

fn entry_bytes<V: CacheValue>(key: &Key, value: &Option<V>) -> usize {
    ENTRY_OVERHEAD
        + std::mem::size_of::<Entry<V>>()
        + key.heap_bytes()
        + value.as_ref().map_or(0, V::heap_bytes)
}

#[cfg(test)]
mod tests;
