//! Planning and running statements with DataFusion over one consistent snapshot.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::execution::context::{SessionConfig, SessionContext};
use datafusion::execution::memory_pool::MemoryPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{self, SelectItem, SetExpr};

use crate::batch::{SabotCatalog, pg_catalog};
use crate::catalog::TableDesc;
use crate::common::{Error, Result, SqlState};

pub const CATALOG_NAME: &str = "sabot";

/// Who runs a session's statements, and over which connection (None: embedded).
#[derive(Clone, Copy, Debug)]
pub struct SessionIdentity<'a> {
    pub user: &'a str,
    pub server: Option<std::net::SocketAddr>,
    pub client: Option<std::net::SocketAddr>,
}

/// A DataFusion context whose `sabot` catalog reads `snapshot`, and whose operators
/// reserve memory from `memory` (one pool per statement).
///
/// A session's statements (`user` Some) get the session functions (`current_user`, ...);
/// every context gets the catalog functions (`pg_get_userbyid`, `format_type`, ...).
pub fn context(
    catalog: SabotCatalog,
    default_schema: &str,
    session: Option<SessionIdentity<'_>>,
    memory: Arc<dyn MemoryPool>,
) -> SessionContext {
    let config = SessionConfig::new()
        .with_information_schema(false)
        .with_create_default_catalog_and_schema(false)
        .with_default_catalog_and_schema(CATALOG_NAME, default_schema)
        // `1.10` is a numeric, as in Postgres (`1.10 * 2.005` is `2.20550`), not a float.
        .set_bool("datafusion.sql_parser.parse_float_as_decimal", true);
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(memory)
        .build_arc()
        .expect("a runtime environment with default disk and cache settings builds");
    let mut state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        // Before DataFusion's and jsonb's, which would read `array || 'text'` as appending
        // an element and `array @> 'text'` as jsonb's operator.
        .with_expr_planners(vec![crate::sql::pg_array_operands::planner()])
        .with_default_features()
        .with_analyzer_rules(analyzer_rules())
        .with_physical_optimizer_rule(Arc::new(super::execute::CooperativeJoins))
        .build();
    {
        use datafusion::execution::FunctionRegistry;
        state
            .register_expr_planner(crate::sql::jsonb::operators())
            .expect("a session state takes any expression planner");
        state
            .register_expr_planner(crate::sql::pg_numeric::planner())
            .expect("a session state takes any expression planner");
        state
            .register_expr_planner(crate::sql::pg_date_arithmetic::planner())
            .expect("a session state takes any expression planner");
        state
            .register_expr_planner(crate::sql::jsonb_edit::operators())
            .expect("a session state takes any expression planner");
    }
    let ctx = SessionContext::new_with_state(state);
    let session = pg_catalog::SessionInfo {
        user: session.as_ref().map(|s| s.user),
        schema: default_schema,
        settings: catalog.settings(),
        server: session.as_ref().and_then(|s| s.server),
        client: session.as_ref().and_then(|s| s.client),
    };
    pg_catalog::register_functions(&ctx, catalog.catalog(), catalog.snapshot(), &session);
    let default_schema = default_schema.to_string();
    let relations = catalog.clone();
    let resolve: crate::sql::window::RelationResolver =
        Arc::new(move |schema: Option<&str>, name: &str| relations.relation(schema, name, &default_schema));
    crate::sql::window::register(&ctx, resolve.clone());
    crate::sql::temporal_join::register(&ctx, resolve);
    crate::sql::frame_exclusion::register(&ctx);
    crate::sql::proctime::register(&ctx);
    crate::sql::pg_functions::register(&ctx);
    crate::sql::pg_numeric::register(&ctx);
    crate::sql::jsonb::register(&ctx);
    crate::sql::jsonb_edit::register(&ctx);
    crate::sql::jsonb_rows::register(&ctx);
    crate::sql::ordered_set::register(&ctx);
    ctx.register_catalog(CATALOG_NAME, Arc::new(catalog));
    ctx
}

/// DataFusion's analyzer rules, after SESSION windows are planned (their plan needs type
/// coercion like any other).
fn analyzer_rules() -> Vec<Arc<dyn datafusion::optimizer::AnalyzerRule + Send + Sync>> {
    let mut rules: Vec<Arc<dyn datafusion::optimizer::AnalyzerRule + Send + Sync>> = vec![
        Arc::new(crate::sql::session_window::SessionWindows),
        Arc::new(crate::sql::pg_numeric::FloatOperandLists),
        Arc::new(crate::sql::pg_array_operands::ArrayOperands),
    ];
    rules.extend(datafusion::optimizer::Analyzer::new().rules);
    // After type coercion: casts as Postgres computes them.
    rules.push(Arc::new(crate::sql::pg_casts::PgCasts));
    rules.push(Arc::new(crate::sql::pg_timestamps::PgTimestampCasts));
    rules.push(Arc::new(crate::sql::pg_interval_input::PgIntervalCasts));
    rules.push(Arc::new(crate::sql::pg_array_input::PgArrayInput));
    rules.push(Arc::new(crate::sql::pg_array_operands::ArrayOutput));
    rules.push(Arc::new(crate::sql::jsonb_marks::CastMarks));
    rules.push(Arc::new(crate::sql::jsonb_marks::JsonbArguments));
    rules
}

/// The plan revision a context plans as: today's, unless it was made for a view of an
/// older one (`engine::views::as_planned_at`).
#[derive(Debug)]
pub struct PlanRevision(pub u32);

pub fn plan_revision(ctx: &SessionContext) -> u32 {
    ctx.state()
        .config()
        .get_extension::<PlanRevision>()
        .map_or(crate::sql::stream_plan::PLAN_REVISION, |revision| revision.0)
}

/// Plans a statement to run in batch (as-of joins lowered to what DataFusion runs).
pub async fn plan(ctx: &SessionContext, statement: &ast::Statement) -> Result<LogicalPlan> {
    let mut statement = statement.clone();
    if let Some(provider) = ctx.catalog(CATALOG_NAME)
        && let Some(catalog) = (provider.as_ref() as &dyn std::any::Any).downcast_ref::<SabotCatalog>()
    {
        let schema = ctx.state().config_options().catalog.default_schema.clone();
        crate::sql::view_order::rewrite(&mut statement, catalog.catalog(), &schema);
    }
    crate::sql::asof_join::lower_for_batch(plan_unlowered(ctx, &statement, false).await?)
}

/// Plans a view's query: as-of joins stay [`crate::sql::asof_join::AsofJoinNode`]s for the
/// streaming planner.
pub async fn plan_view_query(ctx: &SessionContext, statement: &ast::Statement) -> Result<LogicalPlan> {
    crate::sql::asof_join::to_extension(plan_unlowered(ctx, statement, true).await?)
}

async fn plan_unlowered(
    ctx: &SessionContext,
    statement: &ast::Statement,
    for_view: bool,
) -> Result<LogicalPlan> {
    reject_null_aggregate_arguments(ctx, statement)?;
    let mut statement = statement.clone();
    expand_views(ctx, &mut statement)?;
    inline_functions(ctx, &mut statement)?;
    let revision = plan_revision(ctx);
    if revision >= 12 {
        crate::sql::lateral::rewrite(&mut statement);
    }
    crate::sql::pg_compat::rewrite(&mut statement);
    if revision >= 11 {
        crate::sql::pg_numeric::rewrite_literals(&mut statement);
    }
    if revision >= 12 {
        crate::sql::pg_char::rewrite(&mut statement);
    }
    crate::sql::from_functions::rewrite(&mut statement, &|name| ctx.table_function(name).is_ok());
    crate::sql::subquery_forms::rewrite(&mut statement);
    crate::sql::quantified::rewrite(&mut statement, revision, for_view);
    crate::sql::multiset::rewrite(ctx, &mut statement).await?;
    crate::sql::alias_lists::rewrite(ctx, &mut statement).await;
    let statement = DfStatement::Statement(Box::new(statement));
    let plan = ctx.state().statement_to_plan(statement).await?;
    let plan = if revision >= 11 { crate::sql::pg_numeric::type_mixed_results(plan)? } else { plan };
    reject_untyped_aggregates(&plan)?;
    Ok(plan)
}

/// Inlines the plain views `statement` names (`sql::views`); returns their ids.
pub fn expand_views(
    ctx: &SessionContext,
    statement: &mut ast::Statement,
) -> Result<Vec<crate::state::TableId>> {
    let Some(provider) = ctx.catalog(CATALOG_NAME) else { return Ok(Vec::new()) };
    let Some(catalog) = (provider.as_ref() as &dyn std::any::Any).downcast_ref::<SabotCatalog>() else {
        return Ok(Vec::new());
    };
    let state = ctx.state();
    let schema = state.config_options().catalog.default_schema.clone();
    crate::sql::views::expand(statement, catalog.catalog(), &schema)
}

/// Inlines the SQL functions `statement` calls (`sql::functions`); returns them.
pub fn inline_functions(
    ctx: &SessionContext,
    statement: &mut ast::Statement,
) -> Result<Vec<Arc<crate::catalog::FunctionDesc>>> {
    let Some(provider) = ctx.catalog(CATALOG_NAME) else { return Ok(Vec::new()) };
    let Some(catalog) = (provider.as_ref() as &dyn std::any::Any).downcast_ref::<SabotCatalog>() else {
        return Ok(Vec::new());
    };
    let catalog = catalog.catalog();
    if catalog.functions().next().is_none() {
        return Ok(Vec::new());
    }
    let schema = ctx.state().config_options().catalog.default_schema.clone();
    let lookup = |name: &ast::ObjectName| {
        let (qualifier, name) = crate::sql::functions::call_name(name)?;
        match qualifier {
            Some(qualifier) => catalog.function(&qualifier, &name).cloned(),
            // Built-in functions come first, as `pg_catalog` does in Postgres' search path.
            None if is_builtin(ctx, &name) => None,
            None => catalog
                .function(&schema, &name)
                .or_else(|| catalog.function(crate::catalog::DEFAULT_SCHEMA, &name))
                .cloned(),
        }
    };
    crate::sql::functions::inline(statement, &lookup)
}

fn is_builtin(ctx: &SessionContext, name: &str) -> bool {
    use datafusion::execution::FunctionRegistry;
    ctx.udf(name).is_ok() || ctx.udaf(name).is_ok() || ctx.udwf(name).is_ok()
}

/// An aggregate (other than count) called on a bare NULL literal: see
/// [`reject_untyped_aggregates`]; DataFusion fails on some of these while planning.
fn reject_null_aggregate_arguments(ctx: &SessionContext, statement: &ast::Statement) -> Result<()> {
    use datafusion::execution::FunctionRegistry;
    use datafusion::sql::sqlparser::ast::{
        FunctionArg, FunctionArgExpr, FunctionArguments, Value, Visit, Visitor,
    };
    struct NullArguments<'a> {
        ctx: &'a SessionContext,
    }
    impl Visitor for NullArguments<'_> {
        type Break = String;
        fn pre_visit_expr(&mut self, expr: &ast::Expr) -> std::ops::ControlFlow<String> {
            let ast::Expr::Function(function) = expr else { return std::ops::ControlFlow::Continue(()) };
            let name = function.name.to_string().to_lowercase();
            let FunctionArguments::List(list) = &function.args else {
                return std::ops::ControlFlow::Continue(());
            };
            let null_argument = list.args.iter().any(|arg| {
                matches!(arg, FunctionArg::Unnamed(FunctionArgExpr::Expr(ast::Expr::Value(v))) if v.value == Value::Null)
            });
            if null_argument && name != "count" && self.ctx.udaf(&name).is_ok() {
                return std::ops::ControlFlow::Break(name);
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    match statement.visit(&mut NullArguments { ctx }) {
        std::ops::ControlFlow::Break(name) => Err(ambiguous_aggregate(&name)),
        std::ops::ControlFlow::Continue(()) => Ok(()),
    }
}

fn ambiguous_aggregate(name: &str) -> Error {
    Error::new(SqlState::AmbiguousFunction, format!("function {name}(unknown) is not unique"))
        .with_hint("Could not choose a best candidate function. You might need to add explicit type casts.")
}

/// `avg(NULL)`, `sum(NULL)`, `max(NULL)`: an aggregate of an untyped NULL has no type to
/// work in. Postgres refuses these as ambiguous (42725); DataFusion would fail later with
/// an internal error. `count(NULL)` is fine.
fn reject_untyped_aggregates(plan: &LogicalPlan) -> Result<()> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::ExprSchemable;
    let mut found = None;
    plan.apply_with_subqueries(|node| {
        let Some(input) = node.inputs().first().map(|i| i.schema().clone()) else {
            return Ok(TreeNodeRecursion::Continue);
        };
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Expr::AggregateFunction(aggregate) = e
                    && aggregate.func.name() != "count"
                    && aggregate.params.args.iter().any(|a| matches!(a.get_type(&input), Ok(DataType::Null)))
                {
                    found = Some(aggregate.func.name().to_string());
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    match found {
        Some(name) => Err(ambiguous_aggregate(&name)),
        None => Ok(()),
    }
}

/// Most parameters a statement may have: the Bind message counts them in 16 bits.
pub const PARAMETERS_MAX: usize = u16::MAX as usize;

/// The inferred type of each `$n` parameter, in order (`None` where nothing constrains it).
pub fn parameter_types(plan: &LogicalPlan) -> Result<Vec<Option<DataType>>> {
    let types = plan.get_parameter_types()?;
    let mut indexed: Vec<(usize, Option<DataType>)> = Vec::with_capacity(types.len());
    for (id, data_type) in types {
        let index = id
            .strip_prefix('$')
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&n| (1..=PARAMETERS_MAX).contains(&n))
            .ok_or_else(|| {
                Error::new(SqlState::UndefinedParameter, format!("there is no parameter {id}"))
                    .with_detail(format!("parameters are numbered $1 to ${PARAMETERS_MAX}"))
            })?;
        indexed.push((index, data_type));
    }
    let count = indexed.iter().map(|(i, _)| *i).max().unwrap_or(0);
    let mut ordered = vec![None; count];
    for (index, data_type) in indexed {
        ordered[index - 1] = data_type;
    }
    Ok(ordered)
}

/// Replaces `$n` placeholders with `params`, each cast to the type the plan expects, and
/// applies Postgres' input rules that DataFusion's casts lack (see [`bytea_input`]).
pub fn bind(plan: LogicalPlan, params: &[ScalarValue]) -> Result<LogicalPlan> {
    bytea_input(bind_parameters(plan, params)?)
}

/// Text cast to bytea is Postgres' bytea input: `'\x0aff'` is hex, anything else its
/// bytes. (Arrow's cast always takes the bytes.)
fn bytea_input(plan: LogicalPlan) -> Result<LogicalPlan> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    use datafusion::functions::expr_fn::{decode, starts_with, substr};
    use datafusion::logical_expr::{Cast, ExprSchemable, cast, lit, when};
    let is_text = |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    let rewritten = plan.transform_up_with_subqueries(|node| {
        let input_schema = node.inputs().first().map(|input| input.schema().clone());
        node.map_expressions(|expr| {
            expr.transform_up(|e| {
                let Expr::Cast(Cast { expr: inner, field }) = &e else {
                    return Ok(Transformed::no(e));
                };
                if field.data_type() != &DataType::Binary {
                    return Ok(Transformed::no(e));
                }
                let source = match (inner.as_ref(), &input_schema) {
                    (Expr::Literal(value, _), _) => value.data_type(),
                    (other, Some(schema)) => other.get_type(schema)?,
                    (_, None) => return Ok(Transformed::no(e)),
                };
                if !is_text(&source) {
                    return Ok(Transformed::no(e));
                }
                let text = inner.as_ref().clone();
                let hex = decode(substr(text.clone(), lit(3i64)), lit("hex"));
                let decoded = when(starts_with(text.clone(), lit("\\x")), hex)
                    .otherwise(cast(text, DataType::Binary))?;
                Ok(Transformed::yes(decoded))
            })
        })
    })?;
    Ok(rewritten.data)
}

fn bind_parameters(plan: LogicalPlan, params: &[ScalarValue]) -> Result<LogicalPlan> {
    let expected = parameter_types(&plan)?;
    if expected.len() > params.len() {
        let missing = params.len() + 1;
        return Err(Error::new(SqlState::UndefinedParameter, format!("there is no parameter ${missing}")));
    }
    if expected.is_empty() && params.is_empty() {
        return Ok(plan);
    }
    let values = params
        .iter()
        .zip(expected.iter().chain(std::iter::repeat(&None)))
        .map(|(value, target)| match target {
            Some(data_type) if value.data_type() != *data_type => Ok(value.cast_to(data_type)?),
            _ => Ok(value.clone()),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(plan.with_param_values(values)?)
}

/// Column names the way Postgres prints them: an unaliased expression is named after its
/// column or function, or `?column?`. DataFusion names it after the whole expression.
pub fn postgres_column_names(statement: &ast::Statement, schema: &Schema) -> SchemaRef {
    let named = statement_column_names(statement, schema);
    if !named.fields().iter().any(|f| f.name().starts_with(crate::sql::column_names::SAME_NAME_PREFIX)) {
        return named;
    }
    // Columns `sql::pg_compat` renamed so that DataFusion takes a second column of the same
    // name get their name back.
    let fields: Vec<Field> = named
        .fields()
        .iter()
        .map(|f| match f.name().strip_prefix(crate::sql::column_names::SAME_NAME_PREFIX) {
            Some(hidden) => {
                f.as_ref().clone().with_name(hidden.split_once(':').map_or(hidden, |(_, name)| name))
            }
            None => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, named.metadata().clone()))
}

fn statement_column_names(statement: &ast::Statement, schema: &Schema) -> SchemaRef {
    let ast::Statement::Query(query) = statement else {
        return Arc::new(schema.clone());
    };
    let SetExpr::Select(select) = query.body.as_ref() else {
        return Arc::new(schema.clone());
    };
    if select.projection.len() != schema.fields().len() {
        return Arc::new(schema.clone());
    }
    let fields: Vec<Field> = select
        .projection
        .iter()
        .zip(schema.fields())
        .map(|(item, field)| match item {
            SelectItem::UnnamedExpr(expr) => {
                field.as_ref().clone().with_name(expression_name(expr).unwrap_or("?column?".into()))
            }
            _ => field.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// Gives unaliased scalar subqueries in a SELECT list distinct names: DataFusion names
/// them all "(<subquery>)" and rejects two in one projection. Output names are restored
/// from the original statement by [`postgres_column_names`].
pub fn name_subqueries(statement: &ast::Statement) -> ast::Statement {
    let mut statement = statement.clone();
    if let ast::Statement::Query(query) = &mut statement
        && let SetExpr::Select(select) = query.body.as_mut()
    {
        for (i, item) in select.projection.iter_mut().enumerate() {
            if let SelectItem::UnnamedExpr(expr) = item
                && contains_subquery(expr)
            {
                let alias = ast::Ident::new(format!("__sabot_subquery_{i}"));
                *item = SelectItem::ExprWithAlias { expr: expr.clone(), alias };
            }
        }
    }
    statement
}

fn contains_subquery(expr: &ast::Expr) -> bool {
    matches!(expr, ast::Expr::Subquery(_)) || expr.to_string().contains("SELECT ")
}

fn expression_name(expr: &ast::Expr) -> Option<String> {
    use ast::Expr as E;
    match expr {
        E::Identifier(ident) => Some(crate::sql::ddl::normalize_ident(ident)),
        E::CompoundIdentifier(parts) => parts.last().map(crate::sql::ddl::normalize_ident),
        E::Function(function) => {
            function.name.0.last().and_then(|part| part.as_ident()).map(crate::sql::ddl::normalize_ident)
        }
        // A cast of what has no name is named by its type, as Postgres' internal name.
        E::Cast { expr, data_type, .. } => expression_name(expr).or_else(|| cast_type_name(data_type)),
        E::Nested(expr) => expression_name(expr),
        // A scalar subquery is named after its one column (`(SELECT max(v) FROM t)`: max).
        E::Subquery(query) => match query.body.as_ref() {
            SetExpr::Select(select) => match select.projection.as_slice() {
                [SelectItem::ExprWithAlias { alias, .. }] => Some(crate::sql::ddl::normalize_ident(alias)),
                [SelectItem::UnnamedExpr(inner)] => expression_name(inner),
                _ => None,
            },
            _ => None,
        },
        // Postgres names these constructs by their keyword.
        E::Exists { .. } => Some("exists".into()),
        E::Case { .. } => Some("case".into()),
        E::Array(_) => Some("array".into()),
        E::Tuple(_) => Some("row".into()),
        // A typed literal is named by its type (`DATE '...'`: date).
        E::Interval(_) => Some("interval".into()),
        E::TypedString(typed) => cast_type_name(&typed.data_type),
        _ => None,
    }
}

/// Postgres' internal name of a type written in a cast (`integer` is `int4`).
fn cast_type_name(data_type: &ast::DataType) -> Option<String> {
    use ast::DataType as T;
    Some(
        match data_type {
            T::Int(_) | T::Integer(_) | T::Int4(_) => "int4",
            T::BigInt(_) | T::Int8(_) => "int8",
            T::SmallInt(_) | T::Int2(_) => "int2",
            T::Real | T::Float4 => "float4",
            T::DoublePrecision | T::Float8 | T::Double(_) => "float8",
            T::Boolean | T::Bool => "bool",
            T::Text => "text",
            T::Varchar(_) | T::CharacterVarying(_) => "varchar",
            T::Char(_) | T::Character(_) => "bpchar",
            T::Numeric(_) | T::Decimal(_) => "numeric",
            T::Date => "date",
            T::Time(..) => "time",
            T::Timestamp(_, ast::TimezoneInfo::Tz | ast::TimezoneInfo::WithTimeZone) => "timestamptz",
            T::Timestamp(..) => "timestamp",
            T::Interval { .. } => "interval",
            T::Bytea => "bytea",
            T::JSONB => "jsonb",
            T::Regclass => "regclass",
            T::Custom(name, _) => return name.0.last()?.as_ident().map(|i| i.value.to_lowercase()),
            _ => return None,
        }
        .to_string(),
    )
}

/// DEFAULT expressions of `desc` as DataFusion expressions, for INSERT planning.
pub fn column_defaults(ctx: &SessionContext, desc: &TableDesc) -> Result<HashMap<String, Expr>> {
    let empty = DFSchema::empty();
    let mut defaults = HashMap::new();
    for column in &desc.columns {
        if let Some(sql) = &column.default {
            defaults.insert(column.name.clone(), ctx.parse_sql_expr(sql, &empty)?);
        }
    }
    Ok(defaults)
}
