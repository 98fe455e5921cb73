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
//! runs, with two window functions over the relation, partitioned by those columns and
//! ordered by time: `sabot_session_start(ts, gap)` and `sabot_session_end(ts, gap)`
//! ([`SessionBound`]), the first row's time and the last row's time plus the gap of the
//! row's session (NULL for a row without a time). The gap is an integer in the time
//! column's unit.
//!
//! Batch queries evaluate them over each sorted partition; views maintain them with the
//! over-window operator, which recomputes the sessions a change touches (a row that
//! arrives between two sessions and joins them updates both sessions' rows) and, once the
//! watermark passes a session's end, frees its rows: `window_end` carries the watermark,
//! so an aggregate grouped by it closes and frees its groups too.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use datafusion::arrow::datatypes::{DataType, FieldRef, Int64Type};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, ScalarValue, TableReference};
use datafusion::datasource::{TableType, provider_as_source, source_as_provider};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::expr::{Sort, WindowFunction};
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::{
    Aggregate, Expr, ExprFunctionExt, LogicalPlan, LogicalPlanBuilder, PartitionEvaluator, Signature,
    TableScan, Volatility, WindowUDF, WindowUDFImpl, col, lit,
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
    /// The gap in the time column's unit.
    gap: i64,
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
        if !matches!(field.data_type(), DataType::Timestamp(..)) {
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
        let nanoseconds = match &gap {
            ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
                i128::from(v.days) * 86_400_000_000_000 + i128::from(v.nanoseconds)
            }
            ScalarValue::IntervalDayTime(Some(v)) => {
                i128::from(v.days) * 86_400_000_000_000 + i128::from(v.milliseconds) * 1_000_000
            }
            ScalarValue::IntervalMonthDayNano(Some(_)) | ScalarValue::IntervalYearMonth(Some(_)) => {
                return Err(Error::unsupported("a SESSION gap measured in months or years")
                    .with_hint("give the gap in days or smaller units"));
            }
            other => return Err(invalid(&format!("the gap must be an interval, not {other}"))),
        };
        if nanoseconds <= 0 {
            return Err(invalid("the gap must be positive"));
        }
        let unit_nanoseconds = match field.data_type() {
            DataType::Timestamp(unit, _) => i128::from(crate::common::window::unit_nanos(unit)),
            _ => 1,
        };
        if nanoseconds % unit_nanoseconds != 0 {
            return Err(invalid("the gap must be a whole number of the time column's units"));
        }
        let gap =
            i64::try_from(nanoseconds / unit_nanoseconds).map_err(|_| invalid("the gap is too large"))?;
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
        Ok(SessionTable { relation, input, time: time.name.clone(), gap, schema })
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
        let bound = |end: bool| -> DfResult<Expr> {
            let function = Arc::new(WindowUDF::new_from_impl(SessionBound::new(end)));
            Expr::from(WindowFunction::new(function, vec![time.clone(), lit(self.gap)]))
                .partition_by(keys.clone())
                .order_by(by_time.clone())
                .build()
        };
        let first = bound(false)?.alias("_session_first");
        let last = bound(true)?.alias("_session_end");
        // The scan's columns (all of them, or those it projects), named as it names them.
        let output: Vec<Expr> = scan
            .projected_schema
            .fields()
            .iter()
            .map(|f| match f.name().as_str() {
                "window_start" => col("_session_first").alias("window_start"),
                "window_end" => col("_session_end").alias("window_end"),
                other => col(Column::new(Some(name.clone()), other)).alias(other),
            })
            .collect();
        base.window(vec![first, last])?.project(output)?.alias(scan.table_name.clone())?.build()
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

/// `sabot_session_start(ts, gap)` / `sabot_session_end(ts, gap)`: the start (first time)
/// or end (last time plus `gap`) of each row's session in a partition ordered by `ts`
/// ascending, NULLs last; NULL for a row whose time is NULL. `gap` is an integer in the
/// time's unit. Views map these calls to the over-window operator's session kind.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SessionBound {
    end: bool,
    signature: Signature,
}

impl SessionBound {
    pub fn new(end: bool) -> Self {
        SessionBound { end, signature: Signature::any(2, Volatility::Immutable) }
    }
}

pub const SESSION_START: &str = "sabot_session_start";
pub const SESSION_END: &str = "sabot_session_end";

impl WindowUDFImpl for SessionBound {
    fn name(&self) -> &str {
        if self.end { SESSION_END } else { SESSION_START }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn partition_evaluator(&self, _args: PartitionEvaluatorArgs) -> DfResult<Box<dyn PartitionEvaluator>> {
        Ok(Box::new(SessionEvaluator { end: self.end }))
    }

    fn field(&self, args: WindowUDFFieldArgs) -> DfResult<FieldRef> {
        let time = args
            .get_input_field(0)
            .ok_or_else(|| DataFusionError::Plan("a session bound needs a time".into()))?;
        Ok(Arc::new(Field::new(args.name(), time.data_type().clone(), true)))
    }
}

#[derive(Debug)]
struct SessionEvaluator {
    end: bool,
}

impl PartitionEvaluator for SessionEvaluator {
    fn evaluate_all(&mut self, values: &[ArrayRef], num_rows: usize) -> DfResult<ArrayRef> {
        let time_type = values[0].data_type().clone();
        let times = datafusion::arrow::compute::cast(&values[0], &DataType::Int64)?;
        let times: Vec<Option<i64>> = times.as_primitive::<Int64Type>().iter().collect();
        let gap = values[1].as_primitive_opt::<Int64Type>().filter(|g| !g.is_empty() && g.is_valid(0));
        let gap = gap
            .map(|g| g.value(0))
            .ok_or_else(|| DataFusionError::Plan("a session gap must be an integer".into()))?;
        let bounds =
            crate::common::window::session_bounds(&times[..num_rows.min(times.len())], gap, self.end);
        Ok(datafusion::arrow::compute::cast(&(Arc::new(Int64Array::from(bounds)) as ArrayRef), &time_type)?)
    }
}
