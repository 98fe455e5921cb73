//! SQL functions (`CREATE FUNCTION ... LANGUAGE SQL`) are inlined where they are called,
//! as Postgres inlines simple SQL functions: before a statement is planned, each call
//! becomes the function's body with the arguments in place of the parameters.
//!
//! `f(a, b)` becomes `CAST((body) AS return type)`, where each parameter in the body (by
//! name, as `f.name`, or as `$n`) is `CAST(argument AS parameter type)`. A body that is a
//! bare `SELECT expression` inlines as the expression; a query over relations inlines as
//! a scalar subquery (one row or none: more is an error, 21000, where Postgres would take
//! the first row; a `LIMIT` would keep DataFusion from decorrelating the subquery). A
//! `STRICT` function is NULL when any argument is NULL. Arguments go by position, then by
//! name (`f(1, b => 2)`); missing ones take their DEFAULT.
//!
//! So a view calling a function is planned, and maintained, as if the body were written
//! in its place; the catalog keeps which views use which functions (`engine::functions`)
//! so that a function in use is not dropped or changed under them.
//!
//! Functions are chosen by name alone: Sabot keeps one function per name and schema (no
//! overloading), and converts the arguments to the parameter types as an explicit cast
//! does (Postgres refuses a call whose arguments do not convert implicitly).

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::sql::sqlparser::ast::{
    self, CastKind, Expr, FunctionArg, FunctionArgExpr, FunctionArgOperator, FunctionArguments, Ident,
    ObjectName, SetExpr, Value, VisitMut, VisitorMut,
};

use super::ddl::normalize_ident;
use super::parser::parse_generated;
use crate::catalog::{FunctionBody, FunctionDesc};
use crate::common::{Error, Result, SqlState, SqlType};

/// Functions calling functions deeper than this are refused (a function calling itself
/// is refused sooner, by name).
pub const FUNCTION_NESTING_DEPTH_MAX: usize = 32;

/// Finds the SQL function a call names: None for any other function.
pub type FunctionLookup<'a> = dyn Fn(&ObjectName) -> Option<Arc<FunctionDesc>> + 'a;

/// Inlines every SQL function call in `statement`; returns the functions inlined, those
/// called from their bodies included, each once.
pub fn inline(statement: &mut ast::Statement, lookup: &FunctionLookup<'_>) -> Result<Vec<Arc<FunctionDesc>>> {
    let mut inliner = Inliner { lookup, stack: Vec::new(), used: Vec::new() };
    match VisitMut::visit(statement, &mut inliner) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(inliner.used),
    }
}

/// The value of `desc`'s body for `arguments` (one per parameter, in order), before the
/// conversion to its return type; functions it calls stay as calls.
pub fn body_expression(desc: &FunctionDesc, arguments: &[Expr]) -> Result<Expr> {
    let mut body = parse_body(desc)?;
    let mut substitute = Parameters { desc, arguments };
    let _ = VisitMut::visit(&mut body, &mut substitute);
    Ok(body)
}

/// The expression of a function body: the one column of `SELECT expression`, or a scalar
/// subquery for a query that reads relations.
fn parse_body(desc: &FunctionDesc) -> Result<Expr> {
    let invalid = |detail: &str| {
        Error::new(
            SqlState::InvalidFunctionDefinition,
            format!("the body of function {} {detail}", desc.signature()),
        )
    };
    let sql = match &desc.body {
        FunctionBody::Return(expression) => format!("SELECT {expression}"),
        FunctionBody::Query(query) => query.trim().trim_end_matches(';').to_string(),
    };
    let statements = super::parser::parse(&sql)?;
    let [super::parser::Statement::Sql(statement)] = statements.as_slice() else {
        return Err(invalid("must be exactly one SELECT").with_hint("Sabot's SQL functions return one value"));
    };
    let ast::Statement::Query(query) = statement.as_ref() else {
        return Err(invalid("must be a SELECT"));
    };
    let query = query.as_ref().clone();
    if let Some(expression) = bare_expression(&query) {
        return Ok(expression);
    }
    let columns = match query.body.as_ref() {
        SetExpr::Select(select) => select.projection.len(),
        _ => 1,
    };
    if columns != 1 {
        return Err(invalid("must return one column"));
    }
    let mut query = query;
    isolate_relations(&mut query, &desc.name);
    Ok(Expr::Subquery(Box::new(query)))
}

/// Gives the relations a query body reads names of its own (`__sabot_<function>_<n>`),
/// and rewrites the body's references to them: an argument qualified by a table's name
/// (`orders_of(orders.customer)`) then names the caller's table, never the body's.
fn isolate_relations(query: &mut ast::Query, function: &str) {
    let SetExpr::Select(select) = query.body.as_mut() else { return };
    let mut renamed: Vec<(String, Ident)> = Vec::new();
    let factors = select
        .from
        .iter_mut()
        .flat_map(|t| std::iter::once(&mut t.relation).chain(t.joins.iter_mut().map(|j| &mut j.relation)));
    for factor in factors {
        let fresh = quoted(&format!("__sabot_{function}_{}", renamed.len() + 1));
        let visible = match factor {
            ast::TableFactor::Table { name, alias, .. } => match alias {
                Some(alias) => std::mem::replace(&mut alias.name, fresh.clone()),
                None => {
                    *alias = Some(ast::TableAlias {
                        explicit: true,
                        name: fresh.clone(),
                        columns: Vec::new(),
                        at: None,
                    });
                    match name.0.last().and_then(|p| p.as_ident()) {
                        Some(last) => last.clone(),
                        None => continue,
                    }
                }
            },
            ast::TableFactor::Derived { alias: Some(alias), .. } => {
                std::mem::replace(&mut alias.name, fresh.clone())
            }
            _ => continue,
        };
        renamed.push((normalize_ident(&visible), fresh));
    }
    let _ = ast::visit_expressions_mut(query, |expr| {
        if let Expr::CompoundIdentifier(parts) = expr
            && parts.len() >= 2
            && let Some((_, fresh)) =
                renamed.iter().find(|(visible, _)| *visible == normalize_ident(&parts[0]))
        {
            parts[0] = fresh.clone();
        }
        ControlFlow::<()>::Continue(())
    });
}

/// An unqualified column in the arguments of a function whose body reads relations would
/// resolve to the body's columns inside it: such arguments must be qualified.
fn check_arguments_qualified(arguments: &[Expr], desc: &FunctionDesc) -> Result<()> {
    struct Unqualified {
        depth: usize,
    }
    impl ast::Visitor for Unqualified {
        type Break = String;
        fn pre_visit_query(&mut self, _: &ast::Query) -> ControlFlow<String> {
            self.depth += 1;
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _: &ast::Query) -> ControlFlow<String> {
            self.depth -= 1;
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<String> {
            match expr {
                Expr::Identifier(ident) if self.depth == 0 => ControlFlow::Break(normalize_ident(ident)),
                _ => ControlFlow::Continue(()),
            }
        }
    }
    for argument in arguments {
        if let ControlFlow::Break(column) = ast::Visit::visit(argument, &mut Unqualified { depth: 0 }) {
            return Err(Error::new(
                SqlState::AmbiguousColumn,
                format!("column reference \"{column}\" in a call of {} must be qualified", desc.signature()),
            )
            .with_detail("The function's body reads tables, whose columns an unqualified name could mean.")
            .with_hint(format!("Write the table or alias before it, for example t.{column}.")));
        }
    }
    Ok(())
}

/// The expression of `SELECT expression` with nothing else: no FROM, WHERE, grouping,
/// ordering or limit.
fn bare_expression(query: &ast::Query) -> Option<Expr> {
    let SetExpr::Select(select) = query.body.as_ref() else { return None };
    let bare = query.with.is_none()
        && query.order_by.is_none()
        && query.limit_clause.is_none()
        && select.from.is_empty()
        && select.selection.is_none()
        && select.having.is_none()
        && select.distinct.is_none()
        && matches!(&select.group_by, ast::GroupByExpr::Expressions(e, _) if e.is_empty())
        && select.projection.len() == 1;
    if !bare {
        return None;
    }
    match &select.projection[0] {
        ast::SelectItem::UnnamedExpr(expr) | ast::SelectItem::ExprWithAlias { expr, .. } => {
            Some(expr.clone())
        }
        _ => None,
    }
}

/// Replaces the parameters of `desc` in a body by `arguments`. Post-order, so that an
/// argument put in place is not searched again.
struct Parameters<'a> {
    desc: &'a FunctionDesc,
    arguments: &'a [Expr],
}

impl VisitorMut for Parameters<'_> {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let position = match expr {
            Expr::Identifier(ident) => self.position(&normalize_ident(ident)),
            Expr::CompoundIdentifier(parts)
                if parts.len() == 2 && normalize_ident(&parts[0]) == self.desc.name =>
            {
                self.position(&normalize_ident(&parts[1]))
            }
            Expr::Value(value) => match &value.value {
                Value::Placeholder(p) => p
                    .strip_prefix('$')
                    .and_then(|n| n.parse::<usize>().ok())
                    .filter(|n| (1..=self.arguments.len()).contains(n))
                    .map(|n| n - 1),
                _ => None,
            },
            _ => None,
        };
        if let Some(position) = position {
            *expr = Expr::Nested(Box::new(self.arguments[position].clone()));
        }
        ControlFlow::Continue(())
    }
}

impl Parameters<'_> {
    fn position(&self, name: &str) -> Option<usize> {
        self.desc.parameters.iter().position(|p| p.name.as_deref() == Some(name))
    }
}

struct Inliner<'a, 'b> {
    lookup: &'a FunctionLookup<'b>,
    /// The functions whose bodies are being inlined, outermost first.
    stack: Vec<String>,
    used: Vec<Arc<FunctionDesc>>,
}

impl VisitorMut for Inliner<'_, '_> {
    type Break = Error;

    /// A select list's call `f(...)` is named `f`, as Postgres names it (and so two calls
    /// of one function are two columns named alike, which `sql::pg_compat` handles).
    fn pre_visit_query(&mut self, query: &mut ast::Query) -> ControlFlow<Error> {
        let SetExpr::Select(select) = query.body.as_mut() else { return ControlFlow::Continue(()) };
        for item in &mut select.projection {
            let ast::SelectItem::UnnamedExpr(Expr::Function(call)) = item else { continue };
            let Some(desc) = (self.lookup)(&call.name) else { continue };
            let expr = Expr::Function(call.clone());
            *item = ast::SelectItem::ExprWithAlias { expr, alias: quoted(&desc.name) };
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<Error> {
        let Expr::Function(call) = expr else { return ControlFlow::Continue(()) };
        let Some(desc) = (self.lookup)(&call.name) else { return ControlFlow::Continue(()) };
        match self.inline_call(call, &desc) {
            Ok(inlined) => {
                *expr = inlined;
                ControlFlow::Continue(())
            }
            Err(e) => ControlFlow::Break(e),
        }
    }
}

impl Inliner<'_, '_> {
    fn inline_call(&mut self, call: &ast::Function, desc: &Arc<FunctionDesc>) -> Result<Expr> {
        let name = desc.qualified_name();
        if self.stack.contains(&name) {
            return Err(Error::unsupported("recursive SQL functions")
                .with_detail(format!("function {} calls itself", desc.signature())));
        }
        if self.stack.len() >= FUNCTION_NESTING_DEPTH_MAX {
            return Err(Error::new(
                SqlState::StatementTooComplex,
                format!("SQL functions are nested more than {FUNCTION_NESTING_DEPTH_MAX} deep"),
            ));
        }
        if !self.used.iter().any(|f| f.id == desc.id) {
            self.used.push(desc.clone());
        }
        let arguments = bind_arguments(call, desc)?;
        let cast_arguments: Vec<Expr> = arguments
            .iter()
            .zip(&desc.parameters)
            .map(|(argument, parameter)| cast(argument.clone(), &parameter.sql_type))
            .collect::<Result<_>>()?;
        let mut body = body_expression(desc, &cast_arguments)?;
        if matches!(body, Expr::Subquery(_)) {
            check_arguments_qualified(&arguments, desc)?;
        }
        // The body's own calls, with this function on the stack.
        self.stack.push(name);
        let inner = VisitMut::visit(&mut body, self);
        self.stack.pop();
        if let ControlFlow::Break(e) = inner {
            return Err(e);
        }
        let mut value = cast(body, &desc.returns)?;
        if desc.strict && !arguments.is_empty() {
            value = null_on_null_input(&arguments, value);
        }
        Ok(Expr::Nested(Box::new(value)))
    }
}

/// The arguments of `call`, one per parameter of `desc`: by position, then by name, then
/// the parameters' defaults.
fn bind_arguments(call: &ast::Function, desc: &FunctionDesc) -> Result<Vec<Expr>> {
    let list = match &call.args {
        FunctionArguments::List(list) => list,
        FunctionArguments::None => return Err(no_such_call(call, desc)),
        FunctionArguments::Subquery(_) => return Err(no_such_call(call, desc)),
    };
    if call.over.is_some()
        || call.filter.is_some()
        || !call.within_group.is_empty()
        || list.duplicate_treatment.is_some()
        || !list.clauses.is_empty()
    {
        return Err(Error::new(
            SqlState::WrongObjectType,
            format!("{} is not an aggregate or window function", desc.name),
        )
        .with_hint(
            "DISTINCT, ORDER BY, FILTER, WITHIN GROUP and OVER apply to aggregate and window functions",
        ));
    }
    let mut bound: Vec<Option<Expr>> = vec![None; desc.parameters.len()];
    for (i, argument) in list.args.iter().enumerate() {
        let (slot, value) = match argument {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(value)) => (i, value),
            FunctionArg::Named { name, arg: FunctionArgExpr::Expr(value), operator }
            | FunctionArg::ExprNamed {
                name: Expr::Identifier(name),
                arg: FunctionArgExpr::Expr(value),
                operator,
            } if matches!(operator, FunctionArgOperator::RightArrow | FunctionArgOperator::Assignment) => {
                let wanted = normalize_ident(name);
                let slot = desc
                    .parameters
                    .iter()
                    .position(|p| p.name.as_deref() == Some(wanted.as_str()))
                    .ok_or_else(|| no_such_call(call, desc))?;
                (slot, value)
            }
            _ => return Err(no_such_call(call, desc)),
        };
        match bound.get_mut(slot) {
            Some(place @ None) => *place = Some(value.clone()),
            _ => return Err(no_such_call(call, desc)),
        }
    }
    bound
        .into_iter()
        .zip(&desc.parameters)
        .map(|(value, parameter)| match (value, &parameter.default) {
            (Some(value), _) => Ok(value),
            (None, Some(default)) => parse_expression(default),
            (None, None) => Err(no_such_call(call, desc)),
        })
        .collect()
}

fn no_such_call(call: &ast::Function, desc: &FunctionDesc) -> Error {
    let arguments = match &call.args {
        FunctionArguments::List(list) => {
            list.args.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
        }
        _ => String::new(),
    };
    Error::new(SqlState::UndefinedFunction, format!("function {}({arguments}) does not exist", call.name))
        .with_hint(format!("The function is {}({}).", desc.name, desc.arguments_text(true)))
}

/// One expression written as SQL text (a DEFAULT).
pub fn parse_expression(sql: &str) -> Result<Expr> {
    let ast::Statement::Query(query) = parse_generated(&format!("SELECT {sql}"))? else {
        return Err(Error::internal(format!("not an expression: {sql}")));
    };
    bare_expression(&query).ok_or_else(|| Error::internal(format!("not an expression: {sql}")))
}

/// `CAST(expr AS type)`, the type without length, precision or scale (which functions'
/// parameters and results do not keep, as in Postgres).
pub fn cast(expr: Expr, sql_type: &SqlType) -> Result<Expr> {
    Ok(Expr::Cast {
        kind: CastKind::Cast,
        expr: Box::new(Expr::Nested(Box::new(expr))),
        data_type: cast_type(sql_type)?,
        array: false,
        format: None,
    })
}

/// The type a parameter or result of type `sql_type` is converted to.
pub fn cast_type(sql_type: &SqlType) -> Result<ast::DataType> {
    let name = match sql_type {
        // Postgres' `bpchar` without a length keeps any length; Sabot's char(n) values are
        // stored unpadded, as text.
        SqlType::Char(_) => "text".to_string(),
        SqlType::Varchar(_) => "varchar".to_string(),
        SqlType::Struct(_) => {
            return Err(Error::unsupported("struct parameters and results of SQL functions"));
        }
        other => crate::catalog::type_text(other),
    };
    match parse_generated(&format!("SELECT CAST(NULL AS {name})"))? {
        ast::Statement::Query(query) => match bare_expression(&query) {
            Some(Expr::Cast { data_type, .. }) => Ok(data_type),
            _ => Err(Error::internal("a generated cast did not parse as one")),
        },
        _ => Err(Error::internal("a generated cast did not parse as one")),
    }
}

/// `CASE WHEN a IS NULL OR b IS NULL ... THEN NULL ELSE value END`.
fn null_on_null_input(arguments: &[Expr], value: Expr) -> Expr {
    let condition = arguments
        .iter()
        .map(|a| Expr::IsNull(Box::new(Expr::Nested(Box::new(a.clone())))))
        .reduce(|left, right| Expr::BinaryOp {
            left: Box::new(left),
            op: ast::BinaryOperator::Or,
            right: Box::new(right),
        })
        .expect("called with arguments");
    Expr::Case {
        case_token: ast::helpers::attached_token::AttachedToken::empty(),
        end_token: ast::helpers::attached_token::AttachedToken::empty(),
        operand: None,
        conditions: vec![ast::CaseWhen { condition, result: Expr::value(Value::Null) }],
        else_result: Some(Box::new(value)),
    }
}

/// The name a call resolves in: `(schema, name)`, the schema None when unqualified.
pub fn call_name(name: &ObjectName) -> Option<(Option<String>, String)> {
    let parts: Vec<String> =
        name.0.iter().map(|p| p.as_ident().map(normalize_ident)).collect::<Option<_>>()?;
    match parts.as_slice() {
        [name] => Some((None, name.clone())),
        [schema, name] => Some((Some(schema.clone()), name.clone())),
        _ => None,
    }
}

/// An identifier as written for a name Sabot generated.
pub fn quoted(name: &str) -> Ident {
    Ident::with_quote('"', name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::FunctionParameter;

    fn function(
        name: &str,
        parameters: &[(&str, SqlType, Option<&str>)],
        body: FunctionBody,
    ) -> Arc<FunctionDesc> {
        Arc::new(FunctionDesc {
            id: 1,
            schema: "public".into(),
            name: name.into(),
            parameters: parameters
                .iter()
                .map(|(n, t, d)| FunctionParameter {
                    name: (!n.is_empty()).then(|| n.to_string()),
                    sql_type: t.clone(),
                    default: d.map(str::to_string),
                })
                .collect(),
            returns: SqlType::Int32,
            body,
            strict: false,
            volatility: 'v',
        })
    }

    fn inlined(sql: &str, functions: &[Arc<FunctionDesc>]) -> Result<String> {
        let mut statement = parse_generated(sql)?;
        let lookup = |name: &ObjectName| {
            let (_, name) = call_name(name)?;
            functions.iter().find(|f| f.name == name).cloned()
        };
        inline(&mut statement, &lookup)?;
        Ok(statement.to_string())
    }

    #[test]
    fn calls_become_the_body_with_the_arguments_cast() {
        let add = function(
            "add",
            &[("a", SqlType::Int32, None), ("b", SqlType::Int32, Some("10"))],
            FunctionBody::Return("a + add.b".into()),
        );
        assert_eq!(
            inlined("SELECT add(x), add(b => 1, a => 2) FROM t", &[add]).unwrap(),
            "SELECT (CAST(((CAST((x) AS INTEGER)) + (CAST((10) AS INTEGER))) AS INTEGER)) AS \"add\", \
             (CAST(((CAST((2) AS INTEGER)) + (CAST((1) AS INTEGER))) AS INTEGER)) AS \"add\" FROM t"
        );
    }

    #[test]
    fn positional_parameters_queries_and_nested_calls() {
        let twice =
            function("twice", &[("", SqlType::Int32, None)], FunctionBody::Query("SELECT $1 * 2;".into()));
        let count = function(
            "n_above",
            &[("v", SqlType::Int32, None)],
            FunctionBody::Query("SELECT count(*) FROM t WHERE t.x > twice(v)".into()),
        );
        let sql = inlined("SELECT n_above(3)", &[twice.clone(), count.clone()]).unwrap();
        assert_eq!(
            sql,
            "SELECT (CAST(((SELECT count(*) FROM t AS \"__sabot_n_above_1\" WHERE \"__sabot_n_above_1\".x > \
             (CAST(((CAST(((CAST((3) AS INTEGER))) AS INTEGER)) * 2) AS INTEGER)))) AS INTEGER)) AS \"n_above\""
        );
        // The caller's `t.x` stays the caller's: the body's `t` is renamed.
        let sql = inlined("SELECT n_above(t.x) FROM t", &[twice.clone(), count.clone()]).unwrap();
        assert!(
            sql.contains("WHERE \"__sabot_n_above_1\".x > (CAST(((CAST(((CAST((t.x) AS INTEGER)))"),
            "{sql}"
        );
        // An unqualified column would be the body's: refused.
        let e = inlined("SELECT n_above(x) FROM t", &[twice, count]).unwrap_err();
        assert_eq!(e.sqlstate(), SqlState::AmbiguousColumn, "{e}");
    }

    #[test]
    fn bad_calls_are_refused() {
        let add = function("add", &[("a", SqlType::Int32, None)], FunctionBody::Return("a".into()));
        let loops =
            function("loops", &[("a", SqlType::Int32, None)], FunctionBody::Return("loops(a)".into()));
        for (sql, state) in [
            ("SELECT add()", SqlState::UndefinedFunction),
            ("SELECT add(1, 2)", SqlState::UndefinedFunction),
            ("SELECT add(c => 1)", SqlState::UndefinedFunction),
            ("SELECT add(1) OVER ()", SqlState::WrongObjectType),
            ("SELECT loops(1)", SqlState::FeatureNotSupported),
        ] {
            let e = inlined(sql, &[add.clone(), loops.clone()]).unwrap_err();
            assert_eq!(e.sqlstate(), state, "{sql}: {e}");
        }
    }
}
