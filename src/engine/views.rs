//! CREATE / DROP / SHOW MATERIALIZED VIEW, EXPLAIN CREATE MATERIALIZED VIEW, and the
//! restart of every view's dataflow from its checkpointed state.
//!
//! A view is created at an epoch boundary ([`crate::stream::coordinator::Boundary`]):
//! with every table writer locked right after a commit, the committed snapshot holds
//! exactly every table and view, so the new dataflow backfills from that snapshot and
//! subscribes to the change streams at the same instant — no gap, no duplicate. The
//! catalog entry and the backfilled state commit together in the next epoch, which the
//! statement waits for.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::execution::context::SessionContext;
use datafusion::physical_expr::expressions::{CastExpr, Column};
use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr};
use datafusion::sql::sqlparser::ast::{self, ObjectName};

use super::session::Outcome;
use super::{Database, query};
use crate::batch::SabotCatalog;
use crate::catalog::{Catalog, CatalogChange, ColumnDesc, TableDesc, ViewDef};
use crate::common::{Error, Result, SqlState, SqlType};
use crate::plan::{NodeKind, StreamNode};
use crate::sql::ddl::{normalize_ident, resolve_name};
use crate::sql::parser::{Statement, parse};
use crate::sql::stream_plan::{
    PLAN_REVISION, StreamPlanner, TableIds, project_in_place, stored_type, unsupported,
};
use crate::state::{Epoch, Snapshot, TableId};
use crate::stream::coordinator::Boundary;
use crate::stream::dataflow::{Dataflow, DataflowEnv};

/// The running dataflows, by view id.
pub(super) type Dataflows = parking_lot::Mutex<HashMap<TableId, Dataflow>>;

/// What CREATE MATERIALIZED VIEW asks for.
pub(super) struct CreateView<'a> {
    pub name: &'a ObjectName,
    pub columns: Vec<String>,
    pub query: &'a ast::Query,
    pub if_not_exists: bool,
    pub schema: String,
    pub parallelism: usize,
    /// `CREATE SINK`: the sink's connector (its options checked); the view's rows go to
    /// it instead of a state table.
    pub sink: Option<crate::catalog::ConnectorDef>,
    /// The query ended with EMIT ON WINDOW CLOSE.
    pub emit_on_window_close: bool,
    /// `CREATE INDEX`: the view is the index's entries (see [`crate::catalog::IndexDef`]).
    pub index: Option<IndexRequest>,
}

/// What CREATE INDEX adds to the view of its entries, whose query selects `projected`.
pub(super) struct IndexRequest {
    pub table: TableId,
    /// Indexes into the relation's columns: the key (repeats allowed, as in Postgres), the
    /// INCLUDE columns, and each column the query selects, once.
    pub key_columns: Vec<usize>,
    pub include_columns: Vec<usize>,
    pub projected: Vec<usize>,
}

impl IndexRequest {
    /// The index's key (its key columns, then the relation's key as planned, `table_key`)
    /// and its catalog entry.
    fn into_def(self, table_key: Vec<usize>) -> Result<(Vec<usize>, crate::catalog::IndexDef)> {
        let mut key = Vec::with_capacity(self.key_columns.len() + table_key.len());
        for column in &self.key_columns {
            let position = self.projected.iter().position(|p| p == column);
            key.push(position.ok_or_else(|| Error::internal("an index key column is not selected"))?);
        }
        let indexed = key.clone();
        key.extend(table_key.iter().filter(|i| !indexed.contains(i)));
        let def = crate::catalog::IndexDef {
            table: self.table,
            key_columns: self.key_columns,
            include_columns: self.include_columns,
            table_key,
        };
        Ok((key, def))
    }
}

impl Database {
    pub(super) async fn create_materialized_view(
        &self,
        create: CreateView<'_>,
        explain: bool,
    ) -> Result<Outcome> {
        let _ddl = self.ddl_lock.lock().await;
        let tag = match (&create.sink, &create.index) {
            (Some(_), _) => "CREATE SINK",
            (_, Some(_)) => "CREATE INDEX",
            _ => "CREATE MATERIALIZED VIEW",
        };
        let (schema, name) = resolve_name(create.name, &create.schema)?;
        let lookup = self.catalog();
        if !lookup.schema_exists(&schema) {
            return Err(Error::new(SqlState::UndefinedSchema, format!("schema \"{schema}\" does not exist")));
        }
        if lookup.table(&schema, &name).is_some() && !explain {
            if create.if_not_exists {
                return Ok(Outcome::command(tag)
                    .with_notice(format!("relation \"{name}\" already exists, skipping")));
            }
            return Err(Error::new(SqlState::DuplicateTable, format!("relation \"{name}\" already exists")));
        }
        let mut next = (*lookup).clone();
        let id = next.allocate_table_id();
        // The clause stays with the query text, from which the view is planned again.
        let mut query_sql = create.query.to_string();
        if create.emit_on_window_close {
            query_sql.push_str(" EMIT ON WINDOW CLOSE");
        }
        let ctx = self.planning_context(&lookup, &create.schema);
        let ids = TableIds::Fresh { catalog: &mut next, allocated: Vec::new() };
        let planned = plan_view(
            &ctx,
            &lookup,
            ids,
            &query_sql,
            &create.schema,
            &create.columns,
            (create.parallelism, PLAN_REVISION),
        )
        .await?;
        let (primary_key, index) = match create.index {
            Some(request) => {
                let (key, def) = request.into_def(planned.key)?;
                (key, Some(def))
            }
            None => (planned.key, None),
        };
        let desc = Arc::new(TableDesc {
            id,
            schema,
            name,
            columns: planned.columns,
            primary_key,
            view: Some(ViewDef {
                query: query_sql,
                schema_search: create.schema.clone(),
                dependencies: planned.dependencies,
                state_tables: planned.state_tables,
                parallelism: create.parallelism,
                plan_revision: PLAN_REVISION,
                plan: Vec::new(),
                watermark_columns: planned.body.watermark_columns(),
                sink: create.sink.clone(),
                index,
            }),
            connector: None,
            append_only: false,
            watermark: None,
            plain_view: None,
            checks: Vec::new(),
            key_constraint: None,
            uniques: Vec::new(),
        });
        if let Some(def) = &create.sink {
            check_sink(def, &desc, &root_node(planned.body.clone(), desc.clone()))?;
        }
        let root = root_node(planned.body, desc.clone());
        let explain_lines = root.explain();
        if explain {
            return Ok(Outcome::text_rows("EXPLAIN", "QUERY PLAN", explain_lines));
        }
        let mut desc = Arc::unwrap_or_clone(desc);
        if let Some(view) = desc.view.as_mut() {
            view.plan = explain_lines;
        }
        let desc = Arc::new(desc);
        let root = root_node(root.inputs.into_iter().next().expect("the root has an input"), desc.clone());

        let epoch = {
            let mut boundary = self.coordinator.boundary().await?;
            let snapshot = boundary.snapshot.clone();
            let start = boundary.epoch;
            self.start_dataflow(&root, &mut boundary, Some(snapshot), start)?;
            match self.stage_catalog_changes(vec![CatalogChange::CreateTable(desc.clone())]) {
                Ok(epoch) => epoch,
                Err(e) => {
                    if let Some(dataflow) = self.dataflows.lock().remove(&desc.id) {
                        boundary.unregister(dataflow.id);
                    }
                    return Err(e);
                }
            }
        };
        self.coordinator.wait_committed(epoch).await?;
        tracing::info!(relation = %desc.qualified_name(), kind = desc.kind_name(), epoch, "created");
        Ok(Outcome::command(tag))
    }

    pub(super) fn planning_context(&self, catalog: &Arc<Catalog>, schema: &str) -> SessionContext {
        let snapshot = self.coordinator.store().snapshot();
        query::context(SabotCatalog::new(catalog.clone(), snapshot), schema, None, self.statement_pool(None))
    }

    /// Starts a view's dataflow at a boundary and registers its actors.
    fn start_dataflow(
        &self,
        root: &StreamNode,
        boundary: &mut Boundary<'_>,
        backfill: Option<Arc<dyn Snapshot>>,
        start_epoch: Epoch,
    ) -> Result<()> {
        let capacity = self.config.change_channel_messages_max;
        let snapshot = boundary.snapshot.clone();
        let dataflow = {
            let dataflows = self.dataflows.lock();
            let acks = boundary.ack_sender();
            let mut subscribe = |relation: &Arc<TableDesc>| -> Result<_> {
                if relation.is_view() {
                    let upstream = dataflows.get(&relation.id).ok_or_else(|| {
                        Error::internal(format!("the dataflow of {} is not running", relation.name))
                    })?;
                    Ok(upstream.outlet.subscribe(capacity))
                } else {
                    let writer = boundary.writer(relation.id).ok_or_else(|| {
                        Error::new(
                            SqlState::UndefinedTable,
                            format!("relation \"{}\" does not exist", relation.name),
                        )
                    })?;
                    writer.subscribe(capacity)
                }
            };
            let reader = match &root.kind {
                NodeKind::Materialize { view } | NodeKind::Sink { sink: view } => view.qualified_name(),
                _ => String::new(),
            };
            let mut open_source =
                |relation: &Arc<TableDesc>, dataflow| self.source_setup(relation, dataflow, &reader);
            let mut open_sink = |sink: &Arc<TableDesc>| -> Result<_> {
                let def = sink.view.as_ref().and_then(|v| v.sink.as_ref()).ok_or_else(|| {
                    Error::internal(format!("{} has no sink connector", sink.qualified_name()))
                })?;
                let sealed = crate::stream::sink::committed_seal(snapshot.as_ref(), sink.id)?;
                let opened = crate::connector::sink(def, &sink.name)?.open(sealed)?;
                Ok((opened, self.coordinator.subscribe_committed()))
            };
            let coordinator = self.coordinator.clone();
            let mut barriers = move |dataflow| coordinator.register_source(dataflow).0;
            let mut env = DataflowEnv {
                store: self.coordinator.store().clone(),
                acks,
                channel_capacity: capacity,
                backfill,
                start_epoch,
                subscribe: &mut subscribe,
                open_source: &mut open_source,
                open_sink: &mut open_sink,
                barriers: &mut barriers,
                runtime: self.compute.handle(),
                memory: self.state_memory.clone(),
            };
            Dataflow::start(root, &mut env)?
        };
        boundary.register(dataflow.id, dataflow.actors, &dataflow.view.qualified_name());
        self.dataflows.lock().insert(dataflow.view.id, dataflow);
        Ok(())
    }

    /// Re-plans every view from its SQL and starts its dataflow over its committed state.
    pub(super) async fn restore_views(&self) -> Result<()> {
        let catalog = self.catalog();
        let mut views: Vec<Arc<TableDesc>> = catalog.tables().filter(|t| t.is_view()).cloned().collect();
        views.sort_by_key(|v| v.id);
        if views.is_empty() {
            return Ok(());
        }
        let mut boundary = self.coordinator.boundary().await?;
        for desc in views {
            let view = desc.view.as_ref().expect("filtered to views");
            let ctx = self.planning_context(&catalog, &view.schema_search);
            let ids = TableIds::Replay(view.state_tables.clone().into_iter());
            let columns: Vec<String> =
                desc.columns.iter().filter(|c| !c.hidden).map(|c| c.name.clone()).collect();
            let planned = plan_view(
                &ctx,
                &catalog,
                ids,
                &view.query,
                &view.schema_search,
                &columns,
                (view.parallelism, view.plan_revision),
            )
            .await?;
            let root = root_node(planned.body, desc.clone());
            if crate::plan::fingerprint(&root.explain()) != crate::plan::fingerprint(&view.plan) {
                return Err(Error::internal(format!(
                    "the plan of materialized view {} changed since it was created; this version cannot resume it from its state",
                    desc.qualified_name()
                ))
                .with_detail(format!("created as:\n{}\nplanned now:\n{}", view.plan.join("\n"), root.explain().join("\n"))));
            }
            let epoch = boundary.epoch;
            self.start_dataflow(&root, &mut boundary, None, epoch)?;
            tracing::info!(view = %desc.qualified_name(), epoch, "view resumed from its checkpoint; no backfill");
        }
        Ok(())
    }

    /// Drops views (with `cascade`, their dependents too) at a boundary, with the other
    /// catalog changes of the statement.
    pub(super) async fn drop_with_views(
        &self,
        targets: Vec<Arc<TableDesc>>,
        cascade: bool,
        mut others: Vec<CatalogChange>,
    ) -> Result<Vec<String>> {
        let catalog = self.catalog();
        let mut doomed: Vec<Arc<TableDesc>> = Vec::new();
        let mut notices = Vec::new();
        for target in &targets {
            let dependents: Vec<Arc<TableDesc>> = catalog
                .dependents_closure(target.id)
                .into_iter()
                .filter(|d| !targets.iter().any(|t| t.id == d.id))
                .collect();
            // Indexes go with their relation, as in Postgres: they need no CASCADE.
            let blocking: Vec<&Arc<TableDesc>> = dependents.iter().filter(|d| !d.is_index()).collect();
            if !blocking.is_empty() && !cascade {
                let detail: Vec<String> = blocking
                    .iter()
                    .map(|d| {
                        format!(
                            "{} {} depends on {} {}",
                            d.kind_name(),
                            d.name,
                            target.kind_name(),
                            target.name
                        )
                    })
                    .collect();
                return Err(Error::new(
                    SqlState::DependentObjectsStillExist,
                    format!(
                        "cannot drop {} {} because other objects depend on it",
                        target.kind_name(),
                        target.name
                    ),
                )
                .with_detail(detail.join("\n"))
                .with_hint("Use DROP ... CASCADE to drop the dependent objects too."));
            }
            for dependent in dependents {
                if !doomed.iter().any(|d| d.id == dependent.id) {
                    if dependent.is_index() {
                        doomed.push(dependent);
                        continue;
                    }
                    notices.push(format!("drop cascades to {} {}", dependent.kind_name(), dependent.name));
                    doomed.push(dependent);
                }
            }
        }
        doomed.extend(targets.iter().filter(|t| t.is_view()).cloned());
        doomed.sort_by_key(|v| std::cmp::Reverse(v.id));
        doomed.dedup_by_key(|v| v.id);
        let mut changes: Vec<CatalogChange> = doomed.iter().cloned().map(CatalogChange::DropTable).collect();
        changes.extend(targets.iter().filter(|t| !t.is_view()).cloned().map(CatalogChange::DropTable));
        changes.append(&mut others);
        let epoch = {
            let boundary = self.coordinator.boundary().await?;
            for view in &doomed {
                if let Some(dataflow) = self.dataflows.lock().remove(&view.id) {
                    boundary.unregister(dataflow.id);
                }
            }
            self.stage_catalog_changes(changes)?
        };
        self.coordinator.wait_committed(epoch).await?;
        Ok(notices)
    }
}

pub(super) struct PlannedView {
    pub body: StreamNode,
    columns: Vec<ColumnDesc>,
    key: Vec<usize>,
    dependencies: Vec<TableId>,
    state_tables: Vec<TableId>,
}

/// Plans `query_sql` into the body of a view's dataflow and the view's columns.
pub(super) async fn plan_view(
    ctx: &SessionContext,
    catalog: &Catalog,
    mut ids: TableIds<'_>,
    query_sql: &str,
    schema: &str,
    column_names: &[String],
    (parallelism, revision): (usize, u32),
) -> Result<PlannedView> {
    let legacy = as_planned_at(ctx, revision);
    let ctx = legacy.as_ref().unwrap_or(ctx);
    let (statement, on_window_close) = match parse(query_sql)?.pop() {
        Some(Statement::Sql(statement)) if matches!(statement.as_ref(), ast::Statement::Query(_)) => {
            (*statement, false)
        }
        Some(Statement::EmitOnWindowClose(statement))
            if matches!(statement.as_ref(), ast::Statement::Query(_)) =>
        {
            (*statement, true)
        }
        _ => return Err(Error::new(SqlState::SyntaxError, "a materialized view needs a query")),
    };
    // now() is kept for a temporal filter, not folded into the time of planning.
    crate::sql::stream_plan::temporal::register(ctx);
    let logical = query::plan_view_query(ctx, &query::name_subqueries(&statement)).await?;
    // Uncorrelated scalar subqueries become joins with their one-row result (a cross join
    // on a constant key), not values computed once before the query runs.
    let mut optimizing = ctx.state();
    optimizing.config_mut().options_mut().optimizer.enable_physical_uncorrelated_scalar_subquery = false;
    let optimized = optimizing.optimize(&logical)?;
    let state = ctx.state();
    let mut planner = StreamPlanner {
        state: &state,
        catalog,
        default_schema: schema,
        parallelism: parallelism.max(1),
        revision,
        ids: std::mem::replace(&mut ids, TableIds::Replay(Vec::new().into_iter())),
        dependencies: Vec::new(),
    };
    let mut body = planner.convert(&optimized)?;
    if on_window_close {
        body = crate::sql::stream_plan::emit_on_window_close(body, &mut planner.ids)?;
    }
    let mut dependencies = std::mem::take(&mut planner.dependencies);
    // The plain views the query names are inlined; the view depends on them too.
    for view in query::expand_views(ctx, &mut statement.clone())? {
        if !dependencies.contains(&view) {
            dependencies.push(view);
        }
    }
    let state_tables = match planner.ids {
        TableIds::Fresh { allocated, .. } => allocated,
        TableIds::Replay(rest) => {
            if rest.len() > 0 {
                return Err(Error::internal("the view's plan needs fewer state tables than were recorded"));
            }
            Vec::new()
        }
    };
    let Some(key) = body.stream_key.clone() else { return Err(unsupported("a query without a row key")) };
    let arrow = optimized.schema().as_arrow().clone();
    let visible = output_column_names(&statement, &arrow, column_names, "CREATE MATERIALIZED VIEW")?;
    // Struct values are not stored (a cast to text would lose them).
    if let Some(i) =
        (0..body.visible).find(|&i| matches!(body.schema.field(i).data_type(), DataType::Struct(_)))
    {
        return Err(Error::unsupported(format!(
            "STRUCT column \"{}\" in a materialized view or sink",
            visible[i]
        ))
        .with_hint("select its fields instead, as (column).field"));
    }
    let body = cast_to_stored(body, revision)?;
    let columns: Vec<ColumnDesc> = body
        .schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, field)| ColumnDesc {
            name: if i < body.visible { visible[i].clone() } else { format!("_hidden{i}") },
            // The query's own field keeps what the type's Arrow form leaves out
            // (`varchar(n)`, `jsonb`) when the stored type is the same.
            sql_type: match arrow.fields().get(i) {
                Some(planned) if i < body.visible && planned.data_type() == field.data_type() => {
                    SqlType::from_arrow(planned)
                }
                _ => SqlType::from_arrow(field),
            },
            nullable: true,
            default: None,
            hidden: i >= body.visible,
        })
        .collect();
    Ok(PlannedView { body, columns, key, dependencies, state_tables })
}

/// The names of a view's columns: the explicit column list, else Postgres' names for the
/// query's columns.
pub(super) fn output_column_names(
    statement: &ast::Statement,
    schema: &datafusion::arrow::datatypes::Schema,
    column_names: &[String],
    command: &str,
) -> Result<Vec<String>> {
    let names = query::postgres_column_names(statement, schema);
    let mut visible: Vec<String> = names.fields().iter().map(|f| f.name().clone()).collect();
    if !column_names.is_empty() {
        if column_names.len() > visible.len() {
            return Err(Error::new(
                SqlState::SyntaxError,
                format!("{command} specifies more column names than columns"),
            ));
        }
        visible.splice(..column_names.len(), column_names.iter().cloned());
    }
    for (i, name) in visible.iter().enumerate() {
        if visible[..i].contains(name) {
            return Err(Error::new(
                SqlState::DuplicateColumn,
                format!("column \"{name}\" specified more than once"),
            ));
        }
    }
    Ok(visible)
}

/// `ctx` as views of plan revision `revision` were planned, where that differs from
/// today's: before 9 with DataFusion's casts (`sql::pg_casts`), before 10 with its
/// text-to-timestamp casts (`sql::pg_timestamps`), before 11 with float literals, floats
/// beside numerics computed as decimals, dates plus intervals as dates and DataFusion's
/// text-to-interval casts (`sql::pg_numeric`, `sql::pg_date_arithmetic`,
/// `sql::pg_interval_input`), and DataFusion's `coalesce`-like and `ceil`-like functions;
/// before 12 with the subquery tests of `sql::quantified` as they were, casts to
/// `char(n)` as text, DataFusion's `to_char` (`sql::pg_to_char`), `||` / `-` of jsonb
/// as of text (`sql::jsonb_edit`), text cast to arrays as one element
/// (`sql::pg_array_input`), jsonb columns read as text by `to_jsonb` and the like, and
/// casts that keep their operand's type mark (`sql::jsonb_marks`). The context
/// carries the revision ([`query::PlanRevision`]) for the rewrites before planning.
fn as_planned_at(ctx: &SessionContext, revision: u32) -> Option<SessionContext> {
    use crate::sql::{
        jsonb_edit, jsonb_marks, pg_array_input, pg_date_arithmetic, pg_interval_input, pg_numeric,
        pg_timestamps,
    };
    if revision >= PLAN_REVISION {
        return None;
    }
    use crate::sql::pg_array_operands::{OPERANDS_RULE_NAME, OUTPUT_RULE_NAME, PLANNER_NAME};
    let (mut rules_left_out, mut planners_left_out) =
        (vec![OPERANDS_RULE_NAME, OUTPUT_RULE_NAME], vec![PLANNER_NAME]);
    if revision <= 11 {
        rules_left_out.extend([
            pg_array_input::RULE_NAME,
            jsonb_marks::RULE_NAME,
            jsonb_marks::CAST_RULE_NAME,
        ]);
        planners_left_out.push(jsonb_edit::PLANNER_NAME);
    }
    if revision <= 10 {
        rules_left_out.extend([pg_interval_input::RULE_NAME, pg_numeric::RULE_NAME]);
        planners_left_out.extend([pg_date_arithmetic::PLANNER_NAME, pg_numeric::PLANNER_NAME]);
    }
    if revision <= 9 {
        rules_left_out.push(pg_timestamps::RULE_NAME);
    }
    if revision <= 8 {
        rules_left_out.push("pg_casts");
    }
    let mut state = ctx.state();
    state.config_mut().set_extension(Arc::new(query::PlanRevision(revision)));
    if revision <= 10 {
        state.config_mut().options_mut().sql_parser.parse_float_as_decimal = false;
    }
    let rules =
        state.analyzer().rules.iter().filter(|r| !rules_left_out.contains(&r.name())).cloned().collect();
    let planners = state
        .expr_planners()
        .iter()
        .filter(|p| !planners_left_out.iter().any(|name| format!("{p:?}").starts_with(name)))
        .cloned()
        .collect();
    let mut state = datafusion::execution::SessionStateBuilder::new_from_existing(state)
        .with_analyzer_rules(rules)
        .with_expr_planners(planners)
        .build();
    use datafusion::execution::FunctionRegistry;
    for function in crate::sql::pg_arrays::datafusion_functions() {
        state.register_udf(function).expect("a session state takes any function");
    }
    if revision <= 11 {
        state
            .register_udf(crate::sql::pg_to_char::datafusion_function())
            .expect("a session state takes any function");
    }
    if revision <= 10 {
        for function in pg_numeric::datafusion_functions() {
            state.register_udf(function).expect("a session state takes any function");
        }
    }
    Some(SessionContext::new_with_state(state))
}

/// A Project casting columns to the types the view stores, when any differs. Arrays are
/// stored as text in Postgres' form from plan revision 8 (before, in Arrow's) to 12, and
/// as lists from 13 (lists of lists still as text).
fn cast_to_stored(body: StreamNode, revision: u32) -> Result<StreamNode> {
    let types: Vec<DataType> =
        body.schema.fields().iter().map(|f| stored_type(f.data_type(), revision)).collect();
    if body.schema.fields().iter().zip(&types).all(|(f, t)| f.data_type() == t) {
        return Ok(body);
    }
    let array_text = Arc::new(datafusion::logical_expr::ScalarUDF::new_from_impl(
        crate::sql::pg_functions::ArrayText::new(),
    ));
    let config = Arc::new(datafusion::config::ConfigOptions::default());
    let exprs: Vec<Arc<dyn PhysicalExpr>> = body
        .schema
        .fields()
        .iter()
        .zip(&types)
        .enumerate()
        .map(|(i, (field, t))| {
            let column: Arc<dyn PhysicalExpr> = Arc::new(Column::new(field.name(), i));
            let is_list = crate::common::types::is_list(field.data_type());
            Ok(if field.data_type() == t {
                column
            } else if matches!(field.data_type(), DataType::Duration(_)) && revision >= 11 {
                // `timestamp - timestamp` as Postgres has it: whole days of 24 hours.
                let function = ScalarFunctionExpr::try_new(
                    crate::sql::pg_intervals::justify_hours(),
                    vec![column],
                    &body.schema,
                    config.clone(),
                )?;
                Arc::new(function) as Arc<dyn PhysicalExpr>
            } else if is_list && revision >= 8 && *t == DataType::Utf8 {
                let function = ScalarFunctionExpr::try_new(
                    array_text.clone(),
                    vec![column],
                    &body.schema,
                    config.clone(),
                )?;
                Arc::new(function) as Arc<dyn PhysicalExpr>
            } else {
                Arc::new(CastExpr::new(column, t.clone(), None)) as Arc<dyn PhysicalExpr>
            })
        })
        .collect::<Result<_>>()?;
    let fields: Vec<(String, DataType)> =
        body.schema.fields().iter().zip(types).map(|(f, t)| (f.name().clone(), t)).collect();
    Ok(project_in_place(body, exprs, fields))
}

/// A changelog sink has an `op` column beside the query's; an append-only sink needs an
/// append-only query (or `force_append_only`).
fn check_sink(def: &crate::catalog::ConnectorDef, desc: &TableDesc, root: &StreamNode) -> Result<()> {
    use crate::stream::sink::{OP_COLUMN, SinkMode};
    match crate::connector::sink_mode(def)? {
        SinkMode::Changelog if desc.columns.iter().any(|c| !c.hidden && c.name == OP_COLUMN) => Err(Error::new(
            SqlState::DuplicateColumn,
            format!("a sink cannot have a column named \"{OP_COLUMN}\": the changelog's op column has that name"),
        )
        .with_hint("rename the column in the sink's query (AS ...), or use type = 'append-only'")),
        SinkMode::AppendOnly { force: false } if !root.is_append_only() => Err(Error::new(
            SqlState::InvalidParameterValue,
            "the sink's query is not append-only: it can update or delete rows",
        )
        .with_hint("use type = 'changelog', or add force_append_only = 'true' to drop deletes and write updates' new rows")),
        _ => Ok(()),
    }
}

/// The root of a view's dataflow: Materialize, or Sink for a sink.
pub(super) fn root_node(body: StreamNode, view: Arc<TableDesc>) -> StreamNode {
    StreamNode {
        kind: if view.is_sink() {
            NodeKind::Sink { sink: view.clone() }
        } else {
            NodeKind::Materialize { view: view.clone() }
        },
        schema: view.full_schema(),
        visible: body.visible,
        stream_key: Some(view.primary_key.clone()),
        parallelism: 1,
        inputs: vec![body],
    }
}

/// The column names of `CREATE MATERIALIZED VIEW v (a, b) AS ...`.
pub(super) fn view_column_names(columns: &[ast::ViewColumnDef]) -> Vec<String> {
    columns.iter().map(|c| normalize_ident(&c.name)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateStore;

    fn context() -> SessionContext {
        let snapshot = crate::state::MemoryStore::default().snapshot();
        let pool = Arc::new(datafusion::execution::memory_pool::UnboundedMemoryPool::default());
        query::context(SabotCatalog::new(Arc::new(Catalog::new()), snapshot), "public", None, pool)
    }

    async fn column_types(ctx: &SessionContext, sql: &str) -> Vec<DataType> {
        let Some(Statement::Sql(statement)) = parse(sql).expect("parses").pop() else { panic!("a query") };
        let plan = query::plan_view_query(ctx, &statement).await.expect("plans");
        plan.schema().fields().iter().map(|f| f.data_type().clone()).collect()
    }

    #[tokio::test]
    async fn views_of_revision_10_plan_as_they_were_planned() {
        use datafusion::arrow::datatypes::TimeUnit;
        let sql = "SELECT DATE '2026-01-01' + INTERVAL '1 day' AS due, 1.5 AS n, 1e3 AS e, \
                   coalesce(2.5::float8, 1.5) AS c, ceil(2.5) AS w";
        let today = context();
        assert_eq!(
            column_types(&today, sql).await,
            [
                DataType::Timestamp(TimeUnit::Microsecond, None),
                DataType::Decimal128(2, 1),
                DataType::Decimal128(4, 0),
                DataType::Float64,
                DataType::Decimal128(2, 0),
            ]
        );
        let revision_10 = as_planned_at(&today, 10).expect("revision 10 plans otherwise");
        assert_eq!(
            column_types(&revision_10, sql).await,
            [DataType::Date32, DataType::Float64, DataType::Float64, DataType::Float64, DataType::Float64]
        );
        assert!(as_planned_at(&today, PLAN_REVISION).is_none());
    }

    #[tokio::test]
    async fn views_of_revision_11_keep_their_membership_tests() {
        let sql = "SELECT 3 IN (SELECT v FROM (VALUES (1)) AS t (v)) AS found";
        let plan = |ctx: SessionContext| async move {
            let Some(Statement::Sql(statement)) = parse(sql).expect("parses").pop() else {
                panic!("a query")
            };
            query::plan_view_query(&ctx, &statement).await.expect("plans").display_indent().to_string()
        };
        let today = context();
        assert!(plan(today.clone()).await.contains("sabot_compare_each"));
        let revision_11 = as_planned_at(&today, 11).expect("revision 11 plans otherwise");
        let before = plan(revision_11).await;
        assert!(before.contains("array_has") && !before.contains("sabot_compare_each"), "{before}");
    }

    #[tokio::test]
    async fn views_of_revision_12_keep_their_functions_and_store_arrays_as_text() {
        let sql = "SELECT array_length(make_array(1), 1) AS n, to_char(DATE '2026-01-02', 'YYYY') AS y, \
                   '{1,2}'::int[] AS a";
        let list = DataType::List(Arc::new(datafusion::arrow::datatypes::Field::new_list_field(
            DataType::Int32,
            true,
        )));
        let today = context();
        assert_eq!(column_types(&today, sql).await, [DataType::Int32, DataType::Utf8, list.clone()]);
        let revision_12 = as_planned_at(&today, 12).expect("revision 12 plans otherwise");
        let types = column_types(&revision_12, sql).await;
        assert_eq!(types, [DataType::UInt64, DataType::Utf8, list.clone()]);
        // Its own rules stay in: the text is read as an array, not wrapped into one.
        let plan = revision_12.sql(sql).await.unwrap().into_optimized_plan().unwrap();
        assert!(plan.display_indent().to_string().contains("List([1, 2])"), "{}", plan.display_indent());
        assert_eq!(stored_type(&list, 12), DataType::Utf8);
        assert_eq!(stored_type(&list, 13), list);
    }
}
