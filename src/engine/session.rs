//! `Session`: executes statements for one client, with its own settings.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::execution::memory_pool::MemoryPool;
use datafusion::sql::sqlparser::ast::{self, Set};

use super::Database;
use super::copy::CopyIn;
use super::execute::Rows;
use super::query;
use super::settings::Settings;
use crate::batch::{SabotCatalog, StoredTable};
use crate::catalog::TableDesc;
use crate::common::{Error, Result, SqlState};
use crate::sql::Statement;
use crate::state::Snapshot;

/// What a statement produced.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The command tag, without the row count (`SELECT`, `INSERT 0`, `CREATE TABLE`).
    pub tag: String,
    /// Rows affected or returned, for tags that carry a count.
    pub rows_affected: Option<usize>,
    /// Result rows, for statements that return them.
    pub rows: Option<Rows>,
    pub kind: OutcomeKind,
    /// NOTICE / WARNING messages for the client, as `(severity, message)`.
    pub notices: Vec<(&'static str, String)>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum OutcomeKind {
    #[default]
    Done,
    TransactionStart,
    TransactionEnd,
    /// The client should now send COPY data for this many columns.
    CopyIn {
        columns: usize,
    },
    /// The rows go to the client as COPY data in this format.
    CopyOut(crate::sql::copy::CopyOptions),
}

impl Outcome {
    pub fn command(tag: &str) -> Self {
        Outcome { tag: tag.to_string(), ..Default::default() }
    }

    pub fn affected(tag: &str, rows: usize) -> Self {
        Outcome { tag: tag.to_string(), rows_affected: Some(rows), ..Default::default() }
    }

    pub fn rows(tag: &str, schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        let count = batches.iter().map(RecordBatch::num_rows).sum();
        Outcome {
            tag: tag.to_string(),
            rows_affected: Some(count),
            rows: Some(Rows::from_batches(schema, batches)),
            ..Default::default()
        }
    }

    /// Rows that are still being computed; the reader counts them.
    pub fn stream(tag: &str, rows: Rows) -> Self {
        Outcome { tag: tag.to_string(), rows: Some(rows), ..Default::default() }
    }

    /// One text column of lines (EXPLAIN output).
    pub fn text_rows(tag: &str, column: &str, lines: Vec<String>) -> Self {
        let schema = text_schema(&[column]);
        let batch = RecordBatch::try_new(schema.clone(), vec![string_column(lines.into_iter())])
            .expect("one text column matches its schema");
        Outcome::rows(tag, schema, vec![batch])
    }

    pub fn with_notice(mut self, message: String) -> Self {
        self.notices.push(("NOTICE", message));
        self
    }

    pub fn with_notices(mut self, messages: Vec<String>) -> Self {
        self.notices.extend(messages.into_iter().map(|m| ("NOTICE", m)));
        self
    }

    fn with_kind(mut self, kind: OutcomeKind) -> Self {
        self.kind = kind;
        self
    }
}

/// A statement parsed (and checked) once, executed many times with parameters.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// `None` for an empty query string.
    pub statement: Option<Statement>,
    /// The type of each `$n`, where the statement determines it.
    pub param_types: Vec<Option<DataType>>,
    /// The columns the statement returns, if it returns rows.
    pub schema: Option<SchemaRef>,
}

pub struct Session {
    pub(super) db: Arc<Database>,
    pub(super) settings: Settings,
    /// The open transaction block (BEGIN ... COMMIT), if any.
    pub(super) transaction: Option<super::transaction::Transaction>,
    pub(super) copy: Option<CopyIn>,
    /// The memory pool of the statement running now.
    memory: Option<Arc<dyn MemoryPool>>,
    /// The role this session runs as.
    pub(super) user: String,
    addresses: Addresses,
}

/// The two ends of a session's connection; None for a session without one (embedded).
#[derive(Clone, Copy, Debug, Default)]
pub struct Addresses {
    pub server: Option<std::net::SocketAddr>,
    pub client: Option<std::net::SocketAddr>,
}

impl Session {
    pub(super) fn new(db: Arc<Database>, user: &str) -> Self {
        let settings = Settings::new(db.config());
        Session {
            db,
            settings,
            transaction: None,
            copy: None,
            memory: None,
            user: user.to_string(),
            addresses: Addresses::default(),
        }
    }

    /// Who runs the session's statements, and over which connection.
    pub(super) fn identity(&self) -> query::SessionIdentity<'_> {
        query::SessionIdentity {
            user: &self.user,
            server: self.addresses.server,
            client: self.addresses.client,
        }
    }

    /// Records the connection's ends (`inet_server_addr()`, `inet_client_port()`, ...).
    pub fn set_addresses(&mut self, addresses: Addresses) {
        self.addresses = addresses;
    }

    /// The role this session runs as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// How long a statement may run (`SET statement_timeout`), if bounded.
    pub fn statement_timeout(&self) -> Option<std::time::Duration> {
        self.settings.statement_timeout()
    }

    /// The memory pool of the running statement (a fresh one outside a statement).
    pub(super) fn memory_pool(&self) -> Arc<dyn MemoryPool> {
        match &self.memory {
            Some(pool) => pool.clone(),
            None => self.db.statement_pool(Some(self.settings.statement_memory_bytes_max())),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }

    /// Runs every statement of `sql` in order, stopping at the first error (which is the
    /// last element). A COPY FROM STDIN must be the last statement.
    pub async fn execute(&mut self, sql: &str) -> Vec<Result<Outcome>> {
        let statements = match self.parse(sql) {
            Ok(statements) => statements,
            Err(e) => return vec![Err(e)],
        };
        let mut outcomes = Vec::with_capacity(statements.len());
        for statement in &statements {
            let outcome = self.run(statement, &[]).await;
            let stop =
                outcome.is_err() || matches!(outcome, Ok(Outcome { kind: OutcomeKind::CopyIn { .. }, .. }));
            outcomes.push(outcome);
            if stop {
                break;
            }
        }
        outcomes
    }

    /// Splits `sql` into statements (for running them one at a time with [`Session::run`]).
    pub fn parse(&mut self, sql: &str) -> Result<Vec<Statement>> {
        let parsed = crate::sql::parse_within(sql, self.settings.statement_memory_bytes_max());
        if parsed.is_err() {
            self.fail_transaction();
        }
        parsed
    }

    /// Whether a transaction block is open (failed or not).
    pub fn in_transaction_block(&self) -> bool {
        self.transaction.is_some()
    }

    /// An error inside a transaction block aborts it (25P02 until it ends).
    fn fail_transaction(&mut self) {
        if let Some(transaction) = &mut self.transaction {
            transaction.failed = true;
        }
    }

    /// Parses and checks one statement for the extended protocol.
    pub async fn prepare(&mut self, sql: &str) -> Result<Prepared> {
        let mut statements = self.parse(sql)?;
        if statements.len() > 1 {
            return Err(Error::new(
                SqlState::SyntaxError,
                "cannot insert multiple commands into a prepared statement",
            ));
        }
        let Some(statement) = statements.pop() else {
            return Ok(Prepared { statement: None, param_types: vec![], schema: None });
        };
        let (param_types, schema) = self.describe(&statement).await?;
        Ok(Prepared { statement: Some(statement), param_types, schema })
    }

    /// Executes a prepared statement with bound parameter values.
    pub async fn execute_prepared(&mut self, prepared: &Prepared, params: &[ScalarValue]) -> Result<Outcome> {
        match &prepared.statement {
            Some(statement) => self.run(statement, params).await,
            None => Ok(Outcome::command("")),
        }
    }

    /// Runs one statement.
    pub async fn run(&mut self, statement: &Statement, params: &[ScalarValue]) -> Result<Outcome> {
        if let Some(transaction) = &self.transaction {
            let ends = matches!(statement, Statement::Sql(s) if matches!(s.as_ref(), ast::Statement::Commit { .. } | ast::Statement::Rollback { .. }));
            if transaction.failed && !ends {
                return Err(super::transaction::aborted());
            }
            if let Err(e) = super::transaction::check_allowed(statement) {
                self.fail_transaction();
                return Err(e);
            }
        }
        self.memory = Some(self.db.statement_pool(Some(self.settings.statement_memory_bytes_max())));
        let outcome = self.run_statement(statement, params).await;
        self.memory = None;
        if outcome.is_err() {
            self.fail_transaction();
        }
        outcome
    }

    async fn run_statement(&mut self, statement: &Statement, params: &[ScalarValue]) -> Result<Outcome> {
        let statement = match statement {
            Statement::Flush => {
                self.db.flush().await?;
                return Ok(Outcome::command("FLUSH"));
            }
            Statement::CopyInline { copy, data } => {
                let ast::Statement::Copy { source, to: false, target, options, legacy_options, .. } =
                    copy.as_ref()
                else {
                    return Err(Error::internal("inline COPY data without COPY ... FROM"));
                };
                self.copy_from(source, target, options, legacy_options)?;
                self.copy_data(data.as_bytes())?;
                return self.copy_done().await;
            }
            Statement::CreateSource(create) => {
                return self.db.create_source(create, &self.settings.current_schema()).await;
            }
            Statement::DropSource { names, if_exists, cascade } => {
                return self
                    .db
                    .drop_sources(names, *if_exists, *cascade, &self.settings.current_schema())
                    .await;
            }
            Statement::ShowSources => return Ok(self.show_relations(|t| t.is_source())),
            Statement::CreateSink(create) => return self.create_sink(create).await,
            Statement::DropSink { names, if_exists, cascade } => {
                return self
                    .db
                    .drop_sinks(names, *if_exists, *cascade, &self.settings.current_schema())
                    .await;
            }
            Statement::ShowSinks => return Ok(self.show_relations(|t| t.is_sink())),
            Statement::RenameRelation { kind, name, new_name, if_exists } => {
                let schema = self.settings.current_schema();
                return self.db.rename_relation(kind, name, new_name, *if_exists, &schema).await;
            }
            Statement::EmitOnWindowClose(statement) => return self.emit_on_window_close(statement).await,
            Statement::Sql(statement) => statement.as_ref(),
        };
        let schema = self.settings.current_schema();
        use ast::Statement as S;
        match statement {
            S::Explain { statement: inner, .. } if matches!(inner.as_ref(), S::CreateView(v) if v.materialized) =>
            {
                let S::CreateView(create) = inner.as_ref() else { unreachable!("matched above") };
                self.db.create_materialized_view(self.create_view(create), true).await
            }
            S::Query(_) | S::Explain { .. } => self.query(statement, params).await,
            S::CreateView(create) if create.materialized => {
                if create.or_replace || create.or_alter {
                    return Err(Error::unsupported("CREATE OR REPLACE MATERIALIZED VIEW"));
                }
                self.db.create_materialized_view(self.create_view(create), false).await
            }
            S::CreateView(create) => self.db.create_plain_view(create, &schema).await,
            S::ShowViews { materialized: false, .. } => Ok(self.show_relations(|t| t.is_plain_view())),
            S::ShowViews { materialized: true, .. } => Ok(self.show_relations(|t| t.is_materialized_view())),
            S::Insert(insert) => self.insert(insert, params, None).await,
            S::Update(update) => self.update(statement, update, params).await,
            S::Delete(_) => {
                let statement = crate::sql::decorrelate::plannable_delete(statement);
                match &statement {
                    ast::Statement::Delete(delete) => self.delete(&statement, delete, params).await,
                    _ => Err(Error::internal("the DELETE rewrite lost the DELETE")),
                }
            }
            S::Truncate(truncate) => self.truncate(truncate).await,
            S::Copy { source, to: true, target, options, legacy_options, .. } => {
                self.copy_to(source, target, options, legacy_options, params).await
            }
            S::Copy { source, to: false, target, options, legacy_options, .. } => {
                self.copy_from(source, target, options, legacy_options)
            }
            S::CreateTable(create) => self.db.create_table(create, &schema).await,
            S::AlterTable(alter) => self.db.alter_table(alter, &schema).await,
            S::AlterIndex { name, operation: ast::AlterIndexOperation::RenameIndex { index_name } } => {
                self.db.rename_relation("index", name, index_name, false, &schema).await
            }
            S::CreateIndex(create) => {
                self.db.create_index(create, &schema, self.settings.streaming_parallelism()).await
            }
            S::Comment { object_type, object_name, comment, .. } => {
                self.db.comment_on(*object_type, object_name, comment.clone(), &schema).await
            }
            S::CreateSchema { schema_name, if_not_exists, .. } => {
                self.db.create_schema(schema_name, *if_not_exists).await
            }
            S::CreateRole(create) => self.db.create_role(create, &self.user).await,
            S::CreateFunction(create) => self.db.create_function(create, &schema).await,
            S::DropFunction(drop) => self.db.drop_functions(drop, &schema).await,
            S::AlterRole { name, operation } => self.db.alter_role(name, operation, &self.user).await,
            S::Drop {
                object_type: ast::ObjectType::Role | ast::ObjectType::User, if_exists, names, ..
            } => self.db.drop_roles(names, *if_exists, &self.user).await,
            S::Drop { object_type, if_exists, names, cascade, .. } => {
                self.db.drop_objects(*object_type, names, *if_exists, *cascade, &schema).await
            }
            S::StartTransaction { .. } => Ok(self.begin()),
            S::Commit { .. } => self.end_transaction("COMMIT", false).await,
            S::Rollback { .. } => self.end_transaction("ROLLBACK", true).await,
            S::Set(set) => self.set(set),
            S::ShowVariable { variable } => self.show(variable),
            S::ShowTables { .. } => Ok(self.show_relations(|t| t.is_table())),
            other => Err(Error::unsupported(format!("statement {}", statement_kind(other)))),
        }
    }

    pub(super) async fn query(
        &mut self,
        statement: &ast::Statement,
        params: &[ScalarValue],
    ) -> Result<Outcome> {
        let ctx = self.snapshot_context();
        let result = self.start(&ctx, &query::name_subqueries(statement), params).await;
        let rows = match result {
            // DataFusion cannot run correlated subqueries whose correlation is not an
            // equality; retry the shapes that can be rewritten into joins.
            Err(e) if e.to_string().contains("does not support logical expression ScalarSubquery") => {
                match self.decorrelated(statement) {
                    Some((ctx, rewritten)) => self.start(&ctx, &rewritten, params).await?,
                    None => return Err(e),
                }
            }
            other => other?,
        };
        let schema = query::postgres_column_names(statement, &rows.schema);
        let tag = if matches!(statement, ast::Statement::Explain { .. }) { "EXPLAIN" } else { "SELECT" };
        Ok(Outcome::stream(tag, rows.renamed(schema)))
    }

    /// Plans a query and starts it; its rows stream to the reader.
    async fn start(
        &self,
        ctx: &datafusion::execution::context::SessionContext,
        statement: &ast::Statement,
        params: &[ScalarValue],
    ) -> Result<Rows> {
        let plan = query::bind(query::plan(ctx, statement).await?, params)?;
        self.db.compute.stream(ctx, plan).await
    }

    /// The statement with its correlated scalar subqueries rewritten into joins, and a
    /// context in which the outer table's key (the hidden row id too) can be joined on.
    fn decorrelated(
        &self,
        statement: &ast::Statement,
    ) -> Option<(datafusion::execution::context::SessionContext, ast::Statement)> {
        use crate::sql::decorrelate::{TableColumns, decorrelate};
        let outer = std::cell::RefCell::new(None);
        let columns_of = |name: &ast::ObjectName| {
            let desc = self.target_table(name).ok()?;
            let columns = TableColumns {
                key: desc.primary_key.iter().map(|&i| desc.columns[i].name.clone()).collect(),
                visible: desc.columns.iter().filter(|c| !c.hidden).map(|c| c.name.clone()).collect(),
            };
            *outer.borrow_mut() = Some(desc);
            Some(columns)
        };
        // Tests against a subquery's rows (`EXISTS`, `> ALL`) are first written as the
        // aggregates (`count(*)`, `array_agg`) they compute with.
        let mut statement = statement.clone();
        crate::sql::quantified::rewrite(&mut statement, crate::sql::stream_plan::PLAN_REVISION, false);
        let rewritten = decorrelate(&statement, &columns_of)?;
        let desc = outer.into_inner()?;
        let snapshot = self.db.coordinator.store().snapshot();
        let table = self.readable_table(&desc, &snapshot).with_hidden_columns();
        let catalog = self.statement_catalog(&snapshot).with_table(&desc.schema, &desc.name, Arc::new(table));
        Some((
            query::context(
                catalog,
                &self.settings.current_schema(),
                Some(self.identity()),
                self.memory_pool(),
            ),
            rewritten,
        ))
    }

    /// The session's variables as `pg_settings` shows them.
    fn settings_list(&self) -> Vec<crate::batch::pg_catalog::Setting> {
        self.settings
            .all()
            .into_iter()
            .map(|(name, value, description)| crate::batch::pg_catalog::Setting {
                name: name.to_string(),
                value,
                description: description.to_string(),
            })
            .collect()
    }

    /// A table's rows as this session's statements read them: committed, with the open
    /// transaction block's own writes on top.
    pub(super) fn readable_table(&self, desc: &Arc<TableDesc>, snapshot: &Arc<dyn Snapshot>) -> StoredTable {
        match self.transaction.as_ref().and_then(|t| t.committed_state(desc)) {
            Some(state) => StoredTable::overlaid(desc.clone(), state, snapshot.clone()),
            None => StoredTable::committed(desc.clone(), snapshot.clone()),
        }
    }

    /// The catalog a statement reads through: `snapshot`, with the transaction block's
    /// writes.
    pub(super) fn statement_catalog(&self, snapshot: &Arc<dyn Snapshot>) -> SabotCatalog {
        let mut catalog = SabotCatalog::new(self.db.catalog(), snapshot.clone());
        for desc in self.transaction.iter().flat_map(|t| t.tables()) {
            catalog =
                catalog.with_table(&desc.schema, &desc.name, Arc::new(self.readable_table(desc, snapshot)));
        }
        catalog
    }

    /// A DataFusion context over the newest committed snapshot.
    pub(super) fn snapshot_context(&self) -> datafusion::execution::context::SessionContext {
        // The epoch is read before the snapshot is taken: progress is never ahead of the data.
        let epoch = self.db.coordinator.committed_epoch();
        let snapshot = self.db.coordinator.store().snapshot();
        let system = crate::batch::system::SystemState { epoch, sources: self.db.source_progress() };
        let catalog =
            self.statement_catalog(&snapshot).with_system(system).with_settings(self.settings_list());
        query::context(catalog, &self.settings.current_schema(), Some(self.identity()), self.memory_pool())
    }

    /// Parameter types and result columns of a statement, without running it.
    async fn describe(
        &mut self,
        statement: &Statement,
    ) -> Result<(Vec<Option<DataType>>, Option<SchemaRef>)> {
        let Statement::Sql(statement) = statement else { return Ok((vec![], None)) };
        use ast::Statement as S;
        match statement.as_ref() {
            S::Explain { statement: inner, .. } if matches!(inner.as_ref(), S::CreateView(_)) => {
                Ok((vec![], Some(text_schema(&["QUERY PLAN"]))))
            }
            S::Query(_) | S::Explain { .. } => {
                let ctx = self.snapshot_context();
                let plan = query::plan(&ctx, &query::name_subqueries(statement)).await?;
                let schema = Arc::new(plan.schema().as_arrow().clone());
                Ok((query::parameter_types(&plan)?, Some(query::postgres_column_names(statement, &schema))))
            }
            S::Insert(_) | S::Update(_) => self.describe_dml(statement).await,
            S::Delete(_) => {
                let statement = crate::sql::decorrelate::plannable_delete(statement);
                self.describe_dml(&statement).await
            }
            S::ShowVariable { variable } => {
                let name = variable.iter().map(|i| i.value.as_str()).collect::<Vec<_>>().join(" ");
                if name.eq_ignore_ascii_case("all") {
                    Ok((vec![], Some(show_all_schema())))
                } else {
                    Ok((vec![], Some(text_schema(&[&name.to_lowercase()]))))
                }
            }
            S::ShowTables { .. } | S::ShowViews { .. } => Ok((vec![], Some(text_schema(&["name"])))),
            _ => Ok((vec![], None)),
        }
    }

    /// The table a DML statement writes: views and sources are read-only.
    pub(super) fn writable_table(&self, name: &ast::ObjectName) -> Result<Arc<TableDesc>> {
        let desc = self.target_table(name)?;
        if desc.is_plain_view() {
            return Err(Error::unsupported(format!("cannot change view \"{}\"", desc.name))
                .with_detail("Views are not automatically updatable in Sabot.")
                .with_hint("Change the tables the view reads."));
        }
        if desc.is_view() || desc.is_source() {
            return Err(Error::new(
                SqlState::WrongObjectType,
                format!("cannot change {} \"{}\"", desc.kind_name(), desc.name),
            ));
        }
        Ok(desc)
    }

    /// The table an UPDATE or DELETE changes: not an append-only one.
    pub(super) fn changeable_table(&self, name: &ast::ObjectName, action: &str) -> Result<Arc<TableDesc>> {
        let desc = self.writable_table(name)?;
        if desc.append_only {
            return Err(Error::new(
                SqlState::WrongObjectType,
                format!("cannot {action} append-only table \"{}\"", desc.name),
            )
            .with_hint("rows of an APPEND ONLY table are only ever inserted"));
        }
        Ok(desc)
    }

    pub(super) fn target_table(&self, name: &ast::ObjectName) -> Result<Arc<TableDesc>> {
        let (schema, table) = crate::sql::ddl::resolve_name(name, &self.settings.current_schema())?;
        self.db.catalog().table(&schema, &table).cloned().ok_or_else(|| {
            Error::new(SqlState::UndefinedTable, format!("relation \"{table}\" does not exist"))
        })
    }

    fn begin(&mut self) -> Outcome {
        let outcome = Outcome::command("BEGIN").with_kind(OutcomeKind::TransactionStart);
        if self.transaction.is_some() {
            return outcome.with_warning("there is already a transaction in progress".into());
        }
        self.transaction = Some(super::transaction::Transaction::default());
        outcome
    }

    /// COMMIT (applies the block's writes in one epoch) or ROLLBACK (discards them); a
    /// failed block is rolled back either way. The block is over even when COMMIT fails.
    async fn end_transaction(&mut self, tag: &str, rollback: bool) -> Result<Outcome> {
        let Some(transaction) = self.transaction.take() else {
            return Ok(Outcome::command(tag)
                .with_kind(OutcomeKind::TransactionEnd)
                .with_warning("there is no transaction in progress".into()));
        };
        if rollback || transaction.failed {
            return Ok(Outcome::command("ROLLBACK").with_kind(OutcomeKind::TransactionEnd));
        }
        let epoch = transaction.commit(&self.db).await?;
        if let Some(epoch) = epoch {
            self.finish_write(Some(epoch)).await?;
        }
        Ok(Outcome::command("COMMIT").with_kind(OutcomeKind::TransactionEnd))
    }

    fn set(&mut self, set: &Set) -> Result<Outcome> {
        match set {
            Set::SingleAssignment { variable, values, .. } => {
                let name = variable.to_string();
                let value = values.iter().map(set_value_text).collect::<Vec<_>>().join(", ");
                if value.eq_ignore_ascii_case("default") {
                    self.settings.reset(&name)?;
                } else {
                    self.settings.set(&name, &value)?;
                }
            }
            Set::SetTimeZone { value, .. } => self.settings.set("timezone", &set_value_text(value))?,
            Set::SetNames { charset_name, .. } => {
                self.settings.set("client_encoding", &charset_name.value)?
            }
            other => return Err(Error::unsupported(format!("{other}"))),
        }
        Ok(Outcome::command("SET"))
    }

    fn show(&self, variable: &[ast::Ident]) -> Result<Outcome> {
        let mut name = variable.iter().map(|i| i.value.as_str()).collect::<Vec<_>>().join(" ");
        // SQL's spelling (JDBC sends it), named as Postgres names the column.
        if name.eq_ignore_ascii_case("transaction isolation level") {
            name = "transaction_isolation".to_string();
        }
        if name.eq_ignore_ascii_case("all") {
            let all = self.settings.all();
            let columns = [
                string_column(all.iter().map(|(n, _, _)| n.to_string())),
                string_column(all.iter().map(|(_, v, _)| v.clone())),
                string_column(all.iter().map(|(_, _, d)| d.to_string())),
            ];
            let schema = show_all_schema();
            let batch = RecordBatch::try_new(schema.clone(), columns.to_vec())?;
            return Ok(Outcome::rows("SHOW", schema, vec![batch]));
        }
        let value = self.settings.get(&name)?.to_string();
        let schema = text_schema(&[&name.to_lowercase()]);
        let batch = RecordBatch::try_new(schema.clone(), vec![string_column([value])])?;
        Ok(Outcome::rows("SHOW", schema, vec![batch]))
    }

    /// `CREATE SINK ... FROM relation | AS query`: a view whose changes go to the sink's
    /// connector (`FROM r` is `AS SELECT * FROM r`).
    async fn create_sink(&mut self, create: &crate::sql::source_ddl::CreateSink) -> Result<Outcome> {
        use crate::sql::source_ddl::SinkInput;
        let mut def = crate::sql::source_ddl::sink_connector(create)?;
        let (_, name) = crate::sql::ddl::resolve_name(&create.name, &self.settings.current_schema())?;
        def.options = crate::connector::prepare_sink(&def, &name)?;
        let from;
        let query = match &create.input {
            SinkInput::Query(query) => query.as_ref(),
            SinkInput::From(relation) => {
                let sql = format!("SELECT * FROM {relation}");
                let ast::Statement::Query(query) = crate::sql::parser::parse_generated(&sql)? else {
                    return Err(Error::internal("SELECT * FROM is not a query"));
                };
                from = query;
                from.as_ref()
            }
        };
        let view = super::views::CreateView {
            name: &create.name,
            columns: Vec::new(),
            query,
            if_not_exists: create.if_not_exists,
            schema: self.settings.current_schema(),
            parallelism: self.settings.streaming_parallelism(),
            sink: Some(def),
            emit_on_window_close: create.emit_on_window_close,
            index: None,
        };
        self.db.create_materialized_view(view, false).await
    }

    /// CREATE MATERIALIZED VIEW (or EXPLAIN of it) with EMIT ON WINDOW CLOSE.
    async fn emit_on_window_close(&mut self, statement: &ast::Statement) -> Result<Outcome> {
        let (create, explain) = match statement {
            ast::Statement::CreateView(create) => (create, false),
            ast::Statement::Explain { statement: inner, .. } => match inner.as_ref() {
                ast::Statement::CreateView(create) => (create, true),
                _ => return Err(Error::internal("EMIT ON WINDOW CLOSE marked an EXPLAIN of no view")),
            },
            _ => {
                return Err(Error::new(
                    SqlState::SyntaxError,
                    "EMIT ON WINDOW CLOSE can only end the query of a materialized view or a sink",
                ));
            }
        };
        if create.or_replace || create.or_alter {
            return Err(Error::unsupported("CREATE OR REPLACE MATERIALIZED VIEW"));
        }
        let view = super::views::CreateView { emit_on_window_close: true, ..self.create_view(create) };
        self.db.create_materialized_view(view, explain).await
    }

    fn create_view<'a>(&self, create: &'a ast::CreateView) -> super::views::CreateView<'a> {
        super::views::CreateView {
            name: &create.name,
            columns: super::views::view_column_names(&create.columns),
            query: &create.query,
            if_not_exists: create.if_not_exists,
            schema: self.settings.current_schema(),
            parallelism: self.settings.streaming_parallelism(),
            sink: None,
            emit_on_window_close: false,
            index: None,
        }
    }

    /// `SHOW TABLES` and friends: the names of the current schema's relations of a kind.
    fn show_relations(&self, kind: impl Fn(&TableDesc) -> bool) -> Outcome {
        let catalog = self.db.catalog();
        let schema_name = self.settings.current_schema();
        let names = catalog.tables_in(&schema_name).filter(|t| kind(t)).map(|t| t.name.clone());
        let schema = text_schema(&["name"]);
        let batch = RecordBatch::try_new(schema.clone(), vec![string_column(names)])
            .expect("one text column matches its schema");
        Outcome::rows("SHOW", schema, vec![batch])
    }
}

impl Outcome {
    fn with_warning(mut self, message: String) -> Self {
        self.notices.push(("WARNING", message));
        self
    }
}

fn set_value_text(expr: &ast::Expr) -> String {
    match expr {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        ast::Expr::Identifier(ident) => ident.value.clone(),
        other => other.to_string(),
    }
}

fn string_column(values: impl IntoIterator<Item = String>) -> Arc<dyn datafusion::arrow::array::Array> {
    Arc::new(StringArray::from_iter_values(values))
}

fn text_schema(names: &[&str]) -> SchemaRef {
    Arc::new(Schema::new(names.iter().map(|n| Field::new(*n, DataType::Utf8, false)).collect::<Vec<_>>()))
}

fn show_all_schema() -> SchemaRef {
    text_schema(&["name", "setting", "description"])
}

/// A short name of a statement for "is not supported" errors.
pub(super) fn statement_kind(statement: &ast::Statement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text.split_whitespace().take(3).collect();
    let keywords: Vec<&str> =
        words.into_iter().take_while(|w| w.chars().all(|c| c.is_ascii_uppercase() || c == '_')).collect();
    if keywords.is_empty() { "this statement".into() } else { keywords.join(" ") }
}
