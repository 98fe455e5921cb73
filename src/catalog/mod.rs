//! The catalog: schemas and tables with their ids, persisted in the meta table of the state
//! store and changed only through [`CatalogChange`]s committed with an epoch.

mod codec;
mod function;
mod role;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::common::types::arrow_schema;
use crate::common::{Error, Result, SqlState, SqlType};
use crate::state::{META_TABLE, Snapshot, StateError, TableId, WriteBatch};

pub use codec::TableCodec;
pub use function::{FunctionBody, FunctionDesc, FunctionParameter, type_text};
pub use role::{RoleDesc, SCRAM_ITERATIONS, SUPERUSER, ScramVerifier, password_verifier};

pub const DEFAULT_SCHEMA: &str = "public";
/// Name of the hidden key column of tables declared without a primary key.
pub const ROW_ID_COLUMN: &str = "_row_id";
/// Schemas that exist in every database and cannot be created or dropped.
const SYSTEM_SCHEMAS: [&str; 4] = ["information_schema", "pg_catalog", "sabot_catalog", DEFAULT_SCHEMA];

const SCHEMA_PREFIX: &[u8] = b"catalog/schema/";
const TABLE_PREFIX: &[u8] = b"catalog/table/";
const NEXT_ID_KEY: &[u8] = b"catalog/next_id";
const ROLE_PREFIX: &[u8] = b"catalog/role/";
/// SQL functions, by id (big-endian u32).
const FUNCTION_PREFIX: &[u8] = b"catalog/function/";
/// `COMMENT ON`: this prefix, the relation's id and the column number (0 for the
/// relation itself), both big-endian u32.
const COMMENT_PREFIX: &[u8] = b"catalog/comment/";
/// First id handed to a user table; lower ids are reserved for system tables.
const FIRST_TABLE_ID: TableId = 1024;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColumnDesc {
    pub name: String,
    pub sql_type: SqlType,
    pub nullable: bool,
    /// The DEFAULT expression as SQL text.
    pub default: Option<String>,
    /// Hidden columns (the row id) are stored but not shown by `SELECT *`.
    pub hidden: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableDesc {
    pub id: TableId,
    pub schema: String,
    pub name: String,
    pub columns: Vec<ColumnDesc>,
    /// Indexes into `columns` of the primary key (the row id when none was declared; a
    /// view's stream key).
    pub primary_key: Vec<usize>,
    /// Set for materialized views.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view: Option<ViewDef>,
    /// Set for sources, and for tables fed by a connector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connector: Option<ConnectorDef>,
    /// `APPEND ONLY`: rows are only ever inserted (UPDATE and DELETE are refused).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub append_only: bool,
    /// `WATERMARK FOR column AS expression` of a source or an append-only table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<WatermarkDef>,
    /// Set for plain views (`CREATE VIEW`): no rows are stored; the query is expanded
    /// wherever the view is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plain_view: Option<PlainViewDef>,
    /// A table's `CHECK` constraints, in name order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckDef>,
    /// The primary key's name when it is not `<name>_pkey`: the table was renamed, and
    /// its key keeps the name it had, as in Postgres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_constraint: Option<String>,
    /// A table's `UNIQUE` constraints, in the order declared.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uniques: Vec<UniqueDef>,
}

/// A `UNIQUE (columns)` constraint: no two rows have equal values in `columns` (rows
/// with a NULL among them never conflict, unless `NULLS NOT DISTINCT`). The table's writer
/// keeps each constraint's values in a state table of its own, to check a change against
/// before it applies it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UniqueDef {
    pub name: String,
    /// Indexes into `columns`.
    pub columns: Vec<usize>,
    /// The state table mapping each value (encoded) to the key of the row that holds it.
    pub state: TableId,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nulls_not_distinct: bool,
    /// Made by `CREATE UNIQUE INDEX`: a unique index, not a constraint (Postgres lists it
    /// in `pg_index` only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub index_only: bool,
}

/// A `CHECK (expression)` constraint: every row written must make it true or NULL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckDef {
    pub name: String,
    /// The condition as SQL text, over the table's columns.
    pub expression: String,
    /// Indexes into `columns` of the columns it reads.
    pub columns: Vec<usize>,
}

/// What the catalog keeps of a plain view besides its columns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlainViewDef {
    /// The query, as SQL text.
    pub query: String,
    /// The schema unqualified names in the query resolve in.
    pub schema_search: String,
    /// The relations the query names directly.
    pub dependencies: Vec<TableId>,
}

/// A declared watermark: after each batch of rows, the relation's event time on
/// `column` has advanced to the largest value of `expression` over the rows so far.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatermarkDef {
    /// Index into `columns`.
    pub column: usize,
    /// The expression as SQL text, over the relation's columns.
    pub expression: String,
}

/// Where a source's (or a connector table's) rows come from: `WITH (connector = ...)`
/// and `FORMAT ... ENCODE ...`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorDef {
    /// The connector's name (`connector = 'nexmark'`).
    pub name: String,
    /// The other `WITH` options, keys lower-cased.
    pub options: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<FormatDef>,
    /// True for a table with a connector (its rows are stored); false for a source.
    pub stored: bool,
}

/// `FORMAT <format> ENCODE <encode> (<options>)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormatDef {
    /// `PLAIN`, ... (upper-cased).
    pub format: String,
    /// `CSV`, `JSON`, `PARQUET`, ... (upper-cased).
    pub encode: String,
    pub options: BTreeMap<String, String>,
}

/// What the catalog keeps of a materialized view besides its columns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ViewDef {
    /// The query, as SQL text; the dataflow is planned from it again at start-up.
    pub query: String,
    /// The schema unqualified names were resolved in.
    pub schema_search: String,
    /// Tables and views the query reads.
    pub dependencies: Vec<TableId>,
    /// The state tables of its operators, in plan order (the view's own rows are under its
    /// id, not listed here).
    pub state_tables: Vec<TableId>,
    pub parallelism: usize,
    /// The planner revision the view was planned with (`sql::stream_plan::PLAN_REVISION`;
    /// 0 in catalogs from before revisions were recorded).
    #[serde(default)]
    pub plan_revision: u32,
    /// The streaming plan as EXPLAIN prints it: a re-planned query must match it.
    pub plan: Vec<String>,
    /// The view's columns (indices into `columns`) that carry a watermark, which it passes
    /// on to views over it (plan revision 4).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watermark_columns: Vec<usize>,
    /// Set for a sink: its changes go to this connector instead of a state table (a sink
    /// is a view whose rows are not stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<ConnectorDef>,
    /// Set for an index: the view is `SELECT key columns, INCLUDE columns FROM table`,
    /// keyed by the index key and then the table's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<IndexDef>,
}

/// What the catalog keeps of an index (`CREATE INDEX`) besides its view.
///
/// An index is a view over one table or materialized view whose rows are the indexed
/// columns, the `INCLUDE` columns and the relation's key, stored in the index key's order
/// (then the relation's key, which makes each entry unique). It is maintained by its own
/// dataflow, committed in the same epoch as the rows it indexes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexDef {
    /// The indexed relation.
    pub table: TableId,
    /// Indexes into the relation's `columns` of the key columns, in index order.
    pub key_columns: Vec<usize>,
    /// Indexes into the relation's `columns` of the `INCLUDE` columns.
    pub include_columns: Vec<usize>,
    /// Indexes into the index's own `columns` of the relation's key, in its order: what
    /// finds an entry's row in the relation.
    pub table_key: Vec<usize>,
}

impl TableDesc {
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// A plain view: a named query, expanded where it is used.
    pub fn is_plain_view(&self) -> bool {
        self.plain_view.is_some()
    }

    /// A table: rows stored and written by DML (or by its connector).
    pub fn is_table(&self) -> bool {
        !self.is_view() && !self.is_source() && !self.is_plain_view()
    }

    /// A materialized view or a sink: a relation maintained by a dataflow.
    pub fn is_view(&self) -> bool {
        self.view.is_some()
    }

    /// A sink: its dataflow's changes go to a connector; it cannot be queried.
    pub fn is_sink(&self) -> bool {
        self.view.as_ref().is_some_and(|v| v.sink.is_some())
    }

    /// A materialized view (not a sink, not an index): its rows are stored and can be
    /// queried.
    pub fn is_materialized_view(&self) -> bool {
        self.is_view() && !self.is_sink() && !self.is_index()
    }

    /// An index (`CREATE INDEX`): a view kept for lookups, which cannot be queried.
    pub fn is_index(&self) -> bool {
        self.index().is_some()
    }

    pub fn index(&self) -> Option<&IndexDef> {
        self.view.as_ref().and_then(|v| v.index.as_ref())
    }

    /// A source: rows come from its connector and are not stored.
    pub fn is_source(&self) -> bool {
        self.connector.as_ref().is_some_and(|c| !c.stored)
    }

    /// "table", "view", "materialized view", "sink", "index" or "source", for messages.
    pub fn kind_name(&self) -> &'static str {
        if self.is_plain_view() {
            "view"
        } else if self.is_sink() {
            "sink"
        } else if self.is_index() {
            "index"
        } else if self.is_view() {
            "materialized view"
        } else if self.is_source() {
            "source"
        } else {
            "table"
        }
    }

    pub fn has_row_id(&self) -> bool {
        self.columns.iter().any(|c| c.hidden)
    }

    /// The schema users see (hidden columns left out).
    pub fn visible_schema(&self) -> SchemaRef {
        self.schema_of(self.columns.iter().filter(|c| !c.hidden))
    }

    /// The schema of stored rows (every column).
    pub fn full_schema(&self) -> SchemaRef {
        self.schema_of(self.columns.iter())
    }

    fn schema_of<'a>(&self, columns: impl Iterator<Item = &'a ColumnDesc>) -> SchemaRef {
        let columns: Vec<_> = columns.map(|c| (c.name.clone(), c.sql_type.clone(), c.nullable)).collect();
        arrow_schema(&columns)
    }

    pub fn column_types(&self) -> Vec<DataType> {
        self.columns.iter().map(|c| c.sql_type.to_arrow()).collect()
    }

    pub fn key_types(&self) -> Vec<DataType> {
        self.primary_key.iter().map(|&i| self.columns[i].sql_type.to_arrow()).collect()
    }

    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Postgres' name for the primary key constraint.
    pub fn primary_key_name(&self) -> String {
        self.key_constraint.clone().unwrap_or_else(|| format!("{}_pkey", self.name))
    }
}

/// A change to the catalog; applied in memory and persisted in the same epoch.
#[derive(Clone, Debug)]
pub enum CatalogChange {
    CreateSchema(String),
    DropSchema(String),
    CreateTable(Arc<TableDesc>),
    /// Replaces the relation with the same id (`ALTER`: a new name, columns, or a
    /// dependent's query rewritten); its rows stay.
    AlterTable(Arc<TableDesc>),
    DropTable(Arc<TableDesc>),
    CreateRole(Arc<RoleDesc>),
    /// Replaces a role's attributes (same name).
    AlterRole(Arc<RoleDesc>),
    DropRole(Arc<RoleDesc>),
    /// `COMMENT ON`: sets (or, with None, removes) the comment on a relation (`column`
    /// 0) or on one of its columns (1-based).
    SetComment {
        table: TableId,
        column: u32,
        comment: Option<String>,
    },
    /// `CREATE [OR REPLACE] FUNCTION` (a replacement has the id of the one it replaces).
    CreateFunction(Arc<FunctionDesc>),
    DropFunction(Arc<FunctionDesc>),
}

#[derive(Clone, Debug, Default)]
pub struct Catalog {
    schemas: BTreeSet<String>,
    tables: BTreeMap<(String, String), Arc<TableDesc>>,
    roles: BTreeMap<String, Arc<RoleDesc>>,
    next_id: TableId,
    /// `COMMENT ON` texts by (relation, column number; 0 for the relation).
    comments: BTreeMap<(TableId, u32), String>,
    functions: BTreeMap<(String, String), Arc<FunctionDesc>>,
}

impl Catalog {
    pub fn new() -> Self {
        let superuser = Arc::new(RoleDesc::bootstrap_superuser());
        Catalog {
            schemas: BTreeSet::new(),
            tables: BTreeMap::new(),
            roles: BTreeMap::from([(superuser.name.clone(), superuser)]),
            next_id: FIRST_TABLE_ID,
            comments: BTreeMap::new(),
            functions: BTreeMap::new(),
        }
    }

    /// Loads the catalog committed in `snapshot`.
    pub fn load(snapshot: &dyn Snapshot) -> Result<Self> {
        let mut catalog = Catalog::new();
        snapshot.scan(META_TABLE, &mut |key, value| {
            if let Some(name) = key.strip_prefix(SCHEMA_PREFIX) {
                catalog.schemas.insert(String::from_utf8_lossy(name).into_owned());
            } else if key.starts_with(TABLE_PREFIX) {
                let desc: TableDesc = serde_json::from_slice(value)
                    .map_err(|e| StateError::Corrupt(format!("table descriptor: {e}")))?;
                catalog.tables.insert((desc.schema.clone(), desc.name.clone()), Arc::new(desc));
            } else if key.starts_with(ROLE_PREFIX) {
                let role: RoleDesc = serde_json::from_slice(value)
                    .map_err(|e| StateError::Corrupt(format!("role descriptor: {e}")))?;
                catalog.roles.insert(role.name.clone(), Arc::new(role));
            } else if let Some(rest) = key.strip_prefix(COMMENT_PREFIX) {
                let corrupt = || StateError::Corrupt("comment key".into());
                let (table, column) = rest.split_at_checked(4).ok_or_else(corrupt)?;
                let table = TableId::from_be_bytes(table.try_into().map_err(|_| corrupt())?);
                let column = u32::from_be_bytes(column.try_into().map_err(|_| corrupt())?);
                catalog.comments.insert((table, column), String::from_utf8_lossy(value).into_owned());
            } else if key.starts_with(FUNCTION_PREFIX) {
                catalog.load_function(value)?;
            } else if key == NEXT_ID_KEY {
                let bytes: [u8; 4] =
                    value.try_into().map_err(|_| StateError::Corrupt("catalog next id".into()))?;
                catalog.next_id = TableId::from_be_bytes(bytes);
            }
            Ok(())
        })?;
        Ok(catalog)
    }

    pub fn schema_exists(&self, name: &str) -> bool {
        SYSTEM_SCHEMAS.contains(&name) || self.schemas.contains(name)
    }

    /// User-visible schemas that hold tables (`public` and the created ones).
    pub fn schema_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.schemas.iter().cloned().collect();
        names.push(DEFAULT_SCHEMA.to_string());
        names.sort();
        names.dedup();
        names
    }

    pub fn role(&self, name: &str) -> Option<&Arc<RoleDesc>> {
        self.roles.get(name)
    }

    pub fn roles(&self) -> impl Iterator<Item = &Arc<RoleDesc>> {
        self.roles.values()
    }

    pub fn table(&self, schema: &str, name: &str) -> Option<&Arc<TableDesc>> {
        self.tables.get(&(schema.to_string(), name.to_string()))
    }

    pub fn tables(&self) -> impl Iterator<Item = &Arc<TableDesc>> {
        self.tables.values()
    }

    pub fn table_by_id(&self, id: TableId) -> Option<&Arc<TableDesc>> {
        self.tables.values().find(|t| t.id == id)
    }

    /// Views (materialized or plain) that read `id` directly.
    pub fn dependents(&self, id: TableId) -> Vec<Arc<TableDesc>> {
        self.tables
            .values()
            .filter(|t| {
                t.view.as_ref().is_some_and(|v| v.dependencies.contains(&id))
                    || t.plain_view.as_ref().is_some_and(|v| v.dependencies.contains(&id))
            })
            .cloned()
            .collect()
    }

    /// `id`'s dependents, theirs, and so on, each once, in an order that drops a view
    /// before the views it reads.
    pub fn dependents_closure(&self, id: TableId) -> Vec<Arc<TableDesc>> {
        let mut out: Vec<Arc<TableDesc>> = Vec::new();
        let mut stack = self.dependents(id);
        while let Some(view) = stack.pop() {
            if out.iter().any(|v| v.id == view.id) {
                continue;
            }
            stack.extend(self.dependents(view.id));
            out.push(view);
        }
        // Views are created after what they read, so higher ids drop first.
        out.sort_by_key(|v| std::cmp::Reverse(v.id));
        out
    }

    /// The indexes of relation `id`, in creation order.
    pub fn indexes_on(&self, id: TableId) -> Vec<Arc<TableDesc>> {
        let mut indexes: Vec<Arc<TableDesc>> =
            self.tables.values().filter(|t| t.index().is_some_and(|i| i.table == id)).cloned().collect();
        indexes.sort_by_key(|i| i.id);
        indexes
    }

    pub fn tables_in(&self, schema: &str) -> impl Iterator<Item = &Arc<TableDesc>> {
        self.tables.values().filter(move |t| t.schema == schema)
    }

    /// The `COMMENT ON` text of a relation (`column` 0) or of its column (1-based).
    pub fn comment(&self, table: TableId, column: u32) -> Option<&str> {
        self.comments.get(&(table, column)).map(String::as_str)
    }

    /// Every comment, as ((relation, column number), text).
    pub fn comments(&self) -> impl Iterator<Item = (&(TableId, u32), &String)> {
        self.comments.iter()
    }

    /// The id [`Catalog::allocate_table_id`] would hand out next.
    pub fn next_table_id(&self) -> TableId {
        self.next_id
    }

    /// The relation named `name` in `schema` (with `except`'s own), or the table whose
    /// UNIQUE constraint's index has that name: Postgres' indexes share the relations'
    /// names.
    pub fn relation_name_taken(&self, schema: &str, name: &str, except: TableId) -> bool {
        let taken_by = |desc: &TableDesc| desc.id != except;
        self.tables.get(&(schema.to_string(), name.to_string())).is_some_and(|d| taken_by(d))
            || self.unique_owner(schema, name).is_some_and(|d| taken_by(d))
    }

    /// The table with a UNIQUE constraint (or unique index) named `name` in `schema`.
    pub fn unique_owner(&self, schema: &str, name: &str) -> Option<&Arc<TableDesc>> {
        self.tables.values().find(|t| t.schema == schema && t.uniques.iter().any(|u| u.name == name))
    }

    /// `desc`'s name and its UNIQUE constraints' names are no other relation's.
    fn check_names_free(&self, desc: &TableDesc) -> Result<()> {
        let names = std::iter::once(&desc.name).chain(desc.uniques.iter().map(|u| &u.name));
        for name in names {
            if self.relation_name_taken(&desc.schema, name, desc.id) {
                return Err(Error::new(
                    SqlState::DuplicateTable,
                    format!("relation \"{name}\" already exists"),
                ));
            }
        }
        Ok(())
    }

    /// Hands out the id for a new table.
    pub fn allocate_table_id(&mut self) -> TableId {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Checks `change` against the catalog and applies it in memory.
    pub fn apply(&mut self, change: &CatalogChange) -> Result<()> {
        match change {
            CatalogChange::CreateSchema(name) => {
                if self.schema_exists(name) {
                    return Err(Error::new(
                        SqlState::DuplicateSchema,
                        format!("schema \"{name}\" already exists"),
                    ));
                }
                self.schemas.insert(name.clone());
            }
            CatalogChange::DropSchema(name) => {
                if SYSTEM_SCHEMAS.contains(&name.as_str()) {
                    return Err(Error::new(
                        SqlState::DependentObjectsStillExist,
                        format!("cannot drop schema {name} because it is required by the database system"),
                    ));
                }
                self.schemas.remove(name);
            }
            CatalogChange::CreateTable(desc) => {
                let key = (desc.schema.clone(), desc.name.clone());
                if self.tables.contains_key(&key) {
                    return Err(Error::new(
                        SqlState::DuplicateTable,
                        format!("relation \"{}\" already exists", desc.name),
                    ));
                }
                self.check_names_free(desc)?;
                self.tables.insert(key, desc.clone());
                self.next_id = self.next_id.max(last_state_table(desc) + 1);
            }
            CatalogChange::AlterTable(desc) => {
                let old = self.table_by_id(desc.id).cloned().ok_or_else(|| {
                    Error::new(SqlState::UndefinedTable, format!("relation \"{}\" does not exist", desc.name))
                })?;
                let key = (desc.schema.clone(), desc.name.clone());
                if self.tables.get(&key).is_some_and(|other| other.id != desc.id) {
                    return Err(Error::new(
                        SqlState::DuplicateTable,
                        format!("relation \"{}\" already exists", desc.name),
                    ));
                }
                self.check_names_free(desc)?;
                self.tables.remove(&(old.schema.clone(), old.name.clone()));
                self.tables.insert(key, desc.clone());
                self.next_id = self.next_id.max(last_state_table(desc) + 1);
            }
            CatalogChange::DropTable(desc) => {
                self.tables.remove(&(desc.schema.clone(), desc.name.clone()));
                self.comments.retain(|(table, _), _| *table != desc.id);
            }
            CatalogChange::SetComment { table, column, comment } => match comment {
                Some(text) => {
                    self.comments.insert((*table, *column), text.clone());
                }
                None => {
                    self.comments.remove(&(*table, *column));
                }
            },
            CatalogChange::CreateFunction(desc) => self.apply_create_function(desc)?,
            CatalogChange::DropFunction(desc) => self.apply_drop_function(desc),
            CatalogChange::CreateRole(role) => {
                if self.roles.contains_key(&role.name) {
                    return Err(Error::new(
                        SqlState::DuplicateObject,
                        format!("role \"{}\" already exists", role.name),
                    ));
                }
                self.roles.insert(role.name.clone(), role.clone());
            }
            CatalogChange::AlterRole(role) => {
                if !self.roles.contains_key(&role.name) {
                    return Err(undefined_role(&role.name));
                }
                self.roles.insert(role.name.clone(), role.clone());
            }
            CatalogChange::DropRole(role) => {
                if role.name == SUPERUSER {
                    return Err(Error::new(
                        SqlState::DependentObjectsStillExist,
                        format!("cannot drop role {SUPERUSER} because it is required by the database system"),
                    ));
                }
                self.roles.remove(&role.name).ok_or_else(|| undefined_role(&role.name))?;
            }
        }
        Ok(())
    }

    /// The meta-table writes that persist `change` (after [`Catalog::apply`]).
    pub fn persist(&self, change: &CatalogChange, batch: &mut WriteBatch) -> Result<()> {
        match change {
            CatalogChange::CreateSchema(name) => {
                batch.put(META_TABLE, &[SCHEMA_PREFIX, name.as_bytes()].concat(), Vec::new())
            }
            CatalogChange::DropSchema(name) => {
                batch.delete(META_TABLE, &[SCHEMA_PREFIX, name.as_bytes()].concat())
            }
            CatalogChange::AlterTable(desc) => {
                let value = serde_json::to_vec(desc.as_ref())
                    .map_err(|e| Error::internal(format!("cannot encode table descriptor: {e}")))?;
                batch.put(META_TABLE, &table_meta_key(desc.id), value);
            }
            CatalogChange::CreateTable(desc) => {
                let value = serde_json::to_vec(desc.as_ref())
                    .map_err(|e| Error::internal(format!("cannot encode table descriptor: {e}")))?;
                batch.put(META_TABLE, &table_meta_key(desc.id), value);
                batch.put(META_TABLE, NEXT_ID_KEY, self.next_id.to_be_bytes().to_vec());
            }
            CatalogChange::CreateRole(role) | CatalogChange::AlterRole(role) => {
                let value = serde_json::to_vec(role.as_ref())
                    .map_err(|e| Error::internal(format!("cannot encode role descriptor: {e}")))?;
                batch.put(META_TABLE, &[ROLE_PREFIX, role.name.as_bytes()].concat(), value);
            }
            CatalogChange::DropRole(role) => {
                batch.delete(META_TABLE, &[ROLE_PREFIX, role.name.as_bytes()].concat())
            }
            CatalogChange::SetComment { table, column, comment } => {
                let key = [COMMENT_PREFIX, &table.to_be_bytes(), &column.to_be_bytes()].concat();
                match comment {
                    Some(text) => batch.put(META_TABLE, &key, text.clone().into_bytes()),
                    None => batch.delete(META_TABLE, &key),
                }
            }
            CatalogChange::CreateFunction(desc) => self.persist_function(desc, batch)?,
            CatalogChange::DropFunction(desc) => {
                batch.delete(META_TABLE, &function::function_meta_key(desc.id))
            }
            CatalogChange::DropTable(desc) => {
                batch.delete(META_TABLE, &table_meta_key(desc.id));
                batch.delete_prefix(META_TABLE, &[COMMENT_PREFIX, &desc.id.to_be_bytes()].concat());
                batch.delete_table(desc.id);
                // A source's undecodable records, a view's late rows.
                if desc.connector.is_some() || desc.is_view() {
                    use crate::stream::source::{DEAD_LETTERS_TABLE, dead_letter_prefix};
                    batch.delete_prefix(DEAD_LETTERS_TABLE, &dead_letter_prefix(&desc.qualified_name()));
                }
                for table in desc.view.iter().flat_map(|v| v.state_tables.iter()) {
                    if *table != desc.id {
                        batch.delete_table(*table);
                    }
                }
                for unique in &desc.uniques {
                    batch.delete_table(unique.state);
                }
            }
        }
        Ok(())
    }
}

pub fn undefined_role(name: &str) -> Error {
    Error::new(SqlState::UndefinedObject, format!("role \"{name}\" does not exist"))
}

/// The largest id among a relation's own and its state tables'.
fn last_state_table(desc: &TableDesc) -> TableId {
    let views = desc.view.iter().flat_map(|v| v.state_tables.iter()).copied();
    let uniques = desc.uniques.iter().map(|u| u.state);
    views.chain(uniques).fold(desc.id, TableId::max)
}

fn table_meta_key(id: TableId) -> Vec<u8> {
    [TABLE_PREFIX, &id.to_be_bytes()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{MemoryStore, StateStore};

    #[test]
    fn catalog_survives_a_reload() {
        let store = MemoryStore::default();
        let mut catalog = Catalog::new();
        let id = catalog.allocate_table_id();
        let desc = Arc::new(TableDesc {
            id,
            schema: DEFAULT_SCHEMA.into(),
            name: "t".into(),
            columns: vec![ColumnDesc {
                name: "a".into(),
                sql_type: SqlType::Int32,
                nullable: false,
                default: None,
                hidden: false,
            }],
            primary_key: vec![0],
            view: None,
            connector: None,
            append_only: false,
            watermark: None,
            plain_view: None,
            checks: Vec::new(),
            key_constraint: None,
            uniques: Vec::new(),
        });
        let mut batch = WriteBatch::default();
        for change in [CatalogChange::CreateSchema("s".into()), CatalogChange::CreateTable(desc.clone())] {
            catalog.apply(&change).unwrap();
            catalog.persist(&change, &mut batch).unwrap();
        }
        store.commit(batch).unwrap();

        let loaded = Catalog::load(store.snapshot().as_ref()).unwrap();
        assert!(loaded.schema_exists("s"));
        assert_eq!(loaded.table("public", "t"), Some(&desc));
        assert_eq!(loaded.clone().allocate_table_id(), id + 1);
        let again = CatalogChange::CreateTable(desc);
        assert_eq!(loaded.clone().apply(&again).unwrap_err().sqlstate().code(), "42P07");
    }

    #[test]
    fn views_recorded_before_plan_revisions_replan_as_revision_0() {
        let json = r#"{"query":"SELECT 1","schema_search":"public","dependencies":[],
            "state_tables":[5],"parallelism":2,"plan":["Materialize"]}"#;
        let view: ViewDef = serde_json::from_str(json).unwrap();
        assert_eq!(view.plan_revision, 0);
        let again: ViewDef = serde_json::from_slice(&serde_json::to_vec(&view).unwrap()).unwrap();
        assert_eq!(again, view);
    }

    #[test]
    fn roles_survive_a_reload_and_the_superuser_stays() {
        let store = MemoryStore::default();
        let mut catalog = Catalog::new();
        assert!(catalog.role(SUPERUSER).is_some_and(|r| r.superuser && r.login));
        let alice = Arc::new(RoleDesc {
            name: "alice".into(),
            superuser: false,
            login: true,
            password: Some(password_verifier("pw").unwrap()),
        });
        let mut batch = WriteBatch::default();
        let change = CatalogChange::CreateRole(alice.clone());
        catalog.apply(&change).unwrap();
        catalog.persist(&change, &mut batch).unwrap();
        store.commit(batch).unwrap();
        let mut loaded = Catalog::load(store.snapshot().as_ref()).unwrap();
        assert_eq!(loaded.role("alice"), Some(&alice));
        assert!(loaded.role(SUPERUSER).is_some());
        assert_eq!(loaded.apply(&change).unwrap_err().sqlstate().code(), "42710");
        let drop_superuser = CatalogChange::DropRole(loaded.role(SUPERUSER).unwrap().clone());
        assert_eq!(loaded.apply(&drop_superuser).unwrap_err().sqlstate().code(), "2BP01");
    }
}
