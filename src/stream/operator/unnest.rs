//! Unnest (a project-set): set-returning functions in a select list — `unnest(array)`,
//! `generate_series(...)` (planned as `unnest` of the series) — each input row becomes
//! one row per element, several lists in step (the shorter padded with NULLs, as
//! Postgres), the other columns repeated, and the element's ordinal as a hidden column
//! that joins the input's key.
//!
//! Stateless and deterministic: a row's deletion deletes exactly the rows its insertion
//! made. An update pair becomes a delete and an insert (its halves may make different
//! numbers of rows). A NULL or empty list makes rows as the plan's null handling says
//! (DataFusion's, so that views and queries agree). Barriers and watermarks pass through
//! only on repeated columns (the planner marks none).

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, RecordBatchOptions, UInt32Array,
};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::NullHandling;

use super::{Operator, OperatorContext};
use crate::common::Result;
use crate::plan::UnnestColumn;
use crate::stream::message::{Chunk, Op};

pub struct UnnestOperator {
    /// The output columns but the last (the ordinal).
    columns: Vec<UnnestColumn>,
    null_handling: NullHandling,
    schema: SchemaRef,
}

impl UnnestOperator {
    pub fn new(columns: Vec<UnnestColumn>, null_handling: NullHandling, schema: SchemaRef) -> Self {
        UnnestOperator { columns, null_handling, schema }
    }

    /// How many rows row `row` makes, given its lists.
    fn length(&self, lists: &[&datafusion::arrow::array::ListArray], row: usize) -> usize {
        lists
            .iter()
            .map(|list| match (list.is_null(row), list.value_length(row)) {
                (true, _) => usize::from(self.null_handling != NullHandling::Drop),
                (false, 0) => usize::from(self.null_handling == NullHandling::PreserveAndExpandEmpty),
                (false, n) => n as usize,
            })
            .max()
            .unwrap_or(1)
    }
}

impl Operator for UnnestOperator {
    fn name(&self) -> &'static str {
        "Unnest"
    }

    fn on_chunk(&mut self, _ctx: &OperatorContext, _input: usize, chunk: Chunk) -> Result<Vec<Chunk>> {
        let lists: Vec<ArrayRef> = self
            .columns
            .iter()
            .filter_map(|c| match c {
                UnnestColumn::Element(i) => Some(list_of(chunk.data.column(*i))),
                UnnestColumn::Repeat(_) => None,
            })
            .collect::<Result<_>>()?;
        let typed: Vec<&datafusion::arrow::array::ListArray> =
            lists.iter().map(|l| l.as_list::<i32>()).collect();
        let (mut rows, mut ordinals, mut ops) = (Vec::new(), Vec::new(), Vec::new());
        for row in 0..chunk.len() {
            let op = if Chunk::is_insert(chunk.ops[row]) { Op::Insert } else { Op::Delete };
            for ordinal in 0..self.length(&typed, row) {
                rows.push(row as u32);
                ordinals.push(ordinal as i64);
                ops.push(op);
            }
        }
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let repeat = UInt32Array::from(rows.clone());
        let mut next_list = 0;
        let mut columns = Vec::with_capacity(self.columns.len() + 1);
        for column in &self.columns {
            columns.push(match column {
                UnnestColumn::Repeat(i) => take(chunk.data.column(*i).as_ref(), &repeat, None)?,
                UnnestColumn::Element(_) => {
                    let list = typed[next_list];
                    next_list += 1;
                    let elements: UInt32Array = rows
                        .iter()
                        .zip(&ordinals)
                        .map(|(&row, &ordinal)| {
                            let row = row as usize;
                            let present =
                                !list.is_null(row) && (ordinal as usize) < list.value_length(row) as usize;
                            present.then(|| list.value_offsets()[row] as u32 + ordinal as u32)
                        })
                        .collect();
                    take(list.values().as_ref(), &elements, None)?
                }
            });
        }
        columns.push(Arc::new(Int64Array::from(ordinals)));
        let options = RecordBatchOptions::new().with_row_count(Some(ops.len()));
        let data = RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)?;
        Ok(vec![Chunk::new(ops, data)])
    }
}

/// A list column as a `List` (large and fixed-size lists cast).
fn list_of(array: &ArrayRef) -> Result<ArrayRef> {
    use datafusion::arrow::datatypes::DataType;
    Ok(match array.data_type() {
        DataType::List(_) => array.clone(),
        DataType::LargeList(field) | DataType::FixedSizeList(field, _) => {
            datafusion::arrow::compute::cast(array, &DataType::List(field.clone()))?
        }
        other => return Err(crate::common::Error::internal(format!("unnest of a {other}"))),
    })
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int32Array, ListArray};
    use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Schema};

    use super::*;
    use crate::stream::operator::testing::{Harness, lines, pretty};

    #[test]
    fn rows_per_element_in_step_and_retracted_alike() {
        let list = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(1), Some(2)]),
            None,
            Some(vec![]),
            Some(vec![Some(7)]),
        ]);
        let other = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(5)]),
            Some(vec![Some(6), Some(8)]),
            None,
            Some(vec![Some(9)]),
        ]);
        let item = Arc::new(Field::new_list_field(DataType::Int32, true));
        let input = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int32, false),
            Field::new("l", DataType::List(item.clone()), true),
            Field::new("m", DataType::List(item), true),
        ]));
        let data = RecordBatch::try_new(
            input,
            vec![Arc::new(Int32Array::from(vec![1, 2, 3, 4])), Arc::new(list), Arc::new(other)],
        )
        .unwrap();
        let output = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int32, true),
            Field::new("l", DataType::Int32, true),
            Field::new("m", DataType::Int32, true),
            Field::new("_ordinal", DataType::Int64, true),
        ]));
        let columns = vec![UnnestColumn::Repeat(0), UnnestColumn::Element(1), UnnestColumn::Element(2)];
        let mut unnest = UnnestOperator::new(columns, NullHandling::Drop, output);
        let harness = Harness::new();
        // Row 3 makes no row (an empty list and NULL, dropped): its update half vanishes.
        let ops = vec![Op::Insert, Op::Delete, Op::UpdateDelete, Op::UpdateInsert];
        let out = unnest.on_chunk(&harness.ctx, 0, Chunk::new(ops, data)).unwrap();
        assert_eq!(pretty(&out), lines("+ 1 1 5 0\n+ 1 2 . 1\n- 2 . 6 0\n- 2 . 8 1\n+ 4 7 9 0"));
    }
}
