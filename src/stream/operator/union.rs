//! Union (UNION ALL): merges its inputs.
//!
//! Stateless. Each input's rows pass with their op; the visible columns are kept and two
//! hidden columns make rows of different inputs distinct: the input's number and the
//! input's stream key, encoded. UNION (distinct) is a hash aggregate over this.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BinaryArray, Int32Array, RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::SchemaRef;

use super::{Operator, OperatorContext};
use crate::common::Result;
use crate::common::row::RowCodec;
use crate::stream::message::Chunk;

pub struct UnionInput {
    pub visible: usize,
    pub stream_key: Vec<usize>,
    pub key_codec: Option<RowCodec>,
}

pub struct UnionOperator {
    inputs: Vec<UnionInput>,
    schema: SchemaRef,
}

impl UnionOperator {
    pub fn new(inputs: Vec<UnionInput>, schema: SchemaRef) -> Self {
        UnionOperator { inputs, schema }
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
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::stream::operator::testing::{Harness, chunk, lines, pretty, schema};

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
}
