//! `INSERT ... ON CONFLICT`.
//!
//! A table's primary key is its one unique constraint, so it is the one conflict target:
//! `ON CONFLICT (key columns)` or `ON CONFLICT ON CONSTRAINT t_pkey`. The proposed rows are
//! planned and checked as in a plain INSERT; then, under the table's writer lock, each
//! row's key is looked up in the table's current state (the open block's writes included):
//!
//! - a new key is inserted;
//! - a key that is taken is skipped (`DO NOTHING`) or updates the stored row (`DO UPDATE
//!   SET ... [WHERE ...]`, computed as a query over the stored and proposed rows, see
//!   [`crate::sql::on_conflict`]);
//! - a key proposed twice in one statement: `DO NOTHING` keeps the first, `DO UPDATE`
//!   fails with 21000 as in Postgres.
//!
//! Inserts and updates go to the table as one chunk, so views see the statement whole.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, UInt32Type};
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast::{self, ConflictTarget, DoUpdate, Insert, OnConflict, OnConflictAction};

use super::dml::{assignment_casts, check_unique, checked_rows, quoted_name};
use super::query;
use super::session::{Outcome, Session};
use crate::catalog::TableDesc;
use crate::common::{Error, Result, SqlState};
use crate::sql::assignments::Target;
use crate::sql::ddl::normalize_ident;
use crate::sql::on_conflict::{POSITION_COLUMN, excluded_column, update_query};
use crate::state::{Snapshot, StateTable};
use crate::stream::{Chunk, Op};

/// The ON CONFLICT clause of `insert` if it can take effect on `desc`, after checking its
/// target as Postgres does. None without a clause, and for a table without a primary key:
/// nothing can conflict there, so `DO NOTHING` (without a target) inserts every row.
pub(super) fn conflict_clause<'a>(insert: &'a Insert, desc: &TableDesc) -> Result<Option<&'a OnConflict>> {
    let Some(ast::OnInsert::OnConflict(on)) = &insert.on else { return Ok(None) };
    check_unique_target(desc, on)?;
    match &on.conflict_target {
        None if matches!(on.action, OnConflictAction::DoUpdate(_)) => {
            return Err(Error::new(
                SqlState::SyntaxError,
                "ON CONFLICT DO UPDATE requires inference specification or constraint name",
            )
            .with_hint("For example, ON CONFLICT (column_name)."));
        }
        None => {}
        Some(ConflictTarget::Columns(columns)) => check_target_columns(desc, columns)?,
        Some(ConflictTarget::OnConstraint(name)) => {
            let name = name.0.last().and_then(|p| p.as_ident()).map(normalize_ident).unwrap_or_default();
            if desc.has_row_id() || name != desc.primary_key_name() {
                return Err(Error::new(
                    SqlState::UndefinedObject,
                    format!("constraint \"{name}\" for table \"{}\" does not exist", desc.name),
                ));
            }
        }
    }
    Ok((!desc.has_row_id()).then_some(on))
}

/// Conflicts are resolved on the primary key only: a target that is one of the table's
/// UNIQUE constraints, or no target on a table that has some (Postgres would skip rows
/// conflicting on any of them), is 0A000 rather than a different answer.
fn check_unique_target(desc: &TableDesc, on: &OnConflict) -> Result<()> {
    if desc.uniques.is_empty() {
        return Ok(());
    }
    let named = match &on.conflict_target {
        None => {
            return Err(Error::unsupported(
                "ON CONFLICT without a target on a table with UNIQUE constraints",
            )
            .with_hint("name the primary key's columns as the target"));
        }
        Some(ConflictTarget::Columns(columns)) => {
            let named: BTreeSet<String> = columns.iter().map(normalize_ident).collect();
            desc.uniques.iter().find(|u| {
                named == u.columns.iter().map(|&i| desc.columns[i].name.clone()).collect::<BTreeSet<_>>()
            })
        }
        Some(ConflictTarget::OnConstraint(name)) => {
            let name = name.0.last().and_then(|p| p.as_ident()).map(normalize_ident).unwrap_or_default();
            desc.uniques.iter().find(|u| u.name == name)
        }
    };
    match named {
        Some(unique) => Err(Error::unsupported(format!(
            "ON CONFLICT on UNIQUE constraint \"{}\": Sabot resolves conflicts on the primary key only",
            unique.name
        ))),
        None => Ok(()),
    }
}

fn check_target_columns(desc: &TableDesc, columns: &[ast::Ident]) -> Result<()> {
    let named: BTreeSet<String> = columns.iter().map(normalize_ident).collect();
    for name in &named {
        if desc.column_index(name).is_none_or(|i| desc.columns[i].hidden) {
            return Err(Error::new(SqlState::UndefinedColumn, format!("column \"{name}\" does not exist")));
        }
    }
    let key: BTreeSet<String> = if desc.has_row_id() {
        BTreeSet::new()
    } else {
        desc.primary_key.iter().map(|&i| desc.columns[i].name.clone()).collect()
    };
    if named != key {
        return Err(Error::new(
            SqlState::InvalidColumnReference,
            "there is no unique or exclusion constraint matching the ON CONFLICT specification",
        ));
    }
    Ok(())
}

/// The proposed rows sorted by what happens to them.
#[derive(Default)]
struct Conflicts {
    /// Rows with a new key, inserted.
    fresh: Vec<u32>,
    /// Rows whose key is taken, with the stored row of that key.
    taken: Vec<u32>,
    stored: Vec<Vec<u8>>,
}

impl Session {
    pub(super) async fn insert_on_conflict(
        &mut self,
        insert: &Insert,
        on: &OnConflict,
        (ctx, desc, input): (SessionContext, Arc<TableDesc>, LogicalPlan),
        params: &[ScalarValue],
    ) -> Result<Outcome> {
        let (_, batches) = self.db.compute.collect(&ctx, query::bind(input, params)?).await?;
        let schema = desc.full_schema();
        let proposed = checked_rows(&desc, &schema, &batches)?;
        let writer = self.db.writer(&desc)?;
        let mut writer = writer.lock().await;
        self.db.coordinator.check_healthy()?;
        let snapshot = self.db.coordinator.store().snapshot();
        let keys = writer.encode_keys(&proposed)?;
        let updating = match &on.action {
            OnConflictAction::DoUpdate(update) => Some(update),
            OnConflictAction::DoNothing => None,
        };
        let state = self.table_state(&writer).into_owned();
        let conflicts = sort_conflicts(&state, snapshot.as_ref(), &keys, updating.is_some())?;
        let fresh = take_record_batch(&proposed, &UInt32Array::from(conflicts.fresh))?;
        let (old, new) = match updating {
            Some(update) if !conflicts.taken.is_empty() => {
                let old = writer.decode_rows(conflicts.stored.iter().map(Vec::as_slice))?;
                let excluded = take_record_batch(&proposed, &UInt32Array::from(conflicts.taken))?;
                self.conflict_updates(&desc, insert, update, old, excluded, params).await?
            }
            _ => (RecordBatch::new_empty(schema.clone()), RecordBatch::new_empty(schema.clone())),
        };
        let written = concat_batches(&schema, [&fresh, &new])?;
        let old_keys = writer.encode_keys(&old)?;
        let new_keys = writer.encode_keys(&new)?;
        if (0..old.num_rows()).any(|i| old_keys.row(i) != new_keys.row(i)) {
            // DO UPDATE moved a row to another key: it must be free.
            let freed: HashSet<Vec<u8>> = old_keys.iter().map(|r| r.data().to_vec()).collect();
            check_unique(&state, snapshot.as_ref(), &desc, &written, &writer.encode_keys(&written)?, &freed)?;
        }
        let count = written.num_rows();
        let chunk = inserts_and_updates(&fresh, &old, &new)?;
        let epoch = self.put_change(&mut writer, snapshot.as_ref(), chunk).await?;
        drop(writer);
        self.finish_write(epoch).await?;
        self.returning("INSERT 0", &desc, written, count, insert.returning.as_deref()).await
    }

    /// The stored rows DO UPDATE changes (those its WHERE accepts) and their new values.
    async fn conflict_updates(
        &self,
        desc: &Arc<TableDesc>,
        insert: &Insert,
        update: &DoUpdate,
        old: RecordBatch,
        excluded: RecordBatch,
        params: &[ScalarValue],
    ) -> Result<(RecordBatch, RecordBatch)> {
        let relation = conflict_relation(&old, &excluded)?;
        let table = MemTable::try_new(relation.schema(), vec![vec![relation]])?;
        let ctx = self.context_with(desc, Arc::new(table));
        let columns: Vec<String> = desc.columns.iter().map(|c| c.name.clone()).collect();
        let relation = quoted_name(desc);
        let alias = insert.table_alias.as_ref().map(|a| &a.alias);
        let target = Target { relation: &relation, alias, name: &desc.name, columns: &columns };
        let statement = update_query(&target, update)?;
        let plan = assignment_casts(query::plan(&ctx, &statement).await?, desc)?;
        let (_, batches) = self.db.compute.collect(&ctx, query::bind(plan, params)?).await?;
        let width = columns.len();
        let all = match batches.first() {
            Some(first) => concat_batches(&first.schema(), &batches)?,
            None => return Ok((old.slice(0, 0), old.slice(0, 0))),
        };
        let positions = all.column(width).as_primitive::<UInt32Type>().clone();
        let new = checked_rows(desc, &desc.full_schema(), &[all.project(&(0..width).collect::<Vec<_>>())?])?;
        Ok((take_record_batch(&old, &positions)?, new))
    }
}

/// Looks up each proposed key in the table's current state.
fn sort_conflicts(
    state: &StateTable,
    snapshot: &dyn Snapshot,
    keys: &datafusion::arrow::row::Rows,
    updating: bool,
) -> Result<Conflicts> {
    let mut conflicts = Conflicts::default();
    let mut seen = HashSet::with_capacity(keys.num_rows());
    for (row, key) in keys.iter().enumerate() {
        let key = key.data();
        if !seen.insert(key) {
            if updating {
                return Err(Error::new(
                    SqlState::CardinalityViolation,
                    "ON CONFLICT DO UPDATE command cannot affect row a second time",
                )
                .with_hint(
                    "Ensure that no rows proposed for insertion within the same command have duplicate \
                     constrained values.",
                ));
            }
            continue;
        }
        match state.get(snapshot, key)? {
            Some(stored) => {
                conflicts.taken.push(row as u32);
                conflicts.stored.push(stored);
            }
            None => conflicts.fresh.push(row as u32),
        }
    }
    Ok(conflicts)
}

/// The relation DO UPDATE reads: each stored row, its proposed row as `excluded` columns,
/// and the conflict's position.
fn conflict_relation(old: &RecordBatch, excluded: &RecordBatch) -> Result<RecordBatch> {
    let old_schema = old.schema();
    let mut fields: Vec<Field> = old_schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend(
        excluded.schema().fields().iter().map(|f| f.as_ref().clone().with_name(excluded_column(f.name()))),
    );
    fields.push(Field::new(POSITION_COLUMN, DataType::UInt32, false));
    let mut columns = old.columns().to_vec();
    columns.extend(excluded.columns().iter().cloned());
    columns.push(Arc::new(UInt32Array::from_iter_values(0..old.num_rows() as u32)));
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}

/// One chunk: the inserted rows, then each update as an adjacent pair.
fn inserts_and_updates(fresh: &RecordBatch, old: &RecordBatch, new: &RecordBatch) -> Result<Chunk> {
    let pairs = super::dml::update_pairs(old, new)?;
    let mut ops = vec![Op::Insert; fresh.num_rows()];
    ops.extend_from_slice(&pairs.ops);
    let rows = concat_batches(&fresh.schema(), [fresh, &pairs.data])?;
    Ok(Chunk::new(ops, rows))
}
