//! Project: evaluates one expression per output column.
//!
//! Stateless and row-for-row: every op (insert, delete, either half of an update pair)
//! keeps its op, so retractions meet the same values their inserts produced (expressions
//! are deterministic). Barriers pass through.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_expr::PhysicalExpr;

use super::{Operator, OperatorContext, evaluate};
use crate::common::Result;
use crate::stream::message::Chunk;

pub struct ProjectOperator {
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
}

impl ProjectOperator {
    pub fn new(exprs: Vec<Arc<dyn PhysicalExpr>>, schema: SchemaRef) -> Self {
        ProjectOperator { exprs, schema }
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
}

#[cfg(test)]
mod tests {
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::Operator as BinaryOp;
    use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};

    use super::*;
    use crate::stream::operator::testing::{Harness, chunk, lines, pretty, schema};

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
}
