//! A processing-time temporal join (`HashJoinNode::lookup`): right rows are the current
//! version of the table, stored as they change and showing nothing; left rows look them
//! up and are not stored. Left chunks wait for the first barrier, by which a new view's
//! right side is backfilled.

use super::{Encoded, HashJoinOperator};
use crate::common::Result;
use crate::stream::message::Chunk;
use crate::stream::operator::OperatorContext;

impl HashJoinOperator {
    /// A chunk of a processing-time temporal join: right rows are stored (the current
    /// version) and show nothing; left rows look them up and are not stored.
    pub(super) fn process_lookup(
        &mut self,
        ctx: &OperatorContext,
        input: usize,
        chunk: Chunk,
    ) -> Result<Vec<Chunk>> {
        if input == 1 {
            let encoded = Encoded::new(&self.sides[1], &chunk)?;
            for (i, op) in chunk.ops.iter().enumerate() {
                let Some(key) = encoded.join_key(i) else { continue };
                match Chunk::is_insert(*op) {
                    true => self.sides[1].insert(key, encoded.stream_key(i), 0, encoded.rows.row(i).data()),
                    false => self.sides[1].remove(key, encoded.stream_key(i)),
                }
            }
            self.sides[1].buckets.evict_if_over_budget();
            return Ok(Vec::new());
        }
        if let Some(held) = &mut self.held {
            held.push(chunk);
            return Ok(Vec::new());
        }
        self.look_up(ctx, &chunk)
    }

    /// The left chunks held until the first barrier, looked up now.
    pub(super) fn release_held(&mut self, ctx: &OperatorContext, held: Vec<Chunk>) -> Result<Vec<Chunk>> {
        let mut out = Vec::new();
        for chunk in held {
            out.extend(self.look_up(ctx, &chunk)?);
        }
        Ok(out)
    }

    /// Left rows probe the right side's current rows; they are not stored.
    fn look_up(&mut self, ctx: &OperatorContext, chunk: &Chunk) -> Result<Vec<Chunk>> {
        Ok(self.process_chunk(ctx, 0, chunk, Some(&vec![false; chunk.len()]))?.0)
    }
}
