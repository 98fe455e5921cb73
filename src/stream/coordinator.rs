//! The barrier coordinator: commits an epoch every `barrier_interval_ms`, or at once when a
//! writer or `FLUSH` asks, as one atomic write of every table's pending rows, the catalog
//! changes staged since the last commit and the new epoch number (DESIGN §4).
//!
//! Ordering: a DML statement applies its chunk while holding its table's writer lock and
//! reads [`Coordinator::pending_epoch`] under that lock; a commit holds every writer lock
//! (and the staged-meta lock) while it writes and advances the epoch. So a statement's
//! changes are always part of the epoch it waits for.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Notify, watch};

use super::table_writer::TableWriter;
use crate::common::{Error, Result, SqlState};
use crate::state::{Epoch, META_TABLE, Snapshot, StateStore, TableId, WriteBatch};

const EPOCH_KEY: &[u8] = b"epoch";

/// What the coordinator has committed.
#[derive(Clone, Debug)]
pub struct Committed {
    pub epoch: Epoch,
    /// Set when a commit failed: the store is no longer written, every writer gets this.
    pub failure: Option<Arc<str>>,
}

pub type SharedWriter = Arc<tokio::sync::Mutex<TableWriter>>;

pub struct Coordinator {
    store: Arc<dyn StateStore>,
    writers: Mutex<BTreeMap<TableId, SharedWriter>>,
    staged_meta: Mutex<WriteBatch>,
    commit_lock: tokio::sync::Mutex<()>,
    force: AtomicBool,
    wake: Notify,
    committed: watch::Sender<Committed>,
}

impl Coordinator {
    /// A coordinator resuming after the epoch committed in `snapshot`.
    pub fn open(store: Arc<dyn StateStore>, snapshot: &dyn Snapshot) -> Result<Self> {
        let epoch = match snapshot.get(META_TABLE, EPOCH_KEY)? {
            Some(bytes) => Epoch::from_be_bytes(
                bytes.as_slice().try_into().map_err(|_| crate::state::StateError::Corrupt("epoch".into()))?,
            ),
            None => 0,
        };
        let (committed, _) = watch::channel(Committed { epoch, failure: None });
        Ok(Coordinator {
            store,
            writers: Mutex::new(BTreeMap::new()),
            staged_meta: Mutex::new(WriteBatch::default()),
            commit_lock: tokio::sync::Mutex::new(()),
            force: AtomicBool::new(false),
            wake: Notify::new(),
            committed,
        })
    }

    pub fn store(&self) -> &Arc<dyn StateStore> {
        &self.store
    }

    pub fn committed_epoch(&self) -> Epoch {
        self.committed.borrow().epoch
    }

    /// The epoch that the next commit will create. Writers read it while holding their
    /// table's writer lock (DML) or the staged-meta lock (DDL).
    pub fn pending_epoch(&self) -> Epoch {
        self.committed_epoch() + 1
    }

    pub fn add_writer(&self, writer: TableWriter) -> SharedWriter {
        let id = writer.desc().id;
        let shared = Arc::new(tokio::sync::Mutex::new(writer));
        self.writers.lock().insert(id, shared.clone());
        shared
    }

    pub fn remove_writer(&self, table_id: TableId) {
        self.writers.lock().remove(&table_id);
    }

    pub fn writer(&self, table_id: TableId) -> Option<SharedWriter> {
        self.writers.lock().get(&table_id).cloned()
    }

    /// Stages meta-table writes (catalog changes) for the next epoch and returns it.
    pub fn stage_meta(&self, batch: WriteBatch) -> Epoch {
        let mut staged = self.staged_meta.lock();
        staged.ops.extend(batch.ops);
        self.pending_epoch()
    }

    /// Waits until `epoch` is committed, asking for an immediate commit.
    pub async fn wait_committed(&self, epoch: Epoch) -> Result<()> {
        let mut receiver = self.committed.subscribe();
        self.force.store(true, Ordering::SeqCst);
        self.wake.notify_one();
        let state = receiver
            .wait_for(|c| c.epoch >= epoch || c.failure.is_some())
            .await
            .map_err(|_| Error::new(SqlState::IoError, "the barrier coordinator stopped"))?;
        match &state.failure {
            Some(failure) if state.epoch < epoch => Err(commit_failed(failure)),
            _ => Ok(()),
        }
    }

    /// Commits a barrier now (even an empty epoch) and returns once it is durable.
    pub async fn flush(&self) -> Result<Epoch> {
        let epoch = self.pending_epoch();
        self.wait_committed(epoch).await?;
        Ok(epoch)
    }

    /// Fails fast when an earlier commit failed.
    pub fn check_healthy(&self) -> Result<()> {
        match &self.committed.borrow().failure {
            Some(failure) => Err(commit_failed(failure)),
            None => Ok(()),
        }
    }

    /// Runs the commit loop until the returned handle is aborted.
    pub fn spawn(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let coordinator = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = coordinator.wake.notified() => {}
                }
                if coordinator.committed.borrow().failure.is_some() {
                    return;
                }
                let force = coordinator.force.swap(false, Ordering::SeqCst);
                if let Err(e) = coordinator.commit_epoch(force).await {
                    tracing::error!(error = %e, "epoch commit failed; no further writes are accepted");
                }
            }
        })
    }

    /// Commits the next epoch if anything is pending (or `force`). Returns the new epoch.
    pub async fn commit_epoch(&self, force: bool) -> Result<Option<Epoch>> {
        let _one_at_a_time = self.commit_lock.lock().await;
        let writers: Vec<SharedWriter> = self.writers.lock().values().cloned().collect();
        let mut guards = Vec::with_capacity(writers.len());
        for writer in &writers {
            guards.push(writer.lock().await);
        }
        // The staged-meta guard is not held across an await: this block ends first.
        let (epoch, rows) = {
            let mut staged = self.staged_meta.lock();
            let dirty = !staged.is_empty() || guards.iter().any(|g| g.has_pending());
            if !dirty && !force {
                return Ok(None);
            }
            let epoch = self.pending_epoch();
            let mut batch = std::mem::take(&mut *staged);
            for guard in guards.iter_mut() {
                guard.drain_into(&mut batch);
            }
            batch.put(META_TABLE, EPOCH_KEY, epoch.to_be_bytes().to_vec());
            let rows = batch.ops.len();
            if let Err(e) = self.store.commit(batch) {
                let failure: Arc<str> = Arc::from(e.to_string());
                self.committed.send_modify(|c| c.failure = Some(failure.clone()));
                return Err(commit_failed(&failure));
            }
            self.committed.send_modify(|c| c.epoch = epoch);
            (epoch, rows)
        };
        tracing::debug!(epoch, writes = rows, "committed epoch");
        for guard in guards.iter_mut() {
            guard.barrier(epoch).await;
        }
        Ok(Some(epoch))
    }
}

fn commit_failed(failure: &str) -> Error {
    Error::new(SqlState::IoError, format!("could not commit epoch: {failure}"))
        .with_hint("the server stopped accepting writes; restart it to recover from the last committed epoch")
}
