//! The Postgres wire protocol frontend (pgwire): simple and extended query protocols and
//! COPY FROM STDIN, one [`Session`] per connection.

mod encode;
mod params;

use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{Sink, SinkExt, stream};
use pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    CopyResponse, DescribePortalResponse, DescribeStatementResponse, FieldInfo, QueryResponse, Response, Tag,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionGuard, ConnectionHandle, ConnectionManager,
    PgWireServerHandlers, PidSecretKeyGenerator, RandomPidSecretKeyGenerator, Type,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::response::NoticeResponse;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, Semaphore};

use crate::common::{Error, SqlType};
use crate::engine::session::OutcomeKind;
use crate::engine::{Database, Outcome, Prepared, Session};

/// Serves pgwire connections on `listener` until `shutdown` resolves.
pub async fn serve(
    db: Arc<Database>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let limit = Arc::new(Semaphore::new(db.config().connections_max));
    // Tracks live connections so a CancelRequest (psql's Ctrl-C) can stop their query.
    let connections = Arc::new(ConnectionManager::new());
    tokio::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection refused: too many connections");
            drop(socket);
            continue;
        };
        let handlers = Arc::new(Handlers::new(db.session(), connections.clone()));
        tokio::spawn(async move {
            let _permit = permit;
            tracing::debug!(%peer, "connection opened");
            if let Err(e) = pgwire::tokio::process_socket(socket, None, handlers).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

/// Binds `address` (port 0 picks a free port) and returns the listener and its address.
pub async fn bind(address: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(address).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// The handlers of one connection, all sharing its session.
struct Handlers {
    connection: Arc<Connection>,
    cancel: Arc<DefaultCancelHandler>,
}

impl Handlers {
    fn new(session: Session, connections: Arc<ConnectionManager>) -> Self {
        let session = Arc::new(Mutex::new(session));
        let parser = Arc::new(Parser { session: session.clone() });
        Handlers {
            connection: Arc::new(Connection { session, parser, connections: connections.clone() }),
            cancel: Arc::new(DefaultCancelHandler::new(connections)),
        }
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.connection.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.connection.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.connection.clone()
    }

    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        self.connection.clone()
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.cancel.clone()
    }
}

struct Connection {
    session: Arc<Mutex<Session>>,
    parser: Arc<Parser>,
    connections: Arc<ConnectionManager>,
}

/// What `server_version` reports to clients (drivers read the leading number).
pub const SERVER_VERSION: &str = concat!("16.6 (Sabot ", env!("CARGO_PKG_VERSION"), ")");

/// Accepts every user without authentication (local use), registers the connection for
/// cancel requests and reports Sabot's server parameters.
#[async_trait]
impl StartupHandler for Connection {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let PgWireFrontendMessage::Startup(startup) = &message else { return Ok(()) };
        protocol_negotiation(client, startup).await?;
        save_startup_parameters_to_metadata(client, startup);
        let (pid, secret_key) = RandomPidSecretKeyGenerator::default().generate(client);
        client.set_pid_and_secret_key(pid, secret_key.clone());
        let (handle, guard) = self.connections.register(pid, secret_key);
        client.session_extensions().insert::<Arc<ConnectionHandle>>(handle);
        client.session_extensions().insert::<ConnectionGuard>(guard);
        let mut parameters = DefaultServerParameterProvider::default();
        parameters.server_version = SERVER_VERSION.to_string();
        finish_authentication(client, &parameters).await
    }
}

/// The error a client sees: message, SQLSTATE, detail, hint and position.
fn error_info(error: &Error) -> ErrorInfo {
    let mut info = ErrorInfo::new("ERROR".into(), error.sqlstate().code().into(), error.to_string());
    info.detail = error.detail().map(str::to_string);
    info.hint = error.hint().map(str::to_string);
    info.position = error.position().map(|p| p.to_string());
    info
}

fn user_error(error: &Error) -> PgWireError {
    PgWireError::UserError(Box::new(error_info(error)))
}

async fn send_notices<C>(client: &mut C, outcome: &Outcome) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    for (severity, message) in &outcome.notices {
        let code = if *severity == "WARNING" { "01000" } else { "00000" };
        let info = ErrorInfo::new(severity.to_string(), code.into(), message.clone());
        client.send(PgWireBackendMessage::NoticeResponse(NoticeResponse::from(info))).await?;
    }
    Ok(())
}

/// Turns an outcome into a pgwire response; `format` chooses text or binary columns.
fn response(outcome: Outcome, format: Option<&Format>) -> Result<Response, Error> {
    let tag = match outcome.rows_affected {
        Some(rows) if outcome.rows.is_none() => Tag::new(&outcome.tag).with_rows(rows),
        _ => Tag::new(&outcome.tag),
    };
    match outcome.kind {
        OutcomeKind::TransactionStart => return Ok(Response::TransactionStart(tag)),
        OutcomeKind::TransactionEnd => return Ok(Response::TransactionEnd(tag)),
        OutcomeKind::CopyIn { columns } => {
            return Ok(Response::CopyIn(CopyResponse::new(0, columns, stream::empty())));
        }
        OutcomeKind::Done => {}
    }
    match outcome.rows {
        Some((schema, batches)) => {
            let fields = Arc::new(encode::field_infos(&schema, format));
            let rows = encode::encode_rows(&batches, &fields)?;
            let mut response = QueryResponse::new(fields, stream::iter(rows.into_iter().map(Ok)));
            response.set_command_tag(&outcome.tag);
            Ok(Response::Query(response))
        }
        None => Ok(Response::Execution(tag)),
    }
}

#[async_trait]
impl SimpleQueryHandler for Connection {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let outcomes = self.session.lock().await.execute(query).await;
        let mut responses = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            let converted = match outcome {
                Ok(outcome) => {
                    send_notices(client, &outcome).await?;
                    response(outcome, None)
                }
                Err(e) => Err(e),
            };
            match converted {
                Ok(r) => responses.push(r),
                Err(e) => {
                    tracing::debug!(error = %e, code = e.sqlstate().code(), "statement failed");
                    responses.push(Response::Error(Box::new(error_info(&e))));
                    break;
                }
            }
        }
        Ok(responses)
    }
}

/// Prepares statements for the extended protocol.
struct Parser {
    session: Arc<Mutex<Session>>,
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
        let prepared = self.session.lock().await.prepare(sql).await.map_err(|e| user_error(&e))?;
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
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = &portal.statement.statement;
        let params = bind_parameters(portal).map_err(|e| user_error(&e))?;
        let outcome = self.session.lock().await.execute_prepared(prepared, &params).await;
        let outcome = outcome.map_err(|e| user_error(&e))?;
        send_notices(client, &outcome).await?;
        if outcome.tag.is_empty() && outcome.rows.is_none() {
            return Ok(Response::EmptyQuery);
        }
        response(outcome, Some(&portal.result_column_format)).map_err(|e| user_error(&e))
    }
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
            params::decode(portal.parameters[i].as_ref(), binary, sql_type.as_ref())
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
        self.session.lock().await.copy_data(&copy_data.data).map_err(|e| user_error(&e))
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let outcome = self.session.lock().await.copy_done().await.map_err(|e| user_error(&e))?;
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
        self.session.lock().await.copy_fail();
        let error = Error::new(
            crate::common::SqlState::QueryCanceled,
            format!("COPY from stdin failed: {}", fail.message),
        );
        user_error(&error)
    }
}
