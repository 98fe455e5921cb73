//! WindowTvf: the window table functions TUMBLE, HOP and CUMULATE in a view.
//!
//! Stateless. Each input row is copied once per window its time value falls into
//! (`common::window`), with `window_start` and `window_end` inserted after the input's
//! visible columns; a row whose time is NULL falls into no window. An insert or delete
//! gives inserts or deletes of the same windows, so a retraction meets exactly the rows
//! its insert produced. An update pair becomes a delete and an insert: the old and new
//! time may lie in different windows, so the halves need not share a key. Barriers pass
//! through; a watermark on the time column also becomes one on `window_start` and
//! `window_end`.

use datafusion::arrow::array::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;

use super::{Operator, OperatorContext};
use crate::common::Result;
use crate::common::window::{WindowSpec, windowed_columns};
use crate::stream::message::{Chunk, Message, Op};

pub struct WindowTvfOperator {
    spec: WindowSpec,
    /// Where `window_start` and `window_end` go: after the input's visible columns.
    at: usize,
    schema: SchemaRef,
}

impl WindowTvfOperator {
    pub fn new(spec: WindowSpec, input_visible: usize, schema: SchemaRef) -> Self {
        WindowTvfOperator { spec, at: input_visible, schema }
    }
}

impl Operator for WindowTvfOperator {
    fn name(&self) -> &'static str {
        "WindowTvf"
    }

    fn on_chunk(&mut self, _ctx: &OperatorContext, _input: usize, chunk: Chunk) -> Result<Vec<Chunk>> {
        let assignment = self.spec.assign(chunk.data.column(self.spec.time_column).as_ref())?;
        if assignment.rows.is_empty() {
            return Ok(Vec::new());
        }
        let ops: Vec<Op> = if chunk.ops.iter().all(|op| *op == Op::Insert) {
            vec![Op::Insert; assignment.rows.len()]
        } else {
            assignment
                .rows
                .values()
                .iter()
                .map(|&row| if Chunk::is_insert(chunk.ops[row as usize]) { Op::Insert } else { Op::Delete })
                .collect()
        };
        let columns = windowed_columns(chunk.data.columns(), &assignment, self.at)?;
        let options = RecordBatchOptions::new().with_row_count(Some(ops.len()));
        let data = RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)?;
        Ok(vec![Chunk::new(ops, data)])
    }

    /// A watermark passes to the same column (hidden columns move by two); on the time
    /// column it also bounds the windows of every later row: none starts before the
    /// first window of the watermark itself, nor ends before that window's end.
    fn on_watermark(
        &mut self,
        _ctx: &OperatorContext,
        _input: usize,
        column: usize,
        value: &ScalarValue,
    ) -> Result<Vec<Message>> {
        let moved = if column < self.at { column } else { column + 2 };
        let mut out = vec![Message::Watermark { column: moved, value: value.clone() }];
        if column == self.spec.time_column {
            // A row's windows come by ascending start, then end: the first is the earliest.
            let windows = self.spec.assign(value.to_array()?.as_ref())?;
            if !windows.rows.is_empty() {
                let start = ScalarValue::try_from_array(&windows.starts, 0)?;
                let end = ScalarValue::try_from_array(&windows.ends, 0)?;
                out.push(Message::Watermark { column: self.at, value: start });
                out.push(Message::Watermark { column: self.at + 1, value: end });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, TimeUnit};

    use super::*;
    use crate::common::window::WindowKind;
    use crate::stream::operator::testing::{Harness, chunk, lines, pretty, schema, watermarks};

    const SECOND: i64 = 1_000_000_000;

    fn operator(kind: WindowKind, seconds: &[i64]) -> WindowTvfOperator {
        let nanos: Vec<i64> = seconds.iter().map(|s| s * SECOND).collect();
        let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
        let spec = WindowSpec::new(kind, 1, &ts, &nanos).unwrap();
        // Input: k, ts visible, row id hidden.
        WindowTvfOperator::new(spec, 2, schema("k:int ts:timestamp ws:timestamp we:timestamp id:int"))
    }

    #[test]
    fn hop_copies_each_change_into_every_window() {
        let input = schema("k:int ts:timestamp id:int");
        let mut hop = operator(WindowKind::Hop, &[5, 10]);
        let harness = Harness::new();
        let out = hop
            .on_chunk(
                &harness.ctx,
                0,
                chunk(
                    &input,
                    "+ 1 2026-01-01T00:00:07 1
                     + 2 . 2
                     U- 3 2026-01-01T00:00:01 3
                     U+ 3 2026-01-01T00:00:12 3",
                ),
            )
            .unwrap();
        assert_eq!(
            pretty(&out),
            lines(
                "+ 1 2026-01-01T00:00:07 2026-01-01T00:00:00 2026-01-01T00:00:10 1
                 + 1 2026-01-01T00:00:07 2026-01-01T00:00:05 2026-01-01T00:00:15 1
                 - 3 2026-01-01T00:00:01 2025-12-31T23:59:55 2026-01-01T00:00:05 3
                 - 3 2026-01-01T00:00:01 2026-01-01T00:00:00 2026-01-01T00:00:10 3
                 + 3 2026-01-01T00:00:12 2026-01-01T00:00:05 2026-01-01T00:00:15 3
                 + 3 2026-01-01T00:00:12 2026-01-01T00:00:10 2026-01-01T00:00:20 3"
            )
        );
    }

    #[test]
    fn a_time_watermark_bounds_the_windows() {
        let mut hop = operator(WindowKind::Hop, &[5, 10]);
        let harness = Harness::new();
        let at = |seconds: i64| ScalarValue::TimestampMicrosecond(Some(seconds * 1_000_000), None);
        let marks = watermarks(&hop.on_watermark(&harness.ctx, 0, 1, &at(12)).unwrap());
        // Rows at 12 s or later are in windows starting at 5 s or later, ending at 15 s or later.
        assert_eq!(marks, vec![(1, at(12)), (2, at(5)), (3, at(15))]);
        // A watermark on a hidden column moves past the window columns.
        let out = hop.on_watermark(&harness.ctx, 0, 2, &ScalarValue::Int64(Some(9))).unwrap();
        assert!(matches!(&out[..], [Message::Watermark { column: 4, .. }]), "{out:?}");
    }

    #[test]
    fn tumble_keeps_one_row_per_change() {
        let input = schema("k:int ts:timestamp id:int");
        let mut tumble = operator(WindowKind::Tumble, &[60]);
        let harness = Harness::new();
        let out = tumble
            .on_chunk(&harness.ctx, 0, chunk(&input, "+ 1 2026-01-01T00:01:30 1\n- 2 2026-01-01T00:00:59 2"))
            .unwrap();
        assert_eq!(
            pretty(&out),
            lines(
                "+ 1 2026-01-01T00:01:30 2026-01-01T00:01:00 2026-01-01T00:02:00 1
                 - 2 2026-01-01T00:00:59 2026-01-01T00:00:00 2026-01-01T00:01:00 2"
            )
        );
    }
}
