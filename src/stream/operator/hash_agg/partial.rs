//! The first phase of a two-phase aggregate: each instance of the aggregate's input sums up
//! what its epoch adds to and retracts from each group — the row count and every call's
//! partial state — and emits one partial row per group at the barrier, for the HashAgg
//! after the exchange to merge. Memory holds one epoch's groups, and at most
//! [`PARTIAL_GROUPS_MAX`] of them: beyond that the partials are emitted early (merging is
//! order-free, so an epoch may send a group's partials in several rows).
//!
//! Under an aggregate that closes groups behind a watermark, rows behind the watermark
//! are late here already (see `closing.rs`): they never reach a partial.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Decimal128Array, Float64Array, Int64Array, RecordBatch, RecordBatchOptions,
};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::row::RowConverter;
use datafusion::common::ScalarValue;

use super::state::{Accumulator, GroupState, Input, Sum, accumulate, call_inputs};
use super::{extreme_column, extreme_converter, offer_extreme, value_rows};
use crate::common::row::RowCodec;
use crate::common::{Error, Result};
use crate::plan::{AggKind, PartialAggNode};
use crate::state::{Epoch, WriteBatch};
use crate::stream::message::{Chunk, Message, Op};
use crate::stream::operator::late::Closing;
use crate::stream::operator::{HeldWatermarks, Operator, OperatorContext};

/// Groups one instance holds before it emits its partials ahead of the barrier.
pub const PARTIAL_GROUPS_MAX: usize = 1 << 16;

pub struct PartialAggOperator {
    node: PartialAggNode,
    group_codec: Option<RowCodec>,
    /// Per call: the (group, value) encoding of an inline min / max.
    extremes: Vec<Option<RowConverter>>,
    groups: hashbrown::HashMap<Box<[u8]>, GroupState, foldhash::fast::FixedState>,
    schema: SchemaRef,
    held_watermarks: HeldWatermarks,
    closing: Option<Closing>,
}

impl PartialAggOperator {
    pub fn new(node: &PartialAggNode, input_types: &[DataType], schema: SchemaRef) -> Result<Self> {
        let group_types = &input_types[..node.group_len];
        let group_codec = if node.group_len == 0 { None } else { Some(RowCodec::new(group_types)?) };
        let extremes = node
            .calls
            .iter()
            .map(|call| match call.kind {
                AggKind::Min | AggKind::Max => Ok(Some(extreme_converter(group_types, call)?)),
                _ => Ok(None),
            })
            .collect::<Result<_>>()?;
        let closing = match node.closing_column {
            Some(column) => Some(Closing::new(column, input_types[column].clone(), false, node.group_table)?),
            None => None,
        };
        Ok(PartialAggOperator {
            closing,
            node: node.clone(),
            group_codec,
            extremes,
            groups: hashbrown::HashMap::with_hasher(foldhash::fast::FixedState::with_seed(0x5ab07)),
            schema,
            held_watermarks: HeldWatermarks::default(),
        })
    }

    /// One partial row per group held, and the groups dropped.
    fn emit(&mut self) -> Result<Vec<Chunk>> {
        if self.groups.is_empty() {
            return Ok(Vec::new());
        }
        let groups = std::mem::take(&mut self.groups);
        let (keys, states): (Vec<Box<[u8]>>, Vec<GroupState>) = groups.into_iter().unzip();
        let mut columns: Vec<ArrayRef> = match &self.group_codec {
            Some(codec) => codec.decode(keys.iter().map(|k| &**k))?,
            None => Vec::new(),
        };
        columns.push(Arc::new(Int64Array::from_iter_values(states.iter().map(|s| s.rows))));
        let rows: Vec<(&GroupState, &[datafusion::common::ScalarValue])> =
            states.iter().map(|s| (s, &[][..])).collect();
        for (i, call) in self.node.calls.iter().enumerate() {
            let accumulators = || states.iter().map(|s| &s.accumulators[i]);
            match (&call.kind, &self.extremes[i]) {
                (_, Some(converter)) => {
                    columns.push(extreme_column(converter, self.node.group_len, &call.input_type, i, &rows)?)
                }
                (AggKind::CountRows, _) => {}
                (AggKind::Count, _) => columns.push(Arc::new(Int64Array::from_iter_values(
                    accumulators().map(|a| if let Accumulator::Count(n) = a { *n } else { 0 }),
                ))),
                (AggKind::Sum | AggKind::Avg, _) => {
                    let counts = accumulators()
                        .map(|a| if let Accumulator::Sum { count, .. } = a { *count } else { 0 });
                    columns.push(Arc::new(Int64Array::from_iter_values(counts)));
                    let sum_type = call.partial_types().pop().expect("a sum column");
                    columns.push(match sum_type {
                        DataType::Float64 => {
                            Arc::new(Float64Array::from_iter_values(accumulators().map(|a| {
                                if let Accumulator::Sum { sum: Sum::Float(v), .. } = a { *v } else { 0.0 }
                            })))
                        }
                        DataType::Decimal128(p, s) => Arc::new(
                            Decimal128Array::from_iter_values(accumulators().map(|a| {
                                if let Accumulator::Sum { sum: Sum::Exact(v), .. } = a { *v } else { 0 }
                            }))
                            .with_precision_and_scale(p, s)?,
                        ),
                        other => return Err(Error::internal(format!("partial sum of type {other}"))),
                    });
                }
                (AggKind::BoolAnd | AggKind::BoolOr, _) => {
                    let (trues, falses): (Vec<i64>, Vec<i64>) = accumulators()
                        .map(|a| {
                            if let Accumulator::Bools { trues, falses } = a {
                                (*trues, *falses)
                            } else {
                                (0, 0)
                            }
                        })
                        .unzip();
                    columns.push(Arc::new(Int64Array::from(trues)));
                    columns.push(Arc::new(Int64Array::from(falses)));
                }
                (other, None) => return Err(Error::internal(format!("{other:?} has no partial state"))),
            }
        }
        let options = RecordBatchOptions::new().with_row_count(Some(states.len()));
        let data = RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)?;
        Ok(vec![Chunk::new(vec![Op::Insert; states.len()], data)])
    }
}

impl Operator for PartialAggOperator {
    fn name(&self) -> &'static str {
        "PartialAgg"
    }

    fn on_chunk(&mut self, ctx: &OperatorContext, _input: usize, chunk: Chunk) -> Result<Vec<Chunk>> {
        let chunk = match &mut self.closing {
            Some(closing) => closing.admit(ctx.snapshot.as_ref(), chunk)?,
            None => chunk,
        };
        let group_len = self.node.group_len;
        let keys = match &self.group_codec {
            Some(codec) => Some(codec.encode(&chunk.data.columns()[..group_len])?),
            None => None,
        };
        let inputs = call_inputs(&self.node.calls, &chunk)?;
        let typed: Vec<Input> = inputs.iter().map(|i| Input::of(i.as_ref())).collect();
        let extremes =
            value_rows(self.extremes.iter().map(Option::as_ref), &self.node.calls, &chunk, group_len)?;
        let calls = &self.node.calls;
        for (row, op) in chunk.ops.iter().enumerate() {
            let key = keys.as_ref().map_or(&[][..], |k| k.row(row).data());
            let state = match self.groups.get_mut(key) {
                Some(state) => state,
                None => self.groups.entry(key.into()).or_insert_with(|| GroupState::empty(calls)),
            };
            let sign = if Chunk::is_insert(*op) { 1 } else { -1 };
            state.rows += sign;
            for (i, call) in calls.iter().enumerate() {
                match (&extremes[i], &inputs[i]) {
                    (Some(encoded), Some(values)) => {
                        if sign < 0 {
                            return Err(Error::internal(
                                "a retraction reached a min / max planned for an append-only input",
                            ));
                        }
                        offer_extreme(&mut state.accumulators[i], encoded, values, row);
                    }
                    _ => accumulate(&mut state.accumulators[i], &call.kind, &typed[i], row, sign),
                }
            }
        }
        if self.groups.len() >= PARTIAL_GROUPS_MAX {
            return self.emit();
        }
        Ok(Vec::new())
    }

    /// A group key column's watermark passes, held until the barrier shows the epoch's
    /// changes (no later row of the output has an older key).
    fn on_watermark(
        &mut self,
        ctx: &OperatorContext,
        _input: usize,
        column: usize,
        value: &ScalarValue,
    ) -> Result<Vec<Message>> {
        if column < self.node.group_len {
            self.held_watermarks.hold(column, value);
        }
        if let Some(closing) = &mut self.closing {
            closing.watermark(ctx.snapshot.as_ref(), column, value)?;
        }
        Ok(Vec::new())
    }

    fn watermarks_after_barrier(&mut self) -> Vec<Message> {
        self.held_watermarks.release()
    }

    fn on_barrier(&mut self, ctx: &OperatorContext, epoch: Epoch) -> Result<Vec<Chunk>> {
        if let Some(closing) = &mut self.closing {
            let reader = format!("HashAgg {} partial #{}", self.node.group_table, ctx.instance);
            closing.report_late(&ctx.view, &reader, epoch)?;
        }
        self.emit()
    }

    fn checkpoint(&mut self, batch: &mut WriteBatch) {
        if let Some(closing) = &mut self.closing {
            closing.checkpoint(batch, &[]);
        }
    }
}
