//! A select list's set-returning functions (DataFusion's Unnest node) → an Unnest: the
//! output columns as DataFusion orders them, the input's hidden columns repeated, and the
//! element's ordinal last; the stream key is the input's and the ordinal.

use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::Unnest;

use super::{StreamPlanner, fields_of, nullable_schema, unsupported};
use crate::common::Result;
use crate::plan::{NodeKind, StreamNode, UnnestColumn};

pub fn unnest(planner: &mut StreamPlanner<'_>, unnest: &Unnest) -> Result<StreamNode> {
    if !unnest.struct_type_columns.is_empty() {
        return Err(unsupported("unnest of a struct"));
    }
    if unnest.list_type_columns.iter().any(|(_, list)| list.depth != 1) {
        return Err(unsupported("a recursive unnest"));
    }
    let input = planner.convert(&unnest.input)?;
    let Some(input_key) = input.stream_key.clone() else {
        return Err(unsupported("unnest over an input without a key"));
    };
    let mut columns = Vec::with_capacity(unnest.schema.fields().len());
    let mut fields: Vec<(String, DataType)> = Vec::new();
    for (i, field) in unnest.schema.fields().iter().enumerate() {
        let from = unnest.dependency_indices[i];
        let element = unnest
            .list_type_columns
            .iter()
            .any(|(c, list)| *c == from && list.output_column.name == *field.name());
        columns.push(if element { UnnestColumn::Element(from) } else { UnnestColumn::Repeat(from) });
        fields.push((field.name().clone(), field.data_type().clone()));
    }
    let visible = columns.len();
    let input_fields = fields_of(&input.schema);
    for (j, field) in input_fields.iter().enumerate().skip(input.visible) {
        columns.push(UnnestColumn::Repeat(j));
        fields.push(field.clone());
    }
    // The input's key columns where the output repeats them, and the ordinal.
    let mut stream_key = Vec::with_capacity(input_key.len() + 1);
    for k in input_key {
        match columns.iter().position(|c| *c == UnnestColumn::Repeat(k)) {
            Some(at) => stream_key.push(at),
            None => {
                columns.push(UnnestColumn::Repeat(k));
                fields.push((format!("_key{}", fields.len()), input.schema.field(k).data_type().clone()));
                stream_key.push(columns.len() - 1);
            }
        }
    }
    fields.push(("_ordinal".into(), DataType::Int64));
    stream_key.push(fields.len() - 1);
    Ok(StreamNode {
        kind: NodeKind::Unnest { columns, null_handling: unnest.options.null_handling },
        schema: nullable_schema(fields),
        visible,
        stream_key: Some(stream_key),
        parallelism: input.parallelism,
        inputs: vec![input],
    })
}
