//! Postgres functions DataFusion lacks or names otherwise, registered in every context:
//! `ceiling` (DataFusion's `ceil`, registered by `sql::pg_numeric`), `sign` (`signum`), `quote_literal`, `width_bucket`,
//! `div`, `num_nulls`, `num_nonnulls`, `pg_typeof`, `scale`; `format` (`sql::pg_format`) and the interval
//! functions (`sql::pg_intervals`) are registered from here too.
//! `mod(a, b)` is rewritten to `a % b` (`sql::pg_compat`), whose sign follows the dividend
//! as in Postgres.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int32Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Float64Type, Int64Type};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};

use crate::common::{Error, SqlState};

pub fn register(ctx: &SessionContext) {
    let signum = datafusion::functions::math::signum();
    ctx.register_udf(signum.as_ref().clone().with_aliases(["sign"]));
    ctx.register_udf(ScalarUDF::new_from_impl(QuoteLiteral::new()));
    ctx.register_udf(ScalarUDF::new_from_impl(PgTypeof {
        signature: Signature::any(1, Volatility::Immutable),
    }));
    ctx.register_udf(ScalarUDF::new_from_impl(Scale { signature: Signature::any(1, Volatility::Immutable) }));
    ctx.register_udf(ScalarUDF::new_from_impl(WidthBucket::new()));
    for name in ["div", "num_nulls", "num_nonnulls"] {
        ctx.register_udf(counting(name));
    }
    ctx.register_udf(ScalarUDF::new_from_impl(super::pg_format::Format::new()));
    super::pg_intervals::register(ctx);
    super::pg_bytea::register(ctx);
    super::quantified::register(ctx);
    super::pg_char::register(ctx);
    super::pg_to_char::register(ctx);
    super::pg_regexp::register(ctx);
    super::pg_arrays::register(ctx);
}

/// `sabot_array_text(array)`: an array in Postgres' text form (`{1,NULL,"a b"}`), what a
/// view of plan revisions 8 to 12 stores for an array column, and what an array cast to
/// text is (`sql::pg_array_operands`; Arrow's own cast writes `[1, , a b]`). Named as its
/// argument, as the cast it replaces is.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ArrayText {
    signature: Signature,
}

impl ArrayText {
    pub fn new() -> Self {
        ArrayText { signature: Signature::any(1, Volatility::Immutable) }
    }
}

impl Default for ArrayText {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for ArrayText {
    fn name(&self) -> &str {
        "sabot_array_text"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn schema_name(&self, args: &[datafusion::logical_expr::Expr]) -> datafusion::common::Result<String> {
        Ok(args[0].schema_name().to_string())
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> datafusion::common::Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        Ok(ColumnarValue::Array(crate::common::pg_text::array_texts(&arrays[0])?))
    }
}

/// `quote_literal(text)`: the text as a string literal (`'it''s'`; with backslashes
/// doubled in an `E'...'` literal, as Postgres writes it).
#[derive(Debug, PartialEq, Eq, Hash)]
struct QuoteLiteral {
    signature: Signature,
}

impl QuoteLiteral {
    fn new() -> Self {
        QuoteLiteral { signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for QuoteLiteral {
    fn name(&self) -> &str {
        "quote_literal"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> datafusion::common::Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let quoted: StringArray = arrays[0].as_string::<i32>().iter().map(|t| t.map(quote_literal)).collect();
        Ok(ColumnarValue::Array(Arc::new(quoted) as ArrayRef))
    }
}

pub(crate) fn quote_literal(text: &str) -> String {
    let quoted = text.replace('\'', "''");
    if text.contains('\\') { format!("E'{}'", quoted.replace('\\', "\\\\")) } else { format!("'{quoted}'") }
}

/// `width_bucket(operand, low, high, count)`: which of `count` equal buckets over
/// `[low, high)` holds the operand: 0 below, `count + 1` at or above `high` (reversed
/// when `low > high`); 2201G for a count below 1 or equal bounds.
#[derive(Debug, PartialEq, Eq, Hash)]
struct WidthBucket {
    signature: Signature,
}

impl WidthBucket {
    fn new() -> Self {
        let numbers = vec![DataType::Float64, DataType::Float64, DataType::Float64, DataType::Int64];
        WidthBucket {
            signature: Signature::one_of(
                vec![TypeSignature::Coercible(coercions(&numbers))],
                Volatility::Immutable,
            ),
        }
    }
}

fn coercions(types: &[DataType]) -> Vec<datafusion::logical_expr::Coercion> {
    use datafusion::common::types::{NativeType, logical_float64, logical_int64};
    use datafusion::logical_expr::{Coercion, TypeSignatureClass};
    types
        .iter()
        .map(|t| match t {
            DataType::Int64 => Coercion::new_implicit(
                TypeSignatureClass::Native(logical_int64()),
                vec![TypeSignatureClass::Integer],
                NativeType::Int64,
            ),
            _ => Coercion::new_implicit(
                TypeSignatureClass::Native(logical_float64()),
                vec![TypeSignatureClass::Numeric],
                NativeType::Float64,
            ),
        })
        .collect()
}

impl ScalarUDFImpl for WidthBucket {
    fn name(&self) -> &str {
        "width_bucket"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Int32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> datafusion::common::Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let float = |i: usize| datafusion::arrow::compute::cast(&arrays[i], &DataType::Float64);
        let (operand, low, high) = (float(0)?, float(1)?, float(2)?);
        let count = datafusion::arrow::compute::cast(&arrays[3], &DataType::Int64)?;
        let (operand, low, high) = (
            operand.as_primitive::<Float64Type>(),
            low.as_primitive::<Float64Type>(),
            high.as_primitive::<Float64Type>(),
        );
        let count = count.as_primitive::<Int64Type>();
        let mut out = Vec::with_capacity(operand.len());
        for row in 0..operand.len() {
            let values = [operand, low, high].map(|a| a.is_valid(row).then(|| a.value(row)));
            let [Some(x), Some(lo), Some(hi)] = values else {
                out.push(None);
                continue;
            };
            if !count.is_valid(row) {
                out.push(None);
                continue;
            }
            out.push(Some(width_bucket(x, lo, hi, count.value(row))?));
        }
        Ok(ColumnarValue::Array(Arc::new(Int32Array::from(out)) as ArrayRef))
    }
}

fn width_bucket(x: f64, low: f64, high: f64, count: i64) -> datafusion::common::Result<i32> {
    let invalid = |message: &str| {
        datafusion::error::DataFusionError::from(Error::new(SqlState::InvalidArgumentForWidthBucket, message))
    };
    if count <= 0 {
        return Err(invalid("count must be greater than zero"));
    }
    if low == high {
        return Err(invalid("lower bound cannot equal upper bound"));
    }
    if !(x.is_finite() || x.is_infinite()) || !low.is_finite() || !high.is_finite() {
        return Err(invalid("operand, lower bound, and upper bound cannot be NaN"));
    }
    let bucket = if low < high {
        if x < low {
            0
        } else if x >= high {
            count + 1
        } else {
            ((x - low) / (high - low) * count as f64).floor() as i64 + 1
        }
    } else if x > low {
        0
    } else if x <= high {
        count + 1
    } else {
        ((low - x) / (low - high) * count as f64).floor() as i64 + 1
    };
    i32::try_from(bucket).map_err(|_| {
        datafusion::error::DataFusionError::from(Error::new(
            SqlState::NumericValueOutOfRange,
            "integer out of range",
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn width_bucket_and_quote_literal_answer_as_postgres() {
        assert_eq!(width_bucket(5.0, 0.0, 10.0, 5).unwrap(), 3);
        assert_eq!(width_bucket(-1.0, 0.0, 10.0, 5).unwrap(), 0);
        assert_eq!(width_bucket(10.0, 0.0, 10.0, 5).unwrap(), 6);
        assert_eq!(width_bucket(5.35, 10.0, 0.0, 4).unwrap(), 2);
        assert!(width_bucket(1.0, 0.0, 10.0, 0).is_err());
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal(r"a\b"), r"E'a\\b'");
    }
}

/// `div(a, b)`: the integer quotient of two numbers, truncated toward zero, as a numeric
/// (22012 for a zero divisor); `num_nulls(...)` / `num_nonnulls(...)`: how many of the
/// arguments are NULL / not NULL.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Counting {
    name: &'static str,
    signature: Signature,
}

fn counting(name: &'static str) -> ScalarUDF {
    let signature = match name {
        "div" => Signature::any(2, Volatility::Immutable),
        _ => Signature::variadic_any(Volatility::Immutable),
    };
    ScalarUDF::new_from_impl(Counting { name, signature })
}

/// Both operands of `div` as numeric(38, 10): the quotient of their unscaled values is
/// the quotient of the numbers.
const DIV_OPERANDS: DataType = DataType::Decimal128(38, 10);

impl ScalarUDFImpl for Counting {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(if self.name == "div" { DataType::Decimal128(38, 0) } else { DataType::Int32 })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> datafusion::common::Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let rows = args.number_rows;
        if self.name != "div" {
            let want_nulls = self.name == "num_nulls";
            let counts: Int32Array = (0..rows)
                .map(|row| {
                    let nulls =
                        arrays.iter().filter(|a| a.data_type() == &DataType::Null || a.is_null(row)).count();
                    let counted = if want_nulls { nulls } else { arrays.len() - nulls };
                    Some(i32::try_from(counted).unwrap_or(i32::MAX))
                })
                .collect();
            return Ok(ColumnarValue::Array(Arc::new(counts)));
        }
        let cast = |a: &ArrayRef| datafusion::arrow::compute::cast(a, &DIV_OPERANDS);
        let (dividends, divisors) = (cast(&arrays[0])?, cast(&arrays[1])?);
        let (dividends, divisors) =
            (dividends.as_primitive::<Decimal128Type>(), divisors.as_primitive::<Decimal128Type>());
        let mut out = Vec::with_capacity(rows);
        for row in 0..rows {
            out.push(match (dividends.is_valid(row), divisors.is_valid(row)) {
                (true, true) if divisors.value(row) == 0 => {
                    return Err(Error::new(SqlState::DivisionByZero, "division by zero").into());
                }
                (true, true) => Some(dividends.value(row) / divisors.value(row)),
                _ => None,
            });
        }
        let quotients =
            datafusion::arrow::array::Decimal128Array::from(out).with_precision_and_scale(38, 0)?;
        Ok(ColumnarValue::Array(Arc::new(quotients)))
    }
}

/// `pg_typeof(x)`: the name of `x`'s type, as Postgres prints a `regtype` (`integer`,
/// `numeric`, `timestamp without time zone`, `text[]`, `record`).
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgTypeof {
    signature: Signature,
}

/// The name `pg_typeof` prints for values of `field`'s type (jsonb and varchar are known
/// by the field's metadata).
fn type_name(field: &datafusion::arrow::datatypes::Field) -> String {
    match field.data_type() {
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _) => {
            format!("{}[]", type_name(item))
        }
        DataType::Null => "unknown".into(),
        DataType::Struct(_) => "record".into(),
        // Unsigned counts (row_number) are bigints (`stream_plan::stored_type`).
        DataType::UInt32 | DataType::UInt64 => "bigint".into(),
        _ => crate::common::SqlType::from_arrow(field).base_name().into(),
    }
}

impl ScalarUDFImpl for PgTypeof {
    fn name(&self) -> &str {
        "pg_typeof"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> datafusion::common::Result<ColumnarValue> {
        let name = type_name(&args.arg_fields[0]);
        Ok(ColumnarValue::Scalar(datafusion::common::ScalarValue::Utf8(Some(name))))
    }
}

/// `scale(x)`: the digits after the point `x` prints with: a `numeric(p, s)` column's `s`;
/// for an unconstrained `numeric` (printed without trailing zeros) and other numbers, the
/// digits its value needs.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Scale {
    signature: Signature,
}

impl ScalarUDFImpl for Scale {
    fn name(&self) -> &str {
        "scale"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Int32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> datafusion::common::Result<ColumnarValue> {
        use crate::common::types::{NUMERIC_DEFAULT_PRECISION, NUMERIC_DEFAULT_SCALE};
        let values = args.args[0].to_array(args.number_rows)?;
        let fixed = match values.data_type() {
            DataType::Decimal128(p, s) if (*p, *s) != (NUMERIC_DEFAULT_PRECISION, NUMERIC_DEFAULT_SCALE) => {
                Some(*s)
            }
            _ => None,
        };
        let decimals = match fixed {
            Some(_) => values,
            None => datafusion::arrow::compute::cast(
                &values,
                &DataType::Decimal128(NUMERIC_DEFAULT_PRECISION, NUMERIC_DEFAULT_SCALE),
            )?,
        };
        let decimals = decimals.as_primitive::<Decimal128Type>();
        let scales: Int32Array = decimals
            .iter()
            .map(|v| {
                v.map(|v| match fixed {
                    Some(s) => i32::from(s.max(0)),
                    None => {
                        let mut digits = i32::from(NUMERIC_DEFAULT_SCALE);
                        let mut v = v;
                        while digits > 0 && v % 10 == 0 {
                            v /= 10;
                            digits -= 1;
                        }
                        digits
                    }
                })
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(scales)))
    }
}

/// A function's result computed as an array: a scalar when every argument is one (a
/// call on constants stays a constant the planner can fold), else the array.
pub(super) fn like_arguments(
    args: &[ColumnarValue],
    out: ArrayRef,
) -> datafusion::common::Result<ColumnarValue> {
    Ok(if args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
        ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&out, 0)?)
    } else {
        ColumnarValue::Array(out)
    })
}
