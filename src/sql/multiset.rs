//! `EXCEPT ALL` and `INTERSECT ALL` with Postgres' multiset semantics.
//!
//! DataFusion plans `a EXCEPT ALL b` as an anti join, which drops every copy of a row
//! that `b` has once (Postgres keeps `m - n` of `m` copies), and `INTERSECT ALL` as a semi
//! join (Postgres keeps `min(m, n)`). Numbering the copies of each row on both sides makes
//! the copies distinct rows, and the DISTINCT operation over them is the ALL one:
//!
//! ```sql
//! SELECT c1 AS "a", c2 AS "b" FROM (
//!   SELECT c1, c2, row_number() OVER (PARTITION BY c1, c2) AS n FROM (a) AS l(c1, c2)
//!   EXCEPT
//!   SELECT c1, c2, row_number() OVER (PARTITION BY c1, c2) AS n FROM (b) AS r(c1, c2)) AS m
//! ```
//!
//! The left side is planned first for its column count and names. Set operations in the
//! statement's own body are rewritten (also nested in other set operations); ones inside
//! subqueries or CTEs are not yet.

use datafusion::execution::context::SessionContext;
use datafusion::sql::sqlparser::ast::{Query, SetExpr, SetOperator, SetQuantifier, Statement};

use crate::common::Result;

pub async fn rewrite(ctx: &SessionContext, statement: &mut Statement) -> Result<()> {
    let Statement::Query(query) = statement else { return Ok(()) };
    if query.with.is_some() || !has_multiset_operation(&query.body) {
        return Ok(());
    }
    let body = query.body.as_ref().clone();
    *query.body = rewrite_set(ctx, body).await?;
    Ok(())
}

fn has_multiset_operation(body: &SetExpr) -> bool {
    match body {
        SetExpr::SetOperation { op, set_quantifier, left, right } => {
            (matches!(op, SetOperator::Except | SetOperator::Intersect)
                && matches!(set_quantifier, SetQuantifier::All))
                || has_multiset_operation(left)
                || has_multiset_operation(right)
        }
        _ => false,
    }
}

type Rewritten<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<SetExpr>> + Send + 'a>>;

fn rewrite_set(ctx: &SessionContext, body: SetExpr) -> Rewritten<'_> {
    Box::pin(async move {
        let SetExpr::SetOperation { op, set_quantifier, left, right } = body else { return Ok(body) };
        let left = rewrite_set(ctx, *left).await?;
        let right = rewrite_set(ctx, *right).await?;
        let multiset = matches!(op, SetOperator::Except | SetOperator::Intersect)
            && matches!(set_quantifier, SetQuantifier::All);
        if !multiset {
            return Ok(SetExpr::SetOperation {
                op,
                set_quantifier,
                left: Box::new(left),
                right: Box::new(right),
            });
        }
        let names = column_names(ctx, &left).await?;
        let columns: Vec<String> = (1..=names.len()).map(|i| format!("__sabot_c{i}")).collect();
        let list = columns.join(", ");
        let numbered = |side: &SetExpr, alias: &str| {
            format!(
                "SELECT {list}, row_number() OVER (PARTITION BY {list}) AS __sabot_copy \
                 FROM ({side}) AS {alias}({list})"
            )
        };
        let outer: Vec<String> = columns
            .iter()
            .zip(&names)
            .map(|(column, name)| format!("{column} AS \"{}\"", name.replace('"', "\"\"")))
            .collect();
        let operator = if matches!(op, SetOperator::Except) { "EXCEPT" } else { "INTERSECT" };
        let sql = format!(
            "SELECT {} FROM ({} {operator} {}) AS __sabot_multiset",
            outer.join(", "),
            numbered(&left, "__sabot_left"),
            numbered(&right, "__sabot_right"),
        );
        let query = super::pg_compat::parse_query(&sql).ok_or_else(|| {
            crate::common::Error::internal(format!("a multiset rewrite does not parse: {sql}"))
        })?;
        Ok(*query.body)
    })
}

/// The output column names of a set operation's left side.
async fn column_names(ctx: &SessionContext, left: &SetExpr) -> Result<Vec<String>> {
    let query = Query {
        body: Box::new(left.clone()),
        ..*super::pg_compat::parse_query("SELECT 1")
            .ok_or_else(|| crate::common::Error::internal("SELECT 1"))?
    };
    let statement =
        datafusion::sql::parser::Statement::Statement(Box::new(Statement::Query(Box::new(query))));
    let plan = ctx.state().statement_to_plan(statement).await?;
    Ok(plan.schema().fields().iter().map(|f| f.name().clone()).collect())
}
