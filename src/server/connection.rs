//! One client connection from accept to close: encryption negotiation, the startup
//! deadline, the message loop, and containment of protocol errors and panics.
//!
//! This is Sabot's own loop around pgwire's message handlers (pgwire's `process_socket`
//! has a fixed 60 s startup timeout, no way to refuse a connection with an error, and
//! hands raw bytes to its decoder): messages pass the [`FrameGuard`] first, a bad one is
//! answered with a FATAL error, and a panic while handling a message closes this
//! connection only.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{FutureExt, SinkExt, StreamExt};
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::{ClientInfo, DefaultClient, PgWireConnectionState};
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::TlsAcceptor;
use pgwire::tokio::server::{PgWireMessageServerCodec, process_error, process_message};
use pgwire::tokio::tokio_rustls::server::TlsStream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use super::frames::{FrameError, FrameGuard, FrameLimits};
use super::handlers::Connection;
use super::{Shared, Starting};
use crate::engine::Prepared;
use crate::engine::execute::{CLIENT, ClientContext};

const SSL_REQUEST_CODE: u32 = 80_877_103;
const GSSENC_REQUEST_CODE: u32 = 80_877_104;
/// First byte of a TLS handshake record: a client starting TLS directly.
const TLS_HANDSHAKE: u8 = 0x16;

type Socket = Framed<FrameGuard<ClientStream>, PgWireMessageServerCodec<Prepared>>;

/// Serves one accepted socket until it closes. `starting` holds its place among the
/// connections still starting up; it fires when a newer connection needs that place.
pub async fn serve(socket: TcpStream, peer: SocketAddr, shared: Arc<Shared>, starting: Starting) {
    let user = Arc::new(parking_lot::Mutex::new(None));
    let client = Arc::new(ClientContext { peer, user: user.clone() });
    CLIENT.scope(client, run(socket, peer, shared, starting, user)).await;
}

async fn run(
    socket: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    starting: Starting,
    user: Arc<parking_lot::Mutex<Option<String>>>,
) {
    let config = shared.db.config();
    let deadline = tokio::time::sleep(Duration::from_millis(config.startup_timeout_ms));
    tokio::pin!(deadline);
    let _ = socket.set_nodelay(true);
    let addresses =
        crate::engine::session::Addresses { server: socket.local_addr().ok(), client: Some(peer) };
    let (socket, hangup) = match HangupWatch::new(socket) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "cannot watch the connection's socket; closing it");
            return;
        }
    };
    let negotiated = tokio::select! {
        negotiated = negotiate(socket, shared.tls.as_ref()) => negotiated,
        () = &mut deadline => {
            tracing::debug!(%peer, "connection closed: no startup within startup_timeout_ms");
            return;
        }
    };
    let (stream, prefix) = match negotiated {
        Ok(Some(negotiated)) => negotiated,
        Ok(None) => return,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "connection closed during encryption negotiation");
            return;
        }
    };
    let limits = FrameLimits::new(config.message_bytes_max);
    let secure = matches!(stream, ClientStream::Tls(_));
    let guard = FrameGuard::new(stream, &prefix, limits.clone());
    let mut socket: Socket =
        Framed::new(guard, PgWireMessageServerCodec::new(DefaultClient::new(peer, secure)));
    socket.set_state(PgWireConnectionState::AwaitingStartup);
    let cancel = Arc::new(DefaultCancelHandler::new(shared.cancel.clone()));
    let connection = Arc::new(Connection::new(shared.clone(), limits, user, hangup, addresses));

    let served =
        std::panic::AssertUnwindSafe(messages(&mut socket, &connection, &cancel, deadline, starting))
            .catch_unwind()
            .await;
    if served.is_err() {
        // The panic hook has logged what happened and where; tell the client.
        let info = ErrorInfo::new(
            "FATAL".into(),
            "XX000".into(),
            "internal error: the server closed this connection (see the server log)".into(),
        );
        let _ = socket.send(PgWireBackendMessage::ErrorResponse(info.into())).await;
    }
    let _ = socket.close().await;
}

/// The message loop: startup within the deadline, then messages until the client leaves.
async fn messages(
    socket: &mut Socket,
    connection: &Arc<Connection>,
    cancel: &Arc<DefaultCancelHandler>,
    mut deadline: Pin<&mut tokio::time::Sleep>,
    starting: Starting,
) {
    let mut starting = Some(starting);
    loop {
        let in_startup = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup | PgWireConnectionState::AuthenticationInProgress
        );
        if !in_startup {
            // Started up: no longer counted among (or evicted from) the starting ones.
            starting = None;
        }
        let next = match starting.as_mut() {
            Some(place) => tokio::select! {
                next = socket.next() => next,
                () = &mut deadline => {
                    let _ = send_fatal(socket, "08P01", "canceling authentication due to timeout").await;
                    return;
                }
                () = place.evicted() => {
                    let _ = send_fatal(socket, "53300", "too many connections are starting up; this one waited longest").await;
                    return;
                }
            },
            None => socket.next().await,
        };
        let message = match next {
            None => return,
            Some(Ok(message)) => message,
            Some(Err(PgWireError::IoError(e))) => {
                if let Some(frame) = FrameError::of(&e) {
                    tracing::debug!(peer = %socket.socket_addr(), error = %frame, "protocol violation");
                    let _ = send_fatal(socket, frame.code, &frame.message).await;
                }
                return;
            }
            Some(Err(e)) => {
                let _ = send_fatal(socket, "08P01", &e.to_string()).await;
                return;
            }
        };
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            return;
        }
        let is_cancel = matches!(message, PgWireFrontendMessage::CancelRequest(_));
        let extended_query = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => message.is_extended_query(),
        };
        let handler = connection.clone();
        let result = process_message(
            message,
            socket,
            handler.clone(),
            handler.clone(),
            handler.clone(),
            handler,
            cancel.clone(),
        )
        .await;
        if let Err(error) = result {
            if error.is_fatal() || in_startup {
                let info: ErrorInfo = error.into();
                let _ = socket.send(PgWireBackendMessage::ErrorResponse(fatal_info(info).into())).await;
                return;
            }
            if process_error(socket, error, extended_query).await.is_err() {
                return;
            }
        }
        if is_cancel {
            return;
        }
    }
}

/// Errors before the session starts end the connection, so they are FATAL.
fn fatal_info(mut info: ErrorInfo) -> ErrorInfo {
    info.severity = "FATAL".into();
    info
}

async fn send_fatal(socket: &mut Socket, code: &str, message: &str) -> Result<(), io::Error> {
    let info = ErrorInfo::new("FATAL".into(), code.into(), message.into());
    socket.send(PgWireBackendMessage::ErrorResponse(info.into())).await
}

/// Answers SSLRequest and GSSENCRequest packets and starts TLS when asked for (also
/// directly, as `sslnegotiation=direct` does). Returns the stream and the bytes of the
/// startup packet already read, or `None` when the connection should just close.
async fn negotiate(
    mut socket: TcpStream,
    tls: Option<&TlsAcceptor>,
) -> io::Result<Option<(ClientStream, Vec<u8>)>> {
    let mut first = [0u8; 1];
    if socket.peek(&mut first).await? == 0 {
        return Ok(None);
    }
    if first[0] == TLS_HANDSHAKE {
        let Some(tls) = tls else { return Ok(None) };
        let stream = tls.accept(socket).await?;
        if stream.get_ref().1.alpn_protocol() != Some(super::tls::ALPN_POSTGRESQL) {
            // Direct TLS requires ALPN, so that no other protocol's client is confused.
            return Ok(None);
        }
        return Ok(Some((ClientStream::Tls(Box::new(stream)), Vec::new())));
    }
    // At most one SSLRequest and one GSSENCRequest precede the startup packet.
    for _ in 0..3 {
        let mut length = [0u8; 4];
        socket.read_exact(&mut length).await?;
        if i32::from_be_bytes(length) != 8 {
            return Ok(Some((ClientStream::Plain(socket), length.to_vec())));
        }
        let mut code = [0u8; 4];
        socket.read_exact(&mut code).await?;
        match u32::from_be_bytes(code) {
            SSL_REQUEST_CODE => match tls {
                Some(tls) => {
                    socket.write_all(b"S").await?;
                    let stream = tls.accept(socket).await?;
                    return Ok(Some((ClientStream::Tls(Box::new(stream)), Vec::new())));
                }
                None => socket.write_all(b"N").await?,
            },
            GSSENC_REQUEST_CODE => socket.write_all(b"N").await?,
            _ => return Ok(Some((ClientStream::Plain(socket), [length, code].concat()))),
        }
    }
    Ok(None)
}

/// Watches a client's socket for its other end closing, while its statements run: the
/// statement of a client that went away is stopped, and its memory freed, at once.
pub struct HangupWatch {
    socket: TcpStream,
}

impl HangupWatch {
    /// Watches a duplicate of `socket`'s descriptor (the connection keeps the original).
    fn new(socket: TcpStream) -> io::Result<(TcpStream, HangupWatch)> {
        let socket = socket.into_std()?;
        let duplicate = socket.try_clone()?;
        Ok((TcpStream::from_std(socket)?, HangupWatch { socket: TcpStream::from_std(duplicate)? }))
    }

    /// Resolves once the client has closed its end (or the socket failed).
    pub async fn hung_up(&self) {
        loop {
            match self.socket.ready(tokio::io::Interest::READABLE).await {
                Ok(ready) if ready.is_read_closed() || ready.is_error() => return,
                Ok(_) => {
                    // Pipelined messages are waiting: look again later rather than spin.
                    tokio::time::sleep(HANGUP_CHECK_INTERVAL).await;
                }
                Err(_) => return,
            }
        }
    }
}

/// How often a socket with unread data is checked for a hang-up.
const HANGUP_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// A client's byte stream, in the clear or under TLS.
pub enum ClientStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for ClientStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            ClientStream::Tls(stream) => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            ClientStream::Tls(stream) => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(stream) => Pin::new(stream).poll_flush(cx),
            ClientStream::Tls(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            ClientStream::Tls(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }
}
