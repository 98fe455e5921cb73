//! `regexp_matches(text, pattern [, flags])`, Postgres' set-returning function: one row of
//! `text[]` per match — the capture groups' texts (NULL for a group that took no part),
//! or the whole match when the pattern has no groups — for the first match, or every
//! match with the `g` flag; no row when nothing matches. `sql::from_functions` writes it
//! as `unnest(sabot_regexp_matches(...))` in a select list and in FROM; this is the
//! function that returns a row's matches as a list.
//!
//! Flags: `g` (every match), `i` / `c` (case-insensitive / sensitive), `n` / `m`
//! (newline-sensitive: `.` does not match a newline, `^` and `$` match at lines), `s`
//! (the default: `.` matches a newline), `x` (expanded syntax); others are 22023, a
//! pattern that does not compile 2201B. Patterns
//! are Rust `regex` syntax, which is Postgres' for the common forms but has no
//! back-references.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, ListBuilder, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::Result as DfResult;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};

use crate::common::{Error, SqlState};

pub const FUNCTION: &str = "sabot_regexp_matches";

pub fn register(ctx: &SessionContext) {
    let signature = Signature::one_of(
        vec![
            TypeSignature::Exact(vec![DataType::Utf8, DataType::Utf8]),
            TypeSignature::Exact(vec![DataType::Utf8, DataType::Utf8, DataType::Utf8]),
        ],
        Volatility::Immutable,
    );
    ctx.register_udf(ScalarUDF::new_from_impl(RegexpMatches { signature }));
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct RegexpMatches {
    signature: Signature,
}

fn text_list() -> DataType {
    DataType::new_list(DataType::Utf8, true)
}

impl ScalarUDFImpl for RegexpMatches {
    fn name(&self) -> &str {
        FUNCTION
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::List(Arc::new(Field::new_list_field(text_list(), true))))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let out = matches_of_rows(&arrays)?;
        super::pg_functions::like_arguments(&args.args, out)
    }
}

/// Each row's matches; a pattern (with its flags) is compiled again only when it changes.
fn matches_of_rows(arrays: &[ArrayRef]) -> DfResult<ArrayRef> {
    let texts = arrays[0].as_string::<i32>();
    let patterns = arrays[1].as_string::<i32>();
    let flags = arrays.get(2).map(|f| f.as_string::<i32>());
    let mut out = ListBuilder::new(ListBuilder::new(StringBuilder::new()));
    let mut compiled: Option<(String, String, regex::Regex, bool)> = None;
    for row in 0..texts.len() {
        let flag_text = flags.map_or(Some(""), |f| f.is_valid(row).then(|| f.value(row)));
        let (Some(text), Some(pattern), Some(flag_text)) = (
            texts.is_valid(row).then(|| texts.value(row)),
            patterns.is_valid(row).then(|| patterns.value(row)),
            flag_text,
        ) else {
            out.append_null();
            continue;
        };
        if compiled.as_ref().is_none_or(|(p, f, _, _)| p != pattern || f != flag_text) {
            let (regex, global) = compile(pattern, flag_text)?;
            compiled = Some((pattern.to_string(), flag_text.to_string(), regex, global));
        }
        let (_, _, regex, global) = compiled.as_ref().expect("compiled above");
        let groups = regex.captures_len() - 1;
        for captures in regex.captures_iter(text).take(if *global { usize::MAX } else { 1 }) {
            let row_values = out.values();
            if groups == 0 {
                row_values.values().append_option(captures.get(0).map(|m| m.as_str()));
            } else {
                for group in 1..=groups {
                    row_values.values().append_option(captures.get(group).map(|m| m.as_str()));
                }
            }
            row_values.append(true);
        }
        out.append(true);
    }
    Ok(Arc::new(out.finish()))
}

/// The pattern compiled with Postgres' flags, and whether `g` asks for every match.
fn compile(pattern: &str, flags: &str) -> DfResult<(regex::Regex, bool)> {
    let mut builder = regex::RegexBuilder::new(pattern);
    builder.dot_matches_new_line(true);
    let mut global = false;
    for flag in flags.chars() {
        match flag {
            'g' => global = true,
            'i' => _ = builder.case_insensitive(true),
            'c' => _ = builder.case_insensitive(false),
            'n' | 'm' => _ = builder.dot_matches_new_line(false).multi_line(true),
            's' => _ = builder.dot_matches_new_line(true).multi_line(false),
            'x' => _ = builder.ignore_whitespace(true),
            other => {
                let message = format!("invalid regular expression option: \"{other}\"");
                return Err(Error::new(SqlState::InvalidParameterValue, message).into());
            }
        }
    }
    match builder.build() {
        Ok(regex) => Ok((regex, global)),
        Err(e) => {
            Err(Error::new(SqlState::InvalidRegularExpression, format!("invalid regular expression: {e}"))
                .into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;

    fn matches(text: &str, pattern: &str, flags: &str) -> Vec<Vec<Option<String>>> {
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![text])),
            Arc::new(StringArray::from(vec![pattern])),
            Arc::new(StringArray::from(vec![flags])),
        ];
        let out = matches_of_rows(&arrays).unwrap();
        let rows = out.as_list::<i32>().value(0);
        let rows = rows.as_list::<i32>();
        (0..rows.len())
            .map(|i| {
                let values = rows.value(i);
                values.as_string::<i32>().iter().map(|v| v.map(str::to_string)).collect()
            })
            .collect()
    }

    #[test]
    fn groups_whole_matches_and_every_match() {
        let some = |s: &str| Some(s.to_string());
        assert_eq!(matches("foobarbequebaz", "(bar)(beque)", ""), [vec![some("bar"), some("beque")]]);
        assert_eq!(matches("abcabc", "b", "g"), [vec![some("b")], vec![some("b")]]);
        assert_eq!(matches("abcabc", "b", ""), [vec![some("b")]]);
        assert_eq!(matches("ABC", "b", ""), Vec::<Vec<Option<String>>>::new());
        assert_eq!(matches("ABC", "b", "i"), [vec![some("B")]]);
        assert_eq!(matches("ac", "a(x)?c", ""), [vec![None]]);
    }

    #[test]
    fn unknown_flags_are_errors() {
        assert!(compile("a", "z").is_err());
    }
}
