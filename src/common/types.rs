//! SQL types: the Postgres types Sabot stores, their Arrow representation and wire OIDs.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, IntervalUnit, TimeUnit};
use datafusion::sql::sqlparser::ast::{self, ExactNumberInfo, TimezoneInfo};
use pgwire::api::Type;
use serde::{Deserialize, Serialize};

use super::error::{Error, Result, SqlState};

/// Field metadata key marking a Utf8 column that holds JSON (`jsonb`).
pub const PG_TYPE_METADATA: &str = "sabot.pg_type";
/// The time zone stored on `timestamptz` columns: values are UTC instants.
pub const UTC: &str = "+00:00";
/// `numeric` without precision is stored as `numeric(38, 10)` (see docs/sql/tables.md).
pub const NUMERIC_DEFAULT_PRECISION: u8 = 38;
pub const NUMERIC_DEFAULT_SCALE: i8 = 10;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SqlType {
    Boolean,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Numeric {
        precision: u8,
        scale: i8,
    },
    Text,
    /// `varchar(n)` (`character varying`): text of at most `n` characters; no limit when
    /// None. Stored as text; the length is checked when a row is written (22001).
    Varchar(Option<u32>),
    /// `char(n)` (`character`, `bpchar`): text of at most `n` characters. Stored as text
    /// without Postgres' blank padding (see docs/sql/tables.md).
    Char(u32),
    Bytea,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Interval,
    Jsonb,
    /// A struct of named fields (RisingWave's `STRUCT<name type, ...>`): columns of
    /// sources only, read through field access (`(bid).price`); not stored.
    Struct(Vec<(String, SqlType)>),
    /// An array of a scalar type (`integer[]`, `text[]`), stored as an Arrow list of
    /// one dimension (see docs/sql/types.md). `int[][]` is the same type, as in Postgres.
    Array(Box<SqlType>),
}

impl SqlType {
    /// The type named in a column definition or cast.
    pub fn from_ast(data_type: &ast::DataType) -> Result<SqlType> {
        use ast::DataType as D;
        Ok(match data_type {
            D::Bool | D::Boolean => SqlType::Boolean,
            D::SmallInt(_) | D::Int2(_) => SqlType::Int16,
            D::Int(_) | D::Integer(_) | D::Int4(_) => SqlType::Int32,
            D::BigInt(_) | D::Int8(_) => SqlType::Int64,
            D::Real | D::Float4 => SqlType::Float32,
            D::Float(ExactNumberInfo::Precision(p)) if *p <= 24 => SqlType::Float32,
            D::Float(_) | D::Double(_) | D::DoublePrecision | D::Float8 | D::Float64 => SqlType::Float64,
            D::Numeric(info) | D::Decimal(info) | D::Dec(info) => numeric_from_info(info)?,
            D::Text | D::String(_) => SqlType::Text,
            D::Varchar(length) | D::CharacterVarying(length) | D::CharVarying(length) => {
                SqlType::Varchar(character_length(length.as_ref(), "varchar")?)
            }
            D::Char(length) | D::Character(length) => {
                SqlType::Char(character_length(length.as_ref(), "char")?.unwrap_or(1))
            }
            D::Bytea => SqlType::Bytea,
            D::Date => SqlType::Date,
            D::Time(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => SqlType::Time,
            D::Timestamp(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => SqlType::Timestamp,
            D::Timestamp(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => SqlType::TimestampTz,
            D::Interval { .. } => SqlType::Interval,
            D::JSON | D::JSONB => SqlType::Jsonb,
            D::Array(
                ast::ArrayElemTypeDef::SquareBracket(element, _)
                | ast::ArrayElemTypeDef::AngleBracket(element)
                | ast::ArrayElemTypeDef::Parenthesis(element),
            ) => SqlType::array_of(SqlType::from_ast(element)?)?,
            D::Struct(fields, _) => SqlType::Struct(
                fields
                    .iter()
                    .enumerate()
                    .map(|(i, f)| {
                        let name = match &f.field_name {
                            Some(ident) if ident.quote_style.is_some() => ident.value.clone(),
                            Some(ident) => ident.value.to_lowercase(),
                            None => format!("f{}", i + 1),
                        };
                        // Struct fields carry no length: a field's Arrow type has no
                        // place for one.
                        let field_type = match SqlType::from_ast(&f.field_type)? {
                            t if t.is_text() => SqlType::Text,
                            t => t,
                        };
                        Ok((name, field_type))
                    })
                    .collect::<Result<_>>()?,
            ),
            D::Custom(name, _) => match name.to_string().to_ascii_lowercase().as_str() {
                "timestamptz" => SqlType::TimestampTz,
                "float4" => SqlType::Float32,
                "int2" => SqlType::Int16,
                "int4" => SqlType::Int32,
                "bpchar" => SqlType::Char(1),
                "serial" | "serial4" => {
                    return Err(Error::unsupported("type serial").with_hint(
                        "declare a PRIMARY KEY column or omit it: tables without a key get a hidden row id",
                    ));
                }
                other => {
                    return Err(Error::new(
                        SqlState::UndefinedObject,
                        format!("type \"{other}\" does not exist"),
                    ));
                }
            },
            other => return Err(Error::unsupported(format!("type {other}"))),
        })
    }

    pub fn to_arrow(&self) -> DataType {
        match self {
            SqlType::Boolean => DataType::Boolean,
            SqlType::Int16 => DataType::Int16,
            SqlType::Int32 => DataType::Int32,
            SqlType::Int64 => DataType::Int64,
            SqlType::Float32 => DataType::Float32,
            SqlType::Float64 => DataType::Float64,
            SqlType::Numeric { precision, scale } => DataType::Decimal128(*precision, *scale),
            SqlType::Text | SqlType::Varchar(_) | SqlType::Char(_) | SqlType::Jsonb => DataType::Utf8,
            SqlType::Bytea => DataType::Binary,
            SqlType::Date => DataType::Date32,
            SqlType::Time => DataType::Time64(TimeUnit::Microsecond),
            SqlType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            SqlType::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
            SqlType::Interval => DataType::Interval(IntervalUnit::MonthDayNano),
            SqlType::Struct(fields) => {
                DataType::Struct(fields.iter().map(|(name, t)| t.to_field(name, true)).collect())
            }
            // The element field carries no type mark: a mark would make the list type
            // differ from the lists that functions build, and results of varchar(n)[],
            // char(n)[] and jsonb[] columns are text[] (their lengths are checked on write).
            SqlType::Array(element) => {
                DataType::List(Arc::new(Field::new_list_field(element.to_arrow(), true)))
            }
        }
    }

    /// The array type of `element`: an array of arrays is the array itself (`int[][]` is
    /// `int[]`, as in Postgres); arrays of structs are not a column type.
    pub fn array_of(element: SqlType) -> Result<SqlType> {
        match element {
            SqlType::Array(_) => Ok(element),
            SqlType::Struct(_) => Err(Error::unsupported("arrays of structs")),
            scalar => Ok(SqlType::Array(Box::new(scalar))),
        }
    }

    /// The Arrow field for a column of this type.
    pub fn to_field(&self, name: &str, nullable: bool) -> Field {
        let field = Field::new(name, self.to_arrow(), nullable);
        let marked = match self {
            SqlType::Jsonb => "jsonb".to_string(),
            SqlType::Varchar(None) => "varchar".to_string(),
            SqlType::Varchar(Some(n)) => format!("varchar({n})"),
            SqlType::Char(n) => format!("bpchar({n})"),
            _ => return field,
        };
        field.with_metadata(HashMap::from([(PG_TYPE_METADATA.into(), marked)]))
    }

    /// The SQL type that represents an Arrow field in results. Arrow types Sabot does not
    /// store (unsigned integers, lists, ...) map to the nearest Postgres type; values are
    /// cast to [`SqlType::to_arrow`] before they are encoded.
    pub fn from_arrow(field: &Field) -> SqlType {
        if let Some(marked) = field.metadata().get(PG_TYPE_METADATA)
            && let Some(sql_type) = Self::from_marker(marked)
        {
            return sql_type;
        }
        Self::from_arrow_type(field.data_type())
    }

    /// The type a field's `PG_TYPE_METADATA` names (`jsonb`, `varchar(10)`, `bpchar(3)`).
    fn from_marker(marked: &str) -> Option<SqlType> {
        let length = |rest: &str| rest.strip_prefix('(')?.strip_suffix(')')?.parse::<u32>().ok();
        if marked == "jsonb" {
            Some(SqlType::Jsonb)
        } else if marked == "varchar" {
            Some(SqlType::Varchar(None))
        } else if let Some(rest) = marked.strip_prefix("varchar") {
            length(rest).map(|n| SqlType::Varchar(Some(n)))
        } else {
            marked.strip_prefix("bpchar").and_then(length).map(SqlType::Char)
        }
    }

    fn from_arrow_type(data_type: &DataType) -> SqlType {
        match data_type {
            DataType::Boolean => SqlType::Boolean,
            DataType::Int8 | DataType::Int16 | DataType::UInt8 => SqlType::Int16,
            DataType::Int32 | DataType::UInt16 => SqlType::Int32,
            DataType::Int64 | DataType::UInt32 => SqlType::Int64,
            DataType::UInt64 => SqlType::Numeric { precision: 20, scale: 0 },
            DataType::Float16 | DataType::Float32 => SqlType::Float32,
            DataType::Float64 => SqlType::Float64,
            DataType::Decimal32(p, s) | DataType::Decimal64(p, s) | DataType::Decimal128(p, s) => {
                SqlType::Numeric { precision: *p, scale: *s }
            }
            DataType::Decimal256(_, s) => SqlType::Numeric { precision: 38, scale: *s },
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => SqlType::Bytea,
            DataType::FixedSizeBinary(_) => SqlType::Bytea,
            DataType::Date32 | DataType::Date64 => SqlType::Date,
            DataType::Time32(_) | DataType::Time64(_) => SqlType::Time,
            DataType::Timestamp(_, None) => SqlType::Timestamp,
            DataType::Timestamp(_, Some(_)) => SqlType::TimestampTz,
            DataType::Interval(_) | DataType::Duration(_) => SqlType::Interval,
            DataType::Dictionary(_, value) => Self::from_arrow_type(value),
            DataType::List(element) | DataType::LargeList(element) | DataType::FixedSizeList(element, _)
                if Self::is_scalar_type(element.data_type()) =>
            {
                SqlType::Array(Box::new(Self::from_arrow(element)))
            }
            // Structs and lists of lists are sent as text, as before there were struct columns.
            _ => SqlType::Text,
        }
    }

    /// Whether values of `data_type` map to a scalar SQL type (not a struct or list,
    /// which are sent as text; not a null type, which has no element type).
    fn is_scalar_type(data_type: &DataType) -> bool {
        !is_list(data_type)
            && !matches!(
                data_type,
                DataType::Struct(_)
                    | DataType::ListView(_)
                    | DataType::LargeListView(_)
                    | DataType::Map(..)
                    | DataType::Union(..)
                    | DataType::Null
            )
    }

    pub fn pg_type(&self) -> Type {
        match self {
            SqlType::Boolean => Type::BOOL,
            SqlType::Int16 => Type::INT2,
            SqlType::Int32 => Type::INT4,
            SqlType::Int64 => Type::INT8,
            SqlType::Float32 => Type::FLOAT4,
            SqlType::Float64 => Type::FLOAT8,
            SqlType::Numeric { .. } => Type::NUMERIC,
            SqlType::Text => Type::TEXT,
            SqlType::Varchar(_) => Type::VARCHAR,
            SqlType::Char(_) => Type::BPCHAR,
            SqlType::Bytea => Type::BYTEA,
            SqlType::Date => Type::DATE,
            SqlType::Time => Type::TIME,
            SqlType::Timestamp => Type::TIMESTAMP,
            SqlType::TimestampTz => Type::TIMESTAMPTZ,
            SqlType::Interval => Type::INTERVAL,
            SqlType::Jsonb => Type::JSONB,
            SqlType::Struct(_) => Type::RECORD,
            SqlType::Array(element) => match element.pg_type() {
                Type::BOOL => Type::BOOL_ARRAY,
                Type::INT2 => Type::INT2_ARRAY,
                Type::INT4 => Type::INT4_ARRAY,
                Type::INT8 => Type::INT8_ARRAY,
                Type::FLOAT4 => Type::FLOAT4_ARRAY,
                Type::FLOAT8 => Type::FLOAT8_ARRAY,
                Type::NUMERIC => Type::NUMERIC_ARRAY,
                Type::VARCHAR => Type::VARCHAR_ARRAY,
                Type::BPCHAR => Type::BPCHAR_ARRAY,
                Type::BYTEA => Type::BYTEA_ARRAY,
                Type::DATE => Type::DATE_ARRAY,
                Type::TIME => Type::TIME_ARRAY,
                Type::TIMESTAMP => Type::TIMESTAMP_ARRAY,
                Type::TIMESTAMPTZ => Type::TIMESTAMPTZ_ARRAY,
                Type::INTERVAL => Type::INTERVAL_ARRAY,
                Type::JSONB => Type::JSONB_ARRAY,
                _ => Type::TEXT_ARRAY,
            },
        }
    }

    /// The SQL type a client names by OID (parameter types in Parse messages).
    pub fn from_pg_type(pg_type: &Type) -> Option<SqlType> {
        Some(match *pg_type {
            Type::BOOL => SqlType::Boolean,
            Type::INT2 => SqlType::Int16,
            Type::INT4 => SqlType::Int32,
            Type::INT8 | Type::OID => SqlType::Int64,
            Type::FLOAT4 => SqlType::Float32,
            Type::FLOAT8 => SqlType::Float64,
            Type::NUMERIC => {
                SqlType::Numeric { precision: NUMERIC_DEFAULT_PRECISION, scale: NUMERIC_DEFAULT_SCALE }
            }
            Type::TEXT | Type::NAME => SqlType::Text,
            Type::VARCHAR => SqlType::Varchar(None),
            Type::BPCHAR => SqlType::Char(1),
            Type::BYTEA => SqlType::Bytea,
            Type::DATE => SqlType::Date,
            Type::TIME => SqlType::Time,
            Type::TIMESTAMP => SqlType::Timestamp,
            Type::TIMESTAMPTZ => SqlType::TimestampTz,
            Type::INTERVAL => SqlType::Interval,
            Type::JSON | Type::JSONB => SqlType::Jsonb,
            ref array => match array.kind() {
                postgres_types::Kind::Array(element) => {
                    SqlType::array_of(Self::from_pg_type(element)?).ok()?
                }
                _ => return None,
            },
        })
    }

    /// The name Postgres prints for this type (information_schema, error messages).
    pub fn name(&self) -> String {
        match self {
            SqlType::Boolean => "boolean".into(),
            SqlType::Int16 => "smallint".into(),
            SqlType::Int32 => "integer".into(),
            SqlType::Int64 => "bigint".into(),
            SqlType::Float32 => "real".into(),
            SqlType::Float64 => "double precision".into(),
            SqlType::Numeric { precision, scale } => format!("numeric({precision},{scale})"),
            SqlType::Text => "text".into(),
            SqlType::Varchar(None) => "character varying".into(),
            SqlType::Varchar(Some(n)) => format!("character varying({n})"),
            SqlType::Char(n) => format!("character({n})"),
            SqlType::Bytea => "bytea".into(),
            SqlType::Date => "date".into(),
            SqlType::Time => "time without time zone".into(),
            SqlType::Timestamp => "timestamp without time zone".into(),
            SqlType::TimestampTz => "timestamp with time zone".into(),
            SqlType::Interval => "interval".into(),
            SqlType::Jsonb => "jsonb".into(),
            SqlType::Struct(fields) => {
                let fields: Vec<String> = fields.iter().map(|(n, t)| format!("{n} {}", t.name())).collect();
                format!("struct<{}>", fields.join(", "))
            }
            SqlType::Array(element) => format!("{}[]", element.name()),
        }
    }

    /// The type's name without modifiers, as `information_schema.columns.data_type` shows it.
    pub fn base_name(&self) -> &'static str {
        match self {
            SqlType::Boolean => "boolean",
            SqlType::Int16 => "smallint",
            SqlType::Int32 => "integer",
            SqlType::Int64 => "bigint",
            SqlType::Float32 => "real",
            SqlType::Float64 => "double precision",
            SqlType::Numeric { .. } => "numeric",
            SqlType::Text => "text",
            SqlType::Varchar(_) => "character varying",
            SqlType::Char(_) => "character",
            SqlType::Bytea => "bytea",
            SqlType::Date => "date",
            SqlType::Time => "time without time zone",
            SqlType::Timestamp => "timestamp without time zone",
            SqlType::TimestampTz => "timestamp with time zone",
            SqlType::Interval => "interval",
            SqlType::Jsonb => "jsonb",
            SqlType::Struct(_) => "record",
            SqlType::Array(_) => "ARRAY",
        }
    }

    /// Text of any length limit (`text`, `varchar(n)`, `char(n)`).
    pub fn is_text(&self) -> bool {
        matches!(self, SqlType::Text | SqlType::Varchar(_) | SqlType::Char(_))
    }

    /// The most characters a value may have (`varchar(n)`, `char(n)`).
    pub fn max_characters(&self) -> Option<u32> {
        match self {
            SqlType::Varchar(n) => *n,
            SqlType::Char(n) => Some(*n),
            _ => None,
        }
    }

    /// Whether a value of `self` may be stored into a column of type `target` without an
    /// explicit cast (Postgres' assignment casts). Text literals are coerced by parsing.
    pub fn assignable_to(&self, target: &SqlType) -> bool {
        use SqlType::*;
        let numeric = |t: &SqlType| matches!(t, Int16 | Int32 | Int64 | Float32 | Float64 | Numeric { .. });
        match (self, target) {
            (a, b) if a == b => true,
            (a, b) if a.is_text() || b.is_text() => true,
            (a, b) if numeric(a) && numeric(b) => true,
            (Jsonb, _) | (_, Jsonb) => false,
            (Date | Timestamp | TimestampTz, Date | Timestamp | TimestampTz) => true,
            (Time, Time) | (Interval, Interval) | (Bytea, Bytea) | (Boolean, Boolean) => true,
            // A text[] value is no text literal: its elements are not coerced.
            (Array(a), Array(b)) if a.is_text() => b.is_text(),
            (Array(a), Array(b)) => a.assignable_to(b),
            _ => false,
        }
    }
}

/// The `n` of `varchar(n)` / `char(n)`: at least 1, at most Postgres' 10485760.
fn character_length(length: Option<&ast::CharacterLength>, type_name: &str) -> Result<Option<u32>> {
    const LENGTH_MAX: u64 = 10_485_760;
    match length {
        None => Ok(None),
        Some(ast::CharacterLength::Max) => Err(Error::new(
            SqlState::SyntaxError,
            format!("{type_name}(max) is not a Postgres type; use text"),
        )),
        Some(ast::CharacterLength::IntegerLength { length, .. }) => match *length {
            0 => Err(Error::new(
                SqlState::InvalidParameterValue,
                format!("length for type {type_name} must be at least 1"),
            )),
            n if n > LENGTH_MAX => Err(Error::new(
                SqlState::InvalidParameterValue,
                format!("length for type {type_name} cannot exceed {LENGTH_MAX}"),
            )),
            n => Ok(Some(n as u32)),
        },
    }
}

fn numeric_from_info(info: &ExactNumberInfo) -> Result<SqlType> {
    let (precision, scale) = match info {
        ExactNumberInfo::None => (NUMERIC_DEFAULT_PRECISION, NUMERIC_DEFAULT_SCALE),
        ExactNumberInfo::Precision(p) => (checked_precision(*p)?, 0),
        ExactNumberInfo::PrecisionAndScale(p, s) => {
            let precision = checked_precision(*p)?;
            if *s < 0 || *s > i64::from(precision) {
                return Err(Error::new(
                    SqlState::InvalidParameterValue,
                    format!("numeric scale {s} must be between 0 and precision {precision}"),
                ));
            }
            (precision, *s as i8)
        }
    };
    Ok(SqlType::Numeric { precision, scale })
}

fn checked_precision(p: u64) -> Result<u8> {
    if (1..=38).contains(&p) {
        Ok(p as u8)
    } else {
        Err(Error::new(
            SqlState::InvalidParameterValue,
            format!("numeric precision {p} must be between 1 and 38"),
        ))
    }
}

/// Whether values of `data_type` are lists (what Sabot's arrays are).
pub fn is_list(data_type: &DataType) -> bool {
    matches!(data_type, DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..))
}

/// An Arrow schema built from named SQL types.
pub fn arrow_schema(columns: &[(String, SqlType, bool)]) -> Arc<datafusion::arrow::datatypes::Schema> {
    let fields: Vec<Field> =
        columns.iter().map(|(name, ty, nullable)| ty.to_field(name, *nullable)).collect();
    Arc::new(datafusion::arrow::datatypes::Schema::new(fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips_through_arrow() {
        let all = [
            SqlType::Boolean,
            SqlType::Int16,
            SqlType::Int32,
            SqlType::Int64,
            SqlType::Float32,
            SqlType::Float64,
            SqlType::Numeric { precision: 10, scale: 2 },
            SqlType::Text,
            SqlType::Varchar(None),
            SqlType::Varchar(Some(12)),
            SqlType::Char(3),
            SqlType::Bytea,
            SqlType::Date,
            SqlType::Time,
            SqlType::Timestamp,
            SqlType::TimestampTz,
            SqlType::Interval,
            SqlType::Jsonb,
            SqlType::Array(Box::new(SqlType::Int32)),
            SqlType::Array(Box::new(SqlType::Numeric { precision: 12, scale: 3 })),
            SqlType::Array(Box::new(SqlType::TimestampTz)),
        ];
        for ty in all {
            assert_eq!(SqlType::from_arrow(&ty.to_field("c", true)), ty);
            assert_eq!(SqlType::from_pg_type(&ty.pg_type()).map(|t| t.pg_type()), Some(ty.pg_type()));
        }
        // Arrays of marked text types are text arrays in results.
        let varchars = SqlType::Array(Box::new(SqlType::Varchar(Some(5))));
        assert_eq!(
            SqlType::from_arrow(&varchars.to_field("c", true)),
            SqlType::Array(Box::new(SqlType::Text))
        );
    }

    #[test]
    fn assignment_rules_follow_postgres() {
        assert!(SqlType::Int64.assignable_to(&SqlType::Int16));
        assert!(SqlType::Text.assignable_to(&SqlType::Date));
        assert!(!SqlType::Boolean.assignable_to(&SqlType::Int32));
        assert!(!SqlType::Int32.assignable_to(&SqlType::Boolean));
    }
}
