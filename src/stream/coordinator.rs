//! The barrier coordinator: commits an epoch every `barrier_interval_ms`, or at once when a
//! writer or `FLUSH` asks, as one atomic write of every table's pending rows, every view
//! operator's state, the catalog changes staged since the last commit and the new epoch
//! number (DESIGN §4).
//!
//! A commit of epoch `e`:
//! 1. locks every table writer (in table-id order), so no DML runs while the epoch is cut;
//! 2. moves the tables' pending rows and the staged catalog changes into one batch, and
//!    opens epoch `e + 1` for writes;
//! 3. sends `Barrier(e)` down every table's change stream and into every source reader;
//!    it flows through every view dataflow, and each operator actor, once the barrier is
//!    aligned on its inputs, seals its state writes and acknowledges;
//! 4. releases the writers: DML and connector tables go on writing into `e + 1` while the
//!    barrier travels (a writer keeps `e`'s rows readable, sealed, until `e` commits);
//! 5. waits for the acknowledgement of every actor of every running dataflow, adds their
//!    writes to the batch, and commits it atomically; only then is `e` visible.
//!
//! So a slow view delays the statements that wait for an epoch to commit (FLUSH, DML
//! under `implicit_flush`), not the writes themselves. Commits are one at a time: `e + 1`
//! is cut only after `e` is committed. A [`Boundary`] (DDL) keeps the writers locked
//! through the whole commit, so that its snapshot is exactly every table's state.
//!
//! Ordering: a DML statement applies its chunk while holding its table's writer lock and
//! reads [`Coordinator::pending_epoch`] (the open epoch) under that lock, so its changes are
//! always part of the epoch it waits for, in its table and in every view. Operators read
//! the state of epoch `e - 1` from a fresh snapshot when barrier `e` arrives: `e - 1` was
//! committed before barrier `e` was sent.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Notify, OwnedMutexGuard, mpsc, watch};

use super::actor::{Ack, DataflowId};
use super::table_writer::TableWriter;
use crate::common::{Error, Result, SqlState};
use crate::state::{Epoch, META_TABLE, Snapshot, StateStore, TableId, WriteBatch};

const EPOCH_KEY: &[u8] = b"epoch";

/// How long the coordinator waits for an epoch's acknowledgements before it logs which
/// epoch is waiting (once). The wait ends when every actor has answered, one has failed,
/// or one has stopped (each actor says so when it ends, `actor::ExitGuard`), and at the
/// latest after `checkpoint_timeout_ms`, which fails the epoch.
const ACK_WAIT_WARNING: Duration = Duration::from_secs(10);

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
    /// The epoch writes go into: one past the committed epoch, or two while a commit is
    /// in flight.
    open_epoch: AtomicU64,
    wake: Notify,
    committed: watch::Sender<Committed>,
    ack_sender: mpsc::UnboundedSender<Ack>,
    acks: tokio::sync::Mutex<mpsc::UnboundedReceiver<Ack>>,
    /// Running dataflows: how many actors of each acknowledge a barrier, and the name of
    /// the relation it maintains (for messages).
    dataflows: Mutex<HashMap<DataflowId, (usize, Arc<str>)>>,
    /// Readers of connector sources: each epoch's barrier is injected into them, as into
    /// the table writers.
    sources: Mutex<Vec<SourceInjector>>,
    /// The longest an epoch may wait for its acknowledgements (`checkpoint_timeout_ms`).
    checkpoint_timeout: Duration,
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
    pub fn register(&self, dataflow: DataflowId, actors: usize, relation: &str) {
        self.coordinator.dataflows.lock().insert(dataflow, (actors, Arc::from(relation)));
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
    pub fn open(
        store: Arc<dyn StateStore>,
        snapshot: &dyn Snapshot,
        checkpoint_timeout: Duration,
    ) -> Result<Self> {
        let epoch = match snapshot.get(META_TABLE, EPOCH_KEY)? {
            Some(bytes) => Epoch::from_be_bytes(
                bytes.as_slice().try_into().map_err(|_| crate::state::StateError::Corrupt("epoch".into()))?,
            ),
            None => 0,
        };
        let (committed, _) = watch::channel(Committed { epoch, failure: None });
        let (ack_sender, acks) = mpsc::unbounded_channel();
        Ok(Coordinator {
            checkpoint_timeout,
            ack_sender,
            acks: tokio::sync::Mutex::new(acks),
            dataflows: Mutex::new(HashMap::new()),
            sources: Mutex::new(Vec::new()),
            store,
            writers: Mutex::new(BTreeMap::new()),
            staged_meta: Mutex::new(WriteBatch::default()),
            commit_lock: tokio::sync::Mutex::new(()),
            force: AtomicBool::new(false),
            open_epoch: AtomicU64::new(epoch + 1),
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

    /// The epoch that writes go into now (the one after the epoch being committed, while
    /// a commit is in flight). Writers read it while holding their table's writer lock
    /// (DML) or the staged-meta lock (DDL).
    pub fn pending_epoch(&self) -> Epoch {
        self.open_epoch.load(Ordering::SeqCst)
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
        let writers = self.lock_writers().await;
        let (epoch, _) = self.commit_locked(force, writers, false).await?;
        Ok(epoch)
    }

    /// Commits an epoch (even an empty one) and stays at the boundary after it until the
    /// returned guard is dropped.
    pub async fn boundary(&self) -> Result<Boundary<'_>> {
        let commit = self.commit_lock.lock().await;
        let writers = self.lock_writers().await;
        self.check_healthy()?;
        let (_, writers) = self.commit_locked(true, writers, true).await?;
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

    /// Commits an epoch with `writers` locked. With `hold`, the writers stay locked
    /// until the commit is done and are returned; otherwise they are released once the
    /// epoch's barriers are sent, and the returned map is empty.
    async fn commit_locked(
        &self,
        force: bool,
        mut writers: BTreeMap<TableId, OwnedMutexGuard<TableWriter>>,
        hold: bool,
    ) -> Result<(Option<Epoch>, BTreeMap<TableId, OwnedMutexGuard<TableWriter>>)> {
        // The staged-meta guard is not held across an await: this block ends first.
        let (epoch, mut batch) = {
            let mut staged = self.staged_meta.lock();
            let reading =
                self.sources.lock().iter().fold(false, |any, s| s.active.swap(false, Ordering::AcqRel) | any);
            let dirty = reading || !staged.is_empty() || writers.values().any(|g| g.has_pending());
            if !dirty && !force {
                return Ok((None, writers));
            }
            let mut batch = std::mem::take(&mut *staged);
            for guard in writers.values_mut() {
                guard.seal_into(&mut batch);
            }
            // Writes from here on belong to the next epoch.
            let epoch = self.open_epoch.fetch_add(1, Ordering::SeqCst);
            (epoch, batch)
        };
        let expected = self.dataflows.lock().clone();
        // Passing the barrier on (channels may be full) and collecting the acknowledgements
        // take checkpoint_timeout_ms at most together.
        let deadline = tokio::time::Instant::now() + self.checkpoint_timeout;
        for guard in writers.values_mut() {
            if tokio::time::timeout_at(deadline, guard.barrier(epoch)).await.is_err() {
                return Err(self.fail(Arc::from(format!(
                    "the barrier of epoch {epoch} could not be passed to the views of {} within \
                     checkpoint_timeout_ms ({} ms): a view stopped taking changes",
                    guard.desc().qualified_name(),
                    self.checkpoint_timeout.as_millis()
                ))));
            }
        }
        for source in self.sources.lock().iter() {
            // A reader that stopped is unregistered with its dataflow.
            let _ = source.barriers.send(epoch);
        }
        let released: Vec<TableId> = if hold {
            Vec::new()
        } else {
            let ids = writers.keys().copied().collect();
            writers.clear();
            ids
        };
        if let Err(failure) = self.collect_acks(epoch, &expected, deadline, &mut batch).await {
            return Err(self.fail(failure));
        }
        batch.put(META_TABLE, EPOCH_KEY, epoch.to_be_bytes().to_vec());
        let writes = batch.ops.len();
        if let Err(e) = self.store.commit(batch) {
            return Err(self.fail(Arc::from(e.to_string())));
        }
        self.committed.send_modify(|c| c.epoch = epoch);
        tracing::debug!(epoch, writes, "committed epoch");
        // The writers' sealed rows are in the store now.
        for guard in writers.values_mut() {
            guard.committed();
        }
        for id in released {
            let writer = self.writers.lock().get(&id).cloned();
            if let Some(writer) = writer {
                writer.lock().await.committed();
            }
        }
        Ok((Some(epoch), writers))
    }

    /// Waits until every actor of every dataflow in `expected` acknowledged `epoch`.
    async fn collect_acks(
        &self,
        epoch: Epoch,
        expected: &HashMap<DataflowId, (usize, Arc<str>)>,
        deadline: tokio::time::Instant,
        batch: &mut WriteBatch,
    ) -> std::result::Result<(), Arc<str>> {
        let mut remaining: HashMap<DataflowId, usize> = expected
            .iter()
            .filter(|(_, (actors, _))| *actors > 0)
            .map(|(id, (actors, _))| (*id, *actors))
            .collect();
        let mut acks = self.acks.lock().await;
        let started = tokio::time::Instant::now();
        let mut warned = false;
        while !remaining.is_empty() {
            let until = if warned { deadline } else { deadline.min(started + ACK_WAIT_WARNING) };
            let ack = match tokio::time::timeout_at(until, acks.recv()).await {
                Ok(Some(ack)) => ack,
                Ok(None) => return Err(Arc::from("the acknowledgement channel closed")),
                Err(_) if tokio::time::Instant::now() >= deadline => {
                    let mut waiting: Vec<&str> = remaining.keys().map(|id| &*expected[id].1).collect();
                    waiting.sort_unstable();
                    return Err(Arc::from(format!(
                        "epoch {epoch} was not acknowledged within checkpoint_timeout_ms ({} ms) by {}",
                        self.checkpoint_timeout.as_millis(),
                        waiting.join(", ")
                    )));
                }
                Err(_) => {
                    if !warned {
                        tracing::warn!(
                            epoch,
                            remaining = remaining.values().sum::<usize>(),
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
                    if let Some(actors) = remaining.get_mut(&ack.dataflow) {
                        *actors -= 1;
                        if *actors == 0 {
                            remaining.remove(&ack.dataflow);
                        }
                    }
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
