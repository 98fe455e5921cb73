//! Filter: passes the rows whose predicate is true (NULL and false drop the row).
//!
//! Stateless. Inserts and deletes pass or drop alike, so a retraction always meets the
//! decision its insert got. Watermarks pass unchanged. An update pair whose old half passes and new half does not
//! becomes a delete, and the reverse an insert. Barriers pass through.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::physical_expr::PhysicalExpr;

use super::{Operator, OperatorContext, evaluate};
use crate::common::{Error, Result};
use crate::stream::message::{Chunk, Message};

pub struct FilterOperator {
    predicate: Arc<dyn PhysicalExpr>,
}

impl FilterOperator {
    pub fn new(predicate: Arc<dyn PhysicalExpr>) -> Self {
        FilterOperator { predicate }
    }
}

impl Operator for FilterOperator {
    fn name(&self) -> &'static str {
        "Filter"
    }

    fn on_chunk(&mut self, ctx: &OperatorContext, _input: usize, chunk: Chunk) -> Result<Vec<Chunk>> {
        let mask = evaluate(&self.predicate, &chunk.data, ctx)?;
        if mask.data_type() != &DataType::Boolean {
            return Err(Error::internal(format!("filter predicate is {}, not boolean", mask.data_type())));
        }
        let out = chunk.filter_mask(mask.as_boolean())?;
        Ok(if out.is_empty() { Vec::new() } else { vec![out] })
    }

    /// Rows are only dropped: the watermark holds for what passes.
    fn on_watermark(
        &mut self,
        _ctx: &OperatorContext,
        _input: usize,
        column: usize,
        value: &ScalarValue,
    ) -> Result<Vec<Message>> {
        Ok(vec![Message::Watermark { column, value: value.clone() }])
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
    fn update_pairs_that_cross_the_predicate_split() {
        let schema = schema("k:int v:int");
        // v > 10
        let predicate = Arc::new(BinaryExpr::new(
            Arc::new(Column::new("v", 1)),
            BinaryOp::Gt,
            Arc::new(Literal::new(ScalarValue::Int64(Some(10)))),
        ));
        let mut filter = FilterOperator::new(predicate);
        let harness = Harness::new();
        let input = chunk(
            &schema,
            "+ 1 5
             + 2 20
             - 3 30
             + 4 .
             U- 5 5
             U+ 5 50
             U- 6 60
             U+ 6 6
             U- 7 70
             U+ 7 71",
        );
        let out = filter.on_chunk(&harness.ctx, 0, input).unwrap();
        assert_eq!(
            pretty(&out),
            lines(
                "+ 2 20
                 - 3 30
                 + 5 50
                 - 6 60
                 U- 7 70
                 U+ 7 71"
            )
        );
    }
}
