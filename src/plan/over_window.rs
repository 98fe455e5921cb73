//! The over-window node: window functions (`f(...) OVER (PARTITION BY ... ORDER BY ...
//! frame)`) maintained incrementally, one node per distinct PARTITION BY / ORDER BY.

use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;

use super::StreamNode;
use crate::state::TableId;

#[derive(Debug, Clone)]
pub struct OverWindowNode {
    /// Partition columns (empty: the whole input is one partition).
    pub partition_by: Vec<usize>,
    pub order_by: Vec<(usize, SortOptions)>,
    /// One output column each, after the input's visible columns.
    pub calls: Vec<WindowCall>,
    /// Every input row, keyed by (partition, order key, stream key).
    pub table: TableId,
    /// EMIT ON WINDOW CLOSE: the first ORDER BY column carries a watermark; each row is
    /// emitted once, when final, and rows no later row reads are freed.
    pub emit_on_close: bool,
}

#[derive(Debug, Clone)]
pub struct WindowCall {
    pub kind: WindowKind,
    /// The argument column (None for row_number, rank, dense_rank and count(*)).
    pub input: Option<usize>,
    pub output_type: DataType,
    pub frame: Frame,
    /// IGNORE NULLS (first_value, last_value): the first / last non-NULL value of the frame.
    pub ignore_nulls: bool,
    /// The call as written, for EXPLAIN.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WindowKind {
    RowNumber,
    Rank,
    DenseRank,
    /// lag (negative offset) and lead (positive): the argument `offset` rows away, else
    /// `default`.
    Shift {
        offset: i64,
        default: ScalarValue,
    },
    FirstValue,
    LastValue,
    /// count(*): the frame's rows.
    CountRows,
    Count,
    Sum,
    Avg,
    Min,
    Max,
    /// The row's session (a run of ORDER BY values, ascending, less than `gap` apart, in
    /// the column's units): its first value, or (`end`) its last value plus `gap`; NULL
    /// for a NULL value. See `sql::session_window`.
    Session {
        end: bool,
        gap: i64,
    },
}

impl WindowCall {
    /// Whether the call's frame starts at the partition's start (UNBOUNDED PRECEDING):
    /// under EMIT ON WINDOW CLOSE it reads freed rows through their summary.
    pub fn reads_from_start(&self) -> bool {
        self.kind.uses_frame() && self.frame.start == FrameBound::Unbounded
    }
}

impl WindowKind {
    /// Whether the call reads its frame (the others depend on positions alone).
    pub fn uses_frame(&self) -> bool {
        !matches!(
            self,
            WindowKind::RowNumber
                | WindowKind::Rank
                | WindowKind::DenseRank
                | WindowKind::Shift { .. }
                | WindowKind::Session { .. }
        )
    }
}

/// A frame: rows from `start` to `end` relative to the current row, counted in rows
/// (`ROWS`) or in values of the single ORDER BY column (`RANGE`, where the current row's
/// peers share its position).
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub rows: bool,
    pub start: FrameBound,
    pub end: FrameBound,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FrameBound {
    /// UNBOUNDED PRECEDING as a start, UNBOUNDED FOLLOWING as an end.
    Unbounded,
    /// `n PRECEDING` (negative), `CURRENT ROW` (0), `n FOLLOWING` (positive). For RANGE,
    /// in the ORDER BY column's units in sort order (microseconds for timestamps in µs,
    /// days for dates): a descending order's `1 PRECEDING` is the next larger value.
    Offset(i64),
}

impl Frame {
    pub fn describe(&self) -> String {
        let bound = |b: FrameBound, start: bool| match b {
            FrameBound::Unbounded if start => "UNBOUNDED PRECEDING".to_string(),
            FrameBound::Unbounded => "UNBOUNDED FOLLOWING".to_string(),
            FrameBound::Offset(0) => "CURRENT ROW".to_string(),
            FrameBound::Offset(n) if n < 0 => format!("{} PRECEDING", n.unsigned_abs()),
            FrameBound::Offset(n) => format!("{n} FOLLOWING"),
        };
        format!(
            "{} BETWEEN {} AND {}",
            if self.rows { "ROWS" } else { "RANGE" },
            bound(self.start, true),
            bound(self.end, false)
        )
    }
}

impl OverWindowNode {
    /// Whether a row's values can be final as soon as the watermark passes its ORDER BY
    /// value (no call reads rows after it): then the output carries the watermark too.
    pub fn final_at_watermark(&self) -> bool {
        self.calls.iter().all(|c| match &c.kind {
            WindowKind::Shift { offset, .. } => *offset <= 0,
            WindowKind::Session { .. } => false,
            kind if kind.uses_frame() => !matches!(c.frame.end, FrameBound::Offset(k) if k > 0),
            _ => true,
        })
    }

    /// The session gap when every call is a session bound (SESSION windows): then the
    /// rows of sessions the watermark has passed are freed, and the sessions' ends carry
    /// the watermark.
    pub fn session_gap(&self) -> Option<i64> {
        let mut gaps = self.calls.iter().map(|c| match c.kind {
            WindowKind::Session { gap, .. } => Some(gap),
            _ => None,
        });
        let first = gaps.next()??;
        gaps.all(|g| g == Some(first)).then_some(first)
    }

    /// The output column that carries the ORDER BY column's watermark, if any: a
    /// session's end (a later change moves only sessions the watermark has not passed, so
    /// their ends lie beyond it), or under EMIT ON WINDOW CLOSE the ORDER BY column itself
    /// when rows are final as the watermark passes them.
    pub fn watermark_output(&self, visible: usize) -> Option<usize> {
        if self.session_gap().is_some() {
            let end =
                self.calls.iter().position(|c| matches!(c.kind, WindowKind::Session { end: true, .. }))?;
            return Some(visible + end);
        }
        (self.emit_on_close && self.final_at_watermark())
            .then(|| self.output_column(visible, self.order_by[0].0))
    }

    /// Whether a partition keeps something of its freed rows (row numbers and ranks count
    /// them; a frame from UNBOUNDED PRECEDING summarizes them).
    pub fn keeps_summaries(&self) -> bool {
        self.calls.iter().any(|c| {
            matches!(c.kind, WindowKind::RowNumber | WindowKind::Rank | WindowKind::DenseRank)
                || c.reads_from_start()
        })
    }

    /// The output column of input column `column`, given the input's visible columns.
    pub fn output_column(&self, visible: usize, column: usize) -> usize {
        if column < visible { column } else { column + self.calls.len() }
    }

    /// EXPLAIN's text: partition, order and calls, named as in `input`.
    pub fn describe(&self, input: &StreamNode) -> String {
        let mut text = String::new();
        if !self.partition_by.is_empty() {
            let names: Vec<String> = self.partition_by.iter().map(|&i| input.column_name(i)).collect();
            text.push_str(&format!("partition by [{}] ", names.join(", ")));
        }
        let order: Vec<String> =
            self.order_by.iter().map(|(i, o)| super::agg::sort_key_text(&input.column_name(*i), o)).collect();
        let calls: Vec<&str> = self.calls.iter().map(|c| c.text.as_str()).collect();
        text.push_str(&format!("order by [{}]", order.join(", ")));
        if !calls.is_empty() {
            text.push_str(&format!(" calls [{}]", calls.join(", ")));
        }
        if self.emit_on_close {
            text.push_str(" emit on window close");
        }
        text
    }
}
