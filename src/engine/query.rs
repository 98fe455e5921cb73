//! Planning and running statements with DataFusion over one consistent snapshot.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::execution::context::{SessionConfig, SessionContext};
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{self, SelectItem, SetExpr};

use crate::batch::SabotCatalog;
use crate::catalog::TableDesc;
use crate::common::{Error, Result, SqlState};

pub const CATALOG_NAME: &str = "sabot";

/// A DataFusion context whose `sabot` catalog reads `snapshot`.
pub fn context(catalog: SabotCatalog, default_schema: &str) -> SessionContext {
    let config = SessionConfig::new()
        .with_information_schema(false)
        .with_create_default_catalog_and_schema(false)
        .with_default_catalog_and_schema(CATALOG_NAME, default_schema);
    let ctx = SessionContext::new_with_config(config);
    ctx.register_catalog(CATALOG_NAME, Arc::new(catalog));
    ctx
}

pub async fn plan(ctx: &SessionContext, statement: &ast::Statement) -> Result<LogicalPlan> {
    let statement = DfStatement::Statement(Box::new(statement.clone()));
    Ok(ctx.state().statement_to_plan(statement).await?)
}

/// The inferred type of each `$n` parameter, in order (`None` where nothing constrains it).
pub fn parameter_types(plan: &LogicalPlan) -> Result<Vec<Option<DataType>>> {
    let types = plan.get_parameter_types()?;
    let mut indexed: Vec<(usize, Option<DataType>)> = Vec::with_capacity(types.len());
    for (id, data_type) in types {
        let index = id
            .strip_prefix('$')
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .ok_or_else(|| Error::unsupported(format!("parameter {id}")))?;
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
        return Err(Error::new(
            SqlState::ProtocolViolation,
            format!("statement requires {} parameters, {} given", expected.len(), params.len()),
        ));
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

/// The runtime that executes query plans, apart from the one serving connections and
/// committing epochs: a heavy query must not starve the accept loop, cancel requests or
/// the barrier coordinator.
pub struct ComputeRuntime {
    runtime: Option<tokio::runtime::Runtime>,
}

impl ComputeRuntime {
    pub fn new() -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("sabot-compute")
            .enable_all()
            .build()
            .map_err(|e| Error::internal(format!("cannot start the compute runtime: {e}")))?;
        Ok(ComputeRuntime { runtime: Some(runtime) })
    }

    /// The runtime view dataflows run on.
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.runtime.as_ref().expect("the compute runtime lives until drop").handle().clone()
    }

    /// Runs a query plan to completion on the compute runtime. Dropping the returned future
    /// (a cancelled statement, a vanished client) stops the query.
    pub async fn collect(
        &self,
        ctx: &SessionContext,
        plan: LogicalPlan,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let schema: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
        let ctx = ctx.clone();
        let runtime = self.runtime.as_ref().expect("the compute runtime lives until drop");
        let task =
            AbortOnDrop(runtime.spawn(async move { ctx.execute_logical_plan(plan).await?.collect().await }));
        let batches = task.join().await??;
        let batches = batches.into_iter().map(|b| conform(b, &schema)).collect::<Result<_>>()?;
        Ok((schema, batches))
    }
}

/// DataFusion's physical plan can produce a wider type than the logical plan declared (a
/// UNION whose branches the optimizer coerces differently); clients were told the
/// declared types, so results are cast to them (failing, not truncating, on overflow).
fn conform(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    if batch.schema().fields().iter().zip(schema.fields()).all(|(a, b)| a.data_type() == b.data_type()) {
        return Ok(batch);
    }
    let options = datafusion::arrow::compute::CastOptions { safe: false, ..Default::default() };
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            datafusion::arrow::compute::cast_with_options(column, field.data_type(), &options)
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

impl Drop for ComputeRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Dropping a runtime blocks, which is not allowed inside async code.
            runtime.shutdown_background();
        }
    }
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    async fn join(mut self) -> Result<T> {
        (&mut self.0).await.map_err(|e| Error::internal(format!("query task failed: {e}")))
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Column names the way Postgres prints them: an unaliased expression is named after its
/// column or function, or `?column?`. DataFusion names it after the whole expression.
pub fn postgres_column_names(statement: &ast::Statement, schema: &Schema) -> SchemaRef {
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
        E::Cast { expr, .. } | E::Nested(expr) => expression_name(expr),
        _ => None,
    }
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
