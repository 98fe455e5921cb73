//! The barrier coordinator: commits an epoch every `barrier_interval_ms`, or at once when a
//! writer or `FLUSH` asks, as one atomic write of every table's pending rows, every view
//! operator's state, the catalog changes staged since the last commit and the new epoch
//! number (DESIGN §4).
//!
//! A commit of epoch `e`:
//! 1. locks every table writer (in table-id order), so no DML runs during the commit;
//! 2. moves the tables' pending rows and the staged catalog changes into one batch;
//! 3. sends `Barrier(e)` down every table's change stream; it flows through every view
//!    dataflow, and each operator actor, once the barrier is aligned on its inputs, seals its
//!    state writes and acknowledges;
//! 4. waits for the acknowledgement of every actor of every running dataflow, adds their
//!    writes to the batch, and commits it atomically; only then is `e` visible.
//!
//! Ordering: a DML statement applies its chunk while holding its table's writer lock and
//! reads [`Coordinator::pending_epoch`] under that lock, so its changes are always part of
//! the epoch it waits for, in its table and in every view. Operators read the state of
//! epoch `e - 1` from a fresh snapshot when barrier `e` arrives: `e - 1` was committed
//! before barrier `e` was sent.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Notify, OwnedMutexGuard, mpsc, watch};

use super::actor::{Ack, DataflowId};
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
    ack_sender: mpsc::UnboundedSender<Ack>,
    acks: tokio::sync::Mutex<mpsc::UnboundedReceiver<Ack>>,
    /// Running dataflows and how many actors of each acknowledge a barrier.
    dataflows: Mutex<HashMap<DataflowId, usize>>,
    /// Readers of connector sources: each epoch's barrier is injected into them, as into
    /// the table writers.
    sources: Mutex<Vec<SourceInjector>>,
}

/// Where the coordinator sends a source reader its barriers.
struct SourceInjector {
    dataflow: DataflowId,
    barriers: mpsc::UnboundedSender<Epoch>,
    /// Set by the reader when it emitted rows: the next tick commits an epoch.
    active: Arc<AtomicBool>,
}

/// The coordinator paused right after a commit: every table writer is locked and every
/// dataflow has acknowledged the last epoch, so the committed snapshot is exactly the
/// state of every table and view. DDL that starts or stops dataflows runs here.
pub struct Boundary<'a> {
    coordinator: &'a Coordinator,
    _commit: tokio::sync::MutexGuard<'a, ()>,
    writers: BTreeMap<TableId, OwnedMutexGuard<TableWriter>>,
    pub epoch: Epoch,
    pub snapshot: Arc<dyn Snapshot>,
}

impl Boundary<'_> {
    pub fn writer(&mut self, table_id: TableId) -> Option<&mut TableWriter> {
        self.writers.get_mut(&table_id).map(|guard| &mut **guard)
    }

    /// From the next epoch on, commits wait for `actors` acknowledgements of `dataflow`.
    pub fn register(&self, dataflow: DataflowId, actors: usize) {
        self.coordinator.dataflows.lock().insert(dataflow, actors);
    }

    pub fn unregister(&self, dataflow: DataflowId) {
        self.coordinator.dataflows.lock().remove(&dataflow);
        self.coordinator.sources.lock().retain(|s| s.dataflow != dataflow);
    }

    pub fn ack_sender(&self) -> mpsc::UnboundedSender<Ack> {
        self.coordinator.ack_sender.clone()
    }
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
        let (ack_sender, acks) = mpsc::unbounded_channel();
        Ok(Coordinator {
            ack_sender,
            acks: tokio::sync::Mutex::new(acks),
            dataflows: Mutex::new(HashMap::new()),
            sources: Mutex::new(Vec::new()),
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

    /// Follows what the coordinator commits.
    pub fn subscribe_committed(&self) -> watch::Receiver<Committed> {
        self.committed.subscribe()
    }

    pub fn committed_epoch(&self) -> Epoch {
        self.committed.borrow().epoch
    }

    /// The epoch that the next commit will create. Writers read it while holding their
    /// table's writer lock (DML) or the staged-meta lock (DDL).
    pub fn pending_epoch(&self) -> Epoch {
        self.committed_epoch() + 1
    }

    /// A source reader of `dataflow`: it receives the barrier of every epoch after the
    /// committed one, and sets the returned flag when it has rows to commit. Registered at
    /// an epoch boundary (while a [`Boundary`] is held), like the dataflow.
    pub fn register_source(&self, dataflow: DataflowId) -> (mpsc::UnboundedReceiver<Epoch>, Arc<AtomicBool>) {
        let (barriers, receiver) = mpsc::unbounded_channel();
        let active = Arc::new(AtomicBool::new(false));
        self.sources.lock().push(SourceInjector { dataflow, barriers, active: active.clone() });
        (receiver, active)
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
        let mut writers = self.lock_writers().await;
        self.commit_locked(force, &mut writers).await
    }

    /// Commits an epoch (even an empty one) and stays at the boundary after it until the
    /// returned guard is dropped.
    pub async fn boundary(&self) -> Result<Boundary<'_>> {
        let commit = self.commit_lock.lock().await;
        let mut writers = self.lock_writers().await;
        self.check_healthy()?;
        self.commit_locked(true, &mut writers).await?;
        Ok(Boundary {
            coordinator: self,
            _commit: commit,
            writers,
            epoch: self.committed_epoch(),
            snapshot: self.store.snapshot(),
        })
    }

    async fn lock_writers(&self) -> BTreeMap<TableId, OwnedMutexGuard<TableWriter>> {
        let writers: Vec<(TableId, SharedWriter)> =
            self.writers.lock().iter().map(|(id, w)| (*id, w.clone())).collect();
        let mut guards = BTreeMap::new();
        for (id, writer) in writers {
            guards.insert(id, writer.lock_owned().await);
        }
        guards
    }

    async fn commit_locked(
        &self,
        force: bool,
        writers: &mut BTreeMap<TableId, OwnedMutexGuard<TableWriter>>,
    ) -> Result<Option<Epoch>> {
        // The staged-meta guard is not held across an await: this block ends first.
        let (epoch, mut batch) = {
            let mut staged = self.staged_meta.lock();
            let reading =
                self.sources.lock().iter().fold(false, |any, s| s.active.swap(false, Ordering::AcqRel) | any);
            let dirty = reading || !staged.is_empty() || writers.values().any(|g| g.has_pending());
            if !dirty && !force {
                return Ok(None);
            }
            let mut batch = std::mem::take(&mut *staged);
            for guard in writers.values_mut() {
                guard.drain_into(&mut batch);
            }
            (self.pending_epoch(), batch)
        };
        let expected = self.dataflows.lock().clone();
        for guard in writers.values_mut() {
            guard.barrier(epoch).await;
        }
        for source in self.sources.lock().iter() {
            // A reader that stopped is unregistered with its dataflow.
            let _ = source.barriers.send(epoch);
        }
        if let Err(failure) = self.collect_acks(epoch, &expected, &mut batch).await {
            return Err(self.fail(failure));
        }
        batch.put(META_TABLE, EPOCH_KEY, epoch.to_be_bytes().to_vec());
        let writes = batch.ops.len();
        if let Err(e) = self.store.commit(batch) {
            return Err(self.fail(Arc::from(e.to_string())));
        }
        self.committed.send_modify(|c| c.epoch = epoch);
        tracing::debug!(epoch, writes, "committed epoch");
        Ok(Some(epoch))
    }

    /// Waits until every actor of every dataflow in `expected` acknowledged `epoch`.
    async fn collect_acks(
        &self,
        epoch: Epoch,
        expected: &HashMap<DataflowId, usize>,
        batch: &mut WriteBatch,
    ) -> std::result::Result<(), Arc<str>> {
        let mut remaining: usize = expected.values().sum();
        let mut acks = self.acks.lock().await;
        let started = std::time::Instant::now();
        let mut warned = false;
        while remaining > 0 {
            let ack = match tokio::time::timeout(Duration::from_secs(10), acks.recv()).await {
                Ok(Some(ack)) => ack,
                Ok(None) => return Err(Arc::from("the acknowledgement channel closed")),
                Err(_) => {
                    if !warned {
                        tracing::warn!(
                            epoch,
                            remaining,
                            waited_s = started.elapsed().as_secs(),
                            "epoch waits for view operators"
                        );
                        warned = true;
                    }
                    continue;
                }
            };
            if !expected.contains_key(&ack.dataflow) {
                continue; // a dataflow that was stopped
            }
            match ack.result {
                Err(failure) => return Err(failure),
                Ok(writes) if ack.epoch == epoch => {
                    batch.ops.extend(writes.ops);
                    remaining -= 1;
                }
                Ok(_) => {}
            }
        }
        Ok(())
    }

    fn fail(&self, failure: Arc<str>) -> Error {
        self.committed.send_modify(|c| c.failure = Some(failure.clone()));
        commit_failed(&failure)
    }
}

fn commit_failed(failure: &str) -> Error {
    Error::new(SqlState::IoError, format!("could not commit epoch: {failure}"))
        .with_hint("the server stopped accepting writes; restart it to recover from the last committed epoch")
}
