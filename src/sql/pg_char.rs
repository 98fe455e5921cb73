//! `x::char(n)` as Postgres casts it (plan revision 12): the value cut to `n` characters,
//! typed `character(n)` so that it prints blank-padded to `n` (`'ab'::char(4)` is `ab  `),
//! while `length`, `||` and comparisons see no padding, as they see none in Postgres'
//! `bpchar`. Sabot's `char(n)` values are kept without their padding (a table column's
//! too): the cast drops trailing blanks and the result column carries the type, which
//! output pads by (`common::pg_text`). DataFusion cast to plain text, unpadded and uncut.
//! `char` alone is `char(1)`, as in Postgres.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::{Array, StringBuilder};
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{Result as DfResult, ScalarValue, exec_err};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::sql::sqlparser::ast::{
    CharacterLength, DataType as SqlDataType, Expr, Statement, VisitMut, VisitorMut,
};

use crate::common::SqlType;

const FUNCTION: &str = "sabot_bpchar";

pub fn register(ctx: &SessionContext) {
    let signature = Signature::exact(vec![DataType::Utf8, DataType::Int64], Volatility::Immutable);
    ctx.register_udf(ScalarUDF::new_from_impl(Bpchar { signature }));
}

/// Rewrites each `x::char(n)` in `statement` to `sabot_bpchar(x::text, n)`.
pub fn rewrite(statement: &mut Statement) {
    let _ = statement.visit(&mut CharCasts);
}

struct CharCasts;

impl VisitorMut for CharCasts {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Cast {
            expr: inner,
            data_type: SqlDataType::Char(length) | SqlDataType::Character(length),
            ..
        } = expr
        {
            let width = match length {
                None => Some(1),
                Some(CharacterLength::IntegerLength { length, .. }) => Some(*length),
                Some(CharacterLength::Max) => None,
            };
            if let Some(width) = width
                && let Some(call) =
                    super::pg_compat::template_expr(&format!("{FUNCTION}(CAST(({inner}) AS TEXT), {width})"))
            {
                *expr = call;
            }
        }
        ControlFlow::Continue(())
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Bpchar {
    signature: Signature,
}

impl Bpchar {
    fn width(args: &[Option<&ScalarValue>]) -> DfResult<u32> {
        match args.get(1) {
            Some(Some(ScalarValue::Int64(Some(n)))) if (1..=10_485_760).contains(n) => Ok(*n as u32),
            _ => exec_err!("{FUNCTION} takes a constant length between 1 and 10485760"),
        }
    }
}

impl ScalarUDFImpl for Bpchar {
    fn name(&self) -> &str {
        FUNCTION
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let width = Self::width(args.scalar_arguments)?;
        Ok(Arc::new(SqlType::Char(width).to_field(FUNCTION, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let width = match &args.args[1] {
            ColumnarValue::Scalar(ScalarValue::Int64(Some(n))) => *n as usize,
            _ => return exec_err!("{FUNCTION} takes a constant length"),
        };
        let texts = args.args[0].to_array(args.number_rows)?;
        let texts = datafusion::common::cast::as_string_array(&texts)?;
        let mut out = StringBuilder::with_capacity(texts.len(), texts.value_data().len());
        for text in texts.iter() {
            out.append_option(text.map(|t| fitted(t, width)));
        }
        let out = out.finish();
        super::pg_functions::like_arguments(&args.args, Arc::new(out))
    }
}

/// `text` cut to `width` characters, without trailing blanks.
fn fitted(text: &str, width: usize) -> &str {
    let cut = text.char_indices().nth(width).map_or(text.len(), |(at, _)| at);
    text[..cut].trim_end_matches(' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_cut_and_kept_without_padding() {
        assert_eq!(fitted("abcdef", 3), "abc");
        assert_eq!(fitted("ab  ", 4), "ab");
        assert_eq!(fitted("a   bc", 3), "a");
        assert_eq!(fitted("äöü", 2), "äö");
    }

    #[test]
    fn char_casts_call_the_function() {
        let mut statement =
            crate::sql::parser::parse_generated("SELECT 'ab'::char(4), x::character, y::varchar(2) FROM t")
                .unwrap();
        rewrite(&mut statement);
        assert_eq!(
            statement.to_string(),
            "SELECT sabot_bpchar(CAST(('ab') AS TEXT), 4), sabot_bpchar(CAST((x) AS TEXT), 1), y::VARCHAR(2) FROM t"
        );
    }
}
