//! Postgres forms that tools send and DataFusion does not plan, rewritten to ones it
//! does, before a statement is planned:
//!
//! - `x COLLATE "C"` / `COLLATE pg_catalog.default` (psql adds it to every name pattern):
//!   the collation is dropped (Sabot compares text by bytes, which is `C`).
//! - `a OPERATOR(pg_catalog.~) b`: the operator itself (`~`, `~*`, `!~`, `!~*`, `=`,
//!   `<>`, `<`, `<=`, `>`, `>=`, `+`, `-`, `*`, `/`, `||`).
//! - `pg_catalog.f(...)`: `f(...)` (the catalog functions are registered by their names).
//! - `::pg_catalog.text` and other types qualified by `pg_catalog`: the type; `::oid`
//!   and `::regproc`-like names Sabot has no type for are left to fail.
//! - `ARRAY(SELECT x FROM ...)` (psql's `\du`): `(SELECT array_agg(x) FROM ...)`, a scalar
//!   subquery the planner decorrelates (NULL rather than `{}` when it finds no rows).
//! - `x::regclass`: `sabot_regclass('name')` (the relation's oid; 42P01 when there is
//!   none) for a name written out, else `sabot_regclass_name(x)` (the oid's relation, as
//!   regclass prints); a select item that is such a cast prints the relation's name, as
//!   Postgres prints a regclass (`SELECT 'bid'::regclass` is `bid`);
//!   `x::regtype`: `format_type(x, NULL)`; `x::regnamespace`: `sabot_namespace_name(x)`;
//!   `x::oid`: `bigint` (Sabot's object ids are bigints); `'pg_catalog.f'::regproc`: the
//!   text `'f'` (as `pg_type.typinput` holds it).
//! - `user` (unquoted): `current_user`; `mod(a, b)`: `(a % b)`.
//! - `x::varchar(n)`: `left(x::varchar, n)` (an explicit cast cuts, as in Postgres).
//! - `information_schema._pg_expandarray(a)` (the JDBC driver's primary keys): the set of
//!   `(x, n)` as `unnest(sabot_expandarray(a))`, and `(... ).n` / `.x` as the unnest of that
//!   field alone (unnests in one select list run in step).
//! - A query that reads, by inner joins, a catalog relation Sabot never has rows in
//!   ([`EMPTY_CATALOGS`]: policies, extended statistics, publications, inheritance,
//!   rules, triggers, foreign tables' options) and aggregates nothing: it has no rows, so
//!   it becomes `SELECT NULL::text AS ..., ... WHERE false` with as many columns (psql's
//!   `\d NAME` asks for these with forms DataFusion cannot plan, e.g. `generate_series`
//!   with correlated arguments).
//! - Correlated scalar subqueries over the catalog in a select list: LEFT JOINs (see
//!   `sql::catalog_subquery`).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, DataType, Expr, Ident, ObjectName, ObjectNamePart, VisitMut, VisitorMut,
};

/// Rewrites `statement` in place.
pub fn rewrite(statement: &mut datafusion::sql::sqlparser::ast::Statement) {
    if let datafusion::sql::sqlparser::ast::Statement::Query(query) = statement {
        print_regclass_items(query);
        if let datafusion::sql::sqlparser::ast::SetExpr::Select(select) = query.body.as_mut() {
            super::column_names::name_columns_beside_wildcards(select);
        }
    }
    let _ = statement.visit(&mut PgForms);
    super::pg_interval_input::rewrite_literals(statement);
    if let datafusion::sql::sqlparser::ast::Statement::Query(query) = statement {
        super::catalog_subquery::decorrelate(query);
    }
    if let datafusion::sql::sqlparser::ast::Statement::Query(query) = statement
        && let Some(columns) = empty::columns_if_empty(query)
        && let Some(nothing) = empty::no_rows(&columns)
    {
        *query = nothing;
    }
    if let datafusion::sql::sqlparser::ast::Statement::Query(query) = statement
        && let datafusion::sql::sqlparser::ast::SetExpr::Select(select) = query.body.as_mut()
    {
        super::column_names::name_repeated_columns(select);
    }
}

pub use empty::{EMPTY_CATALOGS, aggregates};

/// A select item `'name'::regclass` prints the relation's name, as Postgres prints a
/// regclass; elsewhere (`WHERE c.oid = 'bid'::regclass`) it stays the oid.
fn print_regclass_items(query: &mut datafusion::sql::sqlparser::ast::Query) {
    use datafusion::sql::sqlparser::ast::{SelectItem, SetExpr};
    let SetExpr::Select(select) = query.body.as_mut() else { return };
    for item in &mut select.projection {
        let (SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. }) = item else { continue };
        // Only a name written out: `oid::regclass` already becomes the relation's name.
        let is_regclass = matches!(
            expr,
            Expr::Cast { data_type, expr: inner, .. }
                if object_id_type(data_type).as_deref() == Some("regclass")
                    && matches!(inner.as_ref(), Expr::Value(v) if matches!(v.value, datafusion::sql::sqlparser::ast::Value::SingleQuotedString(_)))
        );
        if is_regclass && let Some(named) = call("sabot_regclass_name", vec![expr.clone()]) {
            *expr = named;
        }
    }
}

/// The name of an object-id type (`regclass`, `pg_catalog.regtype`, `oid`, ...).
fn object_id_type(data_type: &DataType) -> Option<String> {
    match data_type {
        DataType::Regclass => Some("regclass".to_string()),
        DataType::Custom(name, modifiers) if modifiers.is_empty() => match name.0.as_slice() {
            [ObjectNamePart::Identifier(t)] => Some(t.value.to_ascii_lowercase()),
            [ObjectNamePart::Identifier(schema), ObjectNamePart::Identifier(t)]
                if schema.value.eq_ignore_ascii_case("pg_catalog") =>
            {
                Some(t.value.to_ascii_lowercase())
            }
            _ => None,
        },
        _ => None,
    }
}

/// `x::regclass` and the other object-id types, as calls of the catalog functions; None
/// for any other cast.
fn object_id_cast(data_type: &DataType, inner: &Expr) -> Option<Expr> {
    let type_name = object_id_type(data_type)?;
    let written_out = matches!(
        inner,
        Expr::Value(v) if matches!(v.value, datafusion::sql::sqlparser::ast::Value::SingleQuotedString(_))
    );
    match (type_name.as_str(), written_out) {
        ("regclass", true) => call("sabot_regclass", vec![inner.clone()]),
        ("regclass", false) => call("sabot_regclass_name", vec![inner.clone()]),
        ("regtype", false) => call("format_type", vec![inner.clone(), template_expr("NULL")?]),
        ("regnamespace", false) => call("sabot_namespace_name", vec![inner.clone()]),
        // A function's name as `pg_type.typinput` and friends hold it (without its schema).
        ("regproc", true) => {
            let Expr::Value(value) = inner else { return None };
            let datafusion::sql::sqlparser::ast::Value::SingleQuotedString(name) = &value.value else {
                return None;
            };
            let name = name.strip_prefix("pg_catalog.").unwrap_or(name);
            template_expr(&format!("'{}'", name.replace('\'', "''")))
        }
        ("oid", _) => Some(Expr::Cast {
            kind: datafusion::sql::sqlparser::ast::CastKind::DoubleColon,
            expr: Box::new(inner.clone()),
            data_type: DataType::BigInt(None),
            array: false,
            format: None,
        }),
        _ => None,
    }
}

/// `x::varchar(n)`: `left(x::varchar, n)`. An explicit cast cuts a longer value to `n`
/// characters, as in Postgres (a value written to a `varchar(n)` column is checked
/// instead: 22001); None for any other cast.
fn varchar_cast(data_type: &DataType, inner: &Expr) -> Option<Expr> {
    use datafusion::sql::sqlparser::ast::{CastKind, CharacterLength};
    let (DataType::Varchar(Some(CharacterLength::IntegerLength { length, .. }))
    | DataType::CharacterVarying(Some(CharacterLength::IntegerLength { length, .. }))
    | DataType::CharVarying(Some(CharacterLength::IntegerLength { length, .. }))) = data_type
    else {
        return None;
    };
    let text = Expr::Cast {
        kind: CastKind::Cast,
        expr: Box::new(inner.clone()),
        data_type: DataType::Varchar(None),
        array: false,
        format: None,
    };
    call("left", vec![text, template_expr(&length.to_string())?])
}

/// A call of `name` with `args`.
fn call(name: &str, args: Vec<Expr>) -> Option<Expr> {
    use datafusion::sql::sqlparser::ast::{FunctionArg, FunctionArgExpr, FunctionArguments};
    let Expr::Function(mut function) = template_expr(&format!("{name}(NULL)"))? else { return None };
    let FunctionArguments::List(list) = &mut function.args else { return None };
    list.args = args.into_iter().map(|a| FunctionArg::Unnamed(FunctionArgExpr::Expr(a))).collect();
    Some(Expr::Function(function))
}

struct PgForms;

impl VisitorMut for PgForms {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        match expr {
            Expr::Collate { expr: inner, .. } => {
                let inner = std::mem::replace(
                    inner.as_mut(),
                    Expr::value(datafusion::sql::sqlparser::ast::Value::Null),
                );
                *expr = inner;
            }
            Expr::BinaryOp { op, .. } => {
                if let BinaryOperator::PGCustomBinaryOperator(parts) = op
                    && let Some(builtin) = catalog_operator(parts)
                {
                    *op = builtin;
                }
            }
            Expr::Function(function) => {
                unqualify(&mut function.name);
                // `user` is Postgres' `current_user` (the parser reads both as calls).
                if let [ObjectNamePart::Identifier(name)] = function.name.0.as_mut_slice()
                    && name.quote_style.is_none()
                    && name.value.eq_ignore_ascii_case("user")
                {
                    name.value = "current_user".into();
                }
                if let Some(aggregated) = array_of_subquery(function) {
                    *expr = aggregated;
                } else if let Some(expanded) = expand_array(function) {
                    *expr = expanded;
                } else if let Some(remainder) = modulo(function) {
                    *expr = remainder;
                } else if let Some(aggregated) = super::jsonb::aggregate(function) {
                    *expr = aggregated;
                } else if let Some(aggregated) = super::jsonb_edit::aggregate(function) {
                    *expr = aggregated;
                } else if let Some(rows) = super::jsonb::set_returning(function) {
                    *expr = rows;
                }
            }
            // `(information_schema._pg_expandarray(a)).n` (already `unnest(sabot_expandarray(a))`).
            Expr::CompoundFieldAccess { root, access_chain } => {
                if let [access] = access_chain.as_slice()
                    && let Some(field) = accessed_field(access)
                    && (field == "x" || field == "n")
                    && let Some(arguments) = expanded_array_arguments(root)
                    && let Some(one_field) = call(&format!("sabot_expandarray_{field}"), arguments)
                    && let Some(unnested) = call("unnest", vec![one_field])
                {
                    *expr = unnested;
                }
            }
            Expr::Cast { data_type, expr: inner, .. } => {
                if let Some(call) = object_id_cast(data_type, inner) {
                    *expr = call;
                } else if let Some(cut) = varchar_cast(data_type, inner) {
                    *expr = cut;
                } else if let Some(parsed) = super::jsonb::cast(data_type, inner) {
                    *expr = parsed;
                } else if let DataType::Custom(name, modifiers) = data_type
                    && modifiers.is_empty()
                    && let Some(builtin) = catalog_type(name)
                {
                    *data_type = builtin;
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// `information_schema._pg_expandarray(a)` (the set of `(x, n)`: each element and its
/// position) as `unnest(sabot_expandarray(a))`, a struct per element; None for any other
/// function.
fn expand_array(function: &datafusion::sql::sqlparser::ast::Function) -> Option<Expr> {
    use datafusion::sql::sqlparser::ast::{FunctionArg, FunctionArgExpr, FunctionArguments};
    let name = match function.name.0.as_slice() {
        [ObjectNamePart::Identifier(name)] => name,
        [ObjectNamePart::Identifier(schema), ObjectNamePart::Identifier(name)]
            if schema.value.eq_ignore_ascii_case("information_schema") =>
        {
            name
        }
        _ => return None,
    };
    if !name.value.eq_ignore_ascii_case("_pg_expandarray") {
        return None;
    }
    let FunctionArguments::List(list) = &function.args else { return None };
    let [FunctionArg::Unnamed(FunctionArgExpr::Expr(array))] = list.args.as_slice() else { return None };
    call("unnest", vec![call("sabot_expandarray", vec![array.clone()])?])
}

/// `mod(a, b)` as `(a % b)`; None for any other function.
fn modulo(function: &datafusion::sql::sqlparser::ast::Function) -> Option<Expr> {
    use datafusion::sql::sqlparser::ast::{FunctionArg, FunctionArgExpr, FunctionArguments};
    let [ObjectNamePart::Identifier(name)] = function.name.0.as_slice() else { return None };
    if !name.value.eq_ignore_ascii_case("mod") || name.quote_style.is_some() {
        return None;
    }
    let FunctionArguments::List(list) = &function.args else { return None };
    let [FunctionArg::Unnamed(FunctionArgExpr::Expr(a)), FunctionArg::Unnamed(FunctionArgExpr::Expr(b))] =
        list.args.as_slice()
    else {
        return None;
    };
    Some(Expr::Nested(Box::new(Expr::BinaryOp {
        left: Box::new(a.clone()),
        op: BinaryOperator::Modulo,
        right: Box::new(b.clone()),
    })))
}

/// The arguments of `unnest(sabot_expandarray(...))`, parenthesized or not.
fn expanded_array_arguments(expr: &Expr) -> Option<Vec<Expr>> {
    use datafusion::sql::sqlparser::ast::{FunctionArg, FunctionArgExpr, FunctionArguments};
    let expr = match expr {
        Expr::Nested(inner) => inner.as_ref(),
        other => other,
    };
    let arguments = |expr: &Expr, name: &str| -> Option<Vec<Expr>> {
        let Expr::Function(function) = expr else { return None };
        if function.name.to_string() != name {
            return None;
        }
        let FunctionArguments::List(list) = &function.args else { return None };
        list.args
            .iter()
            .map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
                _ => None,
            })
            .collect()
    };
    let [inner] = arguments(expr, "unnest")?.try_into().ok()?;
    arguments(&inner, "sabot_expandarray")
}

/// The field a `.f` or `['f']` access names.
fn accessed_field(access: &datafusion::sql::sqlparser::ast::AccessExpr) -> Option<String> {
    use datafusion::sql::sqlparser::ast::{AccessExpr, Subscript, Value};
    match access {
        AccessExpr::Dot(Expr::Identifier(field)) => Some(field.value.to_lowercase()),
        AccessExpr::Subscript(Subscript::Index { index: Expr::Value(v) }) => match &v.value {
            Value::SingleQuotedString(field) => Some(field.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// `ARRAY(SELECT x FROM ... [WHERE ...])` as `(SELECT array_agg(x) FROM ... [WHERE ...])`;
/// None for any other function, or a subquery of another shape.
fn array_of_subquery(function: &datafusion::sql::sqlparser::ast::Function) -> Option<Expr> {
    use datafusion::sql::sqlparser::ast::{
        FunctionArg, FunctionArgExpr, FunctionArguments, SelectItem, SetExpr,
    };
    let FunctionArguments::Subquery(query) = &function.args else { return None };
    if !function.name.to_string().eq_ignore_ascii_case("array")
        || query.order_by.is_some()
        || query.limit_clause.is_some()
    {
        return None;
    }
    let SetExpr::Select(select) = query.body.as_ref() else { return None };
    let [SelectItem::UnnamedExpr(item) | SelectItem::ExprWithAlias { expr: item, .. }] =
        select.projection.as_slice()
    else {
        return None;
    };
    if select.distinct.is_some() || select.having.is_some() {
        return None;
    }
    if let Some(mapped) = array_over_unnest(select, item) {
        return Some(mapped);
    }
    // The aggregate call, from a template (its AST has many fields that stay default).
    let Expr::Function(mut aggregate) = template_expr("array_agg(NULL)")? else { return None };
    let FunctionArguments::List(list) = &mut aggregate.args else { return None };
    list.args = vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(item.clone()))];
    let mut query = query.clone();
    let SetExpr::Select(select) = query.body.as_mut() else { return None };
    select.projection = vec![SelectItem::UnnamedExpr(Expr::Function(aggregate))];
    Some(Expr::Subquery(query))
}

/// `ARRAY(SELECT f(x) FROM unnest(a) x)` (psql's `\d+` lists options so):
/// `array_transform(a, x -> f(x))`, which needs no correlated subquery.
fn array_over_unnest(select: &datafusion::sql::sqlparser::ast::Select, item: &Expr) -> Option<Expr> {
    use datafusion::sql::sqlparser::ast::{
        FunctionArg, FunctionArgExpr, FunctionArguments, LambdaFunction, LambdaFunctionParameter,
        LambdaSyntax, OneOrManyWithParens, TableFactor,
    };
    let [from] = select.from.as_slice() else { return None };
    if !from.joins.is_empty()
        || select.selection.is_some()
        || !matches!(select.group_by, datafusion::sql::sqlparser::ast::GroupByExpr::Expressions(ref e, _) if e.is_empty())
    {
        return None;
    }
    // `pg_catalog.unnest(a) x` is a table function; a bare `unnest(a) x` has its own form.
    let (array, alias) = match &from.relation {
        TableFactor::Table { name, args: Some(args), alias: Some(alias), .. }
            if name.0.last()?.as_ident()?.value.eq_ignore_ascii_case("unnest") =>
        {
            let [FunctionArg::Unnamed(FunctionArgExpr::Expr(array))] = args.args.as_slice() else {
                return None;
            };
            (array, alias)
        }
        TableFactor::UNNEST {
            alias: Some(alias),
            array_exprs,
            with_offset: false,
            with_ordinality: false,
            ..
        } if array_exprs.len() == 1 => (&array_exprs[0], alias),
        _ => return None,
    };
    if !alias.columns.is_empty() {
        return None;
    }
    let lambda = Expr::Lambda(LambdaFunction {
        params: OneOrManyWithParens::One(LambdaFunctionParameter {
            name: alias.name.clone(),
            data_type: None,
        }),
        body: Box::new(item.clone()),
        syntax: LambdaSyntax::Arrow,
    });
    let Expr::Function(mut transform) = template_expr("array_transform(NULL, NULL)")? else { return None };
    let FunctionArguments::List(list) = &mut transform.args else { return None };
    list.args = vec![
        FunctionArg::Unnamed(FunctionArgExpr::Expr(array.clone())),
        FunctionArg::Unnamed(FunctionArgExpr::Expr(lambda)),
    ];
    Some(Expr::Function(transform))
}

/// The expression `sql`, parsed.
pub(crate) fn template_expr(sql: &str) -> Option<Expr> {
    parser(sql)?.parse_expr().ok()
}

/// The query `sql`, parsed (the rewrites build what they put in from text).
pub(crate) fn parse_query(sql: &str) -> Option<Box<datafusion::sql::sqlparser::ast::Query>> {
    parser(sql)?.parse_query().ok()
}

fn parser(sql: &str) -> Option<datafusion::sql::sqlparser::parser::Parser<'static>> {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    Parser::new(&PostgreSqlDialect {}).try_with_sql(sql).ok()
}

/// The operator `OPERATOR(pg_catalog.op)` names.
fn catalog_operator(parts: &[String]) -> Option<BinaryOperator> {
    let [schema, op] = parts else { return None };
    if !schema.eq_ignore_ascii_case("pg_catalog") {
        return None;
    }
    Some(match op.as_str() {
        "~" => BinaryOperator::PGRegexMatch,
        "~*" => BinaryOperator::PGRegexIMatch,
        "!~" => BinaryOperator::PGRegexNotMatch,
        "!~*" => BinaryOperator::PGRegexNotIMatch,
        "=" => BinaryOperator::Eq,
        "<>" | "!=" => BinaryOperator::NotEq,
        "<" => BinaryOperator::Lt,
        "<=" => BinaryOperator::LtEq,
        ">" => BinaryOperator::Gt,
        ">=" => BinaryOperator::GtEq,
        "+" => BinaryOperator::Plus,
        "-" => BinaryOperator::Minus,
        "*" => BinaryOperator::Multiply,
        "/" => BinaryOperator::Divide,
        "||" => BinaryOperator::StringConcat,
        _ => return None,
    })
}

/// `pg_catalog.f` → `f`.
fn unqualify(name: &mut ObjectName) {
    if let [ObjectNamePart::Identifier(schema), ObjectNamePart::Identifier(function)] = name.0.as_slice()
        && schema.value.eq_ignore_ascii_case("pg_catalog")
    {
        let function: Ident = function.clone();
        name.0 = vec![ObjectNamePart::Identifier(function)];
    }
}

/// The type `pg_catalog.name` is, where Sabot has it.
fn catalog_type(name: &ObjectName) -> Option<DataType> {
    let [ObjectNamePart::Identifier(schema), ObjectNamePart::Identifier(type_name)] = name.0.as_slice()
    else {
        return None;
    };
    if !schema.value.eq_ignore_ascii_case("pg_catalog") {
        return None;
    }
    Some(match type_name.value.to_ascii_lowercase().as_str() {
        "text" | "name" | "varchar" => DataType::Text,
        "bool" => DataType::Boolean,
        "int2" => DataType::SmallInt(None),
        "int4" => DataType::Integer(None),
        "int8" => DataType::BigInt(None),
        "float4" => DataType::Real,
        "float8" => DataType::DoublePrecision,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut statements = crate::sql::parser::parse(sql).unwrap();
        let crate::sql::parser::Statement::Sql(statement) = &mut statements[0] else { panic!("plain SQL") };
        rewrite(statement);
        statement.to_string()
    }

    #[test]
    fn psql_forms_become_what_datafusion_plans() {
        assert_eq!(
            rewritten(
                "SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname OPERATOR(pg_catalog.~) '^(t1)$' COLLATE pg_catalog.default AND pg_catalog.pg_table_is_visible(c.oid)"
            ),
            "SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname ~ '^(t1)$' AND pg_table_is_visible(c.oid)"
        );
        assert_eq!(rewritten("SELECT x::pg_catalog.text FROM t"), "SELECT x::TEXT FROM t");
        // A column named beside a wildcard is aliased by its name (DBeaver's `db.oid, db.*`).
        assert_eq!(
            rewritten("SELECT db.oid, db.* FROM pg_catalog.pg_database db"),
            "SELECT db.oid AS \"__sabot_same_name:0:oid\", db.* FROM pg_catalog.pg_database db"
        );
        // A column named like an earlier one is aliased apart (Postgres returns both).
        assert_eq!(
            rewritten("SELECT x, t.x, x + 1, x + 1 FROM t"),
            "SELECT x, t.x AS \"__sabot_same_name:1:x\", x + 1, x + 1 AS \"__sabot_same_name:3:?column?\" FROM t"
        );
        assert_eq!(
            rewritten("SELECT ARRAY(SELECT 'toast.' || x FROM unnest(tc.reloptions) x) FROM c"),
            "SELECT array_transform(tc.reloptions, x -> 'toast.' || x) FROM c"
        );
        assert_eq!(
            rewritten(
                "SELECT ARRAY(SELECT b.rolname FROM pg_roles b WHERE b.oid = r.oid) AS memberof FROM pg_roles r"
            ),
            "SELECT (SELECT array_agg(b.rolname) FROM pg_roles b WHERE b.oid = r.oid) AS memberof FROM pg_roles r"
        );
        assert_eq!(
            rewritten(
                "SELECT c.reloftype::pg_catalog.regtype::pg_catalog.text, 'bid'::regclass, c.oid::regclass FROM c"
            ),
            "SELECT format_type(c.reloftype, NULL)::TEXT, sabot_regclass_name(sabot_regclass('bid')), sabot_regclass_name(c.oid) FROM c"
        );
        // Policies are never there: no rows, as many columns.
        assert_eq!(
            rewritten(
                "SELECT pol.polname, pol.polpermissive, NULL, NULL FROM pg_catalog.pg_policy pol WHERE pol.polrelid = '16388' ORDER BY 1"
            ),
            "SELECT CAST(NULL AS TEXT) AS \"polname\", CAST(NULL AS TEXT) AS \"polpermissive\", CAST(NULL AS TEXT) AS \"?column?3\", CAST(NULL AS TEXT) AS \"?column?4\" WHERE false"
        );
        // An inner join with one is empty too; a LEFT join from another relation is not,
        // nor is an aggregate over it.
        assert!(
            rewritten("SELECT c.relname FROM pg_class c, pg_inherits i WHERE c.oid = i.inhparent")
                .contains("WHERE false")
        );
        assert!(
            !rewritten("SELECT c.relname FROM pg_class c LEFT JOIN pg_inherits i ON c.oid = i.inhparent")
                .contains("WHERE false")
        );
        assert!(!rewritten("SELECT count(*) FROM pg_policy").contains("WHERE false"));
        // Not the catalog's: left as written.
        assert_eq!(rewritten("SELECT s.f(1)"), "SELECT s.f(1)");
    }
}

/// Queries over the catalog relations Sabot never has rows in.
mod empty {
    use std::ops::ControlFlow;

    use datafusion::sql::sqlparser::ast::{
        Expr, GroupByExpr, JoinOperator, ObjectNamePart, Query, Select, SelectItem, SetExpr, SetOperator,
        TableFactor, TableWithJoins, Visit, Visitor,
    };

    /// `pg_catalog`'s relations that never have rows in Sabot.
    pub const EMPTY_CATALOGS: [&str; 9] = [
        "pg_policy",
        "pg_statistic_ext",
        "pg_publication",
        "pg_publication_namespace",
        "pg_publication_rel",
        "pg_inherits",
        "pg_rewrite",
        "pg_trigger",
        "pg_foreign_table",
    ];

    /// The output column names of `query` when it can have no rows.
    pub fn columns_if_empty(query: &Query) -> Option<Vec<String>> {
        if !empty_set(&query.body) {
            return None;
        }
        let mut first = query.body.as_ref();
        loop {
            match first {
                SetExpr::SetOperation { left, .. } => first = left,
                SetExpr::Query(inner) => first = &inner.body,
                SetExpr::Select(select) => return names(&select.projection),
                _ => return None,
            }
        }
    }

    /// `SELECT CAST(NULL AS TEXT) AS "name", ... WHERE false`.
    pub fn no_rows(columns: &[String]) -> Option<Box<Query>> {
        let list: Vec<String> =
            columns.iter().map(|c| format!("CAST(NULL AS TEXT) AS \"{}\"", c.replace('"', "\"\""))).collect();
        super::parse_query(&format!("SELECT {} WHERE false", list.join(", ")))
    }

    /// Distinct output names (a wildcard: None, the columns cannot be counted here).
    fn names(projection: &[SelectItem]) -> Option<Vec<String>> {
        let mut names = Vec::with_capacity(projection.len());
        for (i, item) in projection.iter().enumerate() {
            let name = match item {
                SelectItem::ExprWithAlias { alias, .. } => alias.value.clone(),
                SelectItem::UnnamedExpr(Expr::Identifier(id)) => id.value.clone(),
                SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => parts.last()?.value.clone(),
                SelectItem::UnnamedExpr(_) => "?column?".to_string(),
                _ => return None,
            };
            names.push(if names.contains(&name) || name == "?column?" {
                format!("{name}{}", i + 1)
            } else {
                name
            });
        }
        Some(names)
    }

    fn empty_set(set: &SetExpr) -> bool {
        match set {
            SetExpr::Select(select) => empty_select(select),
            SetExpr::Query(query) => empty_set(&query.body),
            SetExpr::SetOperation { left, op, right, .. } => match op {
                SetOperator::Union => empty_set(left) && empty_set(right),
                SetOperator::Intersect => empty_set(left) || empty_set(right),
                SetOperator::Except | SetOperator::Minus => empty_set(left),
            },
            _ => false,
        }
    }

    /// Some FROM item is empty, and nothing is aggregated without GROUP BY (which gives a
    /// row over no rows).
    fn empty_select(select: &Select) -> bool {
        let grouped = !matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty());
        if (!grouped && aggregates(&select.projection)) || select.having.is_some() {
            return false;
        }
        select.from.iter().any(empty_joins)
    }

    fn empty_joins(from: &TableWithJoins) -> bool {
        let mut empty = empty_relation(&from.relation);
        for join in &from.joins {
            let right = empty_relation(&join.relation);
            empty = match &join.join_operator {
                JoinOperator::Join(_) | JoinOperator::Inner(_) | JoinOperator::CrossJoin(_) => empty || right,
                JoinOperator::Left(_) | JoinOperator::LeftOuter(_) => empty,
                JoinOperator::Right(_) | JoinOperator::RightOuter(_) => right,
                JoinOperator::FullOuter(_) => empty && right,
                _ => false,
            };
        }
        empty
    }

    fn empty_relation(factor: &TableFactor) -> bool {
        let TableFactor::Table { name, .. } = factor else { return false };
        match name.0.as_slice() {
            [ObjectNamePart::Identifier(t)] => EMPTY_CATALOGS.contains(&t.value.as_str()),
            [ObjectNamePart::Identifier(schema), ObjectNamePart::Identifier(t)] => {
                schema.value == "pg_catalog" && EMPTY_CATALOGS.contains(&t.value.as_str())
            }
            _ => false,
        }
    }

    /// Whether the select list calls an aggregate (outside subqueries).
    pub fn aggregates(projection: &[SelectItem]) -> bool {
        struct Aggregates {
            depth: usize,
        }
        impl Visitor for Aggregates {
            type Break = ();
            fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
                self.depth += 1;
                ControlFlow::Continue(())
            }
            fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
                self.depth -= 1;
                ControlFlow::Continue(())
            }
            fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
                const AGGREGATES: [&str; 16] = [
                    "count",
                    "sum",
                    "avg",
                    "min",
                    "max",
                    "array_agg",
                    "string_agg",
                    "bool_and",
                    "bool_or",
                    "every",
                    "json_agg",
                    "jsonb_agg",
                    "json_object_agg",
                    "jsonb_object_agg",
                    "stddev",
                    "variance",
                ];
                match expr {
                    Expr::Function(f)
                        if self.depth == 0
                            && AGGREGATES.contains(&f.name.to_string().to_ascii_lowercase().as_str()) =>
                    {
                        ControlFlow::Break(())
                    }
                    _ => ControlFlow::Continue(()),
                }
            }
        }
        projection.iter().any(|item| item.visit(&mut Aggregates { depth: 0 }).is_break())
    }
}
