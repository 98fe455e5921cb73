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
use crate::state::StateStore;
use crate::stream::coordinator::SharedWriter;

pub struct TableIngest {
    pub table: Arc<TableDesc>,
    pub connector: Arc<dyn SourceConnector>,
    pub writer: SharedWriter,
    pub store: Arc<dyn StateStore>,
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
            SplitSet::open(self.connector.as_ref(), self.saved.clone(), self.limits, self.progress.clone())?;
        loop {
            match splits.step().await? {
                Step::Rows { data, .. } => {
                    if data.num_rows() == 0 {
                        continue;
                    }
                    let mut writer = self.writer.lock().await;
                    let snapshot = self.store.snapshot();
                    let chunk = writer.connector_chunk(snapshot.as_ref(), data)?;
                    writer.apply(chunk).await?;
                    for (split, state) in splits.take_dirty()? {
                        writer.stage_split(&split, state);
                    }
                }
                Step::Changed => {
                    let mut writer = self.writer.lock().await;
                    for (split, state) in splits.take_dirty()? {
                        writer.stage_split(&split, state);
                    }
                }
                Step::Wait(wait) => tokio::time::sleep(wait).await,
                Step::Finished => return Ok(()),
            }
        }
    }
}
