//! Rewrites correlated scalar subqueries that DataFusion cannot run into joins.
//!
//! DataFusion decorrelates a scalar subquery only when its correlation is an equality;
//! `(SELECT count(*) FROM t1 AS x WHERE x.c > t1.c)` fails in physical planning. For the
//! common shape — one aggregate over one table, correlated with the outer query's single
//! table — the subquery becomes a LEFT JOIN with one row per outer row:
//!
//! ```sql
//! SELECT a, (SELECT count(*) FROM t1 AS x WHERE x.c > t1.c) FROM t1
//! -- becomes
//! SELECT a, COALESCE(__sabot_sq0.__v, 0) FROM t1
//!   LEFT JOIN (SELECT t1.k AS __k0, count(*) AS __v FROM t1 JOIN t1 AS x ON x.c > t1.c GROUP BY t1.k)
//!   AS __sabot_sq0 ON __sabot_sq0.__k0 = t1.k
//! ```
//!
//! where `k` is the outer table's key (its primary key, or the hidden row id), so each
//! outer row matches at most one row and keeps its multiplicity. `count` over no matching
//! rows is 0, every other aggregate NULL — as for the subquery itself.

use std::collections::HashMap;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    self, Expr, GroupByExpr, ObjectName, Query, SelectItem, SetExpr, TableFactor, visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use super::ddl::normalize_ident;

/// What the rewrite needs to know about a table: its key columns and the columns `*` shows.
pub struct TableColumns {
    pub key: Vec<String>,
    pub visible: Vec<String>,
}

const AGGREGATES: [&str; 6] = ["count", "sum", "min", "max", "avg", "array_agg"];

/// The rewritten statement, or `None` when it has no subquery of the supported shape.
pub fn decorrelate(
    statement: &ast::Statement,
    columns_of: &dyn Fn(&ObjectName) -> Option<TableColumns>,
) -> Option<ast::Statement> {
    let ast::Statement::Query(query) = statement else { return None };
    let mut query = query.clone();
    if query.with.is_some() {
        return None;
    }
    let order_by = query.order_by.clone();
    let SetExpr::Select(select) = query.body.as_mut() else { return None };
    let [from] = select.from.as_slice() else { return None };
    let TableFactor::Table { name, alias, .. } = &from.relation else { return None };
    if !from.joins.is_empty() {
        return None;
    }
    let name = name.clone();
    let binding = alias.as_ref().map(|a| normalize_ident(&a.name)).unwrap_or_else(|| last_part(&name));
    let table = columns_of(&name)?;

    // Collect the supported subqueries of the projection, WHERE and ORDER BY.
    let mut found: Vec<(String, Subquery)> = Vec::new();
    let mut collect = |expr: &mut Expr| {
        if let Expr::Subquery(subquery) = expr
            && let Some(parsed) = Subquery::of(subquery, &binding)
        {
            let text = subquery.to_string();
            if !found.iter().any(|(t, _)| *t == text) {
                found.push((text, parsed));
            }
        }
        ControlFlow::<()>::Continue(())
    };
    for item in select.projection.iter_mut() {
        let _ = visit_expressions_mut(item, &mut collect);
    }
    if let Some(selection) = select.selection.as_mut() {
        let _ = visit_expressions_mut(selection, &mut collect);
    }
    if found.is_empty() {
        return None;
    }

    let mut replacements: HashMap<String, Expr> = HashMap::new();
    for (i, (text, subquery)) in found.iter().enumerate() {
        let alias = format!("__sabot_sq{i}");
        let keys: Vec<String> = table.key.iter().map(|k| format!("{binding}.{}", quote(k))).collect();
        // The key is renamed so that the outer query's unqualified names stay unambiguous.
        let named: Vec<String> = keys.iter().enumerate().map(|(j, k)| format!("{k} AS __k{j}")).collect();
        let derived = format!(
            "SELECT {named}, {aggregate} AS __v FROM {outer} AS {binding} JOIN {inner} ON {predicate} GROUP BY {keys}",
            named = named.join(", "),
            keys = keys.join(", "),
            aggregate = subquery.aggregate,
            outer = name,
            inner = subquery.relation,
            predicate = subquery.predicate,
        );
        let on: Vec<String> = table
            .key
            .iter()
            .enumerate()
            .map(|(j, k)| format!("{alias}.__k{j} = {binding}.{}", quote(k)))
            .collect();
        let join_sql = format!("SELECT 1 FROM x LEFT JOIN ({derived}) AS {alias} ON {}", on.join(" AND "));
        let join = parse_select(&join_sql)?.from.pop()?.joins.pop()?;
        select.from[0].joins.push(join);
        let value =
            if subquery.is_count { format!("COALESCE({alias}.__v, 0)") } else { format!("{alias}.__v") };
        replacements.insert(text.clone(), parse_expr(&value)?);
    }

    let mut replace = |expr: &mut Expr| {
        if let Expr::Subquery(subquery) = expr
            && let Some(replacement) = replacements.get(&subquery.to_string())
        {
            *expr = replacement.clone();
        }
        ControlFlow::<()>::Continue(())
    };
    for item in select.projection.iter_mut() {
        let _ = visit_expressions_mut(item, &mut replace);
    }
    if let Some(selection) = select.selection.as_mut() {
        let _ = visit_expressions_mut(selection, &mut replace);
    }
    // `*` must not pick up the joined columns (or the hidden row id).
    let mut projection = Vec::with_capacity(select.projection.len());
    for item in select.projection.drain(..) {
        match item {
            SelectItem::Wildcard(_) => {
                for column in &table.visible {
                    projection
                        .push(SelectItem::UnnamedExpr(parse_expr(&format!("{binding}.{}", quote(column)))?));
                }
            }
            other => projection.push(other),
        }
    }
    select.projection = projection;
    if !matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty()) {
        return None;
    }
    if let Some(mut order_by) = order_by {
        let _ = visit_expressions_mut(&mut order_by, &mut replace);
        query.order_by = Some(order_by);
    }
    Some(ast::Statement::Query(query))
}

/// `DELETE FROM t USING u, ... WHERE cond` as `DELETE FROM t WHERE EXISTS (SELECT 1 FROM
/// u, ... WHERE cond)`: the rows of `t` for which some row of the USING tables matches —
/// what Postgres deletes. DataFusion plans the EXISTS as a semi join.
/// A DELETE in the shape DataFusion plans: without a target alias (see
/// [`delete_without_alias`]) and with `USING` as `EXISTS` (see
/// [`delete_using_as_exists`]).
pub fn plannable_delete(statement: &ast::Statement) -> ast::Statement {
    let statement = delete_without_alias(statement).unwrap_or_else(|| statement.clone());
    delete_using_as_exists(&statement).unwrap_or(statement)
}

/// `DELETE FROM t AS a WHERE a.x = 1` as `DELETE FROM t WHERE t.x = 1`: DataFusion plans
/// the target of a DELETE under its own name only. `None` when there is no alias, or when
/// a relation inside the statement is also named like the alias (renaming would change
/// what its columns refer to).
pub fn delete_without_alias(statement: &ast::Statement) -> Option<ast::Statement> {
    use ast::{Visit, VisitMut};
    let ast::Statement::Delete(delete) = statement else { return None };
    let (ast::FromTable::WithFromKeyword(from) | ast::FromTable::WithoutKeyword(from)) = &delete.from;
    let [target] = from.as_slice() else { return None };
    let TableFactor::Table { name, alias: Some(alias), .. } = &target.relation else { return None };
    let alias_name = normalize_ident(&alias.name);
    let table_name = name.0.last()?.as_ident()?.clone();
    let mut inner = delete.clone();
    let (ast::FromTable::WithFromKeyword(from) | ast::FromTable::WithoutKeyword(from)) = &mut inner.from;
    if let TableFactor::Table { alias, .. } = &mut from[0].relation {
        *alias = None;
    }
    // Relations bound inside the statement (subqueries, USING) must not reuse the name.
    let mut rebound = false;
    let mut names = RelationNames(|relation: &str| rebound |= relation == alias_name);
    let _ = Visit::visit(&inner.using, &mut names);
    let _ = Visit::visit(&inner.selection, &mut names);
    if rebound {
        return None;
    }
    let _ = VisitMut::visit(&mut inner.selection, &mut QualifierRename { from: alias_name, to: table_name });
    Some(ast::Statement::Delete(inner))
}

/// Calls its function with the name (alias, or last name part) of every relation visited.
struct RelationNames<F>(F);

impl<F: FnMut(&str)> ast::Visitor for RelationNames<F> {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table { name, alias, .. } = factor {
            let bound = match alias {
                Some(alias) => Some(normalize_ident(&alias.name)),
                None => name.0.last().and_then(|p| p.as_ident()).map(normalize_ident),
            };
            if let Some(bound) = bound {
                (self.0)(&bound);
            }
        } else if let TableFactor::Derived { alias: Some(alias), .. } = factor {
            (self.0)(&normalize_ident(&alias.name));
        }
        ControlFlow::Continue(())
    }
}

/// Rewrites `from.column` to `to.column`.
struct QualifierRename {
    from: String,
    to: ast::Ident,
}

impl ast::VisitorMut for QualifierRename {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::CompoundIdentifier(parts) = expr
            && parts.len() == 2
            && normalize_ident(&parts[0]) == self.from
        {
            parts[0] = self.to.clone();
        }
        ControlFlow::Continue(())
    }
}

pub fn delete_using_as_exists(statement: &ast::Statement) -> Option<ast::Statement> {
    let ast::Statement::Delete(delete) = statement else { return None };
    let using = delete.using.as_ref()?;
    let tables: Vec<String> = using.iter().map(ToString::to_string).collect();
    let condition = match &delete.selection {
        Some(selection) => format!(" WHERE {selection}"),
        None => String::new(),
    };
    let exists = parse_expr(&format!("EXISTS (SELECT 1 FROM {}{condition})", tables.join(", ")))?;
    let mut delete = delete.clone();
    delete.using = None;
    delete.selection = Some(exists);
    Some(ast::Statement::Delete(delete))
}

/// A scalar subquery of the supported shape.
struct Subquery {
    aggregate: String,
    is_count: bool,
    /// The inner table with its alias, e.g. `t1 AS x`.
    relation: String,
    predicate: String,
}

impl Subquery {
    fn of(query: &Query, outer_binding: &str) -> Option<Subquery> {
        if query.with.is_some() || query.order_by.is_some() || query.limit_clause.is_some() {
            return None;
        }
        let SetExpr::Select(select) = query.body.as_ref() else { return None };
        let [item] = select.projection.as_slice() else { return None };
        let (SelectItem::UnnamedExpr(aggregate) | SelectItem::ExprWithAlias { expr: aggregate, .. }) = item
        else {
            return None;
        };
        let Expr::Function(function) = aggregate else { return None };
        let function_name = last_part(&function.name);
        if !AGGREGATES.contains(&function_name.as_str()) {
            return None;
        }
        let [from] = select.from.as_slice() else { return None };
        let TableFactor::Table { name, alias, .. } = &from.relation else { return None };
        let inner_binding =
            alias.as_ref().map(|a| normalize_ident(&a.name)).unwrap_or_else(|| last_part(name));
        let predicate = select.selection.as_ref()?;
        let text = predicate.to_string();
        if !from.joins.is_empty()
            || select.having.is_some()
            || select.distinct.is_some()
            || inner_binding == outer_binding
            || !matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty())
            || text.contains("SELECT")
            || !text.to_lowercase().contains(&format!("{outer_binding}."))
        {
            return None;
        }
        Some(Subquery {
            aggregate: aggregate.to_string(),
            is_count: function_name == "count",
            relation: from.relation.to_string(),
            predicate: text,
        })
    }
}

fn last_part(name: &ObjectName) -> String {
    name.0.last().and_then(|p| p.as_ident()).map(normalize_ident).unwrap_or_default()
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn parse_expr(sql: &str) -> Option<Expr> {
    Parser::new(&PostgreSqlDialect {}).try_with_sql(sql).ok()?.parse_expr().ok()
}

fn parse_select(sql: &str) -> Option<ast::Select> {
    let statement = Parser::new(&PostgreSqlDialect {}).try_with_sql(sql).ok()?.parse_statement().ok()?;
    let ast::Statement::Query(query) = statement else { return None };
    match *query.body {
        SetExpr::Select(select) => Some(*select),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::{Statement, parse};

    fn rewrite(sql: &str) -> Option<String> {
        let Statement::Sql(statement) = parse(sql).unwrap().remove(0) else { panic!() };
        let columns = |_: &ObjectName| {
            Some(TableColumns { key: vec!["_row_id".into()], visible: vec!["a".into(), "c".into()] })
        };
        decorrelate(&statement, &columns).map(|s| s.to_string())
    }

    #[test]
    fn non_equality_correlation_becomes_a_grouped_left_join() {
        let sql =
            rewrite("SELECT a, (SELECT count(*) FROM t1 AS x WHERE x.c > t1.c) FROM t1 ORDER BY 1").unwrap();
        assert!(sql.contains("LEFT JOIN (SELECT t1.\"_row_id\" AS __k0, count(*) AS __v FROM t1 AS t1 JOIN t1 AS x ON x.c > t1.c GROUP BY t1.\"_row_id\") AS __sabot_sq0"), "{sql}");
        assert!(sql.contains("SELECT a, COALESCE(__sabot_sq0.__v, 0) FROM t1"), "{sql}");
    }

    #[test]
    fn other_shapes_are_left_alone() {
        assert_eq!(rewrite("SELECT a FROM t1"), None);
        assert_eq!(rewrite("SELECT (SELECT x.c FROM t1 AS x WHERE x.c > t1.c) FROM t1"), None);
        assert_eq!(rewrite("SELECT (SELECT max(c) FROM t2) FROM t1"), None);
    }
}
