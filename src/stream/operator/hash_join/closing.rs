//! A join whose first key pair carries a watermark on both sides (two windowed streams
//! joined on `window_start`, or two watermarked columns compared by equality).
//!
//! Side A's watermark says no later row of A has a smaller key there, so a row of B below
//! it can never match again: each side frees its rows behind the *other* side's
//! watermark, in memory and in the store (the watermarked key leads the stored key, so
//! the freed rows are one key range, deleted at the checkpoint). A row on time but behind
//! the other side's watermark is joined with what the other side keeps (its partners are
//! all there) and not stored. A row behind its *own* side's watermark is late: its
//! partners may be freed, so it is not applied but kept in `sabot_catalog.dead_letters`.
//! Every later output row comes from a row on time on one side, so the output's key
//! columns carry the smaller of the two watermarks.
//!
//! Each side records its watermark under [`WATERMARK_KEY`] in its own table, with the
//! range delete of the other side's rows below it in the same batch: a restarted join
//! knows what each side has freed and which rows are late.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;

use crate::common::Result;
use crate::common::row::RowCodec;
use crate::state::{Epoch, Snapshot, TableId, WriteBatch};
use crate::stream::message::{Chunk, Message};
use crate::stream::operator::late::{FIRST_CLOSABLE, LateRows, below, decode_bound, encode_bound};

/// A side's table key that records the side's watermark. No row key starts with 0xff: the
/// row format starts every value with 0 (NULL) or 1.
pub const WATERMARK_KEY: &[u8] = b"\xffwatermark";

/// One side's part of closing.
struct SideClosing {
    table: TableId,
    /// Rows of this side behind its own watermark are late.
    late: LateRows,
    /// Every row of this side whose key sorts below this is freed.
    freed: Vec<u8>,
    /// This side's key range freed in this epoch, to delete at the checkpoint.
    pending_delete: Option<(Vec<u8>, Vec<u8>)>,
    /// The watermark to record at the checkpoint (when it moved).
    record: Option<Vec<u8>>,
}

pub struct JoinClosing {
    sides: [SideClosing; 2],
    /// Encodes a value of the watermarked key alone: the prefix of the keys it leads.
    codec: RowCodec,
    /// The output columns that carry the join's watermark.
    output_columns: Vec<usize>,
    /// The output watermark passed on last.
    passed: Option<ScalarValue>,
    loaded: bool,
}

impl JoinClosing {
    /// `columns`: each side's watermarked key column; `tables`: each side's state table.
    pub fn new(
        columns: [usize; 2],
        data_type: DataType,
        tables: [TableId; 2],
        output_columns: Vec<usize>,
    ) -> Result<Self> {
        let side = |s: usize| SideClosing {
            table: tables[s],
            late: LateRows::new(columns[s], data_type.clone()),
            freed: FIRST_CLOSABLE.to_vec(),
            pending_delete: None,
            record: None,
        };
        Ok(JoinClosing {
            sides: [side(0), side(1)],
            codec: RowCodec::new(std::slice::from_ref(&data_type))?,
            output_columns,
            passed: None,
            loaded: false,
        })
    }

    /// Reads the watermarks a previous run recorded (once): each side's late bound, and
    /// what each side has freed (up to the other side's).
    fn load(&mut self, snapshot: &dyn Snapshot) -> Result<()> {
        if self.loaded {
            return Ok(());
        }
        self.loaded = true;
        for s in 0..2 {
            if let Some(recorded) = snapshot.get(self.sides[s].table, WATERMARK_KEY)? {
                let bound = decode_bound(&self.codec, &recorded, "the watermark of a join side")?;
                self.sides[s].late.advance(&bound)?;
                self.sides[1 - s].freed = recorded;
            }
        }
        Ok(())
    }

    /// The rows of `chunk` (of side `side`) that are not late, and for each of them
    /// whether it is to be stored (None: every one is): a row behind the other side's
    /// watermark can never meet a new partner.
    pub fn admit(
        &mut self,
        snapshot: &dyn Snapshot,
        side: usize,
        chunk: Chunk,
    ) -> Result<(Chunk, Option<Vec<bool>>)> {
        self.load(snapshot)?;
        let chunk = self.sides[side].late.split(chunk)?;
        let other = &self.sides[1 - side].late;
        let skip = match other.bound() {
            Some(bound) => below(chunk.data.column(self.sides[side].late.column()), bound)?,
            None => None,
        };
        Ok((chunk, skip.map(|skip| skip.into_iter().map(|s| !s).collect())))
    }

    /// Side `side`'s watermark on `column` advanced to `value`: the output's watermark
    /// when the smaller of the two moved.
    pub fn watermark(
        &mut self,
        snapshot: &dyn Snapshot,
        side: usize,
        column: usize,
        value: &ScalarValue,
    ) -> Result<Vec<Message>> {
        if column != self.sides[side].late.column() {
            return Ok(Vec::new());
        }
        self.load(snapshot)?;
        if !self.sides[side].late.advance(value)? {
            return Ok(Vec::new());
        }
        let (Some(a), Some(b)) = (self.sides[0].late.bound(), self.sides[1].late.bound()) else {
            return Ok(Vec::new());
        };
        let minimum = if a < b { a.clone() } else { b.clone() };
        if self.passed.as_ref().is_some_and(|p| *p >= minimum) {
            return Ok(Vec::new());
        }
        self.passed = Some(minimum.clone());
        Ok(self
            .output_columns
            .iter()
            .map(|&column| Message::Watermark { column, value: minimum.clone() })
            .collect())
    }

    /// The key range of side `side` to free now: below the other side's watermark, from
    /// what is freed already.
    pub fn range_to_free(&self, side: usize) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let Some(bound) = self.sides[1 - side].late.bound() else { return Ok(None) };
        let end = encode_bound(&self.codec, bound)?;
        let freed = &self.sides[side].freed;
        Ok((end > *freed).then(|| (freed.clone(), end)))
    }

    /// Side `side`'s rows in `[start, end)` are forgotten in memory; the store follows at
    /// the checkpoint, with the other side's watermark that freed them.
    pub fn freed(&mut self, side: usize, start: Vec<u8>, end: Vec<u8>) {
        let closing = &mut self.sides[side];
        closing.freed = end.clone();
        closing.pending_delete = Some(match closing.pending_delete.take() {
            Some((first, _)) => (first, end.clone()),
            None => (start, end.clone()),
        });
        self.sides[1 - side].record = Some(end);
    }

    /// Turns the epoch's late rows of both sides into dead letters of `view`; `readers`
    /// names each side's reader.
    pub fn report_late(&mut self, view: &str, readers: [&str; 2], epoch: Epoch) -> Result<()> {
        for (closing, reader) in self.sides.iter_mut().zip(readers) {
            closing.late.report(view, reader, epoch)?;
        }
        Ok(())
    }

    /// Writes the epoch's range deletes, the watermarks that made them and the dead
    /// letters (after the epoch's rows, which a range delete may cover).
    pub fn checkpoint(&mut self, batch: &mut WriteBatch) {
        for closing in &mut self.sides {
            if let Some((start, end)) = closing.pending_delete.take() {
                batch.delete_range(closing.table, &start, &end);
            }
            if let Some(recorded) = closing.record.take() {
                batch.put(closing.table, WATERMARK_KEY, recorded);
            }
            closing.late.checkpoint(batch);
        }
    }
}
