//! Per-group top-N: `ROW_NUMBER() OVER (PARTITION BY ... ORDER BY ...)` filtered by
//! `<= N` (or `< N`, or `= 1`) above it. The filter stays in the plan (it always holds);
//! the window becomes a TopN that outputs the row number.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{BinaryExpr, Expr, Filter, LogicalPlan, Operator as BinaryOp};

use super::{StreamPlanner, fields_of, nullable_schema, unsupported};
use crate::common::Result;
use crate::plan::{NodeKind, StreamNode, TopNNode};

/// The plan for `filter` when it bounds a ROW_NUMBER; None for any other filter.
pub fn group_top_n(planner: &mut StreamPlanner<'_>, filter: &Filter) -> Result<Option<StreamNode>> {
    let Some((column, limit)) = row_number_bound(&filter.predicate) else { return Ok(None) };
    let Some(input) = bounded(planner, &filter.input, &column, limit)? else { return Ok(None) };
    let predicate = planner.physical(&filter.predicate, filter.input.schema())?;
    Ok(Some(super::filter_node(input, predicate)))
}

/// `rn <= N`, `rn < N`, `N >= rn`, `rn = 1`: the column name and N.
fn row_number_bound(predicate: &Expr) -> Option<(String, usize)> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = predicate else { return None };
    let literal = |e: &Expr| match e {
        Expr::Literal(value, _) => value.cast_to(&DataType::Int64).ok().and_then(|v| match v {
            ScalarValue::Int64(Some(n)) if n >= 0 => Some(n as usize),
            _ => None,
        }),
        Expr::Cast(cast) => match cast.expr.as_ref() {
            Expr::Literal(value, _) => value.cast_to(&DataType::Int64).ok().and_then(|v| match v {
                ScalarValue::Int64(Some(n)) if n >= 0 => Some(n as usize),
                _ => None,
            }),
            _ => None,
        },
        _ => None,
    };
    let column = |e: &Expr| match e {
        Expr::Column(c) => Some(c.name.clone()),
        Expr::Cast(cast) => match cast.expr.as_ref() {
            Expr::Column(c) => Some(c.name.clone()),
            _ => None,
        },
        _ => None,
    };
    match (column(left), op, literal(right)) {
        (Some(c), BinaryOp::LtEq, Some(n)) => return Some((c, n)),
        (Some(c), BinaryOp::Lt, Some(n)) => return Some((c, n.saturating_sub(1))),
        (Some(c), BinaryOp::Eq, Some(1)) => return Some((c, 1)),
        _ => {}
    }
    match (literal(left), op, column(right)) {
        (Some(n), BinaryOp::GtEq, Some(c)) => Some((c, n)),
        (Some(n), BinaryOp::Gt, Some(c)) => Some((c, n.saturating_sub(1))),
        _ => None,
    }
}

/// `plan` with the ROW_NUMBER named `column` bounded by `limit`, or None when `column` is
/// not a ROW_NUMBER reached through projections and aliases.
fn bounded(
    planner: &mut StreamPlanner<'_>,
    plan: &LogicalPlan,
    column: &str,
    limit: usize,
) -> Result<Option<StreamNode>> {
    match plan {
        LogicalPlan::SubqueryAlias(alias) => bounded(planner, &alias.input, column, limit),
        LogicalPlan::Projection(projection) => {
            let Some(index) = projection.schema.fields().iter().position(|f| f.name() == column) else {
                return Ok(None);
            };
            let inner = match &projection.expr[index] {
                Expr::Column(c) => c.name.clone(),
                Expr::Alias(alias) => match alias.expr.as_ref() {
                    Expr::Column(c) => c.name.clone(),
                    _ => return Ok(None),
                },
                _ => return Ok(None),
            };
            let Some(input) = bounded(planner, &projection.input, &inner, limit)? else { return Ok(None) };
            Ok(Some(planner.project(
                input,
                &projection.expr,
                projection.input.schema(),
                projection.schema.as_ref(),
            )?))
        }
        LogicalPlan::Window(window) => {
            let [Expr::WindowFunction(function)] = window.window_expr.as_slice() else { return Ok(None) };
            let output = window.schema.field(window.schema.fields().len() - 1);
            if output.name() != column || !function.fun.name().eq_ignore_ascii_case("row_number") {
                return Ok(None);
            }
            let params = &function.params;
            if params.order_by.is_empty() {
                return Err(unsupported("ROW_NUMBER() without ORDER BY"));
            }
            let input = planner.convert(&window.input)?;
            let input_schema = window.input.schema();
            let (input, mut group_by) = planner.columns_for(input, &params.partition_by, input_schema)?;
            // A partition column with a watermark closes groups (revision 5): it leads the
            // stored key, so closed groups are one key range.
            let watermarks = input.watermark_columns();
            let closing =
                group_by.iter().position(|c| watermarks.contains(c)).filter(|_| planner.revision >= 5);
            if let Some(at) = closing {
                group_by[..=at].rotate_right(1);
            }
            let (input, order_by) = planner.sort_columns(input, &params.order_by, input_schema)?;
            let Some(key) = input.stream_key.clone() else {
                return Err(unsupported("ROW_NUMBER() over an input without a key"));
            };
            // Output: the input's visible columns, the row number, the input's hidden columns.
            let fields = fields_of(&input.schema);
            let visible = input.visible;
            let schema = nullable_schema(
                fields[..visible]
                    .iter()
                    .cloned()
                    .chain([(output.name().clone(), output.data_type().clone())])
                    .chain(fields[visible..].iter().cloned()),
            );
            let stream_key = key.iter().map(|&k| if k < visible { k } else { k + 1 }).collect();
            let table = planner.ids.next_id()?;
            let parallelism = if group_by.is_empty() { 1 } else { planner.parallelism };
            Ok(Some(StreamNode {
                kind: NodeKind::TopN(TopNNode {
                    group_by,
                    order_by,
                    offset: 0,
                    limit,
                    with_rank: true,
                    table,
                    closes: closing.is_some(),
                }),
                schema,
                visible: visible + 1,
                stream_key: Some(stream_key),
                parallelism,
                inputs: vec![input],
            }))
        }
        _ => Ok(None),
    }
}
