//! The reader of a table's connector: its rows go into the table as DML's rows do —
//! through the table's writer, to the table's state and its change stream — and the
//! state of its splits is staged with them, so that they commit in the same epoch as the
//! rows they produced. A table with a primary key takes each row as an upsert: a row whose
//! key exists replaces the old one (an update pair downstream).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{ReadLimits, SourceConnector, SourceProgress, SplitId, SplitSet, SplitState, Step};
use crate::catalog::TableDesc;
use crate::common::Result;
use crate::stream::coordinator::{Coordinator, SharedWriter};

pub struct TableIngest {
    pub table: Arc<TableDesc>,
    pub connector: Arc<dyn SourceConnector>,
    pub writer: SharedWriter,
    pub coordinator: Arc<Coordinator>,
    /// The splits' committed states.
    pub saved: BTreeMap<SplitId, SplitState>,
    pub limits: ReadLimits,
    pub progress: Arc<SourceProgress>,
}

impl TableIngest {
    /// Reads until every split is exhausted (or forever); stopped by aborting its task.
    pub async fn run(self) {
        let name = self.table.qualified_name();
        if let Err(error) = self.ingest().await {
            tracing::error!(table = %name, %error, "reading the table's connector failed; the table no longer follows it");
        }
    }

    async fn ingest(self) -> Result<()> {
        let mut splits =
            SplitSet::open(self.connector.clone(), self.saved.clone(), self.limits, self.progress.clone())?;
        loop {
            match splits.step().await? {
                Step::Rows { data, .. } => {
                    let mut writer = self.writer.lock().await;
                    if data.num_rows() == 0 {
                        // Only dead letters.
                        self.stage(&mut writer, &mut splits)?;
                        continue;
                    }
                    let snapshot = self.coordinator.store().snapshot();
                    let chunk = writer.connector_chunk(snapshot.as_ref(), data)?;
                    writer.apply(chunk).await?;
                    self.stage(&mut writer, &mut splits)?;
                }
                Step::Changed => self.stage(&mut *self.writer.lock().await, &mut splits)?,
                Step::Wait(wait) => tokio::time::sleep(wait).await,
                Step::Finished => return Ok(()),
            }
        }
    }

    /// Stages the split states and dead letters since the last call with the writer's
    /// rows. A commit cuts its epoch with every writer's lock held, so while `writer` is
    /// locked, what it stages commits with the open (pending) epoch, as its rows do.
    fn stage(&self, writer: &mut crate::stream::TableWriter, splits: &mut SplitSet) -> Result<()> {
        for (split, state) in splits.take_dirty(self.coordinator.pending_epoch())? {
            writer.stage_split(&split, state);
        }
        for (key, value) in splits.take_dead_letters()? {
            writer.stage_system_write(super::DEAD_LETTERS_TABLE, key, value);
        }
        Ok(())
    }
}
