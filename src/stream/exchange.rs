//! Moving messages between actors: dispatchers on the sending side (forward, hash
//! partition, or a view's outlet), and on the receiving side an input set that merges
//! several channels and aligns their barriers.
//!
//! Channels are bounded (`change_channel_messages_max`), so a slow actor slows its
//! producers down to the table writers, which then hold DML back: backpressure, not
//! unbounded buffering.
//!
//! Ordering: one channel is FIFO, but rows from different upstream instances interleave
//! arbitrarily. When a row moves between instances (its partitioning key changed), its
//! delete and its new version travel on different channels, and the new version could
//! overtake the delete. So an input fed by several instances buffers each epoch and, at
//! the barrier, passes it on consolidated (equal rows' inserts and deletes cancel), deletes
//! first. An input fed by one channel passes chunks through at once, and so does one fed
//! by instances whose rows never move between them (`StreamNode::keys_stay_put`: an
//! aggregate's groups live on the instance their key hashes to): every change of a key
//! then comes down one channel, in order. An aggregate's inputs are never consolidated:
//! it adds and retracts in any order and shows results only at the barrier
//! (`StreamNode::takes_changes_in_any_order`).

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;

use datafusion::arrow::array::{ArrayRef, UInt32Array};
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::ScalarValue;
use datafusion::common::hash_utils::{RandomState, create_hashes};
use tokio::sync::mpsc;

use super::message::{Chunk, Message, Op};
use super::watermark::WatermarkMinimum;
use crate::common::Result;
use crate::state::Epoch;

/// Why a message could not be passed on.
#[derive(Debug)]
pub enum SendError {
    /// The downstream end of a channel has gone (its dataflow was dropped).
    Closed,
    /// Dispatching failed (partitioning a chunk); the dataflow cannot go on.
    Failed(crate::common::Error),
}

/// The subscribers of a view's changes (views defined on it).
///
/// A subscriber added while a message is being published does not get that message: it
/// is added at an epoch boundary and skips the barrier that ends the epoch it backfilled.
#[derive(Default)]
pub struct Outlet {
    subscribers: parking_lot::Mutex<Vec<mpsc::Sender<Message>>>,
}

impl Outlet {
    pub fn subscribe(&self, capacity: usize) -> mpsc::Receiver<Message> {
        let (sender, receiver) = mpsc::channel(capacity);
        self.subscribers.lock().push(sender);
        receiver
    }

    pub async fn publish(&self, message: Message) {
        let subscribers: Vec<mpsc::Sender<Message>> = self.subscribers.lock().clone();
        for subscriber in subscribers {
            if subscriber.send(message.clone()).await.is_err() {
                self.subscribers.lock().retain(|s| !s.same_channel(&subscriber));
            }
        }
    }
}

pub enum Dispatcher {
    /// Every message to one channel.
    Forward(mpsc::Sender<Message>),
    /// Rows to the channel their key hashes to; barriers to every channel.
    Hash { keys: Vec<usize>, outputs: Vec<mpsc::Sender<Message>> },
    /// A view's output: to every subscriber, never blocking on a departed one.
    Outlet(Arc<Outlet>),
}

impl Dispatcher {
    pub async fn send(&mut self, message: Message) -> std::result::Result<(), SendError> {
        match self {
            Dispatcher::Forward(sender) => sender.send(message).await.map_err(|_| SendError::Closed),
            Dispatcher::Outlet(outlet) => {
                outlet.publish(message).await;
                Ok(())
            }
            Dispatcher::Hash { keys, outputs } => match message {
                Message::Chunk(chunk) => {
                    let parts = partition(&chunk, keys, outputs.len()).map_err(SendError::Failed)?;
                    for (part, sender) in parts.into_iter().zip(outputs.iter()) {
                        if let Some(part) = part {
                            sender.send(Message::Chunk(part)).await.map_err(|_| SendError::Closed)?;
                        }
                    }
                    Ok(())
                }
                other => {
                    for sender in outputs.iter() {
                        sender.send(other.clone()).await.map_err(|_| SendError::Closed)?;
                    }
                    Ok(())
                }
            },
        }
    }
}

/// Splits a chunk by the hash of its key columns. An update pair whose halves land in
/// different parts becomes a delete and an insert.
pub fn partition(chunk: &Chunk, keys: &[usize], parts: usize) -> Result<Vec<Option<Chunk>>> {
    let columns: Vec<ArrayRef> = keys.iter().map(|&i| chunk.data.column(i).clone()).collect();
    let target = targets(&columns, chunk.len(), parts)?;
    let mut ops: Vec<Vec<Op>> = vec![Vec::new(); parts];
    let mut indices: Vec<Vec<u32>> = vec![Vec::new(); parts];
    for (i, op) in chunk.ops.iter().enumerate() {
        let op = match op {
            Op::UpdateDelete if target[i + 1] != target[i] => Op::Delete,
            Op::UpdateInsert if target[i - 1] != target[i] => Op::Insert,
            op => *op,
        };
        ops[target[i]].push(op);
        indices[target[i]].push(i as u32);
    }
    let mut out = Vec::with_capacity(parts);
    for (ops, indices) in ops.into_iter().zip(indices) {
        out.push(if ops.is_empty() {
            None
        } else {
            let data = take_record_batch(&chunk.data, &UInt32Array::from(indices))?;
            Some(Chunk::new(ops, data))
        });
    }
    Ok(out)
}

/// The part (of `parts`) each of `rows` rows goes to, by the hash of its key `columns`.
pub fn targets(columns: &[ArrayRef], rows: usize, parts: usize) -> Result<Vec<usize>> {
    let mut hashes = vec![0u64; rows];
    if !columns.is_empty() {
        create_hashes(columns, &RandomState::default(), &mut hashes)?;
    }
    Ok(hashes.iter().map(|h| (*h % parts as u64) as usize).collect())
}

/// What an actor's input set yields.
#[derive(Debug)]
pub enum Event {
    Chunk(usize, Chunk),
    /// The barrier has arrived on every input.
    Barrier(Epoch),
    /// Input `side`'s watermark on `column` advanced: every channel of the side has
    /// passed `value` (the minimum of their watermarks).
    Watermark {
        side: usize,
        column: usize,
        value: ScalarValue,
    },
}

pub struct InputSet {
    receivers: Vec<mpsc::Receiver<Message>>,
    /// The operator input (join side) of each receiver.
    sides: Vec<usize>,
    /// Per side: consolidate each epoch (the side is fed by several channels).
    consolidate: Vec<bool>,
    buffers: Vec<Vec<Chunk>>,
    /// Per side: the minimum of its channels' watermarks; and each channel's position
    /// among its side's channels.
    watermarks: Vec<WatermarkMinimum>,
    position_in_side: Vec<usize>,
    /// Per consolidated side: watermarks held back until the epoch's buffered chunks go.
    held: Vec<Vec<(usize, ScalarValue)>>,
    blocked: Vec<bool>,
    barrier: Option<Epoch>,
    ready: VecDeque<Event>,
    next: usize,
}

impl InputSet {
    /// `receivers`: (side, channel) pairs. Sides fed by several channels are consolidated
    /// per epoch unless they are in `ordered` (sides whose keys each come down one channel).
    pub fn new(receivers: Vec<(usize, mpsc::Receiver<Message>)>, ordered: &[usize]) -> Self {
        let sides_count = receivers.iter().map(|(s, _)| s + 1).max().unwrap_or(0);
        let mut per_side = vec![0usize; sides_count];
        for (side, _) in &receivers {
            per_side[*side] += 1;
        }
        let (sides, receivers): (Vec<usize>, Vec<_>) = receivers.into_iter().unzip();
        InputSet {
            blocked: vec![false; receivers.len()],
            watermarks: per_side.iter().map(|&n| WatermarkMinimum::new(n)).collect(),
            position_in_side: (0..sides.len())
                .map(|i| sides[..i].iter().filter(|&&s| s == sides[i]).count())
                .collect(),
            receivers,
            sides,
            consolidate: per_side
                .iter()
                .enumerate()
                .map(|(side, n)| *n > 1 && !ordered.contains(&side))
                .collect(),
            buffers: vec![Vec::new(); sides_count],
            held: vec![Vec::new(); sides_count],
            barrier: None,
            ready: VecDeque::new(),
            next: 0,
        }
    }

    /// The next event; None once an upstream channel has closed.
    pub async fn next(&mut self) -> Result<Option<Event>> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(Some(event));
            }
            let Some((index, message)) = self.recv().await else { return Ok(None) };
            let side = self.sides[index];
            match message {
                Message::Chunk(chunk) if self.consolidate[side] => self.buffers[side].push(chunk),
                Message::Chunk(chunk) => return Ok(Some(Event::Chunk(side, chunk))),
                Message::Barrier(epoch) => {
                    debug_assert!(self.barrier.is_none_or(|b| b == epoch), "barriers out of step");
                    self.barrier = Some(epoch);
                    self.blocked[index] = true;
                    if self.blocked.iter().all(|b| *b) {
                        self.release(epoch)?;
                    }
                }
                Message::Watermark { column, value } => {
                    let channel = self.position_in_side[index];
                    if let Some(value) = self.watermarks[side].advance(channel, column, value) {
                        if self.consolidate[side] {
                            self.held[side].push((column, value));
                        } else {
                            return Ok(Some(Event::Watermark { side, column, value }));
                        }
                    }
                }
            }
        }
    }

    fn release(&mut self, epoch: Epoch) -> Result<()> {
        for side in 0..self.buffers.len() {
            let chunks = std::mem::take(&mut self.buffers[side]);
            if let Some(chunk) = consolidate(chunks)? {
                self.ready.push_back(Event::Chunk(side, chunk));
            }
            for (column, value) in std::mem::take(&mut self.held[side]) {
                self.ready.push_back(Event::Watermark { side, column, value });
            }
        }
        self.ready.push_back(Event::Barrier(epoch));
        self.blocked.iter_mut().for_each(|b| *b = false);
        self.barrier = None;
        Ok(())
    }

    async fn recv(&mut self) -> Option<(usize, Message)> {
        let count = self.receivers.len();
        poll_fn(|cx| {
            for k in 0..count {
                let i = (self.next + k) % count;
                if self.blocked[i] {
                    continue;
                }
                match self.receivers[i].poll_recv(cx) {
                    Poll::Ready(Some(message)) => {
                        self.next = (i + 1) % count;
                        return Poll::Ready(Some((i, message)));
                    }
                    Poll::Ready(None) => return Poll::Ready(None),
                    Poll::Pending => {}
                }
            }
            Poll::Pending
        })
        .await
    }
}

/// The net change of `chunks`: equal rows' inserts and deletes cancel; deletes come first.
pub fn consolidate(chunks: Vec<Chunk>) -> Result<Option<Chunk>> {
    let Some(first) = chunks.first() else { return Ok(None) };
    let schema = first.data.schema();
    let batches: Vec<_> = chunks.iter().map(|c| c.data.clone()).collect();
    let data = concat_batches(&schema, &batches)?;
    let ops: Vec<Op> = chunks.iter().flat_map(|c| c.ops.iter().copied()).collect();
    let fields = schema.fields().iter().map(|f| SortField::new(f.data_type().clone())).collect();
    let converter = RowConverter::new(fields)?;
    let rows = converter.convert_columns(data.columns())?;
    let mut weights: HashMap<&[u8], (i64, u32), foldhash::fast::FixedState> = HashMap::default();
    let mut order = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let entry = weights.entry(rows.row(i).data()).or_insert_with(|| {
            order.push(rows.row(i).data());
            (0, i as u32)
        });
        entry.0 += if Chunk::is_insert(*op) { 1 } else { -1 };
    }
    let (mut out_ops, mut indices) = (Vec::new(), Vec::new());
    for pass_inserts in [false, true] {
        for row in &order {
            let (weight, index) = weights[row];
            if (weight > 0) == pass_inserts && weight != 0 {
                for _ in 0..weight.abs() {
                    out_ops.push(if pass_inserts { Op::Insert } else { Op::Delete });
                    indices.push(index);
                }
            }
        }
    }
    if out_ops.is_empty() {
        return Ok(None);
    }
    let data = take_record_batch(&data, &UInt32Array::from(indices))?;
    Ok(Some(Chunk::new(out_ops, data)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::operator::testing::{chunk, lines, pretty, schema};

    #[test]
    fn consolidation_cancels_and_puts_deletes_first() {
        let s = schema("k:int v:int");
        let a = chunk(&s, "+ 1 10\n+ 2 20\nU- 3 30\nU+ 3 31");
        let b = chunk(&s, "- 1 10\n- 4 40");
        let out = consolidate(vec![a, b]).unwrap().unwrap();
        assert_eq!(pretty(&[out]), lines("- 3 30\n- 4 40\n+ 2 20\n+ 3 31"));
    }

    #[test]
    fn split_update_pairs_become_delete_and_insert() {
        let s = schema("k:int v:int");
        let c = chunk(&s, "U- 1 10\nU+ 2 10\nU- 3 30\nU+ 3 31");
        let parts = partition(&c, &[0], 4).unwrap();
        let all: Vec<Chunk> = parts.into_iter().flatten().collect();
        let text = pretty(&all);
        assert!(text.contains("- 1 10") && text.contains("+ 2 10"), "{text}");
        assert!(text.contains("U- 3 30\nU+ 3 31"), "{text}");
    }

    #[tokio::test]
    async fn barriers_are_aligned_across_inputs() {
        let s = schema("k:int v:int");
        let (tx0, rx0) = mpsc::channel(8);
        let (tx1, rx1) = mpsc::channel(8);
        let mut inputs = InputSet::new(vec![(0, rx0), (1, rx1)], &[]);
        tx0.send(Message::Barrier(1)).await.unwrap();
        tx0.send(Message::Chunk(chunk(&s, "+ 9 9"))).await.unwrap();
        tx1.send(Message::Chunk(chunk(&s, "+ 1 1"))).await.unwrap();
        tx1.send(Message::Barrier(1)).await.unwrap();
        // Input 0 is blocked after its barrier: input 1's chunk comes first, then the
        // barrier, then what input 0 sent after it.
        assert!(matches!(inputs.next().await.unwrap(), Some(Event::Chunk(1, _))));
        assert!(matches!(inputs.next().await.unwrap(), Some(Event::Barrier(1))));
        assert!(matches!(inputs.next().await.unwrap(), Some(Event::Chunk(0, _))));
    }

    #[tokio::test]
    async fn a_side_watermark_is_the_minimum_of_its_channels() {
        let (tx0, rx0) = mpsc::channel(8);
        let (tx1, rx1) = mpsc::channel(8);
        let (tx2, rx2) = mpsc::channel(8);
        // Channels 0 and 1 feed side 0 (ordered: not consolidated), channel 2 side 1.
        let mut inputs = InputSet::new(vec![(0, rx0), (0, rx1), (1, rx2)], &[0]);
        let mark = |v: i64| Message::Watermark { column: 2, value: ScalarValue::Int64(Some(v)) };
        tx0.send(mark(10)).await.unwrap();
        tx2.send(mark(3)).await.unwrap();
        tx1.send(mark(7)).await.unwrap();
        tx1.send(mark(12)).await.unwrap();
        tx0.send(mark(9)).await.unwrap(); // a channel's watermark never goes back
        tx0.send(mark(15)).await.unwrap();
        tx1.send(Message::Barrier(1)).await.unwrap();
        tx0.send(Message::Barrier(1)).await.unwrap();
        tx2.send(Message::Barrier(1)).await.unwrap();
        let mut seen: Vec<Vec<i64>> = vec![Vec::new(); 2];
        loop {
            match inputs.next().await.unwrap() {
                Some(Event::Watermark { side, column: 2, value: ScalarValue::Int64(Some(v)) }) => {
                    seen[side].push(v)
                }
                Some(Event::Barrier(1)) => break,
                other => panic!("{other:?}"),
            }
        }
        // Side 0 rises to min(15, 12) = 12, never past its slower channel.
        assert!(seen[0].windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        assert_eq!(seen[0].first(), Some(&7), "{seen:?}");
        assert_eq!(seen[0].last(), Some(&12), "{seen:?}");
        assert_eq!(seen[1], vec![3]);
    }

    #[tokio::test]
    async fn a_consolidated_side_passes_watermarks_after_its_epoch() {
        let s = schema("k:int v:int");
        let (tx0, rx0) = mpsc::channel(8);
        let (tx1, rx1) = mpsc::channel(8);
        let mut inputs = InputSet::new(vec![(0, rx0), (0, rx1)], &[]);
        let mark = |v: i64| Message::Watermark { column: 1, value: ScalarValue::Int64(Some(v)) };
        tx0.send(Message::Chunk(chunk(&s, "+ 1 5"))).await.unwrap();
        tx0.send(mark(5)).await.unwrap();
        tx1.send(mark(6)).await.unwrap();
        tx0.send(Message::Barrier(1)).await.unwrap();
        tx1.send(Message::Barrier(1)).await.unwrap();
        assert!(matches!(inputs.next().await.unwrap(), Some(Event::Chunk(0, _))));
        assert!(matches!(
            inputs.next().await.unwrap(),
            Some(Event::Watermark { side: 0, column: 1, value: ScalarValue::Int64(Some(5)) })
        ));
        assert!(matches!(inputs.next().await.unwrap(), Some(Event::Barrier(1))));
    }
}
