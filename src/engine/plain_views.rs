//! CREATE [OR REPLACE] VIEW: plain views, named queries that are expanded
//! where they are used (`sql::views`). Nothing of a view is stored but its definition.

use std::sync::Arc;

use datafusion::sql::sqlparser::ast;

use super::session::Outcome;
use super::{Database, query};
use crate::catalog::{Catalog, CatalogChange, ColumnDesc, PlainViewDef, TableDesc};
use crate::common::{Error, Result, SqlState, SqlType};
use crate::sql::ddl::resolve_name;
use crate::sql::views;

impl Database {
    pub(super) async fn create_plain_view(
        &self,
        create: &ast::CreateView,
        session_schema: &str,
    ) -> Result<Outcome> {
        check_plain_options(create)?;
        let _ddl = self.ddl_lock.lock().await;
        let (schema, name) = resolve_name(&create.name, session_schema)?;
        let catalog = self.catalog();
        if !catalog.schema_exists(&schema) {
            return Err(Error::new(SqlState::UndefinedSchema, format!("schema \"{schema}\" does not exist")));
        }
        let existing = catalog.table(&schema, &name).cloned();
        if let Some(existing) = &existing {
            if create.if_not_exists {
                return Ok(Outcome::command("CREATE VIEW")
                    .with_notice(format!("relation \"{name}\" already exists, skipping")));
            }
            if !create.or_replace {
                return Err(Error::new(
                    SqlState::DuplicateTable,
                    format!("relation \"{name}\" already exists"),
                ));
            }
            if !existing.is_plain_view() {
                return Err(Error::new(SqlState::WrongObjectType, format!("\"{name}\" is not a view")));
            }
        }
        let statement = ast::Statement::Query(create.query.clone());
        let ctx = self.planning_context(&catalog, session_schema);
        let plan = query::plan(&ctx, &query::name_subqueries(&statement)).await?;
        let column_names = super::views::view_column_names(&create.columns);
        let arrow = plan.schema().as_arrow().clone();
        let names = super::views::output_column_names(&statement, &arrow, &column_names, "CREATE VIEW")?;
        let columns: Vec<ColumnDesc> = arrow
            .fields()
            .iter()
            .zip(names)
            .map(|(field, name)| ColumnDesc {
                name,
                sql_type: SqlType::from_arrow(field),
                nullable: true,
                default: None,
                hidden: false,
            })
            .collect();
        // A new view takes the next id; applying its CreateTable moves the counter on.
        let id = existing.as_ref().map_or_else(|| catalog.next_table_id(), |old| old.id);
        let desc = TableDesc {
            id,
            schema,
            name,
            columns,
            primary_key: Vec::new(),
            view: None,
            connector: None,
            append_only: false,
            watermark: None,
            plain_view: Some(PlainViewDef {
                query: create.query.to_string(),
                schema_search: session_schema.to_string(),
                dependencies: views::referenced_relations(&create.query, &catalog, session_schema),
            }),
            checks: Vec::new(),
            key_constraint: None,
            uniques: Vec::new(),
        };
        let expanded = query::expand_views(&ctx, &mut statement.clone())?;
        views::check_not_recursive(&desc, &expanded)?;
        let mut changes = Vec::new();
        if let Some(old) = existing {
            check_replacement(&old, &desc, &catalog)?;
            changes.push(CatalogChange::DropTable(old));
        }
        let id = desc.id;
        changes.push(CatalogChange::CreateTable(Arc::new(desc)));
        // Postgres keeps a replaced view's comments; dropping the old descriptor removed them.
        changes.extend(catalog.comments().filter(|((table, _), _)| *table == id).map(
            |((_, column), text)| CatalogChange::SetComment {
                table: id,
                column: *column,
                comment: Some(text.clone()),
            },
        ));
        self.change_catalog(changes).await?;
        Ok(Outcome::command("CREATE VIEW"))
    }
}

/// Clauses of CREATE VIEW that Sabot does not take.
fn check_plain_options(create: &ast::CreateView) -> Result<()> {
    if create.temporary {
        return Err(
            Error::unsupported("CREATE TEMPORARY VIEW").with_hint("create a view in a schema of your own")
        );
    }
    if create.or_alter {
        return Err(Error::unsupported("CREATE OR ALTER VIEW").with_hint("use CREATE OR REPLACE VIEW"));
    }
    if !matches!(create.options, ast::CreateTableOptions::None) {
        return Err(Error::unsupported("options of CREATE VIEW (WITH (...))"));
    }
    Ok(())
}

/// Postgres' rule for CREATE OR REPLACE VIEW: the new query has the old columns, with the
/// same names and types, in the same order, and may add more at the end. Materialized
/// views and sinks over the view were computed from the old query, so it cannot change
/// under them.
fn check_replacement(old: &TableDesc, new: &TableDesc, catalog: &Catalog) -> Result<()> {
    if new.columns.len() < old.columns.len() {
        return Err(Error::new(SqlState::InvalidTableDefinition, "cannot drop columns from view"));
    }
    for (old_column, new_column) in old.columns.iter().zip(&new.columns) {
        if old_column.name != new_column.name {
            return Err(Error::new(
                SqlState::InvalidTableDefinition,
                format!(
                    "cannot change name of view column \"{}\" to \"{}\"",
                    old_column.name, new_column.name
                ),
            )
            .with_hint("Use ALTER VIEW ... RENAME COLUMN ... to change name of view column instead."));
        }
        if old_column.sql_type != new_column.sql_type {
            return Err(Error::new(
                SqlState::InvalidTableDefinition,
                format!(
                    "cannot change data type of view column \"{}\" from {} to {}",
                    old_column.name,
                    old_column.sql_type.name(),
                    new_column.sql_type.name()
                ),
            ));
        }
    }
    let maintained: Vec<Arc<TableDesc>> =
        catalog.dependents_closure(old.id).into_iter().filter(|d| d.is_view()).collect();
    if let Some(dependent) = maintained.first() {
        return Err(Error::new(
            SqlState::DependentObjectsStillExist,
            format!("cannot replace view {} because other objects depend on it", old.name),
        )
        .with_detail(format!(
            "{} {} depends on view {}: it was computed from the view's current query",
            dependent.kind_name(),
            dependent.name,
            old.name
        ))
        .with_hint(format!(
            "Drop {} first, or create the new query as a view of another name.",
            dependent.name
        )));
    }
    Ok(())
}
