//! Union (UNION ALL): merges its inputs.
//!
//! Stateless. Each input's rows pass with their op; the visible columns are kept and two
//! hidden columns make rows of different inputs distinct: the input's number and the
//! input's stream key, encoded. UNION (distinct) is a hash aggregate over this. A visible
//! column's watermark is the minimum of the inputs' watermarks on it.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BinaryArray, Int32Array, RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;

use super::{Operator, OperatorContext};
use crate::common::Result;
use crate::common::row::RowCodec;
use crate::stream::message::{Chunk, Message};
use crate::stream::watermark::WatermarkMinimum;

pub struct UnionInput {
    pub visible: usize,
    pub stream_key: Vec<usize>,
    pub key_codec: Option<RowCodec>,
}

pub struct UnionOperator {
    inputs: Vec<UnionInput>,
    schema: SchemaRef,
    /// The minimum of the inputs' watermarks on each visible column.
    watermarks: WatermarkMinimum,
}

impl UnionOperator {
    pub fn new(inputs: Vec<UnionInput>, schema: SchemaRef) -> Self {
        let watermarks = WatermarkMinimum::new(inputs.len());
        UnionOperator { inputs, schema, watermarks }
    }
}

impl Operator for UnionOperator {
    fn name(&self) -> &'static str {
        "Union"
    }

    fn on_chunk(&mut self, _ctx: &OperatorContext, input: usize, chunk: Chunk) -> Result<Vec<Chunk>> {
        let spec = &self.inputs[input];
        let rows = chunk.len();
        let mut columns: Vec<ArrayRef> = chunk.data.columns()[..spec.visible].to_vec();
        columns.push(Arc::new(Int32Array::from(vec![input as i32; rows])));
        let key_columns: Vec<ArrayRef> =
            spec.stream_key.iter().map(|&i| chunk.data.column(i).clone()).collect();
        let keys = super::materialize::encode_keys(spec.key_codec.as_ref(), &key_columns, rows)?;
        columns.push(Arc::new(BinaryArray::from_iter_values(keys.iter())));
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        let data = RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)?;
        Ok(vec![Chunk::new(chunk.ops, data)])
    }

    /// A visible column's watermark is the minimum over the inputs, once each has one.
    fn on_watermark(
        &mut self,
        _ctx: &OperatorContext,
        input: usize,
        column: usize,
        value: &ScalarValue,
    ) -> Result<Vec<Message>> {
        if column >= self.inputs[input].visible {
            return Ok(Vec::new());
        }
        let Some(minimum) = self.watermarks.advance(input, column, value.clone()) else {
            return Ok(Vec::new());
        };
        Ok(vec![Message::Watermark { column, value: minimum }])
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::stream::operator::testing::{Harness, chunk, lines, pretty, schema, watermarks};

    #[test]
    fn rows_of_each_input_stay_distinct() {
        let input = |key: Vec<usize>| UnionInput {
            visible: 1,
            key_codec: Some(RowCodec::new(&vec![DataType::Int64; key.len()]).unwrap()),
            stream_key: key,
        };
        let out_schema = Arc::new(Schema::new(vec![
            Field::new("v", DataType::Int64, true),
            Field::new("_branch", DataType::Int32, false),
            Field::new("_key", DataType::Binary, false),
        ]));
        let mut union = UnionOperator::new(vec![input(vec![1]), input(vec![1])], out_schema);
        let h = Harness::new();
        let s = schema("v:int id:int");
        let a = union.on_chunk(&h.ctx, 0, chunk(&s, "+ 5 1")).unwrap();
        let b = union.on_chunk(&h.ctx, 1, chunk(&s, "U- 5 1\nU+ 6 1")).unwrap();
        let text = pretty(&[a[0].clone(), b[0].clone()]);
        assert_eq!(
            text,
            lines(
                "+ 5 0 018000000000000001
                 U- 5 1 018000000000000001
                 U+ 6 1 018000000000000001"
            )
        );
    }

    #[test]
    fn a_visible_column_watermark_is_the_minimum_over_inputs() {
        let input = UnionInput { visible: 2, stream_key: vec![], key_codec: None };
        let other = UnionInput { visible: 2, stream_key: vec![], key_codec: None };
        let mut union = UnionOperator::new(vec![input, other], schema("k:int v:int"));
        let harness = Harness::new();
        let mark = |v: i64| ScalarValue::Int64(Some(v));
        let mut on = |input: usize, column: usize, v: i64| -> Vec<String> {
            let out = union.on_watermark(&harness.ctx, input, column, &mark(v)).unwrap();
            watermarks(&out).iter().map(|(column, value)| format!("{column}:{value}")).collect()
        };
        assert!(on(0, 1, 10).is_empty(), "input 1 has none yet");
        assert_eq!(on(1, 1, 7), vec!["1:7"]);
        assert_eq!(on(1, 1, 12), vec!["1:10"]);
        assert_eq!(on(0, 1, 20), vec!["1:12"]);
        assert!(on(0, 2, 5).is_empty(), "hidden columns carry none");
    }
}
