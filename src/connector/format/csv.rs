//! The fast path of CSV decoding: a block of plain lines (no quotes, no carriage returns,
//! valid UTF-8) split at the delimiter and parsed straight into the columns' builders.
//!
//! It exists because Arrow's CSV reader is general — a `csv_core` state machine over
//! every byte, then a second pass per column, and a full ISO-8601 parser per timestamp —
//! and a file source spends most of its time there. Every value is parsed by the same
//! function Arrow's reader uses (`Parser::parse`, `parse_decimal`, `string_to_datetime`),
//! except timestamps of the form `YYYY-MM-DD[ T]HH:MM:SS[.fffffffff]`, which are read
//! directly (the other forms go to `string_to_datetime`). Anything the fast path is not
//! sure of — a quote, a type it does not cover, a bad value, a wrong field count —
//! declines the whole block (`None`), and the general decoder reads it with the same
//! result it always had, bad lines becoming dead letters. An empty field is NULL, as in
//! Arrow's reader.

use std::sync::Arc;

use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, BooleanBuilder, PrimitiveBuilder, RecordBatch, StringBuilder,
    make_array,
};
use datafusion::arrow::compute::kernels::cast_utils::{Parser, parse_decimal, string_to_datetime};
use datafusion::arrow::datatypes::*;

use super::TextBlock;
use crate::common::types::UTC;

/// The rows of `block` decoded into `schema`, or `None` when the general decoder must
/// read it.
pub fn decode_plain(schema: &SchemaRef, delimiter: u8, block: &TextBlock) -> Option<RecordBatch> {
    if !delimiter.is_ascii() || delimiter == b'"' || delimiter == b'\r' || delimiter == b'\n' {
        return None;
    }
    if memchr::memchr2(b'"', b'\r', &block.bytes).is_some() {
        return None;
    }
    let text = std::str::from_utf8(&block.bytes).ok()?;
    let rows = block.lines.len();
    let mut columns =
        schema.fields().iter().map(|field| column(field.data_type(), rows)).collect::<Option<Vec<_>>>()?;
    // One scan of the block for delimiters and line ends: the lines are contiguous, each
    // ended by a line break and holding none.
    let bytes = text.as_bytes();
    let (mut start, mut field) = (0, 0);
    for end in memchr::memchr2_iter(delimiter, b'\n', bytes) {
        let column = columns.get_mut(field)?;
        if !column.push(&text[start..end]) {
            return None;
        }
        field += 1;
        start = end + 1;
        if bytes[end] == b'\n' {
            if field != columns.len() {
                return None;
            }
            field = 0;
        }
    }
    if field != 0 || start != bytes.len() {
        return None;
    }
    let columns = columns.iter_mut().map(|column| column.finish()).collect();
    RecordBatch::try_new(schema.clone(), columns).ok().filter(|batch| batch.num_rows() == rows)
}

/// A column being decoded.
trait Column {
    /// Appends the value `text` spells; false when it does not parse.
    fn push(&mut self, text: &str) -> bool;
    fn finish(&mut self) -> ArrayRef;
}

/// The decoder of a column of `data_type`, when the fast path covers the type.
fn column(data_type: &DataType, rows: usize) -> Option<Box<dyn Column>> {
    Some(match data_type {
        DataType::Boolean => Box::new(BooleanBuilder::with_capacity(rows)),
        DataType::Int8 => primitive::<Int8Type>(rows),
        DataType::Int16 => primitive::<Int16Type>(rows),
        DataType::Int32 => primitive::<Int32Type>(rows),
        DataType::Int64 => primitive::<Int64Type>(rows),
        DataType::UInt8 => primitive::<UInt8Type>(rows),
        DataType::UInt16 => primitive::<UInt16Type>(rows),
        DataType::UInt32 => primitive::<UInt32Type>(rows),
        DataType::UInt64 => primitive::<UInt64Type>(rows),
        DataType::Float32 => primitive::<Float32Type>(rows),
        DataType::Float64 => primitive::<Float64Type>(rows),
        DataType::Date32 => primitive::<Date32Type>(rows),
        DataType::Time64(TimeUnit::Microsecond) => primitive::<Time64MicrosecondType>(rows),
        DataType::Decimal128(precision, scale) => Box::new(Decimal {
            builder: PrimitiveBuilder::with_capacity(rows),
            precision: *precision,
            scale: *scale,
        }),
        DataType::Utf8 => Box::new(StringBuilder::with_capacity(rows, rows * 16)),
        DataType::Timestamp(unit, tz) => Box::new(Timestamp {
            builder: PrimitiveBuilder::with_capacity(rows),
            data_type: data_type.clone(),
            format: TimestampFormat {
                unit: *unit,
                direct: tz.as_deref().is_none_or(|tz| tz == UTC || tz == "UTC"),
                tz: match tz {
                    Some(tz) => Some(tz.parse::<Tz>().ok()?),
                    None => None,
                },
            },
        }),
        _ => return None,
    })
}

fn primitive<T: ArrowPrimitiveType + Parser>(rows: usize) -> Box<dyn Column> {
    Box::new(PrimitiveBuilder::<T>::with_capacity(rows))
}

/// Appends NULL for an empty `text`, else the value `parse` reads from it; false when it
/// reads none.
fn append_parsed<T: ArrowPrimitiveType>(
    builder: &mut PrimitiveBuilder<T>,
    text: &str,
    parse: impl FnOnce(&str) -> Option<T::Native>,
) -> bool {
    if text.is_empty() {
        builder.append_null();
        return true;
    }
    match parse(text) {
        Some(value) => {
            builder.append_value(value);
            true
        }
        None => false,
    }
}

impl<T: ArrowPrimitiveType + Parser> Column for PrimitiveBuilder<T> {
    fn push(&mut self, text: &str) -> bool {
        append_parsed(self, text, T::parse)
    }

    fn finish(&mut self) -> ArrayRef {
        Arc::new(PrimitiveBuilder::finish(self))
    }
}

impl Column for BooleanBuilder {
    fn push(&mut self, text: &str) -> bool {
        if text.is_empty() {
            self.append_null();
        } else if text.eq_ignore_ascii_case("true") {
            self.append_value(true);
        } else if text.eq_ignore_ascii_case("false") {
            self.append_value(false);
        } else {
            return false;
        }
        true
    }

    fn finish(&mut self) -> ArrayRef {
        Arc::new(BooleanBuilder::finish(self))
    }
}

impl Column for StringBuilder {
    fn push(&mut self, text: &str) -> bool {
        if text.is_empty() {
            self.append_null();
        } else {
            self.append_value(text);
        }
        true
    }

    fn finish(&mut self) -> ArrayRef {
        Arc::new(StringBuilder::finish(self))
    }
}

struct Decimal {
    builder: PrimitiveBuilder<Decimal128Type>,
    precision: u8,
    scale: i8,
}

impl Column for Decimal {
    fn push(&mut self, text: &str) -> bool {
        let (precision, scale) = (self.precision, self.scale);
        append_parsed(&mut self.builder, text, |text| {
            parse_decimal::<Decimal128Type>(text, precision, scale).ok()
        })
    }

    fn finish(&mut self) -> ArrayRef {
        let array = self.builder.finish().with_precision_and_scale(self.precision, self.scale);
        Arc::new(array.expect("the column's own precision and scale"))
    }
}

struct Timestamp {
    /// The values in the column's unit since the epoch.
    builder: PrimitiveBuilder<Int64Type>,
    data_type: DataType,
    format: TimestampFormat,
}

/// How a timestamp column's text is read.
struct TimestampFormat {
    unit: TimeUnit,
    /// Whether a local time is UTC (no zone, or the zone is UTC), so that the common
    /// form can be read directly.
    direct: bool,
    tz: Option<Tz>,
}

impl TimestampFormat {
    /// `text` in the column's unit, as Arrow's reader reads it.
    fn parse(&self, text: &str) -> Option<i64> {
        if self.direct
            && let Some((seconds, nanos)) = parse_plain_timestamp(text.as_bytes())
        {
            return scale(seconds, nanos, self.unit);
        }
        let (seconds, nanos) = match &self.tz {
            Some(tz) => {
                let time = string_to_datetime(tz, text).ok()?;
                (time.timestamp(), time.timestamp_subsec_nanos())
            }
            None => {
                let time = string_to_datetime(&chrono::Utc, text).ok()?;
                (time.timestamp(), time.timestamp_subsec_nanos())
            }
        };
        scale(seconds, nanos, self.unit)
    }
}

impl Column for Timestamp {
    fn push(&mut self, text: &str) -> bool {
        let format = &self.format;
        append_parsed(&mut self.builder, text, |text| format.parse(text))
    }

    fn finish(&mut self) -> ArrayRef {
        let data = self.builder.finish().into_data().into_builder().data_type(self.data_type.clone());
        make_array(data.build().expect("an i64 array is a timestamp array"))
    }
}

/// Seconds and nanoseconds since the epoch in `unit`, as chrono's `timestamp_*` give
/// them; `None` on overflow (Arrow's reader fails there too).
fn scale(seconds: i64, nanos: u32, unit: TimeUnit) -> Option<i64> {
    match unit {
        TimeUnit::Second => Some(seconds),
        TimeUnit::Millisecond => seconds.checked_mul(1_000)?.checked_add((nanos / 1_000_000) as i64),
        TimeUnit::Microsecond => seconds.checked_mul(1_000_000)?.checked_add((nanos / 1_000) as i64),
        TimeUnit::Nanosecond => seconds.checked_mul(1_000_000_000)?.checked_add(nanos as i64),
    }
}

/// `YYYY-MM-DD`, or that and `[ Tt]HH:MM:SS` with an optional fraction of 1–9 digits, as
/// seconds and nanoseconds since the epoch (UTC); `None` for any other form or an
/// invalid date or time (leap seconds included), which `string_to_datetime` then reads.
fn parse_plain_timestamp(bytes: &[u8]) -> Option<(i64, u32)> {
    if bytes.len() < 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let year = digits(&bytes[0..4])?;
    let month = digits(&bytes[5..7])?;
    let day = digits(&bytes[8..10])?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let days = days_from_civil(year as i64, month, day);
    if bytes.len() == 10 {
        return Some((days * 86_400, 0));
    }
    if bytes.len() < 19 || !matches!(bytes[10], b' ' | b'T' | b't') || bytes[13] != b':' || bytes[16] != b':'
    {
        return None;
    }
    let (hour, minute, second) = (digits(&bytes[11..13])?, digits(&bytes[14..16])?, digits(&bytes[17..19])?);
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let nanos = match &bytes[19..] {
        [] => 0,
        [b'.', fraction @ ..] if (1..=9).contains(&fraction.len()) => {
            digits(fraction)? * 10u32.pow(9 - fraction.len() as u32)
        }
        _ => return None,
    };
    let seconds = days * 86_400 + (hour * 3_600 + minute * 60 + second) as i64;
    Some((seconds, nanos))
}

/// The number `bytes` spell, all ASCII digits (at most 9).
fn digits(bytes: &[u8]) -> Option<u32> {
    bytes.iter().try_fold(0u32, |n, b| b.is_ascii_digit().then(|| n * 10 + (b - b'0') as u32))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) as i64 + 2) / 5 + day as i64 - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;
    use crate::connector::format::{Encode, decode_bytes};

    fn block(lines: &[String]) -> TextBlock {
        let mut block = TextBlock::default();
        for (i, line) in lines.iter().enumerate() {
            block.push(i as u64 + 1, line.as_bytes());
        }
        block
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("i", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
            Field::new("tz", DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())), true),
            Field::new("ms", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new("f", DataType::Float64, true),
            Field::new("b", DataType::Boolean, true),
            Field::new("d", DataType::Date32, true),
            Field::new("n", DataType::Decimal128(10, 2), true),
            Field::new("small", DataType::Int16, true),
        ]))
    }

    /// Each line alone through the fast path and Arrow's reader: the fast path either
    /// declines or gives Arrow's rows, and it declines only what it must.
    fn check(line: &str, fast: bool) {
        let schema = schema();
        let block = block(&[line.to_string()]);
        let general =
            decode_bytes(&Encode::Csv { delimiter: b',', header: false }, &schema, &block.bytes, 1).ok();
        match decode_plain(&schema, b',', &block) {
            Some(batch) => assert_eq!(Some(batch), general, "{line}"),
            None => assert!(!fast, "the fast path declined {line:?}"),
        }
    }

    #[test]
    fn fast_path_decodes_as_arrow_does() {
        let ok = [
            "1,ann,2026-01-01 00:00:01,2026-01-01 00:00:01,2026-01-01 00:00:01,1.5,true,2026-01-01,1.25,7",
            "-9,x y,2026-02-28T23:59:59.123456,2026-02-28t23:59:59.5,1969-12-31 23:59:59.999999999,-0,FALSE,1970-01-01,-3,-7",
            ",,,,,,,,,",
            "9223372036854775807,ünï,2024-02-29,2000-02-29 12:00:00.1,1900-03-01 00:00:00,1e3,True,2024-02-29,99999999.99,32767",
            "0,a,0001-01-01 00:00:00,9999-12-31 23:59:59.999999,1600-02-29 00:00:00.000000001,1.5e-3,false,1600-02-29,0.1,0",
            "1,a,2026-01-01T10:00:00Z,2026-01-01 10:00:00+02:00,2026-01-01 10:00:00.25,1,true,2026-01-01,1,1",
        ];
        for line in ok {
            check(line, true);
        }
        let bad = [
            "1,a,2026-02-29 00:00:00,,,,,,,",
            "1,a,2026-13-01,,,,,,,",
            "1,a,2026-01-01 24:00:00,,,,,,,",
            "1,a,2026-01-01 23:59:60,,,,,,,",
            "1,a,2026-01-01 00:00:00.1234567890,,,,,,,",
            "1,a,2026-01-01 00:00:00.,,,,,,,",
            "1,a,,,2026-01-01 10:00,,,,,",
            "x,a,,,,,,,,",
            " 1,a,,,,,,,,",
            "1,a,,,,,yes,,,",
            "1,a,,,,,,,123456789.123,",
            "1,a,,,,,,,,32768",
            "1,a,,,,,,,",
            "1,a,,,,,,,,,",
            "1,\"a,b\",,,,,,,,",
        ];
        for line in bad {
            check(line, false);
        }
    }

    #[test]
    fn plain_timestamps_match_chrono() {
        for (year, month, day) in
            [(1970, 1, 1), (1969, 12, 31), (2000, 2, 29), (1, 1, 1), (9999, 12, 31), (1600, 3, 1)]
        {
            let date = chrono::NaiveDate::from_ymd_opt(year, month, day).unwrap();
            let expected = date.and_hms_opt(13, 14, 15).unwrap().and_utc().timestamp();
            let text = format!("{year:04}-{month:02}-{day:02} 13:14:15");
            assert_eq!(parse_plain_timestamp(text.as_bytes()), Some((expected, 0)), "{text}");
        }
    }

    #[test]
    fn a_block_with_a_quote_or_an_uncovered_type_goes_to_the_general_decoder() {
        let lines = ["1,a,,,,,,,,".to_string(), "2,\"b\",,,,,,,,".to_string()];
        assert!(decode_plain(&schema(), b',', &block(&lines)).is_none());
        let binary = Arc::new(Schema::new(vec![Field::new("b", DataType::Binary, true)]));
        assert!(decode_plain(&binary, b',', &block(&["ab".to_string()])).is_none());
        let tabs = block(&["1\tx".to_string()]);
        let two = Arc::new(Schema::new(vec![
            Field::new("i", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        let batch = decode_plain(&two, b'\t', &tabs).unwrap();
        assert_eq!(
            Some(batch),
            decode_bytes(&Encode::Csv { delimiter: b'\t', header: false }, &two, &tabs.bytes, 1).ok()
        );
    }
}
