//! Window functions (`f(...) OVER (...)`) in a view: one OverWindow node per logical
//! Window (DataFusion puts calls with different PARTITION BY / ORDER BY in separate,
//! stacked Window nodes).

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::expr::{NullTreatment, WindowFunction};
use datafusion::logical_expr::{Expr, Window, WindowFrameBound, WindowFrameUnits};

use super::{StreamPlanner, fields_of, nullable_schema, unsupported};
use crate::common::{Error, Result, SqlState};
use crate::plan::{Frame, FrameBound, NodeKind, OverWindowNode, StreamNode, WindowCall, WindowKind};

pub fn over_window(planner: &mut StreamPlanner<'_>, window: &Window) -> Result<StreamNode> {
    let functions: Vec<&WindowFunction> = window
        .window_expr
        .iter()
        .map(|expr| match unalias(expr) {
            Expr::WindowFunction(function) => Ok(function.as_ref()),
            other => Err(Error::internal(format!("window expression {other} is not a window function"))),
        })
        .collect::<Result<_>>()?;
    let Some(first) = functions.first() else { return Err(Error::internal("a window without functions")) };
    let params = &first.params;
    if functions
        .iter()
        .any(|f| f.params.partition_by != params.partition_by || f.params.order_by != params.order_by)
    {
        return Err(unsupported(
            "window functions of one window node with different PARTITION BY or ORDER BY",
        ));
    }
    let input = planner.convert(&window.input)?;
    let input_schema = window.input.schema();
    let (input, partition_by) = planner.columns_for(input, &params.partition_by, input_schema)?;
    let (mut input, order_by) = planner.sort_columns(input, &params.order_by, input_schema)?;
    let Some(key) = input.stream_key.clone() else {
        return Err(unsupported("a window function over an input without a key"));
    };
    let order_type = (order_by.len() == 1).then(|| input.schema.field(order_by[0].0).data_type().clone());
    let first_output = input_schema.fields().len();
    let mut calls = Vec::with_capacity(functions.len());
    for (i, function) in functions.iter().enumerate() {
        let output_type = window.schema.field(first_output + i).data_type().clone();
        let (node, call) =
            window_call(planner, input, function, input_schema, output_type, order_type.as_ref())?;
        input = node;
        calls.push(call);
    }
    let sessions = calls.iter().any(|c| matches!(c.kind, WindowKind::Session { .. }));
    if sessions && (order_by.len() != 1 || order_by[0].1.descending) {
        return Err(Error::internal("session bounds need one ascending ORDER BY column"));
    }
    // Output: the input's visible columns, one per call, the input's hidden columns.
    let fields = fields_of(&input.schema);
    let visible = input.visible;
    let outputs = (0..calls.len()).map(|i| {
        let field = window.schema.field(first_output + i);
        (field.name().clone(), field.data_type().clone())
    });
    let schema = nullable_schema(
        fields[..visible].iter().cloned().chain(outputs).chain(fields[visible..].iter().cloned()),
    );
    let added = calls.len();
    let stream_key = key.iter().map(|&k| if k < visible { k } else { k + added }).collect();
    let table = planner.ids.next_id()?;
    let parallelism = if partition_by.is_empty() { 1 } else { planner.parallelism };
    Ok(StreamNode {
        kind: NodeKind::OverWindow(OverWindowNode {
            partition_by,
            order_by,
            calls,
            table,
            emit_on_close: false,
        }),
        schema,
        visible: visible + added,
        stream_key: Some(stream_key),
        parallelism,
        inputs: vec![input],
    })
}

fn unalias(expr: &Expr) -> &Expr {
    match expr {
        Expr::Alias(alias) => unalias(&alias.expr),
        other => other,
    }
}

/// One call: its kind, argument column (computed into a hidden column when it is an
/// expression), frame and EXPLAIN text.
fn window_call(
    planner: &mut StreamPlanner<'_>,
    input: StreamNode,
    function: &WindowFunction,
    schema: &datafusion::common::DFSchema,
    output_type: DataType,
    order_type: Option<&DataType>,
) -> Result<(StreamNode, WindowCall)> {
    let name = function.fun.name().to_ascii_lowercase();
    let params = &function.params;
    if params.distinct {
        return Err(unsupported(format!("{name}(DISTINCT ...) OVER (...)")));
    }
    if params.filter.is_some() {
        return Err(unsupported(format!("{name}(...) FILTER (WHERE ...) OVER (...)")));
    }
    let ignore_nulls = params.null_treatment == Some(NullTreatment::IgnoreNulls);
    let args = &params.args;
    let literal = |i: usize| -> Option<ScalarValue> {
        match args.get(i).map(unalias) {
            Some(Expr::Literal(value, _)) => Some(value.clone()),
            Some(Expr::Cast(cast)) => match cast.expr.as_ref() {
                Expr::Literal(value, _) => value.cast_to(cast.field.data_type()).ok(),
                _ => None,
            },
            _ => None,
        }
    };
    let kind = match name.as_str() {
        crate::sql::session_window::SESSION_START | crate::sql::session_window::SESSION_END => {
            match literal(1) {
                Some(ScalarValue::Int64(Some(gap))) if gap > 0 => {
                    WindowKind::Session { end: name == crate::sql::session_window::SESSION_END, gap }
                }
                _ => return Err(Error::internal(format!("{name} without a positive constant gap"))),
            }
        }
        "row_number" => WindowKind::RowNumber,
        "rank" => WindowKind::Rank,
        "dense_rank" => WindowKind::DenseRank,
        "lag" | "lead" => {
            let offset = match args.len() {
                0 | 1 => 1,
                _ => match literal(1).and_then(|v| v.cast_to(&DataType::Int64).ok()) {
                    Some(ScalarValue::Int64(Some(n))) => n,
                    _ => return Err(unsupported(format!("{name} with an offset that is not a constant"))),
                },
            };
            let default = match args.len() {
                0..=2 => ScalarValue::try_from(&output_type)?,
                _ => match literal(2) {
                    Some(value) => value.cast_to(&output_type)?,
                    None => return Err(unsupported(format!("{name} with a default that is not a constant"))),
                },
            };
            let offset = if name == "lag" { offset.checked_neg().unwrap_or(i64::MAX) } else { offset };
            WindowKind::Shift { offset, default }
        }
        "first_value" => WindowKind::FirstValue,
        "last_value" => WindowKind::LastValue,
        "count" if literal(0).is_some_and(|v| !v.is_null()) => WindowKind::CountRows,
        "count" => WindowKind::Count,
        "sum" => WindowKind::Sum,
        "avg" | "mean" => WindowKind::Avg,
        "min" => WindowKind::Min,
        "max" => WindowKind::Max,
        other => {
            return Err(unsupported(format!("the window function {other}"))
                .with_hint("supported: row_number, rank, dense_rank, lag, lead, first_value, last_value, count, sum, avg, min, max"));
        }
    };
    if ignore_nulls && !matches!(kind, WindowKind::FirstValue | WindowKind::LastValue) {
        return Err(unsupported(format!("IGNORE NULLS on {name}")));
    }
    let needs_arg = !matches!(
        kind,
        WindowKind::RowNumber
            | WindowKind::Rank
            | WindowKind::DenseRank
            | WindowKind::CountRows
            | WindowKind::Session { .. }
    );
    let (input, column) = match (needs_arg, args.first()) {
        (true, Some(arg)) => {
            let (input, columns) = planner.columns_for(input, std::slice::from_ref(arg), schema)?;
            (input, Some(columns[0]))
        }
        (true, None) => return Err(Error::internal(format!("{name} without an argument"))),
        (false, _) => (input, None),
    };
    if let (WindowKind::Sum | WindowKind::Avg, Some(c)) = (&kind, column) {
        let t = input.schema.field(c).data_type();
        if !(t.is_numeric()) {
            return Err(unsupported(format!("{name} over {t}")));
        }
    }
    let frame = if kind.uses_frame() { frame(&params.window_frame, order_type)? } else { Frame::whole() };
    // An argument DataFusion widened (`sum(px)` over an int is over `CAST(px AS Int64)`)
    // shows as its column.
    let arg_name = match args.first().map(unalias) {
        Some(Expr::Cast(cast)) => match cast.expr.as_ref() {
            Expr::Column(c) => c.name.clone(),
            _ => column.map(|c| input.column_name(c)).unwrap_or_default(),
        },
        _ => column.map(|c| input.column_name(c)).unwrap_or_default(),
    };
    let mut text = match &kind {
        WindowKind::CountRows => "count(*)".to_string(),
        WindowKind::Shift { offset, .. } => format!("{name}({arg_name}, {})", offset.unsigned_abs()),
        WindowKind::Session { end, gap } => {
            let time = match args.first().map(unalias) {
                Some(Expr::Column(c)) => c.name.clone(),
                other => other.map(|e| e.to_string()).unwrap_or_default(),
            };
            let unit_nanos = match order_type {
                Some(DataType::Timestamp(unit, _)) => crate::common::window::unit_nanos(unit),
                _ => 1,
            };
            let gap = crate::common::window::describe_duration(*gap, unit_nanos);
            format!("session_{}({time}, gap {gap})", if *end { "end" } else { "start" })
        }
        _ => format!("{name}({arg_name})"),
    };
    if ignore_nulls {
        text.push_str(" IGNORE NULLS");
    }
    if kind.uses_frame() {
        text.push(' ');
        text.push_str(&frame.describe());
    }
    Ok((input, WindowCall { kind, input: column, output_type, frame, ignore_nulls, text }))
}

impl Frame {
    fn whole() -> Frame {
        Frame { rows: true, start: FrameBound::Unbounded, end: FrameBound::Unbounded }
    }
}

fn frame(frame: &datafusion::logical_expr::WindowFrame, order_type: Option<&DataType>) -> Result<Frame> {
    let rows = match frame.units {
        WindowFrameUnits::Rows => true,
        WindowFrameUnits::Range => false,
        WindowFrameUnits::Groups => return Err(unsupported("a GROUPS window frame")),
    };
    let bound = |bound: &WindowFrameBound| -> Result<FrameBound> {
        let (value, sign) = match bound {
            WindowFrameBound::CurrentRow => return Ok(FrameBound::Offset(0)),
            WindowFrameBound::Preceding(v) => (v, -1),
            WindowFrameBound::Following(v) => (v, 1),
        };
        if value.is_null() {
            return Ok(FrameBound::Unbounded);
        }
        let n = if rows {
            match value.cast_to(&DataType::Int64)? {
                ScalarValue::Int64(Some(n)) if n >= 0 => n,
                _ => return Err(frame_error(format!("frame offset {value} must be a non-negative integer"))),
            }
        } else {
            range_offset(value, order_type)?
        };
        Ok(FrameBound::Offset(sign * n))
    };
    let (start, end) = (bound(&frame.start_bound)?, bound(&frame.end_bound)?);
    // A start of UNBOUNDED FOLLOWING or an end of UNBOUNDED PRECEDING is refused by the
    // SQL front end already.
    Ok(Frame { rows, start, end })
}

fn frame_error(message: String) -> Error {
    Error::new(SqlState::InvalidParameterValue, message)
}

/// A RANGE offset in the units of the (single) ORDER BY column: integers as they are,
/// dates in days, timestamps in their unit (an interval of months is not a fixed length).
fn range_offset(value: &ScalarValue, order_type: Option<&DataType>) -> Result<i64> {
    let Some(order_type) = order_type else {
        return Err(frame_error("a RANGE frame with an offset needs exactly one ORDER BY column".into()));
    };
    if let ScalarValue::IntervalMonthDayNano(Some(v)) = value
        && v.months != 0
    {
        return Err(unsupported("a RANGE frame offset in months")
            .with_hint("a month is not a fixed length: give the offset in days (INTERVAL '30' DAY)"));
    }
    let nanos: Option<i128> = match value {
        ScalarValue::IntervalMonthDayNano(Some(v)) => {
            Some(v.days as i128 * 86_400_000_000_000 + v.nanoseconds as i128)
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            Some(v.days as i128 * 86_400_000_000_000 + v.milliseconds as i128 * 1_000_000)
        }
        ScalarValue::DurationSecond(Some(v)) => Some(*v as i128 * 1_000_000_000),
        ScalarValue::DurationMillisecond(Some(v)) => Some(*v as i128 * 1_000_000),
        ScalarValue::DurationMicrosecond(Some(v)) => Some(*v as i128 * 1_000),
        ScalarValue::DurationNanosecond(Some(v)) => Some(*v as i128),
        _ => None,
    };
    let n: i128 = match (order_type, nanos) {
        (DataType::Timestamp(unit, _), Some(nanos)) => {
            nanos / i128::from(crate::common::window::unit_nanos(unit))
        }
        (DataType::Date32, Some(nanos)) if nanos % 86_400_000_000_000 == 0 => nanos / 86_400_000_000_000,
        (t, None) if t.is_integer() || *t == DataType::Date32 => match value.cast_to(&DataType::Int64) {
            Ok(ScalarValue::Int64(Some(n))) => n as i128,
            _ => return Err(frame_error(format!("RANGE offset {value} is not an integer"))),
        },
        (t, _) => {
            return Err(unsupported(format!(
                "a RANGE frame offset {value} over an ORDER BY column of type {t}"
            ))
            .with_hint("RANGE offsets work over integer, date and timestamp columns; ROWS frames over any"));
        }
    };
    if n < 0 {
        return Err(frame_error(format!("RANGE offset {value} must not be negative")));
    }
    i64::try_from(n).map_err(|_| frame_error(format!("RANGE offset {value} is too large")))
}

/// EMIT ON WINDOW CLOSE on an over window: its first ORDER BY column (ascending, NULLs
/// last) must carry a watermark, and every call's frame must end at a bounded distance
/// after the current row, at it or after (a frame to UNBOUNDED FOLLOWING is never final;
/// one ending before the current row is not supported yet).
pub fn emit_on_window_close(node: &mut StreamNode) -> Result<()> {
    let watermarked = node.inputs[0].watermark_columns();
    let NodeKind::OverWindow(over) = &mut node.kind else { unreachable!("called on an OverWindow") };
    let hint = "order the window by a column that carries a watermark (ascending), such as the source's WATERMARK FOR column";
    let Some(&(column, options)) = over.order_by.first() else {
        return Err(unsupported_eowc("a window without ORDER BY").with_hint(hint));
    };
    if !watermarked.contains(&column) {
        return Err(
            unsupported_eowc("a window whose first ORDER BY column carries no watermark").with_hint(hint)
        );
    }
    if options.descending || options.nulls_first {
        return Err(unsupported_eowc("a window ordered descending or NULLS FIRST").with_hint(hint));
    }
    for call in &over.calls {
        if !call.kind.uses_frame() {
            continue;
        }
        match call.frame.end {
            FrameBound::Unbounded => {
                return Err(unsupported_eowc(format!(
                    "{}: a frame to UNBOUNDED FOLLOWING never closes",
                    call.text
                )));
            }
            FrameBound::Offset(k) if k < 0 => {
                return Err(unsupported_eowc(format!(
                    "{}: a frame that ends before the current row",
                    call.text
                )));
            }
            _ => {}
        }
    }
    over.emit_on_close = true;
    Ok(())
}

fn unsupported_eowc(what: impl std::fmt::Display) -> Error {
    Error::new(SqlState::FeatureNotSupported, format!("EMIT ON WINDOW CLOSE is not supported on {what}"))
}
