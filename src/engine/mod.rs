//! `Database`: one handle that owns the state store, the catalog and the barrier
//! coordinator, and hands out [`Session`]s that execute SQL. This is the embeddable API;
//! the pgwire server is one client of it.

mod alter;
mod checks;
mod column_values;
mod comments;
mod copy;
mod ddl;
mod dml;
pub mod execute;
mod functions;
mod indexes;
pub mod memory;
mod plain_views;
mod query;
mod roles;
pub mod session;
mod settings;
mod sinks;
mod sources;
mod transaction;
mod uniques;
mod upsert;
mod views;

use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::sync::mpsc;

use crate::catalog::{Catalog, CatalogChange, TableDesc};
use crate::common::config::Config;
use crate::common::{Error, Result, SqlState};
use crate::state::{Epoch, MemoryStore, RocksStore, StateStore, WriteBatch};
use crate::stream::coordinator::SharedWriter;
use crate::stream::{Coordinator, Message, TableWriter};

pub use session::{Outcome, Prepared, Session};
pub use settings::Settings;

pub struct Database {
    config: Config,
    catalog: RwLock<Arc<Catalog>>,
    /// Serializes DDL so that catalog changes are applied in commit order.
    ddl_lock: tokio::sync::Mutex<()>,
    coordinator: Arc<Coordinator>,
    commit_loop: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Runs query plans and view dataflows, apart from the runtime serving connections
    /// and committing epochs: a heavy query must not starve the accept loop, cancel
    /// requests or the barrier coordinator.
    compute: execute::Runtime,
    /// Runs client sessions (parsing, planning, sending results), on threads whose stacks
    /// are sized for deep statements.
    sessions: execute::Runtime,
    /// Memory reserved by running statements.
    memory: Arc<memory::MemoryGauge>,
    /// Readers of sources, for their progress.
    source_readers: sources::SourceReaders,
    /// The connector readers of tables with a connector, by table id, with their progress
    /// (kept after a bounded connector is exhausted).
    ingests: Mutex<std::collections::HashMap<crate::state::TableId, sources::Ingest>>,
    dataflows: views::Dataflows,
    /// The memory budgets of operator state.
    state_memory: crate::state::StateMemory,
}

impl Database {
    /// Opens (or creates) the database described by `config` and starts committing epochs.
    /// Must be called inside a Tokio runtime. Materialized views resume from their
    /// committed state.
    pub async fn open(config: Config) -> Result<Arc<Database>> {
        let store: Arc<dyn StateStore> = if config.ephemeral {
            Arc::new(MemoryStore::default())
        } else {
            Arc::new(RocksStore::open(&config.data_dir, config.state_cache_bytes_max)?)
        };
        let snapshot = store.snapshot();
        let catalog = Catalog::load(snapshot.as_ref())?;
        let coordinator = Arc::new(Coordinator::open(
            store,
            snapshot.as_ref(),
            Duration::from_millis(config.checkpoint_timeout_ms.max(1)),
        )?);
        for desc in catalog.tables().filter(|t| !t.is_source() && !t.is_plain_view()) {
            coordinator.add_writer(TableWriter::open(desc.clone(), snapshot.as_ref())?);
        }
        tracing::info!(
            epoch = coordinator.committed_epoch(),
            tables = catalog.tables().count(),
            ephemeral = config.ephemeral,
            "database opened"
        );
        let commit_loop = coordinator.spawn(Duration::from_millis(config.barrier_interval_ms.max(1)));
        let db = Arc::new(Database {
            config: config.clone(),
            catalog: RwLock::new(Arc::new(catalog)),
            ddl_lock: tokio::sync::Mutex::new(()),
            coordinator,
            commit_loop: Mutex::new(Some(commit_loop)),
            compute: execute::Runtime::new("sabot-compute")?,
            sessions: execute::Runtime::new("sabot-session")?,
            memory: Default::default(),
            source_readers: Default::default(),
            ingests: Default::default(),
            dataflows: Default::default(),
            state_memory: crate::state::StateMemory::new(
                config.operator_cache_bytes_max,
                config.state_memory_bytes_max,
            ),
        });
        db.stop_views_on_failure();
        if let Err(e) = db.restore_views().await {
            let _ = db.shutdown().await;
            return Err(e);
        }
        let connector_tables: Vec<_> =
            db.catalog().tables().filter(|t| t.connector.is_some() && !t.is_source()).cloned().collect();
        for table in connector_tables {
            if let Err(e) = db.start_ingest(&table) {
                let _ = db.shutdown().await;
                return Err(e);
            }
        }
        if let Some(password) = &db.config.superuser_password
            && let Err(e) = db.set_superuser_password(password).await
        {
            let _ = db.shutdown().await;
            return Err(e);
        }
        Ok(db)
    }

    /// When a commit fails (the server then takes no writes until restarted), stops every
    /// view's dataflow, so that nothing waits on views any more: writers blocked on a full
    /// channel of a stuck view get going again (and are refused).
    fn stop_views_on_failure(self: &Arc<Self>) {
        let database = Arc::downgrade(self);
        let mut committed = self.coordinator.subscribe_committed();
        tokio::spawn(async move {
            while committed.changed().await.is_ok() {
                if committed.borrow().failure.is_none() {
                    continue;
                }
                let Some(database) = database.upgrade() else { return };
                let dataflows: Vec<_> = database.dataflows.lock().drain().map(|(_, d)| d).collect();
                tracing::error!(
                    views = dataflows.len(),
                    "a commit failed: every view's dataflow stops until restart"
                );
                for dataflow in dataflows {
                    dataflow.stop().await;
                }
                return;
            }
        });
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A session of the superuser `sabot` (for embedding Sabot in a program).
    pub fn session(self: &Arc<Self>) -> Session {
        Session::new(self.clone(), crate::catalog::SUPERUSER)
    }

    /// A session of `user`, who has logged in.
    pub fn session_as(self: &Arc<Self>, user: &str) -> Session {
        Session::new(self.clone(), user)
    }

    /// The runtime client sessions run on (`server` spawns each connection there).
    pub fn session_runtime(&self) -> tokio::runtime::Handle {
        self.sessions.handle()
    }

    /// Bytes of memory reserved by the statements running now.
    pub fn statement_memory_bytes(&self) -> usize {
        self.memory.reserved_bytes()
    }

    /// A memory pool for one statement: `limit_bytes`, or the server's
    /// `statement_memory_bytes_max`, at most.
    fn statement_pool(
        &self,
        limit_bytes: Option<usize>,
    ) -> Arc<dyn datafusion::execution::memory_pool::MemoryPool> {
        let limit = limit_bytes.unwrap_or(self.config.statement_memory_bytes_max);
        Arc::new(memory::StatementPool::new(limit, self.memory.clone()))
    }

    /// The catalog as of now.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.read().clone()
    }

    pub fn committed_epoch(&self) -> Epoch {
        self.coordinator.committed_epoch()
    }

    /// Commits a barrier and waits for it: every earlier write is then durable and visible.
    pub async fn flush(&self) -> Result<Epoch> {
        self.coordinator.flush().await
    }

    /// Subscribes to the change stream of a table: every chunk written from now on, and a
    /// barrier after each epoch that committed changes.
    pub async fn subscribe(&self, schema: &str, table: &str) -> Result<mpsc::Receiver<Message>> {
        let desc = self.table(schema, table)?;
        let writer = self.writer(&desc)?;
        let mut guard = writer.lock().await;
        guard.subscribe(self.config.change_channel_messages_max)
    }

    /// Commits what is pending and stops the commit loop. Writes after this fail.
    pub async fn shutdown(&self) -> Result<()> {
        for (_, ingest) in self.ingests.lock().drain() {
            ingest.task.abort();
        }
        let result = self.coordinator.flush().await;
        // The commit loop goes first: an epoch cut now would wait for the dataflows
        // stopped next (and fail when they say they stopped).
        let commit_loop = self.commit_loop.lock().take();
        if let Some(handle) = commit_loop {
            handle.abort();
            // Wait until the task is gone, so that it no longer holds the store open.
            let _ = handle.await;
        }
        let dataflows: Vec<_> = self.dataflows.lock().drain().map(|(_, d)| d).collect();
        for dataflow in dataflows {
            dataflow.stop().await;
        }
        tracing::info!(epoch = self.coordinator.committed_epoch(), "database closed");
        result.map(|_| ())
    }

    fn table(&self, schema: &str, name: &str) -> Result<Arc<TableDesc>> {
        self.catalog().table(schema, name).cloned().ok_or_else(|| {
            Error::new(SqlState::UndefinedTable, format!("relation \"{name}\" does not exist"))
        })
    }

    fn writer(&self, desc: &TableDesc) -> Result<SharedWriter> {
        self.coordinator.writer(desc.id).ok_or_else(|| {
            Error::new(SqlState::UndefinedTable, format!("relation \"{}\" does not exist", desc.name))
        })
    }

    /// Applies catalog changes in memory, stages them for the next epoch and waits for it.
    async fn change_catalog(&self, changes: Vec<CatalogChange>) -> Result<()> {
        self.coordinator.check_healthy()?;
        let epoch = self.stage_catalog_changes(changes)?;
        self.coordinator.wait_committed(epoch).await
    }

    /// Applies catalog changes in memory and stages them for the next epoch, which it
    /// returns; table writers come and go with their tables.
    fn stage_catalog_changes(&self, changes: Vec<CatalogChange>) -> Result<Epoch> {
        let epoch = {
            let mut current = self.catalog.write();
            let mut next = Catalog::clone(&current);
            let mut batch = WriteBatch::default();
            for change in &changes {
                next.apply(change)?;
                next.persist(change, &mut batch)?;
            }
            let snapshot = self.coordinator.store().snapshot();
            for change in &changes {
                match change {
                    CatalogChange::CreateTable(desc) if !desc.is_table() => {}
                    CatalogChange::CreateTable(desc) => {
                        self.coordinator.add_writer(TableWriter::open(desc.clone(), snapshot.as_ref())?);
                    }
                    CatalogChange::DropTable(desc) => {
                        if let Some(ingest) = self.ingests.lock().remove(&desc.id) {
                            ingest.task.abort();
                        }
                        self.coordinator.remove_writer(desc.id);
                        batch.delete(
                            crate::state::META_TABLE,
                            &crate::stream::table_writer::row_id_key(desc.id),
                        );
                        batch.delete_prefix(
                            crate::state::META_TABLE,
                            &crate::stream::table_writer::split_prefix(desc.id),
                        );
                        batch.delete(
                            crate::state::META_TABLE,
                            &crate::stream::table_writer::watermark_key(desc.id),
                        );
                    }
                    // The writer of an altered table is changed at the boundary of the ALTER;
                    // the values of UNIQUE constraints it drops go.
                    CatalogChange::AlterTable(desc) => {
                        if let Some(old) = current.table_by_id(desc.id) {
                            for unique in &old.uniques {
                                if !desc.uniques.iter().any(|u| u.state == unique.state) {
                                    batch.delete_table(unique.state);
                                }
                            }
                        }
                    }
                    CatalogChange::CreateSchema(_)
                    | CatalogChange::DropSchema(_)
                    | CatalogChange::CreateRole(_)
                    | CatalogChange::AlterRole(_)
                    | CatalogChange::DropRole(_)
                    | CatalogChange::SetComment { .. }
                    | CatalogChange::CreateFunction(_)
                    | CatalogChange::DropFunction(_) => {}
                }
            }
            *current = Arc::new(next);
            self.coordinator.stage_meta(batch)
        };
        Ok(epoch)
    }
}
