//! Bind parameters: wire bytes to DataFusion scalars.
//!
//! Text-format values become strings that the engine casts to the type the statement
//! expects (so `'42'` binds to an integer column as in Postgres); binary values are decoded
//! per their declared or inferred type.

use bytes::Bytes;
use datafusion::arrow::datatypes::IntervalMonthDayNano;
use datafusion::common::ScalarValue;
use pgwire::api::Type;
use postgres_types::FromSql;

use crate::common::{Error, Result, SqlState, SqlType};

const POSTGRES_EPOCH_DAYS: i32 = 10_957;
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Decodes one parameter. `sql_type` is what the client declared or the statement implies.
pub fn decode(value: Option<&Bytes>, binary: bool, sql_type: Option<&SqlType>) -> Result<ScalarValue> {
    let Some(bytes) = value else {
        return Ok(match sql_type {
            Some(t) => ScalarValue::try_from(&t.to_arrow())?,
            None => ScalarValue::Utf8(None),
        });
    };
    if !binary {
        let text = std::str::from_utf8(bytes).map_err(|_| invalid("text parameter is not valid UTF-8"))?;
        return Ok(match sql_type {
            Some(SqlType::Bytea) => ScalarValue::Binary(Some(decode_bytea_text(text)?)),
            _ => ScalarValue::Utf8(Some(text.to_string())),
        });
    }
    let sql_type = sql_type.ok_or_else(|| {
        Error::new(SqlState::ProtocolViolation, "binary parameter of unknown type")
            .with_hint("declare the parameter type in Parse, or send it in text format")
    })?;
    decode_binary(bytes, sql_type)
}

fn decode_binary(bytes: &[u8], sql_type: &SqlType) -> Result<ScalarValue> {
    let ty = sql_type.pg_type();
    Ok(match sql_type {
        SqlType::Struct(_) => return Err(Error::unsupported("a STRUCT parameter")),
        SqlType::Boolean => ScalarValue::Boolean(Some(from_sql::<bool>(&ty, bytes)?)),
        SqlType::Int16 => ScalarValue::Int16(Some(from_sql::<i16>(&ty, bytes)?)),
        SqlType::Int32 => ScalarValue::Int32(Some(from_sql::<i32>(&ty, bytes)?)),
        SqlType::Int64 => ScalarValue::Int64(Some(from_sql::<i64>(&Type::INT8, bytes)?)),
        SqlType::Float32 => ScalarValue::Float32(Some(from_sql::<f32>(&ty, bytes)?)),
        SqlType::Float64 => ScalarValue::Float64(Some(from_sql::<f64>(&ty, bytes)?)),
        SqlType::Text | SqlType::Varchar(_) | SqlType::Char(_) => {
            ScalarValue::Utf8(Some(from_sql::<String>(&Type::TEXT, bytes)?))
        }
        SqlType::Jsonb => {
            let value = from_sql::<serde_json::Value>(&ty, bytes)?;
            ScalarValue::Utf8(Some(value.to_string()))
        }
        SqlType::Bytea => ScalarValue::Binary(Some(bytes.to_vec())),
        SqlType::Date => ScalarValue::Date32(Some(read_i32(bytes)? + POSTGRES_EPOCH_DAYS)),
        SqlType::Time => ScalarValue::Time64Microsecond(Some(read_i64(bytes, 0)?)),
        SqlType::Timestamp => {
            ScalarValue::TimestampMicrosecond(Some(read_i64(bytes, 0)? + POSTGRES_EPOCH_MICROS), None)
        }
        SqlType::TimestampTz => ScalarValue::TimestampMicrosecond(
            Some(read_i64(bytes, 0)? + POSTGRES_EPOCH_MICROS),
            Some(crate::common::types::UTC.into()),
        ),
        SqlType::Interval => {
            let micros = read_i64(bytes, 0)?;
            let days = read_i32(&bytes[8.min(bytes.len())..])?;
            let months = read_i32(&bytes[12.min(bytes.len())..])?;
            ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(months, days, micros * 1_000)))
        }
        SqlType::Numeric { .. } => ScalarValue::Utf8(Some(decode_numeric(bytes)?)),
        SqlType::Array(element) => decode_array(bytes, element)?,
    })
}

/// Postgres' binary array (`array_recv`) of one dimension, as a list of `element`.
fn decode_array(bytes: &[u8], element: &SqlType) -> Result<ScalarValue> {
    let word = |at: usize| bytes.get(at..).ok_or_else(|| invalid("short binary array")).and_then(read_i32);
    let (dimensions, element_type) = (word(0)?, word(8)?);
    let element_arrow = element.to_arrow();
    if element_type as u32 != element.pg_type().oid() {
        return Err(invalid("binary array parameter of another element type than declared"));
    }
    let mut values = Vec::new();
    match dimensions {
        0 => {}
        1 => {
            let (count, mut at) = (word(12)?, 20);
            for _ in 0..count {
                let length = word(at)?;
                at += 4;
                if length < 0 {
                    values.push(ScalarValue::try_from(&element_arrow)?);
                    continue;
                }
                let end = at + length as usize;
                let item = bytes.get(at..end).ok_or_else(|| invalid("short binary array"))?;
                let value = decode_binary(item, element)?;
                values.push(if value.data_type() == element_arrow {
                    value
                } else {
                    value.cast_to(&element_arrow)?
                });
                at = end;
            }
        }
        _ => return Err(Error::unsupported("arrays of more than one dimension")),
    }
    Ok(ScalarValue::List(ScalarValue::new_list(&values, &element_arrow, true)))
}

fn from_sql<'a, T: FromSql<'a>>(ty: &Type, bytes: &'a [u8]) -> Result<T> {
    T::from_sql(ty, bytes).map_err(|e| invalid(&format!("invalid binary parameter: {e}")))
}

fn read_i32(bytes: &[u8]) -> Result<i32> {
    let array: [u8; 4] =
        bytes.get(..4).and_then(|b| b.try_into().ok()).ok_or_else(|| invalid("short binary parameter"))?;
    Ok(i32::from_be_bytes(array))
}

fn read_i64(bytes: &[u8], at: usize) -> Result<i64> {
    let array: [u8; 8] = bytes
        .get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| invalid("short binary parameter"))?;
    Ok(i64::from_be_bytes(array))
}

/// Postgres' binary numeric to its decimal text.
fn decode_numeric(bytes: &[u8]) -> Result<String> {
    let word = |i: usize| -> Result<u16> {
        bytes.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]])).ok_or_else(|| invalid("short numeric"))
    };
    let (count, weight, sign, scale) = (word(0)? as usize, word(2)? as i16, word(4)?, word(6)? as usize);
    if sign == 0xC000 {
        return Err(invalid("NaN cannot be stored in numeric columns"));
    }
    let digits = (0..count).map(|i| word(8 + 2 * i)).collect::<Result<Vec<_>>>()?;
    let mut int_part = String::new();
    let mut frac_part = String::new();
    for (i, digit) in digits.iter().enumerate() {
        let position = weight as i32 - i as i32;
        if position >= 0 {
            int_part.push_str(&format!("{digit:04}"));
        } else {
            frac_part.push_str(&format!("{digit:04}"));
        }
    }
    // Groups between the last digit and the decimal point are zeros.
    let trailing_int_groups = (weight as i32 + 1 - count as i32).max(0);
    int_part.push_str(&"0000".repeat(trailing_int_groups as usize));
    let leading_frac_groups = (-(weight as i32) - 1).max(0);
    frac_part.insert_str(0, &"0000".repeat(leading_frac_groups as usize));
    let int_part = int_part.trim_start_matches('0');
    let int_part = if int_part.is_empty() { "0" } else { int_part };
    frac_part.truncate(scale);
    while frac_part.len() < scale {
        frac_part.push('0');
    }
    let sign = if sign == 0x4000 { "-" } else { "" };
    Ok(if scale == 0 { format!("{sign}{int_part}") } else { format!("{sign}{int_part}.{frac_part}") })
}

/// bytea input: `\x` hex, or the raw string.
fn decode_bytea_text(text: &str) -> Result<Vec<u8>> {
    let Some(hex) = text.strip_prefix("\\x") else { return Ok(text.as_bytes().to_vec()) };
    if hex.len() % 2 != 0 {
        return Err(invalid("invalid hexadecimal data: odd number of digits"));
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| invalid("invalid hexadecimal digit")))
        .collect()
}

fn invalid(message: &str) -> Error {
    Error::new(SqlState::InvalidTextRepresentation, message.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_binary_decodes() {
        // -12345.67: ndigits 3, weight 1, negative, dscale 2, digits 1 2345 6700
        let bytes = [0, 3, 0, 1, 0x40, 0, 0, 2, 0, 1, 0x09, 0x29, 0x1a, 0x2c];
        assert_eq!(decode_numeric(&bytes).unwrap(), "-12345.67");
        // 10000: ndigits 1, weight 1, digits 1
        assert_eq!(decode_numeric(&[0, 1, 0, 1, 0, 0, 0, 0, 0, 1]).unwrap(), "10000");
        // 0.0001: ndigits 1, weight -1, dscale 4, digits 1
        assert_eq!(decode_numeric(&[0, 1, 0xff, 0xff, 0, 0, 0, 4, 0, 1]).unwrap(), "0.0001");
    }

    #[test]
    fn text_parameters_stay_text_until_the_engine_casts_them() {
        let value = decode(Some(&Bytes::from_static(b"42")), false, Some(&SqlType::Int32)).unwrap();
        assert_eq!(value, ScalarValue::Utf8(Some("42".into())));
        let bytes = decode(Some(&Bytes::from_static(b"\\x0aff")), false, Some(&SqlType::Bytea)).unwrap();
        assert_eq!(bytes, ScalarValue::Binary(Some(vec![10, 255])));
    }
}
