//! `TableWriter`: the head of a table's change stream.
//!
//! DML statements hand it validated [`Chunk`]s in the table's full schema (hidden row id
//! included). It applies each chunk to the table's [`StateTable`] (committed with the next
//! epoch) and forwards it to every subscriber; the coordinator then sends each subscriber
//! the `Barrier` of the epoch that committed it. Inserts put the row under its key, deletes
//! remove the key, an update pair removes the old key and puts the new row.

use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::row::Rows;
use tokio::sync::mpsc;

use super::message::{Chunk, Message, Op};
use super::unique::{UniqueIndexes, UniqueWrites};
use super::watermark::{WatermarkExpr, WatermarkGenerator};
use crate::catalog::{TableCodec, TableDesc};
use crate::common::Result;
use crate::state::{Epoch, META_TABLE, Snapshot, StateTable, WriteBatch};

const ROW_ID_PREFIX: &[u8] = b"row_id/";
/// Meta-table keys of the split states of a table's connector: this prefix, the table id,
/// then the split's name.
const SPLIT_PREFIX: &[u8] = b"source_split/";
/// Meta-table key of a table's watermark: this prefix and the table id.
const WATERMARK_PREFIX: &[u8] = b"watermark/";

pub struct TableWriter {
    desc: Arc<TableDesc>,
    codec: TableCodec,
    state: StateTable,
    /// The table's UNIQUE constraints.
    uniques: UniqueIndexes,
    next_row_id: i64,
    row_id_dirty: bool,
    /// Split states of the table's connector, staged with the rows they produced.
    splits: Vec<(String, Vec<u8>)>,
    /// Writes of system tables (dead letters) staged with the rows.
    system: Vec<(crate::state::TableId, Vec<u8>, Vec<u8>)>,
    subscribers: Vec<Subscriber>,
    /// The table's `WATERMARK FOR` clause and its current watermark.
    watermark: Option<WatermarkGenerator>,
    watermark_dirty: bool,
}

/// A view's dataflow reading the table's changes.
struct Subscriber {
    sender: mpsc::Sender<Message>,
    /// Set when the table's columns changed after the subscriber was planned
    /// (`ALTER TABLE`): the columns it was planned with, which its chunks keep.
    layout: Option<Layout>,
}

/// The columns a subscriber was planned with: for each, the current column it reads, or
/// None for a column dropped since (NULL; the subscriber's plan does not read it).
#[derive(Clone, Debug)]
struct Layout {
    columns: Vec<Option<usize>>,
    schema: datafusion::arrow::datatypes::SchemaRef,
}

impl Layout {
    fn chunk(&self, chunk: &Chunk) -> Result<Chunk> {
        let rows = chunk.data.num_rows();
        let columns: Vec<datafusion::arrow::array::ArrayRef> = self
            .columns
            .iter()
            .zip(self.schema.fields())
            .map(|(column, field)| match column {
                Some(i) => chunk.data.column(*i).clone(),
                None => datafusion::arrow::array::new_null_array(field.data_type(), rows),
            })
            .collect();
        Ok(Chunk::new(chunk.ops.clone(), RecordBatch::try_new(self.schema.clone(), columns)?))
    }

    fn message(&self, message: &Message) -> Option<Message> {
        match message {
            Message::Chunk(chunk) => match self.chunk(chunk) {
                Ok(chunk) => Some(Message::Chunk(chunk)),
                Err(e) => {
                    tracing::error!(error = %e, "a chunk could not be shaped for a view planned before ALTER TABLE");
                    None
                }
            },
            Message::Watermark { column, value } => {
                let column = self.columns.iter().position(|c| *c == Some(*column))?;
                Some(Message::Watermark { column, value: value.clone() })
            }
            other => Some(other.clone()),
        }
    }
}

impl TableWriter {
    /// A writer for `desc`, resuming the row-id counter stored in `snapshot`.
    pub fn open(desc: Arc<TableDesc>, snapshot: &dyn Snapshot) -> Result<Self> {
        let next_row_id = match snapshot.get(META_TABLE, &row_id_key(desc.id))? {
            Some(bytes) => i64::from_be_bytes(bytes.as_slice().try_into().map_err(|_| {
                crate::state::StateError::Corrupt(format!("row id counter of {}", desc.name))
            })?),
            None => 1,
        };
        let watermark = match WatermarkExpr::of(&desc)? {
            Some(expr) => {
                let current = match snapshot.get(META_TABLE, &watermark_key(desc.id))? {
                    Some(bytes) => Some(i64::from_be_bytes(bytes.as_slice().try_into().map_err(|_| {
                        crate::state::StateError::Corrupt(format!("watermark of {}", desc.name))
                    })?)),
                    None => None,
                };
                Some(WatermarkGenerator::new(expr, current))
            }
            None => None,
        };
        Ok(TableWriter {
            codec: TableCodec::new(&desc)?,
            state: StateTable::new(desc.id),
            uniques: UniqueIndexes::open(&desc)?,
            desc,
            next_row_id,
            row_id_dirty: false,
            splits: Vec::new(),
            system: Vec::new(),
            subscribers: Vec::new(),
            watermark,
            watermark_dirty: false,
        })
    }

    pub fn desc(&self) -> &Arc<TableDesc> {
        &self.desc
    }

    /// The stored row under `key`, pending writes included.
    pub fn get(&self, snapshot: &dyn Snapshot, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.state.get(snapshot, key)?)
    }

    /// The table's state as of now: the open epoch's writes over `snapshot`.
    pub fn state(&self) -> &StateTable {
        &self.state
    }

    /// `count` fresh values for the hidden row id.
    pub fn allocate_row_ids(&mut self, count: usize) -> Int64Array {
        let start = self.next_row_id;
        self.next_row_id += count as i64;
        self.row_id_dirty = true;
        Int64Array::from_iter_values(start..self.next_row_id)
    }

    pub fn encode_keys(&self, batch: &RecordBatch) -> Result<Rows> {
        self.codec.encode_keys(batch)
    }

    /// Stored rows (as `get` returns them) as a batch in the table's full schema.
    pub fn decode_rows<'a>(&self, rows: impl IntoIterator<Item = &'a [u8]>) -> Result<RecordBatch> {
        self.codec.decode_rows(rows)
    }

    /// Applies a validated chunk to the table state and sends it downstream.
    pub async fn apply(&mut self, chunk: Chunk) -> Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        let keys = self.codec.encode_keys(&chunk.data)?;
        let rows = self.codec.encode_rows(&chunk.data)?;
        self.uniques.apply(&chunk, &keys)?;
        // Deletes first: in `UPDATE t SET id = id + 1` one pair's new key is another pair's
        // old key, and a valid chunk never deletes a key it also inserts after.
        for (i, op) in chunk.ops.iter().enumerate() {
            if matches!(op, Op::Delete | Op::UpdateDelete) {
                self.state.delete(keys.row(i).data().to_vec());
            }
        }
        for (i, op) in chunk.ops.iter().enumerate() {
            if matches!(op, Op::Insert | Op::UpdateInsert) {
                self.state.put(keys.row(i).data().to_vec(), rows.row(i).data().to_vec());
            }
        }
        let advanced = match &mut self.watermark {
            Some(watermark) => watermark.observe(&chunk.data)?.map(|value| (watermark.expr.column, value)),
            None => None,
        };
        self.publish(Message::Chunk(chunk)).await;
        if let Some((column, value)) = advanced {
            self.watermark_dirty = true;
            self.publish(Message::Watermark { column, value }).await;
        }
        Ok(())
    }

    /// Checks a chunk against the table's UNIQUE constraints, with `base` (a transaction
    /// block's earlier changes) on top of the current values: 23505 when it would give a
    /// value to two rows. Returns `base` with the chunk's changes added.
    pub fn check_unique(
        &self,
        snapshot: &dyn Snapshot,
        base: Option<&UniqueWrites>,
        chunk: &Chunk,
    ) -> Result<UniqueWrites> {
        if self.uniques.is_empty() {
            return Ok(UniqueWrites::default());
        }
        let keys = self.codec.encode_keys(&chunk.data)?;
        self.uniques.check(&self.desc, snapshot, base, chunk, &keys)
    }

    /// A new subscriber to this table's changes, from the next chunk on; its first message
    /// is the table's current watermark, if it has one.
    pub fn subscribe(&mut self, capacity: usize) -> Result<mpsc::Receiver<Message>> {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        if let Some(watermark) = &self.watermark
            && let Some(value) = watermark.current_scalar()?
        {
            let message = Message::Watermark { column: watermark.expr.column, value };
            sender.try_send(message).map_err(|_| crate::common::Error::internal("a new channel is full"))?;
        }
        self.subscribers.push(Subscriber { sender, layout: None });
        Ok(receiver)
    }

    /// `ALTER TABLE`: from now on rows are `desc`'s. `moved[i]` is where old column `i`
    /// is now (None: dropped); current subscribers keep receiving the columns they were
    /// planned with. `rows` (key, encoded row) are the stored rows re-encoded, written
    /// with the next epoch without being sent as changes, as are `seeded`, the values of
    /// each UNIQUE constraint `desc` adds (by state table).
    pub fn alter(
        &mut self,
        desc: Arc<TableDesc>,
        moved: &[Option<usize>],
        rows: Vec<(Vec<u8>, Vec<u8>)>,
        seeded: super::unique::Seeded,
    ) -> Result<()> {
        let old_schema = self.desc.full_schema();
        for subscriber in &mut self.subscribers {
            let layout = match subscriber.layout.take() {
                None => Layout { columns: moved.to_vec(), schema: nullable(&old_schema) },
                Some(layout) => Layout {
                    columns: layout
                        .columns
                        .iter()
                        .map(|c| c.and_then(|i| moved.get(i).copied().flatten()))
                        .collect(),
                    schema: layout.schema,
                },
            };
            let identity = layout.columns.len() == desc.columns.len()
                && layout.columns.iter().enumerate().all(|(i, c)| *c == Some(i));
            subscriber.layout = (!identity).then_some(layout);
        }
        self.codec = TableCodec::new(&desc)?;
        self.uniques.alter(&desc, seeded)?;
        self.desc = desc;
        for (key, row) in rows {
            self.state.put(key, row);
        }
        Ok(())
    }

    pub fn has_pending(&self) -> bool {
        self.state.has_pending()
            || self.uniques.has_pending()
            || self.row_id_dirty
            || self.watermark_dirty
            || !self.splits.is_empty()
            || !self.system.is_empty()
    }

    /// Moves the epoch's writes (rows, the row-id counter, split states) into `batch`.
    /// Moves the epoch's writes into `batch`. The table's rows stay readable (as the
    /// state table's sealed layer) until [`TableWriter::committed`]: statements of the
    /// next epoch run while this one commits and must see them.
    pub fn seal_into(&mut self, batch: &mut WriteBatch) {
        self.state.seal_into(batch);
        self.uniques.seal_into(batch);
        if self.row_id_dirty {
            batch.put(META_TABLE, &row_id_key(self.desc.id), self.next_row_id.to_be_bytes().to_vec());
            self.row_id_dirty = false;
        }
        if self.watermark_dirty
            && let Some(current) = self.watermark.as_ref().and_then(|w| w.current)
        {
            batch.put(META_TABLE, &watermark_key(self.desc.id), current.to_be_bytes().to_vec());
            self.watermark_dirty = false;
        }
        for (split, state) in self.splits.drain(..) {
            batch.put(META_TABLE, &[split_prefix(self.desc.id), split.into_bytes()].concat(), state);
        }
        for (table, key, value) in self.system.drain(..) {
            batch.put(table, &key, value);
        }
    }

    /// Stages a write of a system table (a dead letter), to commit with the rows.
    pub fn stage_system_write(&mut self, table: crate::state::TableId, key: Vec<u8>, value: Vec<u8>) {
        self.system.push((table, key, value));
    }

    /// Stages the state of a split of the table's connector, to commit with the rows.
    pub fn stage_split(&mut self, split: &str, state: Vec<u8>) {
        self.splits.push((split.to_string(), state));
    }

    /// Rows read by the table's connector (in the visible columns) as a chunk to apply:
    /// with fresh row ids when the table has no key; as upserts when it has one (a row
    /// whose key exists, or appeared earlier in the batch, updates it).
    pub fn connector_chunk(&mut self, snapshot: &dyn Snapshot, data: RecordBatch) -> Result<Chunk> {
        if self.desc.has_row_id() {
            let ids = self.allocate_row_ids(data.num_rows());
            let mut columns = data.columns().to_vec();
            columns.push(std::sync::Arc::new(ids));
            let data = RecordBatch::try_new(self.desc.full_schema(), columns)?;
            return Ok(Chunk::inserts(data));
        }
        let data = RecordBatch::try_new(self.desc.full_schema(), data.columns().to_vec())?;
        let keys = self.codec.encode_keys(&data)?;
        // Rows of the output: (from the batch, row) or (an old stored row, its index).
        let mut ops = Vec::with_capacity(data.num_rows());
        let mut sources: Vec<(bool, usize)> = Vec::with_capacity(data.num_rows());
        let mut old_rows: Vec<Vec<u8>> = Vec::new();
        let mut seen: std::collections::HashMap<&[u8], usize> = std::collections::HashMap::new();
        for row in 0..data.num_rows() {
            let key = keys.row(row).data();
            if let Some(&previous) = seen.get(key) {
                ops.extend([Op::UpdateDelete, Op::UpdateInsert]);
                sources.extend([(true, previous), (true, row)]);
            } else if let Some(old) = self.state.get(snapshot, key)? {
                ops.extend([Op::UpdateDelete, Op::UpdateInsert]);
                sources.extend([(false, old_rows.len()), (true, row)]);
                old_rows.push(old);
            } else {
                ops.push(Op::Insert);
                sources.push((true, row));
            }
            seen.insert(key, row);
        }
        let old = self.codec.decode_rows(old_rows.iter().map(Vec::as_slice))?;
        let both = datafusion::arrow::compute::concat_batches(&data.schema(), [&data, &old])?;
        let indices: Vec<u32> = sources
            .iter()
            .map(|&(new, i)| if new { i as u32 } else { (data.num_rows() + i) as u32 })
            .collect();
        let rows = datafusion::arrow::compute::take_record_batch(
            &both,
            &datafusion::arrow::array::UInt32Array::from(indices),
        )?;
        Ok(Chunk::new(ops, rows))
    }

    /// The sealed writes are committed: reads now find them in the store.
    pub fn committed(&mut self) {
        self.state.committed();
        self.uniques.committed();
    }

    pub async fn barrier(&mut self, epoch: Epoch) {
        self.publish(Message::Barrier(epoch)).await;
    }

    async fn publish(&mut self, message: Message) {
        if self.subscribers.is_empty() {
            return;
        }
        // A subscriber that went away is dropped; a slow one applies backpressure. Safe to
        // cancel (the coordinator bounds a barrier's wait): no subscriber is lost.
        let mut i = 0;
        while i < self.subscribers.len() {
            let subscriber = &self.subscribers[i];
            let shaped = match &subscriber.layout {
                None => Some(message.clone()),
                Some(layout) => layout.message(&message),
            };
            let sent = match shaped {
                Some(shaped) => subscriber.sender.send(shaped).await.is_ok(),
                None => true,
            };
            if sent {
                i += 1;
            } else {
                self.subscribers.remove(i);
            }
        }
    }
}

/// `schema` with every field nullable (a dropped column reads as NULL).
fn nullable(schema: &datafusion::arrow::datatypes::SchemaRef) -> datafusion::arrow::datatypes::SchemaRef {
    let fields: Vec<_> = schema.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect();
    Arc::new(datafusion::arrow::datatypes::Schema::new(fields))
}

/// The meta key of a table's row-id counter; deleted with the table.
pub fn row_id_key(table_id: crate::state::TableId) -> Vec<u8> {
    [ROW_ID_PREFIX, &table_id.to_be_bytes()].concat()
}

/// The meta key of a table's watermark; deleted with the table.
pub fn watermark_key(table_id: crate::state::TableId) -> Vec<u8> {
    [WATERMARK_PREFIX, &table_id.to_be_bytes()].concat()
}

/// The meta-key prefix of the split states of a table's connector; deleted with the table.
pub fn split_prefix(table_id: crate::state::TableId) -> Vec<u8> {
    [SPLIT_PREFIX, &table_id.to_be_bytes()[..], b"/"].concat()
}
