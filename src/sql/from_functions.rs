//! Functions in FROM as Postgres names their columns (Grafana's table and column pickers
//! send `FROM generate_series(...) AS i, string_to_array(...) s` and read `s[i]`):
//!
//! - a set-returning function with an alias and no column list (`generate_series(1, 3)
//!   AS i`) names its one column after the alias; DataFusion would call it `value`;
//! - any other function there is a scalar function, whose value Postgres makes a one-row
//!   relation with one column named after the alias (or the function):
//!   `(SELECT string_to_array(...) AS s) AS s`.
//!
//! And in a select list, `generate_series(...)` returns rows, as in Postgres (DataFusion
//! returns one list): it becomes `unnest(generate_series(...))`; several in one select
//! list run in step, the shorter padded with NULLs, as Postgres 10 and later.
//! `regexp_matches(...)` becomes `unnest(sabot_regexp_matches(...))` (`sql::pg_regexp`),
//! in a select list and, as any function there, in FROM.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, Ident, Statement, TableAlias, TableAliasColumnDef, TableFactor, VisitMut, VisitorMut,
};

/// Set-returning functions of one column, named after the alias as in Postgres.
const ONE_COLUMN: &[&str] = &["generate_series", "unnest"];

/// Rewrites the functions in `statement`'s FROM clauses; `is_table_function` tells the
/// table functions (whose columns are their own) from the rest.
pub fn rewrite(statement: &mut Statement, is_table_function: &dyn Fn(&str) -> bool) {
    let _ = statement.visit(&mut FromFunctions { is_table_function });
    super::select_lists::rewrite_exprs(statement, &mut series_as_rows);
}

/// `generate_series(...)` as `unnest(generate_series(...))`; an `unnest` written around one
/// (whose inner call was just wrapped) stays single.
fn series_as_rows(expr: &mut Expr) {
    if is_call(expr, "generate_series") {
        *expr = unnest(expr.clone());
    } else if is_call(expr, "regexp_matches")
        && let Expr::Function(function) = expr
    {
        let mut matches = function.clone();
        matches.name =
            datafusion::sql::sqlparser::ast::ObjectName::from(vec![Ident::new(super::pg_regexp::FUNCTION)]);
        *expr = unnest(Expr::Function(matches));
    } else if is_call(expr, "unnest")
        && let Some(inner) = only_argument(expr)
        && is_call(inner, "unnest")
    {
        *expr = inner.clone();
    }
}

fn is_call(expr: &Expr, name: &str) -> bool {
    matches!(expr, Expr::Function(f) if f.over.is_none()
        && matches!(f.name.0.as_slice(), [part] if part.as_ident().is_some_and(|i| i.value.eq_ignore_ascii_case(name))))
}

fn only_argument(expr: &Expr) -> Option<&Expr> {
    use datafusion::sql::sqlparser::ast::{FunctionArg, FunctionArgExpr, FunctionArguments};
    let Expr::Function(function) = expr else { return None };
    let FunctionArguments::List(list) = &function.args else { return None };
    match list.args.as_slice() {
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))] => Some(arg),
        _ => None,
    }
}

fn unnest(expr: Expr) -> Expr {
    use datafusion::sql::sqlparser::ast::{
        Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments, ObjectName,
    };
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new("unnest")]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(expr))],
            clauses: Vec::new(),
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: Vec::new(),
    })
}

struct FromFunctions<'a> {
    is_table_function: &'a dyn Fn(&str) -> bool,
}

impl VisitorMut for FromFunctions<'_> {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Table { name, args: Some(args), alias, with_hints, .. } = factor else {
            return ControlFlow::Continue(());
        };
        // `pg_catalog.f(...)`: the catalog's functions are registered by their names.
        if let [schema, _] = name.0.as_slice()
            && schema.as_ident().is_some_and(|s| s.value.eq_ignore_ascii_case("pg_catalog"))
        {
            name.0.remove(0);
        }
        let [part] = name.0.as_slice() else { return ControlFlow::Continue(()) };
        let Some(ident) = part.as_ident() else { return ControlFlow::Continue(()) };
        let function = ident.value.to_lowercase();
        if !with_hints.is_empty() {
            return ControlFlow::Continue(());
        }
        if function == "unnest" || (self.is_table_function)(&function) {
            if let Some(alias) = alias
                && alias.columns.is_empty()
                && ONE_COLUMN.contains(&function.as_str())
            {
                alias.columns = vec![TableAliasColumnDef { name: alias.name.clone(), data_type: None }];
            }
            return ControlFlow::Continue(());
        }
        // A scalar function: a derived table of its one value.
        let column = match alias {
            Some(alias) if alias.columns.len() == 1 => alias.columns[0].name.clone(),
            Some(alias) if alias.columns.is_empty() => alias.name.clone(),
            Some(_) => return ControlFlow::Continue(()),
            None => Ident::new(function.clone()),
        };
        let sql = format!(
            "SELECT {ident}({args}) AS {column}",
            args = args.args.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
        );
        let Ok(Statement::Query(query)) = super::parser::parse_generated(&sql) else {
            return ControlFlow::Continue(());
        };
        let name = alias.as_ref().map(|a| a.name.clone()).unwrap_or_else(|| Ident::new(function));
        let alias = TableAlias { explicit: true, name, columns: Vec::new(), at: None };
        *factor = TableFactor::Derived { lateral: false, subquery: query, alias: Some(alias), sample: None };
        ControlFlow::Continue(())
    }
}
