//! Values in Postgres' text form: what the server sends and `COPY TO` writes, and what
//! views store for arrays (`{1,NULL,3}`). Follows Postgres' own output functions (`t`/`f`,
//! shortest floats with `Infinity`/`NaN`, `\\x` bytea, ISO timestamps, `1 day 02:00:00`
//! intervals, normalized jsonb, quoted array elements).

use std::fmt::Write;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
    IntervalMonthDayNanoType, Time64MicrosecondType, TimestampMicrosecondType,
};

use crate::common::{Error, Result, SqlType};

/// The columns of `batch` with their SQL types, cast to the Arrow types `PgValue` reads.
pub fn canonical_columns(batch: &RecordBatch) -> Result<Vec<(SqlType, ArrayRef)>> {
    batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(field, array)| {
            let sql_type = SqlType::from_arrow(field);
            let array = canonical(array, &sql_type)?;
            Ok((sql_type, array))
        })
        .collect()
}

/// Casts an array to the Arrow type Sabot stores for its SQL type (or to text).
pub fn canonical(array: &ArrayRef, sql_type: &SqlType) -> Result<ArrayRef> {
    if let DataType::Struct(_) = array.data_type() {
        return record_texts(array);
    }
    if crate::common::types::is_list(array.data_type()) {
        return match sql_type {
            SqlType::Array(_) => canonical_list(array, sql_type),
            _ => array_texts(array),
        };
    }
    if matches!(array.data_type(), DataType::Duration(_)) {
        return durations_as_intervals(array);
    }
    let target = sql_type.to_arrow();
    if array.data_type() == &target {
        return Ok(array.clone());
    }
    Ok(cast(array, &target)?)
}

/// Durations (an Arrow timestamp difference) as the interval Postgres' `timestamp -
/// timestamp` is: whole days of 24 hours, then the rest, both of one sign.
fn durations_as_intervals(durations: &ArrayRef) -> Result<ArrayRef> {
    const MICROS_PER_DAY: i64 = 86_400_000_000;
    // Microseconds, as Sabot's timestamps are (and 292 000 years fit).
    let micros = cast(durations, &DataType::Duration(datafusion::arrow::datatypes::TimeUnit::Microsecond))?;
    let micros = micros.as_primitive::<datafusion::arrow::datatypes::DurationMicrosecondType>();
    let intervals: datafusion::arrow::array::IntervalMonthDayNanoArray = micros
        .iter()
        .map(|v| {
            v.map(|micros| {
                let days = micros / MICROS_PER_DAY;
                let rest = (micros - days * MICROS_PER_DAY) * 1000;
                datafusion::arrow::datatypes::IntervalMonthDayNano::new(0, days as i32, rest)
            })
        })
        .collect();
    Ok(Arc::new(intervals))
}

/// Lists as text in Postgres' array syntax: `{1,2,NULL}`, `{"a b",c}`, `{{1,2},{3}}`:
/// how lists of lists are sent, and how views of plan revisions 8 to 12 store arrays.
pub fn array_texts(array: &ArrayRef) -> Result<ArrayRef> {
    let item_type = match array.data_type() {
        DataType::List(field) | DataType::LargeList(field) | DataType::FixedSizeList(field, _) => {
            SqlType::from_arrow(field)
        }
        _ => return Err(Error::internal("array_texts of a non-list")),
    };
    let array_type = SqlType::Array(Box::new(item_type));
    let lists = canonical_list(array, &array_type)?;
    let texts: datafusion::arrow::array::StringArray =
        (0..lists.len()).map(|row| PgValue::of(lists.as_ref(), &array_type, row).to_text()).collect();
    Ok(Arc::new(texts))
}

/// A list (of any Arrow list type) as a `List` whose items are cast to the Arrow type
/// Sabot stores for `array_type`'s element type, so that [`PgValue::of`] reads them.
fn canonical_list(array: &ArrayRef, array_type: &SqlType) -> Result<ArrayRef> {
    let SqlType::Array(element) = array_type else {
        return Err(Error::internal("canonical_list of a non-array"));
    };
    let array = match array.data_type() {
        DataType::List(_) => array.clone(),
        DataType::LargeList(field) | DataType::FixedSizeList(field, _) => {
            cast(array, &DataType::List(field.clone()))?
        }
        _ => return Err(Error::internal("canonical_list of a non-list")),
    };
    let list = array.as_list::<i32>();
    let items = canonical(list.values(), element)?;
    if items.data_type() == list.values().data_type() {
        return Ok(array);
    }
    let field = Arc::new(datafusion::arrow::datatypes::Field::new("item", items.data_type().clone(), true));
    Ok(Arc::new(datafusion::arrow::array::ListArray::try_new(
        field,
        list.offsets().clone(),
        items,
        list.nulls().cloned(),
    )?))
}

/// Structs as text in Postgres' record syntax: `(1,abc)`, `(,"a b")` (a NULL field is
/// empty), fields printed as their types print (`record_out`).
fn record_texts(array: &ArrayRef) -> Result<ArrayRef> {
    let records = array.as_struct();
    let fields: Vec<(SqlType, ArrayRef)> = records
        .fields()
        .iter()
        .zip(records.columns())
        .map(|(field, column)| {
            let sql_type = SqlType::from_arrow(field);
            canonical(column, &sql_type).map(|column| (sql_type, column))
        })
        .collect::<Result<_>>()?;
    let mut texts = datafusion::arrow::array::StringBuilder::new();
    let mut text = String::new();
    for row in 0..records.len() {
        if records.is_null(row) {
            texts.append_null();
            continue;
        }
        text.clear();
        text.push('(');
        for (n, (sql_type, column)) in fields.iter().enumerate() {
            if n > 0 {
                text.push(',');
            }
            if let Some(value) = PgValue::of(column.as_ref(), sql_type, row).to_text() {
                push_record_field(&mut text, &value);
            }
        }
        text.push(')');
        texts.append_value(&text);
    }
    Ok(Arc::new(texts.finish()))
}

/// A record field's text, double-quoted where Postgres quotes it (empty, or holding
/// parentheses, commas, quotes, backslashes or white space), quotes and backslashes doubled.
fn push_record_field(out: &mut String, value: &str) {
    let quote = value.is_empty()
        || value.chars().any(|c| matches!(c, '(' | ')' | ',' | '"' | '\\') || c.is_ascii_whitespace());
    if !quote {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\') {
            out.push(c);
        }
        out.push(c);
    }
    out.push('"');
}

/// An array element's text, double-quoted where Postgres quotes it (empty, `NULL`, or
/// holding braces, commas, quotes, backslashes or white space).
fn push_array_element(out: &mut String, value: &str) {
    let quote = value.is_empty()
        || value.eq_ignore_ascii_case("null")
        || value.chars().any(|c| matches!(c, '{' | '}' | ',' | '"' | '\\') || c.is_ascii_whitespace());
    if !quote {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// One value of a result row.
#[derive(Debug)]
pub enum PgValue<'a> {
    Null,
    Bool(bool),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    Float32(f32),
    Float64(f64),
    Numeric {
        value: i128,
        scale: i8,
        trim: bool,
    },
    Text(&'a str),
    /// `char(n)`: text blank-padded to `width` characters.
    Padded {
        text: &'a str,
        width: u32,
    },
    Json(&'a str),
    Bytes(&'a [u8]),
    Date(i32),
    Time(i64),
    Timestamp(i64),
    TimestampTz(i64),
    Interval {
        months: i32,
        days: i32,
        nanos: i64,
    },
    /// An array: the items `items[range]` of element type `element`.
    Array {
        items: &'a dyn Array,
        element: &'a SqlType,
        range: std::ops::Range<usize>,
    },
}

impl<'a> PgValue<'a> {
    pub fn of(array: &'a dyn Array, sql_type: &'a SqlType, row: usize) -> PgValue<'a> {
        if array.is_null(row) {
            return PgValue::Null;
        }
        match sql_type {
            SqlType::Boolean => PgValue::Bool(array.as_boolean().value(row)),
            SqlType::Int16 => PgValue::Int16(array.as_primitive::<Int16Type>().value(row)),
            SqlType::Int32 => PgValue::Int32(array.as_primitive::<Int32Type>().value(row)),
            SqlType::Int64 => PgValue::Int64(array.as_primitive::<Int64Type>().value(row)),
            SqlType::Float32 => PgValue::Float32(array.as_primitive::<Float32Type>().value(row)),
            SqlType::Float64 => PgValue::Float64(array.as_primitive::<Float64Type>().value(row)),
            SqlType::Numeric { precision, scale } => PgValue::Numeric {
                value: array.as_primitive::<Decimal128Type>().value(row),
                scale: *scale,
                trim: (*precision, *scale)
                    == (
                        crate::common::types::NUMERIC_DEFAULT_PRECISION,
                        crate::common::types::NUMERIC_DEFAULT_SCALE,
                    ),
            },
            // char(n) is stored without its blank padding, and printed with it.
            SqlType::Char(width) => {
                PgValue::Padded { text: array.as_string::<i32>().value(row), width: *width }
            }
            SqlType::Text | SqlType::Varchar(_) => PgValue::Text(array.as_string::<i32>().value(row)),
            SqlType::Jsonb => PgValue::Json(array.as_string::<i32>().value(row)),
            // `canonical` wrote structs as record text (`(1,"a b")`), sent as text.
            SqlType::Struct(_) => PgValue::Text(array.as_string::<i32>().value(row)),
            SqlType::Bytea => PgValue::Bytes(array.as_binary::<i32>().value(row)),
            SqlType::Date => PgValue::Date(array.as_primitive::<Date32Type>().value(row)),
            SqlType::Time => PgValue::Time(array.as_primitive::<Time64MicrosecondType>().value(row)),
            SqlType::Timestamp => {
                PgValue::Timestamp(array.as_primitive::<TimestampMicrosecondType>().value(row))
            }
            SqlType::TimestampTz => {
                PgValue::TimestampTz(array.as_primitive::<TimestampMicrosecondType>().value(row))
            }
            SqlType::Interval => {
                let v = array.as_primitive::<IntervalMonthDayNanoType>().value(row);
                PgValue::Interval { months: v.months, days: v.days, nanos: v.nanoseconds }
            }
            // `canonical` cast the items to their element type's stored form.
            SqlType::Array(element) => {
                let list = array.as_list::<i32>();
                let offsets = list.value_offsets();
                PgValue::Array {
                    items: list.values().as_ref(),
                    element,
                    range: offsets[row] as usize..offsets[row + 1] as usize,
                }
            }
        }
    }

    /// The Postgres text representation; `None` for NULL.
    pub fn to_text(&self) -> Option<String> {
        let mut out = String::new();
        match self {
            PgValue::Null => return None,
            PgValue::Bool(v) => out.push_str(if *v { "t" } else { "f" }),
            PgValue::Int16(v) => write!(out, "{v}").ok()?,
            PgValue::Int32(v) => write!(out, "{v}").ok()?,
            PgValue::Int64(v) => write!(out, "{v}").ok()?,
            PgValue::Float32(v) => out = format_float(f64::from(*v), 6, &format!("{v:e}")),
            PgValue::Float64(v) => out = format_float(*v, 15, &format!("{v:e}")),
            PgValue::Numeric { value, scale, trim } => out = format_numeric(*value, *scale, *trim),
            PgValue::Text(v) => out.push_str(v),
            PgValue::Padded { text, width } => {
                out.push_str(text);
                let missing = (*width as usize).saturating_sub(text.chars().count());
                out.extend(std::iter::repeat_n(' ', missing));
            }
            PgValue::Json(v) => out = normalize_json(v),
            PgValue::Bytes(v) => {
                out.push_str("\\x");
                for byte in *v {
                    write!(out, "{byte:02x}").ok()?;
                }
            }
            PgValue::Date(days) => out = format_date(*days),
            PgValue::Time(micros) => out = format_time_of_day(*micros),
            PgValue::Timestamp(micros) => out = format_timestamp(*micros),
            PgValue::TimestampTz(micros) => out = format!("{}+00", format_timestamp(*micros)),
            PgValue::Interval { months, days, nanos } => out = format_interval(*months, *days, *nanos),
            PgValue::Array { items, element, range } => {
                out.push('{');
                for (n, item) in range.clone().enumerate() {
                    if n > 0 {
                        out.push(',');
                    }
                    match PgValue::of(*items, element, item).to_text() {
                        None => out.push_str("NULL"),
                        // An inner array (of a list of lists) is written as it is.
                        Some(value) if matches!(element, SqlType::Array(_)) => out.push_str(&value),
                        Some(value) => push_array_element(&mut out, &value),
                    }
                }
                out.push('}');
            }
        }
        Some(out)
    }
}

/// Postgres' float output (extra_float_digits = 1): the shortest exact digits, in
/// exponent form when the decimal exponent is below -4 or at least `digits`.
pub(crate) fn format_float(value: f64, digits: i32, scientific: &str) -> String {
    if value.is_nan() {
        return "NaN".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    if value == 0.0 {
        return if value.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    // `scientific` is Rust's shortest round-trip form: "-1.2345e-7".
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits_only: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if negative { "-" } else { "" };
    if exponent < -4 || exponent >= digits {
        let (first, rest) = digits_only.split_at(1);
        let mantissa = if rest.is_empty() { first.to_string() } else { format!("{first}.{rest}") };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        return format!("{sign}{mantissa}e{exp_sign}{:02}", exponent.abs());
    }
    let point = exponent + 1; // digits before the decimal point
    if point <= 0 {
        format!("{sign}0.{}{digits_only}", "0".repeat((-point) as usize))
    } else if point as usize >= digits_only.len() {
        format!("{sign}{digits_only}{}", "0".repeat(point as usize - digits_only.len()))
    } else {
        let (int, frac) = digits_only.split_at(point as usize);
        format!("{sign}{int}.{frac}")
    }
}

pub(crate) fn format_numeric(value: i128, scale: i8, trim: bool) -> String {
    let negative = value < 0;
    let digits = value.unsigned_abs().to_string();
    let scale = scale.max(0) as usize;
    let mut text = if scale == 0 {
        digits
    } else if digits.len() > scale {
        format!("{}.{}", &digits[..digits.len() - scale], &digits[digits.len() - scale..])
    } else {
        format!("0.{}{}", "0".repeat(scale - digits.len()), digits)
    };
    if trim && text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    if negative { format!("-{text}") } else { text }
}

pub(crate) fn format_date(days: i32) -> String {
    match NaiveDate::from_num_days_from_ce_opt(days + 719_163) {
        Some(date) => date.format("%Y-%m-%d").to_string(),
        None => days.to_string(),
    }
}

fn format_fraction(micros: u32) -> String {
    if micros == 0 { String::new() } else { format!(".{micros:06}").trim_end_matches('0').to_string() }
}

pub(crate) fn format_time_of_day(micros: i64) -> String {
    let seconds = micros.div_euclid(1_000_000);
    let fraction = micros.rem_euclid(1_000_000) as u32;
    match NaiveTime::from_num_seconds_from_midnight_opt(seconds as u32, 0) {
        Some(time) => format!("{}{}", time.format("%H:%M:%S"), format_fraction(fraction)),
        None => "24:00:00".into(),
    }
}

pub(crate) fn format_timestamp(micros: i64) -> String {
    match DateTime::from_timestamp_micros(micros).map(|d| d.naive_utc()) {
        Some(timestamp) => {
            let time: NaiveDateTime = timestamp;
            let fraction = micros.rem_euclid(1_000_000) as u32;
            format!("{}{}", time.format("%Y-%m-%d %H:%M:%S"), format_fraction(fraction))
        }
        None => micros.to_string(),
    }
}

pub(crate) fn format_interval(months: i32, days: i32, nanos: i64) -> String {
    // Postgres' `EncodeInterval`: a positive part after a negative one gets a `+`.
    let mut before_negative = false;
    let mut part = |n: i64, word: &str| {
        let sign = if before_negative && n > 0 { "+" } else { "" };
        before_negative = n < 0;
        if n == 1 { format!("{sign}{n} {word}") } else { format!("{sign}{n} {word}s") }
    };
    let mut parts = Vec::new();
    let (years, months) = (months / 12, months % 12);
    for (n, word) in [(i64::from(years), "year"), (i64::from(months), "mon"), (i64::from(days), "day")] {
        if n != 0 {
            parts.push(part(n, word));
        }
    }
    let micros = nanos / 1_000;
    if micros != 0 || parts.is_empty() {
        let sign = if micros < 0 {
            "-"
        } else if before_negative {
            "+"
        } else {
            ""
        };
        let abs = micros.unsigned_abs();
        let (hours, rest) = (abs / 3_600_000_000, abs % 3_600_000_000);
        let (minutes, rest) = (rest / 60_000_000, rest % 60_000_000);
        let (seconds, fraction) = (rest / 1_000_000, (rest % 1_000_000) as u32);
        parts.push(format!("{sign}{hours:02}:{minutes:02}:{seconds:02}{}", format_fraction(fraction)));
    }
    parts.join(" ")
}

/// An identifier as Postgres quotes it (`quote_ident`, `format('%I')`): as written when
/// it is lower-case letters, digits and underscores, else in double quotes.
pub fn quote_ident(name: &str) -> String {
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain { name.to_string() } else { format!("\"{}\"", name.replace('"', "\"\"")) }
}

/// jsonb output: keys sorted (shorter first), `", "` and `": "` separators.
pub fn normalize_json(text: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value) => {
            let mut out = String::with_capacity(text.len());
            write_json(&value, &mut out);
            out
        }
        Err(_) => text.to_string(),
    }
}

/// A JSON value in jsonb's output form.
pub fn jsonb_text(value: &serde_json::Value) -> String {
    let mut out = String::new();
    write_json(value, &mut out);
    out
}

fn write_json(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_json(item, out);
            }
            out.push(']');
        }
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|(a, _), (b, _)| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&serde_json::Value::String(key.clone()).to_string());
                out.push_str(": ");
                write_json(item, out);
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::format_interval;

    #[test]
    fn intervals_print_as_postgres_prints_them() {
        const HOUR: i64 = 3_600_000_000_000;
        assert_eq!(format_interval(14, 3, 4 * HOUR + 6_500_000_000), "1 year 2 mons 3 days 04:00:06.5");
        assert_eq!(format_interval(0, -1, 2 * HOUR), "-1 days +02:00:00");
        assert_eq!(format_interval(-1, 2, -3 * HOUR), "-1 mons +2 days -03:00:00");
        assert_eq!(format_interval(-11, 0, 0), "-11 mons");
        assert_eq!(format_interval(0, 0, 0), "00:00:00");
    }
}
