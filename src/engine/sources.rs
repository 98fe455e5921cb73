//! CREATE / DROP / SHOW SOURCE, and what a dataflow's reader of a source is given.
//!
//! A source is a relation in the catalog whose rows come from its connector and are not
//! stored: a materialized view (or sink) over it runs its own reader, with its own split
//! positions committed with the view's state (`stream::source`).

use std::sync::{Arc, Weak};

use datafusion::sql::sqlparser::ast::ObjectName;

use super::Database;
use super::session::Outcome;
use crate::catalog::{CatalogChange, TableDesc};
use crate::common::{Error, Result, SqlState};
use crate::sql::ddl::resolve_drop_targets;
use crate::sql::source_ddl::{CreateSource, bind_source};
use crate::stream::actor::DataflowId;
use crate::stream::dataflow::SourceSetup;
use crate::stream::source::ingest::TableIngest;
use crate::stream::source::{ReadLimits, SourceConnector, SourceProgress, SplitState};

/// The readers of sources running now, for `sabot_catalog.source_splits`.
pub(super) type SourceReaders = parking_lot::Mutex<Vec<Weak<SourceProgress>>>;

/// The reader of a table's connector.
pub(super) struct Ingest {
    pub task: tokio::task::JoinHandle<()>,
    /// Held here too, so that the splits stay listed once the reader is done.
    _progress: Arc<SourceProgress>,
}

impl Database {
    pub(super) async fn create_source(&self, create: &CreateSource, schema: &str) -> Result<Outcome> {
        let tag = if create.table { "CREATE TABLE" } else { "CREATE SOURCE" };
        let _ddl = self.ddl_lock.lock().await;
        let mut catalog = (*self.catalog()).clone();
        let mut desc = bind_source(create, &mut catalog, schema)?;
        if catalog.table(&desc.schema, &desc.name).is_some() {
            if create.if_not_exists {
                return Ok(Outcome::command(tag)
                    .with_notice(format!("relation \"{}\" already exists, skipping", desc.name)));
            }
            return Err(Error::new(
                SqlState::DuplicateTable,
                format!("relation \"{}\" already exists", desc.name),
            ));
        }
        // The watermark expression must type-check before the relation exists.
        crate::stream::watermark::WatermarkExpr::of(&desc)?;
        let visible = desc.visible_schema();
        if let Some(def) = desc.connector.as_mut() {
            source_rate_limit(def)?;
            def.options = crate::connector::prepare_source(def, &visible)?;
        }
        let desc = Arc::new(desc);
        self.change_catalog(vec![CatalogChange::CreateTable(desc.clone())]).await?;
        if desc.connector.is_some() && create.table {
            self.start_ingest(&desc)?;
        }
        Ok(Outcome::command(tag))
    }

    /// Starts reading `table`'s connector into the table, from the committed split states.
    pub(super) fn start_ingest(&self, table: &Arc<TableDesc>) -> Result<()> {
        let def = table
            .connector
            .as_ref()
            .ok_or_else(|| Error::internal(format!("{} has no connector", table.name)))?;
        let connector = crate::connector::source(def, &table.visible_schema())?;
        let writer = self.writer(table)?;
        let prefix = crate::stream::table_writer::split_prefix(table.id);
        let mut saved = std::collections::BTreeMap::new();
        let mut failed = None;
        self.coordinator.store().snapshot().scan_range(
            crate::state::META_TABLE,
            &prefix,
            None,
            &mut |key, value| {
                let Some(split) = key.strip_prefix(prefix.as_slice()) else { return Ok(false) };
                match SplitState::decode(value) {
                    Ok(state) => {
                        saved.insert(String::from_utf8_lossy(split).into_owned(), state);
                    }
                    Err(e) => failed = Some(e),
                }
                Ok(true)
            },
        )?;
        if let Some(e) = failed {
            return Err(e);
        }
        let progress = self.register_reader(table, &table.qualified_name());
        let ingest = TableIngest {
            table: table.clone(),
            limits: self.read_limits(def, connector.as_ref())?,
            connector,
            writer,
            coordinator: self.coordinator.clone(),
            saved,
            progress: progress.clone(),
        };
        let task = self.compute.handle().spawn(ingest.run());
        self.ingests.lock().insert(table.id, Ingest { task, _progress: progress });
        Ok(())
    }

    pub(super) async fn drop_sources(
        &self,
        names: &[ObjectName],
        if_exists: bool,
        cascade: bool,
        schema: &str,
    ) -> Result<Outcome> {
        let notices =
            self.drop_of_kind(names, if_exists, cascade, schema, "source", TableDesc::is_source).await?;
        Ok(Outcome::command("DROP SOURCE").with_notices(notices))
    }

    /// Drops relations of one kind (`is_kind`, named `kind` in messages), with the views
    /// and sinks on them when `cascade`; returns the notices.
    pub(super) async fn drop_of_kind(
        &self,
        names: &[ObjectName],
        if_exists: bool,
        cascade: bool,
        schema: &str,
        kind: &str,
        is_kind: fn(&TableDesc) -> bool,
    ) -> Result<Vec<String>> {
        let _ddl = self.ddl_lock.lock().await;
        let catalog = self.catalog();
        let mut notices = Vec::new();
        let targets = resolve_drop_targets(names, &catalog, schema, if_exists, kind, &mut notices)?;
        if let Some(wrong) = targets.iter().find(|t| !is_kind(t)) {
            let article = |kind: &str| if kind.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
            return Err(Error::new(
                SqlState::WrongObjectType,
                format!("\"{}\" is not {} {kind}", wrong.name, article(kind)),
            )
            .with_hint(format!(
                "Use DROP {} to remove {} {}.",
                wrong.kind_name().to_uppercase(),
                article(wrong.kind_name()),
                wrong.kind_name()
            )));
        }
        if targets.iter().any(|t| t.is_view() || !catalog.dependents(t.id).is_empty()) {
            notices.extend(self.drop_with_views(targets, cascade, Vec::new()).await?);
        } else if !targets.is_empty() {
            self.change_catalog(targets.into_iter().map(CatalogChange::DropTable).collect()).await?;
        }
        Ok(notices)
    }

    /// What the reader of `relation` in `dataflow` (feeding `reader`) is given. Called at
    /// an epoch boundary, so that the reader's first barrier is the next epoch's.
    pub(super) fn source_setup(
        &self,
        relation: &Arc<TableDesc>,
        dataflow: DataflowId,
        reader: &str,
    ) -> Result<SourceSetup> {
        let def = relation
            .connector
            .as_ref()
            .ok_or_else(|| Error::internal(format!("{} has no connector", relation.name)))?;
        let connector = crate::connector::source(def, &relation.visible_schema())?;
        let limits = self.read_limits(def, connector.as_ref())?;
        let (barriers, active) = self.coordinator.register_source(dataflow);
        let progress = self.register_reader(relation, reader);
        Ok(SourceSetup { connector, barriers, active, limits, progress })
    }

    /// A reader's limits: the server's chunk size, and the lower of `source_rate_limit`
    /// and the connector's own pace.
    fn read_limits(
        &self,
        def: &crate::catalog::ConnectorDef,
        connector: &dyn SourceConnector,
    ) -> Result<ReadLimits> {
        let rows_per_second = match (source_rate_limit(def)?, connector.rows_per_second()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok(ReadLimits { chunk_rows_max: self.config.source_chunk_rows_max.max(1), rows_per_second })
    }

    /// A progress record for a reader of `relation` feeding `reader`, listed in
    /// `sabot_catalog.source_splits` while the reader holds it.
    fn register_reader(&self, relation: &TableDesc, reader: &str) -> Arc<SourceProgress> {
        let progress = Arc::new(SourceProgress::new(relation.qualified_name(), reader.to_string()));
        let mut readers = self.source_readers.lock();
        readers.retain(|r| r.strong_count() > 0);
        readers.push(Arc::downgrade(&progress));
        progress
    }

    /// The readers of sources running now.
    pub fn source_progress(&self) -> Vec<Arc<SourceProgress>> {
        self.source_readers.lock().iter().filter_map(Weak::upgrade).collect()
    }
}

/// `source_rate_limit`: rows per second for the whole source, if limited.
fn source_rate_limit(def: &crate::catalog::ConnectorDef) -> Result<Option<u64>> {
    match def.options.get("source_rate_limit") {
        None => Ok(None),
        Some(text) => match text.trim().parse::<u64>() {
            Ok(rate) if rate > 0 => Ok(Some(rate)),
            _ => Err(Error::new(
                SqlState::InvalidParameterValue,
                format!(
                    "invalid value \"{text}\" for option \"source_rate_limit\": expected rows per second, a positive integer"
                ),
            )),
        },
    }
}
