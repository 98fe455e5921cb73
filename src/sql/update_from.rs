//! `UPDATE t SET ... FROM u, ... WHERE ...` as a query (DataFusion plans no UPDATE with
//! FROM). Each match of a target row with the FROM list yields the row's new values and its
//! old ones:
//!
//! ```sql
//! SELECT t.id, t.cents + c.delta AS cents, t.id AS __sabot_old_0, t.cents AS __sabot_old_1
//! FROM public.t, change c WHERE c.item = t.item
//! ```
//!
//! A target row that matches several times changes once, with its first match (Postgres
//! leaves which one unspecified).

use datafusion::sql::sqlparser::ast::{self, Expr, Ident, TableWithJoins};

use super::ddl::normalize_ident;
use super::on_conflict::{assigned_values, quote};
use crate::common::{Error, Result};

/// The query over `relation` (the target, quoted and qualified) and `from` that yields,
/// per match, every column of the target's new row (`columns`, hidden ones included),
/// then the old row as `{old_prefix}{i}`.
pub fn update_from_query(
    relation: &str,
    table_name: &str,
    columns: &[String],
    update: &ast::Update,
    from: &[TableWithJoins],
    old_prefix: &str,
) -> Result<ast::Statement> {
    let alias: Option<&Ident> = match &update.table.relation {
        ast::TableFactor::Table { alias, .. } => alias.as_ref().map(|a| &a.name),
        _ => return Err(Error::unsupported("UPDATE of something other than a table")),
    };
    let selection = update.selection.as_ref();
    let assigned = assigned_values(&update.assignments, columns, table_name, Expr::clone)?;
    let qualifier = alias.map_or_else(|| quote(table_name), |a| quote(&normalize_ident(a)));
    let new = columns.iter().zip(&assigned).map(|(column, value)| match value {
        Some(expr) => format!("{expr} AS {}", quote(column)),
        None => format!("{qualifier}.{}", quote(column)),
    });
    let old = columns
        .iter()
        .enumerate()
        .map(|(i, column)| format!("{qualifier}.{} AS {old_prefix}{i}", quote(column)));
    let items: Vec<String> = new.chain(old).collect();
    let alias = alias.map(|a| format!(" AS {a}")).unwrap_or_default();
    let from: Vec<String> = from.iter().map(ToString::to_string).collect();
    let filter = selection.map(|s| format!(" WHERE {s}")).unwrap_or_default();
    let sql = format!("SELECT {} FROM {relation}{alias}, {}{filter}", items.join(", "), from.join(", "));
    match super::parse(&sql)?.pop() {
        Some(super::Statement::Sql(statement)) => Ok(*statement),
        _ => Err(Error::internal("UPDATE ... FROM produced no query")),
    }
}
