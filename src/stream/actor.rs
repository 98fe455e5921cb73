//! An actor runs one instance of one operator as a Tokio task: it reads its input set,
//! hands chunks to the operator, and at each aligned barrier refreshes its snapshot,
//! seals the operator's state into an [`Ack`] for the coordinator, and passes the barrier
//! on. Sources are actors too: they backfill, then forward their relation's changes.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::exchange::{Dispatcher, Event, InputSet, SendError};
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
    /// Which of its operator's parallel instances this actor runs, of how many.
    pub instance: usize,
    pub instances: usize,
}

pub type DataflowId = u64;

impl Actor {
    pub async fn run(mut self) {
        // Whatever ends this task early (a panic included) fails the epochs it owes.
        let mut exit =
            ExitGuard::new(self.acks.clone(), self.dataflow, self.operator.name(), self.view.clone());
        let mut ctx = OperatorContext {
            snapshot: self.store.snapshot(),
            view: self.view.clone(),
            instance: self.instance,
            instances: self.instances,
            failures: Default::default(),
        };
        let mut failed: Option<Arc<str>> = None;
        loop {
            let event = match self.inputs.next().await {
                Ok(Some(event)) => event,
                Ok(None) => {
                    // An upstream actor stopped: this dataflow can no longer finish an epoch.
                    exit.reason =
                        Some(Arc::from(format!("an upstream operator of view {} stopped", self.view)));
                    return;
                }
                Err(e) => {
                    failed.get_or_insert_with(|| self.failure(&e));
                    continue;
                }
            };
            match event {
                Event::Chunk(input, chunk) => {
                    if failed.is_some() {
                        continue;
                    }
                    let result = guarded(|| {
                        crate::common::failpoint::operator(self.operator.name())?;
                        self.operator.on_chunk(&ctx, input, chunk)
                    });
                    match result {
                        Ok(out) => {
                            if let Err(e) = self.emit(out).await {
                                match e {
                                    SendError::Closed => return exit.closed(),
                                    SendError::Failed(e) => failed = Some(self.failure(&e)),
                                }
                            }
                        }
                        Err(e) => failed = Some(self.failure(&e)),
                    }
                }
                Event::Watermark { side, column, value } => {
                    if failed.is_some() {
                        continue;
                    }
                    match guarded(|| self.operator.on_watermark(&ctx, side, column, &value)) {
                        Ok(messages) => {
                            for message in messages {
                                let sent = match message {
                                    Message::Chunk(chunk) if chunk.is_empty() => Ok(()),
                                    message => self.output.send(message).await,
                                };
                                match sent {
                                    Ok(()) => {}
                                    Err(SendError::Closed) => return exit.closed(),
                                    Err(SendError::Failed(e)) => {
                                        failed = Some(self.failure(&e));
                                        break;
                                    }
                                }
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
                    let mut result = match &failed {
                        Some(failure) => Err(failure.clone()),
                        None => match self.barrier(&ctx, epoch).await {
                            Ok(out) => match self.emit_then_watermarks(out).await {
                                Ok(()) => {
                                    let mut batch = WriteBatch::default();
                                    let reader = format!("{} #{}", self.operator.name(), self.instance);
                                    match guarded(|| {
                                        self.operator.checkpoint(&mut batch);
                                        ctx.failures
                                            .write_dead_letters(&self.view, &reader, epoch, &mut batch)?;
                                        Ok(())
                                    }) {
                                        Ok(()) => Ok(batch),
                                        Err(e) => Err(self.failure(&e)),
                                    }
                                }
                                Err(SendError::Closed) => return exit.closed(),
                                Err(SendError::Failed(e)) => Err(self.failure(&e)),
                            },
                            Err(e) => Err(self.failure(&e)),
                        },
                    };
                    if let Err(failure) = &mut result {
                        failed = Some(failure.clone());
                    }
                    let _ = self.acks.send(Ack { dataflow: self.dataflow, epoch, result });
                    match self.output.send(Message::Barrier(epoch)).await {
                        Ok(()) => {}
                        Err(SendError::Closed) => return exit.closed(),
                        Err(SendError::Failed(e)) => failed = Some(self.failure(&e)),
                    }
                }
            }
        }
    }

    /// The operator's barrier hook (after a `block:` failpoint, in tests).
    async fn barrier(&mut self, ctx: &OperatorContext, epoch: Epoch) -> Result<Vec<Chunk>> {
        crate::common::failpoint::barrier(self.operator.name()).await;
        guarded(|| self.operator.on_barrier(ctx, epoch))
    }

    fn failure(&self, error: &crate::common::Error) -> Arc<str> {
        tracing::error!(view = %self.view, operator = self.operator.name(), %error, "operator failed");
        Arc::from(format!("{} of view {} failed: {error}", self.operator.name(), self.view))
    }

    /// A barrier's output chunks, then the watermarks the operator held for after them.
    async fn emit_then_watermarks(&mut self, chunks: Vec<Chunk>) -> std::result::Result<(), SendError> {
        self.emit(chunks).await?;
        for message in self.operator.watermarks_after_barrier() {
            self.output.send(message).await?;
        }
        Ok(())
    }

    async fn emit(&mut self, chunks: Vec<Chunk>) -> std::result::Result<(), SendError> {
        for chunk in chunks {
            if !chunk.is_empty() {
                self.output.send(Message::Chunk(chunk)).await?;
            }
        }
        Ok(())
    }
}

/// Runs an operator hook, turning a panic into an error that names it: a bug in one
/// operator fails its view's epoch instead of silently ending the actor.
fn guarded<T>(hook: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(hook)) {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(crate::common::Error::internal(format!("panicked: {message}")))
        }
    }
}

/// Sent when an actor task ends other than because its dataflow was dropped: the
/// coordinator then fails the epoch with the reason instead of waiting for an
/// acknowledgement that will never come.
pub struct ExitGuard {
    acks: mpsc::UnboundedSender<Ack>,
    dataflow: DataflowId,
    what: &'static str,
    view: Arc<str>,
    /// Why the actor stopped, when it knows.
    pub reason: Option<Arc<str>>,
    armed: bool,
}

impl ExitGuard {
    pub fn new(
        acks: mpsc::UnboundedSender<Ack>,
        dataflow: DataflowId,
        what: &'static str,
        view: Arc<str>,
    ) -> Self {
        ExitGuard { acks, dataflow, what, view, reason: None, armed: true }
    }

    /// The downstream end is gone: the dataflow is being dropped, nothing is owed.
    pub fn closed(mut self) {
        self.armed = false;
    }
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let reason = self.reason.take().unwrap_or_else(|| {
            let how = if std::thread::panicking() { "panicked" } else { "stopped" };
            Arc::from(format!("{} of view {} {how}", self.what, self.view))
        });
        let _ = self.acks.send(Ack { dataflow: self.dataflow, epoch: Epoch::MAX, result: Err(reason) });
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
    pub acks: mpsc::UnboundedSender<Ack>,
    pub dataflow: DataflowId,
}

impl SourceActor {
    pub async fn run(mut self) {
        let mut exit = ExitGuard::new(self.acks.clone(), self.dataflow, "Source", self.view.clone());
        if let Some(snapshot) = self.backfill.take() {
            match self.backfill(snapshot.as_ref()).await {
                Ok(rows) => {
                    tracing::info!(view = %self.view, relation = %self.relation.qualified_name(), rows, "backfilled")
                }
                Err(e) => {
                    // The epoch that would publish a partial view fails.
                    tracing::error!(view = %self.view, error = %e, "backfill failed");
                    exit.reason = Some(Arc::from(format!("the backfill of view {} failed: {e}", self.view)));
                    return;
                }
            }
        }
        while let Some(message) = self.changes.recv().await {
            if matches!(message, Message::Barrier(e) if e <= self.start_epoch) {
                continue;
            }
            match self.output.send(message).await {
                Ok(()) => {}
                Err(SendError::Closed) => return exit.closed(),
                Err(SendError::Failed(e)) => {
                    tracing::error!(view = %self.view, error = %e, "passing on changes failed");
                    exit.reason =
                        Some(Arc::from(format!("passing changes to view {} failed: {e}", self.view)));
                    return;
                }
            }
        }
        // The relation's change stream ended: it was dropped with this dataflow.
        exit.closed();
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
            match self.output.send(Message::Chunk(Chunk::inserts(data))).await {
                Ok(()) => {}
                Err(SendError::Closed) => return Ok(total),
                Err(SendError::Failed(e)) => return Err(e),
            }
            if rows.len() < BACKFILL_CHUNK_ROWS {
                return Ok(total);
            }
            last.push(0);
            from = last;
        }
    }
}
