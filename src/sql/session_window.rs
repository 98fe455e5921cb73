//! SESSION windows: `SESSION(relation, time column, gap)`.
//!
//! A session is a run of rows whose times are less than `gap` apart; it spans from its
//! first row's time to its last row's time plus `gap`. Sessions are per partition, and
//! the partition is the GROUP BY of the aggregate over the call (its columns of the
//! relation, other than `window_start` / `window_end`): `SELECT user, window_start,
//! count(*) FROM SESSION(clicks, ts, INTERVAL '5' MINUTE) GROUP BY user, window_start`
//! sessionizes each user's clicks. Without an aggregate the whole relation is one
//! partition.
//!
//! The call binds to a [`SessionTable`] (the relation's columns plus `window_start` and
//! `window_end`), which an analyzer rule ([`SessionWindows`]) replaces, before anything
//! runs, with window functions over the relation, partitioned by those columns and
//! ordered by time:
//!
//! ```text
//! prev  = lag(ts)                                  -- the partition's previous time
//! new   = CASE WHEN prev IS NULL OR prev + gap <= ts THEN 1 ELSE 0 END
//! id    = sum(new) ROWS UNBOUNDED PRECEDING        -- the session's number
//! window_start = min(ts) OVER (partition, id), window_end = max(ts) OVER (partition, id) + gap
//! ```
//!
//! Batch queries run that plan as it is; views maintain it with over windows, so a row
//! that arrives between two sessions and joins them updates both sessions' rows.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, ScalarValue, TableReference};
use datafusion::datasource::{TableType, provider_as_source, source_as_provider};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::expr::{Sort, WindowFunction};
use datafusion::logical_expr::{
    Aggregate, Expr, ExprFunctionExt, LogicalPlan, LogicalPlanBuilder, TableScan, WindowFrame,
    WindowFrameBound, WindowFrameUnits, col, lit, when,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::physical_plan::ExecutionPlan;

use crate::catalog::TableDesc;
use crate::common::{Error, Result, SqlState};

/// A relation seen through `SESSION(...)`, until [`SessionWindows`] plans it.
#[derive(Debug, Clone)]
pub struct SessionTable {
    pub relation: Arc<TableDesc>,
    input: Arc<dyn TableProvider>,
    time: String,
    gap: Expr,
    schema: SchemaRef,
}

impl SessionTable {
    pub fn bind(
        args: &[Expr],
        relation: Arc<TableDesc>,
        input: Arc<dyn TableProvider>,
    ) -> Result<SessionTable> {
        let invalid = |what: &str| {
            Error::new(SqlState::InvalidParameterValue, format!("invalid arguments to SESSION: {what}"))
                .with_hint("SESSION(relation, time column, gap)")
        };
        if args.len() != 3 {
            return Err(invalid(&format!("it takes 3 arguments, not {}", args.len())));
        }
        let Expr::Column(time) = &args[1] else {
            return Err(invalid("its second argument must name the time column"));
        };
        let visible = relation.visible_schema();
        let (_, field) = visible.column_with_name(&time.name).ok_or_else(|| {
            Error::new(
                SqlState::UndefinedColumn,
                format!("column \"{}\" does not exist in \"{}\"", time.name, relation.name),
            )
        })?;
        if !matches!(field.data_type(), datafusion::arrow::datatypes::DataType::Timestamp(..)) {
            return Err(Error::new(
                SqlState::DatatypeMismatch,
                format!("the time column of SESSION must be a timestamp, not {}", field.data_type()),
            ));
        }
        let gap = match &args[2] {
            Expr::Literal(value, _) => value.clone(),
            Expr::Cast(cast) => match cast.expr.as_ref() {
                Expr::Literal(value, _) => value.cast_to(cast.field.data_type())?,
                _ => return Err(invalid("the gap must be a constant interval")),
            },
            _ => return Err(invalid("the gap must be a constant interval")),
        };
        let positive = match &gap {
            ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => v.days > 0 || v.nanoseconds > 0,
            ScalarValue::IntervalDayTime(Some(v)) => v.days > 0 || v.milliseconds > 0,
            ScalarValue::IntervalMonthDayNano(Some(_)) | ScalarValue::IntervalYearMonth(Some(_)) => {
                return Err(Error::unsupported("a SESSION gap measured in months or years")
                    .with_hint("give the gap in days or smaller units"));
            }
            other => return Err(invalid(&format!("the gap must be an interval, not {other}"))),
        };
        if !positive {
            return Err(invalid("the gap must be positive"));
        }
        for name in ["window_start", "window_end"] {
            if visible.column_with_name(name).is_some() {
                return Err(Error::new(
                    SqlState::DuplicateColumn,
                    format!("SESSION adds column \"{name}\", which \"{}\" already has", relation.name),
                ));
            }
        }
        let fields = visible.fields().iter().cloned().chain([
            Arc::new(Field::new("window_start", field.data_type().clone(), true)),
            Arc::new(Field::new("window_end", field.data_type().clone(), true)),
        ]);
        let schema = Arc::new(Schema::new(fields.collect::<Vec<_>>()));
        Ok(SessionTable { relation, input, time: time.name.clone(), gap: lit(gap), schema })
    }

    /// The rows of the relation with their sessions in `partition` (relation columns).
    fn plan(&self, scan: &TableScan, partition: &[String]) -> DfResult<LogicalPlan> {
        let name = TableReference::partial(self.relation.schema.as_str(), self.relation.name.as_str());
        let visible = self.relation.visible_schema();
        let columns: Vec<Expr> =
            visible.fields().iter().map(|f| col(Column::new(Some(name.clone()), f.name()))).collect();
        let base = LogicalPlanBuilder::scan(name.clone(), provider_as_source(self.input.clone()), None)?
            .project(columns.clone())?;
        let time = col(Column::new(Some(name.clone()), &self.time));
        let keys: Vec<Expr> = partition.iter().map(|c| col(Column::new(Some(name.clone()), c))).collect();
        let by_time = vec![Sort::new(time.clone(), true, false)];
        let lag = datafusion::functions_window::expr_fn::lag(time.clone(), Some(1), None)
            .partition_by(keys.clone())
            .order_by(by_time.clone())
            .build()?
            .alias("_session_prev");
        let starts = when(
            col("_session_prev").is_null().or((col("_session_prev") + self.gap.clone()).lt_eq(time.clone())),
            lit(1i64),
        )
        .otherwise(lit(0i64))?
        .alias("_session_new");
        let running = WindowFrame::new_bounds(
            WindowFrameUnits::Rows,
            WindowFrameBound::Preceding(ScalarValue::UInt64(None)),
            WindowFrameBound::CurrentRow,
        );
        let id = Expr::from(WindowFunction::new(
            datafusion::functions_aggregate::sum::sum_udaf(),
            vec![col("_session_new")],
        ))
        .partition_by(keys.clone())
        .order_by(by_time)
        .window_frame(running)
        .build()?
        .alias("_session_id");
        let session: Vec<Expr> = keys.iter().cloned().chain([col("_session_id")]).collect();
        let bound = |udaf| -> DfResult<Expr> {
            Expr::from(WindowFunction::new(udaf, vec![time.clone()]))
                .partition_by(session.clone())
                .window_frame(WindowFrame::new(None))
                .build()
        };
        let first = bound(datafusion::functions_aggregate::min_max::min_udaf())?.alias("_session_first");
        let last = bound(datafusion::functions_aggregate::min_max::max_udaf())?.alias("_session_last");
        // The scan's columns (all of them, or those it projects), named as it names them.
        let output: Vec<Expr> = scan
            .projected_schema
            .fields()
            .iter()
            .map(|f| match f.name().as_str() {
                "window_start" => col("_session_first").alias("window_start"),
                "window_end" => (col("_session_last") + self.gap.clone()).alias("window_end"),
                other => col(Column::new(Some(name.clone()), other)).alias(other),
            })
            .collect();
        base.window(vec![lag])?
            .project(columns.iter().cloned().chain([starts]).collect::<Vec<_>>())?
            .window(vec![id])?
            .window(vec![first, last])?
            .project(output)?
            .alias(scan.table_name.clone())?
            .build()
    }
}

#[async_trait]
impl TableProvider for SessionTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Err(DataFusionError::Internal("SESSION is planned by the session-window analyzer rule".into()))
    }
}

/// Plans every `SESSION(...)` in a plan: see the module documentation.
#[derive(Debug)]
pub struct SessionWindows;

impl AnalyzerRule for SessionWindows {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        if !plan.exists(|p| Ok(session_of(p).is_some()))? {
            return Ok(plan);
        }
        // Aggregates first: their GROUP BY partitions the sessions below them.
        let plan = plan
            .transform_down(|node| match &node {
                LogicalPlan::Aggregate(aggregate) => {
                    let Some(partition) = partition_of(aggregate) else { return Ok(Transformed::no(node)) };
                    let input = replace(&aggregate.input, &partition)?;
                    let rebuilt = Aggregate::try_new(
                        Arc::new(input),
                        aggregate.group_expr.clone(),
                        aggregate.aggr_expr.clone(),
                    )?;
                    Ok(Transformed::yes(LogicalPlan::Aggregate(rebuilt)))
                }
                _ => Ok(Transformed::no(node)),
            })?
            .data;
        // Sessions under no aggregate: one partition.
        let plan = plan
            .transform_up(|node| match session_of(&node) {
                Some((scan, table)) => Ok(Transformed::yes(table.plan(scan, &[])?)),
                None => Ok(Transformed::no(node)),
            })?
            .data;
        // Parents' schemas follow their rewritten inputs (nullability may differ).
        Ok(plan.transform_up(|node| Ok(Transformed::yes(node.recompute_schema()?)))?.data)
    }

    fn name(&self) -> &str {
        "session_windows"
    }
}

/// The SESSION scan `node` is, if it is one.
fn session_of(node: &LogicalPlan) -> Option<(&TableScan, SessionTable)> {
    let LogicalPlan::TableScan(scan) = node else { return None };
    let provider = source_as_provider(&scan.source).ok()?;
    let table = provider.downcast_ref::<SessionTable>()?.clone();
    Some((scan, table))
}

/// The SESSION scan under an aggregate (through projections, filters and aliases) and the
/// aggregate's GROUP BY columns it has (other than its window columns).
fn partition_of(aggregate: &Aggregate) -> Option<Vec<String>> {
    let mut node = aggregate.input.as_ref();
    let table = loop {
        match node {
            LogicalPlan::Projection(p) => node = p.input.as_ref(),
            LogicalPlan::Filter(f) => node = f.input.as_ref(),
            LogicalPlan::SubqueryAlias(a) => node = a.input.as_ref(),
            other => break session_of(other)?.1,
        }
    };
    let visible = table.relation.visible_schema();
    let mut partition = Vec::new();
    for expr in &aggregate.group_expr {
        if let Expr::Column(c) = expr
            && !["window_start", "window_end"].contains(&c.name.as_str())
            && visible.column_with_name(&c.name).is_some()
            && !partition.contains(&c.name)
        {
            partition.push(c.name.clone());
        }
    }
    Some(partition)
}

/// `plan` with its SESSION scan (under projections, filters and aliases) planned over
/// `partition`.
fn replace(plan: &LogicalPlan, partition: &[String]) -> DfResult<LogicalPlan> {
    if let Some((scan, table)) = session_of(plan) {
        return table.plan(scan, partition);
    }
    let inputs: Vec<LogicalPlan> =
        plan.inputs().into_iter().map(|input| replace(input, partition)).collect::<DfResult<_>>()?;
    plan.with_new_exprs(plan.expressions(), inputs)
}
