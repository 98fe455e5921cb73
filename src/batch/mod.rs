//! Ad-hoc queries: DataFusion catalog and table providers over committed table state.
//!
//! Every statement gets a [`SabotCatalog`] bound to one state-store snapshot, so a query
//! that reads several tables sees them all as of the same committed epoch.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{CatalogProvider, SchemaProvider, Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

pub mod index_scan;
mod information_schema;
pub mod pg_catalog;
pub mod system;

use crate::catalog::{Catalog, TableCodec, TableDesc};
use crate::common::Error;
use crate::state::{Snapshot, StateTable};

/// Where a table's rows come from.
#[derive(Clone)]
enum Rows {
    /// Read from a committed snapshot when the table is scanned.
    Committed(Arc<dyn Snapshot>),
    /// Committed rows with the open epoch's writes on top (what DML reads).
    Current { state: StateTable, snapshot: Arc<dyn Snapshot> },
    /// Already materialized rows (RETURNING, COPY input).
    Materialized(RecordBatch),
}

/// A stored table as DataFusion sees it.
///
/// Scans read the whole table, except when the filters pin every primary-key column to
/// literals (`id = 5`, `id IN (1, 2)`): then only those keys are read. Filters are
/// reported as inexact, so DataFusion still applies them to what the scan returns.
pub struct StoredTable {
    desc: Arc<TableDesc>,
    rows: Rows,
    /// The visible schema, or the full one (hidden row id included) for DML.
    schema: SchemaRef,
    defaults: HashMap<String, Expr>,
    /// The relation's indexes, which committed reads may scan through.
    indexes: Vec<Arc<TableDesc>>,
}

impl std::fmt::Debug for StoredTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredTable").field("table", &self.desc.qualified_name()).finish()
    }
}

impl StoredTable {
    /// The table as committed in `snapshot`, hidden columns left out.
    pub fn committed(desc: Arc<TableDesc>, snapshot: Arc<dyn Snapshot>) -> Self {
        StoredTable {
            schema: desc.visible_schema(),
            desc,
            rows: Rows::Committed(snapshot),
            defaults: HashMap::new(),
            indexes: Vec::new(),
        }
    }

    /// The table's current state — `state` (a copy of its writer's open epoch) over
    /// `snapshot` — with the hidden row id visible so that DML can address rows.
    pub fn current(desc: Arc<TableDesc>, state: StateTable, snapshot: Arc<dyn Snapshot>) -> Self {
        StoredTable {
            schema: desc.full_schema(),
            desc,
            rows: Rows::Current { state, snapshot },
            defaults: HashMap::new(),
            indexes: Vec::new(),
        }
    }

    /// The table as committed in `snapshot` with `state`'s writes on top (a transaction's
    /// own writes), hidden columns left out.
    pub fn overlaid(desc: Arc<TableDesc>, state: StateTable, snapshot: Arc<dyn Snapshot>) -> Self {
        StoredTable {
            schema: desc.visible_schema(),
            desc,
            rows: Rows::Current { state, snapshot },
            defaults: HashMap::new(),
            indexes: Vec::new(),
        }
    }

    /// The given rows (in the full schema); hidden columns are shown when `show_hidden`.
    pub fn materialized(desc: Arc<TableDesc>, rows: RecordBatch, show_hidden: bool) -> Self {
        StoredTable {
            schema: if show_hidden { desc.full_schema() } else { desc.visible_schema() },
            desc,
            rows: Rows::Materialized(rows),
            defaults: HashMap::new(),
            indexes: Vec::new(),
        }
    }

    /// Shows hidden columns (the row id) too, for queries that join on a table's key.
    pub fn with_hidden_columns(mut self) -> Self {
        self.schema = self.desc.full_schema();
        self
    }

    /// Declares every column nullable, so that NULLs reach Sabot's own NOT NULL check
    /// (which names the column) instead of failing inside DataFusion.
    pub fn with_nullable_columns(mut self) -> Self {
        let fields: Vec<_> =
            self.schema.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect();
        self.schema = Arc::new(datafusion::arrow::datatypes::Schema::new_with_metadata(
            fields,
            self.schema.metadata().clone(),
        ));
        self
    }

    /// The relation's indexes, for scans of committed rows.
    pub fn with_indexes(mut self, indexes: Vec<Arc<TableDesc>>) -> Self {
        self.indexes = indexes;
        self
    }

    /// Column defaults that `INSERT` fills in for omitted columns.
    pub fn with_defaults(mut self, defaults: HashMap<String, Expr>) -> Self {
        self.defaults = defaults;
        self
    }

    /// The rows (full schema) of the whole table, or of the given keys only.
    fn read(&self, keys: Option<Vec<Vec<u8>>>) -> crate::common::Result<RecordBatch> {
        let codec = TableCodec::new(&self.desc)?;
        let mut values: Vec<Vec<u8>> = Vec::new();
        match (&self.rows, keys) {
            (Rows::Materialized(batch), _) => return Ok(batch.clone()),
            (Rows::Committed(snapshot), None) => snapshot.scan(self.desc.id, &mut |_, v| {
                values.push(v.to_vec());
                Ok(())
            })?,
            (Rows::Current { state, snapshot }, None) => state.scan(snapshot.as_ref(), &mut |_, v| {
                values.push(v.to_vec());
                Ok(())
            })?,
            (Rows::Committed(snapshot), Some(keys)) => {
                for key in keys {
                    values.extend(snapshot.get(self.desc.id, &key)?);
                }
            }
            (Rows::Current { state, snapshot }, Some(keys)) => {
                for key in keys {
                    values.extend(state.get(snapshot.as_ref(), &key)?);
                }
            }
        }
        codec.decode_rows(values.iter().map(Vec::as_slice))
    }

    /// The keys a scan with `filters` can be limited to, if the filters pin every
    /// primary-key column to literals.
    fn pinned_keys(&self, filters: &[Expr]) -> Option<Vec<Vec<u8>>> {
        if self.desc.primary_key.is_empty() {
            return None; // a one-row view
        }
        if matches!(self.rows, Rows::Materialized(_)) {
            return None;
        }
        let mut choices: Vec<Vec<ScalarValue>> = Vec::new();
        for &index in &self.desc.primary_key {
            let column = &self.desc.columns[index];
            let values = filters.iter().find_map(|f| pinned_values(f, &column.name))?;
            let target = column.sql_type.to_arrow();
            let cast: Vec<ScalarValue> =
                values.iter().map(|v| v.cast_to(&target).ok()).collect::<Option<_>>()?;
            choices.push(cast);
        }
        // Every combination of the pinned values (a cross product, bounded by its size).
        let combinations: usize = choices.iter().map(Vec::len).product();
        if combinations == 0 || combinations > PINNED_KEYS_MAX {
            return None;
        }
        let mut columns: Vec<Vec<ScalarValue>> = vec![Vec::with_capacity(combinations); choices.len()];
        for n in 0..combinations {
            let mut rest = n;
            for (i, values) in choices.iter().enumerate() {
                columns[i].push(values[rest % values.len()].clone());
                rest /= values.len();
            }
        }
        let arrays: Vec<_> = columns
            .into_iter()
            .map(|values| ScalarValue::iter_to_array(values).ok())
            .collect::<Option<_>>()?;
        let codec = TableCodec::new(&self.desc).ok()?;
        let keys = codec.encode_key_columns(&arrays).ok()?;
        let mut keys: Vec<Vec<u8>> = keys.iter().map(|k| k.data().to_vec()).collect();
        keys.sort();
        keys.dedup();
        Some(keys)
    }

    fn load(&self, filters: &[Expr]) -> DfResult<RecordBatch> {
        self.load_keys(self.pinned_keys(filters))
    }

    /// The rows (in this provider's schema) of the whole table, or of the given keys only.
    fn load_keys(&self, keys: Option<Vec<Vec<u8>>>) -> DfResult<RecordBatch> {
        let full = self.read(keys).map_err(DataFusionError::from)?;
        if full.schema().fields().len() == self.schema.fields().len() {
            return Ok(RecordBatch::try_new(self.schema.clone(), full.columns().to_vec())?);
        }
        let visible: Vec<usize> =
            (0..self.desc.columns.len()).filter(|&i| !self.desc.columns[i].hidden).collect();
        let projected = full.project(&visible)?;
        Ok(RecordBatch::try_new(self.schema.clone(), projected.columns().to_vec())?)
    }
}

/// Upper bound on the keys a pinned scan reads one by one; more scan the table.
const PINNED_KEYS_MAX: usize = 1024;

/// The literal values `filter` pins `column` to (`column = v`, `v = column`,
/// `column IN (v, ...)`, and ORs of those, which is how DataFusion writes short IN lists).
fn pinned_values(filter: &Expr, column: &str) -> Option<Vec<ScalarValue>> {
    use datafusion::logical_expr::{BinaryExpr, Operator, expr::InList};
    let is_column = |e: &Expr| matches!(e, Expr::Column(c) if c.name == column);
    let literal = |e: &Expr| match e {
        Expr::Literal(value, _) if !value.is_null() => Some(value.clone()),
        _ => None,
    };
    match filter {
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right }) => {
            if is_column(left) {
                literal(right).map(|v| vec![v])
            } else if is_column(right) {
                literal(left).map(|v| vec![v])
            } else {
                None
            }
        }
        Expr::InList(InList { expr, list, negated: false }) if is_column(expr) => {
            list.iter().map(literal).collect()
        }
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Or, right }) => {
            let mut values = pinned_values(left, column)?;
            values.extend(pinned_values(right, column)?);
            Some(values)
        }
        _ => None,
    }
}

#[async_trait]
impl TableProvider for StoredTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        self.defaults.get(column)
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if self.desc.is_sink() {
            return Err(sink_not_readable(&self.desc.name).into());
        }
        if self.desc.is_plain_view() {
            // Views are expanded before planning (`sql::views`); a scan of one is a bug.
            return Err(Error::internal(format!(
                "view \"{}\" was scanned instead of expanded",
                self.desc.name
            ))
            .into());
        }
        if self.desc.is_source() {
            // Views read sources through their own readers; a query has nothing to read.
            return Err(DataFusionError::from(
                crate::common::Error::new(
                    crate::common::SqlState::FeatureNotSupported,
                    format!("source \"{}\" is not stored, so it cannot be queried", self.desc.name),
                )
                .with_hint("create a materialized view over it, or a table with the connector (CREATE TABLE ... WITH (connector = ...))"),
            ));
        }
        if let Some(scan) = self.index_scan(filters, projection)? {
            return Ok(scan);
        }
        let batch = self.load(filters)?;
        self.rows_exec(batch, projection)
    }
}

impl StoredTable {
    fn rows_exec(
        &self,
        batch: RecordBatch,
        projection: Option<&Vec<usize>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let partitions = if batch.num_rows() == 0 { vec![vec![]] } else { vec![vec![batch]] };
        Ok(MemorySourceConfig::try_new_exec(&partitions, self.schema.clone(), projection.cloned())?)
    }

    /// A scan through an index of committed rows, when one serves the filters and the
    /// primary key does not pin the rows already.
    fn index_scan(
        &self,
        filters: &[Expr],
        projection: Option<&Vec<usize>>,
    ) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
        let Rows::Committed(snapshot) = &self.rows else { return Ok(None) };
        if self.indexes.is_empty() || self.pinned_keys(filters).is_some() {
            return Ok(None);
        }
        let Some(choice) = index_scan::choose(&self.desc, &self.indexes, filters) else { return Ok(None) };
        let keys = choice.table_keys(&self.desc, snapshot.as_ref()).map_err(DataFusionError::from)?;
        let rows = self.rows_exec(self.load_keys(Some(keys))?, projection)?;
        Ok(Some(Arc::new(index_scan::IndexScanExec {
            table: self.desc.qualified_name(),
            index: choice.index.name.clone(),
            condition: choice.condition,
            rows,
        })))
    }
}

/// The `sabot` catalog of one statement: every schema and table as of one snapshot, with
/// optional per-table overrides (the target of a DML statement).
#[derive(Clone)]
pub struct SabotCatalog {
    catalog: Arc<Catalog>,
    snapshot: Arc<dyn Snapshot>,
    overrides: HashMap<(String, String), Arc<dyn TableProvider>>,
    system: system::SystemState,
    /// The session's variables, for `pg_settings` and `current_setting`.
    settings: Arc<Vec<pg_catalog::Setting>>,
}

impl std::fmt::Debug for SabotCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SabotCatalog").finish_non_exhaustive()
    }
}

impl SabotCatalog {
    pub fn new(catalog: Arc<Catalog>, snapshot: Arc<dyn Snapshot>) -> Self {
        SabotCatalog {
            catalog,
            snapshot,
            overrides: HashMap::new(),
            system: Default::default(),
            settings: Arc::default(),
        }
    }

    /// What `sabot_catalog`'s relations show.
    pub fn with_system(mut self, system: system::SystemState) -> Self {
        self.system = system;
        self
    }

    /// A relation of the catalog and the provider of its committed rows, for the window
    /// table functions (`sql::window`); `schema` None is `default_schema`.
    pub fn relation(
        &self,
        schema: Option<&str>,
        name: &str,
        default_schema: &str,
    ) -> crate::common::Result<(Arc<TableDesc>, Arc<dyn TableProvider>)> {
        let schema = schema.unwrap_or(default_schema);
        let desc = self.catalog.table(schema, name).cloned().ok_or_else(|| {
            Error::new(crate::common::SqlState::UndefinedTable, format!("relation \"{name}\" does not exist"))
        })?;
        if desc.is_index() {
            return Err(Error::new(
                crate::common::SqlState::WrongObjectType,
                format!("\"{name}\" is an index"),
            ));
        }
        if desc.is_plain_view() {
            return Err(Error::unsupported(format!("a window table function over view \"{name}\""))
                .with_hint(
                    "name the view's tables in the window function, or make the view a materialized view",
                ));
        }
        let provider = StoredTable::committed(desc.clone(), self.snapshot.clone());
        Ok((desc, Arc::new(provider)))
    }

    /// The committed state the statement reads.
    pub fn snapshot(&self) -> &Arc<dyn Snapshot> {
        &self.snapshot
    }

    /// The catalog the statement sees.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The session's variables (`pg_settings`, `current_setting`).
    pub fn with_settings(mut self, settings: Vec<pg_catalog::Setting>) -> Self {
        self.settings = Arc::new(settings);
        self
    }

    pub fn settings(&self) -> &[pg_catalog::Setting] {
        &self.settings
    }

    /// Serves `schema.name` from `table` instead of the catalog (a DML target, COPY input).
    pub fn with_table(mut self, schema: &str, name: &str, table: Arc<dyn TableProvider>) -> Self {
        self.overrides.insert((schema.to_string(), name.to_string()), table);
        self
    }
}

impl CatalogProvider for SabotCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names = self.catalog.schema_names();
        names.push(information_schema::NAME.to_string());
        names.push(system::NAME.to_string());
        names.push(pg_catalog::NAME.to_string());
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if name == information_schema::NAME {
            return information_schema::provider(&self.catalog).ok();
        }
        if name == system::NAME {
            let schema =
                system::SystemSchema::new(self.system.clone(), self.catalog.clone(), self.snapshot.clone());
            return Some(Arc::new(BuiltSchema(schema)));
        }
        if name == pg_catalog::NAME {
            let schema = pg_catalog::PgCatalogSchema::new(self.catalog.clone(), self.settings.clone());
            return Some(Arc::new(BuiltSchema(schema)));
        }
        if !self.catalog.schema_exists(name) {
            return None;
        }
        Some(Arc::new(SabotSchema { name: name.to_string(), catalog: self.clone() }))
    }
}

/// A schema whose relations are built when a statement names one, from what the
/// statement sees (`sabot_catalog`, `pg_catalog`).
pub trait BuiltRelations: Send + Sync + 'static {
    /// The relations' names.
    fn names(&self) -> &'static [&'static str];
    /// The relation `name`, built now (None when there is no such relation).
    fn build(&self, name: &str) -> crate::common::Result<Option<Arc<datafusion::datasource::MemTable>>>;
}

/// The DataFusion schema of [`BuiltRelations`].
pub struct BuiltSchema<T>(pub T);

impl<T> std::fmt::Debug for BuiltSchema<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltSchema").finish_non_exhaustive()
    }
}

#[async_trait]
impl<T: BuiltRelations> SchemaProvider for BuiltSchema<T> {
    fn table_names(&self) -> Vec<String> {
        self.0.names().iter().map(|t| t.to_string()).collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let table = self.0.build(name).map_err(DataFusionError::from)?;
        Ok(table.map(|t| t as Arc<dyn TableProvider>))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.0.names().contains(&name)
    }
}

#[derive(Debug)]
struct SabotSchema {
    name: String,
    catalog: SabotCatalog,
}

/// The error for reading a sink, which keeps no rows.
pub fn sink_not_readable(name: &str) -> crate::common::Error {
    crate::common::Error::new(
        crate::common::SqlState::WrongObjectType,
        format!("\"{name}\" is a sink; its rows go to its connector and cannot be queried"),
    )
    .with_hint("query the materialized view or the query the sink is defined on")
}

#[async_trait]
impl SchemaProvider for SabotSchema {
    fn table_names(&self) -> Vec<String> {
        self.catalog.catalog.tables_in(&self.name).map(|t| t.name.clone()).collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let key = (self.name.clone(), name.to_string());
        if let Some(table) = self.catalog.overrides.get(&key) {
            return Ok(Some(table.clone()));
        }
        let Some(desc) = self.catalog.catalog.table(&self.name, name) else {
            // As in Postgres, pg_catalog is on every search path: `pg_class` alone names it.
            let catalog = &self.catalog;
            let schema = pg_catalog::PgCatalogSchema::new(catalog.catalog.clone(), catalog.settings.clone());
            return BuiltSchema(schema).table(name).await;
        };
        if desc.is_index() {
            return Err(DataFusionError::from(Error::new(
                crate::common::SqlState::WrongObjectType,
                format!("\"{name}\" is an index"),
            )));
        }
        let indexes = self.catalog.catalog.indexes_on(desc.id);
        let table = StoredTable::committed(desc.clone(), self.catalog.snapshot.clone()).with_indexes(indexes);
        Ok(Some(Arc::new(table)))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.catalog.catalog.table(&self.name, name).is_some() || pg_catalog::TABLES.contains(&name)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int32Array, StringArray};
    use datafusion::logical_expr::{col, lit};

    use super::*;
    use crate::catalog::ColumnDesc;
    use crate::common::SqlType;
    use crate::state::{MemoryStore, StateStore, WriteBatch};

    fn table() -> (Arc<TableDesc>, MemoryStore) {
        let column = |name: &str, sql_type| ColumnDesc {
            name: name.into(),
            sql_type,
            nullable: false,
            default: None,
            hidden: false,
        };
        let desc = Arc::new(TableDesc {
            id: 2000,
            schema: "public".into(),
            name: "t".into(),
            columns: vec![column("id", SqlType::Int32), column("v", SqlType::Text)],
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
        let codec = TableCodec::new(&desc).unwrap();
        let batch = RecordBatch::try_new(
            desc.full_schema(),
            vec![Arc::new(Int32Array::from(vec![1, 2, 3])), Arc::new(StringArray::from(vec!["a", "b", "c"]))],
        )
        .unwrap();
        let (keys, rows) = (codec.encode_keys(&batch).unwrap(), codec.encode_rows(&batch).unwrap());
        let mut write = WriteBatch::default();
        for i in 0..3 {
            write.put(desc.id, keys.row(i).data(), rows.row(i).data().to_vec());
        }
        let store = MemoryStore::default();
        store.commit(write).unwrap();
        (desc, store)
    }

    #[test]
    fn key_equality_filters_read_only_those_keys() {
        let (desc, store) = table();
        let table = StoredTable::committed(desc, store.snapshot());
        assert_eq!(table.pinned_keys(&[col("id").eq(lit(2i64))]).map(|k| k.len()), Some(1));
        assert_eq!(table.load(&[col("id").eq(lit(2i64))]).unwrap().num_rows(), 1);
        let in_list = col("id").in_list(vec![lit(1), lit(3), lit(9)], false);
        assert_eq!(table.load(&[in_list]).unwrap().num_rows(), 2);
        // DataFusion writes a short IN list as ORs.
        let ors = col("id").eq(lit(1)).or(col("id").eq(lit(3))).or(col("id").eq(lit(1)));
        assert_eq!(table.pinned_keys(std::slice::from_ref(&ors)).map(|k| k.len()), Some(2));
        assert_eq!(table.pinned_keys(&[col("id").eq(lit(1)).or(col("v").eq(lit("a")))]), None);
        // Anything else scans the whole table (DataFusion applies the filter afterwards).
        assert_eq!(table.pinned_keys(&[col("v").eq(lit("a"))]), None);
        assert_eq!(table.pinned_keys(&[col("id").gt(lit(1))]), None);
        assert_eq!(table.load(&[col("id").gt(lit(1))]).unwrap().num_rows(), 3);
    }
}
