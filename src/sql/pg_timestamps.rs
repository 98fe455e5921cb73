//! Text to `timestamp` / `timestamptz` as Postgres reads it where DataFusion's parser
//! refuses: a time without seconds (`'2026-01-01 10:00'`, `'2026-01-01T10:00+02'`). An
//! analyzer rule of its own (after type coercion), so that views planned before it
//! (plan revision 9 and older) are planned again without it.
//!
//! The text gets `:00` seconds and is then cast as before; a text neither form reads is
//! 22007 (`invalid input syntax for type timestamp`).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::optimizer::AnalyzerRule;

use crate::common::{Error, SqlState};

/// The rule's name, by which views of older plan revisions leave it out.
pub const RULE_NAME: &str = "pg_timestamp_casts";

#[derive(Debug, Default)]
pub struct PgTimestampCasts;

impl AnalyzerRule for PgTimestampCasts {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        super::pg_casts::rewrite_expressions(plan, replace)
    }

    fn name(&self) -> &str {
        RULE_NAME
    }
}

fn replace(expr: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    let Some((text, to @ DataType::Timestamp(..))) = super::pg_casts::text_cast(&expr, schema) else {
        return Ok(Transformed::no(expr));
    };
    let function = TextToTimestamp { to: to.clone(), signature: Signature::any(1, Volatility::Immutable) };
    Ok(super::pg_casts::call_instead(function, text))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct TextToTimestamp {
    to: DataType,
    signature: Signature,
}

impl ScalarUDFImpl for TextToTimestamp {
    fn name(&self) -> &str {
        "sabot_text_to_timestamp"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Named as the cast it replaces: after what it casts.
    fn schema_name(&self, args: &[Expr]) -> DfResult<String> {
        Ok(args[0].schema_name().to_string())
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(self.to.clone())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        Ok(Arc::new(Field::new(self.name(), self.to.clone(), args.arg_fields[0].is_nullable())))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let texts = datafusion::arrow::compute::cast(&arrays[0], &DataType::Utf8)?;
        let texts = texts.as_string::<i32>();
        let completed: StringArray = texts.iter().map(|t| t.map(with_seconds)).collect();
        let options = CastOptions { safe: false, ..Default::default() };
        let cast =
            cast_with_options(&(Arc::new(completed) as ArrayRef), &self.to, &options).map_err(|_| {
                let bad = (0..texts.len())
                    .find(|&i| {
                        texts.is_valid(i)
                            && cast_with_options(
                                &(Arc::new(StringArray::from(vec![with_seconds(texts.value(i))]))
                                    as ArrayRef),
                                &self.to,
                                &options,
                            )
                            .is_err()
                    })
                    .map(|i| texts.value(i).to_string())
                    .unwrap_or_default();
                Error::new(
                    SqlState::InvalidDatetimeFormat,
                    format!("invalid input syntax for type timestamp: \"{bad}\""),
                )
            })?;
        Ok(ColumnarValue::Array(cast))
    }
}

/// `YYYY-MM-DD HH:MM` (or with `T`), then anything but more time: `:00` inserted after
/// the minutes. Other texts are returned as they are.
fn with_seconds(text: &str) -> String {
    let trimmed = text.trim();
    let bytes = trimmed.as_bytes();
    let date_then_time = bytes.len() >= 16
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && (bytes[10] == b' ' || bytes[10] == b'T')
        && bytes[13] == b':'
        && [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15].iter().all(|&i| bytes[i].is_ascii_digit());
    if date_then_time && bytes.get(16) != Some(&b':') {
        format!("{}:00{}", &trimmed[..16], &trimmed[16..])
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::with_seconds;

    #[test]
    fn minutes_get_seconds() {
        assert_eq!(with_seconds("2026-01-01 10:00"), "2026-01-01 10:00:00");
        assert_eq!(with_seconds("2026-01-01T10:00+02"), "2026-01-01T10:00:00+02");
        assert_eq!(with_seconds("2026-01-01 10:00:30"), "2026-01-01 10:00:30");
        assert_eq!(with_seconds("2026-01-01"), "2026-01-01");
        assert_eq!(with_seconds("nonsense"), "nonsense");
    }
}
