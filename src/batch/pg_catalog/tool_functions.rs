//! Functions that tools' introspection queries call and that Sabot answers from what it
//! has: `array_lower` / `array_upper` (Postgres' arrays count from 1), `parse_ident`,
//! `pg_database_size`, `pg_get_partkeydef` (no partitioned tables: NULL) and
//! `pg_stat_get_numscans` (no scan statistics are kept: 0).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, ListBuilder, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{ScalarUDF, Signature, Volatility};

use super::functions::{Size, function, function_with_signature, stored_bytes};
use crate::catalog::Catalog;
use crate::state::Snapshot;

pub(super) fn register(ctx: &SessionContext, catalog: &Arc<Catalog>, snapshot: &Arc<dyn Snapshot>) {
    ctx.register_udtf("pg_get_keywords", Arc::new(Keywords));
    ctx.register_udf(expand_array("sabot_expandarray", Expanded::Pairs));
    ctx.register_udf(expand_array("sabot_expandarray_x", Expanded::Elements));
    ctx.register_udf(expand_array("sabot_expandarray_n", Expanded::Positions));
    ctx.register_udf(array_bound("array_lower", false));
    ctx.register_udf(array_bound("array_upper", true));
    ctx.register_udf(function(
        "parse_ident",
        vec![vec![DataType::Utf8], vec![DataType::Utf8, DataType::Boolean]],
        DataType::new_list(DataType::Utf8, true),
        Arc::new(|args, _| {
            let mut lists = ListBuilder::new(StringBuilder::new());
            for text in args[0].as_string::<i32>().iter() {
                match text {
                    Some(text) => {
                        for part in parse_ident(text) {
                            lists.values().append_value(part);
                        }
                        lists.append(true);
                    }
                    None => lists.append(false),
                }
            }
            Ok(Arc::new(lists.finish()) as ArrayRef)
        }),
    ));
    ctx.register_udf(function(
        "pg_get_partkeydef",
        vec![vec![DataType::Int64]],
        DataType::Utf8,
        Arc::new(|args, _| Ok(datafusion::arrow::array::new_null_array(&DataType::Utf8, args[0].len()))),
    ));
    ctx.register_udf(function(
        "pg_stat_get_numscans",
        vec![vec![DataType::Int64]],
        DataType::Int64,
        Arc::new(|args, _| {
            let oids = args[0].as_primitive::<Int64Type>();
            Ok(Arc::new(oids.iter().map(|o| o.map(|_| 0)).collect::<Int64Array>()) as ArrayRef)
        }),
    ));
    let (catalog, snapshot) = (catalog.clone(), snapshot.clone());
    ctx.register_udf(function(
        "pg_database_size",
        vec![vec![DataType::Int64], vec![DataType::Utf8]],
        DataType::Int64,
        Arc::new(move |args, _| {
            let ours: Vec<bool> = match args[0].data_type() {
                DataType::Utf8 => {
                    args[0].as_string::<i32>().iter().map(|n| n == Some(super::DATABASE_NAME)).collect()
                }
                _ => args[0]
                    .as_primitive::<Int64Type>()
                    .iter()
                    .map(|o| o == Some(super::DATABASE_OID))
                    .collect(),
            };
            let total =
                if ours.contains(&true) { Some(database_bytes(&catalog, snapshot.as_ref())?) } else { None };
            Ok(Arc::new(ours.iter().map(|&ours| total.filter(|_| ours)).collect::<Int64Array>()) as ArrayRef)
        }),
    ));
}

/// `pg_get_keywords()`: the words Sabot's SQL parser knows, those it reserves (cannot be a
/// column alias) as `R`, the rest as `U`, as Postgres lists its own.
#[derive(Debug)]
struct Keywords;

impl datafusion::catalog::TableFunctionImpl for Keywords {
    fn call_with_args(
        &self,
        _: datafusion::catalog::TableFunctionArgs,
    ) -> datafusion::common::Result<Arc<dyn datafusion::catalog::TableProvider>> {
        use datafusion::arrow::array::{BooleanArray, RecordBatch, StringArray};
        use datafusion::arrow::datatypes::{Field, Schema};
        use datafusion::sql::sqlparser::keywords::{
            ALL_KEYWORDS, ALL_KEYWORDS_INDEX, RESERVED_FOR_COLUMN_ALIAS,
        };
        let reserved: Vec<bool> =
            ALL_KEYWORDS_INDEX.iter().map(|k| RESERVED_FOR_COLUMN_ALIAS.contains(k)).collect();
        let words: StringArray = ALL_KEYWORDS.iter().map(|w| Some(w.to_lowercase())).collect();
        let codes: StringArray = reserved.iter().map(|&r| Some(if r { "R" } else { "U" })).collect();
        let bare: BooleanArray = reserved.iter().map(|&r| Some(!r)).collect();
        let descriptions: StringArray =
            reserved.iter().map(|&r| Some(if r { "reserved" } else { "unreserved" })).collect();
        let bare_descriptions: StringArray =
            reserved.iter().map(|&r| Some(if r { "requires AS" } else { "can be bare label" })).collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("word", DataType::Utf8, true),
            Field::new("catcode", DataType::Utf8, true),
            Field::new("barelabel", DataType::Boolean, true),
            Field::new("catdesc", DataType::Utf8, true),
            Field::new("baredesc", DataType::Utf8, true),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(words),
            Arc::new(codes),
            Arc::new(bare),
            Arc::new(descriptions),
            Arc::new(bare_descriptions),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        Ok(Arc::new(datafusion::datasource::MemTable::try_new(schema, vec![vec![batch]])?))
    }
}

/// The bytes of every relation (indexes count with their relation).
fn database_bytes(catalog: &Catalog, snapshot: &dyn Snapshot) -> datafusion::common::Result<i64> {
    let mut total = 0;
    for desc in catalog.tables().filter(|d| !d.is_index()) {
        total += stored_bytes(catalog, desc, snapshot, Size::Total)?;
    }
    Ok(total)
}

/// `array_lower(array, dimension)` / `array_upper`: 1 and the length for dimension 1 of a
/// non-empty array; else NULL, as Postgres (Sabot's arrays have one dimension, from 1).
/// A bigint rather than Postgres' integer: tools pass it to `generate_series`, whose
/// bounds DataFusion takes as bigints only.
fn array_bound(name: &'static str, upper: bool) -> ScalarUDF {
    function_with_signature(
        name,
        Signature::any(2, Volatility::Immutable),
        DataType::Int64,
        Arc::new(move |args, _| {
            let lengths = list_lengths(&args[0]);
            let dimensions = datafusion::arrow::compute::cast(&args[1], &DataType::Int64)?;
            let dimensions = dimensions.as_primitive::<Int64Type>();
            let bounds =
                lengths.iter().zip(dimensions.iter()).map(|(length, dimension)| match (length, dimension) {
                    (Some(length), Some(1)) if *length > 0 => Some(if upper { *length as i64 } else { 1 }),
                    _ => None,
                });
            Ok(Arc::new(bounds.collect::<Int64Array>()) as ArrayRef)
        }),
    )
}

/// What `information_schema._pg_expandarray(array)` (a set of `(x, n)`: each element and
/// its position) becomes, as a list to unnest (`sql::pg_compat`): the pairs, or one field.
#[derive(Clone, Copy)]
enum Expanded {
    Pairs,
    Elements,
    Positions,
}

/// `sabot_expandarray(array)` and its one-field forms, over an integer array or its text
/// form (`pg_constraint.conkey` is text here: `{1,2}`).
fn expand_array(name: &'static str, expanded: Expanded) -> ScalarUDF {
    use datafusion::arrow::array::{Int64Builder, StructBuilder};
    use datafusion::arrow::datatypes::{Field, Fields};
    let fields =
        Fields::from(vec![Field::new("x", DataType::Int64, true), Field::new("n", DataType::Int64, true)]);
    let item = match expanded {
        Expanded::Pairs => DataType::Struct(fields.clone()),
        Expanded::Elements | Expanded::Positions => DataType::Int64,
    };
    function_with_signature(
        name,
        Signature::any(1, Volatility::Immutable),
        DataType::new_list(item, true),
        Arc::new(move |args, _| {
            let arrays = integer_lists(&args[0])?;
            let out: ArrayRef = match expanded {
                Expanded::Pairs => {
                    let mut lists = ListBuilder::new(StructBuilder::from_fields(fields.clone(), 0));
                    for array in &arrays {
                        let Some(values) = array else {
                            lists.append(false);
                            continue;
                        };
                        for (i, value) in values.iter().enumerate() {
                            let pair = lists.values();
                            pair.field_builder::<Int64Builder>(0).expect("x").append_option(*value);
                            pair.field_builder::<Int64Builder>(1).expect("n").append_value(i as i64 + 1);
                            pair.append(true);
                        }
                        lists.append(true);
                    }
                    Arc::new(lists.finish())
                }
                Expanded::Elements | Expanded::Positions => {
                    let mut lists = ListBuilder::new(Int64Builder::new());
                    for array in &arrays {
                        let Some(values) = array else {
                            lists.append(false);
                            continue;
                        };
                        for (i, value) in values.iter().enumerate() {
                            match expanded {
                                Expanded::Positions => lists.values().append_value(i as i64 + 1),
                                _ => lists.values().append_option(*value),
                            }
                        }
                        lists.append(true);
                    }
                    Arc::new(lists.finish())
                }
            };
            Ok(out)
        }),
    )
}

/// Each row's integers: from a list of integers, or from text in Postgres' array form.
fn integer_lists(array: &ArrayRef) -> datafusion::common::Result<Vec<Option<Vec<Option<i64>>>>> {
    if let DataType::Utf8 = array.data_type() {
        return Ok(array
            .as_string::<i32>()
            .iter()
            .map(|text| {
                let inner = text?.trim().trim_start_matches('{').trim_end_matches('}');
                Some(
                    inner
                        .split(',')
                        .filter(|p| !p.trim().is_empty())
                        .map(|p| p.trim().parse().ok())
                        .collect(),
                )
            })
            .collect());
    }
    let lengths = list_lengths(array);
    let values = match array.data_type() {
        DataType::List(_) => array.as_list::<i32>().values().clone(),
        DataType::LargeList(_) => array.as_list::<i64>().values().clone(),
        _ => return Ok(vec![None; array.len()]),
    };
    let values = datafusion::arrow::compute::cast(&values, &DataType::Int64)?;
    let values = values.as_primitive::<Int64Type>();
    let offsets: Vec<usize> = match array.data_type() {
        DataType::List(_) => array.as_list::<i32>().offsets().iter().map(|&o| o as usize).collect(),
        _ => array.as_list::<i64>().offsets().iter().map(|&o| o as usize).collect(),
    };
    Ok(lengths
        .iter()
        .enumerate()
        .map(|(row, length)| {
            length.map(|_| {
                (offsets[row]..offsets[row + 1])
                    .map(|i| values.is_valid(i).then(|| values.value(i)))
                    .collect()
            })
        })
        .collect())
}

/// The length of each list (None: NULL, or not a list).
fn list_lengths(array: &ArrayRef) -> Vec<Option<usize>> {
    let of = |valid: bool, length: usize| valid.then_some(length);
    match array.data_type() {
        DataType::List(_) => {
            let lists = array.as_list::<i32>();
            (0..lists.len()).map(|i| of(lists.is_valid(i), lists.value_length(i) as usize)).collect()
        }
        DataType::LargeList(_) => {
            let lists = array.as_list::<i64>();
            (0..lists.len()).map(|i| of(lists.is_valid(i), lists.value_length(i) as usize)).collect()
        }
        DataType::FixedSizeList(_, length) => {
            let lists = array.as_fixed_size_list();
            (0..lists.len()).map(|i| of(lists.is_valid(i), *length as usize)).collect()
        }
        _ => vec![None; array.len()],
    }
}

/// `parse_ident('a."B c".d')`: the parts of a qualified name, unquoted ones lower-cased.
fn parse_ident(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut chars = text.trim().chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                if c == '"' {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        part.push('"');
                    } else {
                        break;
                    }
                } else {
                    part.push(c);
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                part.extend(c.to_lowercase());
                chars.next();
            }
            part = part.trim().to_string();
        }
        parts.push(part);
        // Up to the next dot.
        while let Some(&c) = chars.peek() {
            chars.next();
            if c == '.' {
                break;
            }
        }
        if chars.peek().is_none() {
            break;
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::parse_ident;

    #[test]
    fn parse_ident_splits_and_folds_as_postgres() {
        assert_eq!(parse_ident("bid"), ["bid"]);
        assert_eq!(parse_ident("Public.Bid"), ["public", "bid"]);
        assert_eq!(parse_ident(r#"a."B ""c""".d"#), ["a", r#"B "c""#, "d"]);
    }
}
