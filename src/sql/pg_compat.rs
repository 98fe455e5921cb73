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

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, DataType, Expr, Ident, ObjectName, ObjectNamePart, VisitMut, VisitorMut,
};

/// Rewrites `statement` in place.
pub fn rewrite(statement: &mut datafusion::sql::sqlparser::ast::Statement) {
    let _ = statement.visit(&mut PgForms);
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
                if let Some(aggregated) = array_of_subquery(function) {
                    *expr = aggregated;
                }
            }
            Expr::Cast { data_type, .. } => {
                if let DataType::Custom(name, modifiers) = data_type
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
    // The aggregate call, from a template (its AST has many fields that stay default).
    let Expr::Function(mut aggregate) = template_expr("array_agg(NULL)")? else { return None };
    let FunctionArguments::List(list) = &mut aggregate.args else { return None };
    list.args = vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(item.clone()))];
    let mut query = query.clone();
    let SetExpr::Select(select) = query.body.as_mut() else { return None };
    select.projection = vec![SelectItem::UnnamedExpr(Expr::Function(aggregate))];
    Some(Expr::Subquery(query))
}

/// The expression `sql`, parsed.
fn template_expr(sql: &str) -> Option<Expr> {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    Parser::new(&PostgreSqlDialect {}).try_with_sql(sql).ok()?.parse_expr().ok()
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
        assert_eq!(
            rewritten(
                "SELECT ARRAY(SELECT b.rolname FROM pg_roles b WHERE b.oid = r.oid) AS memberof FROM pg_roles r"
            ),
            "SELECT (SELECT array_agg(b.rolname) FROM pg_roles b WHERE b.oid = r.oid) AS memberof FROM pg_roles r"
        );
        // Not the catalog's: left as written.
        assert_eq!(rewritten("SELECT s.f(1)"), "SELECT s.f(1)");
    }
}
