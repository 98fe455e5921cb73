//! Hash aggregate: GROUP BY (and DISTINCT, and aggregates without GROUP BY) with
//! retractable state.
//!
//! Groups live in memory ([`CachedTable`]): a chunk's group keys are encoded at once
//! (Arrow's row format), each row finds its group with one hash lookup — a store read only
//! for a group the cache does not hold — and adds to typed accumulators in place. Per
//! group the state holds the row count and the inline accumulators (counts, sums,
//! bool_and / bool_or counters). min, max, count(DISTINCT) and string_agg keep the
//! multiset of their non-NULL values, stored in a value table keyed by (group, value) in
//! sort order and held in memory per group as an ordered map (loaded by one prefix scan,
//! cached like the groups), so that deleting the current extreme finds the next one as the
//! map's first entry (max encodes values descending). Over an append-only input min and
//! max need no multiset: the group keeps just its extreme, as (group, value) bytes.
//!
//! Inserts add to their group, deletes retract; an update pair is a retraction and an
//! addition. Changes are emitted per epoch, at the barrier: every group touched in the
//! epoch emits its change once — an insert when it appears, a delete when its last row goes, an update pair when
//! its values changed — however many rows touched it. Readers see views as of committed
//! epochs, so this loses no freshness and saves emitting every intermediate value. Without
//! GROUP BY there is always exactly one row, which shows count 0 and NULLs on empty input,
//! as in Postgres; it is emitted when the operator first runs.

mod closing;
pub mod partial;
mod state;
mod values;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Decimal128Array, Float64Array, Int64Array, RecordBatch, RecordBatchOptions,
    new_empty_array,
};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::ScalarValue;

use self::state::{
    GroupState, Input, Partial, Sum, accumulate, call_inputs, filter_mask, inline_output, merge,
};
use self::values::{ValueInputs, ValueSet, encode_entries, ordered_value_converter, value_outputs};
use super::late::Closing;
use super::{HeldWatermarks, Operator, OperatorContext};
use crate::common::Result;
use crate::common::row::RowCodec;
use crate::plan::{AggCall, AggKind, HashAggNode};
use crate::state::{CachedTable, Epoch, Slot, StateMemory, TableId, WriteBatch};
use crate::stream::message::{Chunk, Message, Op};

/// Rows whose groups are prefetched together before they are looked up: enough misses in
/// flight to overlap, few enough that their entries stay in the CPU cache until used.
const PREFETCH_ROWS: usize = 32;

pub struct HashAggOperator {
    group_len: usize,
    /// The input is partials (a PartialAgg's) to merge.
    merge: bool,
    calls: Vec<AggCall>,
    group_codec: Option<RowCodec>,
    groups: CachedTable<GroupState>,
    /// One per call: the value multiset of value-keeping aggregates.
    values: Vec<Option<ValueSet>>,
    /// One per call: for min / max kept inline (append-only input), the encoding of
    /// (group, value) that orders the extreme first.
    extremes: Vec<Option<RowConverter>>,
    schema: SchemaRef,
    /// The group that always shows a row: without GROUP BY the only one (key empty); with
    /// grouping sets the empty set's, when there is one.
    permanent: Option<Box<[u8]>>,
    /// Whether the permanent group is known to exist.
    global_row_checked: bool,
    /// The groups changed since the last emission (in the order they first changed) and
    /// the row each showed then.
    touched: Vec<(Slot, Option<Shown>)>,
    held_watermarks: HeldWatermarks,
    /// The group columns in the order they are encoded into the stored key (the closing
    /// column first, if there is one).
    key_order: Vec<usize>,
    /// Groups closed by a watermark (see `closing.rs`).
    closing: Option<Closing>,
}

/// A group's output row: its inline state and the values of its value-table aggregates
/// (in call order; empty when it has none).
struct Shown {
    state: GroupState,
    values: Vec<ScalarValue>,
}

impl HashAggOperator {
    /// `input_types` are the types of the input columns; `schema` the output schema.
    pub fn new(
        node: &HashAggNode,
        input_types: &[DataType],
        schema: SchemaRef,
        memory: StateMemory,
    ) -> Result<Self> {
        let group_types = &input_types[..node.group_len];
        let mut key_order: Vec<usize> = (0..node.group_len).collect();
        let closing = match node.closing_column {
            Some(column) => {
                key_order.retain(|&c| c != column);
                key_order.insert(0, column);
                Some(Closing::new(column, input_types[column].clone(), node.emit_on_close, node.group_table)?)
            }
            None if node.emit_on_close => {
                return Err(crate::common::Error::internal("EMIT ON WINDOW CLOSE without a closing column"));
            }
            None => None,
        };
        let key_types: Vec<DataType> = key_order.iter().map(|&c| group_types[c].clone()).collect();
        let group_codec = if node.group_len == 0 { None } else { Some(RowCodec::new(&key_types)?) };
        let mut values = Vec::new();
        let mut extremes = Vec::new();
        for call in &node.calls {
            values.push(match call.value_table {
                Some(table) => Some(ValueSet {
                    cache: CachedTable::new(table, memory.clone()),
                    converter: match call.kind {
                        AggKind::Min | AggKind::Max => extreme_converter(&[], call)?,
                        _ => ordered_value_converter(call, input_types)?,
                    },
                }),
                None => None,
            });
            let inline = call.value_table.is_none() && matches!(call.kind, AggKind::Min | AggKind::Max);
            extremes.push(if inline { Some(extreme_converter(group_types, call)?) } else { None });
        }
        let permanent = match node.empty_set_id {
            _ if node.group_len == 0 => Some(Box::default()),
            Some(id) => Some(empty_set_key(group_codec.as_ref(), &key_types, id)?),
            None => None,
        };
        Ok(HashAggOperator {
            group_len: node.group_len,
            merge: node.merge,
            calls: node.calls.clone(),
            group_codec,
            groups: CachedTable::new(node.group_table, memory),
            values,
            extremes,
            schema,
            permanent,
            global_row_checked: false,
            touched: Vec::new(),
            held_watermarks: HeldWatermarks::default(),
            key_order,
            closing,
        })
    }

    /// Whether `key` is the group that always shows a row ([`HashAggOperator::permanent`]).
    fn is_permanent(&self, key: &[u8]) -> bool {
        self.permanent.as_deref() == Some(key)
    }

    fn has_value_sets(&self) -> bool {
        self.values.iter().any(Option::is_some)
    }

    /// Whether groups show their changes as they happen (not only once, when they close).
    fn emits_changes(&self) -> bool {
        !self.closing.as_ref().is_some_and(|c| c.emit_on_close)
    }

    /// The stored keys of the groups of `chunk`'s rows (None without GROUP BY).
    fn group_keys(&self, chunk: &Chunk) -> Result<Option<Rows>> {
        let Some(codec) = &self.group_codec else { return Ok(None) };
        let columns: Vec<ArrayRef> = self.key_order.iter().map(|&c| chunk.data.column(c).clone()).collect();
        Ok(Some(codec.encode(&columns)?))
    }

    /// The group columns of stored keys, in group (output) order.
    fn decode_keys(&self, keys: &[&[u8]]) -> Result<Vec<ArrayRef>> {
        let Some(codec) = &self.group_codec else { return Ok(Vec::new()) };
        let decoded = codec.decode(keys.iter().copied())?;
        let mut columns = decoded.clone();
        for (position, &column) in self.key_order.iter().enumerate() {
            columns[column] = decoded[position].clone();
        }
        Ok(columns)
    }

    /// What the group in `slot` shows now, or None when it shows no row.
    fn shown(&mut self, ctx: &OperatorContext, slot: Slot) -> Result<Option<Shown>> {
        let Some(state) = self.groups.get(slot) else { return Ok(None) };
        if state.rows <= 0 && !self.is_permanent(self.groups.key(slot)) {
            return Ok(None);
        }
        let state = state.clone();
        let values = value_outputs(&self.calls, &mut self.values, ctx, self.groups.key(slot))?;
        Ok(Some(Shown { state, values }))
    }

    /// The slot of group `key`, remembering what it showed if this is its first change
    /// since the last emission.
    fn touch(&mut self, ctx: &OperatorContext, key: &[u8]) -> Result<Slot> {
        let slot = self.groups.slot(ctx.snapshot.as_ref(), key)?;
        if !self.groups.is_dirty(slot) {
            let shown = if self.emits_changes() { self.shown(ctx, slot)? } else { None };
            self.touched.push((slot, shown));
            self.groups.get_mut(slot);
        }
        Ok(slot)
    }

    /// Without GROUP BY the single row exists from the start (count 0, NULLs); so does the
    /// empty grouping set's.
    fn ensure_global_row(&mut self, ctx: &OperatorContext) -> Result<()> {
        if self.global_row_checked {
            return Ok(());
        }
        self.global_row_checked = true;
        let Some(key) = self.permanent.clone() else { return Ok(()) };
        let slot = self.touch(ctx, &key)?;
        let calls = &self.calls;
        self.groups.get_mut(slot).get_or_insert_with(|| GroupState::empty(calls));
        Ok(())
    }

    /// Emits the change of every group touched since the last emission; their new state
    /// is written when the epoch is sealed.
    fn emit(&mut self, ctx: &OperatorContext) -> Result<Vec<Chunk>> {
        let mut touched = std::mem::take(&mut self.touched);
        if !self.emits_changes() {
            // Groups show when they close; what changed is only written.
            self.drop_empty_groups(&touched);
            touched.clear();
            self.touched = touched;
            self.groups.flush();
            return Ok(Vec::new());
        }
        let mut now: Vec<Vec<ScalarValue>> = Vec::with_capacity(touched.len());
        if self.has_value_sets() {
            for (slot, _) in &touched {
                now.push(value_outputs(&self.calls, &mut self.values, ctx, self.groups.key(*slot))?);
            }
        }
        let chunk = {
            let mut ops = Vec::with_capacity(touched.len());
            let mut keys: Vec<&[u8]> = Vec::with_capacity(touched.len());
            let mut rows: Vec<(&GroupState, &[ScalarValue])> = Vec::with_capacity(touched.len());
            for (i, (slot, before)) in touched.iter().enumerate() {
                let old = before.as_ref().map(|s| (&s.state, s.values.as_slice()));
                let new = self
                    .groups
                    .get(*slot)
                    .filter(|state| state.rows > 0 || self.is_permanent(self.groups.key(*slot)))
                    .map(|state| (state, now.get(i).map_or(&[][..], |v| v.as_slice())));
                let key = self.groups.key(*slot);
                match (old, new) {
                    (None, Some(new)) => {
                        ops.push(Op::Insert);
                        keys.push(key);
                        rows.push(new);
                    }
                    (Some(old), None) => {
                        ops.push(Op::Delete);
                        keys.push(key);
                        rows.push(old);
                    }
                    (Some(old), Some(new)) if !self.same_output(old, new) => {
                        ops.extend([Op::UpdateDelete, Op::UpdateInsert]);
                        keys.extend([key, key]);
                        rows.extend([old, new]);
                    }
                    _ => {}
                }
            }
            self.build(ops, &keys, &rows)?
        };
        self.drop_empty_groups(&touched);
        self.groups.flush();
        Ok(chunk)
    }

    /// Deletes the touched groups that have no rows left.
    fn drop_empty_groups(&mut self, touched: &[(Slot, Option<Shown>)]) {
        if self.group_len == 0 {
            return;
        }
        for (slot, _) in touched {
            if self.is_permanent(self.groups.key(*slot)) {
                continue;
            }
            let value = self.groups.get_mut(*slot);
            if value.as_ref().is_some_and(|state| state.rows <= 0) {
                debug_assert_eq!(
                    value.as_ref().map(|s| s.rows),
                    Some(0),
                    "a group retracted more rows than it had"
                );
                *value = None;
            }
        }
    }

    /// Whether two states of a group show the same row.
    fn same_output(&self, a: (&GroupState, &[ScalarValue]), b: (&GroupState, &[ScalarValue])) -> bool {
        if a.1 != b.1 {
            return false;
        }
        self.calls.iter().enumerate().all(|(i, call)| {
            let (x, y) = (&a.0.accumulators[i], &b.0.accumulators[i]);
            match &call.kind {
                AggKind::CountRows => a.0.rows == b.0.rows,
                AggKind::Count | AggKind::CountDistinct => x == y,
                AggKind::Min | AggKind::Max if self.extremes[i].is_some() => x == y,
                AggKind::Sum => match (x, y) {
                    (
                        state::Accumulator::Sum { count: m, sum: s },
                        state::Accumulator::Sum { count: n, sum: t },
                    ) => (*m > 0) == (*n > 0) && (*m == 0 || s == t),
                    _ => x == y,
                },
                k if k.keeps_values() => true,
                _ => inline_output(x, call, a.0.rows) == inline_output(y, call, b.0.rows),
            }
        })
    }

    fn build(
        &self,
        ops: Vec<Op>,
        keys: &[&[u8]],
        rows: &[(&GroupState, &[ScalarValue])],
    ) -> Result<Vec<Chunk>> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let mut columns = self.decode_keys(keys)?;
        let mut value_index = 0;
        for (i, call) in self.calls.iter().enumerate() {
            let column = if self.values[i].is_some() && !call.inline_over_values() {
                let j = value_index;
                ScalarValue::iter_to_array(rows.iter().map(|(_, values)| values[j].clone()))?
            } else if let Some(converter) = &self.extremes[i] {
                extreme_column(converter, self.group_len, &call.output_type, i, rows)?
            } else {
                inline_column(call, i, rows)?
            };
            if self.values[i].is_some() {
                value_index += 1;
            }
            columns.push(column);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(ops.len()));
        let data = RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)?;
        Ok(vec![Chunk::new(ops, data)])
    }
}

/// The stored key of the empty grouping set's group: NULL in every group column but the
/// last, the grouping id `id`.
fn empty_set_key(codec: Option<&RowCodec>, key_types: &[DataType], id: u64) -> Result<Box<[u8]>> {
    let codec = codec.ok_or_else(|| crate::common::Error::internal("grouping sets without group columns"))?;
    let (id_type, nulls) = key_types.split_last().expect("a grouping id column");
    let mut columns: Vec<ArrayRef> =
        nulls.iter().map(|t| datafusion::arrow::array::new_null_array(t, 1)).collect();
    columns.push(ScalarValue::UInt64(Some(id)).cast_to(id_type)?.to_array()?);
    Ok(codec.encode(&columns)?.row(0).data().into())
}

/// Per call with a converter: the chunk's rows of (its first `group_len` columns, the
/// call's input), encoded.
fn value_rows<'a>(
    converters: impl Iterator<Item = Option<&'a RowConverter>>,
    calls: &[AggCall],
    chunk: &Chunk,
    group_len: usize,
) -> Result<Vec<Option<Rows>>> {
    converters
        .zip(calls)
        .map(|(converter, call)| match (converter, call.input) {
            (Some(converter), Some(column)) => {
                let mut columns: Vec<ArrayRef> = chunk.data.columns()[..group_len].to_vec();
                columns.push(chunk.data.column(column).clone());
                Ok(Some(converter.convert_columns(&columns)?))
            }
            _ => Ok(None),
        })
        .collect()
}

/// Makes row `row` the extreme of an inline min / max if it sorts before the current one
/// (`encoded`: the chunk's (group, value) rows; NULL values are not candidates).
fn offer_extreme(acc: &mut state::Accumulator, encoded: &Rows, values: &ArrayRef, row: usize) {
    let state::Accumulator::Extreme(current) = acc else { return };
    if values.is_null(row) {
        return;
    }
    let candidate = encoded.row(row).data();
    if current.as_deref().is_none_or(|best| candidate < best) {
        *current = Some(candidate.into());
    }
}

/// Encodes (group columns..., value), the value descending for max, so that a group's
/// first entry in this order is its extreme (with no group columns: just the value).
fn extreme_converter(group_types: &[DataType], call: &AggCall) -> Result<RowConverter> {
    let mut fields: Vec<SortField> = group_types.iter().map(|t| SortField::new(t.clone())).collect();
    let descending = call.kind == AggKind::Max;
    let options = SortOptions { descending, nulls_first: !descending };
    fields.push(SortField::new_with_options(call.input_type.clone(), options));
    Ok(RowConverter::new(fields)?)
}

/// The column of an inline min / max (call `i`) over `rows`, as `data_type`: the extremes'
/// (group, value) bytes decoded in one go, NULL where a group has no value yet.
fn extreme_column(
    converter: &RowConverter,
    group_len: usize,
    data_type: &DataType,
    i: usize,
    rows: &[(&GroupState, &[ScalarValue])],
) -> Result<ArrayRef> {
    use datafusion::arrow::array::UInt32Array;
    let parser = converter.parser();
    let mut present = Vec::new();
    let mut indices = Vec::with_capacity(rows.len());
    for (state, _) in rows {
        match &state.accumulators[i] {
            state::Accumulator::Extreme(Some(bytes)) => {
                indices.push(Some(present.len() as u32));
                present.push(parser.parse(bytes));
            }
            _ => indices.push(None),
        }
    }
    if present.is_empty() {
        return Ok(datafusion::arrow::array::new_null_array(data_type, rows.len()));
    }
    let values = converter.convert_rows(present)?.swap_remove(group_len);
    let values = datafusion::arrow::compute::take(values.as_ref(), &UInt32Array::from(indices), None)?;
    Ok(datafusion::arrow::compute::cast(&values, data_type)?)
}

/// The column of inline aggregate `i` over `rows`, built with typed arrays where the
/// output is a count or an exact sum.
fn inline_column(call: &AggCall, i: usize, rows: &[(&GroupState, &[ScalarValue])]) -> Result<ArrayRef> {
    use std::sync::Arc;
    let typed: Option<ArrayRef> = match (&call.kind, &call.output_type) {
        (AggKind::CountRows, DataType::Int64) => {
            Some(Arc::new(Int64Array::from_iter_values(rows.iter().map(|(s, _)| s.rows))))
        }
        (AggKind::Count | AggKind::CountDistinct, DataType::Int64) => {
            Some(Arc::new(Int64Array::from_iter_values(rows.iter().map(|(s, _)| match s.accumulators[i] {
                state::Accumulator::Count(n) => n,
                _ => 0,
            }))))
        }
        (AggKind::Sum, DataType::Int64) => {
            let mut overflow = false;
            let array = Int64Array::from_iter(rows.iter().map(|(s, _)| match s.accumulators[i] {
                state::Accumulator::Sum { count, sum: Sum::Exact(v) } if count > 0 => {
                    let value = i64::try_from(v).ok();
                    overflow |= value.is_none();
                    value
                }
                _ => None,
            }));
            if overflow {
                tracing::warn!(aggregate = ?call.kind, "aggregate result out of range for {}; NULL", call.output_type);
            }
            Some(Arc::new(array))
        }
        (AggKind::Sum, DataType::Decimal128(p, scale)) => {
            let array = Decimal128Array::from_iter(rows.iter().map(|(s, _)| match s.accumulators[i] {
                state::Accumulator::Sum { count, sum: Sum::Exact(v) } if count > 0 => Some(v),
                _ => None,
            }));
            Some(Arc::new(array.with_precision_and_scale(*p, *scale)?))
        }
        (AggKind::Sum, DataType::Float64) => {
            Some(Arc::new(Float64Array::from_iter(rows.iter().map(|(s, _)| match s.accumulators[i] {
                state::Accumulator::Sum { count, sum: Sum::Float(v) } if count > 0 => Some(v),
                _ => None,
            }))))
        }
        _ => None,
    };
    match typed {
        Some(array) => Ok(array),
        None if rows.is_empty() => Ok(new_empty_array(&call.output_type)),
        None => Ok(ScalarValue::iter_to_array(
            rows.iter().map(|(s, _)| inline_output(&s.accumulators[i], call, s.rows)),
        )?),
    }
}

impl Operator for HashAggOperator {
    fn name(&self) -> &'static str {
        "HashAgg"
    }

    fn state_tables(&self) -> Vec<TableId> {
        let values = self.values.iter().flatten().map(|v| v.cache.table_id());
        std::iter::once(self.groups.table_id()).chain(values).collect()
    }

    fn on_chunk(&mut self, ctx: &OperatorContext, _input: usize, chunk: Chunk) -> Result<Vec<Chunk>> {
        self.ensure_global_row(ctx)?;
        let chunk = match &mut self.closing {
            Some(closing) => closing.admit(ctx.snapshot.as_ref(), chunk)?,
            None => chunk,
        };
        if chunk.is_empty() {
            return Ok(Vec::new());
        }
        let keys = self.group_keys(&chunk)?;
        let inputs = call_inputs(&self.calls, &chunk)?;
        let encoded: Vec<Option<Rows>> = self
            .values
            .iter()
            .zip(&self.calls)
            .map(|(set, call)| match set {
                Some(set) => encode_entries(&set.converter, call, &chunk),
                None => Ok(None),
            })
            .collect::<Result<_>>()?;
        let filters = self.calls.iter().map(|call| filter_mask(call, &chunk)).collect();
        let extremes =
            value_rows(self.extremes.iter().map(Option::as_ref), &self.calls, &chunk, self.group_len)?;
        let has_extremes = extremes.iter().any(Option::is_some);
        let value_inputs = ValueInputs { encoded, inputs, filters };
        let typed: Vec<Input> = value_inputs.inputs.iter().map(|i| Input::of(i.as_ref())).collect();
        // Merging: each row is a partial with its row count, and each call's partial columns.
        let (partial_rows, partials) = if self.merge {
            let rows = chunk.data.column(self.group_len).as_primitive::<Int64Type>();
            let partials: Vec<Partial> =
                self.calls.iter().map(|call| Partial::of(call, chunk.data.columns())).collect();
            (Some(rows), partials)
        } else {
            (None, Vec::new())
        };
        let has_value_sets = self.has_value_sets();
        // First every row's group (lookups that do not depend on each other, so their
        // memory accesses overlap), then the accumulators.
        let mut slots = Vec::with_capacity(chunk.len());
        let key = |row: usize| keys.as_ref().map_or(&[][..], |k| k.row(row).data());
        for start in (0..chunk.len()).step_by(PREFETCH_ROWS) {
            let rows = start..(start + PREFETCH_ROWS).min(chunk.len());
            for row in rows.clone() {
                self.groups.prefetch(key(row));
            }
            for row in rows {
                slots.push(self.touch(ctx, key(row))?);
            }
        }
        for ((row, op), slot) in chunk.ops.iter().enumerate().zip(slots) {
            let calls = &self.calls;
            let state = self.groups.value_mut(slot).get_or_insert_with(|| GroupState::empty(calls));
            let sign = if Chunk::is_insert(*op) { 1 } else { -1 };
            match partial_rows {
                Some(rows) => {
                    state.rows += rows.value(row);
                    for (i, partial) in partials.iter().enumerate() {
                        merge(&mut state.accumulators[i], partial, row);
                    }
                }
                None => {
                    state.rows += sign;
                    // DISTINCT sums follow their value multisets instead.
                    for (i, call) in calls.iter().enumerate().filter(|(_, c)| !c.distinct) {
                        accumulate(&mut state.accumulators[i], &call.kind, &typed[i], row, sign);
                    }
                }
            }
            if has_value_sets {
                let group = keys.as_ref().map_or(&[][..], |k| k.row(row).data());
                value_inputs.apply(&mut self.values, calls, state, (group, row, sign), ctx)?;
            }
            if has_extremes {
                if sign < 0 {
                    return Err(crate::common::Error::internal(
                        "a retraction reached a min / max planned for an append-only input",
                    ));
                }
                for (i, extreme) in extremes.iter().enumerate() {
                    if let (Some(encoded), Some(values)) = (extreme, &value_inputs.inputs[i]) {
                        offer_extreme(&mut state.accumulators[i], encoded, values, row);
                    }
                }
            }
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
        if column < self.group_len {
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
        self.ensure_global_row(ctx)?;
        let mut chunks = self.emit(ctx)?;
        if self.closing.is_some() {
            chunks.extend(self.close(ctx)?);
            let reader = format!("{} {} #{}", self.name(), self.groups.table_id(), ctx.instance);
            let closing = self.closing.as_mut().expect("checked above");
            closing.report_late(&ctx.view, &reader, epoch)?;
        }
        Ok(chunks)
    }

    fn checkpoint(&mut self, batch: &mut WriteBatch) {
        self.groups.seal_into(batch);
        for set in self.values.iter_mut().flatten() {
            set.cache.seal_rows_into(batch);
        }
        if let Some(closing) = &mut self.closing {
            let value_tables: Vec<TableId> =
                self.values.iter().flatten().map(|v| v.cache.table_id()).collect();
            closing.checkpoint(batch, &value_tables);
        }
    }

    fn committed(&mut self) {
        self.groups.committed();
        // Groups whose changes are committed may go if the cache is over its budget.
        self.groups.evict_if_over_budget();
        for set in self.values.iter_mut().flatten() {
            set.cache.committed();
            set.cache.evict_if_over_budget();
        }
    }
}

#[cfg(test)]
mod tests;
