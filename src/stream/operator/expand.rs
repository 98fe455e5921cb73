//! Expand: each input row once per grouping set (GROUPING SETS, ROLLUP, CUBE).
//!
//! Holds one projection per grouping set: the group columns of the set (the others NULL),
//! the set's grouping id, and the aggregate arguments. Stateless: every op is copied with
//! its row into each set's output, so an update pair stays a pair in each, and the hash
//! aggregate after it keeps every set's groups apart by the grouping id column. Barriers
//! pass through; watermarks stop here (a set without the column shows NULL in it).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_expr::PhysicalExpr;

use super::{Operator, OperatorContext, evaluate};
use crate::common::Result;
use crate::stream::message::Chunk;

pub struct ExpandOperator {
    sets: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    schema: SchemaRef,
}

impl ExpandOperator {
    pub fn new(sets: Vec<Vec<Arc<dyn PhysicalExpr>>>, schema: SchemaRef) -> Self {
        ExpandOperator { sets, schema }
    }
}

impl Operator for ExpandOperator {
    fn name(&self) -> &'static str {
        "Expand"
    }

    fn on_chunk(&mut self, ctx: &OperatorContext, _input: usize, chunk: Chunk) -> Result<Vec<Chunk>> {
        let options = RecordBatchOptions::new().with_row_count(Some(chunk.len()));
        let mut out = Vec::with_capacity(self.sets.len());
        for exprs in &self.sets {
            let columns: Vec<ArrayRef> =
                exprs.iter().map(|e| evaluate(e, &chunk.data, ctx)).collect::<Result<_>>()?;
            let data = RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)?;
            out.push(Chunk::new(chunk.ops.clone(), data));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::common::ScalarValue;
    use datafusion::physical_expr::expressions::{Column, Literal};

    use super::*;
    use crate::stream::operator::testing::{Harness, chunk, lines, pretty, schema};

    #[test]
    fn each_row_and_op_goes_to_every_set() {
        let input = schema("a:int b:int");
        let output = schema("a:int b:int id:int");
        let column = |i: usize| Arc::new(Column::new(["a", "b"][i], i)) as Arc<dyn PhysicalExpr>;
        let value = |v: Option<i64>| Arc::new(Literal::new(ScalarValue::Int64(v))) as Arc<dyn PhysicalExpr>;
        // GROUPING SETS ((a, b), (a), ()).
        let sets = vec![
            vec![column(0), column(1), value(Some(0))],
            vec![column(0), value(None), value(Some(1))],
            vec![value(None), value(None), value(Some(3))],
        ];
        let mut expand = ExpandOperator::new(sets, output.clone());
        let harness = Harness::new();
        let out = expand.on_chunk(&harness.ctx, 0, chunk(&input, "+ 1 2\nU- 3 4\nU+ 3 5")).unwrap();
        assert_eq!(
            pretty(&out),
            lines("+ 1 2 0\nU- 3 4 0\nU+ 3 5 0\n+ 1 . 1\nU- 3 . 1\nU+ 3 . 1\n+ . . 3\nU- . . 3\nU+ . . 3")
        );
    }
}
