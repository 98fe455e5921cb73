//! Arrow values to Postgres wire values, in text and binary format.
//!
//! Text output follows Postgres' own output functions (`t`/`f`, shortest floats with
//! `Infinity`/`NaN`, `\x` bytea, ISO timestamps, `1 day 02:00:00` intervals, normalized
//! jsonb), so psql and test files see what Postgres would print.

use std::error::Error as StdError;
use std::fmt::Write;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
    IntervalMonthDayNanoType, Schema, Time64MicrosecondType, TimestampMicrosecondType,
};
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo};
use pgwire::messages::data::DataRow;
use pgwire::types::ToSqlText;
use pgwire::types::format::FormatOptions;
use postgres_types::{IsNull, ToSql, to_sql_checked};

use crate::common::{Error, Result, SqlType};
use crate::sql::copy::{CopyOptions, write_row};

type BoxError = Box<dyn StdError + Sync + Send>;

/// Row descriptions for a result schema.
pub fn field_infos(schema: &Schema, format: Option<&Format>) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let format = format.map_or(FieldFormat::Text, |f| f.format_for(i));
            FieldInfo::new(field.name().clone(), None, None, SqlType::from_arrow(field).pg_type(), format)
        })
        .collect()
}

/// Encodes every row of `batches` as DataRows.
pub fn encode_rows(batches: &[RecordBatch], fields: &Arc<Vec<FieldInfo>>) -> Result<Vec<DataRow>> {
    let mut rows = Vec::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
    let mut encoder = DataRowEncoder::new(fields.clone());
    for batch in batches {
        let columns = canonical_columns(batch)?;
        for row in 0..batch.num_rows() {
            for (sql_type, array) in &columns {
                let value = PgValue::of(array.as_ref(), sql_type, row);
                encoder.encode_field(&value).map_err(|e| Error::internal(e.to_string()))?;
            }
            rows.push(encoder.take_row());
        }
    }
    Ok(rows)
}

/// Each row of `batch` as a line of `COPY TO` output (values in their Postgres text form).
pub fn copy_lines(batch: &RecordBatch, forced: &[bool], options: &CopyOptions) -> Result<Vec<Bytes>> {
    let columns = canonical_columns(batch)?;
    let mut lines = Vec::with_capacity(batch.num_rows());
    let mut texts: Vec<Option<String>> = Vec::with_capacity(columns.len());
    let mut line = String::new();
    for row in 0..batch.num_rows() {
        texts.clear();
        texts.extend(
            columns.iter().map(|(sql_type, array)| PgValue::of(array.as_ref(), sql_type, row).to_text()),
        );
        line.clear();
        write_row(texts.iter().map(Option::as_deref), forced, options, &mut line);
        lines.push(Bytes::copy_from_slice(line.as_bytes()));
    }
    Ok(lines)
}

/// The columns of `batch` with their SQL types, cast to the Arrow types `PgValue` reads.
fn canonical_columns(batch: &RecordBatch) -> Result<Vec<(SqlType, ArrayRef)>> {
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
fn canonical(array: &ArrayRef, sql_type: &SqlType) -> Result<ArrayRef> {
    if let SqlType::Struct(_) = sql_type {
        return Err(
            Error::unsupported("sending a STRUCT value").with_hint("select its fields: (column).field")
        );
    }
    let target = sql_type.to_arrow();
    if array.data_type() == &target {
        return Ok(array.clone());
    }
    Ok(cast(array, &target)?)
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
    Numeric { value: i128, scale: i8, trim: bool },
    Text(&'a str),
    Json(&'a str),
    Bytes(&'a [u8]),
    Date(i32),
    Time(i64),
    Timestamp(i64),
    TimestampTz(i64),
    Interval { months: i32, days: i32, nanos: i64 },
}

impl<'a> PgValue<'a> {
    fn of(array: &'a dyn Array, sql_type: &SqlType, row: usize) -> PgValue<'a> {
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
            SqlType::Text | SqlType::Varchar(_) | SqlType::Char(_) => {
                PgValue::Text(array.as_string::<i32>().value(row))
            }
            SqlType::Jsonb => PgValue::Json(array.as_string::<i32>().value(row)),
            // `canonical` refuses struct columns before any value is encoded.
            SqlType::Struct(_) => PgValue::Null,
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
        }
        Some(out)
    }
}

impl ToSqlText for PgValue<'_> {
    fn to_sql_text(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
        _options: &FormatOptions,
    ) -> Result<IsNull, BoxError> {
        match self.to_text() {
            None => Ok(IsNull::Yes),
            Some(text) => {
                out.put_slice(text.as_bytes());
                Ok(IsNull::No)
            }
        }
    }
}

const POSTGRES_EPOCH_DAYS: i32 = 10_957;
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

impl ToSql for PgValue<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self {
            PgValue::Null => return Ok(IsNull::Yes),
            PgValue::Bool(v) => out.put_u8(u8::from(*v)),
            PgValue::Int16(v) => out.put_i16(*v),
            PgValue::Int32(v) => out.put_i32(*v),
            PgValue::Int64(v) => out.put_i64(*v),
            PgValue::Float32(v) => out.put_f32(*v),
            PgValue::Float64(v) => out.put_f64(*v),
            PgValue::Numeric { value, scale, .. } => encode_numeric(*value, *scale, out),
            PgValue::Text(v) => out.put_slice(v.as_bytes()),
            PgValue::Json(v) => {
                if *ty == Type::JSONB {
                    out.put_u8(1);
                }
                out.put_slice(normalize_json(v).as_bytes());
            }
            PgValue::Bytes(v) => out.put_slice(v),
            PgValue::Date(days) => out.put_i32(days - POSTGRES_EPOCH_DAYS),
            PgValue::Time(micros) => out.put_i64(*micros),
            PgValue::Timestamp(micros) | PgValue::TimestampTz(micros) => {
                out.put_i64(micros - POSTGRES_EPOCH_MICROS)
            }
            PgValue::Interval { months, days, nanos } => {
                out.put_i64(nanos / 1_000);
                out.put_i32(*days);
                out.put_i32(*months);
            }
        }
        Ok(IsNull::No)
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Postgres' float output (extra_float_digits = 1): the shortest exact digits, in
/// exponent form when the decimal exponent is below -4 or at least `digits`.
fn format_float(value: f64, digits: i32, scientific: &str) -> String {
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

fn format_numeric(value: i128, scale: i8, trim: bool) -> String {
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

/// Postgres' binary numeric: base-10000 digits with weight, sign and display scale.
fn encode_numeric(value: i128, scale: i8, out: &mut BytesMut) {
    let scale = scale.max(0) as usize;
    let digits = value.unsigned_abs().to_string();
    let (int_part, frac_part) = if digits.len() > scale {
        (digits[..digits.len() - scale].to_string(), digits[digits.len() - scale..].to_string())
    } else {
        ("0".to_string(), format!("{}{}", "0".repeat(scale - digits.len()), digits))
    };
    let int_pad = (4 - int_part.len() % 4) % 4;
    let int_part = format!("{}{}", "0".repeat(int_pad), int_part);
    let frac_pad = (4 - frac_part.len() % 4) % 4;
    let frac_part = format!("{}{}", frac_part, "0".repeat(frac_pad));
    let group = |s: &str| -> Vec<i16> {
        s.as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).ok().and_then(|t| t.parse().ok()).unwrap_or(0))
            .collect()
    };
    let int_groups = group(&int_part);
    let frac_groups = group(&frac_part);
    let mut weight = int_groups.len() as i16 - 1;
    let mut groups: Vec<i16> = int_groups.into_iter().chain(frac_groups).collect();
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    out.put_i16(groups.len() as i16);
    out.put_i16(weight);
    out.put_u16(if value < 0 { 0x4000 } else { 0 });
    out.put_u16(scale as u16);
    for g in groups {
        out.put_i16(g);
    }
}

fn format_date(days: i32) -> String {
    match NaiveDate::from_num_days_from_ce_opt(days + 719_163) {
        Some(date) => date.format("%Y-%m-%d").to_string(),
        None => days.to_string(),
    }
}

fn format_fraction(micros: u32) -> String {
    if micros == 0 { String::new() } else { format!(".{micros:06}").trim_end_matches('0').to_string() }
}

fn format_time_of_day(micros: i64) -> String {
    let seconds = micros.div_euclid(1_000_000);
    let fraction = micros.rem_euclid(1_000_000) as u32;
    match NaiveTime::from_num_seconds_from_midnight_opt(seconds as u32, 0) {
        Some(time) => format!("{}{}", time.format("%H:%M:%S"), format_fraction(fraction)),
        None => "24:00:00".into(),
    }
}

fn format_timestamp(micros: i64) -> String {
    match DateTime::from_timestamp_micros(micros).map(|d| d.naive_utc()) {
        Some(timestamp) => {
            let time: NaiveDateTime = timestamp;
            let fraction = micros.rem_euclid(1_000_000) as u32;
            format!("{}{}", time.format("%Y-%m-%d %H:%M:%S"), format_fraction(fraction))
        }
        None => micros.to_string(),
    }
}

fn format_interval(months: i32, days: i32, nanos: i64) -> String {
    let unit = |n: i64, word: &str| if n == 1 { format!("{n} {word}") } else { format!("{n} {word}s") };
    let mut parts = Vec::new();
    let (years, months) = (months / 12, months % 12);
    if years != 0 {
        parts.push(unit(years.into(), "year"));
    }
    if months != 0 {
        parts.push(unit(months.into(), "mon"));
    }
    if days != 0 {
        parts.push(unit(days.into(), "day"));
    }
    let micros = nanos / 1_000;
    if micros != 0 || parts.is_empty() {
        let sign = if micros < 0 { "-" } else { "" };
        let abs = micros.unsigned_abs();
        let (hours, rest) = (abs / 3_600_000_000, abs % 3_600_000_000);
        let (minutes, rest) = (rest / 60_000_000, rest % 60_000_000);
        let (seconds, fraction) = (rest / 1_000_000, (rest % 1_000_000) as u32);
        parts.push(format!("{sign}{hours:02}:{minutes:02}:{seconds:02}{}", format_fraction(fraction)));
    }
    parts.join(" ")
}

/// jsonb output: keys sorted (shorter first), `", "` and `": "` separators.
fn normalize_json(text: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value) => {
            let mut out = String::with_capacity(text.len());
            write_json(&value, &mut out);
            out
        }
        Err(_) => text.to_string(),
    }
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
    use super::*;

    #[test]
    fn floats_print_like_postgres() {
        let f = |v: f64| format_float(v, 15, &format!("{v:e}"));
        assert_eq!(f(1.5), "1.5");
        assert_eq!(f(100.0), "100");
        assert_eq!(f(1e15), "1e+15");
        assert_eq!(f(123456789012345.0), "123456789012345");
        assert_eq!(f(0.0001), "0.0001");
        assert_eq!(f(0.00001), "1e-05");
        assert_eq!(f(-2.5e-7), "-2.5e-07");
        assert_eq!(f(f64::INFINITY), "Infinity");
        assert_eq!(f(0.1 + 0.2), "0.30000000000000004");
        let g = |v: f32| format_float(v as f64, 6, &format!("{v:e}"));
        assert_eq!(g(1e6), "1e+06");
        assert_eq!(g(0.1), "0.1");
    }

    #[test]
    fn other_types_print_like_postgres() {
        assert_eq!(format_numeric(-12345, 2, false), "-123.45");
        assert_eq!(format_numeric(5, 3, false), "0.005");
        assert_eq!(format_numeric(15_000_000_000, 10, true), "1.5");
        assert_eq!(format_date(0), "1970-01-01");
        assert_eq!(format_timestamp(1_500_000), "1970-01-01 00:00:01.5");
        assert_eq!(format_time_of_day(3_600_000_000), "01:00:00");
        assert_eq!(format_interval(14, 3, 7_200_000_000_000), "1 year 2 mons 3 days 02:00:00");
        assert_eq!(format_interval(0, 0, 0), "00:00:00");
        assert_eq!(format_interval(0, 1, 0), "1 day");
        assert_eq!(normalize_json(r#"{"bb":1,"a":[1,2]}"#), r#"{"a": [1, 2], "bb": 1}"#);
    }

    #[test]
    fn numeric_binary_matches_postgres_layout() {
        let mut out = BytesMut::new();
        encode_numeric(-1234567, 2, &mut out); // -12345.67 = 1 2345 . 6700
        assert_eq!(&out[..], &[0, 3, 0, 1, 0x40, 0, 0, 2, 0, 1, 0x09, 0x29, 0x1a, 0x2c]);
    }
}
