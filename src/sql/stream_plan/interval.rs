//! Interval joins: conditions of a join's residual that bound the time of one side by the
//! other's (`b.ts BETWEEN a.ts AND a.ts + INTERVAL '10' SECOND`), turned into
//! [`IntervalBound`]s that free each side's rows behind the other side's watermark (see
//! `stream::operator::hash_join::interval`).
//!
//! A comparison `small <= large` (or `<`, or the other way round; `BETWEEN` is two) bounds
//! the side of `large` when `small` reads only the other side and is a monotone function
//! of a watermarked column there: the other side's later rows have `small` at least
//! `small(W)`, so a row whose `large` is below it can never match again.

use datafusion::common::DFSchema;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Join, Operator};

use super::{StreamPlanner, shown};
use crate::common::Result;
use crate::plan::{IntervalBound, Monotone, StreamNode, monotone_of};

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
