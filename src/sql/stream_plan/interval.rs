//! Interval joins: conditions of a join's residual that bound the time of one side by the
//! other's (`b.ts BETWEEN a.ts AND a.ts + INTERVAL '10' SECOND`), turned into
//! [`IntervalBound`]s that free each side's rows behind the other side's watermark (see
//! `stream::operator::hash_join::interval`).
//!
//! A comparison `small <= large` (or `<`, or the other way round; `BETWEEN` is two) bounds
//! the side of `large` when `small` reads only the other side and is a monotone function
//! of a watermarked column there: the other side's later rows have `small` at least
//! `small(W)`, so a row whose `large` is below it can never match again.

use std::sync::Arc;

use datafusion::common::DFSchema;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Join, JoinType, Operator};
use datafusion::physical_expr::PhysicalExpr;

use super::{StreamPlanner, shown};
use crate::common::Result;
use crate::plan::{HeldBack, IntervalBound, JoinWatermark, Monotone, StreamNode, monotone_of};

/// The interval bounds of `join` over its converted inputs: at most one per side.
pub fn interval_bounds(
    planner: &mut StreamPlanner<'_>,
    join: &Join,
    inputs: [&StreamNode; 2],
) -> Result<Vec<IntervalBound>> {
    let Some(filter) = &join.filter else { return Ok(Vec::new()) };
    if planner.revision < 6 || join.null_aware {
        return Ok(Vec::new());
    }
    let schemas = [join.left.schema().as_ref(), join.right.schema().as_ref()];
    let marks = [inputs[0].watermark_columns(), inputs[1].watermark_columns()];
    let mut bounds: Vec<IntervalBound> = Vec::new();
    for conjunct in split_conjunction(filter) {
        for (small, large, strict) in comparisons(conjunct) {
            let (Some(s), Some(t)) = (side_of(small, schemas), side_of(large, schemas)) else { continue };
            if s == t || bounds.iter().any(|b| b.side == t) {
                continue;
            }
            let other = planner.physical(small, schemas[s])?;
            let Some(Monotone::Column(column)) = monotone_of(&other) else { continue };
            if !marks[s].contains(&column) {
                continue;
            }
            let expiry = planner.physical(large, schemas[t])?;
            let data_type = expiry.data_type(inputs[t].schema.as_ref())?;
            if other.data_type(inputs[s].schema.as_ref())? != data_type {
                continue;
            }
            bounds.push(IntervalBound {
                side: t,
                expiry,
                other_column: column,
                other,
                data_type,
                strict,
                index_table: planner.ids.next_id()?,
                text: format!("{} {} {}", shown(small), if strict { "<" } else { "<=" }, shown(large)),
            });
        }
    }
    Ok(bounds)
}

/// The watermarks an interval join's output carries (plan revision 7): for each side
/// freed by a bound whose expiry is at most `c + k` for a watermarked column `c` of that
/// side, `c`'s own watermark held back to `other(W) - k` (see [`HeldBack`]) — the rows a
/// later row of the other side can still meet. Only on sides every output row shows, or
/// on both sides of a FULL join, marked `padded`.
pub fn held_watermarks(
    bounds: &[IntervalBound],
    inputs: [&StreamNode; 2],
    join_type: JoinType,
) -> Vec<JoinWatermark> {
    let padded = join_type == JoinType::Full;
    let mut watermarks: Vec<JoinWatermark> = bounds
        .iter()
        .filter(|bound| padded || super::join::shown_whole(join_type, bound.side))
        .filter_map(|bound| {
            let (column, lower) = held_back(&bound.expiry, bound.other.clone())?;
            inputs[bound.side].watermark_columns().contains(&column).then(|| JoinWatermark {
                side: bound.side,
                column,
                held_back: Some(HeldBack { other_column: bound.other_column, lower }),
                padded,
            })
        })
        .collect();
    watermarks.sort_by_key(|w| w.side);
    watermarks
}

/// For `expiry` at most `c + k` (`c`, `c ± constant`, `date_trunc` / `date_bin` of such,
/// which round down): `c` and `lower - k`, where `lower` is what `expiry` is compared with.
fn held_back(
    expiry: &Arc<dyn PhysicalExpr>,
    lower: Arc<dyn PhysicalExpr>,
) -> Option<(usize, Arc<dyn PhysicalExpr>)> {
    use datafusion::physical_expr::ScalarFunctionExpr;
    use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
    if let Some(column) = expiry.downcast_ref::<Column>() {
        return Some((column.index(), lower));
    }
    if let Some(binary) = expiry.downcast_ref::<BinaryExpr>() {
        let constant = |e: &Arc<dyn PhysicalExpr>| e.downcast_ref::<Literal>().is_some();
        let shifted = |op, k: &Arc<dyn PhysicalExpr>| -> Arc<dyn PhysicalExpr> {
            Arc::new(BinaryExpr::new(lower.clone(), op, k.clone()))
        };
        let (left, right) = (binary.left(), binary.right());
        return match binary.op() {
            Operator::Plus if constant(right) => held_back(left, shifted(Operator::Minus, right)),
            Operator::Minus if constant(right) => held_back(left, shifted(Operator::Plus, right)),
            Operator::Plus if constant(left) => held_back(right, shifted(Operator::Minus, left)),
            _ => None,
        };
    }
    if let Some(function) = expiry.downcast_ref::<ScalarFunctionExpr>() {
        let args = function.args();
        return match function.name() {
            "date_trunc" | "date_bin" if args.len() >= 2 => held_back(&args[1], lower),
            _ => None,
        };
    }
    None
}

/// The comparisons of one conjunct as `(small, large, strict)`: `small < large` when
/// strict, else `small <= large`.
fn comparisons(expr: &Expr) -> Vec<(&Expr, &Expr, bool)> {
    match expr {
        Expr::Between(Between { expr, negated: false, low, high }) => {
            vec![(low.as_ref(), expr.as_ref(), false), (expr.as_ref(), high.as_ref(), false)]
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::Lt => vec![(left.as_ref(), right.as_ref(), true)],
            Operator::LtEq => vec![(left.as_ref(), right.as_ref(), false)],
            Operator::Gt => vec![(right.as_ref(), left.as_ref(), true)],
            Operator::GtEq => vec![(right.as_ref(), left.as_ref(), false)],
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// The one side whose columns `expr` reads (None: both, or none).
pub(crate) fn side_of(expr: &Expr, schemas: [&DFSchema; 2]) -> Option<usize> {
    let columns = expr.column_refs();
    if columns.is_empty() {
        return None;
    }
    (0..2).find(|&s| columns.iter().all(|c| schemas[s].has_column(c)))
}
