//! Formats, apart from transports: how a connector's bytes become rows (`FORMAT PLAIN
//! ENCODE CSV | JSON | PARQUET`).
//!
//! Text formats decode a block of whole lines at once, into the source's declared
//! columns: CSV without quotes by a fast path of its own ([`csv`]), which parses each
//! value as Arrow's reader does, and everything else with Arrow's vectorized readers
//! (`arrow-csv`, `arrow-json`). When a block fails
//! (a bad number, a bad timestamp, a wrong field count, invalid JSON, a NULL in a NOT
//! NULL column), its lines are decoded one at a time: the good ones go through, each bad
//! one becomes a [`DeadLetter`] with its position and the error — a malformed record
//! never stops the source and is never dropped silently.

mod csv;

use std::ops::Range;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;

use super::Options;
use crate::catalog::FormatDef;
use crate::common::{Error, Result, SqlState};
use crate::stream::source::DeadLetter;

/// Bytes of a bad record kept in its dead letter, at most.
const PAYLOAD_BYTES_MAX: usize = 64 << 10;

/// A configured encoding.
#[derive(Clone, Debug)]
pub enum Encode {
    Csv { delimiter: u8, header: bool },
    Json,
    Parquet,
}

impl Encode {
    /// The encoding `FORMAT ... ENCODE ...` describes; its options are checked by name.
    pub fn from_def(format: &FormatDef) -> Result<Encode> {
        if format.format != "PLAIN" {
            return Err(Error::new(
                SqlState::InvalidParameterValue,
                format!("unknown FORMAT {}", format.format),
            )
            .with_hint("sources read FORMAT PLAIN"));
        }
        let options = Options::new(format.options.clone());
        let encode = match format.encode.as_str() {
            "CSV" => {
                let delimiter = match options.get("delimiter") {
                    None => b',',
                    Some("\\t") => b'\t',
                    Some(text) if text.len() == 1 => text.as_bytes()[0],
                    Some(text) => {
                        return Err(Error::new(
                            SqlState::InvalidParameterValue,
                            format!(
                                "invalid value \"{text}\" for option \"delimiter\": expected one character"
                            ),
                        ));
                    }
                };
                Encode::Csv { delimiter, header: !options.flag("without_header", false)? }
            }
            "JSON" => Encode::Json,
            "PARQUET" => Encode::Parquet,
            other => {
                return Err(Error::new(SqlState::InvalidParameterValue, format!("unknown ENCODE {other}"))
                    .with_hint("use ENCODE CSV, JSON or PARQUET"));
            }
        };
        options.finish()?;
        Ok(encode)
    }

    /// Whether the encoding reads lines of text.
    pub fn is_text(&self) -> bool {
        !matches!(self, Encode::Parquet)
    }
}

/// Whole lines of text read from a split, with their numbers.
#[derive(Default)]
pub struct TextBlock {
    /// The lines, one after the other, each followed by a line break.
    pub bytes: Vec<u8>,
    /// Each line's number (1-based) and bytes, without its line break.
    pub lines: Vec<(u64, Range<usize>)>,
}

impl TextBlock {
    pub fn push(&mut self, number: u64, line: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(line);
        self.end_line(number, start);
    }

    /// Ends the line numbered `number` that `bytes` hold from `start` on.
    pub fn end_line(&mut self, number: u64, start: usize) {
        self.lines.push((number, start..self.bytes.len()));
        self.bytes.push(b'\n');
    }
}

/// Decodes `block` into rows of `schema`; a line that does not decode becomes a dead
/// letter positioned by `position(line number)`.
pub fn decode_text(
    encode: &Encode,
    schema: &SchemaRef,
    block: &TextBlock,
    position: &dyn Fn(u64) -> String,
) -> Result<(RecordBatch, Vec<DeadLetter>)> {
    if block.lines.is_empty() {
        return Ok((RecordBatch::new_empty(schema.clone()), Vec::new()));
    }
    if let Encode::Csv { delimiter, .. } = encode
        && let Some(batch) = csv::decode_plain(schema, *delimiter, block)
    {
        return Ok((batch, Vec::new()));
    }
    if let Ok(batch) = decode_bytes(encode, schema, &block.bytes, block.lines.len()) {
        return Ok((batch, Vec::new()));
    }
    let mut good = Vec::new();
    let mut dead = Vec::new();
    for (number, range) in &block.lines {
        let line = &block.bytes[range.clone()];
        let mut bytes = line.to_vec();
        bytes.push(b'\n');
        match decode_bytes(encode, schema, &bytes, 1) {
            Ok(batch) => good.push(batch),
            Err(error) => dead.push(DeadLetter {
                position: position(*number),
                payload: String::from_utf8_lossy(&line[..line.len().min(PAYLOAD_BYTES_MAX)]).into_owned(),
                error: error.to_string(),
            }),
        }
    }
    Ok((concat_batches(schema, &good)?, dead))
}

/// Decodes `rows` lines in `bytes` as one batch; any bad record fails it.
fn decode_bytes(encode: &Encode, schema: &SchemaRef, bytes: &[u8], rows: usize) -> Result<RecordBatch> {
    let batch = match encode {
        Encode::Csv { delimiter, .. } => {
            let mut decoder = datafusion::arrow::csv::ReaderBuilder::new(schema.clone())
                .with_header(false)
                .with_delimiter(*delimiter)
                .with_batch_size(rows.max(1))
                .build_decoder();
            let used = decoder.decode(bytes)?;
            if used < bytes.len() {
                decoder.decode(&bytes[used..])?;
            }
            decoder.flush()?
        }
        Encode::Json => {
            let mut decoder = datafusion::arrow::json::ReaderBuilder::new(schema.clone())
                .with_batch_size(rows.max(1))
                .build_decoder()?;
            let used = decoder.decode(bytes)?;
            if used < bytes.len() {
                return Err(Error::new(SqlState::InvalidTextRepresentation, "invalid JSON"));
            }
            decoder.flush()?
        }
        Encode::Parquet => return Err(Error::internal("Parquet is not a text format")),
    };
    let batch = batch.unwrap_or_else(|| RecordBatch::new_empty(schema.clone()));
    if batch.num_rows() != rows {
        return Err(Error::new(
            SqlState::InvalidTextRepresentation,
            format!("expected {rows} records, read {}", batch.num_rows()),
        ));
    }
    Ok(batch)
}

/// `batch` with its columns matched to `schema` by name and cast to its types (missing
/// columns NULL); for self-describing formats (Parquet).
pub fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let options = datafusion::arrow::compute::CastOptions { safe: false, ..Default::default() };
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.schema().index_of(field.name()) {
            Ok(i) => Ok(datafusion::arrow::compute::cast_with_options(
                batch.column(i),
                field.data_type(),
                &options,
            )?),
            Err(_) => Ok(datafusion::arrow::array::new_null_array(field.data_type(), batch.num_rows())),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{AsArray, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("at", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        ]))
    }

    fn block(lines: &[&str]) -> TextBlock {
        let mut block = TextBlock::default();
        for (i, line) in lines.iter().enumerate() {
            block.push(i as u64 + 1, line.as_bytes());
        }
        block
    }

    #[test]
    fn csv_decodes_vectorized_and_isolates_bad_lines() {
        let encode = Encode::Csv { delimiter: b',', header: false };
        let good = block(&["1,ann,2026-01-01 00:00:01", "2,\"bob, jr\",2026-01-02T10:00:00"]);
        let (batch, dead) = decode_text(&encode, &schema(), &good, &|n| format!("f:{n}")).unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert!(dead.is_empty());
        assert_eq!(batch.column(1).as_string::<i32>().value(1), "bob, jr");
        let mixed = block(&[
            "1,ann,2026-01-01",
            "x,bad number,2026-01-01",
            "3,short",
            "4,dee,not a time",
            ",null id,",
            "6,eve,",
        ]);
        let (batch, dead) = decode_text(&encode, &schema(), &mixed, &|n| format!("f:{n}")).unwrap();
        assert_eq!(batch.column(0).as_primitive::<Int64Type>(), &Int64Array::from(vec![1, 6]));
        let positions: Vec<&str> = dead.iter().map(|d| d.position.as_str()).collect();
        assert_eq!(positions, ["f:2", "f:3", "f:4", "f:5"]);
        assert_eq!(dead[0].payload, "x,bad number,2026-01-01");
        assert!(!dead[0].error.is_empty());
    }

    #[test]
    fn json_lines_decode_with_missing_fields_null() {
        let good = block(&[r#"{"id": 1, "name": "ann", "at": "2026-01-01T00:00:01"}"#, r#"{"id": 2}"#]);
        let (batch, dead) = decode_text(&Encode::Json, &schema(), &good, &|n| n.to_string()).unwrap();
        assert_eq!((batch.num_rows(), dead.len()), (2, 0));
        assert!(batch.column(1).is_null(1));
        let bad = block(&[r#"{"id": 1}"#, r#"{"id": "x"}"#, "{not json", r#"{"id": 4}"#]);
        let (batch, dead) = decode_text(&Encode::Json, &schema(), &bad, &|n| n.to_string()).unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(dead.iter().map(|d| d.position.as_str()).collect::<Vec<_>>(), ["2", "3"]);
    }

    #[test]
    fn format_options_are_checked() {
        let def = |encode: &str, options: &[(&str, &str)]| FormatDef {
            format: "PLAIN".into(),
            encode: encode.into(),
            options: options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        assert!(matches!(
            Encode::from_def(&def("CSV", &[("delimiter", "|"), ("without_header", "true")])).unwrap(),
            Encode::Csv { delimiter: b'|', header: false }
        ));
        assert!(Encode::from_def(&def("CSV", &[("delim", ",")])).unwrap_err().to_string().contains("delim"));
        assert_eq!(Encode::from_def(&def("AVRO", &[])).unwrap_err().sqlstate().code(), "22023");
    }
}
