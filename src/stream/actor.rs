//! An actor runs one instance of one operator as a Tokio task: it reads its input set,
//! hands chunks to the operator, and at each aligned barrier refreshes its snapshot,
//! seals the operator's state into an [`Ack`] for the coordinator, and passes the barrier
//! on. Sources are actors too: they backfill, then forward their relation's changes.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::exchange::{Dispatcher, Event, InputSet};
use super::message::{Chunk, Message};
use super::operator::{Operator, OperatorContext};
use crate::catalog::{TableCodec, TableDesc};
use crate::common::Result;
use crate::state::{Epoch, Snapshot, StateStore, WriteBatch};

/// An actor's part of an epoch: its sealed state writes, or why it failed.
#[derive(Debug)]
pub struct Ack {
    pub dataflow: DataflowId,
    pub epoch: Epoch,
    pub result: std::result::Result<WriteBatch, Arc<str>>,
}

pub struct Actor {
    pub operator: Box<dyn Operator>,
    pub inputs: InputSet,
    pub output: Dispatcher,
    pub store: Arc<dyn StateStore>,
    pub acks: mpsc::UnboundedSender<Ack>,
    pub dataflow: DataflowId,
    pub view: Arc<str>,
}

pub type DataflowId = u64;

impl Actor {
    pub async fn run(mut self) {
        let mut ctx = OperatorContext { snapshot: self.store.snapshot(), view: self.view.clone() };
        let mut failed: Option<Arc<str>> = None;
        loop {
            let event = match self.inputs.next().await {
                Ok(Some(event)) => event,
                Ok(None) => {
                    // An upstream actor stopped: this dataflow can no longer finish an epoch.
                    let failure = Arc::from(format!("an upstream operator of view {} stopped", self.view));
                    let _ = self.acks.send(Ack {
                        dataflow: self.dataflow,
                        epoch: Epoch::MAX,
                        result: Err(failure),
                    });
                    return;
                }
                Err(e) => {
                    failed.get_or_insert_with(|| Arc::from(e.to_string()));
                    continue;
                }
            };
            match event {
                Event::Chunk(input, chunk) => {
                    if failed.is_some() {
                        continue;
                    }
                    match self.operator.on_chunk(&ctx, input, chunk) {
                        Ok(out) => {
                            if self.emit(out).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => failed = Some(self.failure(&e)),
                    }
                }
                Event::Barrier(epoch) => {
                    // The coordinator committed the previous epoch before it sent this
                    // barrier: read from a snapshot that holds it.
                    ctx.snapshot = self.store.snapshot();
                    self.operator.committed();
                    let result = match &failed {
                        Some(failure) => Err(failure.clone()),
                        None => match self.operator.on_barrier(&ctx, epoch) {
                            Ok(out) => {
                                if self.emit(out).await.is_err() {
                                    return;
                                }
                                let mut batch = WriteBatch::default();
                                self.operator.checkpoint(&mut batch);
                                Ok(batch)
                            }
                            Err(e) => Err(self.failure(&e)),
                        },
                    };
                    if let Err(failure) = &result {
                        failed = Some(failure.clone());
                    }
                    let _ = self.acks.send(Ack { dataflow: self.dataflow, epoch, result });
                    if self.output.send(Message::Barrier(epoch)).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    fn failure(&self, error: &crate::common::Error) -> Arc<str> {
        tracing::error!(view = %self.view, operator = self.operator.name(), %error, "operator failed");
        Arc::from(format!("{} of view {} failed: {error}", self.operator.name(), self.view))
    }

    async fn emit(&mut self, chunks: Vec<Chunk>) -> std::result::Result<(), super::exchange::Closed> {
        for chunk in chunks {
            if !chunk.is_empty() {
                self.output.send(Message::Chunk(chunk)).await?;
            }
        }
        Ok(())
    }
}

/// Rows a source reads from its relation per backfill chunk.
const BACKFILL_CHUNK_ROWS: usize = 4096;

/// The source of a dataflow: first the relation's rows as of `snapshot` (the backfill of a
/// new view), then its change stream, skipping barriers the snapshot already covers.
pub struct SourceActor {
    pub relation: Arc<TableDesc>,
    pub backfill: Option<Arc<dyn Snapshot>>,
    pub changes: mpsc::Receiver<Message>,
    pub start_epoch: Epoch,
    pub output: Dispatcher,
    pub view: Arc<str>,
}

impl SourceActor {
    pub async fn run(mut self) {
        if let Some(snapshot) = self.backfill.take() {
            match self.backfill(snapshot.as_ref()).await {
                Ok(rows) => {
                    tracing::info!(view = %self.view, relation = %self.relation.qualified_name(), rows, "backfilled")
                }
                Err(e) => {
                    // The barrier after the backfill is never acknowledged by a failed
                    // dataflow, so the epoch that would publish a partial view fails.
                    tracing::error!(view = %self.view, error = %e, "backfill failed");
                    return;
                }
            }
        }
        while let Some(message) = self.changes.recv().await {
            if matches!(message, Message::Barrier(e) if e <= self.start_epoch) {
                continue;
            }
            if self.output.send(message).await.is_err() {
                return;
            }
        }
    }

    async fn backfill(&mut self, snapshot: &dyn Snapshot) -> Result<usize> {
        let codec = TableCodec::new(&self.relation)?;
        let mut from: Vec<u8> = Vec::new();
        let mut total = 0;
        let mut logged = std::time::Instant::now();
        loop {
            if logged.elapsed() >= std::time::Duration::from_secs(10) {
                logged = std::time::Instant::now();
                tracing::info!(view = %self.view, relation = %self.relation.qualified_name(), rows = total, "backfilling");
            }
            let mut rows: Vec<Vec<u8>> = Vec::new();
            let mut last = None;
            snapshot.scan_range(self.relation.id, &from, None, &mut |key, value| {
                rows.push(value.to_vec());
                last = Some(key.to_vec());
                Ok(rows.len() < BACKFILL_CHUNK_ROWS)
            })?;
            let Some(mut last) = last else { return Ok(total) };
            total += rows.len();
            let data = codec.decode_rows(rows.iter().map(|r| r.as_slice()))?;
            if self.output.send(Message::Chunk(Chunk::inserts(data))).await.is_err() {
                return Ok(total);
            }
            if rows.len() < BACKFILL_CHUNK_ROWS {
                return Ok(total);
            }
            last.push(0);
            from = last;
        }
    }
}
