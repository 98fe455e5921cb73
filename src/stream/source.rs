//! The source side of connectors: what a connector implements ([`SourceConnector`] and
//! its [`SplitReader`]s), and the actor that reads a source for one dataflow
//! ([`SourceReader`]).
//!
//! A source is divided into splits (a generator's partitions, a file, later a Kafka
//! partition). Each split has a position — opaque to Sabot, meaningful to its connector —
//! after the rows read so far. Each dataflow that reads a source has its own reader and
//! its own positions, kept in a state table of the dataflow: at every barrier the reader
//! seals the positions after the rows it emitted before that barrier, and they commit in
//! the same atomic write as the state those rows produced downstream. After a crash the
//! reader seeks every split to its committed position: no row is lost or read twice.
//!
//! Reading never outruns the dataflow: a chunk is sent through a bounded channel before
//! the next is read, so memory stays bounded whatever the input's size.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::actor::{Ack, DataflowId};
use super::exchange::Dispatcher;
use super::message::{Chunk, Message};
use crate::catalog::TableDesc;
use crate::common::{Error, Result};
use crate::state::{Epoch, Snapshot, StateStore, TableId, WriteBatch};

/// A split's name, stable across restarts.
pub type SplitId = String;

/// Rows read from a split.
pub struct SplitChunk {
    /// The rows, in the source's visible columns.
    pub data: RecordBatch,
    /// The split's position after these rows.
    pub position: String,
}

/// What reading a split gave.
pub enum Read {
    Chunk(SplitChunk),
    /// Nothing now; more may come later (an endless or paced source).
    Pending,
    /// The split is exhausted and will never have more rows.
    Done,
}

/// Reads one split, continuing after a position.
#[async_trait]
pub trait SplitReader: Send {
    /// Up to `max_rows` rows.
    async fn next(&mut self, max_rows: usize) -> Result<Read>;
}

/// A configured source: its splits and a reader for each.
pub trait SourceConnector: Send + Sync {
    /// The splits to read.
    fn splits(&self) -> Result<Vec<SplitId>>;

    /// A reader of `split`, after `position` (from the split's start when `None`).
    fn reader(&self, split: &SplitId, position: Option<&str>) -> Result<Box<dyn SplitReader>>;

    /// The connector's own pace (a generator's rows per second), if it has one.
    fn rows_per_second(&self) -> Option<u64> {
        None
    }
}

/// A split's committed state, stored in the reader's positions table under the split id.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct SplitState {
    /// Its number among the source's splits: the high bits of its rows' ids.
    number: u64,
    position: Option<String>,
    /// Rows read from the split before `position`.
    rows: u64,
    done: bool,
}

/// Rows of one split get ids `number << SPLIT_SHIFT | row`: unique in the source, and the
/// same when a row is read again after a restart.
const SPLIT_SHIFT: u32 = 40;

/// One split's progress, as `sabot_catalog.source_splits` shows it.
#[derive(Clone, Debug)]
pub struct SplitProgress {
    pub split: SplitId,
    pub position: Option<String>,
    /// Rows read and sealed at the last barrier (committed with it).
    pub rows: u64,
    pub done: bool,
}

/// The progress of one reader of a source, shared with the catalog's system tables.
#[derive(Debug)]
pub struct SourceProgress {
    pub source: String,
    /// The view, table or sink the reader feeds.
    pub reader: String,
    pub splits: parking_lot::Mutex<Vec<SplitProgress>>,
    /// Rows read so far, sealed or not.
    pub rows_read: AtomicU64,
}

/// Limits of one reader.
#[derive(Clone, Copy, Debug)]
pub struct ReadLimits {
    /// Rows per chunk, at most.
    pub chunk_rows_max: usize,
    /// Rows per second for the whole source (all its splits), if limited.
    pub rows_per_second: Option<u64>,
}

/// Waiting time when every split has nothing to read.
const IDLE_WAIT: Duration = Duration::from_millis(20);

/// Reads a source's splits for one dataflow and emits their rows as insert chunks,
/// barriers as the coordinator injects them.
pub struct SourceReader {
    /// The source relation (its hidden row id is the last column).
    pub relation: Arc<TableDesc>,
    pub connector: Arc<dyn SourceConnector>,
    pub positions_table: TableId,
    pub store: Arc<dyn StateStore>,
    /// Barriers from the coordinator.
    pub barriers: mpsc::UnboundedReceiver<Epoch>,
    /// Set whenever rows were emitted, so that the coordinator commits them.
    pub active: Arc<AtomicBool>,
    pub output: Dispatcher,
    pub acks: mpsc::UnboundedSender<Ack>,
    pub dataflow: DataflowId,
    pub view: Arc<str>,
    pub limits: ReadLimits,
    pub progress: Arc<SourceProgress>,
}

struct OpenSplit {
    id: SplitId,
    state: SplitState,
    reader: Option<Box<dyn SplitReader>>,
    /// Nothing to read at the last attempt.
    idle: bool,
    dirty: bool,
}

impl SourceReader {
    pub async fn run(mut self) {
        let mut splits = match self.open_splits(self.store.snapshot().as_ref()) {
            Ok(splits) => splits,
            Err(e) => return self.fail(Epoch::MAX, &e),
        };
        let mut limiter = RateLimiter::new(self.limits.rows_per_second);
        let mut next = 0usize;
        loop {
            while let Ok(epoch) = self.barriers.try_recv() {
                if !self.barrier(epoch, &mut splits).await {
                    return;
                }
            }
            let readable: Vec<usize> =
                (0..splits.len()).filter(|&i| splits[i].reader.is_some() && !splits[i].idle).collect();
            let allowed = limiter.allowed(self.limits.chunk_rows_max);
            if readable.is_empty() || allowed == 0 {
                let wait = if readable.is_empty() { IDLE_WAIT } else { limiter.wait() };
                tokio::select! {
                    epoch = self.barriers.recv() => match epoch {
                        Some(epoch) => if !self.barrier(epoch, &mut splits).await { return },
                        None => return,
                    },
                    () = tokio::time::sleep(wait) => {}
                }
                for split in &mut splits {
                    split.idle = false;
                }
                continue;
            }
            let index = readable[next % readable.len()];
            next = next.wrapping_add(1);
            match self.read(&mut splits[index], allowed).await {
                Ok(Some(rows)) => limiter.spent(rows),
                Ok(None) => {}
                Err(e) => return self.fail(Epoch::MAX, &e),
            }
        }
    }

    /// The splits with their committed state, a reader on each one not done.
    fn open_splits(&self, snapshot: &dyn Snapshot) -> Result<Vec<OpenSplit>> {
        let mut saved: BTreeMap<SplitId, SplitState> = BTreeMap::new();
        snapshot.scan(self.positions_table, &mut |key, value| {
            let state: SplitState = serde_json::from_slice(value)
                .map_err(|e| crate::state::StateError::Corrupt(format!("source position: {e}")))?;
            saved.insert(String::from_utf8_lossy(key).into_owned(), state);
            Ok(())
        })?;
        let mut next_number = saved.values().map(|s| s.number + 1).max().unwrap_or(0);
        let mut splits = Vec::new();
        for id in self.connector.splits()? {
            let state = saved.remove(&id).unwrap_or_else(|| {
                next_number += 1;
                SplitState { number: next_number - 1, ..Default::default() }
            });
            let reader =
                if state.done { None } else { Some(self.connector.reader(&id, state.position.as_deref())?) };
            splits.push(OpenSplit { id, state, reader, idle: false, dirty: false });
        }
        if !saved.is_empty() {
            tracing::warn!(view = %self.view, source = %self.relation.name, splits = saved.len(), "committed splits the source no longer has are ignored");
        }
        self.publish_progress(&splits);
        Ok(splits)
    }

    /// Reads one chunk of `split` and sends it on. Returns the rows sent.
    async fn read(&mut self, split: &mut OpenSplit, max_rows: usize) -> Result<Option<usize>> {
        let reader = split.reader.as_mut().expect("only splits with a reader are read");
        match reader.next(max_rows).await? {
            Read::Chunk(chunk) => {
                let rows = chunk.data.num_rows();
                let first = split.state.rows;
                split.state.rows += rows as u64;
                split.state.position = Some(chunk.position);
                split.dirty = true;
                if rows == 0 {
                    return Ok(Some(0));
                }
                let data = self.with_row_ids(chunk.data, split.state.number, first)?;
                self.progress.rows_read.fetch_add(rows as u64, Ordering::Relaxed);
                self.active.store(true, Ordering::Release);
                if self.output.send(Message::Chunk(Chunk::inserts(data))).await.is_err() {
                    return Err(Error::internal("the dataflow of the source stopped"));
                }
                Ok(Some(rows))
            }
            Read::Pending => {
                split.idle = true;
                Ok(None)
            }
            Read::Done => {
                split.reader = None;
                split.state.done = true;
                split.dirty = true;
                self.active.store(true, Ordering::Release);
                Ok(None)
            }
        }
    }

    /// The rows with the hidden row id appended (the relation's last column).
    fn with_row_ids(&self, data: RecordBatch, split: u64, first: u64) -> Result<RecordBatch> {
        let base = (split << SPLIT_SHIFT) + first;
        let ids: ArrayRef =
            Arc::new(Int64Array::from_iter_values((0..data.num_rows() as u64).map(|i| (base + i) as i64)));
        let mut columns = data.columns().to_vec();
        columns.push(ids);
        Ok(RecordBatch::try_new(self.relation.full_schema(), columns)?)
    }

    /// Passes barrier `epoch` on and acknowledges it with the positions of the splits read
    /// since the last one. Returns false when the dataflow is gone.
    async fn barrier(&mut self, epoch: Epoch, splits: &mut [OpenSplit]) -> bool {
        let mut batch = WriteBatch::default();
        for split in splits.iter_mut().filter(|s| s.dirty) {
            match serde_json::to_vec(&split.state) {
                Ok(value) => batch.put(self.positions_table, split.id.as_bytes(), value),
                Err(e) => {
                    self.fail(epoch, &Error::internal(format!("cannot encode a source position: {e}")));
                    return false;
                }
            }
            split.dirty = false;
        }
        self.publish_progress(splits);
        let _ = self.acks.send(Ack { dataflow: self.dataflow, epoch, result: Ok(batch) });
        self.output.send(Message::Barrier(epoch)).await.is_ok()
    }

    fn publish_progress(&self, splits: &[OpenSplit]) {
        *self.progress.splits.lock() = splits
            .iter()
            .map(|s| SplitProgress {
                split: s.id.clone(),
                position: s.state.position.clone(),
                rows: s.state.rows,
                done: s.state.done,
            })
            .collect();
    }

    fn fail(&self, epoch: Epoch, error: &Error) {
        tracing::error!(view = %self.view, source = %self.relation.name, %error, "source reader failed");
        let failure: Arc<str> =
            Arc::from(format!("reading source {} for {} failed: {error}", self.relation.name, self.view));
        let _ = self.acks.send(Ack { dataflow: self.dataflow, epoch, result: Err(failure) });
    }
}

/// A token bucket over rows: at most `rate` rows per second, in bursts of one chunk.
struct RateLimiter {
    rate: Option<u64>,
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    fn new(rate: Option<u64>) -> Self {
        RateLimiter { rate, tokens: 0.0, last: Instant::now() }
    }

    /// How many rows may be read now, at most `max`.
    fn allowed(&mut self, max: usize) -> usize {
        let Some(rate) = self.rate else { return max };
        let now = Instant::now();
        let burst = (rate as f64).min(max as f64).max(1.0);
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * rate as f64).min(burst);
        self.last = now;
        (self.tokens.floor() as usize).min(max)
    }

    fn spent(&mut self, rows: usize) {
        if self.rate.is_some() {
            self.tokens -= rows as f64;
        }
    }

    /// How long until one more row may be read.
    fn wait(&self) -> Duration {
        match self.rate {
            Some(rate) if rate > 0 => Duration::from_secs_f64(((1.0 - self.tokens) / rate as f64).max(0.001)),
            _ => IDLE_WAIT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limiter_paces_rows() {
        let mut limiter = RateLimiter::new(Some(1000));
        assert_eq!(limiter.allowed(100), 0, "no burst at the start");
        std::thread::sleep(Duration::from_millis(50));
        let first = limiter.allowed(100);
        assert!((40..=100).contains(&first), "{first}");
        limiter.spent(first);
        assert!(limiter.allowed(100) < 10);
        assert!(limiter.wait() <= Duration::from_millis(5));
        let mut unlimited = RateLimiter::new(None);
        assert_eq!(unlimited.allowed(1024), 1024);
    }
}
