//! What one connection does with each message: simple and extended queries, COPY.
//!
//! Results stream: each batch is encoded and written as the client reads, so a slow or
//! stopped reader holds the query (through the bounded result channel) instead of growing
//! the server. Cancel requests and `statement_timeout` interrupt a statement at any
//! point, including while its rows are being sent.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::{Sink, SinkExt, StreamExt, stream};
use pgwire::api::copy::{CopyHandler, send_copy_in_response};
use pgwire::api::portal::{Format, Portal, PortalExecutionState};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    CopyResponse, DescribePortalResponse, DescribeStatementResponse, FieldInfo, QueryResponse,
    SendableRowStream, Tag,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionHandle, DEFAULT_NAME, PgWireConnectionState, Type,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::data::RowDescription;
use pgwire::messages::extendedquery::{Execute, PortalSuspended, Sync as PgSync};
use pgwire::messages::response::{
    CommandComplete, EmptyQueryResponse, NoticeResponse, ReadyForQuery, TransactionStatus,
};
use pgwire::messages::simplequery::Query;
use tokio::sync::{Mutex, MutexGuard, OwnedSemaphorePermit};

use super::Shared;
use super::connection::HangupWatch;
use super::copy_out;
use super::encode;
use super::frames::FrameLimits;
use crate::common::{Error, SqlState, SqlType};
use crate::engine::execute::Rows;
use crate::engine::session::OutcomeKind;
use crate::engine::{Outcome, Prepared, Session};

/// Everything one connection holds: its session (once authenticated), its connection
/// slot and its protocol limits.
pub struct Connection {
    pub(super) shared: Arc<Shared>,
    pub(super) limits: Arc<FrameLimits>,
    session: Arc<Mutex<Option<Session>>>,
    parser: Arc<Parser>,
    slot: parking_lot::Mutex<Option<OwnedSemaphorePermit>>,
    /// The role, once known (for logs).
    pub(super) user: Arc<parking_lot::Mutex<Option<String>>>,
    hangup: HangupWatch,
    /// The connection's two ends (`inet_server_port()` and friends).
    addresses: crate::engine::session::Addresses,
}

impl Connection {
    pub fn new(
        shared: Arc<Shared>,
        limits: Arc<FrameLimits>,
        user: Arc<parking_lot::Mutex<Option<String>>>,
        hangup: HangupWatch,
        addresses: crate::engine::session::Addresses,
    ) -> Self {
        let session = Arc::new(Mutex::new(None));
        Connection {
            shared,
            limits,
            parser: Arc::new(Parser { session: session.clone() }),
            session,
            slot: parking_lot::Mutex::new(None),
            user,
            hangup,
            addresses,
        }
    }

    /// Takes one of the server's `connections_max` slots for this connection.
    pub(super) fn admit(&self) -> PgWireResult<()> {
        let permit = self.shared.slots.clone().try_acquire_owned().map_err(|_| {
            tracing::warn!(
                connections_max = self.shared.db.config().connections_max,
                "connection refused: too many clients"
            );
            super::auth::fatal("53300", "sorry, too many clients already".to_string())
        })?;
        *self.slot.lock() = Some(permit);
        Ok(())
    }

    pub(super) fn start_session(&self, user: &str) {
        let mut session = self.shared.db.session_as(user);
        session.set_addresses(self.addresses);
        *self.user.lock() = Some(user.to_string());
        match self.session.try_lock() {
            Ok(mut guard) => *guard = Some(session),
            Err(_) => unreachable!("nothing holds the session before authentication completes"),
        }
    }
}

/// The session behind a connection; absent until authentication completes.
async fn session_of(
    session: &Mutex<Option<Session>>,
) -> PgWireResult<tokio::sync::MappedMutexGuard<'_, Session>> {
    MutexGuard::try_map(session.lock().await, Option::as_mut).map_err(|_| {
        user_error(&Error::new(SqlState::InvalidAuthorization, "the connection is not authenticated"))
    })
}

/// What the server sends for an error: message, SQLSTATE, detail, hint and position.
pub fn error_info(error: &Error) -> ErrorInfo {
    let mut info = ErrorInfo::new("ERROR".into(), error.sqlstate().code().into(), error.to_string());
    info.detail = error.detail().map(str::to_string);
    info.hint = error.hint().map(str::to_string);
    info.position = error.position().map(|p| p.to_string());
    info
}

fn user_error(error: &Error) -> PgWireError {
    PgWireError::UserError(Box::new(error_info(error)))
}

async fn send_notices<C>(client: &mut C, notices: &[(&'static str, String)]) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    for (severity, message) in notices {
        let code = if *severity == "WARNING" { "01000" } else { "00000" };
        let info = ErrorInfo::new(severity.to_string(), code.into(), message.clone());
        client.feed(PgWireBackendMessage::NoticeResponse(NoticeResponse::from(info))).await?;
    }
    Ok(())
}

/// The DataRows of a result, encoded batch by batch as they are read.
fn data_rows(rows: Rows, fields: Arc<Vec<FieldInfo>>) -> SendableRowStream {
    Box::pin(rows.batches.flat_map(move |batch| {
        match batch.and_then(|batch| encode::encode_rows(&[batch], &fields)) {
            Ok(encoded) => stream::iter(encoded.into_iter().map(Ok)).left_stream(),
            Err(e) => stream::once(async move { Err(user_error(&e)) }).right_stream(),
        }
    }))
}

/// The command tag of a statement without rows.
fn execution_tag(outcome: &Outcome) -> Tag {
    match outcome.rows_affected {
        Some(rows) => Tag::new(&outcome.tag).with_rows(rows),
        None => Tag::new(&outcome.tag),
    }
}

/// Why a statement stopped early.
enum Interrupt {
    Cancelled,
    TimedOut,
    HungUp,
}

impl Interrupt {
    fn error(&self) -> Error {
        match self {
            Interrupt::Cancelled => {
                Error::new(SqlState::QueryCanceled, "canceling statement due to user request")
            }
            Interrupt::TimedOut => {
                Error::new(SqlState::QueryCanceled, "canceling statement due to statement timeout")
            }
            Interrupt::HungUp => Error::new(SqlState::ConnectionFailure, "the client closed the connection"),
        }
    }
}

/// Runs `work` until it ends, a cancel request arrives, `timeout` passes or the client
/// hangs up.
async fn interruptible<F: Future>(
    work: F,
    cancel: Option<futures::channel::oneshot::Receiver<()>>,
    timeout: Option<Duration>,
    hangup: &HangupWatch,
) -> Result<F::Output, Interrupt> {
    let cancelled = async {
        // A dropped sender (a newer statement started) is not a cancel.
        let cancelled = match cancel {
            Some(receiver) => receiver.await.is_ok(),
            None => false,
        };
        if !cancelled {
            std::future::pending::<()>().await;
        }
    };
    let timed_out = async {
        match timeout {
            Some(duration) => tokio::time::sleep(duration).await,
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        output = work => Ok(output),
        () = cancelled => Err(Interrupt::Cancelled),
        () = timed_out => Err(Interrupt::TimedOut),
        () = hangup.hung_up() => Err(Interrupt::HungUp),
    }
}

async fn cancel_receiver<C: ClientInfo>(client: &C) -> Option<futures::channel::oneshot::Receiver<()>> {
    let handle = client.session_extensions().get::<Arc<ConnectionHandle>>()?;
    Some(handle.start_query().await)
}

impl Connection {
    async fn statement_timeout(&self) -> Option<Duration> {
        self.session.lock().await.as_ref().and_then(Session::statement_timeout)
    }

    /// Runs the statements of a simple query, sending each one's result before the next
    /// starts, and stops at the first error.
    async fn simple_query<C>(
        &self,
        client: &mut C,
        sql: &str,
        status: &mut TransactionStatus,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut session = session_of(&self.session).await?;
        // A new query ends a COPY the client abandoned with another message.
        session.copy_fail();
        let statements = match session.parse(sql) {
            Ok(statements) if statements.is_empty() => {
                client.feed(PgWireBackendMessage::EmptyQueryResponse(EmptyQueryResponse::new())).await?;
                return Ok(());
            }
            Ok(statements) => statements,
            Err(e) => return fail(client, &e, status).await,
        };
        for statement in &statements {
            let outcome = match session.run(statement, &[]).await {
                Ok(outcome) => outcome,
                Err(e) => {
                    fail(client, &e, status).await?;
                    // A failed COMMIT has ended the block.
                    if !session.in_transaction_block() {
                        *status = status.to_idle_state();
                    }
                    return Ok(());
                }
            };
            send_notices(client, &outcome.notices).await?;
            match &outcome.kind {
                OutcomeKind::TransactionStart => *status = status.to_in_transaction_state(),
                OutcomeKind::TransactionEnd => *status = status.to_idle_state(),
                OutcomeKind::CopyIn { columns } => {
                    send_copy_in_response(client, CopyResponse::new(0, *columns, stream::empty())).await?;
                    client.set_state(PgWireConnectionState::CopyInProgress(false));
                    return Ok(());
                }
                OutcomeKind::CopyOut(options) => {
                    let rows = outcome.rows.expect("COPY TO has rows");
                    if let Err(e) = copy_out::send_copy_out(client, rows, options).await? {
                        return fail(client, &e, status).await;
                    }
                    continue;
                }
                OutcomeKind::Done => {}
            }
            let tag = execution_tag(&outcome);
            match outcome.rows {
                Some(rows) => {
                    let fields = Arc::new(encode::field_infos(&rows.schema, None));
                    let description = RowDescription::new(fields.iter().map(Into::into).collect());
                    client.feed(PgWireBackendMessage::RowDescription(description)).await?;
                    let mut data = data_rows(rows, fields);
                    let mut count = 0;
                    while let Some(row) = data.next().await {
                        match row {
                            Ok(row) => client.feed(PgWireBackendMessage::DataRow(row)).await?,
                            Err(PgWireError::UserError(info)) => {
                                client.feed(PgWireBackendMessage::ErrorResponse((*info).into())).await?;
                                *status = status.to_error_state();
                                return Ok(());
                            }
                            Err(other) => return Err(other),
                        }
                        count += 1;
                    }
                    let tag = Tag::new(&outcome.tag).with_rows(count);
                    client.feed(PgWireBackendMessage::CommandComplete(CommandComplete::from(tag))).await?;
                }
                None => client.feed(PgWireBackendMessage::CommandComplete(tag.into())).await?,
            }
        }
        Ok(())
    }

    /// Runs (or resumes) a portal, sending at most `max_rows` rows (all when `None`).
    async fn execute_portal<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        max_rows: Option<usize>,
        status: &mut TransactionStatus,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let state = portal.state();
        let mut state = state.lock().await;
        if matches!(*state, PortalExecutionState::Initial) {
            let prepared = &portal.statement.statement;
            let params = bind_parameters(portal).map_err(|e| user_error(&e))?;
            let outcome = {
                let mut session = session_of(&self.session).await?;
                let outcome = session.execute_prepared(prepared, &params).await;
                if outcome.is_err() && !session.in_transaction_block() {
                    // A failed COMMIT has ended the block.
                    *status = status.to_idle_state();
                }
                outcome.map_err(|e| user_error(&e))?
            };
            send_notices(client, &outcome.notices).await?;
            match &outcome.kind {
                OutcomeKind::TransactionStart => *status = status.to_in_transaction_state(),
                OutcomeKind::TransactionEnd => {
                    *status = status.to_idle_state();
                    client.portal_store().clear_portals();
                }
                OutcomeKind::CopyIn { columns } => {
                    client.set_state(PgWireConnectionState::CopyInProgress(true));
                    send_copy_in_response(client, CopyResponse::new(0, *columns, stream::empty())).await?;
                    return Ok(());
                }
                OutcomeKind::CopyOut(options) => {
                    *state = PortalExecutionState::Finished;
                    let rows = outcome.rows.expect("COPY TO has rows");
                    if let Err(e) = copy_out::send_copy_out(client, rows, options).await? {
                        return Err(user_error(&e));
                    }
                    return Ok(());
                }
                OutcomeKind::Done => {}
            }
            let tag = execution_tag(&outcome);
            match outcome.rows {
                Some(rows) => {
                    let fields =
                        Arc::new(encode::field_infos(&rows.schema, Some(&portal.result_column_format)));
                    let mut response = QueryResponse::new(fields.clone(), data_rows(rows, fields));
                    response.set_command_tag(&outcome.tag);
                    *state = PortalExecutionState::Suspended(response);
                }
                None if outcome.tag.is_empty() => {
                    *state = PortalExecutionState::Finished;
                    client.feed(PgWireBackendMessage::EmptyQueryResponse(EmptyQueryResponse::new())).await?;
                    return Ok(());
                }
                None => {
                    *state = PortalExecutionState::Finished;
                    client.feed(PgWireBackendMessage::CommandComplete(tag.into())).await?;
                    return Ok(());
                }
            }
        }
        let PortalExecutionState::Suspended(response) = &mut *state else {
            // A finished portal returns no more rows.
            let tag = Tag::new("SELECT").with_rows(0);
            client.feed(PgWireBackendMessage::CommandComplete(tag.into())).await?;
            return Ok(());
        };
        let tag = response.command_tag().to_string();
        let mut sent = 0;
        while max_rows.is_none_or(|max| sent < max) {
            match response.data_rows().next().await {
                Some(row) => client.feed(PgWireBackendMessage::DataRow(row?)).await?,
                None => {
                    *state = PortalExecutionState::Finished;
                    let tag = Tag::new(&tag).with_rows(sent);
                    client.feed(PgWireBackendMessage::CommandComplete(tag.into())).await?;
                    return Ok(());
                }
            }
            sent += 1;
        }
        client.feed(PgWireBackendMessage::PortalSuspended(PortalSuspended::new())).await?;
        Ok(())
    }
}

/// Sends `error` as the statement's answer; the simple query stops there.
async fn fail<C>(client: &mut C, error: &Error, status: &mut TransactionStatus) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    tracing::debug!(error = %error, code = error.sqlstate().code(), "statement failed");
    client.feed(PgWireBackendMessage::ErrorResponse(error_info(error).into())).await?;
    *status = status.to_error_state();
    Ok(())
}

#[async_trait]
impl SimpleQueryHandler for Connection {
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        let mut status = client.transaction_status();
        let cancel = cancel_receiver(client).await;
        let timeout = self.statement_timeout().await;
        #[cfg(debug_assertions)]
        if query.query == super::DEBUG_PANIC_QUERY {
            panic!("panic requested by {:?} (debug builds only)", super::DEBUG_PANIC_QUERY);
        }
        let work = self.simple_query(client, &query.query, &mut status);
        match interruptible(work, cancel, timeout, &self.hangup).await {
            Ok(result) => result?,
            Err(Interrupt::HungUp) => return Err(user_error(&Interrupt::HungUp.error())),
            Err(interrupt) => fail(client, &interrupt.error(), &mut status).await?,
        }
        if !matches!(client.state(), PgWireConnectionState::CopyInProgress(_)) {
            client.set_state(PgWireConnectionState::ReadyForQuery);
            client.set_transaction_status(status);
            client.send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(status))).await?;
        }
        Ok(())
    }

    async fn do_query<C>(
        &self,
        _client: &mut C,
        _query: &str,
    ) -> PgWireResult<Vec<pgwire::api::results::Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        unreachable!("on_query runs simple queries itself")
    }
}

/// Prepares statements for the extended protocol.
pub struct Parser {
    session: Arc<Mutex<Option<Session>>>,
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut session = session_of(&self.session).await?;
        let prepared = session.prepare(sql).await.map_err(|e| user_error(&e))?;
        Ok(Some(prepared))
    }

    fn get_parameter_types(&self, statement: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(statement.param_types.iter().map(|t| parameter_pg_type(t.as_ref())).collect())
    }

    fn get_result_schema(
        &self,
        statement: &Prepared,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(statement.schema.as_ref().map(|s| encode::field_infos(s, format)).unwrap_or_default())
    }
}

fn parameter_pg_type(data_type: Option<&datafusion::arrow::datatypes::DataType>) -> Type {
    match data_type {
        Some(data_type) => {
            SqlType::from_arrow(&datafusion::arrow::datatypes::Field::new("", data_type.clone(), true))
                .pg_type()
        }
        None => Type::TEXT,
    }
}

#[async_trait]
impl ExtendedQueryHandler for Connection {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.parser.clone()
    }

    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let portal = match client.portal_store().get_portal(name) {
            Some(Entry::Value(portal)) => portal,
            Some(Entry::Empty) => {
                client.feed(PgWireBackendMessage::EmptyQueryResponse(EmptyQueryResponse::new())).await?;
                return Ok(());
            }
            None => return Err(PgWireError::PortalNotFound(name.to_owned())),
        };
        check_parameter_count(&portal).map_err(|e| user_error(&e))?;
        client.set_state(PgWireConnectionState::QueryInProgress);
        let mut status = client.transaction_status();
        // A row limit of zero (or less) means all rows.
        let max_rows = usize::try_from(message.max_rows).ok().filter(|&n| n > 0);
        let cancel = cancel_receiver(client).await;
        let timeout = self.statement_timeout().await;
        let work = self.execute_portal(client, &portal, max_rows, &mut status);
        let result = match interruptible(work, cancel, timeout, &self.hangup).await {
            Ok(result) => result,
            Err(interrupt) => {
                client.portal_store().rm_portal(name);
                Err(user_error(&interrupt.error()))
            }
        };
        if !matches!(client.state(), PgWireConnectionState::CopyInProgress(_)) {
            client.set_state(PgWireConnectionState::ReadyForQuery);
            client.set_transaction_status(status);
        }
        result
    }

    async fn on_sync<C>(&self, client: &mut C, _message: PgSync) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // Outside a transaction block every statement has committed at Sync, and portals
        // end with their transaction (as in Postgres): their queries stop here.
        if client.transaction_status() == TransactionStatus::Idle {
            client.portal_store().clear_portals();
        } else {
            client.portal_store().rm_portal(DEFAULT_NAME);
        }
        let status = client.transaction_status();
        client.send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(status))).await?;
        Ok(())
    }

    async fn do_describe_statement<C>(
        &self,
        _client: &mut C,
        target: &StoredStatement<Prepared>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let inferred = &target.statement.param_types;
        let count = inferred.len().max(target.parameter_types.len());
        let types = (0..count)
            .map(|i| match target.parameter_types.get(i).cloned().flatten() {
                Some(declared) if declared != Type::UNKNOWN => declared,
                _ => parameter_pg_type(inferred.get(i).and_then(Option::as_ref)),
            })
            .collect();
        let fields = self.parser.get_result_schema(&target.statement, None)?;
        Ok(DescribeStatementResponse::new(types, fields))
    }

    async fn do_describe_portal<C>(
        &self,
        _client: &mut C,
        portal: &Portal<Prepared>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let fields =
            self.parser.get_result_schema(&portal.statement.statement, Some(&portal.result_column_format))?;
        Ok(DescribePortalResponse::new(fields))
    }

    async fn do_query<C>(
        &self,
        _client: &mut C,
        _portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<pgwire::api::results::Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        unreachable!("on_execute runs portals itself")
    }
}

/// A Bind must supply every parameter the statement uses (as Postgres checks).
fn check_parameter_count(portal: &Portal<Prepared>) -> Result<(), Error> {
    let required = portal.statement.statement.param_types.len().max(portal.statement.parameter_types.len());
    if portal.parameters.len() < required {
        return Err(Error::new(
            SqlState::ProtocolViolation,
            format!(
                "bind message supplies {} parameters, but prepared statement \"{}\" requires {required}",
                portal.parameters.len(),
                if portal.statement.id == DEFAULT_NAME { "" } else { portal.statement.id.as_str() }
            ),
        ));
    }
    Ok(())
}

fn bind_parameters(portal: &Portal<Prepared>) -> Result<Vec<datafusion::common::ScalarValue>, Error> {
    let declared = &portal.statement.parameter_types;
    let inferred = &portal.statement.statement.param_types;
    (0..portal.parameters.len())
        .map(|i| {
            let sql_type =
                declared.get(i).cloned().flatten().and_then(|t| SqlType::from_pg_type(&t)).or_else(|| {
                    inferred.get(i).and_then(Option::as_ref).map(|t| {
                        SqlType::from_arrow(&datafusion::arrow::datatypes::Field::new("", t.clone(), true))
                    })
                });
            let binary = portal.parameter_format.is_binary(i);
            super::params::decode(portal.parameters[i].as_ref(), binary, sql_type.as_ref())
        })
        .collect()
}

#[async_trait]
impl CopyHandler for Connection {
    async fn on_copy_data<C>(&self, _client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        session_of(&self.session).await?.copy_data(&copy_data.data).map_err(|e| user_error(&e))
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let outcome = session_of(&self.session).await?.copy_done().await.map_err(|e| user_error(&e))?;
        let tag = Tag::new("COPY").with_rows(outcome.rows_affected.unwrap_or(0));
        client.send(PgWireBackendMessage::CommandComplete(tag.into())).await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, _client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Ok(mut session) = session_of(&self.session).await {
            session.copy_fail();
        }
        let error = Error::new(SqlState::QueryCanceled, format!("COPY from stdin failed: {}", fail.message));
        user_error(&error)
    }
}
