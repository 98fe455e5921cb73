//! Text cast to an array reads Postgres' array text (plan revision 12): `'{a,"b c",NULL}'::text[]`
//! is three elements, `'{1,2}'::int[]` two integers. Arrow's cast made the whole text one
//! element (`'{a,c}'::text[]` was `{"{a,c}"}`), a silent difference. [`PgArrayInput`], an
//! analyzer rule after type coercion, replaces such a cast by `sabot_array_in(text)` (a
//! list of the element texts) cast to the array type, so each element is read as its type
//! (`'{1,x}'::int[]` fails as `'x'::int` does). One dimension: a nested array is 0A000;
//! text that is not an array is 22P02 `malformed array literal`.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, ListBuilder, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, Result as DfResult};
use datafusion::logical_expr::expr::Cast;
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

use crate::common::{Error, SqlState};

/// The rule's name, by which views of older plan revisions leave it out.
pub const RULE_NAME: &str = "pg_array_input";

#[derive(Debug)]
pub struct PgArrayInput;

impl AnalyzerRule for PgArrayInput {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        super::pg_casts::rewrite_expressions(plan, replace)
    }

    fn name(&self) -> &str {
        RULE_NAME
    }
}

fn replace(expr: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    let Some((text, DataType::List(item) | DataType::LargeList(item))) =
        super::pg_casts::text_cast(&expr, schema)
    else {
        return Ok(Transformed::no(expr));
    };
    let Expr::Cast(Cast { field, .. }) = &expr else { return Ok(Transformed::no(expr)) };
    let text = Expr::Cast(Cast::new(Box::new(text.clone()), DataType::Utf8));
    let elements = super::pg_casts::call_instead(ArrayIn::new(), &text).data;
    if item.data_type() == &DataType::Utf8 && matches!(field.data_type(), DataType::List(_)) {
        return Ok(Transformed::yes(elements));
    }
    Ok(Transformed::yes(Expr::Cast(Cast::new_from_field(Box::new(elements), field.clone()))))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ArrayIn {
    signature: Signature,
}

impl ArrayIn {
    fn new() -> Self {
        ArrayIn { signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for ArrayIn {
    fn name(&self) -> &str {
        "sabot_array_in"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Named as the cast it replaces, so that the plan's schema stays as planned.
    fn schema_name(&self, args: &[Expr]) -> DfResult<String> {
        Ok(args[0].schema_name().to_string())
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::new_list(DataType::Utf8, true))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let texts = args.args[0].to_array(args.number_rows)?;
        let texts = texts.as_string::<i32>();
        let mut out = ListBuilder::new(StringBuilder::new());
        let mut elements = Vec::new();
        for row in 0..texts.len() {
            if texts.is_null(row) {
                out.append(false);
                continue;
            }
            elements.clear();
            parse(texts.value(row), &mut elements)?;
            for element in &elements {
                out.values().append_option(element.as_deref());
            }
            out.append(true);
        }
        let out: datafusion::arrow::array::ArrayRef = Arc::new(out.finish());
        super::pg_functions::like_arguments(&args.args, out)
    }
}

/// The elements of Postgres' text of a one-dimensional array (`{a,"b c",NULL,"x\"y"}`), an
/// unquoted `NULL` as None.
fn parse(text: &str, elements: &mut Vec<Option<String>>) -> crate::common::Result<()> {
    let malformed =
        || Error::new(SqlState::InvalidTextRepresentation, format!("malformed array literal: \"{text}\""));
    let inner = text.trim().strip_prefix('{').and_then(|t| t.strip_suffix('}')).ok_or_else(malformed)?;
    if inner.trim().is_empty() {
        return Ok(());
    }
    let mut chars = inner.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut element = String::new();
        let mut quoted = false;
        match chars.peek() {
            Some('{') => {
                return Err(Error::new(
                    SqlState::FeatureNotSupported,
                    "multidimensional arrays are not supported",
                ));
            }
            Some('"') => {
                chars.next();
                quoted = true;
                loop {
                    match chars.next() {
                        Some('\\') => element.push(chars.next().ok_or_else(malformed)?),
                        Some('"') => break,
                        Some(c) => element.push(c),
                        None => return Err(malformed()),
                    }
                }
                while chars.next_if(|c| c.is_whitespace()).is_some() {}
            }
            _ => {
                while let Some(c) = chars.next_if(|&c| c != ',') {
                    match c {
                        '\\' => element.push(chars.next().ok_or_else(malformed)?),
                        '"' | '{' | '}' => return Err(malformed()),
                        c => element.push(c),
                    }
                }
                let trimmed = element.trim_end().len();
                element.truncate(trimmed);
                if element.is_empty() {
                    return Err(malformed());
                }
            }
        }
        let null = !quoted && element.eq_ignore_ascii_case("null");
        elements.push((!null).then_some(element));
        match chars.next() {
            Some(',') => continue,
            None => return Ok(()),
            Some(_) => return Err(malformed()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elements(text: &str) -> crate::common::Result<Vec<Option<String>>> {
        let mut out = Vec::new();
        parse(text, &mut out).map(|_| out)
    }

    #[test]
    fn postgres_array_text_reads_as_its_elements() {
        let some = |s: &str| Some(s.to_string());
        assert_eq!(elements("{a,c}").unwrap(), [some("a"), some("c")]);
        assert_eq!(elements(" { 1 , 2 } ").unwrap(), [some("1"), some("2")]);
        assert_eq!(
            elements(r#"{"b c",NULL,"NULL","x\"y",a b}"#).unwrap(),
            [some("b c"), None, some("NULL"), some("x\"y"), some("a b")]
        );
        assert_eq!(elements("{}").unwrap(), Vec::<Option<String>>::new());
        assert!(elements("a,b").is_err());
        assert!(elements("{a,,b}").is_err());
        assert!(elements("{{1},{2}}").is_err());
    }
}
