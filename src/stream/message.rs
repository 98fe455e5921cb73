//! What flows between operators: change chunks, barriers and watermarks (DESIGN §3).

use datafusion::arrow::array::{Array, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{filter_record_batch, prep_null_mask_filter};
use datafusion::common::ScalarValue;

use crate::state::Epoch;

/// The change a row of a chunk makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Insert,
    Delete,
    /// The old version of an updated row; always immediately followed by its `UpdateInsert`.
    UpdateDelete,
    UpdateInsert,
}

/// An Arrow batch with one op per row.
#[derive(Clone, Debug)]
pub struct Chunk {
    pub ops: Vec<Op>,
    pub data: RecordBatch,
}

impl Chunk {
    pub fn new(ops: Vec<Op>, data: RecordBatch) -> Self {
        let chunk = Chunk { ops, data };
        debug_assert!(chunk.is_well_formed(), "malformed chunk: {:?}", chunk.ops);
        chunk
    }

    pub fn inserts(data: RecordBatch) -> Self {
        Chunk::new(vec![Op::Insert; data.num_rows()], data)
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The rows where `keep` is true. An update pair that loses one half becomes a plain
    /// insert or delete.
    pub fn filter(&self, keep: &[bool]) -> Result<Chunk, datafusion::arrow::error::ArrowError> {
        let mut ops = Vec::with_capacity(self.ops.len());
        let mut indices = Vec::with_capacity(self.ops.len());
        let mut i = 0;
        while i < self.ops.len() {
            if self.ops[i] == Op::UpdateDelete {
                match (keep[i], keep[i + 1]) {
                    (true, true) => ops.extend([Op::UpdateDelete, Op::UpdateInsert]),
                    (true, false) => ops.push(Op::Delete),
                    (false, true) => ops.push(Op::Insert),
                    (false, false) => {}
                }
                indices.extend([i, i + 1].into_iter().filter(|&j| keep[j]).map(|j| j as u32));
                i += 2;
                continue;
            }
            if keep[i] {
                ops.push(self.ops[i]);
                indices.push(i as u32);
            }
            i += 1;
        }
        if indices.len() == self.ops.len() {
            return Ok(self.clone());
        }
        let indices = datafusion::arrow::array::UInt32Array::from(indices);
        let data = datafusion::arrow::compute::take_record_batch(&self.data, &indices)?;
        Ok(Chunk::new(ops, data))
    }

    /// The rows where `mask` is true (NULL counts as false): Arrow's filter kernel, unless
    /// the chunk has update pairs, which may lose one half (see [`Chunk::filter`]).
    pub fn filter_mask(&self, mask: &BooleanArray) -> Result<Chunk, datafusion::arrow::error::ArrowError> {
        if self.ops.contains(&Op::UpdateDelete) {
            let keep: Vec<bool> = (0..mask.len()).map(|i| mask.is_valid(i) && mask.value(i)).collect();
            return self.filter(&keep);
        }
        let mask = if mask.null_count() > 0 { prep_null_mask_filter(mask) } else { mask.clone() };
        let kept = mask.true_count();
        if kept == self.len() {
            return Ok(self.clone());
        }
        let data = filter_record_batch(&self.data, &mask)?;
        let ops = if self.ops.iter().all(|op| *op == Op::Insert) {
            vec![Op::Insert; kept]
        } else {
            self.ops.iter().zip(mask.values().iter()).filter(|(_, keep)| *keep).map(|(op, _)| *op).collect()
        };
        Ok(Chunk::new(ops, data))
    }

    /// True when the op adds its row (insert or the new half of an update).
    pub fn is_insert(op: Op) -> bool {
        matches!(op, Op::Insert | Op::UpdateInsert)
    }

    /// One op per row, and every update pair adjacent.
    pub fn is_well_formed(&self) -> bool {
        if self.ops.len() != self.data.num_rows() {
            return false;
        }
        let mut ops = self.ops.iter().peekable();
        while let Some(op) = ops.next() {
            match op {
                Op::UpdateDelete => {
                    if ops.next() != Some(&Op::UpdateInsert) {
                        return false;
                    }
                }
                Op::UpdateInsert => return false,
                Op::Insert | Op::Delete => {}
            }
        }
        true
    }
}

#[derive(Clone, Debug)]
pub enum Message {
    Chunk(Chunk),
    /// Everything before this message belongs to epoch `Epoch` or earlier.
    Barrier(Epoch),
    /// No later row has a smaller value in `column`.
    Watermark {
        column: usize,
        value: ScalarValue,
    },
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::Int32Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch(n: i32) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int32, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int32Array::from_iter_values(0..n))]).unwrap()
    }

    #[test]
    fn update_pairs_must_be_adjacent() {
        let good = Chunk { ops: vec![Op::UpdateDelete, Op::UpdateInsert, Op::Insert], data: batch(3) };
        assert!(good.is_well_formed());
        let split = Chunk { ops: vec![Op::UpdateDelete, Op::Insert, Op::UpdateInsert], data: batch(3) };
        assert!(!split.is_well_formed());
        let short = Chunk { ops: vec![Op::Insert], data: batch(2) };
        assert!(!short.is_well_formed());
    }
}
