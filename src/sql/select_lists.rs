//! A walk over the expressions of every select list of a statement, for rewrites of
//! forms that DataFusion plans differently there than elsewhere
//! (`sql::subquery_forms`, `sql::from_functions`).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Expr, Query, SelectItem, SetExpr, Statement, VisitMut, VisitorMut};

/// Calls `rewrite` on each expression of each select list in `statement`, children first;
/// the expressions of a query nested in a select item are reached as that query's own.
pub fn rewrite_exprs(statement: &mut Statement, rewrite: &mut dyn FnMut(&mut Expr)) {
    let _ = statement.visit(&mut SelectLists { rewrite });
}

struct SelectLists<'a> {
    rewrite: &'a mut dyn FnMut(&mut Expr),
}

impl VisitorMut for SelectLists<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let SetExpr::Select(select) = query.body.as_mut() {
            for item in &mut select.projection {
                if let SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } = item {
                    let _ = expr.visit(&mut OwnExprs { depth: 0, rewrite: &mut *self.rewrite });
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// Calls `rewrite` on `expr` and each expression in it outside the queries nested in it,
/// children first.
pub fn rewrite_own_exprs(expr: &mut Expr, rewrite: &mut dyn FnMut(&mut Expr)) {
    let _ = expr.visit(&mut OwnExprs { depth: 0, rewrite });
}

/// The expressions of one select item outside the queries nested in it.
struct OwnExprs<'a> {
    depth: usize,
    rewrite: &'a mut dyn FnMut(&mut Expr),
}

impl VisitorMut for OwnExprs<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, _: &mut Query) -> ControlFlow<()> {
        self.depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _: &mut Query) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if self.depth == 0 {
            (self.rewrite)(expr);
        }
        ControlFlow::Continue(())
    }
}
