//! Subquery forms tools send that DataFusion does not plan, rewritten to equivalent ones it
//! does (Grafana's table and column pickers send both):
//!
//! - a scalar subquery that picks the first row by an order, `(SELECT x FROM ... WHERE ...
//!   ORDER BY k LIMIT 1)`, correlated or not, is the aggregate `(SELECT first_value(x ORDER
//!   BY k) FROM ... WHERE ...)`, which the planner decorrelates: both are NULL without rows,
//!   and the first row's `x` (NULL or not) otherwise;
//! - a subquery inside an `ORDER BY` expression, which DataFusion plans only in a select
//!   list or a filter: the query computes each ORDER BY expression as a hidden column of a
//!   derived table and the outer query sorts by it, returning the original columns:
//!   `SELECT * EXCLUDE (hidden) FROM (SELECT ..., expr AS hidden ...) ORDER BY hidden`.
//!
//! Tests against a subquery's rows (`IN`, `ANY`, `ALL`, `EXISTS`) are `sql::quantified`'s.

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, Ident, LimitClause, OrderByExpr, OrderByKind, Query, SelectItem, SetExpr, Statement, Value, Visit,
    VisitMut, Visitor, VisitorMut,
};

/// Prefix of the hidden columns that carry ORDER BY expressions.
const ORDER_COLUMN: &str = "__sabot_order_";

pub fn rewrite(statement: &mut Statement) {
    let _ = statement.visit(&mut FirstRows);
    let _ = statement.visit(&mut NamedScalarValues);
    if let Statement::Query(query) = statement {
        sort_by_subqueries(query);
    }
}

/// A scalar subquery whose one value is written like an expression of the query around
/// it (`SELECT sum(v) * 100 / (SELECT sum(v) FROM t) ... GROUP BY g`) gets an alias:
/// DataFusion's rewrite of the subquery into a join would otherwise find that name twice
/// ("would be ambiguous"). Only such subqueries: others keep their plans (and a view's
/// plan its fingerprint).
struct NamedScalarValues;

impl VisitorMut for NamedScalarValues {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        let SetExpr::Select(select) = query.body.as_mut() else { return ControlFlow::Continue(()) };
        let mut outer: HashSet<String> = HashSet::new();
        for item in &select.projection {
            if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } = item {
                let _ = e.visit(&mut ExprTexts(&mut outer, 0));
            }
        }
        if let Some(having) = &select.having {
            let _ = having.visit(&mut ExprTexts(&mut outer, 0));
        }
        if outer.is_empty() {
            return ControlFlow::Continue(());
        }
        let _ = datafusion::sql::sqlparser::ast::visit_expressions_mut(&mut select.projection, |expr| {
            alias_scalar_value(expr, &outer);
            ControlFlow::<()>::Continue(())
        });
        if let Some(having) = &mut select.having {
            let _ = datafusion::sql::sqlparser::ast::visit_expressions_mut(having, |expr| {
                alias_scalar_value(expr, &outer);
                ControlFlow::<()>::Continue(())
            });
        }
        ControlFlow::Continue(())
    }
}

/// The text of every expression outside subqueries (with the depth of queries entered).
struct ExprTexts<'a>(&'a mut HashSet<String>, usize);

impl Visitor for ExprTexts<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, _query: &Query) -> ControlFlow<()> {
        self.1 += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<()> {
        self.1 -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if self.1 == 0 && !matches!(expr, Expr::Subquery(_)) {
            self.0.insert(expr.to_string());
        }
        ControlFlow::Continue(())
    }
}

fn alias_scalar_value(expr: &mut Expr, outer: &HashSet<String>) {
    let Expr::Subquery(query) = expr else { return };
    let SetExpr::Select(select) = query.body.as_mut() else { return };
    if let [SelectItem::UnnamedExpr(value)] = select.projection.as_slice()
        && outer.contains(&value.to_string())
    {
        let value = value.clone();
        select.projection =
            vec![SelectItem::ExprWithAlias { expr: value, alias: Ident::new("__sabot_value") }];
    }
}

struct FirstRows;

impl VisitorMut for FirstRows {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Subquery(query) = expr
            && let Some(aggregated) = first_row_as_aggregate(query)
        {
            *query = aggregated;
        }
        ControlFlow::Continue(())
    }
}

/// `SELECT x FROM ... [WHERE ...] ORDER BY k LIMIT 1` as `SELECT first_value(x ORDER BY k)
/// FROM ... [WHERE ...]`; None for any other shape.
fn first_row_as_aggregate(query: &Query) -> Option<Box<Query>> {
    if query.with.is_some() || query.fetch.is_some() || !query.locks.is_empty() {
        return None;
    }
    let Some(LimitClause::LimitOffset { limit: Some(limit), offset: None, limit_by }) = &query.limit_clause
    else {
        return None;
    };
    let is_one = matches!(limit, Expr::Value(v) if matches!(&v.value, Value::Number(n, _) if n == "1"));
    if !is_one || !limit_by.is_empty() {
        return None;
    }
    let OrderByKind::Expressions(order) = &query.order_by.as_ref()?.kind else { return None };
    let SetExpr::Select(select) = query.body.as_ref() else { return None };
    let grouped = !matches!(&select.group_by, datafusion::sql::sqlparser::ast::GroupByExpr::Expressions(e, _) if e.is_empty());
    if grouped
        || select.having.is_some()
        || select.distinct.is_some()
        || select.top.is_some()
        || !select.named_window.is_empty()
        || super::pg_compat::aggregates(&select.projection)
        || order.is_empty()
    {
        return None;
    }
    let [SelectItem::UnnamedExpr(value) | SelectItem::ExprWithAlias { expr: value, .. }] =
        select.projection.as_slice()
    else {
        return None;
    };
    let order: Vec<String> = order.iter().map(OrderByExpr::to_string).collect();
    let from: Vec<String> = select.from.iter().map(|f| f.to_string()).collect();
    let filter = select.selection.as_ref().map(|s| format!(" WHERE {s}")).unwrap_or_default();
    let sql =
        format!("SELECT first_value({value} ORDER BY {}) FROM {}{filter}", order.join(", "), from.join(", "));
    super::pg_compat::parse_query(&sql)
}

/// Rewrites `query` when an ORDER BY expression holds a subquery.
fn sort_by_subqueries(query: &mut Box<Query>) {
    let Some(order_by) = &query.order_by else { return };
    let OrderByKind::Expressions(order) = &order_by.kind else { return };
    if !order.iter().any(|o| has_subquery(&o.expr)) || query.with.is_some() || query.fetch.is_some() {
        return;
    }
    let SetExpr::Select(select) = query.body.as_ref() else { return };
    let plain = select
        .projection
        .iter()
        .all(|item| matches!(item, SelectItem::UnnamedExpr(_) | SelectItem::ExprWithAlias { .. }));
    if !plain || select.distinct.is_some() {
        return;
    }
    // Ordinals and output columns' names keep meaning the same output columns; every other
    // expression is computed inside, where the relations it names are in scope.
    let output_names: Vec<String> = select
        .projection
        .iter()
        .filter_map(|item| match item {
            SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.to_lowercase()),
            _ => None,
        })
        .collect();
    let mut inner_items: Vec<String> = select.projection.iter().map(|i| i.to_string()).collect();
    let mut hidden = Vec::new();
    let mut outer_order = Vec::new();
    for (i, item) in order.iter().enumerate() {
        let ordinal = match &item.expr {
            Expr::Value(v) => matches!(v.value, Value::Number(..)),
            Expr::Identifier(ident) => output_names.contains(&ident.value.to_lowercase()),
            _ => false,
        };
        let mut item = item.clone();
        if !ordinal {
            let name = format!("{ORDER_COLUMN}{}", i + 1);
            inner_items.push(format!("{} AS {name}", item.expr));
            item.expr = Expr::Identifier(Ident::new(&name));
            hidden.push(name);
        }
        outer_order.push(item.to_string());
    }
    let Some(items) = super::pg_compat::parse_query(&format!("SELECT {}", inner_items.join(", "))) else {
        return;
    };
    let SetExpr::Select(items) = *items.body else { return };
    let mut inner = select.as_ref().clone();
    inner.projection = items.projection;
    let inner_sql = inner.to_string();
    let limit = query.limit_clause.as_ref().map(|l| format!(" {l}")).unwrap_or_default();
    let sql = format!(
        "SELECT * EXCLUDE ({}) FROM ({inner_sql}) AS __sabot_sorted ORDER BY {}{limit}",
        hidden.join(", "),
        outer_order.join(", ")
    );
    if let Some(rewritten) = parse_with_exclude(&sql) {
        *query = rewritten;
    }
}

/// Parses `sql` with a dialect that reads `* EXCLUDE (...)` (Postgres' does not).
fn parse_with_exclude(sql: &str) -> Option<Box<Query>> {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    Parser::new(&GenericDialect {}).try_with_sql(sql).ok()?.parse_query().ok()
}

fn has_subquery(expr: &Expr) -> bool {
    struct Finder;
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            match expr {
                Expr::Subquery(_) | Expr::InSubquery { .. } | Expr::Exists { .. } => ControlFlow::Break(()),
                _ => ControlFlow::Continue(()),
            }
        }
    }
    expr.visit(&mut Finder).is_break()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut statement = crate::sql::parser::parse_generated(sql).unwrap();
        rewrite(&mut statement);
        statement.to_string()
    }

    #[test]
    fn a_first_row_subquery_becomes_an_aggregate() {
        assert_eq!(
            rewritten("SELECT (SELECT c.x FROM c WHERE c.t = t.t ORDER BY c.n LIMIT 1) AS f FROM t"),
            "SELECT (SELECT first_value(c.x ORDER BY c.n) FROM c WHERE c.t = t.t) AS f FROM t"
        );
        // Other limits, and aggregates, stay.
        let kept = "SELECT (SELECT c.x FROM c ORDER BY c.n LIMIT 2) FROM t";
        assert_eq!(rewritten(kept), kept);
    }

    #[test]
    fn a_subquery_in_order_by_is_computed_as_a_hidden_column() {
        assert_eq!(
            rewritten(
                "SELECT a AS x FROM t ORDER BY CASE WHEN a > (SELECT max(b) FROM u) THEN 0 ELSE 1 END, 1, x, a LIMIT 5"
            ),
            "SELECT * EXCLUDE (__sabot_order_1, __sabot_order_4) FROM (SELECT a AS x, CASE WHEN a > (SELECT max(b) FROM u) \
             THEN 0 ELSE 1 END AS __sabot_order_1, a AS __sabot_order_4 FROM t) AS __sabot_sorted \
             ORDER BY __sabot_order_1, 1, x, __sabot_order_4 LIMIT 5"
        );
    }
}
