//! The operator contract (STYLE rule 4) and the operators, one per file.
//!
//! An operator is driven by its actor (`stream::actor`): `on_chunk` for every change chunk
//! of an input, `on_barrier` once a barrier has arrived on every input, then `checkpoint`
//! to seal the epoch's state writes into the coordinator's batch. Operators read state
//! through [`OperatorContext::snapshot`], the last committed epoch; their `StateTable`s
//! layer the uncommitted writes on top. Stateless operators use the default hooks.

pub mod expand;
pub mod failures;
pub mod filter;
pub mod hash_agg;
pub mod hash_join;
pub mod late;
pub mod materialize;
pub mod over_window;
pub mod project;
pub mod temporal_filter;
pub mod top_n;
pub mod union;
pub mod unnest;
pub mod window_tvf;

#[cfg(test)]
pub mod testing;

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, new_null_array};
use datafusion::physical_expr::PhysicalExpr;

use datafusion::common::ScalarValue;

use super::message::{Chunk, Message};
use crate::common::Result;
use crate::state::{Epoch, Snapshot, TableId, WriteBatch};

pub struct OperatorContext {
    /// Everything committed up to the last epoch this operator sealed.
    pub snapshot: Arc<dyn Snapshot>,
    /// The view this operator maintains, for log messages and dead letters.
    pub view: Arc<str>,
    /// Which of the operator's parallel instances this is (0-based)...
    pub instance: usize,
    /// ... of how many (instances own the keys that hash to them; their state tables are
    /// shared).
    pub instances: usize,
    /// Rows whose expressions failed since the last barrier (see [`evaluate`]).
    pub failures: failures::ExpressionFailures,
}

pub trait Operator: Send {
    fn name(&self) -> &'static str;

    /// The state tables this operator writes.
    fn state_tables(&self) -> Vec<TableId> {
        Vec::new()
    }

    /// Maps one input chunk (from input `input`) to output chunks.
    fn on_chunk(&mut self, ctx: &OperatorContext, input: usize, chunk: Chunk) -> Result<Vec<Chunk>>;

    /// Input `input`'s watermark on `column` advanced to `value` (no later row of that
    /// input has a smaller value there). Returns what to pass on, in order: chunks (rows
    /// that became final) and this operator's output watermarks. The default passes
    /// nothing: an operator that does not derive a watermark ends it.
    fn on_watermark(
        &mut self,
        _ctx: &OperatorContext,
        _input: usize,
        _column: usize,
        _value: &ScalarValue,
    ) -> Result<Vec<Message>> {
        Ok(Vec::new())
    }

    /// Called when barrier `epoch` has arrived on every input, before it is passed on.
    fn on_barrier(&mut self, _ctx: &OperatorContext, _epoch: Epoch) -> Result<Vec<Chunk>> {
        Ok(Vec::new())
    }

    /// Watermarks to pass on after the barrier's output (operators that show their
    /// changes only at barriers hold their watermarks until then).
    fn watermarks_after_barrier(&mut self) -> Vec<Message> {
        Vec::new()
    }

    /// Seals the epoch's state writes into `batch`; they stay readable until `committed`.
    fn checkpoint(&mut self, _batch: &mut WriteBatch) {}

    /// Everything sealed so far is in the snapshot the next `OperatorContext` carries.
    fn committed(&mut self) {}
}

/// Watermarks an operator holds until its next barrier: an operator that shows its
/// changes only at barriers must not let a watermark overtake them.
#[derive(Default)]
pub struct HeldWatermarks {
    held: Vec<(usize, ScalarValue)>,
}

impl HeldWatermarks {
    /// Holds `value` for output column `column` (a later value replaces an earlier one).
    pub fn hold(&mut self, column: usize, value: &ScalarValue) {
        match self.held.iter_mut().find(|(c, _)| *c == column) {
            Some(held) => held.1 = value.clone(),
            None => self.held.push((column, value.clone())),
        }
    }

    pub fn release(&mut self) -> Vec<Message> {
        self.held.drain(..).map(|(column, value)| Message::Watermark { column, value }).collect()
    }
}

/// A chunk of input rows (encoded by `codec`) with `added` columns between the input's
/// first `visible` columns and its hidden ones: the output of operators that add columns
/// to the rows they keep (top-N's row number, an over window's calls).
pub fn rows_with_columns(
    schema: &datafusion::arrow::datatypes::SchemaRef,
    codec: &crate::common::row::RowCodec,
    visible: usize,
    ops: Vec<super::message::Op>,
    rows: &[Box<[u8]>],
    added: Vec<ArrayRef>,
) -> Result<Vec<Chunk>> {
    if ops.is_empty() {
        return Ok(Vec::new());
    }
    let decoded = codec.decode(rows.iter().map(|r| &**r))?;
    let mut columns: Vec<ArrayRef> = decoded[..visible].to_vec();
    columns.extend(added);
    columns.extend(decoded[visible..].iter().cloned());
    let options = datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(ops.len()));
    let data = RecordBatch::try_new_with_options(schema.clone(), columns, &options)?;
    Ok(vec![Chunk::new(ops, data)])
}

/// The changes of a chunk in emitting order — deletes, update pairs, inserts — as ops,
/// rows and a value per row: a row whose key changed leaves under its old key before it
/// comes back under the new one.
pub fn changes_in_order<R, V>(
    deletes: Vec<(R, V)>,
    updates: Vec<(R, V, R, V)>,
    inserts: Vec<(R, V)>,
) -> (Vec<super::message::Op>, Vec<R>, Vec<V>) {
    use super::message::Op;
    let n = deletes.len() + 2 * updates.len() + inserts.len();
    let (mut ops, mut rows, mut values) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for (row, value) in deletes {
        ops.push(Op::Delete);
        rows.push(row);
        values.push(value);
    }
    for (old_row, old, new_row, new) in updates {
        ops.extend([Op::UpdateDelete, Op::UpdateInsert]);
        rows.extend([old_row, new_row]);
        values.extend([old, new]);
    }
    for (row, value) in inserts {
        ops.push(Op::Insert);
        rows.push(row);
        values.push(value);
    }
    (ops, rows, values)
}

/// The rows of each distinct key, keys in order of first appearance.
pub fn rows_by_key(keys: &[Vec<u8>]) -> Vec<(&[u8], Vec<usize>)> {
    let mut index: std::collections::HashMap<&[u8], usize, foldhash::fast::FixedState> = Default::default();
    let mut groups: Vec<(&[u8], Vec<usize>)> = Vec::new();
    for (row, key) in keys.iter().enumerate() {
        let at = *index.entry(key.as_slice()).or_insert_with(|| {
            groups.push((key.as_slice(), Vec::new()));
            groups.len() - 1
        });
        groups[at].1.push(row);
    }
    groups
}

/// Evaluates `expr` over the rows of `batch`. When the batch fails as a whole (division by
/// zero, a failing cast), rows are evaluated one at a time and each failing row gets NULL
/// and is recorded in `ctx.failures` (a dead letter of the view at the barrier): a view
/// keeps following its inputs rather than stopping every write.
pub fn evaluate(
    expr: &Arc<dyn PhysicalExpr>,
    batch: &RecordBatch,
    ctx: &OperatorContext,
) -> Result<ArrayRef> {
    evaluate_in(expr, batch, &ctx.view, Some(&ctx.failures))
}

/// [`evaluate`] over values that are not a view's rows (watermarks, time bounds): failures
/// are NULL and logged, not kept.
pub fn evaluate_in(
    expr: &Arc<dyn PhysicalExpr>,
    batch: &RecordBatch,
    view: &str,
    failures: Option<&failures::ExpressionFailures>,
) -> Result<ArrayRef> {
    match expr.evaluate(batch).and_then(|v| v.into_array(batch.num_rows())) {
        Ok(array) => Ok(array),
        Err(batch_error) => {
            let data_type = expr.data_type(batch.schema().as_ref())?;
            let mut pieces = Vec::with_capacity(batch.num_rows());
            let mut failed = 0usize;
            for row in 0..batch.num_rows() {
                let one = batch.slice(row, 1);
                match expr.evaluate(&one).and_then(|v| v.into_array(1)) {
                    Ok(array) => pieces.push(array),
                    Err(error) => {
                        failed += 1;
                        if let Some(failures) = failures {
                            let error = crate::common::Error::from(error);
                            failures.record(batch, row, format!("{error} (in {expr})"));
                        }
                        pieces.push(new_null_array(&data_type, 1));
                    }
                }
            }
            if failures.is_none() {
                tracing::warn!(
                    view,
                    expression = %expr,
                    rows = failed,
                    error = %crate::common::Error::from(batch_error),
                    "expression failed while maintaining a view; the value is NULL for those rows"
                );
            }
            let refs: Vec<&dyn datafusion::arrow::array::Array> = pieces.iter().map(|a| a.as_ref()).collect();
            if refs.is_empty() {
                return Ok(new_null_array(&data_type, 0));
            }
            Ok(datafusion::arrow::compute::concat(&refs)?)
        }
    }
}

/// `expr` evaluated over one row of `schema` that holds `column`'s value (cast to the
/// column's type) and NULL elsewhere (None: NULL everywhere): a watermark carried
/// through the expression.
pub fn evaluate_one_row(
    expr: &Arc<dyn PhysicalExpr>,
    schema: &datafusion::arrow::datatypes::SchemaRef,
    column: Option<(usize, &ScalarValue)>,
    view: &str,
) -> Result<ScalarValue> {
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| match column {
            Some((c, value)) if c == i => value.cast_to(f.data_type())?.to_array(),
            _ => Ok(new_null_array(f.data_type(), 1)),
        })
        .collect::<std::result::Result<_, _>>()?;
    let options = datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(1));
    let row = RecordBatch::try_new_with_options(schema.clone(), columns, &options)?;
    Ok(ScalarValue::try_from_array(&evaluate_in(expr, &row, view, None)?, 0)?)
}
