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

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{self, DoUpdate, Expr, Ident, VisitMut, VisitorMut};

use super::assignments::{Target, quote};
use super::ddl::normalize_ident;
use crate::common::Result;

/// Column of the conflict relation holding each conflict's index.
pub const POSITION_COLUMN: &str = "__sabot_conflict_position";

/// Name of the conflict relation's column that holds the proposed value of `column`.
pub fn excluded_column(column: &str) -> String {
    format!("__sabot_excluded_{column}")
}

/// The query computing each updated row (the target's columns, in order, then
/// [`POSITION_COLUMN`]) from the conflict relation, named like the target.
pub fn update_query(target: &Target, update: &DoUpdate) -> Result<ast::Statement> {
    let position = [quote(POSITION_COLUMN)];
    target.new_rows_query(
        &update.assignments,
        update.selection.as_ref(),
        with_excluded_columns,
        &position,
        &[],
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    fn do_update(sql: &str) -> DoUpdate {
        let ast::Statement::Insert(insert) = super::super::parser::parse_generated(sql).unwrap() else {
            panic!("not INSERT")
        };
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
        let target = Target { relation: "\"public\".\"t\"", alias: None, name: "t", columns: &columns };
        let query = update_query(&target, &update).unwrap();
        assert_eq!(
            query.to_string(),
            "SELECT \"t\".\"id\", t.hits + \"__sabot_excluded_hits\" AS \"hits\", \"__sabot_conflict_position\" \
             FROM \"public\".\"t\" WHERE \"__sabot_excluded_hits\" > 0"
        );
    }

    #[test]
    fn unknown_and_repeated_columns_fail_as_in_postgres() {
        let columns = vec!["id".to_string()];
        let target = Target { relation: "t", alias: None, name: "t", columns: &columns };
        let update = do_update("INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET nope = 1");
        let error = update_query(&target, &update).unwrap_err();
        assert_eq!(error.sqlstate().code(), "42703");
        let update = do_update("INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET id = 1, id = 2");
        let error = update_query(&target, &update).unwrap_err();
        assert_eq!(error.to_string(), "multiple assignments to same column \"id\"");
    }
}
