//! Column alias lists shorter than the relation, as Postgres reads them: `FROM t AS x (a,
//! b)` renames the first two columns of `t` and keeps the others' names. DataFusion
//! requires a name for every column; the list is completed with the relation's own names.
//! Tables, views and other named relations are completed; a derived table's or a CTE's
//! short list becomes aliases of its query's first columns (`(SELECT 1 AS a, 2 AS b) AS d
//! (x)` is `(SELECT 1 AS x, 2 AS b) AS d`), and a `VALUES` list is completed with the
//! names Postgres gives its columns (`column2`, ...). A query whose columns are not written
//! out (`SELECT *`) keeps its list, for the planner to check.

use std::ops::ControlFlow;

use datafusion::common::TableReference;
use datafusion::execution::context::SessionContext;
use datafusion::sql::sqlparser::ast::{
    Ident, ObjectName, Query, SelectItem, SetExpr, Statement, TableAlias, TableAliasColumnDef, TableFactor,
    Visit, VisitMut, Visitor, VisitorMut,
};

pub async fn rewrite(ctx: &SessionContext, statement: &mut Statement) {
    let _ = statement.visit(&mut ShortQueryLists);
    let mut named = Named(Vec::new());
    let _ = Visit::visit(&*statement, &mut named);
    if named.0.is_empty() {
        return;
    }
    let mut columns = Vec::new();
    for name in named.0 {
        let parts: Vec<String> =
            name.0.iter().filter_map(|p| p.as_ident()).map(crate::sql::ddl::normalize_ident).collect();
        let reference = match parts.as_slice() {
            [table] => TableReference::bare(table.as_str()),
            [schema, table] => TableReference::partial(schema.as_str(), table.as_str()),
            [catalog, schema, table] => {
                TableReference::full(catalog.as_str(), schema.as_str(), table.as_str())
            }
            _ => continue,
        };
        // A relation that does not resolve is left for the planner to report.
        if let Ok(provider) = ctx.table_provider(reference).await {
            let names: Vec<String> = provider.schema().fields().iter().map(|f| f.name().clone()).collect();
            columns.push((name, names));
        }
    }
    let _ = statement.visit(&mut Complete(columns));
}

/// The relations named with a column alias list.
struct Named(Vec<ObjectName>);

impl Visitor for Named {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table { name, args: None, alias: Some(alias), .. } = factor
            && !alias.columns.is_empty()
            && !self.0.contains(name)
        {
            self.0.push(name.clone());
        }
        ControlFlow::Continue(())
    }
}

/// Completes each short list with the relation's remaining column names.
struct Complete(Vec<(ObjectName, Vec<String>)>);

impl VisitorMut for Complete {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table { name, args: None, alias: Some(alias), .. } = factor
            && let Some((_, names)) = self.0.iter().find(|(n, _)| n == name)
            && !alias.columns.is_empty()
            && alias.columns.len() < names.len()
        {
            for column in &names[alias.columns.len()..] {
                alias
                    .columns
                    .push(TableAliasColumnDef { name: Ident::with_quote('"', column), data_type: None });
            }
        }
        ControlFlow::Continue(())
    }
}

/// Short alias lists of derived tables and CTEs, moved into their queries.
struct ShortQueryLists;

impl VisitorMut for ShortQueryLists {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let Some(with) = &mut query.with
            && !with.recursive
        {
            for cte in &mut with.cte_tables {
                name_query_columns(&mut cte.query, &mut cte.alias);
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Derived { subquery, alias: Some(alias), .. } = factor {
            name_query_columns(subquery, alias);
        }
        ControlFlow::Continue(())
    }
}

/// Gives the first columns of `query` the names of `alias`'s list when the list is
/// shorter than the query's columns.
fn name_query_columns(query: &mut Query, alias: &mut TableAlias) {
    let given = alias.columns.len();
    if given == 0 || alias.columns.iter().any(|c| c.data_type.is_some()) {
        return;
    }
    // The first SELECT of set operations names their columns.
    let mut body = query.body.as_mut();
    while let SetExpr::SetOperation { left, .. } = body {
        body = left.as_mut();
    }
    match body {
        SetExpr::Values(values) => {
            let width = values.rows.first().map_or(0, |row| row.len());
            for i in given..width {
                alias.columns.push(TableAliasColumnDef {
                    name: Ident::new(format!("column{}", i + 1)),
                    data_type: None,
                });
            }
        }
        SetExpr::Select(select) => {
            let written_out = select
                .projection
                .iter()
                .all(|item| matches!(item, SelectItem::UnnamedExpr(_) | SelectItem::ExprWithAlias { .. }));
            if !written_out || select.projection.len() <= given {
                return;
            }
            for (item, column) in select.projection.iter_mut().zip(&alias.columns) {
                if let SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } = item {
                    *item = SelectItem::ExprWithAlias { expr: expr.clone(), alias: column.name.clone() };
                }
            }
            alias.columns.clear();
        }
        _ => {}
    }
}
