//! Array functions as Postgres computes them where DataFusion differs (plan revision 13):
//! `array_length(array, dim)` is an `integer`, NULL for an empty array (Postgres has no
//! dimensions for one); DataFusion's gave the unsigned 0. Views of older plan revisions
//! keep DataFusion's function.

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, Int32Array};
use datafusion::arrow::datatypes::{DataType, Field, UInt64Type};
use datafusion::common::Result as DfResult;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature};

pub fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::new_from_impl(ArrayLength { inner: datafusion_function() }));
}

/// DataFusion's `array_length`, for views of plan revision 12 and older.
pub fn datafusion_function() -> Arc<ScalarUDF> {
    datafusion::functions_nested::length::array_length_udf()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_empty_array_has_no_length() {
        let ctx = SessionContext::new();
        register(&ctx);
        let batches = ctx
            .sql("SELECT array_length(make_array(1, 2), 1), array_length(make_array(), 1), array_length(make_array(1), 2)")
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
}
