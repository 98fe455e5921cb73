//! Lateral references DataFusion cannot run ("physical plan does not support logical
//! expression OuterReferenceColumn"), rewritten to forms it plans:
//!
//! - a set-returning function in FROM over the columns of the relation before it, `FROM
//!   t, unnest(t.tags) AS tag` (also `CROSS JOIN [LATERAL]`, `, LATERAL`): the function
//!   moves into a select list, where it returns rows as in Postgres — `FROM (SELECT t.*,
//!   unnest(t.tags) AS tag FROM t) AS t` — so a row whose set is empty is left out, as
//!   in Postgres' inner lateral join;
//! - a `LATERAL` subquery that is one row of aggregates, `FROM t, LATERAL (SELECT max(w) AS
//!   m FROM u WHERE u.g = t.g) s` (or `LEFT JOIN LATERAL ... ON true`), and a `LEFT JOIN
//!   LATERAL (SELECT ... ORDER BY k LIMIT 1) s ON true`: each of its columns becomes a
//!   scalar subquery of such a select list, which the planner decorrelates.
//!
//! References to the function's or subquery's alias (`s.m`, `tag`) then name the derived
//! table's columns. Only the first relation of FROM and one such function or subquery
//! after it are rewritten; other shapes are left to the planner.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, Ident, JoinConstraint, JoinOperator, Query, Select, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, Statement, TableAlias, TableFactor, TableWithJoins, Value,
    Visit, VisitMut, Visitor, VisitorMut,
};

use super::ddl::normalize_ident;

/// Set-returning functions of one column that move into a select list.
const FUNCTIONS: &[&str] = &[
    "unnest",
    "generate_series",
    "regexp_matches",
    "jsonb_array_elements",
    "jsonb_array_elements_text",
    "jsonb_object_keys",
    "json_array_elements",
    "json_array_elements_text",
    "json_object_keys",
];

pub fn rewrite(statement: &mut Statement) {
    let _ = statement.visit(&mut Laterals);
}

struct Laterals;

impl VisitorMut for Laterals {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        let SetExpr::Select(select) = query.body.as_mut() else { return ControlFlow::Continue(()) };
        if let Some((outer, inner)) = lateral_pair(select) {
            // ORDER BY names the derived table's columns too.
            if let Some(order_by) = &mut query.order_by {
                let _ = order_by.visit(&mut Renamed { from: &inner, to: &outer });
            }
        }
        ControlFlow::Continue(())
    }

    /// `jsonb_each(...)` in FROM over no other relation's columns: a derived table.
    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table { name, args: Some(args), alias, .. } = factor
            && let Some((items, table, _)) = each_items(&name.to_string(), &args.args, alias.as_ref())
            && let Some(subquery) = super::pg_compat::parse_query(&format!("SELECT {}", items.join(", ")))
        {
            *factor = TableFactor::Derived {
                lateral: false,
                subquery,
                alias: Some(TableAlias {
                    explicit: true,
                    name: Ident::new(table),
                    columns: Vec::new(),
                    at: None,
                }),
                sample: None,
            };
        }
        ControlFlow::Continue(())
    }
}

/// Rewrites `select`'s FROM when it is a relation and a lateral function or subquery;
/// returns the relation's name and the replaced alias.
fn lateral_pair(select: &mut Select) -> Option<(String, String)> {
    let (outer, lateral, left) = match select.from.as_slice() {
        [first, second] if first.joins.is_empty() && second.joins.is_empty() => {
            (&first.relation, &second.relation, false)
        }
        [first] if first.joins.len() == 1 => {
            let join = &first.joins[0];
            let left = match &join.join_operator {
                JoinOperator::CrossJoin(JoinConstraint::None) => false,
                JoinOperator::Join(c) | JoinOperator::Inner(c) if on_true(c) => false,
                JoinOperator::Left(c) | JoinOperator::LeftOuter(c) if on_true(c) => true,
                _ => return None,
            };
            (&first.relation, &join.relation, left)
        }
        _ => return None,
    };
    let binding = binding(outer)?;
    let (items, alias, columns) = match lateral {
        TableFactor::Table { name, args: Some(args), alias, .. } if !left => {
            function_item(&name.to_string(), &args.args, alias.as_ref())?
        }
        TableFactor::Function { name, args, alias, with_ordinality: false, .. } if !left => {
            function_item(&name.to_string(), args, alias.as_ref())?
        }
        TableFactor::UNNEST { alias, array_exprs, with_offset: false, with_ordinality: false, .. }
            if !left && array_exprs.len() == 1 =>
        {
            let args = [FunctionArg::Unnamed(FunctionArgExpr::Expr(array_exprs[0].clone()))];
            function_item("unnest", &args, alias.as_ref())?
        }
        TableFactor::Derived { lateral: true, subquery, alias: Some(alias), .. }
            if alias.columns.is_empty() =>
        {
            let (items, columns) = subquery_items(subquery, left)?;
            (items, normalize_ident(&alias.name), columns)
        }
        _ => return None,
    };
    let inner = format!("SELECT {binding}.*, {} FROM {outer}", items.join(", "));
    let derived = super::pg_compat::parse_query(&inner)?;
    select.from = vec![TableWithJoins {
        relation: TableFactor::Derived {
            lateral: false,
            subquery: derived,
            alias: Some(TableAlias {
                explicit: true,
                name: Ident::new(&binding),
                columns: Vec::new(),
                at: None,
            }),
            sample: None,
        },
        joins: Vec::new(),
    }];
    let mut renamed = Renamed { from: &alias, to: &binding };
    let mut projection = Vec::with_capacity(select.projection.len());
    for mut item in std::mem::take(&mut select.projection) {
        // `s.*` is the lateral relation's columns.
        if let SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(name), _) = &item
            && name.0.last().and_then(|p| p.as_ident()).is_some_and(|i| normalize_ident(i) == alias)
        {
            for column in &columns {
                let name = vec![Ident::new(&binding), Ident::with_quote('"', column)];
                projection.push(SelectItem::UnnamedExpr(Expr::CompoundIdentifier(name)));
            }
            continue;
        }
        let _ = VisitMut::visit(&mut item, &mut renamed);
        projection.push(item);
    }
    select.projection = projection;
    for part in [&mut select.selection, &mut select.having].into_iter().flatten() {
        let _ = part.visit(&mut renamed);
    }
    let _ = VisitMut::visit(&mut select.group_by, &mut renamed);
    Some((binding, alias))
}

fn on_true(constraint: &JoinConstraint) -> bool {
    matches!(constraint, JoinConstraint::On(Expr::Value(v)) if v.value == Value::Boolean(true))
}

/// The name the outer relation is known by (its alias, or its table's name).
fn binding(outer: &TableFactor) -> Option<String> {
    match outer {
        TableFactor::Table { alias: Some(alias), args: None, .. } if alias.columns.is_empty() => {
            Some(normalize_ident(&alias.name))
        }
        TableFactor::Table { name, alias: None, args: None, .. } => {
            name.0.last()?.as_ident().map(normalize_ident)
        }
        TableFactor::Derived { lateral: false, alias: Some(alias), .. } if alias.columns.is_empty() => {
            Some(normalize_ident(&alias.name))
        }
        _ => None,
    }
}

/// A set-returning function over outer columns as a select item, and its alias.
fn function_item(
    name: &str,
    args: &[FunctionArg],
    alias: Option<&TableAlias>,
) -> Option<(Vec<String>, String, Vec<String>)> {
    let function = name.to_ascii_lowercase();
    if !args.iter().any(references_columns) {
        return None;
    }
    if let Some(each) = each_items(&function, args, alias) {
        return Some(each);
    }
    if !FUNCTIONS.contains(&function.as_str()) {
        return None;
    }
    if function == "unnest" && args.len() != 1 {
        return None;
    }
    let (table, column) = match alias {
        Some(alias) if alias.columns.len() > 1 => return None,
        Some(alias) => {
            let table = normalize_ident(&alias.name);
            let column = alias.columns.first().map_or(table.clone(), |c| normalize_ident(&c.name));
            (table, column)
        }
        None => (function.clone(), function.clone()),
    };
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let item = format!("{function}({}) AS {}", args.join(", "), Ident::with_quote('"', &column));
    Some((vec![item], table, vec![column]))
}

/// `jsonb_each[_text](args)` as its two select items, the name it is known by and its
/// columns' names.
fn each_items(
    function: &str,
    args: &[FunctionArg],
    alias: Option<&TableAlias>,
) -> Option<(Vec<String>, String, Vec<String>)> {
    let text = super::jsonb_rows::each_function(function)?;
    let columns: Vec<String> =
        alias.map(|a| a.columns.iter().map(|c| normalize_ident(&c.name)).collect()).unwrap_or_default();
    if columns.len() > 2 {
        return None;
    }
    let arguments: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let items = super::jsonb_rows::items(&arguments.join(", "), text, &columns);
    let names =
        ["key", "value"].iter().enumerate().map(|(i, d)| columns.get(i).cloned().unwrap_or(d.to_string()));
    let table = alias.map_or_else(|| function.to_ascii_lowercase(), |a| normalize_ident(&a.name));
    Some((items, table, names.collect()))
}

/// Whether a function argument names a column (of the relation before it).
fn references_columns(arg: &FunctionArg) -> bool {
    struct Columns;
    impl Visitor for Columns {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            match expr {
                Expr::Identifier(_) | Expr::CompoundIdentifier(_) => ControlFlow::Break(()),
                _ => ControlFlow::Continue(()),
            }
        }
    }
    arg.visit(&mut Columns).is_break()
}

/// A lateral subquery's columns as scalar subqueries (and their names): one row of
/// aggregates (no GROUP BY), or, under LEFT JOIN, the first row by an order (`ORDER BY ...
/// LIMIT 1`).
fn subquery_items(subquery: &Query, left: bool) -> Option<(Vec<String>, Vec<String>)> {
    let SetExpr::Select(select) = subquery.body.as_ref() else { return None };
    let grouped = !matches!(&select.group_by, datafusion::sql::sqlparser::ast::GroupByExpr::Expressions(e, _) if e.is_empty());
    if subquery.with.is_some() || grouped || select.having.is_some() || select.distinct.is_some() {
        return None;
    }
    let one_row = subquery.limit_clause.is_none()
        && subquery.order_by.is_none()
        && !select.projection.is_empty()
        && select.projection.iter().all(|item| super::pg_compat::aggregates(std::slice::from_ref(item)));
    let first_row = left && subquery.limit_clause.as_ref().is_some_and(|l| l.to_string().trim() == "LIMIT 1");
    if !one_row && !first_row {
        return None;
    }
    let mut items = Vec::with_capacity(select.projection.len());
    let mut names = Vec::with_capacity(select.projection.len());
    for item in &select.projection {
        let (expr, name) = match item {
            SelectItem::ExprWithAlias { expr, alias } => (expr, normalize_ident(alias)),
            SelectItem::UnnamedExpr(expr @ Expr::Identifier(ident)) => (expr, normalize_ident(ident)),
            SelectItem::UnnamedExpr(expr @ Expr::CompoundIdentifier(parts)) => {
                (expr, normalize_ident(parts.last()?))
            }
            _ => return None,
        };
        let mut one = select.as_ref().clone();
        one.projection = vec![SelectItem::UnnamedExpr(expr.clone())];
        let mut query = subquery.clone();
        *query.body = SetExpr::Select(Box::new(one));
        items.push(format!("({query}) AS {}", Ident::with_quote('"', &name)));
        names.push(name);
    }
    Some((items, names))
}

/// Renames the qualifier `from` to `to` in compound names (`s.m` → `t.m`).
struct Renamed<'a> {
    from: &'a str,
    to: &'a str,
}

impl VisitorMut for Renamed<'_> {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::CompoundIdentifier(parts) = expr
            && parts.len() == 2
            && normalize_ident(&parts[0]) == self.from
        {
            parts[0] = Ident::new(self.to);
        }
        ControlFlow::Continue(())
    }
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
    fn set_returning_functions_over_columns_move_into_a_select_list() {
        assert_eq!(
            rewritten("SELECT t.id, x FROM t, unnest(t.arr) AS x WHERE x > 1 ORDER BY x"),
            "SELECT t.id, x FROM (SELECT t.*, unnest(t.arr) AS \"x\" FROM t) AS t WHERE x > 1 ORDER BY x"
        );
        assert_eq!(
            rewritten("SELECT t.id, g.* FROM t CROSS JOIN LATERAL generate_series(1, t.n) AS g (i)"),
            "SELECT t.id, t.\"i\" FROM (SELECT t.*, generate_series(1, t.n) AS \"i\" FROM t) AS t"
        );
        // Constant arguments stay a table function.
        let kept = "SELECT * FROM t, generate_series(1, 3) AS g";
        assert_eq!(rewritten(kept), kept);
    }

    #[test]
    fn a_lateral_aggregate_row_becomes_scalar_subqueries() {
        assert_eq!(
            rewritten("SELECT t.id, s.m FROM t, LATERAL (SELECT max(u.w) AS m FROM u WHERE u.w > t.n) AS s"),
            "SELECT t.id, t.m FROM (SELECT t.*, (SELECT max(u.w) FROM u WHERE u.w > t.n) AS \"m\" FROM t) AS t"
        );
    }
}
