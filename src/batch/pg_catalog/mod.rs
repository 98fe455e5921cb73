//! `pg_catalog` as Postgres presents it, for psql's meta-commands and the introspection
//! queries of drivers and tools: built from Sabot's catalog for each statement that
//! names a relation (only that relation is built).
//!
//! Object ids: `pg_catalog` is 11 and `public` 2200 as in Postgres, the bootstrap
//! superuser 10, the one database 16384; a table, materialized view or source is 16384
//! plus its table id (stable across restarts); other schemas and roles get a stable id
//! from their name ([`name_oid`]). Materialized views are `relkind = 'm'`, sources are
//! shown as foreign tables (`'f'`); sinks keep no rows and are not relations here (see
//! `sabot_catalog`). A table's primary key is an index (`<table>_pkey`, relkind `'i'`,
//! in `pg_index`) and a constraint (`pg_constraint`); `CREATE INDEX` indexes are relkind
//! `'i'` with their own table id, in `pg_index` and `pg_indexes`; a UNIQUE constraint is
//! an index (relkind `'i'`, the oid of its state table) and a constraint (`contype 'u'`),
//! a unique index only the index. Relations Sabot has no
//! objects for yet (foreign keys, policies, statistics, publications, inheritance,
//! rules, triggers) are empty, with Postgres' columns, so that tools' queries over them
//! plan and return
//! nothing.

mod functions;
mod keys;
mod relations;
mod tool_functions;

pub use functions::{SessionInfo, register as register_functions, version};

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, new_empty_array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;

use crate::catalog::{Catalog, SUPERUSER};
use crate::common::Result;

pub use relations::TABLES;

pub const NAME: &str = "pg_catalog";
pub const PG_CATALOG_OID: i64 = 11;
pub const PUBLIC_OID: i64 = 2200;
pub const BOOTSTRAP_SUPERUSER_OID: i64 = 10;
pub const DATABASE_OID: i64 = 16384;
/// The one database's name (`current_database()`, `pg_database`).
pub const DATABASE_NAME: &str = "sabot";
/// The first object id of user objects in Postgres.
const FIRST_USER_OID: i64 = 16384;

/// The object id of a table, materialized view or source.
pub fn relation_oid(table: crate::state::TableId) -> i64 {
    FIRST_USER_OID + i64::from(table)
}

/// The object id of a SQL function (its id is from the relations' counter).
pub fn function_oid(function: crate::state::TableId) -> i64 {
    FIRST_USER_OID + i64::from(function)
}

/// The object id of a table's primary key index (and of its constraint, in
/// `pg_constraint`): above relation ids, below name-derived ids.
pub fn primary_key_oid(table: crate::state::TableId) -> i64 {
    (1 << 30) + i64::from(table)
}

/// The object id of a table's CHECK constraint number `index` (in name order): above
/// primary-key ids (table ids stay below 2^20), below name-derived ids.
pub fn check_oid(table: crate::state::TableId, index: usize) -> i64 {
    (1 << 30) + ((index as i64 + 1) << 20) + i64::from(table)
}

/// The object id of a `pg_catalog` relation: Postgres' for its catalog tables, a stable
/// name-derived one for its views (whose oids vary between Postgres versions).
pub fn catalog_relation_oid(name: &str) -> i64 {
    match name {
        "pg_type" => 1247,
        "pg_attribute" => 1249,
        "pg_proc" => 1255,
        "pg_class" => 1259,
        "pg_auth_members" => 1261,
        "pg_database" => 1262,
        "pg_shdescription" => 2396,
        "pg_am" => 2601,
        "pg_attrdef" => 2604,
        "pg_constraint" => 2606,
        "pg_depend" => 2608,
        "pg_description" => 2609,
        "pg_index" => 2610,
        "pg_inherits" => 2611,
        "pg_namespace" => 2615,
        "pg_rewrite" => 2618,
        "pg_trigger" => 2620,
        "pg_extension" => 3079,
        "pg_foreign_table" => 3118,
        "pg_policy" => 3256,
        "pg_statistic_ext" => 3381,
        "pg_collation" => 3456,
        "pg_enum" => 3501,
        "pg_publication" => 6104,
        "pg_publication_rel" => 6106,
        "pg_publication_namespace" => 6237,
        _ => name_oid(name),
    }
}

/// The tables with a declared primary key (a table without one is keyed by a hidden row
/// id, which is no constraint).
pub fn has_primary_key(desc: &crate::catalog::TableDesc) -> bool {
    !desc.is_view() && !desc.is_source() && !desc.primary_key.is_empty() && !desc.has_row_id()
}

/// The object id of a schema.
pub fn namespace_oid(name: &str) -> i64 {
    match name {
        NAME => PG_CATALOG_OID,
        "public" => PUBLIC_OID,
        _ => name_oid(name),
    }
}

/// The object id of a role.
pub fn role_oid(name: &str) -> i64 {
    if name == SUPERUSER { BOOTSTRAP_SUPERUSER_OID } else { name_oid(name) }
}

/// A stable object id for an object Sabot keys by name (FNV-1a of the name, above the
/// ids of relations).
fn name_oid(name: &str) -> i64 {
    let hash = name.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    (1 << 31) + i64::from(hash >> 1)
}

/// A session variable: name, value, description.
#[derive(Clone, Debug)]
pub struct Setting {
    pub name: String,
    pub value: String,
    pub description: String,
}

/// The session's variables, then the read-only server settings they do not name.
pub fn all_settings(session: &[Setting]) -> Vec<Setting> {
    let mut all = session.to_vec();
    let fixed = server_settings().into_iter().filter(|f| !session.iter().any(|s| s.name == f.name));
    all.extend(fixed);
    all
}

/// Read-only settings tools ask for, with Sabot's values.
fn server_settings() -> Vec<Setting> {
    let fixed = [
        ("server_version", crate::common::SERVER_VERSION, "The Postgres version Sabot follows, and its own."),
        ("server_version_num", "160006", "The Postgres version Sabot follows, as a number."),
        ("server_encoding", "UTF8", "The encoding of all text."),
        ("integer_datetimes", "on", "Times are integers (microseconds)."),
        ("standard_conforming_strings", "on", "Backslashes in '...' strings are literal."),
        ("max_identifier_length", "63", "The longest name, in bytes."),
    ];
    fixed
        .into_iter()
        .map(|(name, value, description)| Setting {
            name: name.to_string(),
            value: value.to_string(),
            description: description.to_string(),
        })
        .collect()
}

/// The `pg_catalog` schema over one catalog.
pub struct PgCatalogSchema {
    catalog: Arc<Catalog>,
    settings: Arc<Vec<Setting>>,
}

impl PgCatalogSchema {
    pub fn new(catalog: Arc<Catalog>, settings: Arc<Vec<Setting>>) -> Self {
        PgCatalogSchema { catalog, settings }
    }
}

impl super::BuiltRelations for PgCatalogSchema {
    fn names(&self) -> &'static [&'static str] {
        &TABLES
    }

    fn build(&self, name: &str) -> Result<Option<Arc<MemTable>>> {
        let relation = match name {
            "pg_settings" => relations::settings(&self.settings),
            _ => match relations::relation(&self.catalog, name) {
                Some(relation) => relation,
                None => return Ok(None),
            },
        };
        relation.into_table().map(Some)
    }
}

/// A relation's columns and rows, as values (catalogs are small; rows read better than
/// column builders here). A `None` value is NULL.
struct Relation {
    fields: Vec<Field>,
    rows: Vec<Vec<Option<ScalarValue>>>,
}

impl Relation {
    /// `columns`: `name:type` pairs, the types named as in Postgres (`oid`, `name`,
    /// `text`, `char`, `bool`, `int2`, `int4`, `int8`, `float4`, `text[]`,
    /// `timestamptz`).
    fn new(columns: &str) -> Self {
        let fields = columns
            .split_whitespace()
            .map(|column| {
                let (name, pg_type) = column.split_once(':').expect("columns are written name:type");
                Field::new(name, arrow_type(pg_type), true)
            })
            .collect();
        Relation { fields, rows: Vec::new() }
    }

    fn push(&mut self, row: Vec<Option<ScalarValue>>) {
        debug_assert_eq!(row.len(), self.fields.len(), "a row of every column");
        self.rows.push(row);
    }

    fn into_table(self) -> Result<Arc<MemTable>> {
        let schema = Arc::new(Schema::new(self.fields));
        let columns = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, field)| -> Result<ArrayRef> {
                if self.rows.is_empty() {
                    return Ok(new_empty_array(field.data_type()));
                }
                let values = self.rows.iter().map(|row| match &row[i] {
                    Some(value) => value.cast_to(field.data_type()),
                    None => ScalarValue::try_from(field.data_type()),
                });
                let values = values.collect::<std::result::Result<Vec<_>, _>>()?;
                Ok(ScalarValue::iter_to_array(values)?)
            })
            .collect::<Result<Vec<_>>>()?;
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }
}

fn arrow_type(pg_type: &str) -> DataType {
    match pg_type {
        "oid" | "int8" => DataType::Int64,
        "int4" => DataType::Int32,
        "int2" => DataType::Int16,
        "bool" => DataType::Boolean,
        "float4" => DataType::Float32,
        "text[]" => DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
        "timestamptz" => DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
        // name, text, "char"
        _ => DataType::Utf8,
    }
}

/// Value helpers for rows.
fn oid(value: i64) -> Option<ScalarValue> {
    Some(ScalarValue::Int64(Some(value)))
}

fn int(value: i64) -> Option<ScalarValue> {
    Some(ScalarValue::Int64(Some(value)))
}

fn text(value: impl Into<String>) -> Option<ScalarValue> {
    Some(ScalarValue::Utf8(Some(value.into())))
}

fn text_array(values: &[String]) -> ScalarValue {
    let values: Vec<ScalarValue> = values.iter().map(|v| ScalarValue::Utf8(Some(v.clone()))).collect();
    ScalarValue::List(ScalarValue::new_list_nullable(&values, &DataType::Utf8))
}

fn boolean(value: bool) -> Option<ScalarValue> {
    Some(ScalarValue::Boolean(Some(value)))
}
