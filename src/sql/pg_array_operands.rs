//! Arrays against text as Postgres has them (plan revision 13):
//!
//! - [`ArrayLiterals`], an expression planner: a text literal compared with an array
//!   (`tags = '{a,b}'`, `nums @> '{1}'`, `&&`) or concatenated with one (`tags || '{c}'`)
//!   is an array literal of that type, as Postgres reads an untyped literal; DataFusion
//!   found no common type. `a && b` (the arrays overlap) is `array_has_any`.
//! - [`ArrayOperands`], an analyzer rule: `@>` and `<@` of two arrays become
//!   `array_has_all` where one side was a parameter (`tags @> $1`): DataFusion's planner
//!   makes that call only for sides it knows to be lists when it plans.
//! - [`ArrayOutput`], after type coercion: an array cast to text is Postgres' array text
//!   (`{1,2}`), not Arrow's `[1, 2]`.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, Result as DfResult};
use datafusion::logical_expr::expr::Cast;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{BinaryExpr, Expr, ExprSchemable, LogicalPlan, Operator};
use datafusion::optimizer::AnalyzerRule;

use crate::common::types::is_list;

/// The rules' and the planner's names, by which views of older plan revisions leave them out.
pub const OPERANDS_RULE_NAME: &str = "pg_array_operands";
pub const OUTPUT_RULE_NAME: &str = "pg_array_output";
pub const PLANNER_NAME: &str = "ArrayLiterals";

pub fn planner() -> Arc<dyn ExprPlanner> {
    Arc::new(ArrayLiterals)
}

#[derive(Debug)]
pub struct ArrayLiterals;

impl ExprPlanner for ArrayLiterals {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> DfResult<PlannerResult<RawBinaryExpr>> {
        use datafusion::functions_nested::expr_fn::{array_concat, array_has_all, array_has_any};
        use datafusion::sql::sqlparser::ast::BinaryOperator as B;
        let compared = match expr.op {
            B::Eq => Some(Operator::Eq),
            B::NotEq => Some(Operator::NotEq),
            B::Lt => Some(Operator::Lt),
            B::LtEq => Some(Operator::LtEq),
            B::Gt => Some(Operator::Gt),
            B::GtEq => Some(Operator::GtEq),
            B::AtArrow | B::ArrowAt | B::StringConcat | B::PGOverlap => None,
            _ => return Ok(PlannerResult::Original(expr)),
        };
        let list_type = |e: &Expr| e.get_type(schema).ok().filter(is_list);
        let RawBinaryExpr { op, left, right } = expr;
        let (left, right) = match (list_type(&left), list_type(&right)) {
            (Some(t), None) if is_text_literal(&right) => (left, Expr::Cast(Cast::new(Box::new(right), t))),
            (None, Some(t)) if is_text_literal(&left) => (Expr::Cast(Cast::new(Box::new(left), t)), right),
            // `&&` has no DataFusion operator: two arrays overlap where they share an element.
            (Some(_), Some(_)) if op == B::PGOverlap => (left, right),
            _ => return Ok(PlannerResult::Original(RawBinaryExpr { op, left, right })),
        };
        Ok(PlannerResult::Planned(match (op, compared) {
            (_, Some(operator)) => {
                Expr::BinaryExpr(BinaryExpr::new(Box::new(left), operator, Box::new(right)))
            }
            (B::AtArrow, _) => array_has_all(left, right),
            (B::ArrowAt, _) => array_has_all(right, left),
            (B::PGOverlap, _) => array_has_any(left, right),
            _ => array_concat(vec![left, right]),
        }))
    }
}

#[derive(Debug)]
pub struct ArrayOperands;

impl AnalyzerRule for ArrayOperands {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        super::pg_casts::rewrite_expressions(plan, operands)
    }

    fn name(&self) -> &str {
        OPERANDS_RULE_NAME
    }
}

fn is_text_literal(expr: &Expr) -> bool {
    matches!(expr, Expr::Literal(value, _) if matches!(value.data_type(), DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8))
}

fn operands(expr: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    use datafusion::functions_nested::expr_fn::array_has_all;
    let list = |e: &Expr| e.get_type(schema).is_ok_and(|t| is_list(&t));
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::AtArrow, right })
            if list(&left) && list(&right) =>
        {
            Ok(Transformed::yes(array_has_all(*left, *right)))
        }
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::ArrowAt, right })
            if list(&left) && list(&right) =>
        {
            Ok(Transformed::yes(array_has_all(*right, *left)))
        }
        other => Ok(Transformed::no(other)),
    }
}

#[derive(Debug)]
pub struct ArrayOutput;

impl AnalyzerRule for ArrayOutput {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        super::pg_casts::rewrite_expressions(plan, output)
    }

    fn name(&self) -> &str {
        OUTPUT_RULE_NAME
    }
}

fn output(expr: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    let Expr::Cast(Cast { expr: inner, field }) = &expr else { return Ok(Transformed::no(expr)) };
    let to_text = matches!(field.data_type(), DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8);
    if !to_text || !inner.get_type(schema).is_ok_and(|t| is_list(&t)) {
        return Ok(Transformed::no(expr));
    }
    let text = super::pg_casts::call_instead(super::pg_functions::ArrayText::new(), inner).data;
    if field.data_type() == &DataType::Utf8 {
        return Ok(Transformed::yes(text));
    }
    Ok(Transformed::yes(Expr::Cast(Cast::new_from_field(Box::new(text), field.clone()))))
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    use super::*;

    #[tokio::test]
    async fn text_against_arrays_reads_as_an_array() {
        let state = datafusion::execution::SessionStateBuilder::new()
            .with_expr_planners(vec![planner()])
            .with_default_features()
            .with_analyzer_rules({
                let mut rules: Vec<Arc<dyn AnalyzerRule + Send + Sync>> = vec![Arc::new(ArrayOperands)];
                rules.extend(datafusion::optimizer::Analyzer::new().rules);
                rules.push(Arc::new(crate::sql::pg_array_input::PgArrayInput));
                rules.push(Arc::new(ArrayOutput));
                rules
            })
            .build();
        let ctx = SessionContext::new_with_state(state);
        let sql = "SELECT make_array(1, 2) = '{1,2}', make_array(1, 2) @> '{2}', CAST(make_array(1, 2) || '{3}' AS VARCHAR)";
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string();
        assert!(text.contains("| true") && text.contains("{1,2,3}"), "{text}");
    }
}
