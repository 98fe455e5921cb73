//! Joins → a HashJoin over both converted inputs, equi-keys as columns (computed into
//! hidden columns when they are expressions), the rest of the condition as a residual.

use datafusion::common::NullEquality;
use datafusion::logical_expr::{Expr, Join, JoinType, lit};

use datafusion::arrow::datatypes::SchemaRef;

use super::{StreamPlanner, fields_of, nullable_schema, unsupported};
use crate::common::{Error, Result};
use crate::plan::{AsOfBound, AsOfOrder, HashJoinNode, IntervalBound, JoinWatermark, NodeKind, StreamNode};
use crate::sql::asof_join::{AsofJoinNode, split_condition};

pub fn join(planner: &mut StreamPlanner<'_>, join: &Join) -> Result<StreamNode> {
    if matches!(join.join_type, JoinType::LeftMark | JoinType::RightMark) {
        return Err(unsupported("this subquery form (a mark join)"));
    }
    let nulls_equal = join.null_equality == NullEquality::NullEqualsNull;
    let lookup = lookup_join(join)?;
    let left = planner.convert(&join.left)?;
    let right = planner.convert(&join.right)?;
    // A join without an equality condition (a cross join, or the one-row side of a scalar
    // subquery) joins on a constant: every row meets every row of the other side, in one
    // instance.
    let cross = join.on.is_empty();
    let (left_exprs, right_exprs): (Vec<Expr>, Vec<Expr>) = match cross {
        true => (vec![lit(true)], vec![lit(true)]),
        false => join.on.iter().cloned().unzip(),
    };
    let (left, mut left_keys) = planner.columns_for(left, &left_exprs, join.left.schema())?;
    let (right, mut right_keys) = planner.columns_for(right, &right_exprs, join.right.schema())?;
    // A key pair with a watermark on both sides bounds the join's state (revision 3): it
    // leads the stored key, so that what the watermarks free is one key range.
    let (left_marks, right_marks) = (left.watermark_columns(), right.watermark_columns());
    if lookup && !left.is_append_only() {
        return Err(unsupported("FOR SYSTEM_TIME AS OF PROCTIME() joined to a stream with deletes or updates")
            .with_hint("the left side of a processing-time temporal join must be a source, an APPEND ONLY table or a view of one"));
    }
    let closing_pair = (0..left_keys.len())
        .find(|&i| left_marks.contains(&left_keys[i]) && right_marks.contains(&right_keys[i]))
        .filter(|_| planner.revision >= 3 && !join.null_aware && !lookup);
    if let Some(pair) = closing_pair {
        left_keys[..=pair].rotate_right(1);
        right_keys[..=pair].rotate_right(1);
    }
    for (&l, &r) in left_keys.iter().zip(&right_keys) {
        let (lt, rt) = (left.schema.field(l).data_type(), right.schema.field(r).data_type());
        if lt != rt {
            return Err(unsupported(format!("a join of keys of different types ({lt} and {rt})")));
        }
    }
    let residual = match &join.filter {
        Some(filter) => {
            let both = join.left.schema().join(join.right.schema())?;
            Some(planner.physical(filter, &both)?)
        }
        None => None,
    };
    let intervals = match closing_pair {
        Some(_) => Vec::new(),
        None if !lookup => super::interval::interval_bounds(planner, join, [&left, &right])?,
        None => Vec::new(),
    };
    let watermarks = match closing_pair {
        Some(_) => closing_watermarks(planner.revision, join.join_type, [left_keys[0], right_keys[0]]),
        None if planner.revision >= 7 => {
            super::interval::held_watermarks(&intervals, [&left, &right], join.join_type)
        }
        None => Vec::new(),
    };
    let (schema, visible, stream_key) = joined(&left, &right, join.join_type)?;
    let node = HashJoinNode {
        join_type: join.join_type,
        left_keys,
        right_keys,
        residual,
        null_aware: join.null_aware,
        nulls_equal,
        left_table: planner.ids.next_id()?,
        right_table: planner.ids.next_id()?,
        closes: closing_pair.is_some(),
        intervals,
        lookup,
        asof: None,
        watermarks,
    };
    Ok(StreamNode {
        kind: NodeKind::HashJoin(node),
        schema,
        visible,
        stream_key: Some(stream_key),
        // NOT IN's counts of right rows and NULL keys must see the whole right side; a
        // cross join's rows all have the one key.
        parallelism: if join.null_aware || cross { 1 } else { planner.parallelism },
        inputs: vec![left, right],
    })
}

/// A join that closes on the key pair `keys` carries the smaller of the two sides'
/// watermarks on those keys: on both output columns before plan revision 7; from it only
/// on the sides whose rows are never NULL-padded (a padded row's NULL would never pass a
/// watermark, so an EMIT ON WINDOW CLOSE sort over it would hold the row for ever), and
/// on both sides of a FULL join marked `padded` (for `coalesce` of the two).
fn closing_watermarks(revision: u32, join_type: JoinType, keys: [usize; 2]) -> Vec<JoinWatermark> {
    let padded = revision >= 7 && join_type == JoinType::Full;
    (0..2)
        .filter(|&side| revision < 7 || padded || shown_whole(join_type, side))
        .map(|side| JoinWatermark { side, column: keys[side], held_back: None, padded })
        .collect()
}

/// Whether every output row of the join shows a row of `side` (none is NULL-padded there).
pub(super) fn shown_whole(join_type: JoinType, side: usize) -> bool {
    match join_type {
        JoinType::Inner => true,
        JoinType::Left | JoinType::LeftSemi | JoinType::LeftAnti => side == 0,
        JoinType::Right | JoinType::RightSemi | JoinType::RightAnti => side == 1,
        _ => false,
    }
}

/// The output of a join of `left` and `right`: schema, visible columns and stream key.
fn joined(
    left: &StreamNode,
    right: &StreamNode,
    join_type: JoinType,
) -> Result<(SchemaRef, usize, Vec<usize>)> {
    let (Some(left_key), Some(right_key)) = (left.stream_key.clone(), right.stream_key.clone()) else {
        return Err(unsupported("a join over an input without a key"));
    };
    let (lv, rv) = (left.visible, right.visible);
    let (ln, rn) = (left.schema.fields().len(), right.schema.fields().len());
    debug_assert!(rn >= rv);
    Ok(match join_type {
        JoinType::LeftSemi | JoinType::LeftAnti => (left.schema.clone(), lv, left_key),
        JoinType::RightSemi | JoinType::RightAnti => (right.schema.clone(), rv, right_key),
        _ => {
            let (lf, rf) = (fields_of(&left.schema), fields_of(&right.schema));
            let fields = lf[..lv].iter().chain(&rf[..rv]).chain(&lf[lv..]).chain(&rf[rv..]).cloned();
            let left_at = |i: usize| if i < lv { i } else { lv + rv + (i - lv) };
            let right_at = |j: usize| if j < rv { lv + j } else { lv + rv + (ln - lv) + (j - rv) };
            let key =
                left_key.iter().map(|&i| left_at(i)).chain(right_key.iter().map(|&j| right_at(j))).collect();
            (nullable_schema(fields), lv + rv, key)
        }
    })
}

/// An as-of join (`ASOF [LEFT] JOIN`): a hash join on the equalities whose sides keep
/// their rows in time order, the time of each side a column (computed when it is an
/// expression).
pub fn asof_join(planner: &mut StreamPlanner<'_>, node: &AsofJoinNode) -> Result<StreamNode> {
    let split = split_condition(&node.condition, node.left.schema(), node.right.schema())?;
    let left = planner.convert(&node.left)?;
    let right = planner.convert(&node.right)?;
    let left_exprs: Vec<Expr> = split.left_keys.iter().chain([&split.left_time]).cloned().collect();
    let right_exprs: Vec<Expr> = split.right_keys.iter().chain([&split.right_time]).cloned().collect();
    let (left, mut left_keys) = planner.columns_for(left, &left_exprs, node.left.schema())?;
    let (right, mut right_keys) = planner.columns_for(right, &right_exprs, node.right.schema())?;
    let (left_time, right_time) = (left_keys.pop(), right_keys.pop());
    let (Some(left_column), Some(right_column)) = (left_time, right_time) else {
        return Err(Error::internal("an as-of join without its time columns"));
    };
    for (&l, &r) in left_keys.iter().zip(&right_keys).chain([(&left_column, &right_column)]) {
        let (lt, rt) = (left.schema.field(l).data_type(), right.schema.field(r).data_type());
        if lt != rt {
            return Err(unsupported(format!(
                "an ASOF JOIN comparing values of different types ({lt} and {rt})"
            )));
        }
    }
    let (schema, visible, stream_key) = joined(&left, &right, node.join_type)?;
    let (left_table, right_table) = (planner.ids.next_id()?, planner.ids.next_id()?);
    // `l.t >= r.t` over endless inputs whose times carry watermarks: what the watermarks
    // prove final is freed (`AsOfBound::frees`).
    let frees = split.order == AsOfOrder::AtOrAfter
        && left.is_append_only()
        && right.is_append_only()
        && left.watermark_columns().contains(&left_column)
        && right.watermark_columns().contains(&right_column);
    let intervals = match frees {
        true => vec![stream_rows_bound(planner, [&left, &right], [left_column, right_column])?],
        false => Vec::new(),
    };
    let join = HashJoinNode {
        join_type: node.join_type,
        left_keys,
        right_keys,
        residual: None,
        null_aware: false,
        nulls_equal: false,
        left_table,
        right_table,
        closes: false,
        intervals,
        lookup: false,
        asof: Some(AsOfBound { left_column, right_column, order: split.order, frees }),
        watermarks: Vec::new(),
    };
    Ok(StreamNode {
        kind: NodeKind::HashJoin(join),
        schema,
        visible,
        stream_key: Some(stream_key),
        parallelism: planner.parallelism,
        inputs: vec![left, right],
    })
}

/// An as-of join's left rows are final once the right watermark passes their time (no
/// right row at or before it can come): `r.t <= l.t` as an interval bound on the left.
fn stream_rows_bound(
    planner: &mut StreamPlanner<'_>,
    inputs: [&StreamNode; 2],
    columns: [usize; 2],
) -> Result<IntervalBound> {
    use datafusion::physical_expr::expressions::Column;
    let column = |s: usize| -> std::sync::Arc<dyn datafusion::physical_expr::PhysicalExpr> {
        std::sync::Arc::new(Column::new(inputs[s].schema.field(columns[s]).name(), columns[s]))
    };
    let names = [0, 1].map(|s| inputs[s].column_name(columns[s]));
    Ok(IntervalBound {
        side: 0,
        expiry: column(0),
        other_column: columns[1],
        other: column(1),
        data_type: inputs[0].schema.field(columns[0]).data_type().clone(),
        strict: false,
        index_table: planner.ids.next_id()?,
        text: format!("{} <= {}", names[1], names[0]),
    })
}

/// Whether `join` is a processing-time temporal join (its right side reads a relation
/// `FOR SYSTEM_TIME AS OF PROCTIME()`): inner or left, with the versioned relation on the
/// right.
fn lookup_join(join: &Join) -> Result<bool> {
    use crate::sql::temporal_join::{Marker, reads_marked};
    let reads_versioned = |plan: &datafusion::logical_expr::LogicalPlan| reads_marked(plan, Marker::Proctime);
    if reads_versioned(&join.left) {
        return Err(unsupported("FOR SYSTEM_TIME AS OF PROCTIME() on the left side of a join").with_hint(
            "put the versioned table on the right: s JOIN t FOR SYSTEM_TIME AS OF PROCTIME() ON ...",
        ));
    }
    if !reads_versioned(&join.right) {
        return Ok(false);
    }
    match join.join_type {
        JoinType::Inner | JoinType::Left => Ok(true),
        other => Err(unsupported(format!("a {other} processing-time temporal join (only inner and LEFT)"))),
    }
}
