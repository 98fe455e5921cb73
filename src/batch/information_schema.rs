//! `information_schema` as Postgres presents it (`tables`, `columns`, `schemata`), built
//! from the catalog for each statement.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::datasource::MemTable;

use crate::catalog::Catalog;
use crate::common::{Result, SqlType};

pub const NAME: &str = "information_schema";
const CATALOG: &str = "sabot";

pub fn provider(catalog: &Catalog) -> Result<Arc<dyn SchemaProvider>> {
    let schema = MemorySchemaProvider::new();
    schema.register_table("schemata".into(), schemata(catalog)?)?;
    schema.register_table("tables".into(), tables(catalog)?)?;
    schema.register_table("columns".into(), columns(catalog)?)?;
    Ok(Arc::new(schema))
}

fn text(values: impl IntoIterator<Item = Option<String>>) -> ArrayRef {
    Arc::new(values.into_iter().collect::<StringArray>())
}

fn table(fields: Vec<Field>, columns: Vec<ArrayRef>) -> Result<Arc<MemTable>> {
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

fn text_fields(names: &[&str]) -> Vec<Field> {
    names.iter().map(|n| Field::new(*n, DataType::Utf8, true)).collect()
}

fn schemata(catalog: &Catalog) -> Result<Arc<MemTable>> {
    let mut names = catalog.schema_names();
    names.extend(["information_schema".to_string(), "pg_catalog".to_string()]);
    names.sort();
    let count = names.len();
    table(
        text_fields(&["catalog_name", "schema_name", "schema_owner"]),
        vec![
            text(std::iter::repeat_n(Some(CATALOG.to_string()), count)),
            text(names.into_iter().map(Some)),
            text(std::iter::repeat_n(Some("sabot".to_string()), count)),
        ],
    )
}

/// As in Postgres, materialized views are not listed in information_schema; views are.
fn tables(catalog: &Catalog) -> Result<Arc<MemTable>> {
    let tables: Vec<_> = catalog.tables().filter(|t| !t.is_view()).collect();
    let count = tables.len();
    table(
        text_fields(&["table_catalog", "table_schema", "table_name", "table_type"]),
        vec![
            text(std::iter::repeat_n(Some(CATALOG.to_string()), count)),
            text(tables.iter().map(|t| Some(t.schema.clone()))),
            text(tables.iter().map(|t| Some(t.name.clone()))),
            text(
                tables
                    .iter()
                    .map(|t| Some(if t.is_plain_view() { "VIEW" } else { "BASE TABLE" }.to_string())),
            ),
        ],
    )
}

fn columns(catalog: &Catalog) -> Result<Arc<MemTable>> {
    let rows: Vec<_> = catalog
        .tables()
        .filter(|t| !t.is_view())
        .flat_map(|t| {
            t.columns
                .iter()
                .filter(|c| !c.hidden)
                .enumerate()
                .map(move |(i, c)| (t.clone(), i + 1, c.clone()))
        })
        .collect();
    let numeric = |c: &crate::catalog::ColumnDesc| match c.sql_type {
        SqlType::Numeric { precision, scale } => (Some(i32::from(precision)), Some(i32::from(scale))),
        SqlType::Int16 => (Some(16), Some(0)),
        SqlType::Int32 => (Some(32), Some(0)),
        SqlType::Int64 => (Some(64), Some(0)),
        SqlType::Float32 => (Some(24), None),
        SqlType::Float64 => (Some(53), None),
        _ => (None, None),
    };
    let mut fields = text_fields(&["table_catalog", "table_schema", "table_name", "column_name"]);
    fields.push(Field::new("ordinal_position", DataType::Int32, false));
    fields.extend(text_fields(&["column_default", "is_nullable", "data_type"]));
    fields.push(Field::new("character_maximum_length", DataType::Int32, true));
    fields.push(Field::new("numeric_precision", DataType::Int32, true));
    fields.push(Field::new("numeric_scale", DataType::Int32, true));
    fields.extend(text_fields(&["udt_catalog", "udt_schema", "udt_name"]));
    table(
        fields,
        vec![
            text(rows.iter().map(|_| Some(CATALOG.to_string()))),
            text(rows.iter().map(|(t, _, _)| Some(t.schema.clone()))),
            text(rows.iter().map(|(t, _, _)| Some(t.name.clone()))),
            text(rows.iter().map(|(_, _, c)| Some(c.name.clone()))),
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|(_, i, _)| *i as i32))),
            text(rows.iter().map(|(_, _, c)| c.default.clone())),
            text(rows.iter().map(|(_, _, c)| Some(if c.nullable { "YES" } else { "NO" }.to_string()))),
            text(rows.iter().map(|(_, _, c)| Some(c.sql_type.base_name().to_string()))),
            Arc::new(
                rows.iter()
                    .map(|(_, _, c)| c.sql_type.max_characters().map(|n| n as i32))
                    .collect::<Int32Array>(),
            ),
            Arc::new(rows.iter().map(|(_, _, c)| numeric(c).0).collect::<Int32Array>()),
            Arc::new(rows.iter().map(|(_, _, c)| numeric(c).1).collect::<Int32Array>()),
            text(rows.iter().map(|_| Some(CATALOG.to_string()))),
            text(rows.iter().map(|_| Some("pg_catalog".to_string()))),
            text(rows.iter().map(|(_, _, c)| Some(c.sql_type.pg_type().name().to_string()))),
        ],
    )
}
