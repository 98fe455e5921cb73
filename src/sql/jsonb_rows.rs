//! `jsonb_each(doc)` and `jsonb_each_text(doc)` (and their `json_` names) in FROM: a row
//! per key of an object, columns `key` and `value` (the value's jsonb text, typed text as
//! `jsonb_array_elements`' elements are; or with `_text`, text with JSON null as NULL), in
//! jsonb's key order. Each becomes two set-returning calls run in step in a select
//! list — `SELECT unnest(sabot_jsonb_each_keys(doc)) AS key,
//! unnest(sabot_jsonb_each_values(doc)) AS value` — as a derived table (`sql::lateral`
//! moves one over the columns of the relation before it into that relation's select list).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, ListBuilder, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::Result as DfResult;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use serde_json::Value;

use crate::common::pg_text::jsonb_text;
use crate::common::{Error, SqlState};

pub fn register(ctx: &SessionContext) {
    for part in [Part::Keys, Part::Values, Part::Texts] {
        ctx.register_udf(ScalarUDF::new_from_impl(EachPart {
            part,
            signature: Signature::any(1, Volatility::Immutable),
        }));
    }
}

/// Whether `name` is a function this module expands, and whether its values are text.
pub fn each_function(name: &str) -> Option<bool> {
    match name.to_ascii_lowercase().as_str() {
        "jsonb_each" | "json_each" => Some(false),
        "jsonb_each_text" | "json_each_text" => Some(true),
        _ => None,
    }
}

/// The select items of `jsonb_each[_text](arguments)`, named `key` and `value` or as
/// `columns` says.
pub fn items(arguments: &str, text: bool, columns: &[String]) -> Vec<String> {
    let values = if text { Part::Texts } else { Part::Values };
    let name = |i: usize, default: &str| {
        datafusion::sql::sqlparser::ast::Ident::with_quote(
            '"',
            columns.get(i).map_or(default, String::as_str),
        )
        .to_string()
    };
    vec![
        format!("unnest({}({arguments})) AS {}", Part::Keys.name(), name(0, "key")),
        format!("unnest({}({arguments})) AS {}", values.name(), name(1, "value")),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Part {
    Keys,
    Values,
    Texts,
}

impl Part {
    /// The list's item: text (the values of jsonb_each are jsonb texts, typed text as
    /// `jsonb_array_elements`' are).
    fn item(self) -> FieldRef {
        Arc::new(Field::new("item", DataType::Utf8, true))
    }

    fn name(self) -> &'static str {
        match self {
            Part::Keys => "sabot_jsonb_each_keys",
            Part::Values => "sabot_jsonb_each_values",
            Part::Texts => "sabot_jsonb_each_texts",
        }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct EachPart {
    part: Part,
    signature: Signature,
}

impl ScalarUDFImpl for EachPart {
    fn name(&self) -> &str {
        self.part.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::List(self.part.item()))
    }

    fn return_field_from_args(&self, _: ReturnFieldArgs) -> DfResult<FieldRef> {
        Ok(Arc::new(Field::new(self.name(), DataType::List(self.part.item()), true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let documents = args.args[0].to_array(args.number_rows)?;
        let out = parts(&documents, self.part)?;
        super::pg_functions::like_arguments(&args.args, out)
    }
}

/// Each document's keys (or values) in jsonb's key order; NULL for a NULL document.
fn parts(documents: &ArrayRef, part: Part) -> crate::common::Result<ArrayRef> {
    let mut out = ListBuilder::new(StringBuilder::new()).with_field(part.item());
    for row in 0..documents.len() {
        let Some(document) = super::jsonb::value_at(documents, row)? else {
            out.append(false);
            continue;
        };
        let Value::Object(map) = document else {
            let function = if part == Part::Texts { "jsonb_each_text" } else { "jsonb_each" };
            return Err(Error::new(
                SqlState::InvalidParameterValue,
                format!("cannot call {function} on a non-object"),
            ));
        };
        let mut entries: Vec<(&String, &Value)> = map.iter().collect();
        entries.sort_by(|(a, _), (b, _)| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
        for (key, value) in entries {
            match part {
                Part::Keys => out.values().append_value(key),
                Part::Values => out.values().append_value(jsonb_text(value)),
                Part::Texts => match value {
                    Value::Null => out.values().append_null(),
                    Value::String(s) => out.values().append_value(s),
                    other => out.values().append_value(jsonb_text(other)),
                },
            }
        }
        out.append(true);
    }
    Ok(Arc::new(out.finish()))
}
