//! Arrow values to Postgres wire values, in text and binary format. Text output is
//! `common::pg_text`'s (Postgres' own output functions), so psql and test files see what
//! Postgres would print.

use std::error::Error as StdError;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::Schema;
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo};
use pgwire::messages::data::DataRow;
use pgwire::types::ToSqlText;
use pgwire::types::format::FormatOptions;
use postgres_types::{IsNull, ToSql, to_sql_checked};

pub use crate::common::pg_text::PgValue;
use crate::common::pg_text::{canonical_columns, normalize_json};
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
            PgValue::Padded { .. } => out.put_slice(self.to_text().unwrap_or_default().as_bytes()),
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
            PgValue::Array { items, element, range } => encode_array(*items, element, range.clone(), out)?,
        }
        Ok(IsNull::No)
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Postgres' binary array (`array_send`) of one dimension: dimensions, a has-NULLs flag,
/// the element type, then each element as a length and its binary value (-1 for NULL).
/// An empty array has no dimensions.
fn encode_array(
    items: &dyn datafusion::arrow::array::Array,
    element: &SqlType,
    range: std::ops::Range<usize>,
    out: &mut BytesMut,
) -> Result<(), BoxError> {
    let element_type = element.pg_type();
    let has_nulls = range.clone().any(|i| items.is_null(i));
    out.put_i32(i32::from(!range.is_empty()));
    out.put_i32(i32::from(has_nulls));
    out.put_u32(element_type.oid());
    if range.is_empty() {
        return Ok(());
    }
    out.put_i32(i32::try_from(range.len())?);
    out.put_i32(1);
    for item in range {
        let length_at = out.len();
        out.put_i32(0);
        match PgValue::of(items, element, item).to_sql(&element_type, out)? {
            IsNull::Yes => out[length_at..length_at + 4].copy_from_slice(&(-1i32).to_be_bytes()),
            IsNull::No => {
                let length = i32::try_from(out.len() - length_at - 4)?;
                out[length_at..length_at + 4].copy_from_slice(&length.to_be_bytes());
            }
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::pg_text::{
        format_date, format_float, format_interval, format_numeric, format_time_of_day, format_timestamp,
    };

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
