//! GROUP BY / DISTINCT / aggregates → a Project of the group keys and aggregate arguments,
//! then a HashAgg.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{Aggregate, Expr, ExprSchemable};
use datafusion::physical_expr::PhysicalExpr;

use super::{StreamPlanner, nullable_schema, unsupported};
use crate::common::Result;
use crate::plan::{AggCall, AggKind, HashAggNode, NodeKind, PartialAggNode, StreamNode};

pub fn aggregate(planner: &mut StreamPlanner<'_>, aggregate: &Aggregate) -> Result<StreamNode> {
    let input = planner.convert(&aggregate.input)?;
    let input_schema = aggregate.input.schema();
    if aggregate.group_expr.iter().any(|e| matches!(e, Expr::GroupingSet(_))) {
        return Err(unsupported("GROUPING SETS, CUBE and ROLLUP"));
    }
    // The pre-projection: group keys, then one column per aggregate argument.
    let mut exprs: Vec<Arc<dyn PhysicalExpr>> = Vec::new();
    let mut fields: Vec<(String, DataType)> = Vec::new();
    for (i, expr) in aggregate.group_expr.iter().enumerate() {
        exprs.push(planner.physical(expr, input_schema)?);
        fields.push((aggregate.schema.field(i).name().clone(), expr.get_type(input_schema)?));
    }
    let group_len = exprs.len();
    // Over an append-only input nothing is retracted: min and max keep only the current
    // extreme (inline in the group's state), no multiset of values.
    let append_only = input.is_append_only();
    let mut calls = Vec::new();
    for (i, expr) in aggregate.aggr_expr.iter().enumerate() {
        let output_type = aggregate.schema.field(group_len + i).data_type().clone();
        let function = match unalias(expr) {
            Expr::AggregateFunction(function) => function,
            other => return Err(unsupported(format!("the aggregate expression {other}"))),
        };
        let (kind, argument) = classify(function)?;
        let (input_column, input_type) = match argument {
            Some(argument) => {
                exprs.push(planner.physical(argument, input_schema)?);
                let data_type = argument.get_type(input_schema)?;
                fields.push((format!("_arg{i}"), data_type.clone()));
                (Some(exprs.len() - 1), data_type)
            }
            None => (None, DataType::Null),
        };
        let inline_extreme = append_only && matches!(kind, AggKind::Min | AggKind::Max);
        let value_table =
            if kind.keeps_values() && !inline_extreme { Some(planner.ids.next_id()?) } else { None };
        calls.push(AggCall { kind, input: input_column, input_type, output_type, value_table });
    }
    let projected = StreamNode {
        kind: NodeKind::Project { exprs },
        visible: fields.len(),
        schema: nullable_schema(fields),
        stream_key: None,
        parallelism: input.parallelism,
        inputs: vec![input],
    };
    let group_table = planner.ids.next_id()?;
    let output = aggregate.schema.fields().iter().map(|f| (f.name().clone(), f.data_type().clone()));
    let parallelism = if group_len == 0 { 1 } else { planner.parallelism };
    // Two phases where rows cross instances (an exchange, or a gather) and every call's
    // partial states merge: each input instance pre-aggregates its epoch, so a group's
    // rows cross as one partial row per instance and epoch.
    let two_phase = planner.revision >= 1
        && (parallelism > 1 || projected.parallelism > 1)
        && calls.iter().all(AggCall::is_decomposable);
    // A group column with a watermark closes groups (revision 2): the first one.
    let watermarks = projected.watermark_columns();
    let closing_column =
        if planner.revision >= 2 { (0..group_len).find(|c| watermarks.contains(c)) } else { None };
    let (input, calls) = if two_phase {
        partial(projected, PartialAggNode { group_len, calls, closing_column, group_table })
    } else {
        (projected, calls)
    };
    let node =
        HashAggNode { group_len, calls, group_table, merge: two_phase, closing_column, emit_on_close: false };
    Ok(StreamNode {
        kind: NodeKind::HashAgg(node),
        schema: nullable_schema(output),
        visible: aggregate.schema.fields().len(),
        stream_key: Some((0..group_len).collect()),
        parallelism,
        inputs: vec![input],
    })
}

/// A PartialAgg over `input`, and the calls that merge its partials.
fn partial(input: StreamNode, node: PartialAggNode) -> (StreamNode, Vec<AggCall>) {
    let group_len = node.group_len;
    let mut fields: Vec<(String, DataType)> =
        (0..group_len).map(|i| (input.column_name(i), input.schema.field(i).data_type().clone())).collect();
    fields.push(("_rows".into(), DataType::Int64));
    let mut merging = Vec::with_capacity(node.calls.len());
    for call in &node.calls {
        let first = fields.len();
        let name = call.input.map(|i| input.column_name(i)).unwrap_or_default();
        for (j, data_type) in call.partial_types().into_iter().enumerate() {
            fields.push((if j == 0 { name.clone() } else { format!("{name}_{j}") }, data_type));
        }
        let input = if call.kind == AggKind::CountRows { None } else { Some(first) };
        merging.push(AggCall { input, ..call.clone() });
    }
    let node = StreamNode {
        kind: NodeKind::PartialAgg(node),
        visible: fields.len(),
        schema: nullable_schema(fields),
        stream_key: None,
        parallelism: input.parallelism,
        inputs: vec![input],
    };
    (node, merging)
}

fn unalias(expr: &Expr) -> &Expr {
    match expr {
        Expr::Alias(alias) => unalias(&alias.expr),
        other => other,
    }
}

/// The aggregate kind and its argument (None for count(*)).
fn classify(function: &AggregateFunction) -> Result<(AggKind, Option<&Expr>)> {
    let name = function.func.name().to_ascii_lowercase();
    let params = &function.params;
    if params.filter.is_some() {
        return Err(unsupported(format!("the FILTER clause of {name}")));
    }
    let argument = params.args.first();
    let kind = match (name.as_str(), params.distinct) {
        ("count", false) => match argument {
            None => AggKind::CountRows,
            Some(Expr::Literal(value, _)) if !value.is_null() => return Ok((AggKind::CountRows, None)),
            Some(_) => AggKind::Count,
        },
        ("count", true) => AggKind::CountDistinct,
        ("sum", false) => AggKind::Sum,
        ("avg" | "mean", false) => AggKind::Avg,
        ("min", _) => AggKind::Min,
        ("max", _) => AggKind::Max,
        ("bool_and", _) => AggKind::BoolAnd,
        ("bool_or", _) => AggKind::BoolOr,
        ("string_agg", false) => {
            let delimiter = match params.args.get(1) {
                Some(Expr::Literal(
                    ScalarValue::Utf8(Some(d))
                    | ScalarValue::LargeUtf8(Some(d))
                    | ScalarValue::Utf8View(Some(d)),
                    _,
                )) => d.clone(),
                Some(Expr::Literal(value, _)) if value.is_null() => String::new(),
                _ => return Err(unsupported("string_agg with a delimiter that is not a constant")),
            };
            // The result lists values in value order: ORDER BY the value itself matches.
            match params.order_by.as_slice() {
                [] => {}
                [sort] if Some(&sort.expr) == argument && sort.asc => {}
                _ => return Err(unsupported("string_agg ordered by anything but its own value, ascending")),
            }
            AggKind::StringAgg { delimiter }
        }
        (other, true) => return Err(unsupported(format!("{other}(DISTINCT ...)"))),
        (other, false) => return Err(unsupported(format!("the aggregate function {other}"))),
    };
    if !params.order_by.is_empty() && !matches!(kind, AggKind::StringAgg { .. } | AggKind::Min | AggKind::Max)
    {
        return Err(unsupported(format!("ORDER BY inside {name}")));
    }
    Ok((kind, argument))
}
