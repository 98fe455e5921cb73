//! Row and key encoding for the state store.
//!
//! Rows are stored in Arrow's row format (`arrow::row`): it is memcomparable (byte order
//! equals SQL order, NULLs first), so the same encoding serves as primary-key bytes for
//! range scans and as the stored row value, and it converts whole batches at once in both
//! directions. The format is versioned with the Arrow release: see docs/design/state.md.

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::row::{RowConverter, Rows, SortField};

use super::error::Result;

/// Encodes and decodes rows of a fixed list of column types.
pub struct RowCodec {
    converter: RowConverter,
}

impl std::fmt::Debug for RowCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowCodec").finish_non_exhaustive()
    }
}

impl RowCodec {
    pub fn new(types: &[DataType]) -> Result<Self> {
        let fields = types.iter().map(|t| SortField::new(t.clone())).collect();
        Ok(RowCodec { converter: RowConverter::new(fields)? })
    }

    /// Encodes the rows of `columns` (all of equal length).
    pub fn encode(&self, columns: &[ArrayRef]) -> Result<Rows> {
        Ok(self.converter.convert_columns(columns)?)
    }

    /// Decodes rows produced by [`RowCodec::encode`] back into columns.
    pub fn decode<'a>(&self, rows: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<ArrayRef>> {
        let parser = self.converter.parser();
        let parsed: Vec<_> = rows.into_iter().map(|bytes| parser.parse(bytes)).collect();
        Ok(self.converter.convert_rows(parsed)?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Array, Int64Array, StringArray};

    use super::*;

    #[test]
    fn keys_sort_like_sql_and_round_trip() {
        let codec = RowCodec::new(&[DataType::Int64, DataType::Utf8]).unwrap();
        let ids: ArrayRef = Arc::new(Int64Array::from(vec![Some(-5), None, Some(3)]));
        let names: ArrayRef = Arc::new(StringArray::from(vec!["b", "a", "c"]));
        let rows = codec.encode(&[ids.clone(), names.clone()]).unwrap();
        // NULL < -5 < 3
        assert!(rows.row(1).data() < rows.row(0).data());
        assert!(rows.row(0).data() < rows.row(2).data());
        let decoded = codec.decode(rows.iter().map(|r| r.data())).unwrap();
        assert_eq!(decoded[0].as_ref(), ids.as_ref());
        assert_eq!(decoded[1].len(), 3);
    }
}
