//! `connector = 'datagen'`: rows of generated values, per column a sequence or random
//! values (RisingWave's option names).
//!
//! | option | default | meaning |
//! |---|---|---|
//! | `fields.<column>.kind` | `random` | `sequence` or `random` |
//! | `fields.<column>.start`, `.end` | 1, none | a sequence's first and last value; the source ends after the shortest sequence's last value (no sequence: endless) |
//! | `fields.<column>.min`, `.max` | 0, 32767 | range of random numbers |
//! | `fields.<column>.length` | 10 | length of random strings |
//! | `fields.<column>.max_past` | `1d` | random timestamps and dates lie up to this far before the base time (`30s`, `10m`, `2h`, `1d`) |
//! | `fields.<column>.seed` | 0 | seed of the column's random values |
//! | `datagen.rows.per.second` | 10 | rows per second, over all splits |
//! | `datagen.split.num` | 1 | splits: split `i` of `n` generates rows `i`, `i + n`, ... |
//! | `datagen.base.time` | the creation time | ms since 1970; frozen at `CREATE` |
//!
//! A value depends only on its column, seed and row number: rows read again after a
//! crash are the same rows.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, SchemaRef};

use super::{Options, random};
use crate::common::{Error, Result, SqlState, SqlType};
use crate::stream::source::{Read, SourceConnector, SplitChunk, SplitId, SplitReader};

const DEFAULT_ROWS_PER_SECOND: u64 = 10;
const DAY_MS: i64 = 86_400_000;

/// How one column's values are made.
#[derive(Clone, Debug)]
enum Values {
    /// `start + row`, up to `end`.
    Sequence {
        start: i64,
        end: Option<i64>,
    },
    Random {
        min: i64,
        max: i64,
        length: usize,
        max_past_ms: i64,
        seed: u64,
    },
}

#[derive(Clone, Debug)]
struct Column {
    sql_type: SqlType,
    values: Values,
}

pub fn build(
    options: &mut Options,
    schema: &SchemaRef,
    format: Option<&crate::catalog::FormatDef>,
) -> Result<Arc<dyn SourceConnector>> {
    super::no_format("datagen", format)?;
    let columns = schema
        .fields()
        .iter()
        .map(|field| column(options, field.name(), SqlType::from_arrow(field)))
        .collect::<Result<Vec<_>>>()?;
    for name in options.keys_with_prefix("fields.") {
        let column = name.split('.').next().unwrap_or_default();
        if schema.field_with_name(column).is_err() {
            return Err(Error::new(
                SqlState::UndefinedColumn,
                format!("option \"fields.{name}\" names no column of the source"),
            ));
        }
    }
    let base_time: i64 = match options.frozen("datagen.base.time", || now_ms().to_string()) {
        Some(text) => text.parse().map_err(|_| {
            Error::new(
                SqlState::InvalidParameterValue,
                format!("invalid value \"{text}\" for option \"datagen.base.time\""),
            )
        })?,
        None => now_ms(),
    };
    let splits: u64 = options.parse("datagen.split.num", 1)?;
    if splits == 0 {
        return Err(Error::new(
            SqlState::InvalidParameterValue,
            "option \"datagen.split.num\" must be at least 1",
        ));
    }
    let rows = columns
        .iter()
        .filter_map(|c| match c.values {
            Values::Sequence { start, end: Some(end) } => Some((end - start + 1).max(0) as u64),
            _ => None,
        })
        .min();
    Ok(Arc::new(Datagen {
        columns,
        schema: schema.clone(),
        base_time,
        splits,
        rows,
        rows_per_second: options.parse("datagen.rows.per.second", DEFAULT_ROWS_PER_SECOND)?.max(1),
    }))
}

fn column(options: &Options, name: &str, sql_type: SqlType) -> Result<Column> {
    let key = |option: &str| format!("fields.{name}.{option}");
    let supported = matches!(
        sql_type,
        SqlType::Boolean
            | SqlType::Int16
            | SqlType::Int32
            | SqlType::Int64
            | SqlType::Float32
            | SqlType::Float64
            | SqlType::Numeric { .. }
            | SqlType::Text
            | SqlType::Varchar(None)
            | SqlType::Date
            | SqlType::Timestamp
            | SqlType::TimestampTz
    );
    if !supported {
        return Err(Error::unsupported(format!(
            "datagen values of type {} (column \"{name}\")",
            sql_type.name()
        )));
    }
    let kind = options.get(&key("kind")).map(str::to_ascii_lowercase);
    let values = match kind.as_deref() {
        Some("sequence") => {
            if matches!(
                sql_type,
                SqlType::Boolean | SqlType::Date | SqlType::Timestamp | SqlType::TimestampTz
            ) {
                return Err(Error::new(
                    SqlState::InvalidParameterValue,
                    format!("column \"{name}\" of type {} cannot be a sequence", sql_type.name()),
                ));
            }
            Values::Sequence { start: options.parse(&key("start"), 1)?, end: options.parse_opt(&key("end"))? }
        }
        None | Some("random") => {
            let (min, max) = (options.parse(&key("min"), 0)?, options.parse(&key("max"), 32767)?);
            if min > max {
                return Err(Error::new(
                    SqlState::InvalidParameterValue,
                    format!("option \"{}\" is greater than \"{}\"", key("min"), key("max")),
                ));
            }
            let max_past_ms = match options.get(&key("max_past")) {
                Some(text) => duration_ms(text).ok_or_else(|| {
                    Error::new(SqlState::InvalidParameterValue, format!("invalid value \"{text}\" for option \"{}\": expected a duration such as 30s, 10m, 2h or 1d", key("max_past")))
                })?,
                None => DAY_MS,
            };
            Values::Random {
                min,
                max,
                length: options.parse(&key("length"), 10)?,
                max_past_ms,
                seed: options.parse(&key("seed"), 0)?,
            }
        }
        Some(other) => {
            return Err(Error::new(
                SqlState::InvalidParameterValue,
                format!(
                    "invalid value \"{other}\" for option \"{}\": expected sequence or random",
                    key("kind")
                ),
            ));
        }
    };
    if matches!(values, Values::Sequence { .. }) && options.get(&key("seed")).is_some() {
        return Err(Error::new(
            SqlState::InvalidParameterValue,
            format!("a sequence column takes no \"{}\"", key("seed")),
        ));
    }
    Ok(Column { sql_type, values })
}

/// `30s`, `10m`, `2h`, `1d` or plain seconds, in milliseconds.
fn duration_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let number: i64 = text[..digits].parse().ok()?;
    let unit = match text[digits..].trim() {
        "" | "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => DAY_MS,
        _ => return None,
    };
    number.checked_mul(unit)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

struct Datagen {
    columns: Vec<Column>,
    schema: SchemaRef,
    base_time: i64,
    splits: u64,
    /// Rows in all (the shortest sequence), or endless.
    rows: Option<u64>,
    rows_per_second: u64,
}

impl SourceConnector for Datagen {
    fn splits(&self) -> Result<Vec<SplitId>> {
        Ok((0..self.splits).map(|i| i.to_string()).collect())
    }

    fn reader(&self, split: &SplitId, position: Option<&str>) -> Result<Box<dyn SplitReader>> {
        let index: u64 = split.parse().map_err(|_| Error::internal(format!("no datagen split {split}")))?;
        let next = match position {
            Some(text) => {
                text.parse().map_err(|_| Error::internal(format!("bad datagen position {text}")))?
            }
            None => 0,
        };
        Ok(Box::new(DatagenReader {
            columns: self.columns.clone(),
            schema: self.schema.clone(),
            base_time: self.base_time,
            index,
            step: self.splits,
            next,
            rows: self.rows,
        }))
    }

    fn rows_per_second(&self) -> Option<u64> {
        Some(self.rows_per_second)
    }
}

struct DatagenReader {
    columns: Vec<Column>,
    schema: SchemaRef,
    base_time: i64,
    /// This split's number, and how many there are.
    index: u64,
    step: u64,
    /// The split's next row (0, 1, ...): row `index + next * step` of the source.
    next: u64,
    rows: Option<u64>,
}

#[async_trait]
impl SplitReader for DatagenReader {
    async fn next(&mut self, max_rows: usize) -> Result<Read> {
        let mut rows: Vec<u64> = Vec::with_capacity(max_rows);
        while rows.len() < max_rows {
            let row = self.index + (self.next + rows.len() as u64) * self.step;
            if self.rows.is_some_and(|total| row >= total) {
                break;
            }
            rows.push(row);
        }
        if rows.is_empty() {
            return Ok(Read::Done);
        }
        self.next += rows.len() as u64;
        let columns = self
            .columns
            .iter()
            .zip(self.schema.fields())
            .enumerate()
            .map(|(i, (column, field))| values(column, i as u64, &rows, self.base_time, field.data_type()))
            .collect::<Result<Vec<_>>>()?;
        let data = if columns.is_empty() {
            let options =
                datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(rows.len()));
            RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)?
        } else {
            RecordBatch::try_new(self.schema.clone(), columns)?
        };
        Ok(Read::Chunk(SplitChunk::new(data, self.next.to_string())))
    }
}

/// One column's values for `rows`, in `target`'s type.
fn values(column: &Column, index: u64, rows: &[u64], base_time: i64, target: &DataType) -> Result<ArrayRef> {
    let array: ArrayRef = match (&column.values, &column.sql_type) {
        (Values::Sequence { start, .. }, SqlType::Text | SqlType::Varchar(None)) => {
            Arc::new(StringArray::from_iter_values(rows.iter().map(|&r| (start + r as i64).to_string())))
        }
        (Values::Sequence { start, .. }, _) => {
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|&r| start + r as i64)))
        }
        (Values::Random { seed, length, .. }, SqlType::Text | SqlType::Varchar(None)) => {
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|&r| random::text(random::bits(*seed, index, r), *length)),
            ))
        }
        (Values::Random { seed, .. }, SqlType::Boolean) => Arc::new(BooleanArray::from_iter(
            rows.iter().map(|&r| Some(random::bits(*seed, index, r) & 1 == 1)),
        )),
        (Values::Random { seed, max_past_ms, .. }, SqlType::Timestamp | SqlType::TimestampTz) => {
            Arc::new(TimestampMicrosecondArray::from_iter_values(rows.iter().map(|&r| {
                (base_time - random::int_in(random::bits(*seed, index, r), 0, *max_past_ms)) * 1000
            })))
        }
        (Values::Random { seed, max_past_ms, .. }, SqlType::Date) => {
            Arc::new(Date32Array::from_iter_values(rows.iter().map(|&r| {
                ((base_time - random::int_in(random::bits(*seed, index, r), 0, *max_past_ms)) / DAY_MS) as i32
            })))
        }
        (
            Values::Random { seed, min, max, .. },
            SqlType::Float32 | SqlType::Float64 | SqlType::Numeric { .. },
        ) => Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|&r| random::float_in(random::bits(*seed, index, r), *min as f64, *max as f64)),
        )),
        (Values::Random { seed, min, max, .. }, _) => Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|&r| random::int_in(random::bits(*seed, index, r), *min, *max)),
        )),
    };
    if array.data_type() == target {
        return Ok(array);
    }
    let options = CastOptions { safe: false, ..Default::default() };
    cast_with_options(&array, target, &options).map_err(|e| {
        Error::new(
            SqlState::NumericValueOutOfRange,
            format!("a generated value does not fit its column: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{Field, Int32Type, Schema};

    use super::*;

    fn source(options: &[(&str, &str)], fields: Vec<Field>) -> Result<Arc<dyn SourceConnector>> {
        let values: BTreeMap<String, String> =
            options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut options = Options::new(values);
        let schema = Arc::new(Schema::new(fields));
        let connector = build(&mut options, &schema, None)?;
        options.finish()?;
        Ok(connector)
    }

    async fn read_all(
        connector: &Arc<dyn SourceConnector>,
        split: &str,
        position: Option<&str>,
    ) -> Vec<RecordBatch> {
        let mut reader = connector.reader(&split.to_string(), position).unwrap();
        let mut batches = Vec::new();
        while let Read::Chunk(chunk) = reader.next(4).await.unwrap() {
            batches.push(chunk.data);
        }
        batches
    }

    #[tokio::test]
    async fn sequences_end_and_splits_share_the_rows() {
        let fields = vec![Field::new("id", DataType::Int32, true), Field::new("name", DataType::Utf8, true)];
        let connector = source(
            &[
                ("fields.id.kind", "sequence"),
                ("fields.id.start", "10"),
                ("fields.id.end", "19"),
                ("datagen.split.num", "2"),
            ],
            fields,
        )
        .unwrap();
        let mut ids: Vec<i32> = Vec::new();
        for split in ["0", "1"] {
            for batch in read_all(&connector, split, None).await {
                ids.extend(batch.column(0).as_primitive::<Int32Type>().values().iter());
            }
        }
        ids.sort();
        assert_eq!(ids, (10..=19).collect::<Vec<_>>());
        // From a position, a split continues where it was, with the same values.
        let whole = read_all(&connector, "0", None).await;
        let rest = read_all(&connector, "0", Some("4")).await;
        assert_eq!(whole.last().unwrap().column(1), rest.last().unwrap().column(1));
    }

    #[test]
    fn bad_definitions_are_refused_by_name() {
        let fields = || vec![Field::new("id", DataType::Int32, true)];
        let error = source(&[("fields.nope.kind", "sequence")], fields()).err().unwrap();
        assert!(error.to_string().contains("fields.nope.kind"), "{error}");
        let error = source(&[("fields.id.kind", "wavy")], fields()).err().unwrap();
        assert_eq!(error.sqlstate().code(), "22023");
        let error = source(&[("fields.id.min", "9"), ("fields.id.max", "1")], fields()).err().unwrap();
        assert!(error.to_string().contains("greater"), "{error}");
        let error = source(&[("datagen.typo", "1")], fields()).err().unwrap();
        assert!(error.to_string().contains("datagen.typo"), "{error}");
    }
}
