//! Temporal filters: `WHERE ts > now() - INTERVAL '1 hour'` in a view. Rows enter and
//! leave the view as time passes, so `now()` must not be folded into the time the view
//! was created (DataFusion simplifies its own `now()` to a constant while planning).
//! Views are planned with [`StreamingNow`] in its place: a volatile `now()` that nothing
//! folds, which the planner takes out of the filter into a TemporalFilter node.
//!
//! Each condition compares an expression of the row with `now()` shifted by a constant,
//! either way round. It is turned into a bound on the time at which the row shows:
//! `row > now() + c` holds while `now() < row - c` (the row leaves then), `row < now() + c`
//! once `now() > row - c` (the row enters then). The TemporalFilter operator keeps each
//! row under the next time it enters or leaves, and moves the rows that are due at each
//! barrier.

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::DFSchema;
use datafusion::common::tree_node::TreeNode;
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{
    BinaryExpr, Cast, ColumnarValue, Expr, Operator, ScalarFunctionArgs, ScalarUDFImpl, Signature,
    Volatility, binary_expr, cast,
};

use super::{StreamPlanner, filter_node};
use crate::common::{Error, Result, SqlState};
use crate::plan::{NodeKind, StreamNode, TemporalCondition, TemporalFilterNode};

/// `now()` (and `current_timestamp`) as views are planned: volatile, so that the optimizer
/// keeps it; it is evaluated by the TemporalFilter operator, never as an expression.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct StreamingNow {
    signature: Signature,
    aliases: Vec<String>,
}

impl Default for StreamingNow {
    fn default() -> Self {
        StreamingNow {
            signature: Signature::nullary(Volatility::Volatile),
            aliases: vec!["current_timestamp".into()],
        }
    }
}

/// The type of `now()`: a timestamp with time zone.
pub fn now_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("+00:00".into()))
}

impl ScalarUDFImpl for StreamingNow {
    fn name(&self) -> &str {
        "now"
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(now_type())
    }

    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> datafusion::common::Result<ColumnarValue> {
        datafusion::common::internal_err!("now() in a view is evaluated by its temporal filter")
    }
}

/// Whether `expr` calls `now()`.
pub fn calls_now(expr: &Expr) -> bool {
    expr.exists(|e| Ok(matches!(e, Expr::ScalarFunction(f) if f.func.inner().is::<StreamingNow>())))
        .unwrap_or(false)
}

/// The error for `now()` anywhere but a temporal filter's comparison.
pub fn now_outside_filter(expr: &Expr) -> Error {
    Error::new(
        SqlState::FeatureNotSupported,
        format!("now() in {expr} is not supported in a materialized view"),
    )
    .with_hint(
        "a view may use now() only in WHERE, compared with a column or an expression of the row, \
         as in WHERE ts > now() - INTERVAL '1 hour' (a temporal filter)",
    )
}

/// A filter whose predicate calls `now()`: the other conditions as a Filter, the temporal
/// ones above it as a TemporalFilter. None when the predicate does not call `now()`.
pub fn temporal_filter(
    planner: &mut StreamPlanner<'_>,
    filter: &datafusion::logical_expr::Filter,
) -> Result<Option<StreamNode>> {
    if !calls_now(&filter.predicate) {
        return Ok(None);
    }
    let (temporal, plain): (Vec<&Expr>, Vec<&Expr>) =
        split_conjunction(&filter.predicate).into_iter().partition(|e| calls_now(e));
    let schema = filter.input.schema();
    let mut input = planner.convert(&filter.input)?;
    if let Some(rest) = conjunction(plain.into_iter().cloned()) {
        let predicate = planner.physical(&rest, schema)?;
        input = filter_node(input, predicate);
    }
    let conditions =
        temporal.into_iter().map(|c| condition(planner, c, schema)).collect::<Result<Vec<_>>>()?;
    let table = planner.ids.next_id()?;
    Ok(Some(StreamNode {
        kind: NodeKind::TemporalFilter(TemporalFilterNode { conditions, table }),
        schema: input.schema.clone(),
        visible: input.visible,
        stream_key: input.stream_key.clone(),
        // Its rows are kept in one table and moved by time at each barrier: one instance.
        parallelism: 1,
        inputs: vec![input],
    }))
}

/// One comparison with `now()` as a bound on the time the row shows.
fn condition(planner: &StreamPlanner<'_>, expr: &Expr, schema: &DFSchema) -> Result<TemporalCondition> {
    let unsupported = || now_outside_filter(expr);
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = expr else { return Err(unsupported()) };
    // The row's side on the left: `row op now() + c`.
    let (row, op, now_side) = match (calls_now(left), calls_now(right)) {
        (false, true) => (left.as_ref(), *op, right.as_ref()),
        (true, false) => (right.as_ref(), op.swap().ok_or_else(unsupported)?, left.as_ref()),
        _ => return Err(unsupported()),
    };
    let shift = now_shift(now_side).ok_or_else(unsupported)?;
    let text = describe(row, op, shift.as_ref());
    // `row op now() + c` ⇔ `row - c op now()`.
    let time = match shift {
        Some((Operator::Plus, c)) => binary_expr(row.clone(), Operator::Minus, c),
        Some((_, c)) => binary_expr(row.clone(), Operator::Plus, c),
        None => row.clone(),
    };
    // Microseconds since the epoch, UTC.
    let time = cast(time, DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())));
    let (enters, inclusive) = match op {
        Operator::Gt => (false, false),
        Operator::GtEq => (false, true),
        Operator::Lt => (true, false),
        Operator::LtEq => (true, true),
        _ => return Err(unsupported()),
    };
    let physical = planner.physical(&time, schema).map_err(|e| match e.sqlstate() {
        // An expression no view can maintain (PROCTIME(), random()) keeps its own error.
        SqlState::FeatureNotSupported => e,
        _ => Error::new(SqlState::DatatypeMismatch, format!("cannot compare {row} with now(): {e}")),
    })?;
    Ok(TemporalCondition { time: physical, enters, inclusive, text })
}

/// The condition as EXPLAIN shows it: `ts > now() - 1 hours`, without the casts type
/// coercion added.
fn describe(row: &Expr, op: Operator, shift: Option<&(Operator, Expr)>) -> String {
    let mut row = row;
    while let Expr::Cast(Cast { expr, .. }) = row {
        row = expr;
    }
    let mut text = format!("{row} {op} now()");
    if let Some((shift_op, constant)) = shift {
        text.push_str(&format!(" {shift_op} {}", super::shown(constant)));
    }
    text
}

/// `now()`, `now() ± c` or `c + now()` (through casts): the shift, None for `now()` alone.
#[allow(clippy::type_complexity)]
fn now_shift(expr: &Expr) -> Option<Option<(Operator, Expr)>> {
    match expr {
        Expr::ScalarFunction(f) if f.func.inner().is::<StreamingNow>() => Some(None),
        Expr::Cast(Cast { expr, .. }) | Expr::TryCast(datafusion::logical_expr::TryCast { expr, .. }) => {
            now_shift(expr)
        }
        Expr::BinaryExpr(BinaryExpr { left, op: op @ (Operator::Plus | Operator::Minus), right }) => {
            let constant = |e: &Expr| !calls_now(e) && e.column_refs().is_empty();
            match (now_shift(left), constant(right)) {
                (Some(None), true) => Some(Some((*op, right.as_ref().clone()))),
                _ if *op == Operator::Plus && constant(left) && now_shift(right) == Some(None) => {
                    Some(Some((Operator::Plus, left.as_ref().clone())))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// Registers `now()` for planning views.
pub fn register(ctx: &datafusion::execution::context::SessionContext) {
    ctx.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(StreamingNow::default()));
}
