//! CREATE / DROP of schemas and tables.

use std::sync::Arc;

use datafusion::common::DFSchema;
use datafusion::sql::sqlparser::ast::{CreateTable, ObjectName, ObjectType, SchemaName};

use super::Database;
use super::session::Outcome;
use crate::catalog::{CatalogChange, TableDesc};
use crate::common::{Error, Result, SqlState, SqlType};
use crate::sql::ddl::{bind_create_table, normalize_ident};

impl Database {
    pub(super) async fn create_table(&self, create: &CreateTable, schema: &str) -> Result<Outcome> {
        let _ddl = self.ddl_lock.lock().await;
        let mut catalog = (*self.catalog()).clone();
        let desc = bind_create_table(create, &mut catalog, schema)?;
        if catalog.table(&desc.schema, &desc.name).is_some() {
            if create.if_not_exists {
                return Ok(Outcome::command("CREATE TABLE")
                    .with_notice(format!("relation \"{}\" already exists, skipping", desc.name)));
            }
            return Err(Error::new(
                SqlState::DuplicateTable,
                format!("relation \"{}\" already exists", desc.name),
            ));
        }
        check_defaults(&desc)?;
        super::checks::validate(&desc)?;
        // DDL is serialized by `ddl_lock`, so the id handed out by this copy of the catalog
        // is still free; applying the change moves the live id counter past it.
        self.change_catalog(vec![CatalogChange::CreateTable(Arc::new(desc))]).await?;
        Ok(Outcome::command("CREATE TABLE"))
    }

    pub(super) async fn create_schema(&self, name: &SchemaName, if_not_exists: bool) -> Result<Outcome> {
        let _ddl = self.ddl_lock.lock().await;
        let name = match name {
            SchemaName::Simple(name) if name.0.len() == 1 => name.0[0]
                .as_ident()
                .map(normalize_ident)
                .ok_or_else(|| Error::new(SqlState::SyntaxError, format!("invalid schema name {name}")))?,
            other => return Err(Error::unsupported(format!("schema name {other}"))),
        };
        if self.catalog().schema_exists(&name) {
            if if_not_exists {
                return Ok(Outcome::command("CREATE SCHEMA")
                    .with_notice(format!("schema \"{name}\" already exists, skipping")));
            }
            return Err(Error::new(SqlState::DuplicateSchema, format!("schema \"{name}\" already exists")));
        }
        self.change_catalog(vec![CatalogChange::CreateSchema(name)]).await?;
        Ok(Outcome::command("CREATE SCHEMA"))
    }

    pub(super) async fn drop_objects(
        &self,
        object_type: ObjectType,
        names: &[ObjectName],
        if_exists: bool,
        cascade: bool,
        schema: &str,
    ) -> Result<Outcome> {
        let (kind, is_kind, tag): (&str, fn(&TableDesc) -> bool, &str) = match object_type {
            ObjectType::Table => ("table", TableDesc::is_table, "DROP TABLE"),
            ObjectType::MaterializedView => {
                ("materialized view", TableDesc::is_materialized_view, "DROP MATERIALIZED VIEW")
            }
            ObjectType::View => ("view", TableDesc::is_plain_view, "DROP VIEW"),
            ObjectType::Index => ("index", TableDesc::is_index, "DROP INDEX"),
            ObjectType::Schema => {
                let _ddl = self.ddl_lock.lock().await;
                return self.drop_schemas(names, if_exists, cascade).await;
            }
            other => return Err(Error::unsupported(format!("DROP {other}"))),
        };
        let rest = match object_type {
            ObjectType::Index => self.drop_unique_indexes(names, schema).await?,
            _ => names.to_vec(),
        };
        if rest.is_empty() {
            return Ok(Outcome::command(tag));
        }
        let notices = self.drop_of_kind(&rest, if_exists, cascade, schema, kind, is_kind).await?;
        Ok(Outcome::command(tag).with_notices(notices))
    }

    async fn drop_schemas(&self, names: &[ObjectName], if_exists: bool, cascade: bool) -> Result<Outcome> {
        let catalog = self.catalog();
        let mut changes = Vec::new();
        let mut relations: Vec<Arc<TableDesc>> = Vec::new();
        let mut notices = Vec::new();
        for name in names {
            let name = name.to_string().trim_matches('"').to_string();
            if !catalog.schema_exists(&name) {
                if if_exists {
                    notices.push(format!("schema \"{name}\" does not exist, skipping"));
                    continue;
                }
                return Err(Error::new(
                    SqlState::UndefinedSchema,
                    format!("schema \"{name}\" does not exist"),
                ));
            }
            let tables: Vec<Arc<TableDesc>> = catalog.tables_in(&name).cloned().collect();
            let functions = super::functions::functions_in(&catalog, &name);
            if (!tables.is_empty() || !functions.is_empty()) && !cascade {
                let mut names: Vec<String> =
                    tables.iter().map(|t| format!("{} {}", t.kind_name(), t.qualified_name())).collect();
                names.extend(functions.iter().map(|f| format!("function {}.{}", f.schema, f.signature())));
                return Err(Error::new(
                    SqlState::DependentObjectsStillExist,
                    format!("cannot drop schema {name} because other objects depend on it"),
                )
                .with_detail(names.join("\n"))
                .with_hint("Use DROP ... CASCADE to drop the dependent objects too."));
            }
            relations.extend(tables);
            for function in functions {
                for view in self.function_dependents(&catalog, &function)? {
                    if !relations.iter().any(|r| r.id == view.id) {
                        relations.push(view);
                    }
                }
                changes.push(CatalogChange::DropFunction(function));
            }
            changes.push(CatalogChange::DropSchema(name));
        }
        let with_views = relations.iter().any(|t| t.is_view() || !catalog.dependents(t.id).is_empty());
        if with_views {
            notices.extend(self.drop_with_views(relations, cascade, changes).await?);
        } else {
            let mut all: Vec<CatalogChange> = relations.into_iter().map(CatalogChange::DropTable).collect();
            all.extend(changes);
            self.change_catalog(all).await?;
        }
        Ok(Outcome::command("DROP SCHEMA").with_notices(notices))
    }
}

/// Rejects DEFAULT expressions that do not parse, refer to columns, or cannot be stored in
/// their column, when the table is created rather than at the first INSERT.
pub(super) fn check_defaults(desc: &TableDesc) -> Result<()> {
    let ctx = datafusion::execution::context::SessionContext::new();
    let empty = DFSchema::empty();
    for column in &desc.columns {
        let Some(sql) = &column.default else { continue };
        let expr = ctx.parse_sql_expr(sql, &empty).map_err(|e| {
            Error::new(
                SqlState::SyntaxError,
                format!("invalid DEFAULT for column \"{}\": {}", column.name, Error::from(e)),
            )
        })?;
        let data_type = datafusion::logical_expr::ExprSchemable::get_type(&expr, &empty)?;
        let source = SqlType::from_arrow(&datafusion::arrow::datatypes::Field::new("", data_type, true));
        if !source.assignable_to(&column.sql_type) {
            return Err(Error::new(
                SqlState::DatatypeMismatch,
                format!(
                    "column \"{}\" is of type {} but default expression is of type {}",
                    column.name,
                    column.sql_type.name(),
                    source.name()
                ),
            ));
        }
    }
    Ok(())
}
