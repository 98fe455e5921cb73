//! `COMMENT ON { TABLE | VIEW | MATERIALIZED VIEW | COLUMN } name IS 'text' | NULL`.
//!
//! Comments live in the catalog apart from the relations (as in Postgres' `pg_description`)
//! and go with the relation when it is dropped. `pg_description`, `obj_description` and
//! `col_description` read them, so psql's `\d+` and `\dt+` show them.

use datafusion::sql::sqlparser::ast::{CommentObject, ObjectName};

use super::Database;
use super::session::Outcome;
use crate::catalog::{CatalogChange, TableDesc};
use crate::common::{Error, Result, SqlState};
use crate::sql::ddl::{normalize_ident, resolve_name};

impl Database {
    pub(super) async fn comment_on(
        &self,
        object_type: CommentObject,
        name: &ObjectName,
        comment: Option<String>,
        session_schema: &str,
    ) -> Result<Outcome> {
        let _ddl = self.ddl_lock.lock().await;
        let catalog = self.catalog();
        let (relation, column) = match object_type {
            CommentObject::Column => {
                let (relation, column) = split_column(name)?;
                (relation, Some(column))
            }
            CommentObject::Table | CommentObject::View | CommentObject::MaterializedView => {
                (name.clone(), None)
            }
            other => return Err(Error::unsupported(format!("COMMENT ON {other}"))),
        };
        let (schema, table) = resolve_name(&relation, session_schema)?;
        let desc = catalog.table(&schema, &table).ok_or_else(|| {
            Error::new(SqlState::UndefinedTable, format!("relation \"{relation}\" does not exist"))
        })?;
        let number = match column {
            Some(column) => column_number(desc, &column)?,
            None => {
                check_kind(desc, object_type)?;
                0
            }
        };
        let comment = comment.filter(|text| !text.is_empty());
        self.change_catalog(vec![CatalogChange::SetComment { table: desc.id, column: number, comment }])
            .await?;
        Ok(Outcome::command("COMMENT"))
    }
}

/// `[schema.]table.column` as the relation's name and the column's.
fn split_column(name: &ObjectName) -> Result<(ObjectName, String)> {
    let parts: Vec<_> = name.0.iter().filter_map(|p| p.as_ident()).cloned().collect();
    match parts.split_last() {
        Some((column, relation)) if !relation.is_empty() && relation.len() <= 2 => {
            Ok((ObjectName::from(relation.to_vec()), normalize_ident(column)))
        }
        _ => Err(Error::new(SqlState::SyntaxError, "column name must be qualified")),
    }
}

/// The 1-based number of a visible column.
fn column_number(desc: &TableDesc, column: &str) -> Result<u32> {
    match desc.column_index(column) {
        Some(i) if !desc.columns[i].hidden => Ok(i as u32 + 1),
        _ => Err(Error::new(
            SqlState::UndefinedColumn,
            format!("column \"{column}\" of relation \"{}\" does not exist", desc.name),
        )),
    }
}

/// `COMMENT ON TABLE` names a table (or a source or sink, which psql lists among them),
/// `COMMENT ON VIEW` a view, `COMMENT ON MATERIALIZED VIEW` a materialized view.
fn check_kind(desc: &TableDesc, object_type: CommentObject) -> Result<()> {
    let (fits, wanted) = match object_type {
        CommentObject::View => (desc.is_plain_view(), "a view"),
        CommentObject::MaterializedView => (desc.is_materialized_view(), "a materialized view"),
        _ => (!desc.is_plain_view() && !desc.is_materialized_view(), "a table"),
    };
    if fits {
        return Ok(());
    }
    Err(Error::new(SqlState::WrongObjectType, format!("\"{}\" is not {wanted}", desc.name)))
}
