//! CREATE INDEX: a secondary index on a table or materialized view.
//!
//! An index is a view of the relation's rows projected to the indexed columns, the
//! INCLUDE columns and the relation's key, stored under the index key followed by the
//! relation's key (`crate::catalog::IndexDef`). It is created like a materialized view —
//! at an epoch boundary, backfilled from the committed snapshot while writers go on — and
//! maintained by its own dataflow in the same epoch as the rows it indexes. Batch queries
//! read it for equality and range predicates (`crate::batch::index_scan`). DROP INDEX and
//! the drop of an index with its relation go through the views' drop.

use datafusion::sql::sqlparser::ast::{self, CreateIndex, Expr, IndexType, ObjectName};

use super::Database;
use super::dml::{quote_ident, quoted_name};
use super::session::Outcome;
use super::views::{CreateView, IndexRequest};
use crate::catalog::{Catalog, TableDesc};
use crate::common::{Error, Result, SqlState};
use crate::sql::ddl::{normalize_ident, resolve_name};

impl Database {
    pub(super) async fn create_index(
        &self,
        create: &CreateIndex,
        schema: &str,
        parallelism: usize,
    ) -> Result<Outcome> {
        check_supported(create)?;
        if create.unique {
            return self.create_unique_index(create, schema).await;
        }
        let catalog = self.catalog();
        let (table_schema, table_name) = resolve_name(&create.table_name, schema)?;
        let table = catalog.table(&table_schema, &table_name).cloned().ok_or_else(|| {
            Error::new(SqlState::UndefinedTable, format!("relation \"{table_name}\" does not exist"))
        })?;
        check_indexable(&table)?;
        let key_columns = create
            .columns
            .iter()
            .map(|c| column_of(&table, &c.column.expr))
            .collect::<Result<Vec<usize>>>()?;
        let include_columns = create
            .include
            .iter()
            .map(|ident| column_of(&table, &Expr::Identifier(ident.clone())))
            .collect::<Result<Vec<usize>>>()?;
        let name = match &create.name {
            Some(name) => index_name(name)?,
            None => choose_name(&catalog, &table, key_columns.iter().chain(&include_columns)),
        };
        let mut projected: Vec<usize> = Vec::new();
        let visible_key = table.primary_key.iter().filter(|&&i| !table.columns[i].hidden);
        for &column in key_columns.iter().chain(&include_columns).chain(visible_key) {
            if !projected.contains(&column) {
                projected.push(column);
            }
        }
        let select: Vec<String> = projected.iter().map(|&i| quote_ident(&table.columns[i].name)).collect();
        let sql = format!("SELECT {} FROM {}", select.join(", "), quoted_name(&table));
        let ast::Statement::Query(query) = crate::sql::parser::parse_generated(&sql)? else {
            return Err(Error::internal("an index's SELECT is not a query"));
        };
        let name = ObjectName::from(vec![ast::Ident::with_quote('"', name)]);
        let view = CreateView {
            name: &name,
            columns: Vec::new(),
            query: &query,
            if_not_exists: create.if_not_exists,
            schema: table.schema.clone(),
            parallelism,
            sink: None,
            emit_on_window_close: false,
            index: Some(IndexRequest { table: table.id, key_columns, include_columns, projected }),
        };
        self.create_materialized_view(view, false).await
    }
}

/// Refuses what Sabot's indexes do not do (yet), each with 0A000.
fn check_supported(create: &CreateIndex) -> Result<()> {
    if let Some(using) = &create.using
        && !matches!(using, IndexType::BTree)
    {
        return Err(Error::unsupported(format!("index access method \"{using}\""))
            .with_hint("Sabot's indexes are ordered (btree): leave out USING"));
    }
    if create.predicate.is_some() {
        return Err(Error::unsupported("partial indexes (CREATE INDEX ... WHERE)"));
    }
    if !create.with.is_empty() || !create.index_options.is_empty() || !create.alter_options.is_empty() {
        return Err(Error::unsupported("index options"));
    }
    for column in &create.columns {
        if column.column.options.asc.is_some() || column.column.options.nulls_first.is_some() {
            return Err(Error::unsupported("ASC, DESC and NULLS FIRST / LAST in an index")
                .with_hint("an index serves both orders: leave them out"));
        }
        if column.operator_class.is_some() {
            return Err(Error::unsupported("operator classes in an index"));
        }
    }
    Ok(())
}

/// Tables and materialized views can be indexed (Postgres' error for the rest).
fn check_indexable(table: &TableDesc) -> Result<()> {
    if table.is_table() || table.is_materialized_view() {
        return Ok(());
    }
    let kind = if table.is_plain_view() {
        "views"
    } else if table.is_source() {
        "foreign tables"
    } else if table.is_index() {
        "indexes"
    } else {
        "sinks"
    };
    Err(Error::new(SqlState::WrongObjectType, format!("cannot create index on relation \"{}\"", table.name))
        .with_detail(format!("This operation is not supported for {kind}.")))
}

/// The relation's column a key or INCLUDE entry names.
fn column_of(table: &TableDesc, expr: &Expr) -> Result<usize> {
    let name = match expr {
        Expr::Identifier(ident) => normalize_ident(ident),
        Expr::Nested(_) | Expr::Function(_) | Expr::BinaryOp { .. } | Expr::Cast { .. } => {
            return Err(Error::unsupported("indexes on expressions").with_hint("index a column"));
        }
        other => return Err(Error::unsupported(format!("index key {other}")).with_hint("index a column")),
    };
    table
        .column_index(&name)
        .filter(|&i| !table.columns[i].hidden)
        .ok_or_else(|| Error::new(SqlState::UndefinedColumn, format!("column \"{name}\" does not exist")))
}

/// The name of `CREATE INDEX name`, which Postgres does not let carry a schema (the index
/// lives in its table's schema).
pub(super) fn index_name(name: &ObjectName) -> Result<String> {
    match name.0.as_slice() {
        [part] => part
            .as_ident()
            .map(normalize_ident)
            .ok_or_else(|| Error::new(SqlState::SyntaxError, format!("invalid index name {name}"))),
        _ => Err(Error::new(SqlState::SyntaxError, format!("syntax error at or near \"{name}\""))
            .with_hint("an index is created in its table's schema: name it without one")),
    }
}

/// Postgres' name for an unnamed index: `<table>_<columns>_idx` (key and INCLUDE columns),
/// numbered from 1 when taken, cut to 63 bytes.
fn choose_name<'a>(catalog: &Catalog, table: &TableDesc, columns: impl Iterator<Item = &'a usize>) -> String {
    let columns: Vec<&str> = columns.map(|&i| table.columns[i].name.as_str()).collect();
    let stem = format!("{}_{}", table.name, columns.join("_"));
    crate::sql::uniques::choose_name(catalog, &table.schema, &stem, "idx", &Default::default())
}
