//! Converts a table's Arrow batches to stored key/row bytes and back.

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::Rows;

use super::TableDesc;
use crate::common::Result;
use crate::common::row::RowCodec;

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

    /// The primary-key bytes of each row of `batch`.
    pub fn encode_keys(&self, batch: &RecordBatch) -> Result<Rows> {
        let key_columns: Vec<ArrayRef> = self.primary_key.iter().map(|&i| batch.column(i).clone()).collect();
        self.keys.encode(&key_columns)
    }

    /// Key bytes of already projected key columns (in primary-key order).
    pub fn encode_key_columns(&self, key_columns: &[ArrayRef]) -> Result<Rows> {
        self.keys.encode(key_columns)
    }

    pub fn encode_rows(&self, batch: &RecordBatch) -> Result<Rows> {
        self.rows.encode(batch.columns())
    }

    pub fn decode_rows<'a>(&self, rows: impl IntoIterator<Item = &'a [u8]>) -> Result<RecordBatch> {
        let columns = self.rows.decode(rows)?;
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}
