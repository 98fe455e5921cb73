//! The source side of connectors: what a connector implements ([`SourceConnector`] and
//! its [`SplitReader`]s), the reading of a source's splits shared by its two kinds of
//! reader ([`SplitSet`]), and the readers: [`reader::SourceReader`], the reader of a source
//! in one dataflow, and [`ingest::TableIngest`], which feeds a table with a connector.
//!
//! A source is divided into splits (a generator's partitions, a file, later a Kafka
//! partition). Each split has a position — opaque to Sabot, meaningful to its connector —
//! after the rows read so far. Every reader keeps its own positions and commits them in
//! the same atomic write as what the rows produced (view state, or table rows): after a
//! crash it seeks every split to its committed position, so no row is lost or read twice.
//!
//! Reading never outruns what consumes it: a chunk is handed on before the next is read,
//! through bounded channels (or a table writer's lock), so memory stays bounded whatever
//! the input's size.

pub mod ingest;
pub mod reader;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::common::{Error, Result};

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

/// A split's committed state, stored by its reader under the split's name.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SplitState {
    /// Its number among the source's splits (the high bits of a source's row ids).
    pub number: u64,
    pub position: Option<String>,
    /// Rows read from the split before `position`.
    pub rows: u64,
    pub done: bool,
}

impl SplitState {
    pub fn decode(value: &[u8]) -> Result<SplitState> {
        serde_json::from_slice(value)
            .map_err(|e| crate::state::StateError::Corrupt(format!("source position: {e}")).into())
    }

    fn encode(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| Error::internal(format!("cannot encode a source position: {e}")))
    }
}

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
    /// The view or table the reader feeds.
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

/// What a reader should do next.
pub enum Step {
    /// Rows of split number `split`, the first of them its row `first_row`.
    Rows { data: RecordBatch, split: u64, first_row: u64 },
    /// A split's state changed without rows (it is exhausted): commit it.
    Changed,
    /// Nothing to read for this long (paced, or every split idle).
    Wait(Duration),
    /// Every split is exhausted.
    Finished,
}

struct OpenSplit {
    id: SplitId,
    state: SplitState,
    reader: Option<Box<dyn SplitReader>>,
    /// Nothing to read at the last attempt.
    idle: bool,
    dirty: bool,
}

/// The splits of one reader with their states, read round-robin within its limits.
pub struct SplitSet {
    splits: Vec<OpenSplit>,
    next: usize,
    limiter: RateLimiter,
    limits: ReadLimits,
    progress: Arc<SourceProgress>,
}

impl SplitSet {
    /// Opens a reader on every split of `connector` not done, after its saved position.
    pub fn open(
        connector: &dyn SourceConnector,
        mut saved: BTreeMap<SplitId, SplitState>,
        limits: ReadLimits,
        progress: Arc<SourceProgress>,
    ) -> Result<SplitSet> {
        let mut next_number = saved.values().map(|s| s.number + 1).max().unwrap_or(0);
        let mut splits = Vec::new();
        for id in connector.splits()? {
            let state = saved.remove(&id).unwrap_or_else(|| {
                next_number += 1;
                SplitState { number: next_number - 1, ..Default::default() }
            });
            let reader =
                if state.done { None } else { Some(connector.reader(&id, state.position.as_deref())?) };
            splits.push(OpenSplit { id, state, reader, idle: false, dirty: false });
        }
        if !saved.is_empty() {
            tracing::warn!(source = %progress.source, splits = saved.len(), "committed splits the source no longer has are ignored");
        }
        let set =
            SplitSet { splits, next: 0, limiter: RateLimiter::new(limits.rows_per_second), limits, progress };
        set.publish_progress();
        Ok(set)
    }

    /// Reads the next chunk (or says why not).
    pub async fn step(&mut self) -> Result<Step> {
        if self.splits.iter().all(|s| s.reader.is_none()) {
            return Ok(Step::Finished);
        }
        let readable: Vec<usize> = (0..self.splits.len())
            .filter(|&i| self.splits[i].reader.is_some() && !self.splits[i].idle)
            .collect();
        if readable.is_empty() {
            for split in &mut self.splits {
                split.idle = false;
            }
            return Ok(Step::Wait(IDLE_WAIT));
        }
        let allowed = self.limiter.allowed(self.limits.chunk_rows_max);
        if allowed == 0 {
            return Ok(Step::Wait(self.limiter.wait()));
        }
        let split = &mut self.splits[readable[self.next % readable.len()]];
        self.next = self.next.wrapping_add(1);
        let reader = split.reader.as_mut().expect("only splits with a reader are read");
        match reader.next(allowed).await? {
            Read::Chunk(chunk) => {
                let rows = chunk.data.num_rows();
                let first_row = split.state.rows;
                split.state.rows += rows as u64;
                split.state.position = Some(chunk.position);
                split.dirty = true;
                self.limiter.spent(rows);
                self.progress.rows_read.fetch_add(rows as u64, std::sync::atomic::Ordering::Relaxed);
                Ok(Step::Rows { data: chunk.data, split: split.state.number, first_row })
            }
            Read::Pending => {
                split.idle = true;
                Ok(Step::Wait(Duration::ZERO))
            }
            Read::Done => {
                split.reader = None;
                split.state.done = true;
                split.dirty = true;
                Ok(Step::Changed)
            }
        }
    }

    /// The states of the splits read since the last call, encoded, to commit.
    pub fn take_dirty(&mut self) -> Result<Vec<(SplitId, Vec<u8>)>> {
        let mut dirty = Vec::new();
        for split in self.splits.iter_mut().filter(|s| s.dirty) {
            dirty.push((split.id.clone(), split.state.encode()?));
            split.dirty = false;
        }
        self.publish_progress();
        Ok(dirty)
    }

    fn publish_progress(&self) {
        *self.progress.splits.lock() = self
            .splits
            .iter()
            .map(|s| SplitProgress {
                split: s.id.clone(),
                position: s.state.position.clone(),
                rows: s.state.rows,
                done: s.state.done,
            })
            .collect();
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
