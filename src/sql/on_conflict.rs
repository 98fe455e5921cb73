//! `INSERT ... ON CONFLICT (key) DO UPDATE SET ... [WHERE ...]` as a query.
//!
//! The engine finds the proposed rows whose key is taken and builds one relation holding,
//! per conflict, the stored row (the table's own columns), the proposed row (columns
//! named [`excluded_column`]) and its position. Over that relation, named like the target
//! table (or its alias), the update is an ordinary query:
//!
//! ```sql
//! SELECT id, t.hits + "__sabot_excluded_hits" AS hits, ..., "__sabot_conflict_position"
//! FROM public.t WHERE <the DO UPDATE condition, rewritten the same way>
//! ```
//!
//! `excluded.c` becomes the column `__sabot_excluded_c`; everything else is left to the
//! planner, so SET and WHERE may use any expression, function or parameter.

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{self, AssignmentTarget, DoUpdate, Expr, Ident, VisitMut, VisitorMut};

use super::ddl::normalize_ident;
use crate::common::{Error, Result, SqlState};

/// Column of the conflict relation holding each conflict's index.
pub const POSITION_COLUMN: &str = "__sabot_conflict_position";

/// Name of the conflict relation's column that holds the proposed value of `column`.
pub fn excluded_column(column: &str) -> String {
    format!("__sabot_excluded_{column}")
}

/// The query computing each updated row (the `columns` of the table, in order, then
/// [`POSITION_COLUMN`]) from the conflict relation named `relation` (quoted, qualified)
/// with optional `alias`. Fails like Postgres for unknown or repeated SET columns.
pub fn update_query(
    relation: &str,
    alias: Option<&Ident>,
    table_name: &str,
    columns: &[String],
    update: &DoUpdate,
) -> Result<ast::Statement> {
    let assigned = assigned_values(&update.assignments, columns, table_name, with_excluded_columns)?;
    let qualifier = alias.map_or_else(|| quote(table_name), |a| quote(&normalize_ident(a)));
    let items: Vec<String> = columns
        .iter()
        .zip(&assigned)
        .map(|(column, value)| match value {
            Some(expr) => format!("{expr} AS {}", quote(column)),
            None => format!("{qualifier}.{}", quote(column)),
        })
        .chain(std::iter::once(quote(POSITION_COLUMN)))
        .collect();
    let alias = alias.map(|a| format!(" AS {a}")).unwrap_or_default();
    let filter = match &update.selection {
        Some(condition) => format!(" WHERE {}", with_excluded_columns(condition)),
        None => String::new(),
    };
    let sql = format!("SELECT {} FROM {relation}{alias}{filter}", items.join(", "));
    match super::parse(&sql)?.pop() {
        Some(super::Statement::Sql(statement)) => Ok(*statement),
        _ => Err(Error::internal("ON CONFLICT produced no query")),
    }
}

/// The SQL text of each column's new value (None where SET leaves it), after `rewrite`.
/// Fails like Postgres for unknown or repeated SET columns.
pub fn assigned_values(
    assignments: &[ast::Assignment],
    columns: &[String],
    table_name: &str,
    rewrite: fn(&Expr) -> Expr,
) -> Result<Vec<Option<String>>> {
    let mut assigned: Vec<Option<String>> = vec![None; columns.len()];
    let mut seen = HashSet::new();
    for assignment in assignments {
        let AssignmentTarget::ColumnName(target) = &assignment.target else {
            return Err(Error::unsupported("SET of a column tuple"));
        };
        let name = target.0.last().and_then(|p| p.as_ident()).map(normalize_ident).unwrap_or_default();
        let Some(index) = columns.iter().position(|c| *c == name) else {
            return Err(Error::new(
                SqlState::UndefinedColumn,
                format!("column \"{name}\" of relation \"{table_name}\" does not exist"),
            ));
        };
        if !seen.insert(index) {
            return Err(Error::new(
                SqlState::SyntaxError,
                format!("multiple assignments to same column \"{name}\""),
            ));
        }
        assigned[index] = Some(rewrite(&assignment.value).to_string());
    }
    Ok(assigned)
}

/// `expr` with every `excluded.c` replaced by the column [`excluded_column`]`(c)`.
fn with_excluded_columns(expr: &Expr) -> Expr {
    struct Rewrite;
    impl VisitorMut for Rewrite {
        type Break = ();
        fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
            if let Expr::CompoundIdentifier(parts) = expr
                && let [relation, column] = parts.as_slice()
                && normalize_ident(relation) == "excluded"
            {
                *expr = Expr::Identifier(Ident::with_quote('"', excluded_column(&normalize_ident(column))));
            }
            ControlFlow::Continue(())
        }
    }
    let mut expr = expr.clone();
    let _ = VisitMut::visit(&mut expr, &mut Rewrite);
    expr
}

pub(super) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn do_update(sql: &str) -> DoUpdate {
        let Some(super::super::Statement::Sql(statement)) = super::super::parse(sql).unwrap().pop() else {
            panic!("not SQL")
        };
        let ast::Statement::Insert(insert) = *statement else { panic!("not INSERT") };
        let Some(ast::OnInsert::OnConflict(ast::OnConflict {
            action: ast::OnConflictAction::DoUpdate(update),
            ..
        })) = insert.on
        else {
            panic!("no DO UPDATE")
        };
        update
    }

    #[test]
    fn excluded_columns_are_renamed_and_unassigned_columns_kept() {
        let update = do_update(
            "INSERT INTO t VALUES (1, 2) ON CONFLICT (id) DO UPDATE SET hits = t.hits + EXCLUDED.Hits \
             WHERE excluded.hits > 0",
        );
        let columns = vec!["id".to_string(), "hits".to_string()];
        let query = update_query("\"public\".\"t\"", None, "t", &columns, &update).unwrap();
        assert_eq!(
            query.to_string(),
            "SELECT \"t\".\"id\", t.hits + \"__sabot_excluded_hits\" AS \"hits\", \"__sabot_conflict_position\" \
             FROM \"public\".\"t\" WHERE \"__sabot_excluded_hits\" > 0"
        );
    }

    #[test]
    fn unknown_and_repeated_columns_fail_as_in_postgres() {
        let columns = vec!["id".to_string()];
        let update = do_update("INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET nope = 1");
        let error = update_query("t", None, "t", &columns, &update).unwrap_err();
        assert_eq!(error.sqlstate().code(), "42703");
        let update = do_update("INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET id = 1, id = 2");
        let error = update_query("t", None, "t", &columns, &update).unwrap_err();
        assert_eq!(error.to_string(), "multiple assignments to same column \"id\"");
    }
}
