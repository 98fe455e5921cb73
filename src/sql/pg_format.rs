//! `format(formatstr, args...)` as Postgres defines it: `%s` (the value's text, NULL as
//! nothing), `%I` (quoted as an identifier when needed; NULL is an error, 22004), `%L`
//! (quoted as a literal, NULL as `NULL`), `%%`; each with an optional argument position
//! (`%2$s`) and width (`%-10s`, `%*s`). Values print as Postgres prints them.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};

use crate::common::pg_text::{PgValue, canonical};
use crate::common::{Error, Result, SqlState, SqlType};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Format {
    signature: Signature,
}

impl Format {
    pub fn new() -> Self {
        Format { signature: Signature::variadic_any(Volatility::Stable) }
    }
}

impl Default for Format {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for Format {
    fn name(&self) -> &str {
        "format"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let mut texts: Vec<(SqlType, ArrayRef)> = Vec::with_capacity(arrays.len());
        for (array, field) in arrays.iter().zip(&args.arg_fields) {
            let sql_type = match array.data_type() {
                DataType::Null => SqlType::Text,
                _ => SqlType::from_arrow(field),
            };
            let array = match array.data_type() {
                DataType::Null => datafusion::arrow::array::new_null_array(&DataType::Utf8, array.len()),
                _ => canonical(array, &sql_type)?,
            };
            texts.push((sql_type, array));
        }
        let rows = args.number_rows;
        let mut out = Vec::with_capacity(rows);
        for row in 0..rows {
            let values: Vec<Option<String>> =
                texts.iter().map(|(t, a)| PgValue::of(a.as_ref(), t, row).to_text()).collect();
            out.push(match values.split_first() {
                Some((Some(template), rest)) => Some(format_row(template, rest)?),
                _ => None,
            });
        }
        Ok(ColumnarValue::Array(Arc::new(StringArray::from(out))))
    }
}

/// One row: `template` with `values` in place of its specifiers.
fn format_row(template: &str, values: &[Option<String>]) -> Result<String> {
    let mut out = String::with_capacity(template.len());
    let mut chars = template.chars().peekable();
    let mut next = 0usize;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            out.push('%');
            continue;
        }
        let spec = specifier(&mut chars, values, &mut next)?;
        let value = values
            .get(spec.argument)
            .ok_or_else(|| Error::new(SqlState::InvalidParameterValue, "too few arguments for format()"))?;
        next = spec.argument + 1;
        let text = match (spec.conversion, value) {
            ('s', value) => value.clone().unwrap_or_default(),
            ('I', Some(value)) => crate::common::pg_text::quote_ident(value),
            ('I', None) => {
                return Err(Error::new(
                    SqlState::NullValueNotAllowed,
                    "null values cannot be formatted as an SQL identifier",
                ));
            }
            ('L', Some(value)) => super::pg_functions::quote_literal(value),
            ('L', None) => "NULL".to_string(),
            (other, _) => {
                return Err(Error::new(
                    SqlState::InvalidParameterValue,
                    format!("unrecognized format() type specifier \"{other}\""),
                )
                .with_hint("For a single \"%\" use \"%%\"."));
            }
        };
        pad(&mut out, &text, spec.width);
    }
    Ok(out)
}

struct Specifier {
    argument: usize,
    /// Negative: left-aligned.
    width: i64,
    conversion: char,
}

/// `[n$][-][width|*[m$]]type` after a `%`.
fn specifier(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    values: &[Option<String>],
    next: &mut usize,
) -> Result<Specifier> {
    let unterminated = || {
        Error::new(SqlState::InvalidParameterValue, "unterminated format() type specifier")
            .with_hint("For a single \"%\" use \"%%\".")
    };
    let number = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
        let mut digits = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        digits.parse::<i64>().ok()
    };
    let mut argument = None;
    let mut width = 0i64;
    let mut left = false;
    // A number followed by `$` is a position; otherwise it is the width.
    if let Some(n) = number(chars) {
        if chars.peek() == Some(&'$') {
            chars.next();
            argument = Some(position(n)?);
        } else {
            width = n;
        }
    }
    if chars.peek() == Some(&'-') {
        chars.next();
        left = true;
    }
    if chars.peek() == Some(&'*') {
        chars.next();
        let from = match number(chars) {
            Some(n) if chars.peek() == Some(&'$') => {
                chars.next();
                position(n)?
            }
            _ => {
                let at = *next;
                *next += 1;
                at
            }
        };
        let given = values.get(from).cloned().flatten().unwrap_or_default();
        width =
            given.trim().parse().map_err(|_| Error::new(SqlState::InvalidParameterValue, "invalid width"))?;
    } else if let Some(n) = number(chars) {
        width = n;
    }
    if left {
        width = -width.abs();
    }
    let conversion = chars.next().ok_or_else(unterminated)?;
    Ok(Specifier { argument: argument.unwrap_or(*next), width, conversion })
}

/// `n$` counts the arguments after the template from 1.
fn position(n: i64) -> Result<usize> {
    usize::try_from(n).ok().filter(|n| *n > 0).map(|n| n - 1).ok_or_else(|| {
        Error::new(
            SqlState::InvalidParameterValue,
            "format specifies argument 0, but arguments are numbered from 1",
        )
    })
}

fn pad(out: &mut String, text: &str, width: i64) {
    let length = text.chars().count() as i64;
    let fill = (width.abs() - length).max(0) as usize;
    if width > 0 {
        out.extend(std::iter::repeat_n(' ', fill));
        out.push_str(text);
    } else {
        out.push_str(text);
        out.extend(std::iter::repeat_n(' ', fill));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(template: &str, values: &[Option<&str>]) -> Result<String> {
        let values: Vec<Option<String>> = values.iter().map(|v| v.map(str::to_string)).collect();
        format_row(template, &values)
    }

    #[test]
    fn formats_as_postgres() {
        assert_eq!(run("%s and %s", &[Some("a"), None]).unwrap(), "a and ");
        assert_eq!(run("%2$s %1$s %s", &[Some("a"), Some("b")]).unwrap(), "b a b");
        assert_eq!(
            run("[%5s|%-5s|%*s]", &[Some("ab"), Some("cd"), Some("3"), Some("e")]).unwrap(),
            "[   ab|cd   |  e]"
        );
        assert_eq!(
            run("%I.%L %L %%", &[Some("My Tab"), Some("it's"), None]).unwrap(),
            "\"My Tab\".'it''s' NULL %"
        );
        assert_eq!(run("%s %s", &[Some("a")]).unwrap_err().sqlstate(), SqlState::InvalidParameterValue);
        assert_eq!(run("%I", &[None]).unwrap_err().sqlstate(), SqlState::NullValueNotAllowed);
        assert_eq!(run("%x", &[Some("a")]).unwrap_err().sqlstate(), SqlState::InvalidParameterValue);
    }
}
