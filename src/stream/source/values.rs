//! The source of constant rows (`VALUES`, a `SELECT` without `FROM`): it inserts the rows
//! once, when the view is created (its backfill), and from then on passes on the
//! coordinator's barriers. A view resuming from its state inserts nothing again: the rows
//! are in the state of the operators after it.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use tokio::sync::mpsc;

use crate::state::Epoch;
use crate::stream::actor::{Ack, DataflowId, ExitGuard};
use crate::stream::exchange::{Dispatcher, SendError};
use crate::stream::message::{Chunk, Message};

pub struct ValuesSource {
    pub rows: RecordBatch,
    /// Whether the view is being created (its rows are inserted then).
    pub backfill: bool,
    pub barriers: mpsc::UnboundedReceiver<Epoch>,
    pub start_epoch: Epoch,
    pub output: Dispatcher,
    pub view: Arc<str>,
    pub acks: mpsc::UnboundedSender<Ack>,
    pub dataflow: DataflowId,
}

impl ValuesSource {
    pub async fn run(mut self) {
        let mut exit = ExitGuard::new(self.acks.clone(), self.dataflow, "Values", self.view.clone());
        let mut messages = Vec::new();
        if self.backfill && self.rows.num_rows() > 0 {
            messages.push(Message::Chunk(Chunk::inserts(self.rows.clone())));
        }
        loop {
            for message in messages.drain(..) {
                match self.output.send(message).await {
                    Ok(()) => {}
                    Err(SendError::Closed) => return exit.closed(),
                    Err(SendError::Failed(e)) => {
                        exit.reason =
                            Some(Arc::from(format!("passing rows to view {} failed: {e}", self.view)));
                        return;
                    }
                }
            }
            match self.barriers.recv().await {
                Some(epoch) if epoch <= self.start_epoch => {}
                Some(epoch) => messages.push(Message::Barrier(epoch)),
                // The dataflow was unregistered: it is being dropped.
                None => return exit.closed(),
            }
        }
    }
}
