//! `date ± interval` and `interval + date` as Postgres types them: a `timestamp`
//! (`DATE '2026-01-31' + INTERVAL '1 month 2 hours'` is `2026-02-28 02:00:00`). DataFusion
//! keeps a date (dropping the hours). An expression planner, so the result's type is
//! right from the start; views of plan revision 10 and older are planned without it
//! (their stored columns are dates).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{DFSchema, Result as DfResult};
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{Expr, ExprSchemable, Operator, binary_expr, cast};
use datafusion::sql::sqlparser::ast::BinaryOperator;

/// The planner's name (its `Debug` form), by which older plan revisions leave it out.
pub const PLANNER_NAME: &str = "DateArithmetic";

pub fn planner() -> Arc<dyn ExprPlanner> {
    Arc::new(DateArithmetic)
}

#[derive(Debug)]
struct DateArithmetic;

impl ExprPlanner for DateArithmetic {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> DfResult<PlannerResult<RawBinaryExpr>> {
        let is_date = |e: &Expr| matches!(e.get_type(schema), Ok(DataType::Date32 | DataType::Date64));
        let is_interval = |e: &Expr| matches!(e.get_type(schema), Ok(DataType::Interval(_)));
        let timestamp = |e: Expr| cast(e, DataType::Timestamp(TimeUnit::Microsecond, None));
        let RawBinaryExpr { op, left, right } = expr;
        let planned = match op {
            BinaryOperator::Plus if is_date(&left) && is_interval(&right) => {
                binary_expr(timestamp(left), Operator::Plus, right)
            }
            BinaryOperator::Minus if is_date(&left) && is_interval(&right) => {
                binary_expr(timestamp(left), Operator::Minus, right)
            }
            BinaryOperator::Plus if is_interval(&left) && is_date(&right) => {
                binary_expr(left, Operator::Plus, timestamp(right))
            }
            op => return Ok(PlannerResult::Original(RawBinaryExpr { op, left, right })),
        };
        Ok(PlannerResult::Planned(planned))
    }
}
