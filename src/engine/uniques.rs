//! DDL of UNIQUE constraints and unique indexes on an existing table:
//! `ALTER TABLE t ADD [CONSTRAINT name] UNIQUE (...)`, `CREATE UNIQUE INDEX`,
//! `ALTER TABLE t DROP CONSTRAINT`, `DROP INDEX` of a unique index.
//!
//! Each is an ALTER of the table committed at an epoch boundary (`alter::commit_alter`):
//! an added constraint's values are read from the table's rows there (23505 when two rows
//! share one, and nothing changes); a dropped one's state table is deleted with the epoch.
//! A unique index is a UNIQUE constraint without the constraint, as in Postgres: enforced
//! the same way, listed in `pg_index` but not in `pg_constraint`.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::sql::sqlparser::ast::{self, CreateIndex, NullsDistinctOption, ObjectName};

use super::Database;
use super::session::Outcome;
use crate::catalog::{Catalog, TableDesc};
use crate::common::{Error, Result, SqlState};
use crate::sql::ddl::{normalize_ident, resolve_name};
use crate::sql::uniques::{DeclaredUnique, bind_uniques};

impl Database {
    /// `ALTER TABLE t ADD [CONSTRAINT name] UNIQUE (columns)`.
    pub(super) async fn add_unique(
        &self,
        catalog: &Catalog,
        desc: &Arc<TableDesc>,
        unique: &ast::UniqueConstraint,
    ) -> Result<()> {
        self.add_unique_def(catalog, desc, unique.clone(), false).await
    }

    async fn add_unique_def(
        &self,
        catalog: &Catalog,
        desc: &Arc<TableDesc>,
        unique: ast::UniqueConstraint,
        index_only: bool,
    ) -> Result<()> {
        if desc.is_materialized_view() {
            return Err(Error::unsupported("unique indexes on a materialized view").with_hint(
                "a view's rows are what its query makes them: UNIQUE is enforced on a table's writes",
            ));
        }
        if !desc.is_table() {
            return Err(Error::new(SqlState::WrongObjectType, format!("\"{}\" is not a table", desc.name)));
        }
        if desc.connector.is_some() {
            return Err(Error::unsupported("UNIQUE constraints on a table with a connector")
                .with_hint("a connector's rows upsert by the primary key"));
        }
        let mut next = catalog.clone();
        let mut taken: HashSet<String> = desc.checks.iter().map(|c| c.name.clone()).collect();
        taken.insert(desc.primary_key_name());
        let declared = DeclaredUnique { constraint: unique, name: None, column: None };
        let mut added =
            bind_uniques(vec![declared], &desc.columns, (&desc.schema, &desc.name), &mut taken, &mut next)?;
        for def in &mut added {
            def.index_only = index_only;
        }
        let mut altered = (**desc).clone();
        altered.uniques.extend(added);
        self.commit_alter(&next, desc, Arc::new(altered), None).await
    }

    /// `CREATE UNIQUE INDEX [IF NOT EXISTS] [name] ON t (columns) [NULLS [NOT] DISTINCT]`.
    pub(super) async fn create_unique_index(&self, create: &CreateIndex, schema: &str) -> Result<Outcome> {
        if !create.include.is_empty() {
            return Err(Error::unsupported("INCLUDE in a unique index"));
        }
        let _ddl = self.ddl_lock.lock().await;
        let catalog = self.catalog();
        let (table_schema, table_name) = resolve_name(&create.table_name, schema)?;
        let table = catalog.table(&table_schema, &table_name).cloned().ok_or_else(|| {
            Error::new(SqlState::UndefinedTable, format!("relation \"{table_name}\" does not exist"))
        })?;
        let name = match &create.name {
            Some(name) => super::indexes::index_name(name)?,
            None => {
                let columns: Vec<String> = create.columns.iter().map(|c| c.column.expr.to_string()).collect();
                let stem = format!("{}_{}", table.name, columns.join("_").to_lowercase());
                crate::sql::uniques::choose_name(&catalog, &table.schema, &stem, "idx", &HashSet::new())
            }
        };
        if create.if_not_exists
            && catalog.relation_name_taken(&table.schema, &name, crate::state::TableId::MAX)
        {
            return Ok(Outcome::command("CREATE INDEX")
                .with_notice(format!("relation \"{name}\" already exists, skipping")));
        }
        let unique = ast::UniqueConstraint {
            name: Some(ast::Ident::with_quote('"', name)),
            index_name: None,
            index_type_display: ast::KeyOrIndexDisplay::None,
            index_type: None,
            columns: create.columns.clone(),
            index_options: Vec::new(),
            characteristics: None,
            nulls_distinct: match create.nulls_distinct {
                Some(false) => NullsDistinctOption::NotDistinct,
                Some(true) => NullsDistinctOption::Distinct,
                None => NullsDistinctOption::None,
            },
        };
        self.add_unique_def(&catalog, &table, unique, true).await?;
        Ok(Outcome::command("CREATE INDEX"))
    }

    /// `ALTER TABLE t DROP CONSTRAINT [IF EXISTS] name`: a UNIQUE or CHECK constraint.
    pub(super) async fn drop_constraint(
        &self,
        catalog: &Catalog,
        desc: &Arc<TableDesc>,
        name: &ast::Ident,
        if_exists: bool,
    ) -> Result<Outcome> {
        let name = normalize_ident(name);
        let mut altered = (**desc).clone();
        if let Some(at) = altered.uniques.iter().position(|u| u.name == name && !u.index_only) {
            altered.uniques.remove(at);
        } else if let Some(at) = altered.checks.iter().position(|c| c.name == name) {
            altered.checks.remove(at);
        } else if !desc.has_row_id() && desc.primary_key_name() == name {
            return Err(Error::unsupported("dropping a primary key")
                .with_hint("the primary key is how Sabot keys a table's rows"));
        } else if if_exists {
            return Ok(Outcome::command("ALTER TABLE").with_notice(format!(
                "constraint \"{name}\" of relation \"{}\" does not exist, skipping",
                desc.name
            )));
        } else {
            return Err(Error::new(
                SqlState::UndefinedObject,
                format!("constraint \"{name}\" of relation \"{}\" does not exist", desc.name),
            ));
        }
        self.commit_alter(catalog, desc, Arc::new(altered), None).await?;
        Ok(Outcome::command("ALTER TABLE"))
    }

    /// `ALTER INDEX name RENAME TO new` of a UNIQUE constraint's or a unique index's index
    /// (a constraint is renamed with its index, as in Postgres).
    pub(super) async fn rename_unique(
        &self,
        catalog: &Catalog,
        table: &Arc<TableDesc>,
        name: &str,
        new_name: &ObjectName,
    ) -> Result<()> {
        let new_name = super::indexes::index_name(new_name)?;
        if catalog.relation_name_taken(&table.schema, &new_name, crate::state::TableId::MAX) {
            return Err(Error::new(
                SqlState::DuplicateTable,
                format!("relation \"{new_name}\" already exists"),
            ));
        }
        let mut altered = (**table).clone();
        for unique in altered.uniques.iter_mut().filter(|u| u.name == name) {
            unique.name = new_name.clone();
        }
        self.commit_alter(catalog, table, Arc::new(altered), None).await
    }

    /// `DROP INDEX` of the unique indexes among `names` (the rest are returned to be dropped
    /// as relations): 2BP01 for a UNIQUE constraint's index, as in Postgres.
    pub(super) async fn drop_unique_indexes(
        &self,
        names: &[ObjectName],
        schema: &str,
    ) -> Result<Vec<ObjectName>> {
        let mut rest = Vec::new();
        for name in names {
            let _ddl = self.ddl_lock.lock().await;
            let catalog = self.catalog();
            let (index_schema, index) = resolve_name(name, schema)?;
            let Some(table) = catalog.unique_owner(&index_schema, &index).cloned() else {
                rest.push(name.clone());
                continue;
            };
            if table.uniques.iter().any(|u| u.name == index && !u.index_only) {
                return Err(Error::new(
                    SqlState::DependentObjectsStillExist,
                    format!(
                        "cannot drop index {index} because constraint {index} on table {} requires it",
                        table.name
                    ),
                )
                .with_hint(format!("You can drop constraint {index} on table {} instead.", table.name)));
            }
            let mut altered = (*table).clone();
            altered.uniques.retain(|u| u.name != index);
            self.commit_alter(&catalog, &table, Arc::new(altered), None).await?;
        }
        Ok(rest)
    }
}
