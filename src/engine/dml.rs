//! INSERT, UPDATE, DELETE and TRUNCATE.
//!
//! DataFusion plans each statement (casts, defaults, placeholders, joins in DELETE ...
//! USING; UPDATE ... FROM is first rewritten to a query, see `sql::assignments`); Sabot
//! runs the plan's input to get the affected rows, validates them (NOT NULL, keys, JSON,
//! CHECK) and hands one chunk to the table's writer. A statement is
//! all or nothing: it is checked completely before its chunk is applied.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::row::Rows;
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::catalog::TableProvider;
use datafusion::common::{Column, ScalarValue};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan, Projection};
use datafusion::sql::sqlparser::ast::{
    self, Delete, Insert, SelectItem, SetExpr, TableFactor, TableObject, Update,
};

use super::query;
use super::session::{Outcome, Session};
use crate::batch::StoredTable;
use crate::catalog::TableDesc;
use crate::common::{Error, Result, SqlState, SqlType};
use crate::sql::assignments::{Target, update_from_query};
use crate::sql::ddl::normalize_ident;
use crate::state::{Snapshot, StateTable};
use crate::stream::{Chunk, Op, TableWriter};

/// Name under which COPY data is visible to the INSERT it becomes.
pub(super) const COPY_INPUT: &str = "__sabot_copy_input";
/// Prefix of the extra columns UPDATE adds to carry each row's old values.
const OLD_COLUMN_PREFIX: &str = "__sabot_old_";

impl Session {
    pub(super) async fn insert(
        &mut self,
        insert: &Insert,
        params: &[ScalarValue],
        extra_input: Option<Arc<dyn TableProvider>>,
    ) -> Result<Outcome> {
        let (ctx, desc, input) = self.plan_insert(insert, extra_input).await?;
        if let Some(on) = super::upsert::conflict_clause(insert, &desc)? {
            return self.insert_on_conflict(insert, on, (ctx, desc, input), params).await;
        }
        let input = query::bind(input, params)?;
        let (_, batches) = self.db.compute.collect(&ctx, input).await?;
        let rows = checked_rows(&desc, &desc.visible_schema(), &batches)?;
        let count = rows.num_rows();
        let writer = self.db.writer(&desc)?;
        let (full, epoch) = {
            let mut writer = writer.lock().await;
            self.db.coordinator.check_healthy()?;
            let snapshot = self.db.coordinator.store().snapshot();
            let full = with_hidden_columns(&mut writer, &desc, rows)?;
            if !desc.has_row_id() {
                let keys = writer.encode_keys(&full)?;
                let state = self.table_state(&writer);
                check_unique(&state, snapshot.as_ref(), &desc, &full, &keys, &HashSet::new())?;
            }
            let epoch = self.put_change(&mut writer, snapshot.as_ref(), Chunk::inserts(full.clone())).await?;
            (full, epoch)
        };
        self.finish_write(epoch).await?;
        self.returning("INSERT 0", &desc, full, count, insert.returning.as_deref()).await
    }

    /// Plans an INSERT; returns the plan of the rows to insert (in the visible schema).
    async fn plan_insert(
        &self,
        insert: &Insert,
        extra_input: Option<Arc<dyn TableProvider>>,
    ) -> Result<(SessionContext, Arc<TableDesc>, LogicalPlan)> {
        reject_unsupported_insert(insert)?;
        let TableObject::TableName(name) = &insert.table else {
            return Err(Error::unsupported("INSERT into a table function"));
        };
        let desc = self.writable_table(name)?;
        let mut insert = insert.clone();
        insert.returning = None; // computed by Sabot over the written rows
        insert.on = None; // applied by Sabot over the planned rows
        insert.table_alias = None; // only ON CONFLICT reads it
        fill_implicit_columns(&mut insert, &desc);
        crate::sql::insert_source::rewrite(&mut insert);
        let snapshot = self.db.coordinator.store().snapshot();
        let ctx = self.snapshot_context();
        let defaults = query::column_defaults(&ctx, &desc)?;
        let target = self.readable_table(&desc, &snapshot).with_defaults(defaults).with_nullable_columns();
        let mut catalog =
            self.statement_catalog(&snapshot).with_table(&desc.schema, &desc.name, Arc::new(target));
        if let Some(input) = extra_input {
            catalog = catalog.with_table(&self.settings.current_schema(), COPY_INPUT, input);
        }
        ctx.register_catalog(query::CATALOG_NAME, Arc::new(catalog));
        let plan = query::plan(&ctx, &ast::Statement::Insert(insert)).await.map_err(column_count_error)?;
        let input = dml_input(plan)?;
        check_assignment_types(&input, &desc)?;
        Ok((ctx, desc, input))
    }

    pub(super) async fn update(
        &mut self,
        statement: &ast::Statement,
        update: &Update,
        params: &[ScalarValue],
    ) -> Result<Outcome> {
        let desc = self.update_target(update)?;
        let writer = self.db.writer(&desc)?;
        let mut writer = writer.lock().await;
        let (ctx, plan, snapshot) = match &update.from {
            Some(ast::UpdateTableFromKind::BeforeSet(from) | ast::UpdateTableFromKind::AfterSet(from)) => {
                self.plan_update_from(&writer, &desc, update, from).await?
            }
            None => {
                let (ctx, plan, snapshot) = self.plan_on_current_state(&writer, &desc, statement).await?;
                check_assignment_types(&plan, &desc)?;
                let qualifier = target_qualifier(&plan, &update.table.relation, &desc);
                (ctx, with_old_columns(plan, &desc, &qualifier)?, snapshot)
            }
        };
        let state = self.table_state(&writer).into_owned();
        let (_, batches) = self.db.compute.collect(&ctx, query::bind(plan, params)?).await?;
        let width = desc.columns.len();
        let schema = desc.full_schema();
        let all = concat_batches(&batches_schema(&batches, &schema, 2 * width), &batches)?;
        let old = RecordBatch::try_new(schema.clone(), all.columns()[width..].to_vec())?;
        let old_keys = writer.encode_keys(&old)?;
        let first = first_per_key(&old_keys);
        let old = take_record_batch(&old, &first)?;
        let new = checked_rows(
            &desc,
            &schema,
            &[take_record_batch(&all, &first)?.project(&(0..width).collect::<Vec<_>>())?],
        )?;
        let old_keys = writer.encode_keys(&old)?;
        let new_keys = writer.encode_keys(&new)?;
        if (0..old.num_rows()).any(|i| old_keys.row(i) != new_keys.row(i)) {
            let freed: HashSet<Vec<u8>> = old_keys.iter().map(|r| r.data().to_vec()).collect();
            check_unique(&state, snapshot.as_ref(), &desc, &new, &new_keys, &freed)?;
        }
        let count = new.num_rows();
        let epoch = self.put_change(&mut writer, snapshot.as_ref(), update_pairs(&old, &new)?).await?;
        drop(writer);
        self.finish_write(epoch).await?;
        self.returning("UPDATE", &desc, new, count, update.returning.as_deref()).await
    }

    pub(super) async fn delete(
        &mut self,
        statement: &ast::Statement,
        delete: &Delete,
        params: &[ScalarValue],
    ) -> Result<Outcome> {
        let (desc, relation) = self.delete_target(delete)?;
        let writer = self.db.writer(&desc)?;
        let mut writer = writer.lock().await;
        let (ctx, plan, snapshot) = self.plan_on_current_state(&writer, &desc, statement).await?;
        let qualifier = target_qualifier(&plan, &relation, &desc);
        let plan = target_columns(plan, &desc, &qualifier)?;
        let (_, batches) = self.db.compute.collect(&ctx, query::bind(plan, params)?).await?;
        let schema = desc.full_schema();
        let all = concat_batches(&batches_schema(&batches, &schema, schema.fields().len()), &batches)?;
        let old = RecordBatch::try_new(schema.clone(), all.columns().to_vec())?;
        let old = take_record_batch(&old, &first_per_key(&writer.encode_keys(&old)?))?;
        let count = old.num_rows();
        let chunk = Chunk::new(vec![Op::Delete; count], old.clone());
        let epoch = self.put_change(&mut writer, snapshot.as_ref(), chunk).await?;
        drop(writer);
        self.finish_write(epoch).await?;
        self.returning("DELETE", &desc, old, count, delete.returning.as_deref()).await
    }

    /// `TRUNCATE [TABLE] t, ...`: every row of each table deleted, all tables in one
    /// transaction (the open block's, or one of its own). Sabot has no sequences, so
    /// `RESTART IDENTITY` has nothing to restart.
    pub(super) async fn truncate(&mut self, truncate: &ast::Truncate) -> Result<Outcome> {
        if truncate.partitions.is_some() {
            return Err(Error::unsupported("TRUNCATE ... PARTITION"));
        }
        let own_block = self.transaction.is_none();
        if own_block {
            self.transaction = Some(super::transaction::Transaction::default());
        }
        let deleted = self.delete_all(truncate).await;
        if !own_block {
            return deleted.map(|()| Outcome::command("TRUNCATE TABLE"));
        }
        let block = self.transaction.take().expect("the statement's own block is open");
        deleted?;
        let epoch = block.commit(&self.db).await?;
        self.finish_write(epoch).await?;
        Ok(Outcome::command("TRUNCATE TABLE"))
    }

    async fn delete_all(&mut self, truncate: &ast::Truncate) -> Result<()> {
        for target in &truncate.table_names {
            let desc = match self.changeable_table(&target.name, "truncate") {
                Err(e) if truncate.if_exists && e.sqlstate() == SqlState::UndefinedTable => continue,
                other => other?,
            };
            let sql = format!("DELETE FROM {}", quoted_name(&desc));
            let statement = crate::sql::parser::parse_generated(&sql)?;
            let ast::Statement::Delete(delete) = &statement else {
                return Err(Error::internal("DELETE FROM is not a DELETE"));
            };
            self.delete(&statement, delete, &[]).await?;
        }
        Ok(())
    }

    /// Parameter types and RETURNING columns of a DML statement.
    pub(super) async fn describe_dml(
        &mut self,
        statement: &ast::Statement,
    ) -> Result<(Vec<Option<DataType>>, Option<SchemaRef>)> {
        let (desc, plan, returning) = match statement {
            ast::Statement::Insert(insert) => {
                let (_, desc, plan) = self.plan_insert(insert, None).await?;
                (desc, plan, insert.returning.clone())
            }
            ast::Statement::Update(update) => {
                let desc = self.update_target(update)?;
                let ctx = self.empty_table_context(&desc);
                (desc, query::plan(&ctx, &without_returning(statement)).await?, update.returning.clone())
            }
            ast::Statement::Delete(delete) => {
                let (desc, _) = self.delete_target(delete)?;
                let ctx = self.empty_table_context(&desc);
                (desc, query::plan(&ctx, &without_returning(statement)).await?, delete.returning.clone())
            }
            _ => return Err(Error::internal("not a DML statement")),
        };
        let params = query::parameter_types(&plan)?;
        let schema = match returning {
            Some(items) => {
                let empty = RecordBatch::new_empty(desc.full_schema());
                let ctx = self.rows_context(&desc, empty);
                let plan = query::plan(&ctx, &returning_query(&desc, &items)?).await?;
                Some(Arc::new(plan.schema().as_arrow().clone()))
            }
            None => None,
        };
        Ok((params, schema))
    }

    /// Waits, with `implicit_flush`, until the epoch of a write is committed (None: the
    /// write went to a transaction block and commits with it).
    pub(super) async fn finish_write(&self, epoch: Option<crate::state::Epoch>) -> Result<()> {
        if let Some(epoch) = epoch
            && self.settings.implicit_flush()
        {
            self.db.coordinator.wait_committed(epoch).await?;
        }
        Ok(())
    }

    /// Hands a statement's validated change to the table's writer (returning the epoch it
    /// lands in), or keeps it in the open transaction block (None).
    pub(super) async fn put_change(
        &mut self,
        writer: &mut TableWriter,
        snapshot: &dyn Snapshot,
        chunk: Chunk,
    ) -> Result<Option<crate::state::Epoch>> {
        match &mut self.transaction {
            Some(transaction) => {
                transaction.record(writer, snapshot, chunk)?;
                Ok(None)
            }
            None => {
                writer.check_unique(snapshot, None, &chunk)?;
                writer.apply(chunk).await?;
                Ok(Some(self.db.coordinator.pending_epoch()))
            }
        }
    }

    /// The table's state as a statement sees it: the writer's (committed rows and the open
    /// epoch's), with the transaction block's writes on top.
    pub(super) fn table_state<'w>(&self, writer: &'w TableWriter) -> std::borrow::Cow<'w, StateTable> {
        match &self.transaction {
            Some(transaction) => std::borrow::Cow::Owned(transaction.state(writer)),
            None => std::borrow::Cow::Borrowed(writer.state()),
        }
    }

    /// The statement's outcome, with RETURNING rows computed over `rows` (full schema).
    pub(super) async fn returning(
        &self,
        tag: &str,
        desc: &Arc<TableDesc>,
        rows: RecordBatch,
        count: usize,
        items: Option<&[SelectItem]>,
    ) -> Result<Outcome> {
        let Some(items) = items else { return Ok(Outcome::affected(tag, count)) };
        let ctx = self.rows_context(desc, rows);
        let plan = query::plan(&ctx, &returning_query(desc, items)?).await?;
        let (schema, batches) = self.db.compute.collect(&ctx, plan).await?;
        Ok(Outcome::rows(tag, schema, batches))
    }

    /// Plans UPDATE or DELETE over the table's current state (committed rows and the open
    /// epoch's writes), read under the writer lock the caller holds.
    async fn plan_on_current_state(
        &self,
        writer: &TableWriter,
        desc: &Arc<TableDesc>,
        statement: &ast::Statement,
    ) -> Result<(SessionContext, LogicalPlan, Arc<dyn Snapshot>)> {
        let (ctx, snapshot) = self.current_state(writer, desc)?;
        let plan = dml_input(query::plan(&ctx, &without_returning(statement)).await?)?;
        Ok((ctx, plan, snapshot))
    }

    /// `UPDATE ... FROM` as a query yielding each matched row's new values, then its old
    /// ones (see [`crate::sql::assignments`]), over the table's current state.
    async fn plan_update_from(
        &self,
        writer: &TableWriter,
        desc: &Arc<TableDesc>,
        update: &Update,
        from: &[ast::TableWithJoins],
    ) -> Result<(SessionContext, LogicalPlan, Arc<dyn Snapshot>)> {
        let TableFactor::Table { alias, .. } = &update.table.relation else {
            return Err(Error::unsupported("UPDATE of something other than a table"));
        };
        let (ctx, snapshot) = self.current_state(writer, desc)?;
        let columns: Vec<String> = desc.columns.iter().map(|c| c.name.clone()).collect();
        let relation = quoted_name(desc);
        let alias = alias.as_ref().map(|a| &a.name);
        let target = Target { relation: &relation, alias, name: &desc.name, columns: &columns };
        let query = update_from_query(&target, update, from, OLD_COLUMN_PREFIX)?;
        let plan = assignment_casts(query::plan(&ctx, &query).await?, desc)?;
        Ok((ctx, plan, snapshot))
    }

    /// A context in which `desc` holds its current rows (pending writes included), with the
    /// hidden row id visible so DML can address rows, and the snapshot it reads.
    fn current_state(
        &self,
        writer: &TableWriter,
        desc: &Arc<TableDesc>,
    ) -> Result<(SessionContext, Arc<dyn Snapshot>)> {
        self.db.coordinator.check_healthy()?;
        let snapshot = self.db.coordinator.store().snapshot();
        let state = self.table_state(writer).into_owned();
        let table = StoredTable::current(desc.clone(), state, snapshot.clone()).with_nullable_columns();
        Ok((self.context_with(desc, Arc::new(table)), snapshot))
    }

    fn empty_table_context(&self, desc: &Arc<TableDesc>) -> SessionContext {
        let table = StoredTable::materialized(desc.clone(), RecordBatch::new_empty(desc.full_schema()), true);
        self.context_with(desc, Arc::new(table))
    }

    fn rows_context(&self, desc: &Arc<TableDesc>, rows: RecordBatch) -> SessionContext {
        self.context_with(desc, Arc::new(StoredTable::materialized(desc.clone(), rows, false)))
    }

    pub(super) fn context_with(&self, desc: &TableDesc, table: Arc<dyn TableProvider>) -> SessionContext {
        let snapshot = self.db.coordinator.store().snapshot();
        let catalog = self.statement_catalog(&snapshot).with_table(&desc.schema, &desc.name, table);
        query::context(catalog, &self.settings.current_schema(), Some(self.identity()), self.memory_pool())
    }

    fn update_target(&self, update: &Update) -> Result<Arc<TableDesc>> {
        if update.or.is_some() || !update.order_by.is_empty() || update.limit.is_some() {
            return Err(Error::unsupported("this form of UPDATE"));
        }
        let TableFactor::Table { name, .. } = &update.table.relation else {
            return Err(Error::unsupported("UPDATE of something other than a table"));
        };
        let desc = self.changeable_table(name, "update")?;
        for assignment in &update.assignments {
            let ast::AssignmentTarget::ColumnName(column) = &assignment.target else {
                return Err(Error::unsupported("UPDATE of a column tuple"));
            };
            let column = column.0.last().and_then(|p| p.as_ident()).map(normalize_ident).unwrap_or_default();
            match desc.column_index(&column) {
                Some(i) if !desc.columns[i].hidden => {}
                _ => {
                    return Err(Error::new(
                        SqlState::UndefinedColumn,
                        format!("column \"{column}\" of relation \"{}\" does not exist", desc.name),
                    ));
                }
            }
        }
        Ok(desc)
    }

    fn delete_target(&self, delete: &Delete) -> Result<(Arc<TableDesc>, TableFactor)> {
        if !delete.tables.is_empty() || !delete.order_by.is_empty() || delete.limit.is_some() {
            return Err(Error::unsupported("this form of DELETE"));
        }
        let (ast::FromTable::WithFromKeyword(from) | ast::FromTable::WithoutKeyword(from)) = &delete.from;
        let [target] = from.as_slice() else {
            return Err(Error::unsupported("DELETE from several tables"));
        };
        let TableFactor::Table { name, .. } = &target.relation else {
            return Err(Error::unsupported("DELETE from something other than a table"));
        };
        Ok((self.changeable_table(name, "delete from")?, target.relation.clone()))
    }
}

/// The statement with its RETURNING clause removed: Sabot evaluates RETURNING itself over
/// the rows it wrote, DataFusion plans the rest.
fn without_returning(statement: &ast::Statement) -> ast::Statement {
    let mut statement = statement.clone();
    match &mut statement {
        ast::Statement::Insert(insert) => insert.returning = None,
        ast::Statement::Update(update) => update.returning = None,
        ast::Statement::Delete(delete) => delete.returning = None,
        _ => {}
    }
    statement
}

fn reject_unsupported_insert(insert: &Insert) -> Result<()> {
    if matches!(insert.on, Some(ast::OnInsert::DuplicateKeyUpdate(_))) {
        return Err(
            Error::unsupported("ON DUPLICATE KEY UPDATE").with_hint("use ON CONFLICT (key) DO UPDATE")
        );
    }
    if insert.overwrite || insert.replace_into || insert.or.is_some() || insert.ignore {
        return Err(Error::unsupported("this form of INSERT"));
    }
    if insert.source.is_none() {
        return Err(Error::unsupported("INSERT without VALUES or SELECT"));
    }
    Ok(())
}

/// Postgres lets `INSERT INTO t VALUES (...)` or `INSERT INTO t SELECT ...` give fewer
/// values than columns: the rest take their defaults. DataFusion wants them named, so name
/// the leading columns (a select list that is not written out, `SELECT *`, is left as is).
fn fill_implicit_columns(insert: &mut Insert, desc: &TableDesc) {
    if !insert.columns.is_empty() {
        return;
    }
    let Some(mut body) = insert.source.as_ref().map(|q| q.body.as_ref()) else { return };
    while let SetExpr::SetOperation { left, .. } = body {
        body = left.as_ref();
    }
    let width = match body {
        SetExpr::Values(values) => values.rows.first().map_or(0, |r| r.content.len()),
        SetExpr::Select(select)
            if select.projection.iter().all(|item| {
                matches!(item, SelectItem::UnnamedExpr(_) | SelectItem::ExprWithAlias { .. })
            }) =>
        {
            select.projection.len()
        }
        _ => return,
    };
    let visible: Vec<&str> = desc.columns.iter().filter(|c| !c.hidden).map(|c| c.name.as_str()).collect();
    if width < visible.len() {
        insert.columns = visible[..width]
            .iter()
            .map(|name| ast::ObjectName::from(vec![ast::Ident::with_quote('"', *name)]))
            .collect();
    }
}

fn column_count_error(error: Error) -> Error {
    if error.to_string().to_ascii_lowercase().contains("column count doesn't match") {
        Error::new(SqlState::SyntaxError, "INSERT has more expressions than target columns")
    } else {
        error
    }
}

fn dml_input(plan: LogicalPlan) -> Result<LogicalPlan> {
    match plan {
        LogicalPlan::Dml(dml) => Ok(Arc::unwrap_or_clone(dml.input)),
        other => Err(Error::internal(format!("expected a DML plan, got {}", other.display()))),
    }
}

/// Rejects values that Postgres would not store without an explicit cast (a boolean into an
/// integer column, ...): DataFusion would cast them silently.
fn check_assignment_types(plan: &LogicalPlan, desc: &TableDesc) -> Result<()> {
    let LogicalPlan::Projection(projection) = plan else { return Ok(()) };
    for (expr, field) in projection.expr.iter().zip(projection.schema.fields()) {
        let Some(column) = desc.column_index(field.name()).map(|i| &desc.columns[i]) else { continue };
        for source_type in assigned_types(unalias(expr), &projection.input)? {
            check_assignable(&source_type, column)?;
        }
    }
    Ok(())
}

/// 42804 where Postgres would not store a value of `source_type` in `column` without an
/// explicit cast.
fn check_assignable(source_type: &DataType, column: &crate::catalog::ColumnDesc) -> Result<()> {
    let source = SqlType::from_arrow(&Field::new("", source_type.clone(), true));
    if *source_type == DataType::Null || source.assignable_to(&column.sql_type) {
        return Ok(());
    }
    Err(Error::new(
        SqlState::DatatypeMismatch,
        format!(
            "column \"{}\" is of type {} but expression is of type {}",
            column.name,
            column.sql_type.name(),
            source.name()
        ),
    )
    .with_hint("You will need to rewrite or cast the expression."))
}

/// Casts each of the table's columns in `plan`'s output to the column's type, refusing
/// with 42804 what an assignment in Postgres refuses (a boolean into an integer, say).
pub(super) fn assignment_casts(plan: LogicalPlan, desc: &TableDesc) -> Result<LogicalPlan> {
    let schema = plan.schema().clone();
    let exprs = schema
        .columns()
        .into_iter()
        .map(|column| {
            let expr = Expr::Column(column.clone());
            let Some(target) = desc.column_index(&column.name).map(|i| &desc.columns[i]) else {
                return Ok(expr);
            };
            check_assignable(&expr.get_type(&schema)?, target)?;
            Ok(expr.cast_to(&target.sql_type.to_arrow(), &schema)?.alias(&column.name))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(plan))?))
}

/// The types of the values an expression casts into a column. DataFusion casts either in
/// the projection or, for `VALUES`, inside each row of the Values node.
fn assigned_types(expr: &Expr, input: &LogicalPlan) -> Result<Vec<DataType>> {
    let cast_source = |expr: &Expr, schema: &datafusion::common::DFSchema| -> Result<Option<DataType>> {
        match unalias(expr) {
            Expr::Cast(datafusion::logical_expr::Cast { expr: inner, .. })
            | Expr::TryCast(datafusion::logical_expr::TryCast { expr: inner, .. }) => {
                Ok(Some(inner.get_type(schema)?))
            }
            _ => Ok(None),
        }
    };
    if let Some(source) = cast_source(expr, input.schema())? {
        return Ok(vec![source]);
    }
    let (Expr::Column(column), LogicalPlan::Values(values)) = (expr, input) else { return Ok(vec![]) };
    let Ok(index) = input.schema().index_of_column(column) else { return Ok(vec![]) };
    let empty = datafusion::common::DFSchema::empty();
    let mut types = Vec::new();
    for row in &values.values {
        if let Some(source) = row.get(index).map(|e| cast_source(e, &empty)).transpose()?.flatten() {
            types.push(source);
        }
    }
    Ok(types)
}

fn unalias(expr: &Expr) -> &Expr {
    match expr {
        Expr::Alias(alias) => unalias(&alias.expr),
        other => other,
    }
}

/// The name under which the target table's columns appear in a DML plan: its alias,
/// where the plan uses it (DataFusion's DELETE plans the table under its own name).
fn target_qualifier(plan: &LogicalPlan, relation: &TableFactor, desc: &TableDesc) -> String {
    match relation {
        TableFactor::Table { alias: Some(alias), .. } => {
            let alias = normalize_ident(&alias.name);
            let used = plan.schema().iter().any(|(q, _)| q.is_some_and(|q| q.table() == alias));
            if used { alias } else { desc.name.clone() }
        }
        _ => desc.name.clone(),
    }
}

/// The target table's column `name` in `plan`'s output.
fn target_column(plan: &LogicalPlan, qualifier: &str, name: &str) -> Result<Expr> {
    plan.schema()
        .iter()
        .find(|(q, f)| f.name() == name && q.is_none_or(|q| q.table() == qualifier))
        .map(|(q, f)| Expr::Column(Column::new(q.cloned(), f.name())))
        .ok_or_else(|| Error::internal(format!("column {qualifier}.{name} missing from DML plan")))
}

/// UPDATE's plan yields the new rows; add the old values of every column after them.
fn with_old_columns(plan: LogicalPlan, desc: &TableDesc, qualifier: &str) -> Result<LogicalPlan> {
    let LogicalPlan::Projection(projection) = plan else {
        return Err(Error::internal("UPDATE plan is not a projection"));
    };
    let mut exprs = projection.expr.clone();
    for (i, column) in desc.columns.iter().enumerate() {
        let old = target_column(&projection.input, qualifier, &column.name)?;
        exprs.push(old.alias(format!("{OLD_COLUMN_PREFIX}{i}")));
    }
    Ok(LogicalPlan::Projection(Projection::try_new(exprs, projection.input)?))
}

/// DELETE's plan yields the joined input; keep the target table's columns.
fn target_columns(plan: LogicalPlan, desc: &TableDesc, qualifier: &str) -> Result<LogicalPlan> {
    let exprs =
        desc.columns.iter().map(|c| target_column(&plan, qualifier, &c.name)).collect::<Result<Vec<_>>>()?;
    Ok(LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(plan))?))
}

/// The schema to concatenate query output under (the batches' own, which may differ from
/// the table's in nullability), or `fallback` when there are no batches.
fn batches_schema(batches: &[RecordBatch], fallback: &SchemaRef, width: usize) -> SchemaRef {
    match batches.first() {
        Some(batch) => batch.schema(),
        None => {
            let mut fields: Vec<Field> =
                fallback.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect();
            while fields.len() < width {
                let i = fields.len() - fallback.fields().len();
                fields.push(
                    fallback
                        .field(i)
                        .clone()
                        .with_name(format!("{OLD_COLUMN_PREFIX}{i}"))
                        .with_nullable(true),
                );
            }
            Arc::new(Schema::new(fields))
        }
    }
}

/// Concatenates rows for `desc` into `schema` (visible or full), checking NOT NULL, JSON
/// columns, `varchar(n)` / `char(n)` lengths and CHECK constraints on the way.
pub(super) fn checked_rows(
    desc: &TableDesc,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<RecordBatch> {
    let mut columns: Vec<ArrayRef> = if batches.is_empty() {
        schema.fields().iter().map(|f| datafusion::arrow::array::new_empty_array(f.data_type())).collect()
    } else {
        let all = concat_batches(&batches[0].schema(), batches)?;
        all.columns().to_vec()
    };
    for (field, array) in schema.fields().iter().zip(columns.iter_mut()) {
        let Some(column) = desc.column_index(field.name()).map(|i| &desc.columns[i]) else { continue };
        *array = super::column_values::fit(array, &column.sql_type, &column.name)?;
        if !column.nullable && array.null_count() > 0 {
            return Err(Error::new(
                SqlState::NotNullViolation,
                format!(
                    "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
                    column.name, desc.name
                ),
            ));
        }
    }
    let rows = RecordBatch::try_new(schema.clone(), columns)?;
    super::checks::enforce(desc, &rows)?;
    Ok(rows)
}

/// Adds the hidden row id to rows in the visible schema.
fn with_hidden_columns(writer: &mut TableWriter, desc: &TableDesc, rows: RecordBatch) -> Result<RecordBatch> {
    if !desc.has_row_id() {
        return Ok(RecordBatch::try_new(desc.full_schema(), rows.columns().to_vec())?);
    }
    let mut columns = rows.columns().to_vec();
    columns.push(Arc::new(writer.allocate_row_ids(rows.num_rows())));
    Ok(RecordBatch::try_new(desc.full_schema(), columns)?)
}

/// Fails with 23505 if a key repeats within `keys` or already exists in the table (keys in
/// `freed` are being removed by the same statement).
pub(super) fn check_unique(
    state: &StateTable,
    snapshot: &dyn Snapshot,
    desc: &TableDesc,
    rows: &RecordBatch,
    keys: &Rows,
    freed: &HashSet<Vec<u8>>,
) -> Result<()> {
    let mut seen = HashSet::with_capacity(keys.num_rows());
    for (i, key) in keys.iter().enumerate() {
        let bytes = key.data();
        let taken = !freed.contains(bytes) && state.get(snapshot, bytes)?.is_some();
        if !seen.insert(bytes) || taken {
            return Err(duplicate_key(desc, rows, i));
        }
    }
    Ok(())
}

fn duplicate_key(desc: &TableDesc, rows: &RecordBatch, row: usize) -> Error {
    let names: Vec<&str> = desc.primary_key.iter().map(|&i| desc.columns[i].name.as_str()).collect();
    let values: Vec<String> = desc
        .primary_key
        .iter()
        .map(|&i| array_value_to_string(rows.column(i), row).unwrap_or_default())
        .collect();
    Error::new(
        SqlState::UniqueViolation,
        format!("duplicate key value violates unique constraint \"{}\"", desc.primary_key_name()),
    )
    .with_detail(format!("Key ({})=({}) already exists.", names.join(", "), values.join(", ")))
}

/// Indexes of the first row of each distinct key (UPDATE ... FROM and DELETE ... USING can
/// match a row several times; it changes once).
fn first_per_key(keys: &Rows) -> UInt32Array {
    let mut seen = HashSet::with_capacity(keys.num_rows());
    UInt32Array::from_iter_values(
        keys.iter().enumerate().filter(|(_, key)| seen.insert(key.data())).map(|(i, _)| i as u32),
    )
}

/// Interleaves old and new rows into update pairs.
pub(super) fn update_pairs(old: &RecordBatch, new: &RecordBatch) -> Result<Chunk> {
    let both = concat_batches(&old.schema(), [old, new])?;
    let n = old.num_rows() as u32;
    let order = UInt32Array::from_iter_values((0..n).flat_map(|i| [i, n + i]));
    let ops = (0..n).flat_map(|_| [Op::UpdateDelete, Op::UpdateInsert]).collect();
    Ok(Chunk::new(ops, take_record_batch(&both, &order)?))
}

fn returning_query(desc: &TableDesc, items: &[SelectItem]) -> Result<ast::Statement> {
    let list: Vec<String> = items.iter().map(ToString::to_string).collect();
    crate::sql::parser::parse_generated(&format!("SELECT {} FROM {}", list.join(", "), quoted_name(desc)))
}

pub(super) fn quoted_name(desc: &TableDesc) -> String {
    format!("{}.{}", quote_ident(&desc.schema), quote_ident(&desc.name))
}

pub(super) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
