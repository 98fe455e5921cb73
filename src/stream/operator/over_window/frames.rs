//! A partition's rows in order and the positions window functions read: peers, frames,
//! and which rows a change at a position can affect.

use std::ops::Range;

use crate::plan::{Frame, FrameBound, WindowCall, WindowKind};

/// A stored row of a partition: its key within the partition (order key bytes, then
/// stream key bytes), the ORDER BY value for RANGE offsets (in sort order: negated when
/// descending; None for NULL) and the encoded input row.
pub struct Row {
    pub key: Box<[u8]>,
    pub order_len: u32,
    pub t: Option<i64>,
    pub row: Box<[u8]>,
}

impl Row {
    pub fn order(&self) -> &[u8] {
        &self.key[..self.order_len as usize]
    }
}

/// A partition's rows in key order.
pub struct Rows<'a>(pub &'a [Row]);

impl Rows<'_> {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The position of `key`: where it is, or where it would be inserted.
    pub fn position(&self, key: &[u8]) -> usize {
        self.0.partition_point(|r| &*r.key < key)
    }

    fn peers(&self, i: usize, j: usize) -> bool {
        self.0[i].order() == self.0[j].order()
    }

    /// The first row of `i`'s peer group (rows with its ORDER BY values).
    pub fn peer_start(&self, mut i: usize) -> usize {
        while i > 0 && self.peers(i - 1, i) {
            i -= 1;
        }
        i
    }

    /// One past the last row of `i`'s peer group.
    pub fn peer_end(&self, i: usize) -> usize {
        let mut j = i + 1;
        while j < self.0.len() && self.peers(j, i) {
            j += 1;
        }
        j
    }

    /// The rows of `i`'s frame, as positions `lo..hi` (empty when `lo >= hi`). Both
    /// ends are non-decreasing in `i`.
    pub fn frame(&self, frame: &Frame, i: usize) -> Range<usize> {
        let n = self.0.len();
        let bound = |bound: FrameBound, start: bool| -> usize {
            match bound {
                FrameBound::Unbounded if start => 0,
                FrameBound::Unbounded => n,
                FrameBound::Offset(k) if frame.rows => {
                    let at = i as i128 + k as i128 + if start { 0 } else { 1 };
                    at.clamp(0, n as i128) as usize
                }
                FrameBound::Offset(0) => {
                    if start {
                        self.peer_start(i)
                    } else {
                        self.peer_end(i)
                    }
                }
                FrameBound::Offset(k) => match self.0[i].t {
                    // A NULL's peers are the other NULLs.
                    None if start => self.peer_start(i),
                    None => self.peer_end(i),
                    Some(t) => {
                        let target = t.saturating_add(k);
                        // Rows with a value are contiguous (NULLs sort first or last).
                        let first = self.0.partition_point(|r| r.t.is_none() && self.0[0].t.is_none());
                        let values = &self.0[first..];
                        let end = values.partition_point(|r| r.t.is_some());
                        let values = &values[..end];
                        first
                            + if start {
                                values.partition_point(|r| r.t.is_some_and(|v| v < target))
                            } else {
                                values.partition_point(|r| r.t.is_some_and(|v| v <= target))
                            }
                    }
                },
            }
        };
        bound(frame.start, true)..bound(frame.end, false)
    }

    /// The rows whose value of `call` may change when rows change at positions
    /// `zone` (a range around the change, wide enough for the positions the change
    /// shifts): for ranks every later row, for lag / lead the rows that read the zone,
    /// for framed calls the rows whose frame meets it.
    pub fn affected(&self, call: &WindowCall, zone: Range<usize>) -> Range<usize> {
        let n = self.0.len();
        match &call.kind {
            WindowKind::RowNumber | WindowKind::Rank | WindowKind::DenseRank => zone.start.min(n)..n,
            // The sessions the zone meets (a change there may join or split them).
            WindowKind::Session { gap, .. } if zone.start < zone.end.min(n) => {
                self.session_start(zone.start, *gap)..self.session_end(zone.end.min(n) - 1, *gap)
            }
            WindowKind::Session { .. } => zone.start.min(n)..zone.end.min(n),
            WindowKind::Shift { offset, .. } => {
                // Row i reads row i + offset.
                let start = zone.start as i128 - *offset as i128;
                let end = zone.end as i128 - *offset as i128;
                let clamp = |v: i128| v.clamp(0, n as i128) as usize;
                clamp(start.min(zone.start as i128))..clamp(end.max(zone.end as i128))
            }
            _ => {
                let first = partition_point(n, |i| self.frame(&call.frame, i).end <= zone.start);
                let end = partition_point(n, |i| self.frame(&call.frame, i).start < zone.end);
                first..end.max(first)
            }
        }
    }

    /// The rows a call reads to compute its value for the rows of `range`.
    pub fn reads(&self, call: &WindowCall, range: &Range<usize>) -> Range<usize> {
        let n = self.0.len();
        match &call.kind {
            WindowKind::RowNumber
            | WindowKind::Rank
            | WindowKind::DenseRank
            | WindowKind::CountRows
            | WindowKind::Session { .. } => 0..0,
            WindowKind::Shift { offset, .. } => {
                let clamp = |v: i128| v.clamp(0, n as i128) as usize;
                clamp(range.start as i128 + *offset as i128)..clamp(range.end as i128 + *offset as i128)
            }
            _ if range.is_empty() => 0..0,
            _ => self.frame(&call.frame, range.start).start..self.frame(&call.frame, range.end - 1).end,
        }
    }
}

/// Sessions: runs of ORDER BY values (ascending, `Row::t`) less than `gap` apart; a row
/// without a value is a session of its own.
impl Rows<'_> {
    /// Whether rows `i` and `i + 1` are in one session.
    fn joined(&self, i: usize, gap: i64) -> bool {
        match (self.0[i].t, self.0.get(i + 1).and_then(|r| r.t)) {
            (Some(a), Some(b)) => b.saturating_sub(a) < gap,
            _ => false,
        }
    }

    /// The first row of `i`'s session.
    pub fn session_start(&self, mut i: usize, gap: i64) -> usize {
        while i > 0 && self.joined(i - 1, gap) {
            i -= 1;
        }
        i
    }

    /// One past the last row of `i`'s session.
    pub fn session_end(&self, mut i: usize, gap: i64) -> usize {
        while i + 1 < self.0.len() && self.joined(i, gap) {
            i += 1;
        }
        i + 1
    }

    /// How many leading rows are in sessions that ended at or before `bound` (last value
    /// plus `gap` at most `bound`); a row without a value stops the count.
    pub fn closed_sessions(&self, gap: i64, bound: i64) -> usize {
        let mut i = 0;
        while i < self.0.len() && self.0[i].t.is_some() {
            let end = self.session_end(i, gap);
            match self.0[end - 1].t {
                Some(last) if last.saturating_add(gap) <= bound => i = end,
                _ => break,
            }
        }
        i
    }
}

/// The first `i` in `0..n` where `below(i)` is false (`below` holds for a prefix).
fn partition_point(n: usize, below: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if below(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}
