//! Hash aggregate: GROUP BY (and DISTINCT, and aggregates without GROUP BY) with
//! retractable state.
//!
//! Per group the group table holds the row count and the inline accumulators (counts,
//! sums, bool_and / bool_or counters). min, max, count(DISTINCT) and string_agg keep the
//! multiset of their non-NULL values in a value table keyed by (group, value) in sort order,
//! so that deleting the current extreme finds the next one by reading the group's first
//! entry (max encodes values descending).
//!
//! Inserts add to their group, deletes retract; an update pair is a retraction and an
//! addition. After each chunk every touched group emits its change: an insert when it
//! appears, a delete when its last row goes, an update pair when its values change. Without
//! GROUP BY there is always exactly one row, which shows count 0 and NULLs on empty input,
//! as in Postgres; it is emitted when the operator first runs. Barriers only seal state.

mod state;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, RecordBatchOptions, new_empty_array};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::ScalarValue;

use self::state::{GroupState, accumulate, inline_output, normalize_input};
use super::{Operator, OperatorContext};
use crate::common::Result;
use crate::common::row::RowCodec;
use crate::plan::{AggCall, AggKind, HashAggNode};
use crate::state::{Epoch, StateTable, TableId, WriteBatch, prefix_end};
use crate::stream::message::{Chunk, Op};

pub struct HashAggOperator {
    group_len: usize,
    calls: Vec<AggCall>,
    group_codec: Option<RowCodec>,
    groups: StateTable,
    /// One per call: the value multiset of value-keeping aggregates.
    values: Vec<Option<ValueSet>>,
    schema: SchemaRef,
    /// Without GROUP BY: whether the single output row is known to exist.
    global_row_checked: bool,
}

struct ValueSet {
    table: StateTable,
    /// Encodes (group columns..., value); the value descending for max.
    converter: RowConverter,
}

type Output = Vec<ScalarValue>;

impl HashAggOperator {
    /// `input_types` are the types of the input columns; `schema` the output schema.
    pub fn new(node: &HashAggNode, input_types: &[DataType], schema: SchemaRef) -> Result<Self> {
        let group_types = &input_types[..node.group_len];
        let group_codec = if node.group_len == 0 { None } else { Some(RowCodec::new(group_types)?) };
        let mut values = Vec::new();
        for call in &node.calls {
            values.push(match call.value_table {
                Some(table) => {
                    let mut fields: Vec<SortField> =
                        group_types.iter().map(|t| SortField::new(t.clone())).collect();
                    let descending = call.kind == AggKind::Max;
                    let options = SortOptions { descending, nulls_first: !descending };
                    fields.push(SortField::new_with_options(call.input_type.clone(), options));
                    Some(ValueSet { table: StateTable::new(table), converter: RowConverter::new(fields)? })
                }
                None => None,
            });
        }
        Ok(HashAggOperator {
            group_len: node.group_len,
            calls: node.calls.clone(),
            group_codec,
            groups: StateTable::new(node.group_table),
            values,
            schema,
            global_row_checked: false,
        })
    }

    fn is_global(&self) -> bool {
        self.group_len == 0
    }

    fn load(&self, ctx: &OperatorContext, key: &[u8]) -> Result<Option<GroupState>> {
        match self.groups.get(ctx.snapshot.as_ref(), key)? {
            Some(bytes) => Ok(Some(GroupState::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// The group's output values, or None when the group has no rows.
    fn output(
        &self,
        ctx: &OperatorContext,
        key: &[u8],
        state: Option<&GroupState>,
    ) -> Result<Option<Output>> {
        let Some(state) = state else { return Ok(None) };
        if state.rows <= 0 && !self.is_global() {
            return Ok(None);
        }
        let mut values = Vec::with_capacity(self.calls.len());
        for (i, call) in self.calls.iter().enumerate() {
            values.push(match (&call.kind, &self.values[i]) {
                (AggKind::Min | AggKind::Max, Some(set)) => set.first(ctx, key, self.group_len, call)?,
                (AggKind::StringAgg { delimiter }, Some(set)) => {
                    set.joined(ctx, key, self.group_len, delimiter, call)?
                }
                _ => inline_output(&state.accumulators[i], call, state.rows),
            });
        }
        Ok(Some(values))
    }

    /// Without GROUP BY the single row exists from the start (count 0, NULLs).
    fn ensure_global_row(&mut self, ctx: &OperatorContext, out: &mut Emitter) -> Result<()> {
        if !self.is_global() || self.global_row_checked {
            return Ok(());
        }
        self.global_row_checked = true;
        if self.load(ctx, &[])?.is_none() {
            let empty = GroupState::empty(&self.calls);
            let values = self.output(ctx, &[], Some(&empty))?.expect("the global row always exists");
            self.groups.put(Vec::new(), empty.encode());
            out.push(Op::Insert, Vec::new(), values);
        }
        Ok(())
    }

    fn group_keys(&self, data: &RecordBatch) -> Result<Vec<Vec<u8>>> {
        let columns: Vec<ArrayRef> = data.columns()[..self.group_len].to_vec();
        super::materialize::encode_keys(self.group_codec.as_ref(), &columns, data.num_rows())
    }

    /// Applies one row to the value multisets; count(DISTINCT) follows entries that appear
    /// or vanish.
    fn update_values(
        &mut self,
        state: &mut GroupState,
        encoded: &[Option<Rows>],
        inputs: &[Option<ArrayRef>],
        row: usize,
        sign: i64,
        ctx: &OperatorContext,
    ) -> Result<()> {
        for (i, set) in self.values.iter_mut().enumerate() {
            let (Some(set), Some(rows), Some(input)) = (set, &encoded[i], &inputs[i]) else { continue };
            if input.is_null(row) {
                continue;
            }
            let key = rows.row(row).data();
            let before = match set.table.get(ctx.snapshot.as_ref(), key)? {
                Some(bytes) => i64::from_le_bytes(bytes.as_slice().try_into().unwrap_or([0; 8])),
                None => 0,
            };
            let after = before + sign;
            if after > 0 {
                set.table.put(key.to_vec(), after.to_le_bytes().to_vec());
            } else {
                set.table.delete(key.to_vec());
            }
            if let (AggKind::CountDistinct, state::Accumulator::Count(n)) =
                (&self.calls[i].kind, &mut state.accumulators[i])
            {
                if before <= 0 && after > 0 {
                    *n += 1;
                } else if before > 0 && after <= 0 {
                    *n -= 1;
                }
            }
        }
        Ok(())
    }

    fn build(&self, out: Emitter) -> Result<Vec<Chunk>> {
        if out.ops.is_empty() {
            return Ok(Vec::new());
        }
        let mut columns: Vec<ArrayRef> = match &self.group_codec {
            Some(codec) => codec.decode(out.keys.iter().map(|k| k.as_slice()))?,
            None => Vec::new(),
        };
        for (i, call) in self.calls.iter().enumerate() {
            let column = out.values.iter().map(|v| v[i].clone());
            columns.push(if out.values.is_empty() {
                new_empty_array(&call.output_type)
            } else {
                ScalarValue::iter_to_array(column)?
            });
        }
        let options = RecordBatchOptions::new().with_row_count(Some(out.ops.len()));
        let data = RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)?;
        Ok(vec![Chunk::new(out.ops, data)])
    }
}

impl ValueSet {
    fn prefix_scan(
        &self,
        ctx: &OperatorContext,
        group: &[u8],
        visit: &mut dyn FnMut(&[u8], i64) -> bool,
    ) -> Result<()> {
        let end = prefix_end(group);
        self.table.scan_range(ctx.snapshot.as_ref(), group, end.as_deref(), &mut |key, value| {
            let count = i64::from_le_bytes(value.try_into().unwrap_or([0; 8]));
            Ok(visit(key, count))
        })?;
        Ok(())
    }

    fn decode_value(&self, keys: &[Vec<u8>], group_len: usize) -> Result<ArrayRef> {
        let parser = self.converter.parser();
        let rows: Vec<_> = keys.iter().map(|k| parser.parse(k)).collect();
        Ok(self.converter.convert_rows(rows)?.swap_remove(group_len))
    }

    /// min or max: the group's first value.
    fn first(
        &self,
        ctx: &OperatorContext,
        group: &[u8],
        group_len: usize,
        call: &AggCall,
    ) -> Result<ScalarValue> {
        let mut first = None;
        self.prefix_scan(ctx, group, &mut |key, _| {
            first = Some(key.to_vec());
            false
        })?;
        match first {
            Some(key) => {
                let array = self.decode_value(&[key], group_len)?;
                Ok(ScalarValue::try_from_array(&array, 0)?.cast_to(&call.output_type)?)
            }
            None => Ok(ScalarValue::try_from(&call.output_type)?),
        }
    }

    /// string_agg: every value (repeated by its count) in value order, joined.
    fn joined(
        &self,
        ctx: &OperatorContext,
        group: &[u8],
        group_len: usize,
        delimiter: &str,
        call: &AggCall,
    ) -> Result<ScalarValue> {
        let mut keys = Vec::new();
        let mut counts = Vec::new();
        self.prefix_scan(ctx, group, &mut |key, count| {
            keys.push(key.to_vec());
            counts.push(count);
            true
        })?;
        if keys.is_empty() {
            return Ok(ScalarValue::try_from(&call.output_type)?);
        }
        let values =
            datafusion::arrow::compute::cast(&self.decode_value(&keys, group_len)?, &DataType::Utf8)?;
        let values = values.as_string::<i32>();
        let mut parts = Vec::new();
        for (i, count) in counts.iter().enumerate() {
            for _ in 0..*count {
                parts.push(values.value(i));
            }
        }
        Ok(ScalarValue::Utf8(Some(parts.join(delimiter))).cast_to(&call.output_type)?)
    }
}

/// Output rows collected while processing a chunk.
#[derive(Default)]
struct Emitter {
    ops: Vec<Op>,
    keys: Vec<Vec<u8>>,
    values: Vec<Output>,
}

impl Emitter {
    fn push(&mut self, op: Op, key: Vec<u8>, values: Output) {
        self.ops.push(op);
        self.keys.push(key);
        self.values.push(values);
    }

    fn diff(&mut self, key: &[u8], old: Option<Output>, new: Option<Output>) {
        match (old, new) {
            (None, Some(new)) => self.push(Op::Insert, key.to_vec(), new),
            (Some(old), None) => self.push(Op::Delete, key.to_vec(), old),
            (Some(old), Some(new)) if old != new => {
                self.push(Op::UpdateDelete, key.to_vec(), old);
                self.push(Op::UpdateInsert, key.to_vec(), new);
            }
            _ => {}
        }
    }
}

impl Operator for HashAggOperator {
    fn name(&self) -> &'static str {
        "HashAgg"
    }

    fn state_tables(&self) -> Vec<TableId> {
        let values = self.values.iter().flatten().map(|v| v.table.table_id());
        std::iter::once(self.groups.table_id()).chain(values).collect()
    }

    fn on_chunk(&mut self, ctx: &OperatorContext, _input: usize, chunk: Chunk) -> Result<Vec<Chunk>> {
        let mut out = Emitter::default();
        self.ensure_global_row(ctx, &mut out)?;
        let keys = self.group_keys(&chunk.data)?;
        let inputs: Vec<Option<ArrayRef>> = self
            .calls
            .iter()
            .map(|c| c.input.map(|i| normalize_input(chunk.data.column(i))).transpose())
            .collect::<Result<_>>()?;
        let mut encoded = Vec::with_capacity(self.values.len());
        for (i, set) in self.values.iter().enumerate() {
            encoded.push(match (set, self.calls[i].input) {
                (Some(set), Some(column)) => {
                    let mut columns: Vec<ArrayRef> = chunk.data.columns()[..self.group_len].to_vec();
                    columns.push(chunk.data.column(column).clone());
                    Some(set.converter.convert_columns(&columns)?)
                }
                _ => None,
            });
        }
        for (key, rows) in super::rows_by_key(&keys) {
            let old_state = self.load(ctx, key)?;
            let old = self.output(ctx, key, old_state.as_ref())?;
            let mut state = old_state.unwrap_or_else(|| GroupState::empty(&self.calls));
            for &row in &rows {
                let sign = if Chunk::is_insert(chunk.ops[row]) { 1 } else { -1 };
                state.rows += sign;
                for (i, call) in self.calls.iter().enumerate() {
                    accumulate(&mut state.accumulators[i], &call.kind, inputs[i].as_ref(), row, sign);
                }
                self.update_values(&mut state, &encoded, &inputs, row, sign, ctx)?;
            }
            let new = self.output(ctx, key, Some(&state))?;
            if state.rows <= 0 && !self.is_global() {
                debug_assert_eq!(state.rows, 0, "a group retracted more rows than it had");
                self.groups.delete(key.to_vec());
            } else {
                self.groups.put(key.to_vec(), state.encode());
            }
            out.diff(key, old, new);
        }
        self.build(out)
    }

    fn on_barrier(&mut self, ctx: &OperatorContext, _epoch: Epoch) -> Result<Vec<Chunk>> {
        let mut out = Emitter::default();
        self.ensure_global_row(ctx, &mut out)?;
        self.build(out)
    }

    fn checkpoint(&mut self, batch: &mut WriteBatch) {
        self.groups.seal_into(batch);
        for set in self.values.iter_mut().flatten() {
            set.table.seal_into(batch);
        }
    }

    fn committed(&mut self) {
        self.groups.committed();
        for set in self.values.iter_mut().flatten() {
            set.table.committed();
        }
    }
}

#[cfg(test)]
mod tests;
