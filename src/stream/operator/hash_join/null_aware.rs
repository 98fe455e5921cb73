//! The null-aware anti join of `NOT IN`: a NULL on the right empties the result, an
//! empty right side shows every left row. It counts the right side's rows and NULL keys
//! and reads the state table row by row, without the bucket cache (a rare form).

use super::bucket::{JoinRow, encode_stored};
use super::{Encoded, HashJoinOperator, Pending, RowRef};
use crate::common::Result;
use crate::state::prefix_end;
use crate::stream::message::Op;
use crate::stream::operator::OperatorContext;

/// Null-aware anti join bookkeeping: right rows and right rows with a NULL key.
pub(super) const COUNTERS_KEY: &[u8] = &[0xff, b'c'];
/// Null-aware anti join: left rows with a NULL key live under this prefix.
pub(super) const NULL_KEY_PREFIX: u8 = 0xfe;

/// A stored row read by the null-aware join: its state key, degree and encoded row.
struct Stored {
    key: Vec<u8>,
    degree: i64,
    row: Vec<u8>,
}

fn decode_stored(key: &[u8], value: &[u8]) -> Result<Stored> {
    let row = JoinRow::decode(&[], value)?;
    Ok(Stored { key: key.to_vec(), degree: row.degree, row: row.row().to_vec() })
}

impl HashJoinOperator {
    /// Null-aware anti join: (right rows, right rows with a NULL key).
    fn counters(&self, ctx: &OperatorContext) -> Result<(i64, i64)> {
        Ok(match self.sides[1].buckets.table().get(ctx.snapshot.as_ref(), COUNTERS_KEY)? {
            Some(v) if v.len() == 16 => (
                i64::from_le_bytes(v[..8].try_into().expect("eight bytes")),
                i64::from_le_bytes(v[8..].try_into().expect("eight bytes")),
            ),
            _ => (0, 0),
        })
    }

    /// Null-aware anti join: whether a left row shows.
    fn shows(counters: (i64, i64), left_key_null: bool, degree: i64) -> bool {
        let (rows, nulls) = counters;
        rows == 0 || (nulls == 0 && !left_key_null && degree == 0)
    }

    /// Null-aware anti join: the stored rows of side `side` with join key `key`.
    fn scan_key(&self, ctx: &OperatorContext, side: usize, key: &[u8]) -> Result<Vec<Stored>> {
        let mut rows = Vec::new();
        let mut failure = None;
        let end = prefix_end(key);
        self.sides[side].buckets.table().scan_range(
            ctx.snapshot.as_ref(),
            key,
            end.as_deref(),
            &mut |k, v| {
                match decode_stored(k, v) {
                    Ok(stored) => rows.push(stored),
                    Err(e) => failure = Some(e),
                }
                Ok(true)
            },
        )?;
        match failure {
            Some(e) => Err(e),
            None => Ok(rows),
        }
    }

    /// Every left row of a null-aware anti join with whether it shows under `counters`.
    fn all_left(&self, ctx: &OperatorContext, counters: (i64, i64)) -> Result<Vec<(Vec<u8>, bool)>> {
        let mut out = Vec::new();
        let mut failure = None;
        self.sides[0].buckets.table().scan(ctx.snapshot.as_ref(), &mut |k, v| {
            match decode_stored(k, v) {
                Ok(stored) => {
                    let shows = Self::shows(counters, k.first() == Some(&NULL_KEY_PREFIX), stored.degree);
                    out.push((stored.row, shows));
                }
                Err(e) => failure = Some(e),
            }
            Ok(())
        })?;
        match failure {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    pub(super) fn process_null_aware(
        &mut self,
        ctx: &OperatorContext,
        side: usize,
        encoded: &Encoded,
        i: usize,
        insert: bool,
        out: &mut Pending,
    ) -> Result<()> {
        let (row, join_key, stream_key) =
            (encoded.rows.row(i).data(), encoded.join_key(i), encoded.stream_key(i));
        let counters = self.counters(ctx)?;
        let sign = if insert { 1 } else { -1 };
        if side == 0 {
            let (state_key, degree) = match join_key {
                Some(key) => ([key, stream_key].concat(), self.scan_key(ctx, 1, key)?.len() as i64),
                None => ([&[NULL_KEY_PREFIX], stream_key].concat(), 0),
            };
            if Self::shows(counters, join_key.is_none(), degree) {
                out.push(if insert { Op::Insert } else { Op::Delete }, RowRef::Probe(i as u32), RowRef::Null);
            }
            if insert {
                self.sides[0].state().put(state_key, encode_stored(degree, row));
            } else {
                self.sides[0].state().delete(state_key);
            }
            return Ok(());
        }
        let after = (counters.0 + sign, counters.1 + if join_key.is_none() { sign } else { 0 });
        let flips = (counters.0 == 0) != (after.0 == 0) || (counters.1 == 0) != (after.1 == 0);
        let before_rows = if flips { Some(self.all_left(ctx, counters)?) } else { None };
        if let Some(key) = join_key {
            for m in self.scan_key(ctx, 0, key)? {
                let degree = m.degree + sign;
                if !flips && Self::shows(counters, false, m.degree) != Self::shows(after, false, degree) {
                    let op = if Self::shows(after, false, degree) { Op::Insert } else { Op::Delete };
                    out.push(op, RowRef::Bytes(m.row.clone()), RowRef::Null);
                }
                self.sides[0].state().put(m.key, encode_stored(degree, &m.row));
            }
            let state_key = [key, stream_key].concat();
            if insert {
                self.sides[1].state().put(state_key, encode_stored(0, row));
            } else {
                self.sides[1].state().delete(state_key);
            }
        }
        let mut value = after.0.to_le_bytes().to_vec();
        value.extend_from_slice(&after.1.to_le_bytes());
        self.sides[1].state().put(COUNTERS_KEY.to_vec(), value);
        if let Some(before_rows) = before_rows {
            for ((left, before), (_, now)) in before_rows.into_iter().zip(self.all_left(ctx, after)?) {
                if before != now {
                    out.push(if now { Op::Insert } else { Op::Delete }, RowRef::Bytes(left), RowRef::Null);
                }
            }
        }
        Ok(())
    }
}
