//! Casts that DataFusion computes otherwise than Postgres, replaced after type coercion
//! (an analyzer rule, so views get them too):
//!
//! - float to integer rounds half to even, as Postgres' `rint` (`(-1.5)::float4::int4` is
//!   -2, `2.5::float8::int` is 2); DataFusion truncates;
//! - float to text prints as Postgres does (`Infinity`, `-Infinity`, `NaN`, `1e+20`,
//!   shortest exact digits); DataFusion prints `inf`;
//! - text to `real` is an error when the value is beyond its range (22003 `"10e70" is out
//!   of range for type real`); DataFusion gives infinity.
//!
//! The replacements keep the cast's column name (a cast is named after what it casts),
//! so plans and result names do not change around them.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float32Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float32Type, Float64Type};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result as DfResult};
use datafusion::logical_expr::expr::{Cast, ScalarFunction};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, LogicalPlan, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

use crate::common::{Error, SqlState};

#[derive(Debug, Default)]
pub struct PgCasts;

impl AnalyzerRule for PgCasts {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        rewrite_expressions(plan, replace)
    }

    fn name(&self) -> &str {
        "pg_casts"
    }
}

/// `plan` with `replace` applied to every expression of every node (subqueries too), children
/// first, given the schema the node's expressions read: the body of Sabot's analyzer rules.
pub(super) fn rewrite_expressions(
    plan: LogicalPlan,
    replace: impl Fn(Expr, &DFSchema) -> DfResult<Transformed<Expr>>,
) -> DfResult<LogicalPlan> {
    plan.transform_up_with_subqueries(|node| {
        let schema = input_schema(&node)?;
        node.map_expressions(|expr| expr.transform_up(|e| replace(e, &schema)))
    })
    .map(|t| t.data)
}

/// A cast of text to another type: the text and the target type.
pub(super) fn text_cast<'a>(expr: &'a Expr, schema: &DFSchema) -> Option<(&'a Expr, &'a DataType)> {
    let Expr::Cast(Cast { expr: inner, field }) = expr else { return None };
    let from = inner.get_type(schema).ok()?;
    matches!(from, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8)
        .then(|| (inner.as_ref(), field.data_type()))
}

/// `function` called on `argument` in place of the expression it replaces.
pub(super) fn call_instead(function: impl ScalarUDFImpl + 'static, argument: &Expr) -> Transformed<Expr> {
    let function = Arc::new(datafusion::logical_expr::ScalarUDF::new_from_impl(function));
    Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(function, vec![argument.clone()])))
}

/// The schema a node's expressions read: its inputs' (merged), or its own for a scan.
pub(super) fn input_schema(node: &LogicalPlan) -> DfResult<DFSchema> {
    let inputs = node.inputs();
    if inputs.is_empty() {
        return Ok(node.schema().as_ref().clone());
    }
    let mut schema = DFSchema::empty();
    for input in inputs {
        schema.merge(input.schema());
    }
    Ok(schema)
}

fn replace(expr: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    let Expr::Cast(Cast { expr: inner, field }) = &expr else { return Ok(Transformed::no(expr)) };
    let Ok(from) = inner.get_type(schema) else { return Ok(Transformed::no(expr)) };
    let to = field.data_type();
    let kind = match (&from, to) {
        (DataType::Float32 | DataType::Float64, DataType::Int16 | DataType::Int32 | DataType::Int64) => {
            Kind::FloatToInt(to.clone())
        }
        (
            DataType::Float32 | DataType::Float64,
            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8,
        ) => Kind::FloatToText,
        (DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8, DataType::Float32) => Kind::TextToReal,
        _ => return Ok(Transformed::no(expr)),
    };
    let function = ScalarUDF::new_from_impl(PgCast::new(kind));
    let call =
        Expr::ScalarFunction(ScalarFunction::new_udf(Arc::new(function), vec![inner.as_ref().clone()]));
    // Text of another width: the function's text, cast (named the same).
    let replaced = match to {
        DataType::Utf8View | DataType::LargeUtf8 => {
            Expr::Cast(Cast { expr: Box::new(call), field: field.clone() })
        }
        _ => call,
    };
    Ok(Transformed::yes(replaced))
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Kind {
    FloatToInt(DataType),
    FloatToText,
    TextToReal,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct PgCast {
    kind: Kind,
    signature: Signature,
}

impl PgCast {
    fn new(kind: Kind) -> Self {
        PgCast { kind, signature: Signature::any(1, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for PgCast {
    fn name(&self) -> &str {
        match self.kind {
            Kind::FloatToInt(_) => "sabot_float_to_int",
            Kind::FloatToText => "sabot_float_text",
            Kind::TextToReal => "sabot_text_to_real",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Named as the cast it replaces: after what it casts.
    fn schema_name(&self, args: &[Expr]) -> DfResult<String> {
        Ok(args[0].schema_name().to_string())
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(match &self.kind {
            Kind::FloatToInt(to) => to.clone(),
            Kind::FloatToText => DataType::Utf8,
            Kind::TextToReal => DataType::Float32,
        })
    }

    /// As nullable as the value cast.
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let data_type = self.return_type(&[])?;
        Ok(Arc::new(Field::new(self.name(), data_type, args.arg_fields[0].is_nullable())))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let array = &arrays[0];
        let result: ArrayRef = match &self.kind {
            Kind::FloatToInt(to) => {
                let rounded = rint(array)?;
                datafusion::arrow::compute::cast_with_options(
                    &rounded,
                    to,
                    &datafusion::arrow::compute::CastOptions { safe: false, ..Default::default() },
                )
                .map_err(|_| {
                    Error::new(SqlState::NumericValueOutOfRange, format!("{} out of range", int_name(to)))
                })?
            }
            Kind::FloatToText => Arc::new(float_texts(array)?),
            Kind::TextToReal => Arc::new(reals(array)?),
        };
        Ok(ColumnarValue::Array(result))
    }
}

/// Postgres' name of an integer type, as its range errors say it.
fn int_name(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Int16 => "smallint",
        DataType::Int32 => "integer",
        _ => "bigint",
    }
}

/// Each float rounded half to even (as a float64).
fn rint(array: &ArrayRef) -> DfResult<ArrayRef> {
    let values = datafusion::arrow::compute::cast(array, &DataType::Float64)?;
    let rounded: datafusion::arrow::array::Float64Array =
        values.as_primitive::<Float64Type>().unary(f64::round_ties_even);
    Ok(Arc::new(rounded))
}

/// Floats in Postgres' text form.
fn float_texts(array: &ArrayRef) -> DfResult<StringArray> {
    use crate::common::pg_text::format_float;
    Ok(match array.data_type() {
        DataType::Float32 => array
            .as_primitive::<Float32Type>()
            .iter()
            .map(|v| v.map(|v| format_float(f64::from(v), 6, &format!("{v:e}"))))
            .collect(),
        _ => datafusion::arrow::compute::cast(array, &DataType::Float64)?
            .as_primitive::<Float64Type>()
            .iter()
            .map(|v| v.map(|v| format_float(v, 15, &format!("{v:e}"))))
            .collect(),
    })
}

/// Text as `real`: infinity only where the text says so (22003 beyond the range; 22P02
/// for what is no number).
fn reals(array: &ArrayRef) -> DfResult<Float32Array> {
    let text = datafusion::arrow::compute::cast(array, &DataType::Utf8)?;
    let text = text.as_string::<i32>();
    let mut values = Vec::with_capacity(text.len());
    for value in text.iter() {
        values.push(match value {
            None => None,
            Some(written) => Some(real(written)?),
        });
    }
    Ok(Float32Array::from(values))
}

fn real(written: &str) -> DfResult<f32> {
    let trimmed = written.trim();
    let invalid = || {
        Error::new(
            SqlState::InvalidTextRepresentation,
            format!("invalid input syntax for type real: \"{written}\""),
        )
    };
    let value: f64 = match trimmed.to_ascii_lowercase().as_str() {
        "infinity" | "+infinity" | "inf" | "+inf" => f64::INFINITY,
        "-infinity" | "-inf" => f64::NEG_INFINITY,
        "nan" => f64::NAN,
        _ => trimmed.parse().map_err(|_| invalid())?,
    };
    let real = value as f32;
    let overflow = value.is_finite() && real.is_infinite();
    let underflow = value != 0.0 && real == 0.0;
    if overflow || underflow {
        return Err(Error::new(
            SqlState::NumericValueOutOfRange,
            format!("\"{written}\" is out of range for type real"),
        )
        .into());
    }
    Ok(real)
}
