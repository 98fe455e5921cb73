//! Array functions as Postgres computes them where DataFusion differs (plan revision 13):
//! `array_length(array, dim)` is an `integer`, NULL for an empty array (Postgres has no
//! dimensions for one); DataFusion's gave the unsigned 0. `array_remove(array, x)` removes
//! every element equal to `x`; DataFusion's removed the first only (a silent difference).
//! `array_dims(array)` is Postgres' text `[1:3]`; DataFusion's was a list of lengths.
//! Views of older plan revisions keep DataFusion's functions.

use std::fmt::Write;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Int32Array};
use datafusion::arrow::datatypes::{DataType, Field, UInt64Type};
use datafusion::common::Result as DfResult;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature};

pub fn register(ctx: &SessionContext) {
    use datafusion::functions_nested::{length, remove};
    ctx.register_udf(ScalarUDF::new_from_impl(ArrayLength { inner: length::array_length_udf() }));
    let remove_all = remove::array_remove_all_udf();
    ctx.register_udf(remove_all.as_ref().clone().with_aliases(["array_remove", "list_remove_all"]));
    ctx.register_udf(ScalarUDF::new_from_impl(ArrayDims {
        signature: Signature::array(datafusion::logical_expr::Volatility::Immutable),
    }));
}

/// DataFusion's functions of these names, for views of plan revision 12 and older.
pub fn datafusion_functions() -> [Arc<ScalarUDF>; 3] {
    use datafusion::functions_nested::{dimension, length, remove};
    [length::array_length_udf(), remove::array_remove_udf(), dimension::array_dims_udf()]
}

/// DataFusion's `array_length` (which takes the same arguments), its 0 as NULL and its
/// result an `integer`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ArrayLength {
    inner: Arc<ScalarUDF>,
}

impl ScalarUDFImpl for ArrayLength {
    fn name(&self) -> &str {
        "array_length"
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Int32)
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        args.return_field = Arc::new(Field::new(self.name(), DataType::UInt64, true));
        let lengths = self.inner.invoke_with_args(args)?.into_array(rows)?;
        let lengths = lengths.as_primitive::<UInt64Type>();
        let lengths: Int32Array =
            lengths.iter().map(|n| n.filter(|&n| n > 0).and_then(|n| i32::try_from(n).ok())).collect();
        Ok(ColumnarValue::Array(Arc::new(lengths)))
    }
}

/// `array_dims(array)`: `[1:n]` for each dimension (a list of lists is read through its
/// first element), NULL for an empty or NULL array.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ArrayDims {
    signature: Signature,
}

impl ScalarUDFImpl for ArrayDims {
    fn name(&self) -> &str {
        "array_dims"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let lists = datafusion::arrow::compute::cast(
            &arrays[0],
            &DataType::List(Arc::new(Field::new_list_field(list_item_type(arrays[0].data_type()), true))),
        )?;
        let mut dims = datafusion::arrow::array::StringBuilder::new();
        let mut text = String::new();
        for row in 0..lists.len() {
            text.clear();
            let (mut array, mut at) = (lists.clone(), row);
            while let Some(list) = array.as_list_opt::<i32>() {
                if list.is_null(at) || list.value_length(at) == 0 {
                    break;
                }
                let _ = write!(text, "[1:{}]", list.value_length(at));
                (array, at) = (list.values().clone(), list.value_offsets()[at] as usize);
            }
            dims.append_option((!text.is_empty()).then_some(text.as_str()));
        }
        Ok(ColumnarValue::Array(Arc::new(dims.finish())))
    }
}

fn list_item_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => f.data_type().clone(),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_empty_array_has_no_length() {
        let ctx = SessionContext::new();
        register(&ctx);
        let batches = ctx
            .sql(
                "SELECT array_length(make_array(1, 2), 1), array_length(make_array(), 1), \
                 array_length(make_array(1), 2)",
            )
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let row: Vec<Option<i32>> = batches[0]
            .columns()
            .iter()
            .map(|c| c.as_primitive::<datafusion::arrow::datatypes::Int32Type>().iter().next().flatten())
            .collect();
        assert_eq!(row, [Some(2), None, None]);
    }

    #[tokio::test]
    async fn remove_takes_every_equal_element_and_dims_print_as_postgres() {
        let ctx = SessionContext::new();
        register(&ctx);
        let sql =
            "SELECT CAST(array_remove(make_array(1, 2, 1), 1) AS VARCHAR), array_dims(make_array(4, 5))";
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string();
        assert!(text.contains("| [2] ") && text.contains("| [1:2] "), "{text}");
    }
}
