//! `connector = 'nexmark'`: the standard Nexmark generator (the `nexmark` crate, as
//! RisingWave uses it, with RisingWave's option names).
//!
//! | option | default | meaning |
//! |---|---|---|
//! | `nexmark.table.type` | the combined stream | `Person`, `Auction` or `Bid`; when absent, the combined stream of all events (below) |
//! | `nexmark.event.num` | endless | rows of that type to generate, over all splits |
//! | `nexmark.split.num` | 1 | splits: split `i` of `n` generates the type's events `i`, `i + n`, ... |
//! | `nexmark.min.event.gap.in.ns` | 100000 | event-time gap between events (10,000 events per second of event time) |
//! | `nexmark.max.chunk.size` | the server's chunk size | rows per chunk |
//! | `nexmark.use.real.time` | false | pace rows to the event rate and stamp them with the current time |
//! | `nexmark.base.time` | the creation time | event time of the first event, in ms since 1970; frozen at `CREATE` so that rows read again after a crash are the same |
//!
//! The combined stream (RisingWave's) has the columns `event_type` (0 person, 1 auction,
//! 2 bid), `person`, `auction` and `bid` (structs of their type's columns, NULL for the
//! other types' events) and `date_time` (the event's time), any of them, by name.
//!
//! The declared columns must be columns of the table type (a subset, in any order) with a
//! type of the same kind (any integer or numeric type for ids and prices, text for
//! strings, timestamp for times).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, Int64Array, Int64Builder, RecordBatch, StringArray, StringBuilder, StructArray,
    TimestampMicrosecondArray, TimestampMicrosecondBuilder,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::datatypes::SchemaRef;
use nexmark::EventGenerator;
use nexmark::config::NexmarkConfig;
use nexmark::event::{Event, EventType};

use super::Options;
use crate::common::{Error, Result, SqlState, SqlType};
use crate::stream::source::{Read, SourceConnector, SplitChunk, SplitId, SplitReader};

/// A column of a Nexmark table: its name and kind.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Integer,
    Text,
    Time,
}

const PERSON: &[(&str, Kind)] = &[
    ("id", Kind::Integer),
    ("name", Kind::Text),
    ("email_address", Kind::Text),
    ("credit_card", Kind::Text),
    ("city", Kind::Text),
    ("state", Kind::Text),
    ("date_time", Kind::Time),
    ("extra", Kind::Text),
];
const AUCTION: &[(&str, Kind)] = &[
    ("id", Kind::Integer),
    ("item_name", Kind::Text),
    ("description", Kind::Text),
    ("initial_bid", Kind::Integer),
    ("reserve", Kind::Integer),
    ("date_time", Kind::Time),
    ("expires", Kind::Time),
    ("seller", Kind::Integer),
    ("category", Kind::Integer),
    ("extra", Kind::Text),
];
const BID: &[(&str, Kind)] = &[
    ("auction", Kind::Integer),
    ("bidder", Kind::Integer),
    ("price", Kind::Integer),
    ("channel", Kind::Text),
    ("url", Kind::Text),
    ("date_time", Kind::Time),
    ("extra", Kind::Text),
];

/// Rows per chunk when neither the source nor the server says.
pub const DEFAULT_CHUNK_ROWS: usize = 1024;

pub fn build(
    options: &mut Options,
    schema: &SchemaRef,
    format: Option<&crate::catalog::FormatDef>,
) -> Result<Arc<dyn SourceConnector>> {
    super::no_format("nexmark", format)?;
    let table_type = options.get("nexmark.table.type");
    let (event_type, table) = match table_type.map(str::to_ascii_lowercase).as_deref() {
        Some("person") => (EventType::Person, PERSON),
        Some("auction") => (EventType::Auction, AUCTION),
        Some("bid") => (EventType::Bid, BID),
        Some(_) => {
            let other = table_type.unwrap_or_default();
            return Err(Error::new(
                SqlState::InvalidParameterValue,
                format!(
                    "invalid value \"{other}\" for option \"nexmark.table.type\": expected Person, Auction or Bid"
                ),
            ));
        }
        None => (EventType::Bid, &[][..]),
    };
    let (event_type, columns, combined) = if table_type.is_none() {
        (None, Vec::new(), combined_columns(schema)?)
    } else {
        (Some(event_type), declared_columns(table, schema)?, Vec::new())
    };
    let gap_ns: u64 = options.parse("nexmark.min.event.gap.in.ns", 100_000)?;
    let events_per_second = (1_000_000_000 / gap_ns.max(1)).max(1) as usize;
    let base_time: u64 = match options.frozen("nexmark.base.time", || now_ms().to_string()) {
        Some(text) => text.parse().map_err(|_| {
            Error::new(
                SqlState::InvalidParameterValue,
                format!("invalid value \"{text}\" for option \"nexmark.base.time\""),
            )
        })?,
        None => now_ms(),
    };
    let config = NexmarkConfig {
        base_time,
        first_rate: events_per_second,
        next_rate: events_per_second,
        ..NexmarkConfig::default()
    };
    let splits: u64 = options.parse("nexmark.split.num", 1)?;
    if splits == 0 {
        return Err(Error::new(
            SqlState::InvalidParameterValue,
            "option \"nexmark.split.num\" must be at least 1",
        ));
    }
    let real_time = options.flag("nexmark.use.real.time", false)?;
    Ok(Arc::new(Nexmark {
        config,
        event_type,
        columns,
        combined,
        schema: schema.clone(),
        events: options.parse("nexmark.event.num", u64::MAX)?,
        splits,
        chunk_rows: options.parse("nexmark.max.chunk.size", DEFAULT_CHUNK_ROWS)?.max(1),
        real_time,
        rows_per_second: real_time.then_some(events_per_second as u64),
    }))
}

/// For each declared column, its index in the table type's columns.
fn declared_columns(table: &[(&str, Kind)], schema: &SchemaRef) -> Result<Vec<usize>> {
    let names: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
    schema
        .fields()
        .iter()
        .map(|field| {
            let index = names.iter().position(|n| n == field.name()).ok_or_else(|| {
                Error::new(
                    SqlState::UndefinedColumn,
                    format!("column \"{}\" is not a column of this Nexmark table", field.name()),
                )
                .with_hint(format!("its columns: {}", names.join(", ")))
            })?;
            let sql_type = SqlType::from_arrow(field);
            let fits = match table[index].1 {
                Kind::Integer => matches!(
                    sql_type,
                    SqlType::Int16
                        | SqlType::Int32
                        | SqlType::Int64
                        | SqlType::Numeric { .. }
                        | SqlType::Float64
                ),
                Kind::Text => sql_type.is_text(),
                Kind::Time => matches!(sql_type, SqlType::Timestamp | SqlType::TimestampTz),
            };
            if !fits {
                return Err(Error::new(
                    SqlState::DatatypeMismatch,
                    format!("column \"{}\" cannot be of type {}", field.name(), sql_type.name()),
                )
                .with_hint(match table[index].1 {
                    Kind::Integer => "declare it BIGINT",
                    Kind::Text => "declare it VARCHAR",
                    Kind::Time => "declare it TIMESTAMP",
                }));
            }
            Ok(index)
        })
        .collect()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

struct Nexmark {
    config: NexmarkConfig,
    /// The table type; `None` for the combined stream.
    event_type: Option<EventType>,
    /// A table type's declared columns (indexes into its columns).
    columns: Vec<usize>,
    /// The combined stream's declared columns.
    combined: Vec<Combined>,
    schema: SchemaRef,
    events: u64,
    splits: u64,
    chunk_rows: usize,
    real_time: bool,
    rows_per_second: Option<u64>,
}

impl SourceConnector for Nexmark {
    fn splits(&self) -> Result<Vec<SplitId>> {
        Ok((0..self.splits).map(|i| i.to_string()).collect())
    }

    fn reader(&self, split: &SplitId, position: Option<&str>) -> Result<Box<dyn SplitReader>> {
        let index: u64 = split.parse().map_err(|_| Error::internal(format!("no Nexmark split {split}")))?;
        let offset = match position {
            Some(text) => {
                text.parse().map_err(|_| Error::internal(format!("bad Nexmark position {text}")))?
            }
            None => index,
        };
        let mut generator =
            EventGenerator::new(self.config.clone()).with_offset(offset).with_step(self.splits);
        if let Some(event_type) = self.event_type {
            generator = generator.with_type_filter(event_type);
        }
        Ok(Box::new(NexmarkReader {
            generator,
            end: self.events,
            columns: self.columns.clone(),
            combined: self.combined.clone(),
            schema: self.schema.clone(),
            chunk_rows: self.chunk_rows,
            real_time: self.real_time,
        }))
    }

    fn rows_per_second(&self) -> Option<u64> {
        self.rows_per_second
    }
}

struct NexmarkReader {
    generator: EventGenerator,
    /// Offsets at or past this are not generated.
    end: u64,
    columns: Vec<usize>,
    combined: Vec<Combined>,
    schema: SchemaRef,
    chunk_rows: usize,
    real_time: bool,
}

#[async_trait]
impl SplitReader for NexmarkReader {
    async fn next(&mut self, max_rows: usize) -> Result<Read> {
        let offset = self.generator.offset();
        if offset >= self.end {
            return Ok(Read::Done);
        }
        let wanted = max_rows.min(self.chunk_rows);
        let now = self.real_time.then(now_ms);
        let data = if self.combined.is_empty() {
            // A table type's rows go straight into the column builders.
            let mut rows = Rows::default();
            while rows.len < wanted && self.generator.offset() < self.end {
                let Some(event) = self.generator.next() else { break };
                rows.push(&event, &self.columns, now);
            }
            rows.finish(&self.schema)?
        } else {
            let mut events = Vec::with_capacity(wanted);
            while events.len() < wanted && self.generator.offset() < self.end {
                let Some(event) = self.generator.next() else { break };
                events.push(event);
            }
            combined_chunk(&events, &self.combined, &self.schema, now)?
        };
        Ok(Read::Chunk(SplitChunk::new(data, self.generator.offset().to_string())))
    }
}

/// Column builders for a chunk of events.
/// A column of the combined stream.
#[derive(Clone, Debug)]
enum Combined {
    /// `event_type`: 0 person, 1 auction, 2 bid (as RisingWave numbers them).
    EventType,
    /// `date_time`: the event's time.
    DateTime,
    /// `person`, `auction` or `bid`: a struct of the declared fields (indexes into the
    /// type's columns), NULL for events of the other types.
    Struct { event: usize, fields: Vec<usize> },
}

/// The combined stream's declared columns: `event_type`, `date_time` and the structs
/// `person`, `auction`, `bid` (each with a subset of its type's columns), by name.
fn combined_columns(schema: &SchemaRef) -> Result<Vec<Combined>> {
    let tables = [("person", PERSON), ("auction", AUCTION), ("bid", BID)];
    schema
        .fields()
        .iter()
        .map(|field| {
            let sql_type = SqlType::from_arrow(field);
            let mismatch = |hint: &str| {
                Error::new(
                    SqlState::DatatypeMismatch,
                    format!("column \"{}\" cannot be of type {}", field.name(), sql_type.name()),
                )
                .with_hint(hint.to_string())
            };
            match field.name().as_str() {
                "event_type" => match sql_type {
                    SqlType::Int16 | SqlType::Int32 | SqlType::Int64 => Ok(Combined::EventType),
                    _ => Err(mismatch("declare it BIGINT")),
                },
                "date_time" => match sql_type {
                    SqlType::Timestamp | SqlType::TimestampTz => Ok(Combined::DateTime),
                    _ => Err(mismatch("declare it TIMESTAMP")),
                },
                name => {
                    let Some(event) = tables.iter().position(|(t, _)| *t == name) else {
                        return Err(Error::new(
                            SqlState::UndefinedColumn,
                            format!("column \"{name}\" is not a column of the combined Nexmark stream"),
                        )
                        .with_hint("its columns: event_type, person, auction, bid, date_time (or set nexmark.table.type)"));
                    };
                    let DataType::Struct(fields) = field.data_type() else {
                        return Err(mismatch("declare it STRUCT<...> of the type's columns"));
                    };
                    let inner = Arc::new(datafusion::arrow::datatypes::Schema::new(fields.clone()));
                    Ok(Combined::Struct { event, fields: declared_columns(tables[event].1, &inner)? })
                }
            }
        })
        .collect()
}

/// The number of an event's type and the event's time.
fn event_number(event: &Event) -> (usize, u64) {
    match event {
        Event::Person(p) => (0, p.date_time),
        Event::Auction(a) => (1, a.date_time),
        Event::Bid(b) => (2, b.date_time),
    }
}

/// A chunk of the combined stream.
fn combined_chunk(
    events: &[Event],
    columns: &[Combined],
    schema: &SchemaRef,
    now: Option<u64>,
) -> Result<RecordBatch> {
    let options = CastOptions { safe: false, ..Default::default() };
    let arrays = columns
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| -> Result<ArrayRef> {
            let array: ArrayRef = match column {
                Combined::EventType => {
                    Arc::new(Int64Array::from_iter_values(events.iter().map(|e| event_number(e).0 as i64)))
                }
                Combined::DateTime => Arc::new(TimestampMicrosecondArray::from_iter_values(
                    events.iter().map(|e| now.unwrap_or(event_number(e).1) as i64 * 1000),
                )),
                Combined::Struct { event, fields } => {
                    let DataType::Struct(children) = field.data_type() else {
                        return Err(Error::internal("a combined Nexmark struct column is not a struct"));
                    };
                    let valid: Vec<bool> = events.iter().map(|e| event_number(e).0 == *event).collect();
                    let arrays = fields
                        .iter()
                        .zip(children.iter())
                        .map(|(&index, child)| {
                            let array = field_array(events, &valid, index, now);
                            Ok(cast_with_options(&array, child.data_type(), &options)?)
                        })
                        .collect::<Result<Vec<_>>>()?;
                    Arc::new(StructArray::try_new(children.clone(), arrays, Some(NullBuffer::from(valid)))?)
                }
            };
            if array.data_type() == field.data_type() {
                Ok(array)
            } else {
                Ok(cast_with_options(&array, field.data_type(), &options)?)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let options = datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(events.len()));
    Ok(RecordBatch::try_new_with_options(schema.clone(), arrays, &options)?)
}

/// Column `index` of the events where `valid`, NULL elsewhere.
fn field_array(events: &[Event], valid: &[bool], index: usize, now: Option<u64>) -> ArrayRef {
    let Some(first) = events.iter().zip(valid).find(|(_, v)| **v).map(|(e, _)| e) else {
        return datafusion::arrow::array::new_null_array(&DataType::Int64, events.len());
    };
    match kind_of(first, index) {
        Kind::Integer => Arc::new(Int64Array::from_iter(events.iter().zip(valid).map(|(e, v)| {
            match (v, field(e, index)) {
                (true, Value::Integer(x)) => Some(x),
                _ => None,
            }
        }))),
        Kind::Text => Arc::new(StringArray::from_iter(events.iter().zip(valid).map(|(e, v)| {
            match (v, field(e, index)) {
                (true, Value::Text(x)) => Some(x),
                _ => None,
            }
        }))),
        Kind::Time => {
            Arc::new(TimestampMicrosecondArray::from_iter(events.iter().zip(valid).map(|(e, v)| {
                match (v, field(e, index)) {
                    (true, Value::Time(ms)) => Some(now.unwrap_or(ms) as i64 * 1000),
                    _ => None,
                }
            })))
        }
    }
}

#[derive(Default)]
struct Rows {
    integers: Vec<Int64Builder>,
    texts: Vec<StringBuilder>,
    times: Vec<TimestampMicrosecondBuilder>,
    /// Per declared column: which builder list, and where in it.
    slots: Vec<(Kind, usize)>,
    len: usize,
}

/// A value of one field of an event.
enum Value<'a> {
    Integer(i64),
    Text(&'a str),
    /// Milliseconds since 1970.
    Time(u64),
}

impl Rows {
    fn push(&mut self, event: &Event, columns: &[usize], now: Option<u64>) {
        if self.slots.is_empty() {
            for &column in columns {
                let kind = kind_of(event, column);
                let slot = match kind {
                    Kind::Integer => {
                        self.integers.push(Int64Builder::new());
                        self.integers.len() - 1
                    }
                    Kind::Text => {
                        self.texts.push(StringBuilder::new());
                        self.texts.len() - 1
                    }
                    Kind::Time => {
                        self.times.push(TimestampMicrosecondBuilder::new());
                        self.times.len() - 1
                    }
                };
                self.slots.push((kind, slot));
            }
        }
        for (&column, &(_, slot)) in columns.iter().zip(&self.slots) {
            match field(event, column) {
                Value::Integer(v) => self.integers[slot].append_value(v),
                Value::Text(v) => self.texts[slot].append_value(v),
                Value::Time(ms) => self.times[slot].append_value(now.unwrap_or(ms) as i64 * 1000),
            }
        }
        self.len += 1;
    }

    /// The chunk in the declared columns and types.
    fn finish(mut self, schema: &SchemaRef) -> Result<RecordBatch> {
        let options = CastOptions { safe: false, ..Default::default() };
        let columns = self
            .slots
            .iter()
            .zip(schema.fields())
            .map(|(&(kind, slot), field)| {
                let array: ArrayRef = match kind {
                    Kind::Integer => Arc::new(self.integers[slot].finish()),
                    Kind::Text => Arc::new(self.texts[slot].finish()),
                    Kind::Time => Arc::new(self.times[slot].finish()),
                };
                if array.data_type() == field.data_type() {
                    Ok(array)
                } else {
                    Ok(cast_with_options(&array, field.data_type(), &options)?)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        if columns.is_empty() {
            let options = datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(self.len));
            return Ok(RecordBatch::try_new_with_options(schema.clone(), columns, &options)?);
        }
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }
}

fn kind_of(event: &Event, column: usize) -> Kind {
    match field(event, column) {
        Value::Integer(_) => Kind::Integer,
        Value::Text(_) => Kind::Text,
        Value::Time(_) => Kind::Time,
    }
}

/// Column `column` (an index into the table type's columns) of `event`.
fn field(event: &Event, column: usize) -> Value<'_> {
    match event {
        Event::Person(p) => match column {
            0 => Value::Integer(p.id as i64),
            1 => Value::Text(&p.name),
            2 => Value::Text(&p.email_address),
            3 => Value::Text(&p.credit_card),
            4 => Value::Text(&p.city),
            5 => Value::Text(&p.state),
            6 => Value::Time(p.date_time),
            _ => Value::Text(&p.extra),
        },
        Event::Auction(a) => match column {
            0 => Value::Integer(a.id as i64),
            1 => Value::Text(&a.item_name),
            2 => Value::Text(&a.description),
            3 => Value::Integer(a.initial_bid as i64),
            4 => Value::Integer(a.reserve as i64),
            5 => Value::Time(a.date_time),
            6 => Value::Time(a.expires),
            7 => Value::Integer(a.seller as i64),
            8 => Value::Integer(a.category as i64),
            _ => Value::Text(&a.extra),
        },
        Event::Bid(b) => match column {
            0 => Value::Integer(b.auction as i64),
            1 => Value::Integer(b.bidder as i64),
            2 => Value::Integer(b.price as i64),
            3 => Value::Text(&b.channel),
            4 => Value::Text(&b.url),
            5 => Value::Time(b.date_time),
            _ => Value::Text(&b.extra),
        },
    }
}
