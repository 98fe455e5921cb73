//! A guard in front of pgwire's message decoder: every frontend message is framed,
//! bounded and checked for well-formedness here before the decoder sees a byte of it.
//!
//! pgwire's decoder trusts lengths and counts inside a message (it panics on a Bind whose
//! parameter count runs past the message, and reads past a message that lacks its
//! terminating NUL), so a single malformed message could kill a connection task or
//! desynchronize the stream. The guard reads whole messages, checks each against the
//! layout the protocol defines for its type, and only then passes it on; anything else
//! becomes an I/O error carrying a [`FrameError`], which the connection answers with a
//! FATAL 08P01 before closing. No allocation is ever sized by a number the client sent
//! before the bytes behind that number have arrived.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The largest message before authentication completes (Postgres' limit for startup
/// packets), in bytes.
pub const STARTUP_MESSAGE_BYTES_MAX: usize = 10_000;
/// How much the guard reads from the socket at a time, in bytes.
const READ_CHUNK_BYTES: usize = 64 << 10;

const PROTOCOL_MAJOR: u32 = 3;
const CANCEL_REQUEST_CODE: u32 = 80_877_102;
const SSL_REQUEST_CODE: u32 = 80_877_103;
const GSSENC_REQUEST_CODE: u32 = 80_877_104;
/// A cancel request: length, code, process id and a secret of 4 (protocol 3.0) up to 256
/// bytes (3.2).
const CANCEL_REQUEST_BYTES_MAX: usize = 12 + 256;

/// Why a message was refused, with the SQLSTATE the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    pub code: &'static str,
    pub message: String,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FrameError {}

impl FrameError {
    fn protocol(message: impl Into<String>) -> Self {
        FrameError { code: "08P01", message: message.into() }
    }

    /// The frame error inside an I/O error from the guard, if it is one.
    pub fn of(error: &io::Error) -> Option<&FrameError> {
        error.get_ref().and_then(|e| e.downcast_ref::<FrameError>())
    }
}

/// What the next message on the connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// An untyped startup packet or cancel request.
    Startup,
    /// Typed messages; `sasl_started` once the first password-family message was seen.
    Messages { sasl_started: bool },
    /// After a cancel request nothing more may follow.
    Done,
}

/// Limits shared between a connection's guard and its handlers.
#[derive(Debug)]
pub struct FrameLimits {
    /// Largest message after authentication, in bytes.
    pub message_bytes_max: usize,
    /// Set by the startup handler once the client has authenticated.
    pub authenticated: AtomicBool,
}

impl FrameLimits {
    pub fn new(message_bytes_max: usize) -> Arc<Self> {
        Arc::new(FrameLimits { message_bytes_max, authenticated: AtomicBool::new(false) })
    }

    fn message_bytes_max(&self) -> usize {
        if self.authenticated.load(Ordering::Acquire) {
            self.message_bytes_max.max(STARTUP_MESSAGE_BYTES_MAX)
        } else {
            STARTUP_MESSAGE_BYTES_MAX
        }
    }
}

/// Wraps a client stream; reads yield only whole, well-formed messages.
pub struct FrameGuard<S> {
    inner: S,
    /// Bytes read from the client and not yet handed on.
    buffer: BytesMut,
    /// How many bytes at the front of `buffer` are checked messages.
    ready: usize,
    phase: Phase,
    limits: Arc<FrameLimits>,
}

impl<S> FrameGuard<S> {
    /// `prefix` holds bytes already read from the client (the start of its startup packet).
    pub fn new(inner: S, prefix: &[u8], limits: Arc<FrameLimits>) -> Self {
        FrameGuard { inner, buffer: BytesMut::from(prefix), ready: 0, phase: Phase::Startup, limits }
    }
}

/// The next whole message at the front of `buffer` in `phase`: its length and the phase
/// after it, once all of it has arrived; `Ok(None)` while it is incomplete.
fn next_frame(buffer: &[u8], phase: Phase, max: usize) -> Result<Option<(usize, Phase)>, FrameError> {
    let type_bytes = match phase {
        Phase::Startup => 0,
        Phase::Messages { .. } => 1,
        Phase::Done => return Err(FrameError::protocol("unexpected data after a cancel request")),
    };
    let Some(header) = buffer.get(type_bytes..type_bytes + 4) else { return Ok(None) };
    let declared = i32::from_be_bytes(header.try_into().expect("four bytes"));
    if declared < 4 {
        return Err(FrameError::protocol(format!("invalid message length {declared}")));
    }
    if declared as usize > max {
        return Err(FrameError::protocol(format!(
            "message of {declared} bytes exceeds the limit of {max} bytes"
        )));
    }
    let length = type_bytes + declared as usize;
    let Some(message) = buffer.get(..length) else { return Ok(None) };
    let next = match phase {
        Phase::Startup => check_startup(&message[4..])?,
        Phase::Messages { sasl_started } => {
            check_message(message[0], &message[5..], sasl_started)?;
            Phase::Messages { sasl_started: sasl_started || message[0] == b'p' }
        }
        Phase::Done => unreachable!("refused above"),
    };
    Ok(Some((length, next)))
}

/// Splits a client's byte stream into the messages the guard would pass on (a startup
/// packet, then typed messages, allowed up to `message_bytes_max` bytes), stopping at the
/// first it refuses; an incomplete last message is left out. For fuzzing the guard
/// without a socket.
pub fn split_frames(input: &[u8], message_bytes_max: usize) -> (Vec<&[u8]>, Option<FrameError>) {
    let mut frames = Vec::new();
    let mut phase = Phase::Startup;
    let mut rest = input;
    loop {
        let max = if phase == Phase::Startup { STARTUP_MESSAGE_BYTES_MAX } else { message_bytes_max };
        match next_frame(rest, phase, max) {
            Ok(Some((length, next))) => {
                frames.push(&rest[..length]);
                rest = &rest[length..];
                phase = next;
            }
            Ok(None) => return (frames, None),
            Err(error) => return (frames, Some(error)),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FrameGuard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.ready > 0 {
                let n = this.ready.min(out.remaining());
                out.put_slice(&this.buffer[..n]);
                this.buffer.advance(n);
                this.ready -= n;
                return Poll::Ready(Ok(()));
            }
            let max = this.limits.message_bytes_max();
            if let Some((length, next)) = next_frame(&this.buffer, this.phase, max).map_err(invalid)? {
                this.ready = length;
                this.phase = next;
                continue;
            }
            // Read no more than the current message still needs (or a header).
            let needed =
                declared_length(&this.buffer, this.phase).unwrap_or(5).saturating_sub(this.buffer.len());
            let needed = needed.clamp(1, READ_CHUNK_BYTES);
            this.buffer.reserve(needed);
            let read =
                ready!(tokio_util::io::poll_read_buf(Pin::new(&mut this.inner), cx, &mut this.buffer))?;
            if read == 0 {
                // The client hung up; a partial message is dropped with the connection.
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FrameGuard<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The total length the message at the front of `buffer` declares, once its header is in.
fn declared_length(buffer: &[u8], phase: Phase) -> Option<usize> {
    let type_bytes = usize::from(matches!(phase, Phase::Messages { .. }));
    let header = buffer.get(type_bytes..type_bytes + 4)?;
    usize::try_from(i32::from_be_bytes(header.try_into().expect("four bytes"))).ok().map(|n| n + type_bytes)
}

fn invalid(error: FrameError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

/// A startup packet (after its length): protocol version and NUL-terminated name/value
/// pairs ending in an empty name; or a cancel request.
fn check_startup(body: &[u8]) -> Result<Phase, FrameError> {
    let mut reader = Reader::new(body);
    let code = reader.u32()?;
    match code {
        CANCEL_REQUEST_CODE => {
            if !(12..=CANCEL_REQUEST_BYTES_MAX).contains(&(body.len() + 4)) {
                return Err(FrameError::protocol("invalid length of cancel request"));
            }
            Ok(Phase::Done)
        }
        SSL_REQUEST_CODE | GSSENC_REQUEST_CODE => {
            Err(FrameError::protocol("encryption was requested after the connection was set up"))
        }
        _ if code >> 16 != PROTOCOL_MAJOR => Err(FrameError {
            code: "0A000",
            message: format!(
                "unsupported frontend protocol {}.{}: server supports 3.0 to 3.2",
                code >> 16,
                code & 0xffff
            ),
        }),
        _ => {
            loop {
                let name = reader.cstring()?;
                if name.is_empty() {
                    break;
                }
                reader.cstring()?;
            }
            reader.end()?;
            Ok(Phase::Messages { sasl_started: false })
        }
    }
}

/// Checks the body of a typed message against its layout.
fn check_message(kind: u8, body: &[u8], sasl_started: bool) -> Result<(), FrameError> {
    let mut reader = Reader::new(body);
    match kind {
        // Query, CopyFail
        b'Q' | b'f' => {
            reader.cstring()?;
        }
        // Parse: name, query, parameter type OIDs
        b'P' => {
            reader.cstring()?;
            reader.cstring()?;
            let count = reader.u16()?;
            reader.skip(usize::from(count) * 4)?;
        }
        b'B' => check_bind(&mut reader)?,
        // Execute: portal, row limit
        b'E' => {
            reader.cstring()?;
            reader.i32()?;
        }
        // Describe, Close: 'S'tatement or 'P'ortal, and its name
        b'D' | b'C' => {
            let target = reader.u8()?;
            if target != b'S' && target != b'P' {
                return Err(FrameError::protocol(format!("invalid target type {:?}", char::from(target))));
            }
            reader.cstring()?;
        }
        // Flush, Sync, Terminate, CopyDone: no body
        b'H' | b'S' | b'X' | b'c' => {}
        // CopyData: any bytes
        b'd' => reader.skip(body.len())?,
        // Password family: the first is SASLInitialResponse (mechanism, length, data);
        // later ones (SASLResponse) are opaque.
        b'p' if !sasl_started => {
            reader.cstring()?;
            let length = reader.i32()?;
            if length >= 0 {
                reader.skip(length as usize)?;
            } else if length != -1 {
                return Err(FrameError::protocol(format!("invalid SASL response length {length}")));
            }
        }
        b'p' => reader.skip(body.len())?,
        b'F' => return Err(FrameError::protocol("function call messages are not supported")),
        other => {
            return Err(FrameError::protocol(format!("invalid frontend message type {}", other)));
        }
    }
    reader.end()
}

/// Bind: portal, statement, parameter formats, parameters (length-prefixed, -1 for
/// NULL), result formats. Formats are 0 (text) or 1 (binary).
fn check_bind(reader: &mut Reader<'_>) -> Result<(), FrameError> {
    reader.cstring()?;
    reader.cstring()?;
    let formats = reader.u16()?;
    check_formats(reader, formats)?;
    let parameters = reader.u16()?;
    if formats > 1 && formats != parameters {
        return Err(FrameError::protocol(format!(
            "bind message has {formats} parameter formats but {parameters} parameters"
        )));
    }
    for _ in 0..parameters {
        let length = reader.i32()?;
        if length >= 0 {
            reader.skip(length as usize)?;
        } else if length != -1 {
            return Err(FrameError::protocol(format!("invalid parameter length {length}")));
        }
    }
    let results = reader.u16()?;
    check_formats(reader, results)
}

fn check_formats(reader: &mut Reader<'_>, count: u16) -> Result<(), FrameError> {
    for _ in 0..count {
        let format = reader.i16()?;
        if format != 0 && format != 1 {
            return Err(FrameError::protocol(format!("unsupported format code: {format}")));
        }
    }
    Ok(())
}

/// Reads fields of one message body; running past its end is an error, not a panic.
struct Reader<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(body: &'a [u8]) -> Self {
        Reader { body, at: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        let end = self.at.checked_add(n).filter(|&end| end <= self.body.len()).ok_or_else(|| {
            FrameError::protocol("invalid message format: a field runs past the end of the message")
        })?;
        let bytes = &self.body[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn skip(&mut self, n: usize) -> Result<(), FrameError> {
        self.take(n).map(|_| ())
    }

    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, FrameError> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("two bytes")))
    }

    fn i16(&mut self) -> Result<i16, FrameError> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().expect("two bytes")))
    }

    fn i32(&mut self) -> Result<i32, FrameError> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().expect("four bytes")))
    }

    fn u32(&mut self) -> Result<u32, FrameError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("four bytes")))
    }

    /// A NUL-terminated string (without its NUL).
    fn cstring(&mut self) -> Result<&'a [u8], FrameError> {
        let rest = &self.body[self.at..];
        let nul = rest.iter().position(|&b| b == 0).ok_or_else(|| {
            FrameError::protocol("invalid message format: a string is missing its terminating NUL")
        })?;
        self.at += nul + 1;
        Ok(&rest[..nul])
    }

    fn end(&self) -> Result<(), FrameError> {
        if self.at == self.body.len() {
            Ok(())
        } else {
            Err(FrameError::protocol("invalid message format: bytes left over at the end of the message"))
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    fn typed(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut message = vec![kind];
        message.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        message.extend_from_slice(body);
        message
    }

    fn startup() -> Vec<u8> {
        let mut body = 196_608u32.to_be_bytes().to_vec();
        body.extend_from_slice(b"user\0sabot\0\0");
        let mut message = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        message.extend_from_slice(&body);
        message
    }

    /// Everything the guard passes on for `input`, and the error it stopped at.
    async fn through_guard(input: Vec<u8>) -> (Vec<u8>, Option<FrameError>) {
        let limits = FrameLimits::new(1 << 20);
        limits.authenticated.store(true, Ordering::Release);
        let mut guard = FrameGuard::new(std::io::Cursor::new(input), &[], limits);
        let mut out = Vec::new();
        let mut chunk = [0u8; 7];
        loop {
            match guard.read(&mut chunk).await {
                Ok(0) => return (out, None),
                Ok(n) => out.extend_from_slice(&chunk[..n]),
                Err(e) => return (out, FrameError::of(&e).cloned()),
            }
        }
    }

    #[tokio::test]
    async fn well_formed_messages_pass_whole() {
        let mut input = startup();
        input.extend(typed(b'Q', b"select 1\0"));
        let mut bind = b"\0\0".to_vec();
        bind.extend_from_slice(&[0, 1, 0, 0, 0, 1, 0, 0, 0, 2, b'4', b'2', 0, 0]);
        input.extend(typed(b'B', &bind));
        input.extend(typed(b'E', b"\0\0\0\0\0"));
        input.extend(typed(b'S', b""));
        let (out, error) = through_guard(input.clone()).await;
        assert_eq!(error, None);
        assert_eq!(out, input);
    }

    #[tokio::test]
    async fn malformed_messages_stop_at_an_error_before_reaching_the_decoder() {
        // Parameter count running past the end of a Bind.
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (typed(b'B', &[0, 0, 0, 0, 0xff, 0xff]), "runs past the end"),
            (typed(b'Q', b"select 1"), "terminating NUL"),
            (typed(b'Q', b"select 1\0junk"), "left over"),
            (typed(b'P', &[b'a', 0, b'b', 0, 0x7f, 0xff]), "runs past the end"),
            (typed(b'D', b"X\0"), "invalid target type"),
            (typed(b'Z', b""), "invalid frontend message type"),
            ([b'Q', 0, 0, 0, 2].to_vec(), "invalid message length 2"),
            ([b'Q', 0x7f, 0xff, 0xff, 0xff].to_vec(), "exceeds the limit"),
        ];
        for (message, expected) in cases {
            let mut input = startup();
            input.extend(typed(b'Q', b"select 1\0"));
            let good = input.len();
            input.extend(message.clone());
            let (out, error) = through_guard(input.clone()).await;
            let error = error.unwrap_or_else(|| panic!("{message:?} passed"));
            assert!(error.message.contains(expected), "{message:?}: {error}");
            assert_eq!(error.code, "08P01");
            assert_eq!(out, input[..good], "only the messages before the bad one pass");
        }
    }

    #[tokio::test]
    async fn before_authentication_messages_are_small_and_startup_is_checked() {
        let limits = FrameLimits::new(1 << 20);
        let mut input = startup();
        input.extend(typed(b'p', &vec![b'x'; STARTUP_MESSAGE_BYTES_MAX]));
        let mut guard = FrameGuard::new(std::io::Cursor::new(input), &[], limits);
        let mut out = Vec::new();
        let error = guard.read_to_end(&mut out).await.unwrap_err();
        assert!(FrameError::of(&error).unwrap().message.contains("exceeds the limit of 10000"));
        let (frames, error) = split_frames(&[0, 0, 0, 8, 0, 1, 0, 0], 1 << 20);
        assert!(frames.is_empty());
        assert_eq!(error.unwrap().code, "0A000");
        let (_, error) = split_frames(&[0, 0, 0, 12, 0, 3, 0, 0, b'u', 0, b'x', 0], 1 << 20);
        assert!(error.unwrap().message.contains("NUL"));
    }
}
