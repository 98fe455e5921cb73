//! Plain views (`CREATE VIEW`): a view is a named query, expanded where it is named.
//!
//! Before a statement is planned, every relation in it that names a plain view becomes
//! the view's query as a derived table, `(SELECT ...) AS v (columns)`, as Postgres' rewriter
//! does. So a view works wherever a table does — in batch queries, in DML's subqueries, in
//! other views — and a materialized view over a view reads the view's own relations: the
//! view is inlined into its dataflow, and nothing of it is stored.
//!
//! A view's query is expanded in the schema it was created in: its unqualified names that
//! name relations there are qualified before the query is inlined, so a view reads the same
//! relations whichever schema the session is in.

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    self, Ident, ObjectName, TableAlias, TableAliasColumnDef, TableFactor, VisitMut, Visitor, VisitorMut,
};

use super::ddl::{normalize_ident, resolve_name};
use super::parser::{Statement, parse};
use crate::catalog::{Catalog, TableDesc};
use crate::common::{Error, Result, SqlState};
use crate::state::TableId;

/// Views within views deeper than this are refused (a view cannot name itself, so only
/// a very deep stack of views reaches it).
pub const VIEW_NESTING_DEPTH_MAX: usize = 32;

/// Replaces every plain view `statement` names (outside its own WITH names) by the view's
/// query, recursively; returns the ids of the views expanded, nested ones included.
pub fn expand(
    statement: &mut ast::Statement,
    catalog: &Catalog,
    default_schema: &str,
) -> Result<Vec<TableId>> {
    let mut expander = Expander::new(catalog, default_schema, 0, cte_names(statement));
    expander.qualify = false;
    match statement.visit(&mut expander) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(expander.expanded),
    }
}

/// The query of a plain view, expanded, with the relations it names qualified by the
/// view's schema; `depth` counts the views it is nested in.
fn expanded_query(desc: &TableDesc, catalog: &Catalog, depth: usize) -> Result<(ast::Query, Vec<TableId>)> {
    let def = desc.plain_view.as_ref().expect("called for plain views");
    if depth >= VIEW_NESTING_DEPTH_MAX {
        return Err(Error::new(
            SqlState::InvalidObjectDefinition,
            format!("view \"{}\" is nested more than {VIEW_NESTING_DEPTH_MAX} views deep", desc.name),
        ));
    }
    let mut query = parse_view_query(&def.query)?;
    let mut expander = Expander::new(catalog, &def.schema_search, depth + 1, cte_names(&query));
    match VisitMut::visit(&mut query, &mut expander) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok((query, expander.expanded)),
    }
}

/// The query of a stored view definition.
pub fn parse_view_query(sql: &str) -> Result<ast::Query> {
    match parse(sql)?.pop() {
        Some(Statement::Sql(statement)) => match *statement {
            ast::Statement::Query(query) => Ok(*query),
            _ => Err(Error::internal("a view's definition is not a query")),
        },
        _ => Err(Error::internal("a view's definition is not a query")),
    }
}

/// The relations (tables, views, sources) `query` names directly, resolved in
/// `default_schema`, each once: what a view over it depends on.
pub fn referenced_relations(query: &ast::Query, catalog: &Catalog, default_schema: &str) -> Vec<TableId> {
    struct Names<'a> {
        catalog: &'a Catalog,
        schema: &'a str,
        ctes: HashSet<String>,
        found: Vec<TableId>,
    }
    impl Visitor for Names<'_> {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
            let TableFactor::Table { name, args, .. } = factor else { return ControlFlow::Continue(()) };
            // A window table function's first argument names its relation.
            let named = match args {
                None => Some(name.clone()),
                Some(args) => args.args.first().and_then(function_argument_relation),
            };
            if let Some(desc) = named.and_then(|n| resolve(self.catalog, self.schema, &self.ctes, &n))
                && !self.found.contains(&desc.id)
            {
                self.found.push(desc.id);
            }
            ControlFlow::Continue(())
        }
    }
    let mut names = Names { catalog, schema: default_schema, ctes: cte_names(query), found: Vec::new() };
    let _ = ast::Visit::visit(query, &mut names);
    names.found
}

/// The relation a table function's argument names (`TUMBLE(bid, ...)`).
fn function_argument_relation(arg: &ast::FunctionArg) -> Option<ObjectName> {
    let ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(expr)) = arg else { return None };
    match expr {
        ast::Expr::Identifier(ident) => Some(ObjectName::from(vec![ident.clone()])),
        ast::Expr::CompoundIdentifier(idents) => Some(ObjectName::from(idents.clone())),
        _ => None,
    }
}

/// The catalog relation `name` names in `schema`, unless it is one of the statement's
/// WITH names.
fn resolve<'a>(
    catalog: &'a Catalog,
    schema: &str,
    ctes: &HashSet<String>,
    name: &ObjectName,
) -> Option<&'a std::sync::Arc<TableDesc>> {
    if let [part] = name.0.as_slice()
        && part.as_ident().is_some_and(|ident| ctes.contains(&normalize_ident(ident)))
    {
        return None;
    }
    let (schema, name) = resolve_name(name, schema).ok()?;
    catalog.table(&schema, &name)
}

/// Every WITH name in `node`. A view named like one of them is not expanded anywhere in
/// the statement (WITH names shadow relations; Sabot does not track their scopes).
fn cte_names<V: ast::Visit>(node: &V) -> HashSet<String> {
    struct Ctes(HashSet<String>);
    impl Visitor for Ctes {
        type Break = ();
        fn pre_visit_query(&mut self, query: &ast::Query) -> ControlFlow<()> {
            for cte in query.with.iter().flat_map(|with| with.cte_tables.iter()) {
                self.0.insert(normalize_ident(&cte.alias.name));
            }
            ControlFlow::Continue(())
        }
    }
    let mut ctes = Ctes(HashSet::new());
    let _ = node.visit(&mut ctes);
    ctes.0
}

struct Expander<'a> {
    catalog: &'a Catalog,
    schema: &'a str,
    depth: usize,
    ctes: HashSet<String>,
    /// Qualify unqualified relation names by `schema` (inside a view's query).
    qualify: bool,
    expanded: Vec<TableId>,
}

impl<'a> Expander<'a> {
    fn new(catalog: &'a Catalog, schema: &'a str, depth: usize, ctes: HashSet<String>) -> Self {
        Expander { catalog, schema, depth, ctes, qualify: true, expanded: Vec::new() }
    }
}

impl VisitorMut for Expander<'_> {
    type Break = Error;

    // After the factor's own children: an inlined query is complete when it is put in.
    fn post_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<Error> {
        let TableFactor::Table { name, alias, args: None, .. } = factor else {
            return ControlFlow::Continue(());
        };
        let Some(desc) = resolve(self.catalog, self.schema, &self.ctes, name).cloned() else {
            return ControlFlow::Continue(());
        };
        if !desc.is_plain_view() {
            if self.qualify && name.0.len() == 1 {
                // `t` becomes `schema.t AS t`: columns qualified `t.x` still resolve.
                alias.get_or_insert_with(|| TableAlias {
                    explicit: true,
                    name: Ident::with_quote('"', desc.name.clone()),
                    columns: Vec::new(),
                    at: None,
                });
                *name = ObjectName::from(vec![
                    Ident::with_quote('"', desc.schema.clone()),
                    Ident::with_quote('"', desc.name.clone()),
                ]);
            }
            return ControlFlow::Continue(());
        }
        let (query, nested) = match expanded_query(&desc, self.catalog, self.depth) {
            Ok(expanded) => expanded,
            Err(e) => return ControlFlow::Break(e),
        };
        self.expanded.extend(nested);
        self.expanded.push(desc.id);
        let mut alias = alias.take().unwrap_or_else(|| TableAlias {
            explicit: true,
            name: Ident::with_quote('"', desc.name.clone()),
            columns: Vec::new(),
            at: None,
        });
        if alias.columns.is_empty() {
            alias.columns = desc
                .columns
                .iter()
                .map(|c| TableAliasColumnDef {
                    name: Ident::with_quote('"', c.name.clone()),
                    data_type: None,
                })
                .collect();
        }
        *factor = TableFactor::Derived {
            lateral: false,
            subquery: Box::new(query),
            alias: Some(alias),
            sample: None,
        };
        ControlFlow::Continue(())
    }
}

/// Refuses a view definition that would expand into itself.
pub fn check_not_recursive(desc: &TableDesc, expanded: &[TableId]) -> Result<()> {
    if expanded.contains(&desc.id) {
        return Err(Error::new(
            SqlState::InvalidObjectDefinition,
            format!("infinite recursion detected in rules for relation \"{}\"", desc.name),
        ));
    }
    Ok(())
}
