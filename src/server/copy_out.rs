//! `COPY ... TO STDOUT` on the wire: CopyOutResponse, one CopyData per line (the header
//! first when asked for), CopyDone, and the `COPY n` tag counting data rows only.

use std::fmt::Debug;

use bytes::Bytes;
use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::results::Tag;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyOutResponse};

use super::encode;
use crate::common::Result;
use crate::engine::execute::Rows;
use crate::sql::copy::{CopyOptions, write_row};

/// Streams `rows` to the client as COPY data. An error while the rows are computed ends
/// the copy early and is returned for the caller to report (Postgres does the same: the
/// client sees an ErrorResponse instead of CopyDone).
pub async fn send_copy_out<C>(client: &mut C, rows: Rows, options: &CopyOptions) -> PgWireResult<Result<()>>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let names: Vec<&str> = rows.schema.fields().iter().map(|f| f.name().as_str()).collect();
    let forced: Vec<bool> = names.iter().map(|name| options.forces_quote(name)).collect();
    let columns = i16::try_from(names.len()).unwrap_or(i16::MAX);
    let response = CopyOutResponse::new(0, columns, vec![0; names.len()]);
    client.feed(PgWireBackendMessage::CopyOutResponse(response)).await?;
    if options.header {
        let mut line = String::new();
        write_row(names.iter().map(|name| Some(*name)), &[], options, &mut line);
        client.feed(PgWireBackendMessage::CopyData(CopyData::new(Bytes::from(line)))).await?;
    }
    let mut count = 0;
    let mut batches = rows.batches;
    while let Some(batch) = batches.next().await {
        let lines = match batch.and_then(|batch| encode::copy_lines(&batch, &forced, options)) {
            Ok(lines) => lines,
            Err(e) => return Ok(Err(e)),
        };
        count += lines.len();
        for line in lines {
            client.feed(PgWireBackendMessage::CopyData(CopyData::new(line))).await?;
        }
    }
    client.feed(PgWireBackendMessage::CopyDone(CopyDone::new())).await?;
    let tag = Tag::new("COPY").with_rows(count);
    client.feed(PgWireBackendMessage::CommandComplete(tag.into())).await?;
    Ok(Ok(()))
}
