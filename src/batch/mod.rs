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
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use crate::catalog::{Catalog, TableCodec, TableDesc};
use crate::common::Error;
use crate::state::Snapshot;

/// Where a table's rows come from.
#[derive(Clone)]
enum Rows {
    /// Decoded from the snapshot when the table is scanned.
    Committed(Arc<dyn Snapshot>),
    /// Already materialized (DML reads the current, not yet committed, state).
    Materialized(RecordBatch),
}

/// A stored table as DataFusion sees it.
pub struct StoredTable {
    desc: Arc<TableDesc>,
    rows: Rows,
    /// The visible schema, or the full one (hidden row id included) for DML.
    schema: SchemaRef,
    defaults: HashMap<String, Expr>,
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
        }
    }

    /// The given rows (in the full schema); hidden columns are shown when `show_hidden`
    /// (UPDATE and DELETE read the row id to know which rows they change).
    pub fn materialized(desc: Arc<TableDesc>, rows: RecordBatch, show_hidden: bool) -> Self {
        StoredTable {
            schema: if show_hidden { desc.full_schema() } else { desc.visible_schema() },
            desc,
            rows: Rows::Materialized(rows),
            defaults: HashMap::new(),
        }
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

    /// Column defaults that `INSERT` fills in for omitted columns.
    pub fn with_defaults(mut self, defaults: HashMap<String, Expr>) -> Self {
        self.defaults = defaults;
        self
    }

    fn load(&self) -> DfResult<RecordBatch> {
        let full = match &self.rows {
            Rows::Materialized(batch) => batch.clone(),
            Rows::Committed(snapshot) => {
                let codec = TableCodec::new(&self.desc).map_err(external)?;
                codec.scan(snapshot.as_ref(), self.desc.id).map_err(external)?
            }
        };
        if full.schema().fields().len() == self.schema.fields().len() {
            return Ok(full);
        }
        let visible: Vec<usize> =
            (0..self.desc.columns.len()).filter(|&i| !self.desc.columns[i].hidden).collect();
        let projected = full.project(&visible)?;
        Ok(RecordBatch::try_new(self.schema.clone(), projected.columns().to_vec())?)
    }
}

fn external(error: Error) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::External(Box::new(error))
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

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let batch = self.load()?;
        let partitions = if batch.num_rows() == 0 { vec![vec![]] } else { vec![vec![batch]] };
        Ok(MemorySourceConfig::try_new_exec(&partitions, self.schema.clone(), projection.cloned())?)
    }
}

/// The `sabot` catalog of one statement: every schema and table as of one snapshot, with
/// optional per-table overrides (the target of a DML statement).
#[derive(Clone)]
pub struct SabotCatalog {
    catalog: Arc<Catalog>,
    snapshot: Arc<dyn Snapshot>,
    overrides: HashMap<(String, String), Arc<dyn TableProvider>>,
}

impl std::fmt::Debug for SabotCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SabotCatalog").finish_non_exhaustive()
    }
}

impl SabotCatalog {
    pub fn new(catalog: Arc<Catalog>, snapshot: Arc<dyn Snapshot>) -> Self {
        SabotCatalog { catalog, snapshot, overrides: HashMap::new() }
    }

    pub fn with_override(mut self, desc: &TableDesc, table: Arc<dyn TableProvider>) -> Self {
        self.overrides.insert((desc.schema.clone(), desc.name.clone()), table);
        self
    }
}

impl CatalogProvider for SabotCatalog {
    fn schema_names(&self) -> Vec<String> {
        self.catalog.schema_names()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if !self.catalog.schema_exists(name) || name == "information_schema" {
            return None;
        }
        Some(Arc::new(SabotSchema { name: name.to_string(), catalog: self.clone() }))
    }
}

#[derive(Debug)]
struct SabotSchema {
    name: String,
    catalog: SabotCatalog,
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
        Ok(self.catalog.catalog.table(&self.name, name).map(|desc| {
            Arc::new(StoredTable::committed(desc.clone(), self.catalog.snapshot.clone()))
                as Arc<dyn TableProvider>
        }))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.catalog.catalog.table(&self.name, name).is_some()
    }
}
