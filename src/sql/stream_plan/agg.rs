//! GROUP BY / DISTINCT / aggregates → a Project of the group keys and aggregate arguments,
//! then a HashAgg.

use std::sync::Arc;

use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::expr::{AggregateFunction, NullTreatment, Sort};
use datafusion::logical_expr::{Aggregate, Expr, ExprSchemable, GroupingSet};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Literal;

use super::{StreamPlanner, nullable_schema, unsupported};
use crate::common::{Error, Result, SqlState};
use crate::plan::{AggCall, AggKind, BitOp, HashAggNode, NodeKind, PartialAggNode, Spread, StreamNode};

pub fn aggregate(planner: &mut StreamPlanner<'_>, aggregate: &Aggregate) -> Result<StreamNode> {
    let input = planner.convert(&aggregate.input)?;
    let input_schema = aggregate.input.schema();
    let sets = grouping_sets(&aggregate.group_expr)?;
    let group_exprs: Vec<&Expr> = match &sets {
        Some(sets) => sets.exprs.clone(),
        None => aggregate.group_expr.iter().collect(),
    };
    // The pre-projection: group keys (and with grouping sets the grouping id), then one
    // column per aggregate argument.
    let mut exprs: Vec<Arc<dyn PhysicalExpr>> = Vec::new();
    let mut fields: Vec<(String, DataType)> = Vec::new();
    for (i, expr) in group_exprs.iter().enumerate() {
        exprs.push(planner.physical(expr, input_schema)?);
        fields.push((aggregate.schema.field(i).name().clone(), expr.get_type(input_schema)?));
    }
    if sets.is_some() {
        let id = aggregate.schema.field(exprs.len());
        exprs.push(Arc::new(Literal::new(ScalarValue::try_from(id.data_type())?)));
        fields.push((id.name().clone(), id.data_type().clone()));
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
        let classified = classify(function)?;
        let mut column = |expr: &Expr, name: String| -> Result<usize> {
            exprs.push(planner.physical(expr, input_schema)?);
            fields.push((name, expr.get_type(input_schema)?));
            Ok(exprs.len() - 1)
        };
        let (input_column, input_type) = match classified.argument {
            Some(argument) => (Some(column(argument, format!("_arg{i}"))?), argument.get_type(input_schema)?),
            None => (None, DataType::Null),
        };
        let mut order_by = Vec::new();
        for (j, sort) in classified.order_by.iter().enumerate() {
            let options = SortOptions { descending: !sort.asc, nulls_first: sort.nulls_first };
            let key = match (Some(&sort.expr) == classified.argument, input_column) {
                (true, Some(input)) => input,
                _ => column(&sort.expr, format!("_arg{i}_key{j}"))?,
            };
            order_by.push((key, options));
        }
        let filter = classified.filter.map(|f| column(f, format!("_arg{i}_filter"))).transpose()?;
        // count(*) FILTER (WHERE f) counts the rows where the filter column is true.
        let (kind, input_column, input_type) = match (classified.kind, filter) {
            (AggKind::CountRows, Some(f)) => (AggKind::Count, Some(f), DataType::Boolean),
            (kind, _) => (kind, input_column, input_type),
        };
        let inline_extreme = append_only && matches!(kind, AggKind::Min | AggKind::Max);
        let mut call = AggCall {
            kind,
            input: input_column,
            input_type,
            output_type,
            value_table: None,
            order_by,
            filter,
            distinct: classified.distinct,
        };
        if call.keeps_values() && !inline_extreme {
            call.value_table = Some(planner.ids.next_id()?);
        }
        calls.push(call);
    }
    let kind = match &sets {
        Some(sets) => NodeKind::Expand { sets: sets.projections(&exprs, &fields)? },
        None => NodeKind::Project { exprs },
    };
    let projected = StreamNode {
        kind,
        visible: fields.len(),
        schema: nullable_schema(fields),
        stream_key: None,
        parallelism: input.parallelism,
        inputs: vec![input],
    };
    let group_table = planner.ids.next_id()?;
    let output = aggregate.schema.fields().iter().map(|f| (f.name().clone(), f.data_type().clone()));
    // The grand total (no GROUP BY, or the empty grouping set) shows a row even over no rows:
    // one instance keeps it.
    let grand_total = group_len == 0 || sets.as_ref().is_some_and(|s| s.empty_set_id().is_some());
    let parallelism = if grand_total { 1 } else { planner.parallelism };
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
    let empty_set_id = sets.as_ref().and_then(GroupingSets::empty_set_id);
    let node = HashAggNode {
        group_len,
        calls,
        group_table,
        merge: two_phase,
        closing_column,
        emit_on_close: false,
        empty_set_id,
    };
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
        // The partials applied the filter; the merging call reads only its partial columns.
        merging.push(AggCall { input, filter: None, order_by: Vec::new(), distinct: false, ..call.clone() });
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

/// GROUPING SETS, ROLLUP or CUBE: the distinct group expressions, and per grouping set
/// which of them it leaves NULL and its number among equal sets.
struct GroupingSets<'a> {
    exprs: Vec<&'a Expr>,
    sets: Vec<(Vec<bool>, usize)>,
}

fn grouping_sets(group_expr: &[Expr]) -> Result<Option<GroupingSets<'_>>> {
    let [Expr::GroupingSet(set)] = group_expr else {
        if group_expr.iter().any(|e| matches!(e, Expr::GroupingSet(_))) {
            return Err(unsupported("a grouping set mixed with other group expressions"));
        }
        return Ok(None);
    };
    let exprs = set.distinct_expr();
    if exprs.len() > 32 {
        return Err(unsupported("grouping sets over more than 32 expressions"));
    }
    let members: Vec<Vec<&Expr>> = match set {
        GroupingSet::Rollup(list) => (0..=list.len()).map(|i| list[..i].iter().collect()).collect(),
        GroupingSet::Cube(list) => (0..1usize << list.len())
            .map(|bits| list.iter().enumerate().filter(|(j, _)| bits >> j & 1 == 1).map(|(_, e)| e).collect())
            .collect(),
        GroupingSet::GroupingSets(sets) => sets.iter().map(|set| set.iter().collect()).collect(),
    };
    let mut sets: Vec<(Vec<bool>, usize)> = Vec::with_capacity(members.len());
    for set in members {
        let nulls: Vec<bool> = exprs.iter().map(|e| !set.contains(e)).collect();
        let ordinal = sets.iter().filter(|(other, _)| *other == nulls).count();
        sets.push((nulls, ordinal));
    }
    Ok(Some(GroupingSets { exprs, sets }))
}

impl GroupingSets<'_> {
    /// The grouping id of the empty set `()` (its first occurrence), if it is one of the sets.
    fn empty_set_id(&self) -> Option<u64> {
        let n = self.exprs.len();
        self.sets.iter().any(|(nulls, _)| nulls.iter().all(|null| *null)).then(|| (1u64 << n) - 1)
    }

    /// One projection per set from the pre-projection `exprs` (group columns, the grouping
    /// id, arguments): NULL for the columns the set leaves out, and the set's id, as
    /// DataFusion numbers it (a bit per group expression, the last one lowest, set when
    /// NULL; equal sets told apart by their number above those bits).
    fn projections(
        &self,
        exprs: &[Arc<dyn PhysicalExpr>],
        fields: &[(String, DataType)],
    ) -> Result<Vec<Vec<Arc<dyn PhysicalExpr>>>> {
        let n = self.exprs.len();
        let id_type = &fields[n].1;
        let mut projections = Vec::with_capacity(self.sets.len());
        for (nulls, ordinal) in &self.sets {
            let mut set = exprs.to_vec();
            let mut id = (*ordinal as u64) << n;
            for (j, null) in nulls.iter().enumerate() {
                if *null {
                    set[j] = Arc::new(Literal::new(ScalarValue::try_from(&fields[j].1)?));
                    id |= 1 << (n - 1 - j);
                }
            }
            set[n] = Arc::new(Literal::new(ScalarValue::UInt64(Some(id)).cast_to(id_type)?));
            projections.push(set);
        }
        Ok(projections)
    }
}

fn unalias(expr: &Expr) -> &Expr {
    match expr {
        Expr::Alias(alias) => unalias(&alias.expr),
        other => other,
    }
}

/// What an aggregate call computes: its kind, its argument (None for count(*)), the keys
/// it orders its values by and its FILTER condition.
struct Classified<'a> {
    kind: AggKind,
    argument: Option<&'a Expr>,
    order_by: &'a [Sort],
    filter: Option<&'a Expr>,
    /// Each value counts once (for the kinds where that changes the result).
    distinct: bool,
}

fn classify(function: &AggregateFunction) -> Result<Classified<'_>> {
    let name = function.func.name().to_ascii_lowercase();
    let params = &function.params;
    let argument = params.args.first();
    let literal_argument = || match argument {
        Some(Expr::Literal(value, _)) => !value.is_null(),
        _ => false,
    };
    let kind = match (name.as_str(), params.distinct) {
        ("count", false) if argument.is_none() || literal_argument() => AggKind::CountRows,
        ("count", false) => AggKind::Count,
        ("count", true) => AggKind::CountDistinct,
        ("sum", _) => AggKind::Sum,
        ("avg" | "mean", _) => AggKind::Avg,
        ("min", _) => AggKind::Min,
        ("max", _) => AggKind::Max,
        ("bool_and", _) => AggKind::BoolAnd,
        ("bool_or", _) => AggKind::BoolOr,
        ("bit_and", _) => AggKind::Bits(BitOp::And),
        ("bit_or", _) => AggKind::Bits(BitOp::Or),
        ("bit_xor", false) => AggKind::Bits(BitOp::Xor),
        ("var" | "var_samp" | "variance", false) => AggKind::Spread(Spread { sample: true, root: false }),
        ("var_pop", false) => AggKind::Spread(Spread { sample: false, root: false }),
        ("stddev" | "stddev_samp", false) => AggKind::Spread(Spread { sample: true, root: true }),
        ("stddev_pop", false) => AggKind::Spread(Spread { sample: false, root: true }),
        ("string_agg", _) => AggKind::StringAgg { delimiter: delimiter(params.args.get(1))? },
        ("array_agg", _) => AggKind::ArrayAgg,
        ("first_value", false) => AggKind::FirstValue,
        ("last_value", false) => AggKind::LastValue,
        ("percentile_cont", false) => AggKind::PercentileCont(fraction(&name, params.args.get(1))?),
        ("percentile_disc", false) => AggKind::PercentileDisc(fraction(&name, params.args.get(1))?),
        ("mode", false) => AggKind::Mode,
        (other, true) => return Err(unsupported(format!("{other}(DISTINCT ...)"))),
        (other, false) => return Err(unsupported(format!("the aggregate function {other}"))),
    };
    if params.null_treatment == Some(NullTreatment::IgnoreNulls) {
        return Err(unsupported(format!("{name} IGNORE NULLS")));
    }
    let order_by: &[Sort] = match &kind {
        // The order does not change these results.
        AggKind::Min | AggKind::Max | AggKind::CountDistinct => &[],
        // Ordered by the value itself, ascending: the value set's own order (as string_agg
        // views were planned before ORDER BY keys were kept).
        AggKind::StringAgg { .. } if matches!(params.order_by.as_slice(), [sort] if Some(&sort.expr) == argument && sort.asc) => {
            &[]
        }
        AggKind::StringAgg { .. } | AggKind::ArrayAgg | AggKind::FirstValue | AggKind::LastValue => {
            &params.order_by
        }
        AggKind::PercentileCont(_) | AggKind::PercentileDisc(_) | AggKind::Mode => {
            match params.order_by.as_slice() {
                // The value as ordered (the argument may be a cast of it).
                [sort] => {
                    return Ok(Classified {
                        kind,
                        argument: Some(&sort.expr),
                        order_by: &params.order_by,
                        filter: params.filter.as_deref(),
                        distinct: false,
                    });
                }
                _ => return Err(unsupported(format!("{name} without WITHIN GROUP (ORDER BY its value)"))),
            }
        }
        _ if params.order_by.is_empty() => &[],
        _ => return Err(unsupported(format!("ORDER BY inside {name}"))),
    };
    let argument = if kind == AggKind::CountRows { None } else { argument };
    let distinct = params.distinct
        && matches!(kind, AggKind::Sum | AggKind::Avg | AggKind::ArrayAgg | AggKind::StringAgg { .. });
    Ok(Classified { kind, argument, order_by, filter: params.filter.as_deref(), distinct })
}

/// string_agg's delimiter: a constant (NULL: none).
fn delimiter(argument: Option<&Expr>) -> Result<String> {
    match argument {
        Some(Expr::Literal(
            ScalarValue::Utf8(Some(d)) | ScalarValue::LargeUtf8(Some(d)) | ScalarValue::Utf8View(Some(d)),
            _,
        )) => Ok(d.clone()),
        Some(Expr::Literal(value, _)) if value.is_null() => Ok(String::new()),
        _ => Err(unsupported("string_agg with a delimiter that is not a constant")),
    }
}

/// A percentile's fraction: a constant from 0 to 1 (22003 otherwise, as Postgres).
fn fraction(name: &str, argument: Option<&Expr>) -> Result<f64> {
    let value = match argument {
        Some(Expr::Literal(value, _)) => value.cast_to(&DataType::Float64).ok(),
        Some(Expr::Cast(cast)) => match cast.expr.as_ref() {
            Expr::Literal(value, _) => value.cast_to(&DataType::Float64).ok(),
            _ => None,
        },
        _ => None,
    };
    match value {
        Some(ScalarValue::Float64(Some(f))) if (0.0..=1.0).contains(&f) => Ok(f),
        Some(ScalarValue::Float64(Some(f))) => Err(Error::new(
            SqlState::NumericValueOutOfRange,
            format!("percentile value {f} is not between 0 and 1"),
        )),
        _ => Err(unsupported(format!("{name} of a fraction that is not a constant"))),
    }
}
