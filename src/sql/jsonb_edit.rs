//! Functions and operators that build a changed jsonb document (plan revision 12), as
//! Postgres defines them:
//!
//! - `a || b` of two jsonb values: objects merge (the right one's value for a key both
//!   have), arrays concatenate, and any other value counts as a one-element array. Before,
//!   DataFusion concatenated the two texts (`{"a": 1}{"b": 2}`), a silent difference.
//! - `doc - 'key'` (an object's key, or an array's string elements), `doc - 2` (an array's
//!   element; negative from the end), `doc - '{a,b}'::text[]` (several keys), `doc #-
//!   '{a,0}'` (the element at a path);
//! - `jsonb_set(doc, path, value [, create_if_missing])`, `jsonb_insert(doc, path, value
//!   [, insert_after])`;
//! - `jsonb_object_agg(k, v [ORDER BY ...])`, rewritten (with `sql::jsonb`'s aggregates) to
//!   `sabot_jsonb_object_of_pairs(array_agg(jsonb_build_array(k, v) ...))`, so views
//!   maintain it as an `array_agg`; a key given twice keeps the last value.
//!
//! The operators are planned by [`JsonbEdits`] only where an operand is jsonb, so `||`
//! of texts and `-` of numbers plan as before.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use datafusion::arrow::datatypes::FieldRef;
use datafusion::common::{DFSchema, Result as DfResult, ScalarValue};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{Expr, ExprSchemable, ScalarUDF, Signature, Volatility};
use datafusion::sql::sqlparser::ast::{self, BinaryOperator};
use serde_json::Value;

use super::jsonb::{Returns, argument_at, function, parse_text_array, value_at};
use crate::common::pg_text::jsonb_text;
use crate::common::{Error, SqlState, SqlType};

/// The planner's name (its `Debug` form), by which older plan revisions leave it out.
pub const PLANNER_NAME: &str = "JsonbEdits";

pub fn register(ctx: &SessionContext) {
    for udf in functions() {
        ctx.register_udf(udf);
    }
}

fn functions() -> [ScalarUDF; 6] {
    let any = |n| Signature::any(n, Volatility::Immutable);
    let one_of = |counts: &[usize]| {
        Signature::one_of(
            counts.iter().map(|&n| datafusion::logical_expr::TypeSignature::Any(n)).collect(),
            Volatility::Immutable,
        )
    };
    [
        function("sabot_jsonb_concat", &[], any(2), Returns::Jsonb, |a, f, _| {
            edited(a, f, &[0, 1], |v| Ok(Some(concat(&v[0], &v[1]))))
        }),
        function("sabot_jsonb_delete", &[], any(2), Returns::Jsonb, |a, f, _| {
            edited(a, f, &[0], |v| delete(&v[0], &v[1]).map(Some))
        }),
        function("sabot_jsonb_delete_path", &[], any(2), Returns::Jsonb, |a, f, _| {
            edited(a, f, &[0], |v| Ok(Some(edit_at(&v[0], &steps(&v[1])?, 1, Edit::Delete)?)))
        }),
        function("jsonb_set", &[], one_of(&[3, 4]), Returns::Jsonb, |a, f, _| {
            edited(a, f, &[0, 2], |v| {
                let create = v.get(3).is_none_or(|c| c.as_bool() != Some(false));
                Ok(Some(edit_at(&v[0], &steps(&v[1])?, 1, Edit::Set { value: &v[2], create })?))
            })
        }),
        function("jsonb_insert", &[], one_of(&[3, 4]), Returns::Jsonb, |a, f, _| {
            edited(a, f, &[0, 2], |v| {
                let after = v.get(3).is_some_and(|c| c.as_bool() == Some(true));
                Ok(Some(edit_at(&v[0], &steps(&v[1])?, 1, Edit::Insert { value: &v[2], after })?))
            })
        }),
        function("sabot_jsonb_object_of_pairs", &[], any(1), Returns::Jsonb, objects_of_pairs),
    ]
}

/// The planner of `||`, `-` and `#-` over jsonb, for each context's session state.
pub fn operators() -> Arc<dyn ExprPlanner> {
    Arc::new(JsonbEdits)
}

/// Applies `compute` to each row's arguments — those at `documents` parsed as jsonb (text
/// is JSON there, as an untyped literal is in Postgres), the others as jsonb when they are,
/// else as values; NULL when any argument is NULL.
fn edited(
    arrays: &[ArrayRef],
    fields: &[FieldRef],
    documents: &[usize],
    compute: impl Fn(&[Value]) -> crate::common::Result<Option<Value>>,
) -> crate::common::Result<ArrayRef> {
    let length = arrays.first().map_or(0, |a| a.len());
    let mut out = Vec::with_capacity(length);
    let mut values = Vec::with_capacity(arrays.len());
    'rows: for row in 0..length {
        values.clear();
        for (i, array) in arrays.iter().enumerate() {
            let value = if documents.contains(&i) {
                value_at(array, row)?
            } else {
                argument_at(array, fields.get(i), row)?
            };
            match value {
                Some(value) => values.push(value),
                None => {
                    out.push(None);
                    continue 'rows;
                }
            }
        }
        out.push(compute(&values)?.map(|v| jsonb_text(&v)));
    }
    Ok(Arc::new(StringArray::from(out)))
}

fn concat(a: &Value, b: &Value) -> Value {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            let mut merged = a.clone();
            merged.extend(b.iter().map(|(k, v)| (k.clone(), v.clone())));
            Value::Object(merged)
        }
        (a, b) => {
            let as_items = |v: &Value| match v {
                Value::Array(items) => items.clone(),
                other => vec![other.clone()],
            };
            let mut items = as_items(a);
            items.extend(as_items(b));
            Value::Array(items)
        }
    }
}

/// `doc - key`, `doc - index`, `doc - keys`.
fn delete(doc: &Value, what: &Value) -> crate::common::Result<Value> {
    let scalar = || Error::new(SqlState::InvalidParameterValue, "cannot delete from scalar");
    match (doc, what) {
        (Value::Object(map), Value::String(key)) => {
            let mut map = map.clone();
            map.remove(key);
            Ok(Value::Object(map))
        }
        (Value::Array(items), Value::String(key)) => {
            Ok(Value::Array(items.iter().filter(|i| i.as_str() != Some(key)).cloned().collect()))
        }
        (Value::Object(_) | Value::Array(_), Value::Array(keys)) => keys
            .iter()
            .try_fold(doc.clone(), |doc, key| if key.is_null() { Ok(doc) } else { delete(&doc, key) }),
        (Value::Array(items), Value::Number(n)) => {
            let mut items = items.clone();
            if let Some(i) = n.as_i64().and_then(|i| position(i, items.len())) {
                items.remove(i);
            }
            Ok(Value::Array(items))
        }
        (Value::Object(_), Value::Number(_)) => {
            Err(Error::new(SqlState::InvalidParameterValue, "cannot delete from object using integer index"))
        }
        _ => Err(scalar()),
    }
}

/// An index into `length` elements, negative from the end; None when out of range.
fn position(index: i64, length: usize) -> Option<usize> {
    let index = if index < 0 { length as i64 + index } else { index };
    usize::try_from(index).ok().filter(|&i| i < length)
}

/// A path argument (`'{a,0}'` or a text array) as its steps.
fn steps(path: &Value) -> crate::common::Result<Vec<String>> {
    let steps = match path {
        Value::String(text) => parse_text_array(text),
        Value::Array(items) => items.iter().map(|i| i.as_str().map(str::to_string)).collect(),
        _ => None,
    };
    steps.ok_or_else(|| Error::new(SqlState::InvalidTextRepresentation, "malformed array literal"))
}

#[derive(Clone, Copy)]
enum Edit<'a> {
    Delete,
    Set { value: &'a Value, create: bool },
    Insert { value: &'a Value, after: bool },
}

/// `doc` with `edit` applied at `path` (whose first step is step `depth` of the whole
/// path); unchanged when the path leads nowhere.
fn edit_at(doc: &Value, path: &[String], depth: usize, edit: Edit) -> crate::common::Result<Value> {
    let Some((step, rest)) = path.split_first() else {
        // An empty path: jsonb_set and #- leave the document as it is.
        return Ok(doc.clone());
    };
    let last = rest.is_empty();
    match doc {
        Value::Object(map) => {
            let mut map = map.clone();
            match (last, edit) {
                (false, _) => {
                    if let Some(inner) = map.get(step) {
                        let changed = edit_at(inner, rest, depth + 1, edit)?;
                        map.insert(step.clone(), changed);
                    }
                }
                (true, Edit::Delete) => _ = map.remove(step),
                (true, Edit::Set { value, create }) => {
                    if create || map.contains_key(step) {
                        map.insert(step.clone(), value.clone());
                    }
                }
                (true, Edit::Insert { value, .. }) => {
                    if map.contains_key(step) {
                        return Err(Error::new(
                            SqlState::InvalidParameterValue,
                            "cannot replace existing key",
                        )
                        .with_hint("Try using the function jsonb_set to replace key value."));
                    }
                    map.insert(step.clone(), value.clone());
                }
            }
            Ok(Value::Object(map))
        }
        Value::Array(items) => {
            let Ok(index) = step.trim().parse::<i64>() else {
                return Err(Error::new(
                    SqlState::InvalidTextRepresentation,
                    format!("path element at position {depth} is not an integer: \"{step}\""),
                ));
            };
            let mut items = items.clone();
            let found = position(index, items.len());
            match (last, edit, found) {
                (false, _, Some(i)) => items[i] = edit_at(&items[i], rest, depth + 1, edit)?,
                (false, _, None) => {}
                (true, Edit::Delete, Some(i)) => _ = items.remove(i),
                (true, Edit::Delete, None) => {}
                (true, Edit::Set { value, .. }, Some(i)) => items[i] = value.clone(),
                (true, Edit::Set { value, create: true }, None) => {
                    if index < 0 {
                        items.insert(0, value.clone())
                    } else {
                        items.push(value.clone())
                    }
                }
                (true, Edit::Set { create: false, .. }, None) => {}
                (true, Edit::Insert { value, after }, Some(i)) => {
                    items.insert(if after { i + 1 } else { i }, value.clone())
                }
                (true, Edit::Insert { value, .. }, None) => {
                    if index < 0 {
                        items.insert(0, value.clone())
                    } else {
                        items.push(value.clone())
                    }
                }
            }
            Ok(Value::Array(items))
        }
        _ => {
            let action = if matches!(edit, Edit::Delete) { "delete" } else { "set" };
            Err(Error::new(SqlState::InvalidParameterValue, format!("cannot {action} path in scalar")))
        }
    }
}

/// `sabot_jsonb_object_of_pairs(array_agg(jsonb_build_array(k, v)))`: one object.
fn objects_of_pairs(arrays: &[ArrayRef], _: &[FieldRef], _: usize) -> crate::common::Result<ArrayRef> {
    let lists = arrays[0]
        .as_list_opt::<i32>()
        .ok_or_else(|| Error::internal("sabot_jsonb_object_of_pairs of a non-list"))?;
    let mut out = Vec::with_capacity(lists.len());
    for row in 0..lists.len() {
        if lists.is_null(row) {
            out.push(None);
            continue;
        }
        let pairs = lists.value(row);
        let pairs = pairs.as_string::<i32>();
        let mut object = serde_json::Map::new();
        for pair in pairs.iter().flatten() {
            let pair = super::jsonb::parse(pair)?;
            let (Some(key), Some(value)) = (pair.get(0), pair.get(1)) else { continue };
            let key = match key {
                Value::Null => {
                    return Err(Error::new(SqlState::InvalidParameterValue, "field name must not be null"));
                }
                Value::String(s) => s.clone(),
                other => jsonb_text(other),
            };
            object.insert(key, value.clone());
        }
        out.push(Some(jsonb_text(&Value::Object(object))));
    }
    Ok(Arc::new(StringArray::from(out)))
}

/// `jsonb_object_agg(k, v ...)` as `sabot_jsonb_object_of_pairs(array_agg(jsonb_build_array(k,
/// v) ...))`, keeping its ORDER BY, FILTER and OVER.
pub fn aggregate(function: &ast::Function) -> Option<ast::Expr> {
    let [ast::ObjectNamePart::Identifier(name)] = function.name.0.as_slice() else { return None };
    if !["jsonb_object_agg", "json_object_agg"].contains(&name.value.to_ascii_lowercase().as_str()) {
        return None;
    }
    let ast::FunctionArguments::List(list) = &function.args else { return None };
    let [
        ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(key)),
        ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(value)),
    ] = list.args.as_slice()
    else {
        return None;
    };
    let mut array_agg = function.clone();
    array_agg.name = ast::ObjectName::from(vec![ast::Ident::new("array_agg")]);
    let mut arguments = list.clone();
    let pair = super::pg_compat::template_expr(&format!("jsonb_build_array({key}, {value})"))?;
    arguments.args = vec![ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(pair))];
    array_agg.args = ast::FunctionArguments::List(arguments);
    super::pg_compat::template_expr(&format!("sabot_jsonb_object_of_pairs({array_agg})"))
}

#[derive(Debug)]
struct JsonbEdits;

impl ExprPlanner for JsonbEdits {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> DfResult<PlannerResult<RawBinaryExpr>> {
        // A cast keeps its operand's field metadata, but `doc::text` is text.
        let jsonb = |e: &Expr| {
            !matches!(e, Expr::Cast(_) | Expr::TryCast(_))
                && e.to_field(schema).is_ok_and(|(_, f)| SqlType::from_arrow(&f) == SqlType::Jsonb)
        };
        // An untyped string literal beside a jsonb value is read as jsonb, as in Postgres.
        let literal = |e: &Expr| matches!(e, Expr::Literal(ScalarValue::Utf8(_), _));
        let RawBinaryExpr { op, left, right } = expr;
        let name = match op {
            BinaryOperator::StringConcat
                if (jsonb(&left) && (jsonb(&right) || literal(&right)))
                    || (literal(&left) && jsonb(&right)) =>
            {
                "sabot_jsonb_concat"
            }
            BinaryOperator::Minus if jsonb(&left) => "sabot_jsonb_delete",
            BinaryOperator::HashMinus if jsonb(&left) => "sabot_jsonb_delete_path",
            op => return Ok(PlannerResult::Original(RawBinaryExpr { op, left, right })),
        };
        let function = functions().into_iter().find(|f| f.name() == name).expect("an edit function");
        Ok(PlannerResult::Planned(Expr::ScalarFunction(
            datafusion::logical_expr::expr::ScalarFunction::new_udf(Arc::new(function), vec![left, right]),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn concatenation_and_deletion() {
        assert_eq!(
            concat(&json!({"a": 1, "b": 2}), &json!({"b": 3, "c": 4})),
            json!({"a": 1, "b": 3, "c": 4})
        );
        assert_eq!(concat(&json!([1, 2]), &json!(3)), json!([1, 2, 3]));
        assert_eq!(concat(&json!({"a": 1}), &json!([2])), json!([{"a": 1}, 2]));
        assert_eq!(delete(&json!({"a": 1, "b": 2}), &json!("a")).unwrap(), json!({"b": 2}));
        assert_eq!(delete(&json!(["a", "b", "a"]), &json!("a")).unwrap(), json!(["b"]));
        assert_eq!(delete(&json!([1, 2, 3]), &json!(-1)).unwrap(), json!([1, 2]));
        assert_eq!(delete(&json!({"a": 1, "b": 2, "c": 3}), &json!(["a", "c"])).unwrap(), json!({"b": 2}));
        assert!(delete(&json!(1), &json!("a")).is_err());
    }

    #[test]
    fn edits_at_paths() {
        let path = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let doc = json!({"a": [1, {"b": 2}], "c": 3});
        let new = json!("x");
        let set = |p: &[&str], create| edit_at(&doc, &path(p), 1, Edit::Set { value: &new, create }).unwrap();
        assert_eq!(set(&["a", "1", "b"], true), json!({"a": [1, {"b": "x"}], "c": 3}));
        assert_eq!(set(&["d"], true), json!({"a": [1, {"b": 2}], "c": 3, "d": "x"}));
        assert_eq!(set(&["d"], false), doc);
        assert_eq!(set(&["a", "9"], true), json!({"a": [1, {"b": 2}, "x"], "c": 3}));
        assert_eq!(set(&["a", "-9"], true), json!({"a": ["x", 1, {"b": 2}], "c": 3}));
        assert_eq!(set(&["z", "y"], true), doc);
        let insert = |p: &[&str], after| edit_at(&doc, &path(p), 1, Edit::Insert { value: &new, after });
        assert_eq!(insert(&["a", "0"], false).unwrap(), json!({"a": ["x", 1, {"b": 2}], "c": 3}));
        assert_eq!(insert(&["a", "0"], true).unwrap(), json!({"a": [1, "x", {"b": 2}], "c": 3}));
        assert!(insert(&["c"], false).is_err());
        assert_eq!(edit_at(&doc, &path(&["a", "1"]), 1, Edit::Delete).unwrap(), json!({"a": [1], "c": 3}));
    }
}
