//! `connector = 'nexmark'`: the standard Nexmark generator (the `nexmark` crate, as
//! RisingWave uses it, with RisingWave's option names).
//!
//! | option | default | meaning |
//! |---|---|---|
//! | `nexmark.table.type` | (required) | `Person`, `Auction` or `Bid` |
//! | `nexmark.event.num` | endless | rows of that type to generate, over all splits |
//! | `nexmark.split.num` | 1 | splits: split `i` of `n` generates the type's events `i`, `i + n`, ... |
//! | `nexmark.min.event.gap.in.ns` | 100000 | event-time gap between events (10,000 events per second of event time) |
//! | `nexmark.max.chunk.size` | the server's chunk size | rows per chunk |
//! | `nexmark.use.real.time` | false | pace rows to the event rate and stamp them with the current time |
//! | `nexmark.base.time` | the creation time | event time of the first event, in ms since 1970; frozen at `CREATE` so that rows read again after a crash are the same |
//!
//! The declared columns must be columns of the table type (a subset, in any order) with a
//! type of the same kind (any integer or numeric type for ids and prices, text for
//! strings, timestamp for times).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
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
        None => {
            return Err(Error::unsupported("the combined Nexmark stream (struct columns)")
                .with_hint("set nexmark.table.type to Person, Auction or Bid"));
        }
    };
    let columns = declared_columns(table, schema)?;
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
                Kind::Text => sql_type == SqlType::Text,
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
    event_type: EventType,
    columns: Vec<usize>,
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
        let generator = EventGenerator::new(self.config.clone())
            .with_offset(offset)
            .with_step(self.splits)
            .with_type_filter(self.event_type);
        Ok(Box::new(NexmarkReader {
            generator,
            end: self.events,
            columns: self.columns.clone(),
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
        let mut rows = Rows::default();
        let now = self.real_time.then(now_ms);
        while rows.len < wanted {
            if self.generator.offset() >= self.end {
                break;
            }
            let Some(event) = self.generator.next() else { break };
            rows.push(&event, &self.columns, now);
        }
        let data = rows.finish(&self.schema)?;
        Ok(Read::Chunk(SplitChunk::new(data, self.generator.offset().to_string())))
    }
}

/// Column builders for a chunk of events.
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
