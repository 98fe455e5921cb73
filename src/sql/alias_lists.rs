//! Column alias lists shorter than the relation, as Postgres reads them: `FROM t AS x (a,
//! b)` renames the first two columns of `t` and keeps the others' names. DataFusion
//! requires a name for every column; the list is completed with the relation's own names.
//! Tables, views and other named relations are completed; a derived table's list is not
//! yet.

use std::ops::ControlFlow;

use datafusion::common::TableReference;
use datafusion::execution::context::SessionContext;
use datafusion::sql::sqlparser::ast::{
    Ident, ObjectName, Statement, TableAliasColumnDef, TableFactor, Visit, VisitMut, Visitor, VisitorMut,
};

pub async fn rewrite(ctx: &SessionContext, statement: &mut Statement) {
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
