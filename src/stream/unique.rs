//! The table writer's side of `UNIQUE` constraints.
//!
//! Each constraint keeps, in a state table of its own, every value its columns hold
//! (encoded as a key) mapped to the primary key of the row that holds it; rows with a NULL
//! among the columns are not kept (they never conflict) unless the constraint is
//! `NULLS NOT DISTINCT`. A change is checked before it is applied ([`UniqueIndexes::check`],
//! which fails with 23505 and changes nothing), then applied with the rows
//! ([`UniqueIndexes::apply`]) and committed with them in the epoch: one point read per
//! value inserted, no scan.
//!
//! As the writer applies a chunk, deletes go first: `UPDATE t SET u = u + 1` frees each
//! old value before it takes the new ones, so it succeeds where the values only move
//! (Postgres checks row by row and can fail there; Sabot checks the statement's outcome).

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch};
use datafusion::arrow::row::Rows;
use datafusion::arrow::util::display::array_value_to_string;

use super::message::{Chunk, Op};
use crate::catalog::{TableDesc, UniqueDef};
use crate::common::row::RowCodec;
use crate::common::{Error, Result, SqlState};
use crate::state::{Snapshot, StateTable, TableId, WriteBatch};

/// Changes to a table's unique indexes not applied yet (a statement's, or a transaction
/// block's): for each constraint, each value written and the key of the row that now holds
/// it (None: freed).
#[derive(Clone, Debug, Default)]
pub struct UniqueWrites(Vec<BTreeMap<Vec<u8>, Option<Vec<u8>>>>);

/// The values of new UNIQUE constraints, read from a table's rows: for each constraint
/// (by state table), its (value, row key) pairs.
pub type Seeded = BTreeMap<TableId, Vec<(Vec<u8>, Vec<u8>)>>;

/// The unique indexes of one table.
#[derive(Debug, Default)]
pub struct UniqueIndexes(Vec<UniqueIndex>);

#[derive(Debug)]
struct UniqueIndex {
    def: UniqueDef,
    codec: RowCodec,
    state: StateTable,
}

impl UniqueIndexes {
    pub fn open(desc: &TableDesc) -> Result<Self> {
        desc.uniques
            .iter()
            .map(|def| UniqueIndex::new(desc, def.clone()))
            .collect::<Result<_>>()
            .map(UniqueIndexes)
    }

    /// The indexes of `desc` (an `ALTER TABLE`): the ones it keeps carry their state over,
    /// new ones start from `seeded` (value, row key) pairs, to be written with the next epoch.
    pub fn alter(&mut self, desc: &TableDesc, mut seeded: Seeded) -> Result<()> {
        let mut old: BTreeMap<TableId, UniqueIndex> = self.0.drain(..).map(|i| (i.def.state, i)).collect();
        for def in &desc.uniques {
            let index = match old.remove(&def.state) {
                Some(mut index) => {
                    index.def = def.clone();
                    index
                }
                None => {
                    let mut index = UniqueIndex::new(desc, def.clone())?;
                    for (value, key) in seeded.remove(&def.state).unwrap_or_default() {
                        index.state.put(value, key);
                    }
                    index
                }
            };
            self.0.push(index);
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks `chunk` (whose rows have the primary keys `keys`) against the indexes with
    /// `base`'s changes on top, as [`UniqueIndexes::apply`] would apply it: its deletes
    /// first, then its inserts. Returns `base` with the chunk's changes added; a value
    /// inserted that is already held (by a row not deleted) is 23505.
    pub fn check(
        &self,
        desc: &TableDesc,
        snapshot: &dyn Snapshot,
        base: Option<&UniqueWrites>,
        chunk: &Chunk,
        keys: &Rows,
    ) -> Result<UniqueWrites> {
        let mut writes = base.cloned().unwrap_or_default();
        writes.0.resize_with(self.0.len(), BTreeMap::new);
        if self.0.is_empty() {
            return Ok(writes);
        }
        for (index, written) in self.0.iter().zip(writes.0.iter_mut()) {
            let values = index.values(&chunk.data)?;
            for (row, op) in chunk.ops.iter().enumerate() {
                if matches!(op, Op::Delete | Op::UpdateDelete)
                    && let Some(value) = values.get(row)
                {
                    written.insert(value.to_vec(), None);
                }
            }
            for (row, op) in chunk.ops.iter().enumerate() {
                if !matches!(op, Op::Insert | Op::UpdateInsert) {
                    continue;
                }
                let Some(value) = values.get(row) else { continue };
                let held = match written.get(value) {
                    Some(holder) => holder.is_some(),
                    None => index.state.get(snapshot, value)?.is_some(),
                };
                if held {
                    return Err(index.violation(desc, &chunk.data, row));
                }
                written.insert(value.to_vec(), Some(keys.row(row).data().to_vec()));
            }
        }
        Ok(writes)
    }

    /// Applies a checked chunk's changes: deletes first, then inserts.
    pub fn apply(&mut self, chunk: &Chunk, keys: &Rows) -> Result<()> {
        for index in &mut self.0 {
            let values = index.values(&chunk.data)?;
            for (row, op) in chunk.ops.iter().enumerate() {
                if matches!(op, Op::Delete | Op::UpdateDelete)
                    && let Some(value) = values.get(row)
                {
                    index.state.delete(value.to_vec());
                }
            }
            for (row, op) in chunk.ops.iter().enumerate() {
                if matches!(op, Op::Insert | Op::UpdateInsert)
                    && let Some(value) = values.get(row)
                {
                    index.state.put(value.to_vec(), keys.row(row).data().to_vec());
                }
            }
        }
        Ok(())
    }

    pub fn has_pending(&self) -> bool {
        self.0.iter().any(|i| i.state.has_pending())
    }

    pub fn seal_into(&mut self, batch: &mut WriteBatch) {
        for index in &mut self.0 {
            index.state.seal_into(batch);
        }
    }

    pub fn committed(&mut self) {
        for index in &mut self.0 {
            index.state.committed();
        }
    }
}

/// The encoded values of a batch's rows under one constraint; None for a row exempt
/// because of a NULL.
struct Values {
    rows: Rows,
    exempt: Vec<bool>,
}

impl Values {
    fn get(&self, row: usize) -> Option<&[u8]> {
        (!self.exempt[row]).then(|| self.rows.row(row).data())
    }
}

impl UniqueIndex {
    fn new(desc: &TableDesc, def: UniqueDef) -> Result<Self> {
        let types: Vec<_> = def.columns.iter().map(|&i| desc.columns[i].sql_type.to_arrow()).collect();
        Ok(UniqueIndex { codec: RowCodec::new(&types)?, state: StateTable::new(def.state), def })
    }

    fn columns(&self, batch: &RecordBatch) -> Vec<ArrayRef> {
        self.def.columns.iter().map(|&i| batch.column(i).clone()).collect()
    }

    fn values(&self, batch: &RecordBatch) -> Result<Values> {
        let columns = self.columns(batch);
        let exempt = (0..batch.num_rows())
            .map(|row| !self.def.nulls_not_distinct && columns.iter().any(|c| c.is_null(row)))
            .collect();
        Ok(Values { rows: self.codec.encode(&columns)?, exempt })
    }

    /// `Key (columns)=(values)` of a row, as Postgres details a violation.
    fn key_text(&self, desc: &TableDesc, batch: &RecordBatch, row: usize) -> String {
        let names: Vec<&str> = self.def.columns.iter().map(|&i| desc.columns[i].name.as_str()).collect();
        let values: Vec<String> = self
            .columns(batch)
            .iter()
            .map(|c| {
                if c.is_null(row) { "null".into() } else { array_value_to_string(c, row).unwrap_or_default() }
            })
            .collect();
        format!("Key ({})=({})", names.join(", "), values.join(", "))
    }

    fn violation(&self, desc: &TableDesc, batch: &RecordBatch, row: usize) -> Error {
        Error::new(
            SqlState::UniqueViolation,
            format!("duplicate key value violates unique constraint \"{}\"", self.def.name),
        )
        .with_detail(format!("{} already exists.", self.key_text(desc, batch, row)))
    }
}

/// The (value, row key) pairs of a new UNIQUE constraint over a table's current rows
/// (`ALTER TABLE ... ADD UNIQUE`): 23505 when two rows hold the same value.
pub fn seed(
    desc: &TableDesc,
    def: &UniqueDef,
    rows: &RecordBatch,
    keys: &Rows,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let index = UniqueIndex::new(desc, def.clone())?;
    let values = index.values(rows)?;
    let mut seen: BTreeMap<&[u8], Vec<u8>> = BTreeMap::new();
    for row in 0..rows.num_rows() {
        let Some(value) = values.get(row) else { continue };
        if seen.insert(value, keys.row(row).data().to_vec()).is_some() {
            return Err(Error::new(
                SqlState::UniqueViolation,
                format!("could not create unique index \"{}\"", def.name),
            )
            .with_detail(format!("{} is duplicated.", index.key_text(desc, rows, row))));
        }
    }
    Ok(seen.into_iter().map(|(value, key)| (value.to_vec(), key)).collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int32Array, StringArray};

    use super::*;
    use crate::catalog::{ColumnDesc, TableCodec};
    use crate::common::SqlType;
    use crate::state::{MemoryStore, StateStore};

    fn table(nulls_not_distinct: bool) -> TableDesc {
        let column = |name: &str, sql_type| ColumnDesc {
            name: name.into(),
            sql_type,
            nullable: true,
            default: None,
            hidden: false,
        };
        TableDesc {
            id: 1,
            schema: "public".into(),
            name: "t".into(),
            columns: vec![column("id", SqlType::Int32), column("email", SqlType::Text)],
            primary_key: vec![0],
            view: None,
            connector: None,
            append_only: false,
            watermark: None,
            plain_view: None,
            checks: Vec::new(),
            key_constraint: None,
            uniques: vec![UniqueDef {
                name: "t_email_key".into(),
                columns: vec![1],
                state: 2,
                nulls_not_distinct,
                index_only: false,
            }],
        }
    }

    fn rows(desc: &TableDesc, ids: &[i32], emails: &[Option<&str>]) -> RecordBatch {
        let columns: Vec<ArrayRef> =
            vec![Arc::new(Int32Array::from(ids.to_vec())), Arc::new(StringArray::from(emails.to_vec()))];
        RecordBatch::try_new(desc.full_schema(), columns).unwrap()
    }

    /// Checks and, when it passes, applies `chunk`; returns the check's outcome.
    fn write(indexes: &mut UniqueIndexes, desc: &TableDesc, chunk: &Chunk) -> Result<()> {
        let store = MemoryStore::default();
        let keys = TableCodec::new(desc)?.encode_keys(&chunk.data)?;
        indexes.check(desc, store.snapshot().as_ref(), None, chunk, &keys)?;
        indexes.apply(chunk, &keys)
    }

    #[test]
    fn a_value_is_held_once_and_freed_by_a_delete() {
        let desc = table(false);
        let mut indexes = UniqueIndexes::open(&desc).unwrap();
        write(&mut indexes, &desc, &Chunk::inserts(rows(&desc, &[1], &[Some("a")]))).unwrap();
        let taken = write(&mut indexes, &desc, &Chunk::inserts(rows(&desc, &[2], &[Some("a")])));
        assert_eq!(taken.unwrap_err().sqlstate(), SqlState::UniqueViolation);
        // Twice in one chunk.
        let twice =
            write(&mut indexes, &desc, &Chunk::inserts(rows(&desc, &[3, 4], &[Some("b"), Some("b")])));
        assert_eq!(twice.unwrap_err().sqlstate(), SqlState::UniqueViolation);
        // Deleting row 1 and inserting row 2 with its value, in one chunk: deletes go first.
        let moved = Chunk::new(vec![Op::Delete, Op::Insert], rows(&desc, &[1, 2], &[Some("a"), Some("a")]));
        write(&mut indexes, &desc, &moved).unwrap();
    }

    #[test]
    fn nulls_never_conflict_unless_not_distinct() {
        let desc = table(false);
        let mut indexes = UniqueIndexes::open(&desc).unwrap();
        write(&mut indexes, &desc, &Chunk::inserts(rows(&desc, &[1, 2], &[None, None]))).unwrap();
        let desc = table(true);
        let mut indexes = UniqueIndexes::open(&desc).unwrap();
        let both = write(&mut indexes, &desc, &Chunk::inserts(rows(&desc, &[1, 2], &[None, None])));
        assert_eq!(both.unwrap_err().sqlstate(), SqlState::UniqueViolation);
    }

    #[test]
    fn seeding_finds_a_duplicate() {
        let desc = table(false);
        let batch = rows(&desc, &[1, 2, 3], &[Some("a"), None, Some("a")]);
        let keys = TableCodec::new(&desc).unwrap().encode_keys(&batch).unwrap();
        let error = seed(&desc, &desc.uniques[0], &batch, &keys).unwrap_err();
        assert_eq!(error.detail(), Some("Key (email)=(a) is duplicated."));
        let batch = rows(&desc, &[1, 2, 3], &[Some("a"), None, None]);
        assert_eq!(seed(&desc, &desc.uniques[0], &batch, &keys).unwrap().len(), 1);
    }
}
