//! `sabot_catalog`: Sabot's own system relations (as `pg_catalog` is Postgres'), built
//! for each statement from the running database.
//!
//! - `source_splits`: one row per split of every running reader of a source — the source,
//!   the view it feeds, the split, its position and rows as of the last barrier (what
//!   commits with it), and whether a bounded split is exhausted.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::datasource::MemTable;

use crate::common::Result;
use crate::stream::source::SourceProgress;

pub const NAME: &str = "sabot_catalog";

/// What the system relations show, captured when the statement starts.
#[derive(Clone, Debug, Default)]
pub struct SystemState {
    pub sources: Vec<Arc<SourceProgress>>,
}

pub fn provider(state: &SystemState) -> Result<Arc<dyn SchemaProvider>> {
    let schema = MemorySchemaProvider::new();
    schema.register_table("source_splits".into(), source_splits(state)?)?;
    Ok(Arc::new(schema))
}

fn source_splits(state: &SystemState) -> Result<Arc<MemTable>> {
    let mut rows: Vec<(String, String, String, Option<String>, i64, bool)> = Vec::new();
    for reader in &state.sources {
        for split in reader.splits.lock().iter() {
            rows.push((
                reader.source.clone(),
                reader.reader.clone(),
                split.split.clone(),
                split.position.clone(),
                split.rows as i64,
                split.done,
            ));
        }
    }
    rows.sort_by(|a, b| (&a.0, &a.1, &a.2).cmp(&(&b.0, &b.1, &b.2)));
    let text = |values: Vec<Option<String>>| -> ArrayRef { Arc::new(StringArray::from(values)) };
    let schema = Arc::new(Schema::new(vec![
        Field::new("object", DataType::Utf8, false),
        Field::new("reader", DataType::Utf8, false),
        Field::new("split", DataType::Utf8, false),
        Field::new("position", DataType::Utf8, true),
        Field::new("rows", DataType::Int64, false),
        Field::new("done", DataType::Boolean, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        text(rows.iter().map(|r| Some(r.0.clone())).collect()),
        text(rows.iter().map(|r| Some(r.1.clone())).collect()),
        text(rows.iter().map(|r| Some(r.2.clone())).collect()),
        text(rows.iter().map(|r| r.3.clone()).collect()),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.4))),
        Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.5)))),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}
