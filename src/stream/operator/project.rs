//! Project: evaluates one expression per output column.
//!
//! Stateless and row-for-row: every op (insert, delete, either half of an update pair)
//! keeps its op, so retractions meet the same values their inserts produced (expressions
//! are deterministic). Barriers pass through. A watermark on an input column becomes one
//! on each output column that is a monotone function of it (`ts - INTERVAL '1' MINUTE`,
//! `date_trunc('hour', ts)`), with that function applied to it.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions, new_null_array};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::physical_expr::PhysicalExpr;

use super::{Operator, OperatorContext, evaluate};
use crate::common::Result;
use crate::stream::message::{Chunk, Message};

pub struct ProjectOperator {
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
    /// The input schema and, per output column with a watermark, the input column it is a
    /// monotone function of (`plan::monotone_column`).
    watermarks: Option<(SchemaRef, Vec<(usize, usize)>)>,
}

impl ProjectOperator {
    pub fn new(exprs: Vec<Arc<dyn PhysicalExpr>>, schema: SchemaRef) -> Self {
        ProjectOperator { exprs, schema, watermarks: None }
    }

    /// Derives output watermarks for the output columns `marked` from the input's.
    pub fn with_watermarks(mut self, input_schema: SchemaRef, marked: &[usize]) -> Self {
        let derived: Vec<(usize, usize)> = marked
            .iter()
            .filter_map(|&i| crate::plan::monotone_column(&self.exprs[i]).map(|c| (i, c)))
            .collect();
        if !derived.is_empty() {
            self.watermarks = Some((input_schema, derived));
        }
        self
    }
}

impl Operator for ProjectOperator {
    fn name(&self) -> &'static str {
        "Project"
    }

    fn on_chunk(&mut self, ctx: &OperatorContext, _input: usize, chunk: Chunk) -> Result<Vec<Chunk>> {
        let columns: Vec<ArrayRef> =
            self.exprs.iter().map(|e| evaluate(e, &chunk.data, &ctx.view)).collect::<Result<_>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(chunk.len()));
        let data = RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)?;
        Ok(vec![Chunk::new(chunk.ops, data)])
    }

    /// An output column that is a monotone function of the input column gets the
    /// function of the watermark: evaluated over one row holding the watermark value.
    fn on_watermark(
        &mut self,
        ctx: &OperatorContext,
        _input: usize,
        column: usize,
        value: &ScalarValue,
    ) -> Result<Vec<Message>> {
        let Some((input_schema, derived)) = &self.watermarks else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for &(output, _) in derived.iter().filter(|(_, c)| *c == column) {
            let columns: Vec<ArrayRef> = input_schema
                .fields()
                .iter()
                .enumerate()
                .map(
                    |(i, f)| {
                        if i == column { value.to_array() } else { Ok(new_null_array(f.data_type(), 1)) }
                    },
                )
                .collect::<std::result::Result<_, _>>()?;
            let row = RecordBatch::try_new(input_schema.clone(), columns)?;
            let derived = evaluate(&self.exprs[output], &row, &ctx.view)?;
            let value = ScalarValue::try_from_array(&derived, 0)?;
            if !value.is_null() {
                out.push(Message::Watermark { column: output, value });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::Operator as BinaryOp;
    use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};

    use super::*;
    use crate::stream::operator::testing::{Harness, chunk, lines, pretty, schema, watermarks};

    #[test]
    fn failing_rows_become_null_and_ops_are_kept() {
        let input_schema = schema("k:int v:int");
        // 100 / v: division by zero makes that row's value NULL, the others are computed.
        let divide = Arc::new(BinaryExpr::new(
            Arc::new(Literal::new(ScalarValue::Int64(Some(100)))),
            BinaryOp::Divide,
            Arc::new(Column::new("v", 1)),
        ));
        let mut project =
            ProjectOperator::new(vec![Arc::new(Column::new("k", 0)), divide], schema("k:int q:int"));
        let harness = Harness::new();
        let out = project
            .on_chunk(
                &harness.ctx,
                0,
                chunk(
                    &input_schema,
                    "+ 1 5
                     U- 2 0
                     U+ 2 4
                     - 3 .",
                ),
            )
            .unwrap();
        assert_eq!(
            pretty(&out),
            lines(
                "+ 1 20
                 U- 2 .
                 U+ 2 25
                 - 3 ."
            )
        );
    }

    #[test]
    fn watermarks_follow_monotone_expressions() {
        let input_schema = schema("k:int v:int");
        let minus_ten = Arc::new(BinaryExpr::new(
            Arc::new(Column::new("v", 1)),
            BinaryOp::Minus,
            Arc::new(Literal::new(ScalarValue::Int64(Some(10)))),
        ));
        let times_two = Arc::new(BinaryExpr::new(
            Arc::new(Column::new("v", 1)),
            BinaryOp::Multiply,
            Arc::new(Literal::new(ScalarValue::Int64(Some(2)))),
        ));
        let exprs: Vec<Arc<dyn PhysicalExpr>> = vec![Arc::new(Column::new("v", 1)), minus_ten, times_two];
        let marked = [0, 1];
        let mut project = ProjectOperator::new(exprs, schema("v:int early:int double:int"))
            .with_watermarks(input_schema, &marked);
        let harness = Harness::new();
        let marks =
            watermarks(&project.on_watermark(&harness.ctx, 0, 1, &ScalarValue::Int64(Some(50))).unwrap());
        // v passes as it is, v - 10 is shifted; v * 2 is not in the plan's marked columns.
        assert_eq!(marks, vec![(0, ScalarValue::Int64(Some(50))), (1, ScalarValue::Int64(Some(40)))]);
        assert!(project.on_watermark(&harness.ctx, 0, 0, &ScalarValue::Int64(Some(1))).unwrap().is_empty());
    }
}
