//! An `INSERT ... SELECT`'s query, made plannable where DataFusion's INSERT planning
//! fails on forms a SELECT of its own takes:
//!
//! - a `VALUES` list inside the query (`INSERT INTO t SELECT c, 1 FROM (VALUES ('x')) AS
//!   v (c)`): DataFusion types every `VALUES` of an INSERT by the target table's columns,
//!   so one of another width failed ("inconsistent data length across values list"). It is
//!   written as the `UNION ALL` of its rows, which types its columns as `VALUES` does.
//! - two select items DataFusion names alike (`SELECT i, i * 0.5, i`: "projections require
//!   unique expression names"): an INSERT takes its values by position, so each unnamed
//!   item of the query's select list is given a name of its own.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, Ident, Insert, Query, SelectItem, SetExpr, SetOperator, SetQuantifier, TableFactor, VisitMut,
    VisitorMut,
};

/// Prefix of the names given to an INSERT query's select items.
const ITEM: &str = "__sabot_insert_";

pub fn rewrite(insert: &mut Insert) {
    let Some(source) = &mut insert.source else { return };
    if matches!(source.body.as_ref(), SetExpr::Values(_)) {
        return;
    }
    let _ = source.visit(&mut NestedValues);
    let mut body = source.body.as_mut();
    while let SetExpr::SetOperation { left, .. } = body {
        body = left.as_mut();
    }
    if let SetExpr::Select(select) = body {
        for (i, item) in select.projection.iter_mut().enumerate() {
            if let SelectItem::UnnamedExpr(expr) = item {
                *item = SelectItem::ExprWithAlias {
                    expr: expr.clone(),
                    alias: Ident::new(format!("{ITEM}{}", i + 1)),
                };
            }
        }
    }
}

struct NestedValues;

impl VisitorMut for NestedValues {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Derived { subquery, .. } = factor
            && let Some(union) = rows_as_union(subquery)
        {
            *subquery = union;
        }
        ControlFlow::Continue(())
    }
}

/// `VALUES (a, b), (c, d)` as `SELECT a AS column1, b AS column2 UNION ALL SELECT c, d`.
fn rows_as_union(query: &Query) -> Option<Box<Query>> {
    let SetExpr::Values(values) = query.body.as_ref() else { return None };
    if query.order_by.is_some() || query.limit_clause.is_some() || values.rows.is_empty() {
        return None;
    }
    let select = |row: &[Expr], named: bool| -> Option<SetExpr> {
        let items: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, e)| if named { format!("{e} AS column{}", i + 1) } else { e.to_string() })
            .collect();
        Some(*super::pg_compat::parse_query(&format!("SELECT {}", items.join(", ")))?.body)
    };
    let mut body = select(&values.rows[0], true)?;
    for row in &values.rows[1..] {
        body = SetExpr::SetOperation {
            op: SetOperator::Union,
            set_quantifier: SetQuantifier::All,
            left: Box::new(body),
            right: Box::new(select(row, false)?),
        };
    }
    let mut union = query.clone();
    *union.body = body;
    Some(Box::new(union))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        let Ok(datafusion::sql::sqlparser::ast::Statement::Insert(mut insert)) =
            crate::sql::parser::parse_generated(sql)
        else {
            panic!("an insert")
        };
        rewrite(&mut insert);
        datafusion::sql::sqlparser::ast::Statement::Insert(insert).to_string()
    }

    #[test]
    fn nested_values_and_repeated_items() {
        assert_eq!(
            rewritten("INSERT INTO t SELECT c, 1 FROM (VALUES ('x', 2), ('y', 3)) AS v (c, d)"),
            "INSERT INTO t SELECT c AS __sabot_insert_1, 1 AS __sabot_insert_2 FROM \
             (SELECT 'x' AS column1, 2 AS column2 UNION ALL SELECT 'y', 3) AS v (c, d)"
        );
        let kept = "INSERT INTO t VALUES (1, 2)";
        assert_eq!(rewritten(kept), kept);
    }
}
