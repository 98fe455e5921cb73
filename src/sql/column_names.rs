//! Names of a statement's own result columns where DataFusion would refuse them: two
//! columns of one name (`SELECT x, x`, `SELECT a AS n, b AS n`, `DATE '2020-01-01'` beside
//! `TIMESTAMP '2020-01-01'`), or a column named like one a wildcard brings. They are aliased
//! apart (`__sabot_same_name:<position>:<name>`) before planning and named back in the
//! result (`engine::query::postgres_column_names`).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Expr, Ident, VisitMut, VisitorMut};

/// The text by which DataFusion names an unaliased expression, near enough to find two
/// alike: it names a cast by what is cast (`DATE '2020-01-01'` and `TIMESTAMP '2020-01-01'`
/// are both named after the text).
fn naming_key(expr: &Expr) -> String {
    struct WithoutCasts;
    impl VisitorMut for WithoutCasts {
        type Break = ();
        fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
            match expr {
                Expr::Cast { expr: inner, .. } => {
                    *expr = std::mem::replace(
                        inner.as_mut(),
                        Expr::value(datafusion::sql::sqlparser::ast::Value::Null),
                    )
                }
                Expr::TypedString(typed) => *expr = Expr::Value(typed.value.clone()),
                _ => {}
            }
            ControlFlow::Continue(())
        }
    }
    let mut expr = expr.clone();
    let _ = expr.visit(&mut WithoutCasts);
    expr.to_string()
}

/// Prefix of the alias a column named beside a wildcard, or named like an earlier column,
/// gets (`__sabot_same_name:<position>:<name>`); the result's column is `<name>` again.
pub const SAME_NAME_PREFIX: &str = "__sabot_same_name:";

/// The alias that hides the `position`th select item's name `name` from DataFusion.
fn same_name_alias(position: usize, name: &str) -> Ident {
    Ident::with_quote('"', format!("{SAME_NAME_PREFIX}{position}:{name}"))
}

/// `SELECT x, x FROM t`, `SELECT a AS n, b AS n`: Postgres returns two columns of one
/// name; DataFusion refuses them. Every item named like an earlier one is aliased apart
/// ([`same_name_alias`]) and named back in the result. Only in the statement's own select
/// list (a view's columns must differ: 42701, checked on the statement as written).
pub(super) fn name_repeated_columns(select: &mut datafusion::sql::sqlparser::ast::Select) {
    use datafusion::sql::sqlparser::ast::SelectItem;
    let mut seen = std::collections::HashSet::new();
    for (position, item) in select.projection.iter_mut().enumerate() {
        let (key, name, expr) = match item {
            SelectItem::UnnamedExpr(expr) => {
                // A column is known by its name (`t.x` and `x` may be one column).
                let (key, name) = match expr {
                    Expr::Identifier(ident) => (ident.value.clone(), ident.value.clone()),
                    Expr::CompoundIdentifier(parts) => {
                        let name = parts.last().map_or("?column?".into(), |p| p.value.clone());
                        (name.clone(), name)
                    }
                    _ => (naming_key(expr), "?column?".into()),
                };
                (key, name, expr.clone())
            }
            SelectItem::ExprWithAlias { expr, alias } => {
                (alias.value.clone(), alias.value.clone(), expr.clone())
            }
            _ => continue,
        };
        if !seen.insert(key) {
            *item = SelectItem::ExprWithAlias { expr, alias: same_name_alias(position, &name) };
        }
    }
}

/// `SELECT t.oid, t.* FROM t` (DBeaver's catalog queries): Postgres returns `oid` twice;
/// DataFusion refuses two columns named `t.oid` (and drops an alias equal to the column's
/// name). A column named beside a wildcard is aliased `__sabot_same_name:oid`, and the
/// result names it `oid` again (`engine::query::postgres_column_names`). Only in the
/// statement's own select list: a subquery's columns are named by the query around it.
pub(super) fn name_columns_beside_wildcards(select: &mut datafusion::sql::sqlparser::ast::Select) {
    use datafusion::sql::sqlparser::ast::SelectItem;
    let wildcard = select
        .projection
        .iter()
        .any(|item| matches!(item, SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)));
    if !wildcard {
        return;
    }
    for item in &mut select.projection {
        let SelectItem::UnnamedExpr(expr) = item else { continue };
        let name = match expr {
            Expr::Identifier(ident) => ident.clone(),
            Expr::CompoundIdentifier(parts) => match parts.last() {
                Some(last) => last.clone(),
                None => continue,
            },
            _ => continue,
        };
        *item = SelectItem::ExprWithAlias { expr: expr.clone(), alias: same_name_alias(0, &name.value) };
    }
}
