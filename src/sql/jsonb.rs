//! `jsonb`: values are text in Postgres' jsonb output form (keys ordered shorter first,
//! `", "` and `": "`), in Utf8 columns marked `jsonb` (`SqlType::Jsonb`), so results carry
//! the jsonb type OID. This module registers the operators and functions over them:
//!
//! - `x::jsonb` (`sabot_jsonb`: parsed, 22P02 when it is not JSON, and normalized);
//! - `->`, `->>` (object field by key, array element by index, negative from the end),
//!   `#>`, `#>>` (by path, `'{a,0}'`), `@>` / `<@` (containment), `?` (key or string
//!   element exists), planned by [`JsonbOperators`];
//! - `to_jsonb`, `jsonb_build_object`, `jsonb_build_array`, `jsonb_typeof`,
//!   `jsonb_array_length`, `jsonb_extract_path[_text]`, `jsonb_strip_nulls` (and their
//!   `json_` names);
//! - `jsonb_array_elements[_text]`, `jsonb_object_keys` in a select list: `unnest` of a
//!   list of the elements (or keys), so rows in batch queries and in views;
//! - `jsonb_agg(x [ORDER BY ...])`, rewritten by `sql::pg_compat` to
//!   `sabot_jsonb_array(array_agg(to_jsonb(x) ...))`, so views maintain it as `array_agg`.
//!
//! Each function parses its jsonb arguments per row (serde_json): exact, not fast.
//! Numbers go through serde_json's f64 (`1.50` prints `1.5`; Postgres keeps `1.50`).

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int32Array, ListBuilder, StringArray, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{DFSchema, Result as DfResult};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use datafusion::sql::sqlparser::ast::{self, BinaryOperator};
use serde_json::Value;

use crate::common::pg_text::jsonb_text;
use crate::common::{Error, SqlState, SqlType};

pub(super) type Evaluate = fn(&[ArrayRef], &[FieldRef], usize) -> crate::common::Result<ArrayRef>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Returns {
    Jsonb,
    Text,
    Boolean,
    Integer,
    /// A list of texts, unnested by the caller (a set-returning function).
    TextList,
}

/// One jsonb function: its name, the type it returns and how it computes a batch.
#[derive(Debug)]
struct JsonbFunction {
    name: &'static str,
    aliases: Vec<String>,
    signature: Signature,
    returns: Returns,
    evaluate: Evaluate,
}

impl PartialEq for JsonbFunction {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for JsonbFunction {}

impl std::hash::Hash for JsonbFunction {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for JsonbFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(match self.returns {
            Returns::Jsonb | Returns::Text => DataType::Utf8,
            Returns::Boolean => DataType::Boolean,
            Returns::Integer => DataType::Int32,
            Returns::TextList => DataType::new_list(DataType::Utf8, true),
        })
    }

    fn return_field_from_args(&self, _: ReturnFieldArgs) -> DfResult<FieldRef> {
        Ok(Arc::new(match self.returns {
            Returns::Jsonb => SqlType::Jsonb.to_field(self.name, true),
            Returns::Text => Field::new(self.name, DataType::Utf8, true),
            Returns::Boolean => Field::new(self.name, DataType::Boolean, true),
            Returns::Integer => Field::new(self.name, DataType::Int32, true),
            Returns::TextList => Field::new(self.name, DataType::new_list(DataType::Utf8, true), true),
        }))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        Ok(ColumnarValue::Array((self.evaluate)(&arrays, &args.arg_fields, args.number_rows)?))
    }
}

pub(super) fn function(
    name: &'static str,
    aliases: &[&str],
    signature: Signature,
    returns: Returns,
    evaluate: Evaluate,
) -> ScalarUDF {
    ScalarUDF::new_from_impl(JsonbFunction {
        name,
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        signature,
        returns,
        evaluate,
    })
}

pub fn register(ctx: &SessionContext) {
    let any = |n| Signature::any(n, Volatility::Immutable);
    let variadic = || Signature::variadic_any(Volatility::Immutable);
    let udfs = [
        function("sabot_jsonb", &[], any(1), Returns::Jsonb, |a, f, _| {
            rows(a, f, |v| Ok(Some(jsonb_text(&v[0]))))
        }),
        function("to_jsonb", &["to_json"], any(1), Returns::Jsonb, to_jsonb),
        function("jsonb_extract_path", &["json_extract_path"], variadic(), Returns::Jsonb, |a, f, _| {
            rows(a, f, |v| Ok(path_of(&v[0], &v[1..]).map(jsonb_text)))
        }),
        function(
            "jsonb_extract_path_text",
            &["json_extract_path_text"],
            variadic(),
            Returns::Text,
            |a, f, _| rows(a, f, |v| Ok(path_of(&v[0], &v[1..]).and_then(as_text))),
        ),
        function("jsonb_typeof", &["json_typeof"], any(1), Returns::Text, |a, f, _| {
            rows(a, f, |v| Ok(Some(type_name(&v[0]).to_string())))
        }),
        function("jsonb_array_length", &["json_array_length"], any(1), Returns::Integer, array_lengths),
        function("jsonb_strip_nulls", &["json_strip_nulls"], any(1), Returns::Jsonb, |a, f, _| {
            rows(a, f, |v| Ok(Some(jsonb_text(&strip_nulls(v[0].clone())))))
        }),
        function("jsonb_build_array", &["json_build_array"], variadic(), Returns::Jsonb, build_arrays),
        function("jsonb_build_object", &["json_build_object"], variadic(), Returns::Jsonb, build_objects),
        function("sabot_jsonb_array", &[], any(1), Returns::Jsonb, aggregated_arrays),
        function("sabot_jsonb_elements", &[], any(1), Returns::TextList, |a, _, _| {
            lists(a, |v| {
                elements(v, "jsonb_array_elements")
                    .map(|items| items.iter().map(|i| Some(jsonb_text(i))).collect())
            })
        }),
        function("sabot_jsonb_elements_text", &[], any(1), Returns::TextList, |a, _, _| {
            lists(a, |v| {
                elements(v, "jsonb_array_elements_text").map(|items| items.iter().map(as_text).collect())
            })
        }),
        function("sabot_jsonb_keys", &[], any(1), Returns::TextList, |a, _, _| lists(a, keys)),
    ];
    for udf in udfs.into_iter().chain(OPERATOR_FUNCTIONS.iter().map(|name| udf_named(name))) {
        ctx.register_udf(udf);
    }
}

/// The planner of the jsonb operators, for each context's session state.
pub fn operators() -> Arc<dyn ExprPlanner> {
    Arc::new(JsonbOperators)
}

/// The JSON value of a document argument's row `row` (NULL: None): text is parsed as
/// jsonb (an operator's left side is jsonb), other values converted as `to_jsonb` does.
pub(super) fn value_at(array: &ArrayRef, row: usize) -> crate::common::Result<Option<Value>> {
    if let Some(text) = super::jsonb_marks::unmarked(array) {
        return value_at(text, row);
    }
    if null_at(array, row) {
        return Ok(None);
    }
    if let Some(strings) = array.as_string_opt::<i32>() {
        return parse(strings.value(row)).map(Some);
    }
    to_value(array, row).map(Some)
}

/// A bare NULL is a column of type Null, whose rows `is_null` does not report.
fn null_at(array: &ArrayRef, row: usize) -> bool {
    array.data_type() == &DataType::Null || array.is_null(row)
}

/// jsonb input: a JSON text (22P02 otherwise).
pub fn parse(text: &str) -> crate::common::Result<Value> {
    serde_json::from_str(text).map_err(|e| {
        Error::new(SqlState::InvalidTextRepresentation, "invalid input syntax for type json")
            .with_detail(format!("{e}: {}", text.chars().take(60).collect::<String>()))
    })
}

/// A non-jsonb SQL value as JSON: numbers, booleans, strings, arrays, structs as objects,
/// other types as their text.
fn to_value(array: &ArrayRef, row: usize) -> crate::common::Result<Value> {
    use datafusion::arrow::datatypes::DataType as D;
    if null_at(array, row) {
        return Ok(Value::Null);
    }
    let scalar = datafusion::common::ScalarValue::try_from_array(array, row)?;
    Ok(match array.data_type() {
        D::Boolean => Value::Bool(array.as_boolean().value(row)),
        D::Int8 | D::Int16 | D::Int32 | D::Int64 | D::UInt8 | D::UInt16 | D::UInt32 | D::UInt64 => {
            serde_json::from_str(&scalar.to_string()).unwrap_or(Value::Null)
        }
        D::Float16 | D::Float32 | D::Float64 | D::Decimal128(..) | D::Decimal256(..) => {
            let text = scalar.to_string();
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        }
        D::Utf8 | D::LargeUtf8 | D::Utf8View => Value::String(scalar.to_string()),
        D::List(_) | D::LargeList(_) => {
            let list = datafusion::arrow::compute::cast(
                &array.slice(row, 1),
                &DataType::new_list(list_item(array), true),
            )?;
            let items = list.as_list::<i32>().value(0);
            Value::Array((0..items.len()).map(|i| to_value(&items, i)).collect::<crate::common::Result<_>>()?)
        }
        D::Struct(fields) => {
            let parts = array.as_struct();
            let mut object = serde_json::Map::new();
            for (i, field) in fields.iter().enumerate() {
                object.insert(field.name().clone(), to_value(parts.column(i), row)?);
            }
            Value::Object(object)
        }
        // Dates and timestamps in ISO 8601 (`2026-01-01T00:00:00`), as Postgres writes them.
        _ => Value::String(scalar.to_string()),
    })
}

fn list_item(array: &ArrayRef) -> DataType {
    match array.data_type() {
        DataType::List(item) | DataType::LargeList(item) => item.data_type().clone(),
        other => other.clone(),
    }
}

/// Applies `compute` to each row's JSON arguments (NULL when any is NULL).
fn rows(
    arrays: &[ArrayRef],
    fields: &[FieldRef],
    compute: impl Fn(&[Value]) -> crate::common::Result<Option<String>>,
) -> crate::common::Result<ArrayRef> {
    let length = arrays.first().map_or(0, |a| a.len());
    let mut out = Vec::with_capacity(length);
    for row in 0..length {
        out.push(match row_values(arrays, fields, row)? {
            Some(values) => compute(&values)?,
            None => None,
        });
    }
    Ok(Arc::new(StringArray::from(out)))
}

/// `documents`: how many leading arguments are jsonb documents (text parsed as JSON).
fn booleans(
    arrays: &[ArrayRef],
    fields: &[FieldRef],
    documents: usize,
    compute: impl Fn(&[Value]) -> bool,
) -> crate::common::Result<ArrayRef> {
    let length = arrays.first().map_or(0, |a| a.len());
    let mut out = Vec::with_capacity(length);
    for row in 0..length {
        out.push(row_values_with(arrays, fields, row, documents)?.map(|values| compute(&values)));
    }
    Ok(Arc::new(BooleanArray::from(out)))
}

/// The row's arguments as JSON: the first (the document) parsed as jsonb, the others as
/// JSON when they are jsonb and as plain values (keys, indexes, paths) otherwise.
fn row_values(
    arrays: &[ArrayRef],
    fields: &[FieldRef],
    row: usize,
) -> crate::common::Result<Option<Vec<Value>>> {
    row_values_with(arrays, fields, row, 1)
}

pub(super) fn row_values_with(
    arrays: &[ArrayRef],
    fields: &[FieldRef],
    row: usize,
    documents: usize,
) -> crate::common::Result<Option<Vec<Value>>> {
    let mut values = Vec::with_capacity(arrays.len());
    for (i, array) in arrays.iter().enumerate() {
        let field = fields.get(i);
        let value = if i < documents { value_at(array, row)? } else { argument_at(array, field, row)? };
        match value {
            Some(value) => values.push(value),
            None => return Ok(None),
        }
    }
    Ok(Some(values))
}

pub(super) fn argument_at(
    array: &ArrayRef,
    field: Option<&FieldRef>,
    row: usize,
) -> crate::common::Result<Option<Value>> {
    if null_at(array, row) {
        return Ok(None);
    }
    if field.is_some_and(|f| SqlType::from_arrow(f) == SqlType::Jsonb)
        || super::jsonb_marks::unmarked(array).is_some()
    {
        return value_at(array, row);
    }
    to_value(array, row).map(Some)
}

/// `doc -> key` / `doc -> index`.
fn get<'a>(doc: &'a Value, key: &Value) -> Option<&'a Value> {
    match (doc, key) {
        (Value::Object(map), Value::String(key)) => map.get(key),
        (Value::Array(items), Value::Number(n)) => {
            let index = n.as_i64()?;
            let index = if index < 0 { items.len() as i64 + index } else { index };
            usize::try_from(index).ok().and_then(|i| items.get(i))
        }
        _ => None,
    }
}

/// `doc #> '{a,0}'`: the path as a text array literal or an array of text.
fn path<'a>(doc: &'a Value, path: &Value) -> Option<&'a Value> {
    let steps: Vec<Value> = match path {
        Value::String(text) => parse_text_array(text)?.into_iter().map(Value::String).collect(),
        Value::Array(items) => items.clone(),
        _ => return None,
    };
    path_of(doc, &steps)
}

fn path_of<'a>(doc: &'a Value, steps: &[Value]) -> Option<&'a Value> {
    steps.iter().try_fold(doc, |at, step| match (at, step) {
        (Value::Array(_), Value::String(text)) => get(at, &Value::from(text.trim().parse::<i64>().ok()?)),
        _ => get(at, step),
    })
}

/// `{a,b}` (Postgres' text form of a text array, without quoting).
pub(super) fn parse_text_array(text: &str) -> Option<Vec<String>> {
    let inner = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    if inner.trim().is_empty() {
        return Some(Vec::new());
    }
    Some(inner.split(',').map(|s| s.trim().trim_matches('"').to_string()).collect())
}

/// `->>`: strings without their quotes, JSON null as SQL NULL, the rest as jsonb text.
fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(jsonb_text(other)),
    }
}

/// `a @> b`, as Postgres defines jsonb containment.
fn contains(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            b.iter().all(|(k, v)| a.get(k).is_some_and(|av| contains(av, v)))
        }
        (Value::Array(a), Value::Array(b)) => b.iter().all(|bv| a.iter().any(|av| contains(av, bv))),
        // An array contains a scalar it has as an element.
        (Value::Array(a), scalar) if !scalar.is_object() && !scalar.is_array() => {
            a.iter().any(|av| av == scalar)
        }
        (a, b) => a == b,
    }
}

/// `doc ? key`: an object's key, or a string element of an array, or the string itself.
fn exists(doc: &Value, key: &Value) -> bool {
    let Value::String(key) = key else { return false };
    match doc {
        Value::Object(map) => map.contains_key(key),
        Value::Array(items) => items.iter().any(|i| i.as_str() == Some(key)),
        Value::String(s) => s == key,
        _ => false,
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn strip_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, strip_nulls(v))).collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

/// A set-returning function's rows, one list per input row (NULL for a NULL document).
fn lists(
    arrays: &[ArrayRef],
    compute: impl Fn(&Value) -> crate::common::Result<Vec<Option<String>>>,
) -> crate::common::Result<ArrayRef> {
    let mut builder = ListBuilder::new(StringBuilder::new());
    for row in 0..arrays[0].len() {
        match value_at(&arrays[0], row)? {
            Some(document) => {
                for item in compute(&document)? {
                    builder.values().append_option(item);
                }
                builder.append(true);
            }
            None => builder.append(false),
        }
    }
    Ok(Arc::new(builder.finish()))
}

/// The elements of an array document (22023 for any other).
fn elements<'a>(document: &'a Value, function: &str) -> crate::common::Result<&'a Vec<Value>> {
    match document {
        Value::Array(items) => Ok(items),
        Value::Object(_) => {
            Err(Error::new(SqlState::InvalidParameterValue, "cannot extract elements from an object"))
        }
        _ => Err(Error::new(SqlState::InvalidParameterValue, "cannot extract elements from a scalar")
            .with_hint(format!("{function} takes an array"))),
    }
}

/// `jsonb_object_keys`: an object's keys, in jsonb's key order.
fn keys(document: &Value) -> crate::common::Result<Vec<Option<String>>> {
    match document {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
            Ok(keys.into_iter().map(|k| Some(k.clone())).collect())
        }
        Value::Array(_) => {
            Err(Error::new(SqlState::InvalidParameterValue, "cannot call jsonb_object_keys on an array"))
        }
        _ => Err(Error::new(SqlState::InvalidParameterValue, "cannot call jsonb_object_keys on a scalar")),
    }
}

/// `to_jsonb(x)`: jsonb stays itself, text becomes a JSON string; NULL stays NULL.
fn to_jsonb(arrays: &[ArrayRef], fields: &[FieldRef], _: usize) -> crate::common::Result<ArrayRef> {
    let out = (0..arrays[0].len())
        .map(|row| Ok(argument_at(&arrays[0], fields.first(), row)?.map(|v| jsonb_text(&v))))
        .collect::<crate::common::Result<Vec<_>>>()?;
    Ok(Arc::new(StringArray::from(out)))
}

fn array_lengths(arrays: &[ArrayRef], _: &[FieldRef], _: usize) -> crate::common::Result<ArrayRef> {
    let mut out = Vec::with_capacity(arrays[0].len());
    for row in 0..arrays[0].len() {
        out.push(match value_at(&arrays[0], row)? {
            None => None,
            Some(Value::Array(items)) => Some(i32::try_from(items.len()).unwrap_or(i32::MAX)),
            Some(Value::Object(_)) => {
                return Err(Error::new(
                    SqlState::InvalidParameterValue,
                    "cannot get array length of a non-array",
                ));
            }
            Some(_) => {
                return Err(Error::new(
                    SqlState::InvalidParameterValue,
                    "cannot get array length of a scalar",
                ));
            }
        });
    }
    Ok(Arc::new(Int32Array::from(out)))
}

/// Every argument of every row as a JSON value (SQL NULL as JSON null).
fn row_arguments(
    arrays: &[ArrayRef],
    fields: &[FieldRef],
    rows: usize,
) -> crate::common::Result<Vec<Vec<Value>>> {
    (0..rows)
        .map(|row| {
            arrays
                .iter()
                .enumerate()
                .map(|(i, a)| argument_at(a, fields.get(i), row).map(|v| v.unwrap_or(Value::Null)))
                .collect()
        })
        .collect()
}

fn build_arrays(arrays: &[ArrayRef], fields: &[FieldRef], rows: usize) -> crate::common::Result<ArrayRef> {
    let built = row_arguments(arrays, fields, rows)?
        .into_iter()
        .map(|values| Some(jsonb_text(&Value::Array(values))));
    Ok(Arc::new(built.collect::<StringArray>()))
}

fn build_objects(arrays: &[ArrayRef], fields: &[FieldRef], rows: usize) -> crate::common::Result<ArrayRef> {
    if !arrays.len().is_multiple_of(2) {
        return Err(Error::new(
            SqlState::InvalidParameterValue,
            "argument list must have even number of elements",
        )
        .with_hint("The arguments of jsonb_build_object() must consist of alternating keys and values."));
    }
    let mut out = Vec::with_capacity(rows);
    for values in row_arguments(arrays, fields, rows)? {
        let mut object = serde_json::Map::new();
        for pair in values.chunks(2) {
            let key = match &pair[0] {
                Value::Null => {
                    return Err(Error::new(
                        SqlState::InvalidParameterValue,
                        "argument 1: key must not be null",
                    ));
                }
                Value::String(s) => s.clone(),
                other => jsonb_text(other),
            };
            object.insert(key, pair[1].clone());
        }
        out.push(Some(jsonb_text(&Value::Object(object))));
    }
    Ok(Arc::new(StringArray::from(out)))
}

/// `sabot_jsonb_array(array_agg(to_jsonb(x)))`: the jsonb texts as one JSON array.
fn aggregated_arrays(arrays: &[ArrayRef], _: &[FieldRef], _: usize) -> crate::common::Result<ArrayRef> {
    let lists =
        arrays[0].as_list_opt::<i32>().ok_or_else(|| Error::internal("sabot_jsonb_array of a non-list"))?;
    let mut out = Vec::with_capacity(lists.len());
    for row in 0..lists.len() {
        if lists.is_null(row) {
            out.push(None);
            continue;
        }
        let items = lists.value(row);
        let texts = datafusion::arrow::compute::cast(&items, &DataType::Utf8)?;
        let texts = texts.as_string::<i32>();
        let values: Vec<Value> = (0..texts.len())
            .map(|i| if texts.is_null(i) { Ok(Value::Null) } else { parse(texts.value(i)) })
            .collect::<crate::common::Result<_>>()?;
        out.push(Some(jsonb_text(&Value::Array(values))));
    }
    Ok(Arc::new(StringArray::from(out)))
}

/// Plans `->`, `->>`, `#>`, `#>>`, `?` and, over jsonb (text) operands, `@>` / `<@`.
#[derive(Debug)]
struct JsonbOperators;

impl ExprPlanner for JsonbOperators {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> DfResult<PlannerResult<RawBinaryExpr>> {
        let call = |name: &str, args: Vec<Expr>| {
            Expr::ScalarFunction(datafusion::logical_expr::expr::ScalarFunction::new_udf(
                Arc::new(udf_named(name)),
                args,
            ))
        };
        let textual = |e: &Expr| {
            matches!(e.get_type(schema), Ok(DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8))
        };
        let RawBinaryExpr { op, left, right } = expr;
        let planned = match op {
            BinaryOperator::Arrow => call("sabot_jsonb_get", vec![left, right]),
            BinaryOperator::LongArrow => call("sabot_jsonb_get_text", vec![left, right]),
            BinaryOperator::HashArrow => call("sabot_jsonb_path", vec![left, right]),
            BinaryOperator::HashLongArrow => call("sabot_jsonb_path_text", vec![left, right]),
            BinaryOperator::Question => call("sabot_jsonb_exists", vec![left, right]),
            BinaryOperator::AtArrow if textual(&left) => call("sabot_jsonb_contains", vec![left, right]),
            BinaryOperator::ArrowAt if textual(&left) => call("sabot_jsonb_contains", vec![right, left]),
            op => return Ok(PlannerResult::Original(RawBinaryExpr { op, left, right })),
        };
        Ok(PlannerResult::Planned(planned))
    }
}

const OPERATOR_FUNCTIONS: [&str; 6] = [
    "sabot_jsonb_get",
    "sabot_jsonb_get_text",
    "sabot_jsonb_path",
    "sabot_jsonb_path_text",
    "sabot_jsonb_exists",
    "sabot_jsonb_contains",
];

/// The operator functions, by name (built once per planned operator).
fn udf_named(name: &str) -> ScalarUDF {
    let any = |n| Signature::any(n, Volatility::Immutable);
    let (returns, evaluate): (Returns, Evaluate) = match name {
        "sabot_jsonb_get" => {
            (Returns::Jsonb, |a, f, _| rows(a, f, |v| Ok(get(&v[0], &v[1]).map(jsonb_text))))
        }
        "sabot_jsonb_get_text" => {
            (Returns::Text, |a, f, _| rows(a, f, |v| Ok(get(&v[0], &v[1]).and_then(as_text))))
        }
        "sabot_jsonb_path" => {
            (Returns::Jsonb, |a, f, _| rows(a, f, |v| Ok(path(&v[0], &v[1]).map(jsonb_text))))
        }
        "sabot_jsonb_path_text" => {
            (Returns::Text, |a, f, _| rows(a, f, |v| Ok(path(&v[0], &v[1]).and_then(as_text))))
        }
        "sabot_jsonb_exists" => (Returns::Boolean, |a, f, _| booleans(a, f, 1, |v| exists(&v[0], &v[1]))),
        _ => (Returns::Boolean, |a, f, _| booleans(a, f, 2, |v| contains(&v[0], &v[1]))),
    };
    let name = OPERATOR_FUNCTIONS.iter().copied().find(|n| *n == name).unwrap_or("sabot_jsonb_contains");
    function(name, &[], any(2), returns, evaluate)
}

/// `x::jsonb` / `x::json` as `sabot_jsonb(x)` (the AST rewrite of `sql::pg_compat`).
pub fn cast(data_type: &ast::DataType, inner: &ast::Expr) -> Option<ast::Expr> {
    let named_json = match data_type {
        ast::DataType::JSON | ast::DataType::JSONB => true,
        ast::DataType::Custom(name, modifiers) => {
            modifiers.is_empty() && matches!(name.to_string().to_ascii_lowercase().as_str(), "json" | "jsonb")
        }
        _ => false,
    };
    named_json.then(|| call("sabot_jsonb", vec![inner.clone()]))
}

/// `jsonb_array_elements(x)`, `jsonb_array_elements_text(x)`, `jsonb_object_keys(x)` as
/// `unnest` of a list (`sabot_jsonb_elements(x)`, ...): rows in a select list, in batch
/// queries and views alike.
pub fn set_returning(function: &ast::Function) -> Option<ast::Expr> {
    let [ast::ObjectNamePart::Identifier(name)] = function.name.0.as_slice() else { return None };
    let inner = match name.value.to_ascii_lowercase().as_str() {
        "jsonb_array_elements" | "json_array_elements" => "sabot_jsonb_elements",
        "jsonb_array_elements_text" | "json_array_elements_text" => "sabot_jsonb_elements_text",
        "jsonb_object_keys" | "json_object_keys" => "sabot_jsonb_keys",
        _ => return None,
    };
    let ast::FunctionArguments::List(list) = &function.args else { return None };
    let [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(value))] = list.args.as_slice() else {
        return None;
    };
    Some(call("unnest", vec![call(inner, vec![value.clone()])]))
}

/// `jsonb_agg(x ...)` as `sabot_jsonb_array(array_agg(to_jsonb(x) ...))`, keeping its
/// ORDER BY, FILTER and OVER: an `array_agg`, which views maintain.
pub fn aggregate(function: &ast::Function) -> Option<ast::Expr> {
    let [ast::ObjectNamePart::Identifier(name)] = function.name.0.as_slice() else { return None };
    if !["jsonb_agg", "json_agg"].contains(&name.value.to_ascii_lowercase().as_str()) {
        return None;
    }
    let ast::FunctionArguments::List(list) = &function.args else { return None };
    let [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(value))] = list.args.as_slice() else {
        return None;
    };
    let mut array_agg = function.clone();
    array_agg.name = ast::ObjectName::from(vec![ast::Ident::new("array_agg")]);
    let mut arguments = list.clone();
    arguments.args =
        vec![ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(call("to_jsonb", vec![value.clone()])))];
    array_agg.args = ast::FunctionArguments::List(arguments);
    Some(call("sabot_jsonb_array", vec![ast::Expr::Function(array_agg)]))
}

fn call(name: &str, args: Vec<ast::Expr>) -> ast::Expr {
    ast::Expr::Function(ast::Function {
        name: ast::ObjectName::from(vec![ast::Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: ast::FunctionArguments::None,
        args: ast::FunctionArguments::List(ast::FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|a| ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(a)))
                .collect(),
            clauses: Vec::new(),
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: Vec::new(),
    })
}
