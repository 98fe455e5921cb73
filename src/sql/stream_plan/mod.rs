//! Logical → streaming plan (DESIGN §5 step 4): turns DataFusion's optimized logical plan
//! of a view's query into [`StreamNode`]s, deriving each node's stream key and carrying
//! hidden key columns so that every row stays addressable. A query that cannot be
//! maintained incrementally is rejected with 0A000 naming the construct.
//!
//! Column layout invariant: a node's output starts with exactly the columns of the logical
//! plan node it implements (so DataFusion expressions compiled against the logical input
//! schema index correctly), followed by hidden columns.

mod agg;
pub(crate) mod interval;
mod join;
mod over_window;
pub mod temporal;
mod unnest;
mod window;

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::{Expr, FetchType, LogicalPlan, SkipType, SortExpr};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;

use super::window::WindowTable;
use crate::catalog::{Catalog, TableDesc};
use crate::common::window::{WindowKind, WindowSpec};
use crate::common::{Error, Result, SqlState, SqlType};
use crate::plan::{NodeKind, OverWindowNode, StreamNode, TopNNode};
use crate::state::TableId;

/// Hands out state table ids: fresh ones for a new view, the recorded ones when a view is
/// planned again at start-up.
pub enum TableIds<'a> {
    Fresh { catalog: &'a mut Catalog, allocated: Vec<TableId> },
    Replay(std::vec::IntoIter<TableId>),
}

impl TableIds<'_> {
    pub fn next_id(&mut self) -> Result<TableId> {
        match self {
            TableIds::Fresh { catalog, allocated } => {
                let id = catalog.allocate_table_id();
                allocated.push(id);
                Ok(id)
            }
            TableIds::Replay(ids) => ids
                .next()
                .ok_or_else(|| Error::internal("the view's plan needs more state tables than were recorded")),
        }
    }
}

/// The planner's revision: what new views are planned with. 0: the first; 1: two-phase
/// aggregation; 2: aggregates close groups behind a watermark (their stored group key
/// leads with the closing column); 3: joins free state behind a watermark on a key pair
/// (that pair leads their stored key); 4: views pass their watermarks on to views over
/// them; 5: a per-group top-N partitioned by a watermarked column frees groups behind it
/// (that column leads its stored key); 6: interval joins free each side's rows behind
/// the other side's watermark through a time condition between them; 7: interval joins
/// carry watermarks (held back by their bounds) and joins carry none on NULL-padded
/// sides; 8: views store arrays as text in Postgres' form (`{1,NULL}`, not Arrow's
/// `[1, ]`); 9: casts as Postgres computes them (`sql::pg_casts`: float to integer rounds
/// half to even, float to text prints `Infinity`, text to real checks its range); 10: text
/// to timestamp reads times without seconds (`sql::pg_timestamps`); 11: decimal literals
/// are numerics, `date ± interval` is a timestamp, text to interval reads Postgres' forms
/// (`sql::pg_interval_input`) and `timestamp - timestamp` is stored with whole days
/// (`justify_hours`); 12: quantified comparisons with subqueries (`> ALL (SELECT ..)`),
/// `EXISTS` in a select list, and `IN (SELECT ..)` there NULL as in Postgres
/// (`sql::quantified`), casts to `char(n)` cut and typed `character(n)` (`sql::pg_char`),
/// `to_char` with Postgres' templates (`sql::pg_to_char`), `||` / `-` of jsonb
/// (`sql::jsonb_edit`), lateral functions and subqueries over outer columns
/// (`sql::lateral`); 13: views store arrays of scalars as arrays (`integer[]`, an Arrow
/// list), not as their text. Views
/// keep the revision they were created with, so that a server that plans differently
/// still resumes them from their state.
pub const PLAN_REVISION: u32 = 13;

pub struct StreamPlanner<'a> {
    pub state: &'a SessionState,
    pub catalog: &'a Catalog,
    pub default_schema: &'a str,
    pub parallelism: usize,
    /// The planner revision to plan as (a view is re-planned at start-up as it was
    /// created: see [`PLAN_REVISION`]).
    pub revision: u32,
    pub ids: TableIds<'a>,
    /// Relations the query reads.
    pub dependencies: Vec<TableId>,
}

/// EMIT ON WINDOW CLOSE: the aggregate under the query's projections and filters shows
/// each group once, when the watermark of a GROUP BY column closes it; over windows show
/// each row once, when final; any other query whose output carries a watermark shows each
/// row once the watermark passes it (an EOWC sort on top).
pub fn emit_on_window_close(body: StreamNode, ids: &mut TableIds<'_>) -> Result<StreamNode> {
    let mut body = body;
    match close_below(&mut body) {
        Some(result) => result.map(|()| body),
        None => eowc_sort(body, ids),
    }
}

/// Marks the aggregate or over window under projections and filters as emitting on close;
/// None when there is neither.
fn close_below(node: &mut StreamNode) -> Option<Result<()>> {
    let hint = "group by a column that carries a watermark: window_start or window_end of a window table function over a watermarked relation, or the watermarked column itself";
    match &mut node.kind {
        NodeKind::Project { .. } | NodeKind::Filter { .. } => close_below(&mut node.inputs[0]),
        NodeKind::HashAgg(agg) if agg.closing_column.is_some() => {
            agg.emit_on_close = true;
            Some(Ok(()))
        }
        NodeKind::OverWindow(_) => Some(over_window::emit_on_window_close(node)),
        NodeKind::HashAgg(_) => Some(Err(Error::new(
            SqlState::FeatureNotSupported,
            "EMIT ON WINDOW CLOSE needs an aggregate whose GROUP BY has a column with a watermark",
        )
        .with_hint(hint))),
        _ => None,
    }
}

/// A plain query's rows, each shown once the watermark of its first watermarked column
/// passes it (in that column's order): an over window without calls.
fn eowc_sort(body: StreamNode, ids: &mut TableIds<'_>) -> Result<StreamNode> {
    let Some(&column) = body.watermark_columns().first() else {
        if full_join_below(&body) {
            return Err(Error::new(
                SqlState::FeatureNotSupported,
                "EMIT ON WINDOW CLOSE over a FULL join needs the first non-NULL of both sides' times in its output: either side's columns may be NULL-padded, so neither alone carries a watermark",
            )
            .with_hint("select coalesce(l.window_start, r.window_start) (or of the two watermarked times), or use a LEFT or RIGHT join"));
        }
        return Err(Error::new(
            SqlState::FeatureNotSupported,
            "EMIT ON WINDOW CLOSE is supported only on a window aggregate (GROUP BY over a watermarked stream), window functions ordered by a watermarked column, or a query whose rows carry a watermarked column",
        )
        .with_hint("keep the watermarked column (or window_start / window_end of a window table function over it) in the query's output"));
    };
    let node = OverWindowNode {
        partition_by: Vec::new(),
        order_by: vec![(column, SortOptions { descending: false, nulls_first: false })],
        calls: Vec::new(),
        table: ids.next_id()?,
        emit_on_close: true,
    };
    Ok(StreamNode {
        kind: NodeKind::OverWindow(node),
        schema: body.schema.clone(),
        visible: body.visible,
        stream_key: body.stream_key.clone(),
        parallelism: 1,
        inputs: vec![body],
    })
}

/// Whether the rows of `node` come from a FULL join through projections and filters.
fn full_join_below(node: &StreamNode) -> bool {
    match &node.kind {
        NodeKind::Project { .. } | NodeKind::Filter { .. } => full_join_below(&node.inputs[0]),
        NodeKind::HashJoin(join) => join.join_type == datafusion::logical_expr::JoinType::Full,
        _ => false,
    }
}

pub fn unsupported(what: impl std::fmt::Display) -> Error {
    Error::new(
        SqlState::FeatureNotSupported,
        format!("{what} is not supported in a materialized view: it cannot be maintained incrementally"),
    )
}

/// A schema of `fields`, every column nullable (a retraction or a padded join row can
/// carry NULL anywhere).
pub fn nullable_schema(fields: impl IntoIterator<Item = (String, DataType)>) -> SchemaRef {
    Arc::new(Schema::new(fields.into_iter().map(|(name, t)| Field::new(name, t, true)).collect::<Vec<_>>()))
}

fn fields_of(schema: &SchemaRef) -> Vec<(String, DataType)> {
    schema.fields().iter().map(|f| (f.name().clone(), f.data_type().clone())).collect()
}

impl StreamPlanner<'_> {
    /// The streaming plan of the query's body (without the Materialize on top).
    pub fn convert(&mut self, plan: &LogicalPlan) -> Result<StreamNode> {
        match plan {
            LogicalPlan::TableScan(scan) => self.table_scan(scan),
            LogicalPlan::Projection(projection) => {
                let input = self.convert(&projection.input)?;
                self.project(input, &projection.expr, projection.input.schema(), projection.schema.as_ref())
            }
            LogicalPlan::Filter(filter) => {
                if let Some(node) = window::group_top_n(self, filter)? {
                    return Ok(node);
                }
                if let Some(node) = temporal::temporal_filter(self, filter)? {
                    return Ok(node);
                }
                let input = self.convert(&filter.input)?;
                let predicate = self.physical(&filter.predicate, filter.input.schema())?;
                Ok(filter_node(input, predicate))
            }
            LogicalPlan::SubqueryAlias(alias) => self.convert(&alias.input),
            LogicalPlan::Aggregate(aggregate) => agg::aggregate(self, aggregate),
            LogicalPlan::Join(join) => join::join(self, join),
            LogicalPlan::Union(union) => self.union(union),
            LogicalPlan::Sort(sort) => match sort.fetch {
                // Without LIMIT, ORDER BY does not change which rows a view holds.
                None => self.convert(&sort.input),
                Some(limit) => self.top_n(&sort.input, &sort.expr, 0, limit),
            },
            LogicalPlan::Limit(limit) => {
                let skip = match limit.get_skip_type()? {
                    SkipType::Literal(n) => n,
                    SkipType::UnsupportedExpr => return Err(unsupported("a non-constant OFFSET")),
                };
                let fetch = match limit.get_fetch_type()? {
                    FetchType::Literal(Some(n)) => n,
                    FetchType::Literal(None) => return Err(unsupported("OFFSET without LIMIT")),
                    FetchType::UnsupportedExpr => return Err(unsupported("a non-constant LIMIT")),
                };
                match limit.input.as_ref() {
                    LogicalPlan::Sort(sort) => self.top_n(&sort.input, &sort.expr, skip, fetch),
                    _ => Err(unsupported("LIMIT without ORDER BY")),
                }
            }
            LogicalPlan::Window(window) => over_window::over_window(self, window),
            LogicalPlan::Extension(extension) => {
                match extension.node.as_any().downcast_ref::<crate::sql::asof_join::AsofJoinNode>() {
                    Some(asof) => join::asof_join(self, asof),
                    None => Err(unsupported(format!("the plan node {}", extension.node.name()))),
                }
            }
            LogicalPlan::Distinct(_) => Err(unsupported("DISTINCT ON")),
            LogicalPlan::Values(values) => self.values(&values.schema, &values.values),
            LogicalPlan::Unnest(node) => unnest::unnest(self, node),
            LogicalPlan::EmptyRelation(empty) => {
                let rows = if empty.produce_one_row { vec![Vec::new()] } else { Vec::new() };
                self.values(&empty.schema, &rows)
            }
            other => Err(unsupported(format!("the plan node {}", other.display()))),
        }
    }

    pub fn physical(&self, expr: &Expr, schema: &DFSchema) -> Result<Arc<dyn PhysicalExpr>> {
        if temporal::calls_now(expr) {
            return Err(temporal::now_outside_filter(expr));
        }
        if expr.is_volatile() {
            return Err(unsupported(format!("the volatile expression {expr}")));
        }
        Ok(self.state.create_physical_expr(expr.clone(), schema)?)
    }

    /// An output column that calls `PROCTIME()`: evaluated as rows pass, so only over an
    /// append-only input (see `sql::proctime`).
    fn processing_time(
        &self,
        expr: &Expr,
        input: &StreamNode,
        schema: &DFSchema,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        if !input.is_append_only() {
            return Err(crate::sql::proctime::over_changes(expr));
        }
        if temporal::calls_now(expr) {
            return Err(temporal::now_outside_filter(expr));
        }
        if crate::sql::proctime::other_volatile(expr) {
            return Err(unsupported(format!("the volatile expression {expr}")));
        }
        Ok(self.state.create_physical_expr(expr.clone(), schema)?)
    }

    fn table_scan(&mut self, scan: &datafusion::logical_expr::TableScan) -> Result<StreamNode> {
        let provider = datafusion::datasource::source_as_provider(&scan.source).ok();
        if let Some(window) = provider.as_ref().and_then(|p| p.downcast_ref::<WindowTable>()) {
            let source = self.relation(&window.relation)?;
            return Ok(project_scan(window_node(source, window.spec.clone()), scan));
        }
        if let Some(versioned) =
            provider.as_ref().and_then(|p| p.downcast_ref::<crate::sql::temporal_join::VersionedTable>())
        {
            let source = self.relation(&versioned.relation)?;
            return Ok(project_scan(source, scan));
        }
        let schema_name = scan.table_name.schema().unwrap_or(self.default_schema);
        let desc = self.catalog.table(schema_name, scan.table_name.table()).cloned().ok_or_else(|| {
            Error::new(SqlState::UndefinedTable, format!("relation \"{}\" does not exist", scan.table_name))
        })?;
        let source = self.relation(&desc)?;
        Ok(project_scan(source, scan))
    }

    /// The change stream of a table, view or source the query reads.
    fn relation(&mut self, desc: &Arc<TableDesc>) -> Result<StreamNode> {
        if desc.is_sink() {
            return Err(crate::batch::sink_not_readable(&desc.name));
        }
        if !self.dependencies.contains(&desc.id) {
            self.dependencies.push(desc.id);
        }
        let positions = if desc.is_source() { Some(self.ids.next_id()?) } else { None };
        source_node(desc, positions)
    }

    /// A projection of `input`: `exprs` over the logical input schema, then the input's
    /// key columns the projection drops, hidden.
    fn project(
        &mut self,
        input: StreamNode,
        exprs: &[Expr],
        input_schema: &DFSchema,
        output: &DFSchema,
    ) -> Result<StreamNode> {
        let physical: Vec<Arc<dyn PhysicalExpr>> = exprs
            .iter()
            .map(|e| match crate::sql::proctime::calls_proctime(e) {
                true => self.processing_time(e, &input, input_schema),
                false => self.physical(e, input_schema),
            })
            .collect::<Result<_>>()?;
        let names: Vec<(String, DataType)> =
            output.fields().iter().map(|f| (f.name().clone(), f.data_type().clone())).collect();
        Ok(keep_keys(input, physical, names))
    }

    fn union(&mut self, union: &datafusion::logical_expr::Union) -> Result<StreamNode> {
        let inputs: Vec<StreamNode> = union.inputs.iter().map(|i| self.convert(i)).collect::<Result<_>>()?;
        let mut fields: Vec<(String, DataType)> =
            union.schema.fields().iter().map(|f| (f.name().clone(), f.data_type().clone())).collect();
        let visible = fields.len();
        fields.push(("_union_input".into(), DataType::Int32));
        fields.push(("_union_key".into(), DataType::Binary));
        Ok(StreamNode {
            kind: NodeKind::Union,
            schema: nullable_schema(fields),
            visible,
            stream_key: Some(vec![visible, visible + 1]),
            parallelism: 1,
            inputs,
        })
    }

    /// ORDER BY ... LIMIT: a global top-N, one instance.
    fn top_n(
        &mut self,
        input: &LogicalPlan,
        order: &[SortExpr],
        offset: usize,
        limit: usize,
    ) -> Result<StreamNode> {
        let node = self.convert(input)?;
        let (node, order_by) = self.sort_columns(node, order, input.schema())?;
        let table = self.ids.next_id()?;
        Ok(StreamNode {
            kind: NodeKind::TopN(TopNNode {
                group_by: Vec::new(),
                order_by,
                offset,
                limit,
                with_rank: false,
                table,
                closes: false,
            }),
            schema: node.schema.clone(),
            visible: node.visible,
            stream_key: node.stream_key.clone(),
            parallelism: 1,
            inputs: vec![node],
        })
    }

    /// Sort keys as input columns; expressions that are not columns are computed into
    /// hidden columns first.
    fn sort_columns(
        &mut self,
        node: StreamNode,
        order: &[SortExpr],
        schema: &DFSchema,
    ) -> Result<(StreamNode, Vec<(usize, SortOptions)>)> {
        let exprs: Vec<Expr> = order.iter().map(|s| s.expr.clone()).collect();
        let (node, columns) = self.columns_for(node, &exprs, schema)?;
        let order_by = columns
            .into_iter()
            .zip(order)
            .map(|(column, sort)| {
                (column, SortOptions { descending: !sort.asc, nulls_first: sort.nulls_first })
            })
            .collect();
        Ok((node, order_by))
    }

    /// The input column of each expression, adding hidden computed columns for those
    /// that are not plain columns.
    pub fn columns_for(
        &mut self,
        node: StreamNode,
        exprs: &[Expr],
        schema: &DFSchema,
    ) -> Result<(StreamNode, Vec<usize>)> {
        let mut extra: Vec<(Arc<dyn PhysicalExpr>, DataType)> = Vec::new();
        let mut columns = Vec::with_capacity(exprs.len());
        for expr in exprs {
            let physical = self.physical(expr, schema)?;
            match physical.downcast_ref::<Column>() {
                Some(column) => columns.push(column.index()),
                None => {
                    columns.push(node.schema.fields().len() + extra.len());
                    let data_type = physical.data_type(node.schema.as_ref())?;
                    extra.push((physical, data_type));
                }
            }
        }
        if extra.is_empty() {
            return Ok((node, columns));
        }
        let mut exprs: Vec<Arc<dyn PhysicalExpr>> = (0..node.schema.fields().len())
            .map(|i| Arc::new(Column::new(node.schema.field(i).name(), i)) as Arc<dyn PhysicalExpr>)
            .collect();
        let mut fields = fields_of(&node.schema);
        for (i, (expr, data_type)) in extra.into_iter().enumerate() {
            exprs.push(expr);
            fields.push((format!("_computed{i}"), data_type));
        }
        Ok((project_in_place(node, exprs, fields), columns))
    }
}

/// A Project over `input` that keeps its visible columns, key positions and parallelism
/// (it recomputes or appends columns).
pub fn project_in_place(
    input: StreamNode,
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    fields: impl IntoIterator<Item = (String, DataType)>,
) -> StreamNode {
    StreamNode {
        kind: NodeKind::Project { exprs },
        schema: nullable_schema(fields),
        visible: input.visible,
        stream_key: input.stream_key.clone(),
        parallelism: input.parallelism,
        inputs: vec![input],
    }
}

/// A Filter over `input`: same columns, key and parallelism.
fn filter_node(input: StreamNode, predicate: Arc<dyn PhysicalExpr>) -> StreamNode {
    StreamNode {
        kind: NodeKind::Filter { predicate },
        schema: input.schema.clone(),
        visible: input.visible,
        stream_key: input.stream_key.clone(),
        parallelism: input.parallelism,
        inputs: vec![input],
    }
}

impl StreamPlanner<'_> {
    /// Constant rows: each expression evaluated once, at planning, with the row number as
    /// the hidden key column.
    fn values(&mut self, schema: &DFSchema, rows: &[Vec<Expr>]) -> Result<StreamNode> {
        use datafusion::arrow::array::{Int64Array, RecordBatchOptions};
        let one_row = RecordBatch::try_new_with_options(
            Arc::new(datafusion::arrow::datatypes::Schema::empty()),
            Vec::new(),
            &RecordBatchOptions::new().with_row_count(Some(1)),
        )?;
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len() + 1);
        for (j, field) in schema.fields().iter().enumerate() {
            let mut values = Vec::with_capacity(rows.len());
            for row in rows {
                let physical = self.physical(&row[j], &DFSchema::empty())?;
                let value = physical.evaluate(&one_row)?.into_array(1)?;
                values.push(ScalarValue::try_from_array(&value, 0)?.cast_to(field.data_type())?);
            }
            columns.push(match values.is_empty() {
                true => datafusion::arrow::array::new_empty_array(field.data_type()),
                false => ScalarValue::iter_to_array(values)?,
            });
        }
        columns.push(Arc::new(Int64Array::from_iter_values(0..rows.len() as i64)));
        let visible = schema.fields().len();
        let fields = schema.fields().iter().map(|f| (f.name().clone(), f.data_type().clone()));
        let schema = nullable_schema(fields.chain([("_row".to_string(), DataType::Int64)]));
        let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
        let rows = RecordBatch::try_new_with_options(schema.clone(), columns, &options)?;
        Ok(StreamNode {
            kind: NodeKind::Values { rows },
            schema,
            visible,
            stream_key: Some(vec![visible]),
            parallelism: 1,
            inputs: Vec::new(),
        })
    }
}

/// The source of a table or view: its stored rows (hidden columns last) and its key; or of
/// a connector source, whose split positions this dataflow keeps in `positions`.
fn source_node(desc: &Arc<TableDesc>, positions: Option<TableId>) -> Result<StreamNode> {
    let visible = desc.columns.iter().filter(|c| !c.hidden).count();
    if desc.columns[..visible].iter().any(|c| c.hidden) {
        return Err(Error::internal(format!("hidden columns of {} are not last", desc.name)));
    }
    let fields = desc.columns.iter().map(|c| (c.name.clone(), c.sql_type.to_arrow()));
    Ok(StreamNode {
        kind: NodeKind::Source { relation: desc.clone(), positions },
        schema: nullable_schema(fields),
        visible,
        stream_key: Some(desc.primary_key.clone()),
        parallelism: 1,
        inputs: Vec::new(),
    })
}

/// The columns of `node` a scan reads (all when it has no projection).
fn project_scan(node: StreamNode, scan: &datafusion::logical_expr::TableScan) -> StreamNode {
    let Some(projection) = &scan.projection else { return node };
    let exprs: Vec<Arc<dyn PhysicalExpr>> = projection
        .iter()
        .map(|&i| Arc::new(Column::new(node.schema.field(i).name(), i)) as Arc<dyn PhysicalExpr>)
        .collect();
    let names: Vec<(String, DataType)> =
        projection.iter().map(|&i| fields_of(&node.schema)[i].clone()).collect();
    keep_keys(node, exprs, names)
}

/// A window table function over `input`: its visible columns, `window_start`,
/// `window_end`, then its hidden columns. A row of HOP or CUMULATE appears in several
/// windows, so the window joins the key.
fn window_node(input: StreamNode, spec: WindowSpec) -> StreamNode {
    let visible = input.visible;
    let fields = fields_of(&input.schema);
    let time_type = spec.time_type.clone();
    let schema = nullable_schema(
        fields[..visible]
            .iter()
            .cloned()
            .chain([("window_start".to_string(), time_type.clone()), ("window_end".to_string(), time_type)])
            .chain(fields[visible..].iter().cloned()),
    );
    let stream_key = input.stream_key.as_ref().map(|key| {
        let mut key: Vec<usize> = key.iter().map(|&k| if k < visible { k } else { k + 2 }).collect();
        match spec.kind {
            WindowKind::Tumble => {}
            WindowKind::Hop => key.push(visible),
            WindowKind::Cumulate => key.push(visible + 1),
        }
        key
    });
    StreamNode {
        kind: NodeKind::WindowTvf(spec),
        schema,
        visible: visible + 2,
        stream_key,
        parallelism: input.parallelism,
        inputs: vec![input],
    }
}

/// A Project computing `exprs` (named `names`), followed by the input's key columns that
/// the expressions do not already pass through, hidden.
fn keep_keys(
    input: StreamNode,
    mut exprs: Vec<Arc<dyn PhysicalExpr>>,
    mut names: Vec<(String, DataType)>,
) -> StreamNode {
    let visible = exprs.len();
    let stream_key = input.stream_key.as_ref().map(|key| {
        key.iter()
            .map(|&k| {
                let passed = exprs[..visible]
                    .iter()
                    .position(|e| e.downcast_ref::<Column>().is_some_and(|c| c.index() == k));
                passed.unwrap_or_else(|| {
                    exprs.push(Arc::new(Column::new(input.schema.field(k).name(), k)));
                    names.push((
                        format!("_key{}", exprs.len() - 1),
                        input.schema.field(k).data_type().clone(),
                    ));
                    exprs.len() - 1
                })
            })
            .collect::<Vec<usize>>()
    });
    StreamNode {
        kind: NodeKind::Project { exprs },
        schema: nullable_schema(names),
        visible,
        stream_key,
        parallelism: input.parallelism,
        inputs: vec![input],
    }
}

/// The column type a view stores for a query column of type `data_type`.
pub fn stored_type(data_type: &DataType, revision: u32) -> DataType {
    match data_type {
        // Before revision 13 views stored arrays as text (see [`PLAN_REVISION`]).
        list if revision < 13 && crate::common::types::is_list(list) => DataType::Utf8,
        // ROW_NUMBER() and other unsigned results are bigint in Postgres.
        DataType::UInt64 | DataType::UInt32 => DataType::Int64,
        other => SqlType::from_arrow(&Field::new("", other.clone(), true)).to_arrow(),
    }
}

/// `expr` as EXPLAIN shows it: constants as Postgres would print them (`10 mins`, not
/// DataFusion's debug form of an interval).
pub fn shown(expr: &Expr) -> String {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    let constants_as_text = expr.clone().transform(|e| match e {
        Expr::Literal(value, _) => {
            let text = value
                .to_array()
                .ok()
                .and_then(|a| datafusion::arrow::util::display::array_value_to_string(&a, 0).ok())
                .unwrap_or_else(|| value.to_string());
            Ok(Transformed::yes(Expr::Column(datafusion::common::Column::new_unqualified(text))))
        }
        other => Ok(Transformed::no(other)),
    });
    constants_as_text.map(|t| t.data.to_string()).unwrap_or_else(|_| expr.to_string())
}
