//! The streaming plan IR: what `sql::stream_plan` builds from a DataFusion logical plan and
//! what `stream::dataflow` instantiates as operators.
//!
//! Every node knows its output schema, how many of its leading columns the query shows
//! (the rest are hidden key columns carried along so that every row stays addressable),
//! its stream key (columns that identify a row: `Some(vec![])` means "at most one row",
//! `None` means "no key: a multiset"), how many parallel instances run it, and which state
//! tables it keeps. The IR holds DataFusion `PhysicalExpr`s, so it is not serialized: a
//! view's plan is rebuilt from its SQL at start-up and checked against the fingerprint
//! (the EXPLAIN text) stored in the catalog.

use std::fmt::Write;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::logical_expr::JoinType;
use datafusion::physical_expr::PhysicalExpr;

use crate::catalog::TableDesc;
use crate::common::window::WindowSpec;
use crate::state::TableId;

pub mod agg;
pub mod join;
pub mod over_window;
pub use agg::{AggCall, AggKind, BitOp, HashAggNode, PartialAggNode, Spread};
pub use join::{AsOfBound, AsOfOrder, HashJoinNode, HeldBack, IntervalBound, JoinWatermark};
pub use over_window::{Frame, FrameBound, OverWindowNode, WindowCall, WindowKind};

/// How EXPLAIN marks a state table that grows without bound over an endless input.
pub const UNBOUNDED: &str = " (unbounded)";

/// A plan's EXPLAIN lines without the [`UNBOUNDED`] marks: what a view's stored plan is
/// compared by at start-up (plans recorded before the marks existed lack them).
pub fn fingerprint(lines: &[String]) -> Vec<String> {
    lines.iter().map(|line| line.replace(UNBOUNDED, "")).collect()
}

/// An output column of an Unnest: an input column repeated for each element, or the
/// elements of an input list column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnnestColumn {
    Repeat(usize),
    Element(usize),
}

#[derive(Debug, Clone)]
pub struct StreamNode {
    pub kind: NodeKind,
    pub schema: SchemaRef,
    /// The leading columns the query shows; the others are hidden key columns.
    pub visible: usize,
    pub stream_key: Option<Vec<usize>>,
    pub parallelism: usize,
    pub inputs: Vec<StreamNode>,
}

#[derive(Debug, Clone)]
pub enum NodeKind {
    /// The change stream of a table or view, after a backfill of its current rows; or the
    /// rows of a connector source, read by this dataflow with its own positions.
    Source {
        relation: Arc<TableDesc>,
        /// A connector source's split positions (None for tables and views).
        positions: Option<TableId>,
    },
    /// Constant rows (`VALUES`, a `SELECT` without `FROM`), with their row number as a
    /// hidden last column (the key): inserted once, when the view is created.
    Values {
        rows: RecordBatch,
    },
    Filter {
        predicate: Arc<dyn PhysicalExpr>,
    },
    /// Set-returning functions in a select list: one row per list element (see
    /// [`UnnestColumn`]), with the element's ordinal as a hidden last column.
    Unnest {
        columns: Vec<UnnestColumn>,
        null_handling: datafusion::common::NullHandling,
    },
    /// One projection of each input row per grouping set (GROUPING SETS, ROLLUP, CUBE).
    Expand {
        sets: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    },
    Project {
        exprs: Vec<Arc<dyn PhysicalExpr>>,
    },
    /// A window table function (TUMBLE, HOP, CUMULATE): each input row once per window
    /// it falls into, with `window_start` and `window_end` inserted after the input's
    /// visible columns. Stateless.
    WindowTvf(WindowSpec),
    HashAgg(HashAggNode),
    /// The first phase of a two-phase aggregate: per epoch (or every
    /// `PARTIAL_GROUPS_MAX` groups), each group's partial state, for a HashAgg that
    /// merges partials. No state.
    PartialAgg(PartialAggNode),
    HashJoin(HashJoinNode),
    /// A temporal filter (conditions comparing the row with `now()`): rows enter and leave
    /// as time passes, moved at barriers.
    TemporalFilter(TemporalFilterNode),
    /// UNION ALL: the inputs' visible columns plus a branch number and the input's key.
    Union,
    TopN(TopNNode),
    /// Window functions over partitions (`OVER (...)`): the input's visible columns, one
    /// column per call, then the input's hidden columns.
    OverWindow(OverWindowNode),
    Materialize {
        view: Arc<TableDesc>,
    },
    /// The root of a sink's dataflow: its changes go to the sink's connector.
    Sink {
        sink: Arc<TableDesc>,
    },
}

/// One comparison of a row with `now()`, as a bound on the time the row shows.
#[derive(Debug, Clone)]
pub struct TemporalCondition {
    /// The row's time bound, a UTC timestamp in microseconds: the row shows from then on
    /// (`enters`) or until then (otherwise).
    pub time: Arc<dyn PhysicalExpr>,
    pub enters: bool,
    /// Whether the row shows at the bound itself.
    pub inclusive: bool,
    /// The condition as written, for EXPLAIN.
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct TemporalFilterNode {
    pub conditions: Vec<TemporalCondition>,
    /// Rows waiting to enter, and shown rows waiting to leave, by time.
    pub table: TableId,
}

#[derive(Debug, Clone)]
pub struct TopNNode {
    /// Partition columns (empty: one global top-N).
    pub group_by: Vec<usize>,
    pub order_by: Vec<(usize, SortOptions)>,
    pub offset: usize,
    pub limit: usize,
    /// Appends the 1-based rank within the group (ROW_NUMBER) as the last visible column.
    pub with_rank: bool,
    pub table: TableId,
    /// The first partition column carries a watermark (plan revision 5; it leads the
    /// stored key): groups behind it are final and freed, rows behind it are late, and
    /// the output carries it.
    pub closes: bool,
}

impl TopNNode {
    /// Where input column `column` lands in the output (the row number follows the
    /// visible columns).
    pub fn output_column(&self, visible: usize, column: usize) -> usize {
        if column < visible || !self.with_rank { column } else { column + 1 }
    }
}

/// What an expression's values never decrease with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Monotone {
    /// An input column.
    Column(usize),
    /// The processing-time clock (`PROCTIME()`, see `common::proctime`).
    ProcessingTime,
    /// The first non-NULL of these input columns (`coalesce(l.ts, r.ts)` over a FULL
    /// join, planned as `CASE WHEN l.ts IS NOT NULL THEN l.ts ELSE r.ts END`): at least
    /// the smallest of their watermarks.
    Coalesce(Vec<usize>),
}

/// What `expr` is a monotone (non-decreasing) function of, if anything: an input column
/// itself, `column ± constant`, a cast of it to a timestamp or integer type, or
/// `date_trunc(unit, column)` / `date_bin(stride, column[, origin])`; or the same
/// functions of `PROCTIME()`. A watermark on the column (or the clock) then bounds the
/// expression's values too. Or `coalesce` of columns (see [`Monotone::Coalesce`]).
pub fn monotone_of(expr: &Arc<dyn PhysicalExpr>) -> Option<Monotone> {
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::ScalarFunctionExpr;
    use datafusion::physical_expr::expressions::{BinaryExpr, CastExpr, Column, Literal};
    if let Some(column) = expr.downcast_ref::<Column>() {
        return Some(Monotone::Column(column.index()));
    }
    if let Some(binary) = expr.downcast_ref::<BinaryExpr>() {
        let constant = |e: &Arc<dyn PhysicalExpr>| e.downcast_ref::<Literal>().is_some();
        return match binary.op() {
            Operator::Plus | Operator::Minus if constant(binary.right()) => monotone_of(binary.left()),
            Operator::Plus if constant(binary.left()) => monotone_of(binary.right()),
            _ => None,
        };
    }
    if let Some(cast) = expr.downcast_ref::<CastExpr>() {
        let target = cast.cast_type();
        return if target.is_temporal() || target.is_integer() { monotone_of(cast.expr()) } else { None };
    }
    if let Some(case) = expr.downcast_ref::<datafusion::physical_expr::expressions::CaseExpr>() {
        return coalesced_columns(case).map(Monotone::Coalesce);
    }
    if let Some(function) = expr.downcast_ref::<ScalarFunctionExpr>() {
        let args = function.args();
        return match function.name() {
            "date_trunc" | "date_bin" if args.len() >= 2 => monotone_of(&args[1]),
            "proctime" if args.is_empty() => Some(Monotone::ProcessingTime),
            _ => None,
        };
    }
    None
}

/// The columns of `CASE WHEN a IS NOT NULL THEN a [WHEN b IS NOT NULL THEN b ...] ELSE z
/// END`, what the optimizer makes of `coalesce(a, [b, ...] z)`.
fn coalesced_columns(case: &datafusion::physical_expr::expressions::CaseExpr) -> Option<Vec<usize>> {
    use datafusion::physical_expr::expressions::{Column, IsNotNullExpr};
    let column = |e: &Arc<dyn PhysicalExpr>| e.downcast_ref::<Column>().map(Column::index);
    if case.expr().is_some() {
        return None;
    }
    let mut columns = Vec::new();
    for (when, then) in case.when_then_expr() {
        let tested = column(when.downcast_ref::<IsNotNullExpr>()?.arg())?;
        (column(then)? == tested).then_some(())?;
        columns.push(tested);
    }
    columns.push(column(case.else_expr()?)?);
    Some(columns)
}

impl StreamNode {
    pub fn name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Source { .. } => "Source",
            NodeKind::Values { .. } => "Values",
            NodeKind::Filter { .. } => "Filter",
            NodeKind::Project { .. } => "Project",
            NodeKind::Expand { .. } => "Expand",
            NodeKind::Unnest { .. } => "Unnest",
            NodeKind::WindowTvf(_) => "WindowTvf",
            NodeKind::HashAgg(_) => "HashAgg",
            NodeKind::PartialAgg(_) => "PartialAgg",
            NodeKind::HashJoin(_) => "HashJoin",
            NodeKind::TemporalFilter(_) => "TemporalFilter",
            NodeKind::Union => "Union",
            NodeKind::TopN(_) => "TopN",
            // An over window without calls under EMIT ON WINDOW CLOSE only holds rows back
            // until the watermark passes them.
            NodeKind::OverWindow(over) if over.calls.is_empty() => "EowcSort",
            NodeKind::OverWindow(_) => "OverWindow",
            NodeKind::Materialize { .. } => "Materialize",
            NodeKind::Sink { .. } => "Sink",
        }
    }

    /// Whether this node's output is only ever inserts (an append-only stream): sources
    /// and APPEND ONLY tables are, filters and projections of them are, and so are unions
    /// and inner joins of append-only inputs. Aggregates, top-N and outer joins retract.
    pub fn is_append_only(&self) -> bool {
        let inputs = || self.inputs.iter().all(StreamNode::is_append_only);
        match &self.kind {
            NodeKind::Source { relation, .. } => relation.append_only,
            NodeKind::Values { .. }
            | NodeKind::Filter { .. }
            | NodeKind::Project { .. }
            | NodeKind::Expand { .. }
            | NodeKind::Unnest { .. }
            | NodeKind::WindowTvf(_)
            | NodeKind::Union
            | NodeKind::Materialize { .. }
            | NodeKind::Sink { .. } => inputs(),
            // A lookup join never retracts: right changes show nothing, padded rows stay.
            NodeKind::HashJoin(join) if join.lookup => self.inputs[0].is_append_only(),
            // An as-of join's matches move as right rows come and go.
            NodeKind::HashJoin(join) => join.join_type == JoinType::Inner && join.asof.is_none() && inputs(),
            // Rows that only enter (no condition makes them leave) are never retracted.
            NodeKind::TemporalFilter(filter) => filter.conditions.iter().all(|c| c.enters) && inputs(),
            NodeKind::HashAgg(agg) => agg.emit_on_close,
            NodeKind::OverWindow(over) => over.emit_on_close,
            NodeKind::PartialAgg(_) | NodeKind::TopN(_) => false,
        }
    }

    /// Whether the rows of this node come from constants only (`VALUES`): they never grow.
    pub fn is_constant(&self) -> bool {
        match &self.kind {
            NodeKind::Values { .. } => true,
            _ => !self.inputs.is_empty() && self.inputs.iter().all(StreamNode::is_constant),
        }
    }

    /// Whether every change of a given stream key comes from one instance of this node, so
    /// that a consumer merging the instances' channels sees each key's changes in order
    /// without consolidating. An aggregate's instances own disjoint groups (partitioned by
    /// the group key, which is its stream key); a filter or projection forwarded from such
    /// instances one to one keeps that; one instance trivially does.
    pub fn keys_stay_put(&self) -> bool {
        if self.parallelism <= 1 {
            return true;
        }
        match &self.kind {
            NodeKind::HashAgg(_) => true,
            NodeKind::Filter { .. } | NodeKind::Project { .. } | NodeKind::WindowTvf(_) => {
                self.inputs[0].parallelism == self.parallelism && self.inputs[0].keys_stay_put()
            }
            _ => false,
        }
    }

    /// Whether this node's result for an epoch does not depend on the order of the
    /// epoch's changes: an aggregate adds and retracts (a group may count below zero for a
    /// moment) and shows its groups only at the barrier, so a delete may overtake the
    /// insert it retracts and its inputs need no consolidation.
    pub fn takes_changes_in_any_order(&self) -> bool {
        matches!(self.kind, NodeKind::HashAgg(_))
    }

    /// True for operators that keep state (their instances are hash-partitioned).
    pub fn is_stateful(&self) -> bool {
        matches!(
            self.kind,
            NodeKind::HashAgg(_)
                | NodeKind::HashJoin(_)
                | NodeKind::TopN(_)
                | NodeKind::OverWindow(_)
                | NodeKind::TemporalFilter(_)
                | NodeKind::Materialize { .. }
        )
    }

    /// The columns of input `input` that route its rows to this node's instances, when
    /// this node runs several instances fed by a hash exchange.
    pub fn distribution(&self, input: usize) -> Option<Vec<usize>> {
        match &self.kind {
            NodeKind::HashAgg(agg) => Some((0..agg.group_len).collect()),
            NodeKind::HashJoin(join) => {
                Some(if input == 0 { join.left_keys.clone() } else { join.right_keys.clone() })
            }
            NodeKind::TopN(top) => Some(top.group_by.clone()),
            NodeKind::OverWindow(over) => Some(over.partition_by.clone()),
            _ => None,
        }
    }

    /// The output columns that carry a watermark (DESIGN §3), ascending: a source's
    /// `WATERMARK FOR` column, passed through filters, unions (when every input has it),
    /// window functions (which add `window_start` and `window_end`), projections (the
    /// column itself or a monotone expression of it, see [`monotone_of`], and
    /// monotone expressions of `PROCTIME()`) and
    /// aggregates (group keys).
    pub fn watermark_columns(&self) -> Vec<usize> {
        let input = || self.inputs[0].watermark_columns();
        match &self.kind {
            NodeKind::Source { relation, .. } => {
                let view = relation.view.iter().flat_map(|v| v.watermark_columns.iter().copied());
                let mut columns: Vec<usize> =
                    relation.watermark.iter().map(|w| w.column).chain(view).collect();
                columns.sort_unstable();
                columns
            }
            NodeKind::Filter { .. } => input(),
            NodeKind::Project { exprs } => {
                let marked = input();
                let padded = self.inputs[0].padded_watermark_columns();
                (0..exprs.len())
                    .filter(|&i| match monotone_of(&exprs[i]) {
                        Some(Monotone::Column(c)) => marked.contains(&c),
                        Some(Monotone::ProcessingTime) => true,
                        Some(Monotone::Coalesce(columns)) => {
                            columns.iter().all(|c| marked.contains(c) || padded.contains(c))
                        }
                        None => false,
                    })
                    .collect()
            }
            NodeKind::WindowTvf(spec) => {
                let visible = self.inputs[0].visible;
                let marked = input();
                let mut columns: Vec<usize> =
                    marked.iter().map(|&c| if c < visible { c } else { c + 2 }).collect();
                if marked.contains(&spec.time_column) {
                    columns.extend([visible, visible + 1]);
                }
                columns.sort_unstable();
                columns
            }
            NodeKind::Union => {
                let all: Vec<Vec<usize>> = self.inputs.iter().map(StreamNode::watermark_columns).collect();
                (0..self.visible).filter(|c| all.iter().all(|m| m.contains(c))).collect()
            }
            NodeKind::HashAgg(HashAggNode { group_len, .. })
            | NodeKind::PartialAgg(PartialAggNode { group_len, .. }) => {
                input().into_iter().filter(|&c| c < *group_len).collect()
            }
            NodeKind::HashJoin(join) => join.watermark_outputs(&self.inputs, false),
            // Later changes come from rows on time: in groups at or above the watermark.
            NodeKind::TopN(top) if top.closes => {
                vec![top.output_column(self.inputs[0].visible, top.group_by[0])]
            }
            // Emitted once final, in ORDER BY order: rows behind the watermark are all out.
            // Sessions: later changes move only sessions whose ends lie beyond the watermark.
            // Otherwise a row may change long after the watermark passed its values.
            NodeKind::OverWindow(over) => match over.watermark_output(self.inputs[0].visible) {
                Some(output) if input().contains(&over.order_by[0].0) => vec![output],
                _ => Vec::new(),
            },
            // A view of plan revision 4 passes its watermarks on to views over it.
            NodeKind::Materialize { view } if view.view.as_ref().is_some_and(|v| v.plan_revision >= 4) => {
                input()
            }
            // A set without the column shows NULL there for good.
            NodeKind::Expand { .. } | NodeKind::Values { .. } | NodeKind::Unnest { .. } => Vec::new(),
            // A row may enter or leave long after the watermark passed its values.
            NodeKind::TemporalFilter(_)
            | NodeKind::TopN(_)
            | NodeKind::Materialize { .. }
            | NodeKind::Sink { .. } => Vec::new(),
        }
    }

    /// Output columns whose non-NULL values carry a watermark but which may be NULL in a
    /// row for good (a FULL join's NULL-padded sides): alone they close nothing, but the
    /// first non-NULL of them does (`coalesce(l.window_start, r.window_start)`, see
    /// [`Monotone::Coalesce`]). Passed through filters and plain column projections.
    pub fn padded_watermark_columns(&self) -> Vec<usize> {
        match &self.kind {
            NodeKind::HashJoin(join) => join.watermark_outputs(&self.inputs, true),
            NodeKind::Filter { .. } => self.inputs[0].padded_watermark_columns(),
            NodeKind::Project { exprs } => {
                let padded = self.inputs[0].padded_watermark_columns();
                (0..exprs.len())
                    .filter(|&i| matches!(monotone_of(&exprs[i]), Some(Monotone::Column(c)) if padded.contains(&c)))
                    .collect()
            }
            _ => Vec::new(),
        }
    }

    /// Every state table of this node and its inputs.
    pub fn state_tables(&self) -> Vec<TableId> {
        let mut tables = Vec::new();
        self.walk(&mut |node| tables.extend(node.own_state_tables()));
        tables
    }

    pub fn own_state_tables(&self) -> Vec<TableId> {
        match &self.kind {
            NodeKind::HashAgg(agg) => std::iter::once(agg.group_table)
                .chain(agg.calls.iter().filter_map(|c| c.value_table))
                .collect(),
            NodeKind::HashJoin(join) => {
                let index = join.intervals.iter().map(|b| b.index_table);
                [join.left_table, join.right_table].into_iter().chain(index).collect()
            }
            NodeKind::TopN(top) => vec![top.table],
            NodeKind::OverWindow(over) => vec![over.table],
            NodeKind::TemporalFilter(filter) => vec![filter.table],
            NodeKind::Materialize { view } => vec![view.id],
            NodeKind::Source { positions: Some(table), .. } => vec![*table],
            _ => Vec::new(),
        }
    }

    /// What each state table of this node holds, with its id, for EXPLAIN; marked
    /// [`UNBOUNDED`] where it grows with an endless (append-only) input and nothing frees
    /// it.
    fn state_description(&self) -> Vec<String> {
        let endless = |input: &StreamNode, text: String| {
            if input.is_append_only() && !input.is_constant() { format!("{text}{UNBOUNDED}") } else { text }
        };
        match &self.kind {
            NodeKind::HashAgg(agg) => {
                let input = &self.inputs[0];
                // Closed groups are freed; without GROUP BY there is one group (but its
                // value multisets still grow).
                let closes = agg.closing_column.is_some();
                let mark = |bounded: bool, text: String| if bounded { text } else { endless(input, text) };
                let groups = mark(closes || agg.group_len == 0, format!("groups {}", agg.group_table));
                let values = agg.calls.iter().filter_map(|c| {
                    c.value_table.map(|t| mark(closes, format!("{} values {t}", c.describe(input))))
                });
                std::iter::once(groups).chain(values).collect()
            }
            NodeKind::HashJoin(join) if join.closes => {
                vec![format!("left rows {}", join.left_table), format!("right rows {}", join.right_table)]
            }
            // A lookup join keeps only the versioned side's current rows.
            NodeKind::HashJoin(join) if join.lookup => {
                vec![endless(&self.inputs[1], format!("right rows {}", join.right_table))]
            }
            NodeKind::HashJoin(join) => {
                // A side with an interval bound is freed behind the other's watermark.
                // So is an as-of join's right side that keeps only the versions still needed.
                let freed = |side: usize| {
                    join.intervals.iter().any(|b| b.side == side)
                        || (side == 1 && join.asof.as_ref().is_some_and(|a| a.frees))
                };
                let rows = |side: usize, text: String| match freed(side) {
                    true => text,
                    false => endless(&self.inputs[side], text),
                };
                let names = ["left", "right"];
                let index =
                    join.intervals.iter().map(|b| format!("{} by expiry {}", names[b.side], b.index_table));
                [
                    rows(0, format!("left rows {}", join.left_table)),
                    rows(1, format!("right rows {}", join.right_table)),
                ]
                .into_iter()
                .chain(index)
                .collect()
            }
            NodeKind::TopN(top) if top.closes => vec![format!("rows {}", top.table)],
            NodeKind::TopN(top) => vec![endless(&self.inputs[0], format!("rows {}", top.table))],
            // Under EMIT ON WINDOW CLOSE old rows are freed, but each partition keeps a
            // summary of them where a call reads from the partition's start.
            // Sessions behind the watermark are freed.
            NodeKind::OverWindow(over)
                if over.session_gap().is_some()
                    && self.inputs[0].watermark_columns().contains(&over.order_by[0].0) =>
            {
                vec![format!("rows {}", over.table)]
            }
            NodeKind::OverWindow(over) if over.emit_on_close && !over.keeps_summaries() => {
                vec![format!("rows {}", over.table)]
            }
            NodeKind::OverWindow(over) if over.emit_on_close && over.partition_by.is_empty() => {
                vec![format!("rows {}", over.table)]
            }
            NodeKind::OverWindow(over) if over.emit_on_close => {
                vec![endless(&self.inputs[0], format!("rows and partition summaries {}", over.table))]
            }
            NodeKind::OverWindow(over) => vec![endless(&self.inputs[0], format!("rows {}", over.table))],
            // Rows are kept only until they leave (or while they wait to enter).
            NodeKind::TemporalFilter(filter) => vec![format!("rows by time {}", filter.table)],
            NodeKind::Materialize { view } => vec![format!("view rows {}", view.id)],
            NodeKind::Source { positions: Some(table), .. } => vec![format!("split positions {table}")],
            _ => Vec::new(),
        }
    }

    pub fn walk(&self, visit: &mut dyn FnMut(&StreamNode)) {
        visit(self);
        for input in &self.inputs {
            input.walk(visit);
        }
    }

    /// The tree as EXPLAIN prints it: one operator per line with its keys, parallelism and
    /// state.
    pub fn explain(&self) -> Vec<String> {
        let mut lines = Vec::new();
        self.explain_into(0, &mut lines);
        lines
    }

    fn explain_into(&self, depth: usize, lines: &mut Vec<String>) {
        let mut line = format!("{}{}", "  ".repeat(depth), self.name());
        let column = |i: usize| self.column_name(i);
        match &self.kind {
            NodeKind::Source { relation, .. } => {
                let _ = write!(line, " {}", relation.qualified_name());
            }
            NodeKind::Filter { predicate } => {
                let _ = write!(line, " {predicate}");
            }
            NodeKind::Values { rows } => {
                let _ = write!(line, " {} rows", rows.num_rows());
            }
            NodeKind::Project { exprs } => {
                let list: Vec<String> = exprs.iter().map(|e| e.to_string()).collect();
                let _ = write!(line, " {}", list.join(", "));
            }
            NodeKind::Unnest { columns, .. } => {
                let input = &self.inputs[0];
                let list: Vec<String> = columns
                    .iter()
                    .map(|c| match c {
                        UnnestColumn::Repeat(i) => input.column_name(*i),
                        UnnestColumn::Element(i) => format!("unnest({})", input.column_name(*i)),
                    })
                    .collect();
                let _ = write!(line, " {}", list.join(", "));
            }
            NodeKind::Expand { sets } => {
                let sets: Vec<String> = sets
                    .iter()
                    .map(|exprs| exprs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", "))
                    .collect();
                let _ = write!(line, " [{}]", sets.join("], ["));
            }
            NodeKind::WindowTvf(spec) => {
                let _ = write!(line, " {}", spec.display(&self.inputs[0].column_name(spec.time_column)));
            }
            NodeKind::HashAgg(agg) => {
                let input = &self.inputs[0];
                let group: Vec<String> = (0..agg.group_len).map(|i| input.column_name(i)).collect();
                let calls: Vec<String> = agg.calls.iter().map(|c| c.describe(input)).collect();
                let _ = write!(line, " group by [{}] aggregates [{}]", group.join(", "), calls.join(", "));
                if agg.merge {
                    line.push_str(" of partials");
                }
                if let Some(column) = agg.closing_column {
                    let _ = write!(line, " closes on {}", input.column_name(column));
                }
                if agg.emit_on_close {
                    line.push_str(" emit on window close");
                }
            }
            NodeKind::PartialAgg(agg) => {
                let input = &self.inputs[0];
                let group: Vec<String> = (0..agg.group_len).map(|i| input.column_name(i)).collect();
                let calls: Vec<String> = agg.calls.iter().map(|c| c.describe(input)).collect();
                let _ = write!(line, " group by [{}] aggregates [{}]", group.join(", "), calls.join(", "));
            }
            NodeKind::HashJoin(join) => {
                let keys: Vec<String> = join
                    .left_keys
                    .iter()
                    .zip(&join.right_keys)
                    .map(|(&l, &r)| {
                        format!("{} = {}", self.inputs[0].column_name(l), self.inputs[1].column_name(r))
                    })
                    .collect();
                let _ = write!(line, " {:?} on [{}]", join.join_type, keys.join(", "));
                if join.lookup {
                    line.push_str(" lookup as of proctime");
                }
                if let Some(asof) = &join.asof {
                    let (l, r) = (
                        self.inputs[0].column_name(asof.left_column),
                        self.inputs[1].column_name(asof.right_column),
                    );
                    let _ = write!(line, " asof [{l} {} {r}]", asof.order.symbol());
                }
                if join.closes {
                    let _ = write!(line, " closes on {}", self.inputs[0].column_name(join.left_keys[0]));
                }
                if let Some(residual) = &join.residual {
                    let _ = write!(line, " filter {residual}");
                }
                for bound in &join.intervals {
                    let side = if bound.side == 0 { "left" } else { "right" };
                    let _ = write!(line, " frees {side} by [{}]", bound.text);
                }
                if join.null_aware {
                    line.push_str(" null-aware");
                }
                if join.nulls_equal {
                    line.push_str(" nulls equal");
                }
            }
            NodeKind::Union => {}
            NodeKind::TemporalFilter(filter) => {
                let conditions: Vec<&str> = filter.conditions.iter().map(|c| c.text.as_str()).collect();
                let _ = write!(line, " [{}]", conditions.join(" AND "));
            }
            NodeKind::TopN(top) => {
                let input = &self.inputs[0];
                let order: Vec<String> =
                    top.order_by.iter().map(|(i, o)| agg::sort_key_text(&input.column_name(*i), o)).collect();
                if !top.group_by.is_empty() {
                    let group: Vec<String> = top.group_by.iter().map(|&i| input.column_name(i)).collect();
                    let _ = write!(line, " partition by [{}]", group.join(", "));
                }
                let _ = write!(
                    line,
                    " order by [{}] limit {} offset {}",
                    order.join(", "),
                    top.limit,
                    top.offset
                );
                if top.closes {
                    let _ = write!(line, " closes on {}", input.column_name(top.group_by[0]));
                }
            }
            NodeKind::OverWindow(over) => {
                let _ = write!(line, " {}", over.describe(&self.inputs[0]));
            }
            NodeKind::Materialize { view } => {
                let _ = write!(line, " {}", view.qualified_name());
            }
            NodeKind::Sink { sink } => {
                let connector = sink.view.as_ref().and_then(|v| v.sink.as_ref()).map(|c| c.name.as_str());
                let _ = write!(line, " {} connector={}", sink.qualified_name(), connector.unwrap_or("?"));
            }
        }
        match &self.stream_key {
            Some(key) => {
                let names: Vec<String> = key.iter().map(|&i| column(i)).collect();
                let _ = write!(line, " key=[{}]", names.join(", "));
            }
            None => line.push_str(" key=none"),
        }
        let watermarks = self.watermark_columns();
        if !watermarks.is_empty() {
            let names: Vec<String> = watermarks.iter().map(|&i| column(i)).collect();
            let _ = write!(line, " watermark=[{}]", names.join(", "));
        }
        let padded = self.padded_watermark_columns();
        if !padded.is_empty() {
            let names: Vec<String> = padded.iter().map(|&i| column(i)).collect();
            let _ = write!(line, " padded watermark=[{}]", names.join(", "));
        }
        let _ = write!(line, " parallelism={}", self.parallelism);
        let state = self.state_description();
        if !state.is_empty() {
            let _ = write!(line, " state=[{}]", state.join(", "));
        }
        lines.push(line);
        for input in &self.inputs {
            input.explain_into(depth + 1, lines);
        }
    }

    pub fn column_name(&self, i: usize) -> String {
        self.schema.fields().get(i).map(|f| f.name().clone()).unwrap_or_else(|| format!("#{i}"))
    }
}
