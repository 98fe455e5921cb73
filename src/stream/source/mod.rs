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
pub mod values;

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
    /// Records among them that could not be read.
    pub dead_letters: Vec<DeadLetter>,
}

impl SplitChunk {
    pub fn new(data: RecordBatch, position: String) -> Self {
        SplitChunk { data, position, dead_letters: Vec::new() }
    }
}

/// A record a connector could not read: where it is, what it was, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter {
    /// Its position in the source (`file:line`, `split:offset`).
    pub position: String,
    /// The record's bytes, as text (lossy for invalid UTF-8, truncated when large).
    pub payload: String,
    pub error: String,
}

/// The table that keeps every dead letter (`sabot_catalog.dead_letters`); table ids
/// below 1024 are the system's.
pub const DEAD_LETTERS_TABLE: crate::state::TableId = 1;

/// A dead letter's key in [`DEAD_LETTERS_TABLE`]: source, reader and position, so that a
/// record read again after a crash is recorded once.
pub fn dead_letter_key(source: &str, reader: &str, position: &str) -> Vec<u8> {
    [source.as_bytes(), &[0], reader.as_bytes(), &[0], position.as_bytes()].concat()
}

/// The key prefix of a source's dead letters.
pub fn dead_letter_prefix(source: &str) -> Vec<u8> {
    [source.as_bytes(), &[0]].concat()
}

/// What a dead letter's key holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeadLetterRecord {
    pub payload: String,
    pub error: String,
    /// `malformed` (a record that could not be decoded); the event-time work adds `late`.
    pub reason: String,
    /// Microseconds since 1970.
    pub recorded_at: i64,
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

    /// How often `splits` is asked again for new splits (a directory's new files), for a
    /// connector whose splits come and go; `None` when they are fixed. A source with
    /// discovery never finishes.
    fn discovery_interval(&self) -> Option<Duration> {
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
    /// The splits as of the newest committed epoch that changed them.
    pub splits: parking_lot::Mutex<Vec<SplitProgress>>,
    /// The splits as staged with epochs not yet known to be committed, oldest first.
    pub staged: parking_lot::Mutex<std::collections::VecDeque<(crate::state::Epoch, Vec<SplitProgress>)>>,
    /// Rows read so far, sealed or not.
    pub rows_read: AtomicU64,
    /// Records that could not be read.
    pub dead_letters: AtomicU64,
}

impl SourceProgress {
    pub fn new(source: String, reader: String) -> Self {
        SourceProgress {
            source,
            reader,
            splits: Default::default(),
            staged: Default::default(),
            rows_read: Default::default(),
            dead_letters: Default::default(),
        }
    }

    /// The splits as committed with `epoch`: what a statement reading the snapshot of
    /// that epoch sees, so that a split shown as done has its rows in the snapshot.
    pub fn splits_as_of(&self, epoch: crate::state::Epoch) -> Vec<SplitProgress> {
        let mut splits = self.splits.lock();
        let mut staged = self.staged.lock();
        while staged.front().is_some_and(|(e, _)| *e <= epoch) {
            *splits = staged.pop_front().expect("checked").1;
        }
        splits.clone()
    }
}

/// Limits of one reader.
#[derive(Clone, Copy, Debug)]
pub struct ReadLimits {
    /// Rows per chunk, at most.
    pub chunk_rows_max: usize,
    /// Rows per second for the whole source (all its splits), if limited.
    pub rows_per_second: Option<u64>,
}

/// How often a reader that keeps reading logs its progress.
const PROGRESS_LOG_INTERVAL: Duration = Duration::from_secs(10);

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
    connector: Arc<dyn SourceConnector>,
    splits: Vec<OpenSplit>,
    /// The number the next new split gets.
    next_number: u64,
    /// When the splits were last listed, and whether that failed (warned once).
    listed_at: Instant,
    listing_failed: bool,
    /// When progress was last logged.
    logged_at: Instant,
    next: usize,
    limiter: RateLimiter,
    limits: ReadLimits,
    progress: Arc<SourceProgress>,
    /// Records that could not be read since the last `take_dirty`.
    dead_letters: Vec<DeadLetter>,
}

impl SplitSet {
    /// Opens a reader on every split of `connector` not done, after its saved position.
    pub fn open(
        connector: Arc<dyn SourceConnector>,
        mut saved: BTreeMap<SplitId, SplitState>,
        limits: ReadLimits,
        progress: Arc<SourceProgress>,
    ) -> Result<SplitSet> {
        let next_number = saved.values().map(|s| s.number + 1).max().unwrap_or(0);
        let discovers = connector.discovery_interval().is_some();
        let listed = match connector.splits() {
            Ok(listed) => listed,
            // A directory that is gone is listed again later; the committed splits stay.
            Err(e) if discovers => {
                tracing::warn!(source = %progress.source, error = %e, "cannot list the source's splits");
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        let mut splits = Vec::new();
        let mut set = SplitSet {
            connector,
            splits: Vec::new(),
            next_number,
            listed_at: Instant::now(),
            listing_failed: false,
            logged_at: Instant::now(),
            next: 0,
            limiter: RateLimiter::new(limits.rows_per_second),
            limits,
            progress,
            dead_letters: Vec::new(),
        };
        for id in listed {
            let state = match saved.remove(&id) {
                Some(state) => state,
                None => set.new_state(),
            };
            splits.push(set.open_split(id, state)?);
        }
        if discovers {
            // Splits no longer listed (files removed after they were read) stay done.
            for (id, state) in std::mem::take(&mut saved) {
                splits.push(OpenSplit { id, state, reader: None, idle: false, dirty: false });
            }
        }
        if !saved.is_empty() {
            tracing::warn!(source = %set.progress.source, splits = saved.len(), "committed splits the source no longer has are ignored");
        }
        set.splits = splits;
        *set.progress.splits.lock() = set.progress_now();
        Ok(set)
    }

    /// Logs how far a long read has come (a backfill of a large input).
    fn log_progress(&mut self) {
        self.logged_at = Instant::now();
        let done = self.splits.iter().filter(|s| s.state.done).count();
        tracing::info!(
            source = %self.progress.source,
            reader = %self.progress.reader,
            rows = self.progress.rows_read.load(std::sync::atomic::Ordering::Relaxed),
            splits = self.splits.len(),
            done,
            "reading"
        );
    }

    fn new_state(&mut self) -> SplitState {
        self.next_number += 1;
        SplitState { number: self.next_number - 1, ..Default::default() }
    }

    fn open_split(&self, id: SplitId, state: SplitState) -> Result<OpenSplit> {
        let reader =
            if state.done { None } else { Some(self.connector.reader(&id, state.position.as_deref())?) };
        Ok(OpenSplit { id, state, reader, idle: false, dirty: false })
    }

    /// Lists the connector's splits again and opens the new ones.
    fn discover(&mut self) -> Result<()> {
        self.listed_at = Instant::now();
        let listed = match self.connector.splits() {
            Ok(listed) => listed,
            Err(e) => {
                if !self.listing_failed {
                    tracing::warn!(source = %self.progress.source, error = %e, "cannot list the source's splits; trying again");
                }
                self.listing_failed = true;
                return Ok(());
            }
        };
        self.listing_failed = false;
        let known: std::collections::HashSet<SplitId> = self.splits.iter().map(|s| s.id.clone()).collect();
        for id in listed {
            if !known.contains(&id) {
                let state = self.new_state();
                let mut split = self.open_split(id, state)?;
                // Its number commits even if its first read has no rows.
                split.dirty = true;
                self.splits.push(split);
            }
        }
        Ok(())
    }

    /// Reads the next chunk (or says why not).
    pub async fn step(&mut self) -> Result<Step> {
        let discovery = self.connector.discovery_interval();
        if let Some(interval) = discovery
            && self.listed_at.elapsed() >= interval
        {
            self.discover()?;
        }
        if self.splits.iter().all(|s| s.reader.is_none()) {
            return Ok(match discovery {
                Some(interval) => {
                    Step::Wait(interval.saturating_sub(self.listed_at.elapsed()).max(IDLE_WAIT))
                }
                None => Step::Finished,
            });
        }
        let readable: Vec<usize> = (0..self.splits.len())
            .filter(|&i| self.splits[i].reader.is_some() && !self.splits[i].idle)
            .collect();
        if readable.is_empty() {
            for split in &mut self.splits {
                split.idle = false;
            }
            return Ok(Step::Wait(match discovery {
                Some(interval) => {
                    interval.saturating_sub(self.listed_at.elapsed()).clamp(IDLE_WAIT, IDLE_WAIT * 5)
                }
                None => IDLE_WAIT,
            }));
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
                if !chunk.dead_letters.is_empty() {
                    for letter in &chunk.dead_letters {
                        tracing::warn!(source = %self.progress.source, reader = %self.progress.reader, position = %letter.position, error = %letter.error, "a record could not be read; it is kept in sabot_catalog.dead_letters");
                    }
                    self.progress
                        .dead_letters
                        .fetch_add(chunk.dead_letters.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    self.dead_letters.extend(chunk.dead_letters);
                }
                let rows = chunk.data.num_rows();
                let first_row = split.state.rows;
                split.state.rows += rows as u64;
                split.state.position = Some(chunk.position);
                split.dirty = true;
                self.limiter.spent(rows);
                self.progress.rows_read.fetch_add(rows as u64, std::sync::atomic::Ordering::Relaxed);
                let number = split.state.number;
                if self.logged_at.elapsed() >= PROGRESS_LOG_INTERVAL {
                    self.log_progress();
                }
                Ok(Step::Rows { data: chunk.data, split: number, first_row })
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

    /// The numbers of the splits not read to their end.
    pub fn live(&self) -> Vec<u64> {
        self.splits.iter().filter(|s| !s.state.done).map(|s| s.state.number).collect()
    }

    /// Whether split number `number` has been read to its end.
    pub fn is_done(&self, number: u64) -> bool {
        self.splits.iter().any(|s| s.state.number == number && s.state.done)
    }

    /// The dead letters since the last call, as writes of [`DEAD_LETTERS_TABLE`]: to commit
    /// with the split states.
    pub fn take_dead_letters(&mut self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let recorded_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        self.dead_letters
            .drain(..)
            .map(|letter| {
                let key = dead_letter_key(&self.progress.source, &self.progress.reader, &letter.position);
                let record = DeadLetterRecord {
                    payload: letter.payload,
                    error: letter.error,
                    reason: "malformed".into(),
                    recorded_at,
                };
                let value = serde_json::to_vec(&record)
                    .map_err(|e| Error::internal(format!("cannot encode a dead letter: {e}")))?;
                Ok((key, value))
            })
            .collect()
    }

    /// The states of the splits read since the last call, encoded, to commit with `epoch`.
    pub fn take_dirty(&mut self, epoch: crate::state::Epoch) -> Result<Vec<(SplitId, Vec<u8>)>> {
        let mut dirty = Vec::new();
        for split in self.splits.iter_mut().filter(|s| s.dirty) {
            dirty.push((split.id.clone(), split.state.encode()?));
            split.dirty = false;
        }
        if !dirty.is_empty() {
            let now = self.progress_now();
            let mut staged = self.progress.staged.lock();
            match staged.back_mut() {
                Some((e, splits)) if *e == epoch => *splits = now,
                _ => staged.push_back((epoch, now)),
            }
        }
        Ok(dirty)
    }

    fn progress_now(&self) -> Vec<SplitProgress> {
        self.splits
            .iter()
            .map(|s| SplitProgress {
                split: s.id.clone(),
                position: s.state.position.clone(),
                rows: s.state.rows,
                done: s.state.done,
            })
            .collect()
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
