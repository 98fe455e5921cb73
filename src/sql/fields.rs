//! Field access on composite values, Postgres' way: `(bid).price` reads field `price` of
//! the struct `bid`. sqlparser reads it as a dot access on a parenthesized expression,
//! which DataFusion does not plan; it plans the subscript `bid['price']`, so each such
//! dot access is rewritten into one (a quoted field name keeps its case, an unquoted one
//! is folded to lower case, as for column names).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{AccessExpr, Expr, Statement, Subscript, Value, VisitMut, VisitorMut};

/// Rewrites every `(expression).field` in `statement` as `(expression)['field']`.
pub fn rewrite_field_access(statement: &mut Statement) {
    let _ = VisitMut::visit(statement, &mut FieldAccess);
}

struct FieldAccess;

impl VisitorMut for FieldAccess {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::CompoundFieldAccess { access_chain, .. } = expr {
            for access in access_chain.iter_mut() {
                if let AccessExpr::Dot(Expr::Identifier(field)) = access {
                    let name = if field.quote_style.is_some() {
                        field.value.clone()
                    } else {
                        field.value.to_lowercase()
                    };
                    *access = AccessExpr::Subscript(Subscript::Index {
                        index: Expr::Value(Value::SingleQuotedString(name).into()),
                    });
                }
            }
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use crate::sql::parser::{Statement as Parsed, parse};

    #[test]
    fn dot_access_on_a_parenthesized_value_becomes_a_subscript() {
        let Some(Parsed::Sql(statement)) = parse("SELECT (bid).price, (bid).\"Url\" FROM s").unwrap().pop()
        else {
            panic!("a query")
        };
        assert_eq!(statement.to_string(), "SELECT (bid)['price'], (bid)['Url'] FROM s");
    }
}
