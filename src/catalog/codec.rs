//! Converts a table's Arrow batches to stored key/row bytes and back.

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::Rows;

use super::TableDesc;
use crate::common::Result;
use crate::common::row::RowCodec;
use crate::state::Snapshot;

/// Key and row encoding of one table. Batches are in the table's full schema.
#[derive(Debug)]
pub struct TableCodec {
    schema: SchemaRef,
    primary_key: Vec<usize>,
    keys: RowCodec,
    rows: RowCodec,
}

impl TableCodec {
    pub fn new(desc: &TableDesc) -> Result<Self> {
        Ok(TableCodec {
            schema: desc.full_schema(),
            primary_key: desc.primary_key.clone(),
            keys: RowCodec::new(&desc.key_types())?,
            rows: RowCodec::new(&desc.column_types())?,
        })
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The primary-key bytes of each row of `batch`.
    pub fn encode_keys(&self, batch: &RecordBatch) -> Result<Rows> {
        let key_columns: Vec<ArrayRef> = self.primary_key.iter().map(|&i| batch.column(i).clone()).collect();
        self.keys.encode(&key_columns)
    }

    pub fn encode_rows(&self, batch: &RecordBatch) -> Result<Rows> {
        self.rows.encode(batch.columns())
    }

    pub fn decode_rows<'a>(&self, rows: impl IntoIterator<Item = &'a [u8]>) -> Result<RecordBatch> {
        let columns = self.rows.decode(rows)?;
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }

    /// Reads the whole table as committed in `snapshot`, in key order.
    pub fn scan(&self, snapshot: &dyn Snapshot, table_id: crate::state::TableId) -> Result<RecordBatch> {
        let mut values: Vec<Vec<u8>> = Vec::new();
        snapshot.scan(table_id, &mut |_, value| {
            values.push(value.to_vec());
            Ok(())
        })?;
        self.decode_rows(values.iter().map(Vec::as_slice))
    }
}
