//! A join side's rows of one join key in memory (a [`Bucket`]), and their stored form:
//! under (join key, stream key), the degree followed by the encoded row.

use crate::common::Result;
use crate::state::{CacheValue, RowsValue, StateError};

/// The rows of one join key, in stream-key order, and which of them changed since the
/// last seal.
#[derive(Default)]
pub(super) struct Bucket {
    pub(super) rows: Vec<JoinRow>,
    /// Stream keys of rows inserted, removed or re-degreed since the last seal (a row
    /// at most once while it is in the bucket: see `JoinRow::changed`).
    changed: Vec<Box<[u8]>>,
    /// Heap bytes of the rows' data.
    data_bytes: usize,
    /// Heap bytes of the changed keys.
    changed_bytes: usize,
}

impl Bucket {
    fn position(&self, stream_key: &[u8]) -> std::result::Result<usize, usize> {
        self.rows.binary_search_by(|r| r.stream_key().cmp(stream_key))
    }

    fn mark(&mut self, at: usize) {
        let row = &mut self.rows[at];
        if !row.changed {
            row.changed = true;
            self.changed_bytes += row.key_len as usize;
            self.changed.push(row.stream_key().into());
        }
    }

    pub(super) fn insert(&mut self, stream_key: &[u8], degree: i64, row: &[u8]) {
        let at = match self.position(stream_key) {
            // The same stream key again (an update's insert after its delete in one chunk
            // is a remove first, so this is a duplicate key): the newer row wins.
            Ok(at) => {
                self.data_bytes -= self.rows[at].data.len();
                let changed = self.rows[at].changed;
                self.rows[at] = JoinRow::new(stream_key, degree, row);
                self.rows[at].changed = changed;
                at
            }
            Err(at) => {
                self.rows.insert(at, JoinRow::new(stream_key, degree, row));
                at
            }
        };
        self.data_bytes += self.rows[at].data.len();
        self.mark(at);
    }

    pub(super) fn remove(&mut self, stream_key: &[u8]) {
        let Ok(at) = self.position(stream_key) else { return };
        let row = self.rows.remove(at);
        self.data_bytes -= row.data.len();
        if !row.changed {
            self.changed_bytes += row.key_len as usize;
            self.changed.push(row.stream_key().into());
        }
    }

    pub(super) fn set_degree(&mut self, at: usize, degree: i64) {
        self.rows[at].degree = degree;
        self.mark(at);
    }
}

impl CacheValue for Bucket {
    fn heap_bytes(&self) -> usize {
        (self.rows.capacity() * std::mem::size_of::<JoinRow>())
            + (self.changed.capacity() * std::mem::size_of::<Box<[u8]>>())
            + self.data_bytes
            + self.changed_bytes
    }
}

impl RowsValue for Bucket {
    fn empty() -> Self {
        Bucket::default()
    }

    fn load_row(&mut self, stream_key: &[u8], value: &[u8]) -> Result<bool> {
        let row = JoinRow::decode(stream_key, value)?;
        self.data_bytes += row.data.len();
        self.rows.push(row);
        Ok(true)
    }

    fn seal_rows(&mut self, write: &mut crate::state::RowWriter<'_>) {
        // A key removed and inserted again was listed twice.
        for stream_key in &crate::state::take_changed(&mut self.changed) {
            match self.position(stream_key) {
                Ok(at) => {
                    let row = &mut self.rows[at];
                    row.changed = false;
                    write(stream_key, Some(encode_stored(row.degree, row.row())));
                }
                Err(_) => write(stream_key, None),
            }
        }
        self.changed_bytes = 0;
    }
}

/// A stored row: its stream key and encoded row in one allocation, its degree, and
/// whether it changed since the last seal.
pub(super) struct JoinRow {
    data: Box<[u8]>,
    key_len: u32,
    changed: bool,
    pub(super) degree: i64,
}

impl JoinRow {
    fn new(stream_key: &[u8], degree: i64, row: &[u8]) -> Self {
        JoinRow {
            data: [stream_key, row].concat().into(),
            key_len: stream_key.len() as u32,
            changed: false,
            degree,
        }
    }

    pub(super) fn decode(stream_key: &[u8], value: &[u8]) -> Result<Self> {
        if value.len() < 8 {
            return Err(StateError::Corrupt("join row without degree".into()).into());
        }
        let degree = i64::from_le_bytes(value[..8].try_into().expect("eight bytes"));
        Ok(JoinRow::new(stream_key, degree, &value[8..]))
    }

    pub(super) fn stream_key(&self) -> &[u8] {
        &self.data[..self.key_len as usize]
    }

    pub(super) fn row(&self) -> &[u8] {
        &self.data[self.key_len as usize..]
    }
}

pub(super) fn encode_stored(degree: i64, row: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(8 + row.len());
    value.extend_from_slice(&degree.to_le_bytes());
    value.extend_from_slice(row);
    value
}
