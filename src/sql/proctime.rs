//! `PROCTIME()`: the processing time of a row, Flink's and RisingWave's name for it.
//!
//! In a batch query it is the time the query reads it. In a view it may appear only in
//! the select list over an append-only input (`SELECT *, PROCTIME() AS p_time FROM bid`):
//! the Project operator evaluates it when a row passes, so each row keeps the time it was
//! processed, and it makes the column carry a watermark, the clock itself at each barrier
//! (`common::proctime`), so windows over it close as time passes. Over a stream with
//! deletes or updates a retraction would be stamped with a later time than the row it
//! retracts, so such views are refused.

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::TreeNode;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::common::types::UTC;
use crate::common::{Error, SqlState};

/// The function's name, as plans and EXPLAIN show it.
pub const NAME: &str = "proctime";

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ProcTime {
    signature: Signature,
}

impl Default for ProcTime {
    fn default() -> Self {
        ProcTime { signature: Signature::nullary(Volatility::Volatile) }
    }
}

/// The type of `PROCTIME()`: `timestamptz`.
pub fn proctime_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))
}

impl ScalarUDFImpl for ProcTime {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(proctime_type())
    }

    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> datafusion::common::Result<ColumnarValue> {
        let now = crate::common::proctime::now_micros();
        Ok(ColumnarValue::Scalar(ScalarValue::TimestampMicrosecond(Some(now), Some(UTC.into()))))
    }
}

/// Registers `proctime()`.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::new_from_impl(ProcTime::default()));
}

/// Whether `expr` calls `proctime()`.
pub fn calls_proctime(expr: &Expr) -> bool {
    expr.exists(|e| Ok(matches!(e, Expr::ScalarFunction(f) if f.func.inner().is::<ProcTime>())))
        .unwrap_or(false)
}

/// Whether `expr` calls a volatile function other than `proctime()`.
pub fn other_volatile(expr: &Expr) -> bool {
    expr.exists(|e| {
        Ok(matches!(e, Expr::ScalarFunction(f)
            if f.func.signature().volatility == Volatility::Volatile && !f.func.inner().is::<ProcTime>()))
    })
    .unwrap_or(true)
}

/// The error for `proctime()` over a stream that deletes or updates rows.
pub fn over_changes(expr: &Expr) -> Error {
    Error::new(
        SqlState::FeatureNotSupported,
        format!("{expr} over a stream with deletes or updates is not supported in a materialized view"),
    )
    .with_detail(
        "a deleted or updated row would be stamped with a later processing time than the row it retracts",
    )
    .with_hint("use PROCTIME() over a source or an APPEND ONLY table (or a view of one)")
}
