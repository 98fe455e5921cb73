//! `sabot_catalog`: Sabot's own system relations (as `pg_catalog` is Postgres'), built
//! for each statement from the running database.
//!
//! - `source_splits`: one row per split of every running reader of a source — the source,
//!   the view it feeds, the split, its position and rows as of the last barrier (what
//!   commits with it), and whether a bounded split is exhausted.
//! - `watermarks`: the watermark of every table with `WATERMARK FOR`, as committed
//!   (sources' watermarks live in the readers of each view and are not listed).
//! - `dead_letters`: every record a source could not read and every row that came late
//!   to a view (behind a watermark), with where it was and why (committed with the rows
//!   read around it, so as of the statement's snapshot).
//! - `state_tables`: every state table of every view (and sink) with its rows and bytes,
//!   as committed: what the view's operators keep.
//!
//! Each relation is built when a statement names it, not before.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::datasource::MemTable;

use crate::catalog::Catalog;
use crate::common::Result;
use crate::state::{META_TABLE, Snapshot};
use crate::stream::source::{DEAD_LETTERS_TABLE, DeadLetterRecord, SourceProgress};
use crate::stream::table_writer::watermark_key;

pub const NAME: &str = "sabot_catalog";

/// What the system relations show, captured when the statement starts.
#[derive(Clone, Debug, Default)]
pub struct SystemState {
    /// The epoch of the statement's snapshot (or an older one).
    pub epoch: crate::state::Epoch,
    pub sources: Vec<Arc<SourceProgress>>,
}

const TABLES: [&str; 4] = ["dead_letters", "source_splits", "state_tables", "watermarks"];

/// The `sabot_catalog` schema as of one snapshot.
pub struct SystemSchema {
    state: SystemState,
    catalog: Arc<Catalog>,
    snapshot: Arc<dyn Snapshot>,
}

impl SystemSchema {
    pub fn new(state: SystemState, catalog: Arc<Catalog>, snapshot: Arc<dyn Snapshot>) -> Self {
        SystemSchema { state, catalog, snapshot }
    }
}

impl super::BuiltRelations for SystemSchema {
    fn names(&self) -> &'static [&'static str] {
        &TABLES
    }

    fn build(&self, name: &str) -> Result<Option<Arc<MemTable>>> {
        let snapshot = self.snapshot.as_ref();
        Ok(Some(match name {
            "watermarks" => watermarks(&self.catalog, snapshot)?,
            "source_splits" => source_splits(&self.state)?,
            "dead_letters" => dead_letters(snapshot)?,
            "state_tables" => state_tables(&self.catalog, snapshot)?,
            _ => return Ok(None),
        }))
    }
}

/// Per state table of every view: its rows and their bytes (keys and values).
fn state_tables(catalog: &Catalog, snapshot: &dyn Snapshot) -> Result<Arc<MemTable>> {
    let mut rows: Vec<(String, i64, i64, i64)> = Vec::new();
    for desc in catalog.tables() {
        let Some(view) = &desc.view else { continue };
        // A view's own rows (a sink stores none), then its operators' tables.
        let own = if view.sink.is_none() { Some(desc.id) } else { None };
        for &table in own.iter().chain(&view.state_tables) {
            let (mut count, mut bytes) = (0i64, 0i64);
            snapshot.scan(table, &mut |key, value| {
                count += 1;
                bytes += (key.len() + value.len()) as i64;
                Ok(())
            })?;
            rows.push((desc.qualified_name(), i64::from(table), count, bytes));
        }
    }
    rows.sort();
    let schema = Arc::new(Schema::new(vec![
        Field::new("object", DataType::Utf8, false),
        Field::new("table_id", DataType::Int64, false),
        Field::new("rows", DataType::Int64, false),
        Field::new("bytes", DataType::Int64, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0.as_str()))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.3))),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

fn watermarks(catalog: &Catalog, snapshot: &dyn Snapshot) -> Result<Arc<MemTable>> {
    let mut rows: Vec<(String, String, String)> = Vec::new();
    for desc in catalog.tables() {
        let Some(def) = &desc.watermark else { continue };
        let Some(bytes) = snapshot.get(META_TABLE, &watermark_key(desc.id))? else { continue };
        let value = i64::from_be_bytes(
            bytes
                .as_slice()
                .try_into()
                .map_err(|_| crate::state::StateError::Corrupt(format!("watermark of {}", desc.name)))?,
        );
        let column = &desc.columns[def.column];
        let typed = cast(&Int64Array::from(vec![value]), &column.sql_type.to_arrow())?;
        let text = cast(&typed, &DataType::Utf8)?;
        let text = text.as_string::<i32>().value(0).replacen('T', " ", 1);
        rows.push((desc.qualified_name(), column.name.clone(), text));
    }
    rows.sort();
    let text = |values: Vec<&str>| -> ArrayRef { Arc::new(StringArray::from(values)) };
    let schema = Arc::new(Schema::new(vec![
        Field::new("object", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("watermark", DataType::Utf8, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        text(rows.iter().map(|r| r.0.as_str()).collect()),
        text(rows.iter().map(|r| r.1.as_str()).collect()),
        text(rows.iter().map(|r| r.2.as_str()).collect()),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

fn dead_letters(snapshot: &dyn Snapshot) -> Result<Arc<MemTable>> {
    let mut keys: Vec<[String; 3]> = Vec::new();
    let mut records: Vec<DeadLetterRecord> = Vec::new();
    let mut failed = None;
    snapshot.scan(DEAD_LETTERS_TABLE, &mut |key, value| {
        let mut parts = key.splitn(3, |b| *b == 0).map(|p| String::from_utf8_lossy(p).into_owned());
        let key = [(); 3].map(|()| parts.next().unwrap_or_default());
        match serde_json::from_slice::<DeadLetterRecord>(value) {
            Ok(record) => {
                keys.push(key);
                records.push(record);
            }
            Err(e) => failed = Some(e),
        }
        Ok(())
    })?;
    if let Some(e) = failed {
        return Err(crate::state::StateError::Corrupt(format!("dead letter: {e}")).into());
    }
    let text = |values: Vec<&str>| -> ArrayRef { Arc::new(StringArray::from(values)) };
    let schema = Arc::new(Schema::new(vec![
        Field::new("object", DataType::Utf8, false),
        Field::new("reader", DataType::Utf8, false),
        Field::new("position", DataType::Utf8, false),
        Field::new("payload", DataType::Utf8, false),
        Field::new("error", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("recorded_at", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        text(keys.iter().map(|k| k[0].as_str()).collect()),
        text(keys.iter().map(|k| k[1].as_str()).collect()),
        text(keys.iter().map(|k| k[2].as_str()).collect()),
        text(records.iter().map(|r| r.payload.as_str()).collect()),
        text(records.iter().map(|r| r.error.as_str()).collect()),
        text(records.iter().map(|r| r.reason.as_str()).collect()),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(records.iter().map(|r| r.recorded_at))
                .with_timezone("UTC"),
        ),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

fn source_splits(state: &SystemState) -> Result<Arc<MemTable>> {
    let mut rows: Vec<(String, String, String, Option<String>, i64, bool)> = Vec::new();
    for reader in &state.sources {
        for split in reader.splits_as_of(state.epoch) {
            rows.push((
                reader.source.clone(),
                reader.reader.clone(),
                split.split,
                split.position,
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
