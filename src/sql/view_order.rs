//! A materialized view's `ORDER BY`, kept for batch reads: `SELECT ... FROM v [WHERE ...]
//! [LIMIT n]` without an order of its own returns `v`'s rows in the order its definition
//! names, as a view refreshed in that order reads back in Postgres. The query gets that
//! `ORDER BY` (on the view's columns) before it is planned. Only a plain read of one view
//! (no join, grouping, aggregate, `DISTINCT` or window) takes it, and only when every
//! ordering item is one of the view's output columns (by name, position or expression).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, Ident, ObjectNamePart, OrderBy, OrderByKind, SelectItem, SetExpr, Statement, TableFactor, Value,
    Visit, Visitor,
};

use super::ddl::normalize_ident;
use crate::catalog::Catalog;

/// Gives `statement` the `ORDER BY` of the materialized view it reads, where it applies.
pub fn rewrite(statement: &mut Statement, catalog: &Catalog, default_schema: &str) {
    let Statement::Query(query) = statement else { return };
    if query.order_by.is_some() || query.with.is_some() {
        return;
    }
    let SetExpr::Select(select) = query.body.as_ref() else { return };
    let [from] = select.from.as_slice() else { return };
    let TableFactor::Table { name, alias, args: None, .. } = &from.relation else { return };
    let grouped = !matches!(&select.group_by, datafusion::sql::sqlparser::ast::GroupByExpr::Expressions(e, _) if e.is_empty());
    if !from.joins.is_empty()
        || grouped
        || select.having.is_some()
        || select.distinct.is_some()
        || super::pg_compat::aggregates(&select.projection)
        || windowed(&select.projection)
    {
        return;
    }
    let parts: Vec<String> =
        name.0.iter().filter_map(ObjectNamePart::as_ident).map(normalize_ident).collect();
    let (schema, table) = match parts.as_slice() {
        [table] => (default_schema, table.as_str()),
        [schema, table] => (schema.as_str(), table.as_str()),
        _ => return,
    };
    let Some(desc) = catalog.table(schema, table) else { return };
    let Some(view) = desc.view.as_ref().filter(|v| v.sink.is_none() && v.index.is_none()) else { return };
    let binding = alias.as_ref().map_or_else(|| table.to_string(), |a| normalize_ident(&a.name));
    let visible: Vec<&str> = desc.columns.iter().filter(|c| !c.hidden).map(|c| c.name.as_str()).collect();
    if let Some(order) = view_order(&view.query, &visible, &binding) {
        query.order_by = Some(order);
    }
}

fn windowed(projection: &[SelectItem]) -> bool {
    struct Windows;
    impl Visitor for Windows {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            match expr {
                Expr::Function(f) if f.over.is_some() => ControlFlow::Break(()),
                _ => ControlFlow::Continue(()),
            }
        }
    }
    projection.iter().any(|item| item.visit(&mut Windows).is_break())
}

/// The view query's ORDER BY on its output columns (`visible`), qualified by `binding`.
fn view_order(query_sql: &str, visible: &[&str], binding: &str) -> Option<OrderBy> {
    let Some(super::parser::Statement::Sql(statement)) = super::parser::parse(query_sql).ok()?.pop() else {
        return None;
    };
    let Statement::Query(query) = *statement else { return None };
    let mut order = query.order_by.clone()?;
    let SetExpr::Select(select) = query.body.as_ref() else { return None };
    let OrderByKind::Expressions(items) = &mut order.kind else { return None };
    for item in items.iter_mut() {
        let column = output_column(&item.expr, &select.projection)?;
        let name = visible.get(column)?;
        item.expr = Expr::CompoundIdentifier(vec![Ident::new(binding), Ident::with_quote('"', *name)]);
    }
    Some(order)
}

/// The position of the output column an ORDER BY item names.
fn output_column(expr: &Expr, projection: &[SelectItem]) -> Option<usize> {
    if projection
        .iter()
        .any(|item| !matches!(item, SelectItem::UnnamedExpr(_) | SelectItem::ExprWithAlias { .. }))
    {
        return None;
    }
    if let Expr::Value(value) = expr
        && let Value::Number(n, _) = &value.value
    {
        return n.parse::<usize>().ok()?.checked_sub(1).filter(|&i| i < projection.len());
    }
    let text = expr.to_string();
    projection.iter().position(|item| match (item, expr) {
        (SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. }, _)
            if e.to_string() == text =>
        {
            true
        }
        (SelectItem::ExprWithAlias { alias, .. }, Expr::Identifier(name)) => {
            normalize_ident(alias) == normalize_ident(name)
        }
        (SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)), Expr::Identifier(name)) => {
            parts.last().is_some_and(|p| normalize_ident(p) == normalize_ident(name))
        }
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::ast::OrderByExpr;

    fn texts(order: &OrderBy) -> Vec<String> {
        match &order.kind {
            OrderByKind::Expressions(items) => items.iter().map(OrderByExpr::to_string).collect(),
            OrderByKind::All(_) => Vec::new(),
        }
    }

    #[test]
    fn orders_map_to_output_columns() {
        let order = view_order(
            "SELECT a.id, b.w AS weight, a.g FROM a JOIN b ON a.g = b.g ORDER BY b.w DESC NULLS FIRST, 3, id",
            &["id", "weight", "g"],
            "v",
        )
        .unwrap();
        assert_eq!(texts(&order), ["v.\"weight\" DESC NULLS FIRST", "v.\"g\"", "v.\"id\""]);
        // An order by what the view does not output is not kept.
        assert!(view_order("SELECT id FROM a ORDER BY g", &["id"], "v").is_none());
        assert!(view_order("SELECT id FROM a", &["id"], "v").is_none());
    }
}
