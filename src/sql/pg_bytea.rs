//! `length(bytea)` and `octet_length(bytea)`: the number of bytes, as in Postgres.
//! DataFusion's `character_length` (`length`, `char_length`) reads its argument as text and
//! its `octet_length` takes only text. Each is wrapped under its own name and aliases, so
//! calls on text plan (and show) exactly as before.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result as DfResult;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
};

pub fn register(ctx: &SessionContext) {
    for inner in
        [datafusion::functions::unicode::character_length(), datafusion::functions::string::octet_length()]
    {
        ctx.register_udf(ScalarUDF::new_from_impl(ByteaLength::new(inner)));
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ByteaLength {
    inner: Arc<ScalarUDF>,
    signature: Signature,
}

impl ByteaLength {
    fn new(inner: Arc<ScalarUDF>) -> Self {
        let signature = Signature::one_of(
            vec![
                TypeSignature::Exact(vec![DataType::Binary]),
                TypeSignature::Exact(vec![DataType::LargeBinary]),
                inner.signature().type_signature.clone(),
            ],
            inner.signature().volatility,
        );
        ByteaLength { inner, signature }
    }
}

fn is_binary(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Binary | DataType::LargeBinary)
}

impl ScalarUDFImpl for ByteaLength {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        match args {
            [DataType::Binary] => Ok(DataType::Int32),
            [DataType::LargeBinary] => Ok(DataType::Int64),
            _ => self.inner.return_type(args),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        if !args.args.first().is_some_and(|a| is_binary(&a.data_type())) {
            return self.inner.invoke_with_args(args);
        }
        let bytes = args.args[0].to_array(args.number_rows)?;
        let lengths = datafusion::arrow::compute::kernels::length::length(&bytes)?;
        super::pg_functions::like_arguments(&args.args, lengths)
    }
}
