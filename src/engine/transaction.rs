//! Transactions: `BEGIN` ... `COMMIT` applies every write of the block in one epoch, so
//! tables and views see all of them or none; `ROLLBACK` discards them.
//!
//! Inside a block, DML computes its change as it would outside, over the table's current
//! state with the block's own earlier writes on top, and keeps it in the session instead of
//! handing it to the table's writer. `COMMIT` locks the writers of the tables written (in
//! table id order, the order the coordinator locks them in at a barrier, so no barrier
//! falls between them), checks that no key the block wrote was changed by another session
//! since the block first wrote it — else 40001, and nothing is applied — and applies the
//! changes in statement order. Reads inside the block see committed data and the block's
//! own writes (READ COMMITTED, with first-committer-wins on the keys written).
//!
//! An error inside a block aborts it: every statement until `ROLLBACK` (or `COMMIT`, which
//! then rolls back) fails with 25P02.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::sql::sqlparser::ast;

use crate::catalog::{TableCodec, TableDesc};
use crate::common::{Error, Result, SqlState};
use crate::sql::Statement;
use crate::state::{Epoch, Snapshot, StateTable, TableId};
use crate::stream::unique::UniqueWrites;
use crate::stream::{Chunk, Op, TableWriter};

/// A block's rows, written but not committed.
type Writes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// The open transaction block of a session.
#[derive(Default)]
pub(super) struct Transaction {
    /// The tables written, by id (the order their writers are locked in at COMMIT).
    tables: BTreeMap<TableId, TableWrites>,
    /// A statement failed: the block can only be rolled back.
    pub failed: bool,
}

struct TableWrites {
    desc: Arc<TableDesc>,
    codec: TableCodec,
    /// Each key written: its row now (None: deleted).
    rows: Writes,
    /// Each key written: its row when the block first wrote it, as other sessions had
    /// left it (what COMMIT checks is unchanged).
    base: Writes,
    /// The changes, in statement order.
    chunks: Vec<Chunk>,
    /// The changes' effect on the table's UNIQUE constraints, checked at each statement
    /// (and again at COMMIT, over the values other sessions committed since).
    uniques: UniqueWrites,
}

impl Transaction {
    /// The table's state for a statement of the block: `writer`'s (committed rows and the
    /// open epoch's) with the block's writes on top.
    pub fn state(&self, writer: &TableWriter) -> StateTable {
        let mut state = writer.state().clone();
        if let Some(table) = self.tables.get(&writer.desc().id) {
            overlay(&mut state, &table.rows);
        }
        state
    }

    /// The block's own writes to `desc` over a committed snapshot, for queries: None when
    /// the block has not written it.
    pub fn committed_state(&self, desc: &TableDesc) -> Option<StateTable> {
        let table = self.tables.get(&desc.id)?;
        let mut state = StateTable::new(desc.id);
        overlay(&mut state, &table.rows);
        Some(state)
    }

    /// The tables the block has written.
    pub fn tables(&self) -> impl Iterator<Item = &Arc<TableDesc>> {
        self.tables.values().map(|t| &t.desc)
    }

    /// Keeps a statement's validated change to `writer`'s table for COMMIT.
    pub fn record(&mut self, writer: &TableWriter, snapshot: &dyn Snapshot, chunk: Chunk) -> Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        let desc = writer.desc().clone();
        let table = match self.tables.entry(desc.id) {
            std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::btree_map::Entry::Vacant(entry) => entry.insert(TableWrites {
                codec: TableCodec::new(&desc)?,
                desc,
                rows: Writes::new(),
                base: Writes::new(),
                chunks: Vec::new(),
                uniques: UniqueWrites::default(),
            }),
        };
        let uniques = writer.check_unique(snapshot, Some(&table.uniques), &chunk)?;
        let keys = table.codec.encode_keys(&chunk.data)?;
        let rows = table.codec.encode_rows(&chunk.data)?;
        for i in 0..chunk.len() {
            let key = keys.row(i).data();
            if !table.base.contains_key(key) {
                table.base.insert(key.to_vec(), writer.get(snapshot, key)?);
            }
        }
        // As the writer applies a chunk: deletes first, then inserts.
        for (i, op) in chunk.ops.iter().enumerate() {
            if matches!(op, Op::Delete | Op::UpdateDelete) {
                table.rows.insert(keys.row(i).data().to_vec(), None);
            }
        }
        for (i, op) in chunk.ops.iter().enumerate() {
            if matches!(op, Op::Insert | Op::UpdateInsert) {
                table.rows.insert(keys.row(i).data().to_vec(), Some(rows.row(i).data().to_vec()));
            }
        }
        table.chunks.push(chunk);
        table.uniques = uniques;
        Ok(())
    }

    /// Applies the block's changes in one epoch, which it returns (None when the block
    /// wrote nothing); fails with 40001 (or 23505 for a key another session inserted)
    /// and applies nothing when another session changed a key the block wrote.
    pub async fn commit(self, db: &super::Database) -> Result<Option<Epoch>> {
        if self.tables.is_empty() {
            return Ok(None);
        }
        let mut writers = Vec::with_capacity(self.tables.len());
        for table in self.tables.values() {
            writers.push(db.writer(&table.desc)?.lock_owned().await);
        }
        db.coordinator.check_healthy()?;
        let snapshot = db.coordinator.store().snapshot();
        for (table, writer) in self.tables.values().zip(&writers) {
            check_unchanged(table, writer, snapshot.as_ref())?;
            let mut uniques = None;
            for chunk in &table.chunks {
                uniques = Some(writer.check_unique(snapshot.as_ref(), uniques.as_ref(), chunk)?);
            }
        }
        for (table, writer) in self.tables.into_values().zip(writers.iter_mut()) {
            for chunk in table.chunks {
                writer.apply(chunk).await?;
            }
        }
        Ok(Some(db.coordinator.pending_epoch()))
    }
}

fn overlay(state: &mut StateTable, rows: &Writes) {
    for (key, row) in rows {
        match row {
            Some(row) => state.put(key.clone(), row.clone()),
            None => state.delete(key.clone()),
        }
    }
}

/// Every key the block wrote still has the row it had when the block first wrote it.
fn check_unchanged(table: &TableWrites, writer: &TableWriter, snapshot: &dyn Snapshot) -> Result<()> {
    for (key, base) in &table.base {
        let now = writer.get(snapshot, key)?;
        if now == *base {
            continue;
        }
        // Another session inserted a key this block inserts too: a duplicate, as Postgres
        // reports it once the other transaction has committed.
        if base.is_none() && table.rows.get(key).is_some_and(Option::is_some) && !table.desc.has_row_id() {
            return Err(Error::new(
                SqlState::UniqueViolation,
                format!(
                    "duplicate key value violates unique constraint \"{}\"",
                    table.desc.primary_key_name()
                ),
            )
            .with_detail("Another session inserted the same key and committed first."));
        }
        return Err(Error::new(
            SqlState::SerializationFailure,
            "could not serialize access due to concurrent update",
        )
        .with_detail(format!(
            "Another session changed a row of \"{}\" that this transaction changed, and committed first.",
            table.desc.name
        ))
        .with_hint("Run the transaction again."));
    }
    Ok(())
}

/// What a statement inside a failed block gets.
pub fn aborted() -> Error {
    Error::new(
        SqlState::InFailedSqlTransaction,
        "current transaction is aborted, commands ignored until end of transaction block",
    )
}

/// What a transaction block runs: queries, DML, settings, FLUSH and the block's own
/// commands. DDL and connector statements fail with 25001 (Sabot runs them outside
/// blocks); savepoints with 0A000.
pub fn check_allowed(statement: &Statement) -> Result<()> {
    use ast::Statement as S;
    let command = match statement {
        Statement::Flush | Statement::CopyInline { .. } | Statement::ShowSources | Statement::ShowSinks => {
            return Ok(());
        }
        Statement::CreateSource(_) => "CREATE SOURCE".to_string(),
        Statement::DropSource { .. } => "DROP SOURCE".to_string(),
        Statement::CreateSink(_) => "CREATE SINK".to_string(),
        Statement::DropSink { .. } => "DROP SINK".to_string(),
        Statement::EmitOnWindowClose(_) => "CREATE MATERIALIZED VIEW".to_string(),
        Statement::RenameRelation { kind, .. } => format!("ALTER {}", kind.to_uppercase()),
        Statement::Sql(sql) => match sql.as_ref() {
            S::Savepoint { .. } | S::ReleaseSavepoint { .. } | S::Rollback { savepoint: Some(_), .. } => {
                return Err(Error::unsupported("savepoints")
                    .with_hint("a transaction block is rolled back as a whole with ROLLBACK"));
            }
            S::Query(_)
            | S::Insert(_)
            | S::Update(_)
            | S::Delete(_)
            | S::Truncate(_)
            | S::Copy { .. }
            | S::Set(_)
            | S::ShowVariable { .. }
            | S::ShowTables { .. }
            | S::ShowViews { .. }
            | S::StartTransaction { .. }
            | S::Commit { .. }
            | S::Rollback { .. } => return Ok(()),
            S::Explain { statement, .. } if !matches!(statement.as_ref(), S::CreateView(_)) => return Ok(()),
            other => super::session::statement_kind(other),
        },
    };
    Err(Error::new(SqlState::ActiveSqlTransaction, format!("{command} cannot run inside a transaction block"))
        .with_hint(
            "Sabot runs DDL outside transaction blocks: COMMIT or ROLLBACK first (drivers: use autocommit for DDL).",
        ))
}
