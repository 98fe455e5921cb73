//! The error type of the SQL-facing layers and its one mapping to SQLSTATE codes.
//!
//! Lower layers have their own enums (`state::StateError`) converted upward with `#[from]`.
//! [`Error::sqlstate`] is the only place where an error becomes a Postgres SQLSTATE; the
//! pgwire frontend and (later) the HTTP API both read it from there.

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;

use crate::state::StateError;

/// Postgres error codes used by Sabot. The string is the five-character SQLSTATE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqlState {
    SyntaxError,
    UndefinedTable,
    UndefinedColumn,
    UndefinedObject,
    UndefinedSchema,
    UndefinedFunction,
    AmbiguousFunction,
    AmbiguousColumn,
    DuplicateFunction,
    InvalidFunctionDefinition,
    DuplicateTable,
    DuplicateSchema,
    DuplicateColumn,
    DatatypeMismatch,
    InvalidTextRepresentation,
    NumericValueOutOfRange,
    DatetimeFieldOverflow,
    InvalidDatetimeFormat,
    DivisionByZero,
    StringDataRightTruncation,
    UniqueViolation,
    NotNullViolation,
    DependentObjectsStillExist,
    WrongObjectType,
    FeatureNotSupported,
    InvalidParameterValue,
    InvalidArgumentForWidthBucket,
    InvalidRegularExpression,
    InvalidColumnReference,
    InvalidTableDefinition,
    InvalidObjectDefinition,
    BadCopyFileFormat,
    ProtocolViolation,
    QueryCanceled,
    ConnectionFailure,
    DataException,
    NullValueNotAllowed,
    ProgramLimitExceeded,
    StatementTooComplex,
    OutOfMemory,
    TooManyConnections,
    InvalidAuthorization,
    InvalidPassword,
    InvalidCatalogName,
    UndefinedParameter,
    InsufficientPrivilege,
    DuplicateObject,
    ObjectInUse,
    InvalidTransactionState,
    CardinalityViolation,
    CheckViolation,
    ActiveSqlTransaction,
    InFailedSqlTransaction,
    SerializationFailure,
    IoError,
    Internal,
}

impl SqlState {
    pub fn code(self) -> &'static str {
        match self {
            SqlState::SyntaxError => "42601",
            SqlState::UndefinedTable => "42P01",
            SqlState::UndefinedColumn => "42703",
            SqlState::UndefinedObject => "42704",
            SqlState::UndefinedSchema => "3F000",
            SqlState::UndefinedFunction => "42883",
            SqlState::AmbiguousFunction => "42725",
            SqlState::AmbiguousColumn => "42702",
            SqlState::DuplicateFunction => "42723",
            SqlState::InvalidFunctionDefinition => "42P13",
            SqlState::DuplicateTable => "42P07",
            SqlState::DuplicateSchema => "42P06",
            SqlState::DuplicateColumn => "42701",
            SqlState::DatatypeMismatch => "42804",
            SqlState::InvalidTextRepresentation => "22P02",
            SqlState::NumericValueOutOfRange => "22003",
            SqlState::DatetimeFieldOverflow => "22008",
            SqlState::InvalidDatetimeFormat => "22007",
            SqlState::DivisionByZero => "22012",
            SqlState::StringDataRightTruncation => "22001",
            SqlState::UniqueViolation => "23505",
            SqlState::NotNullViolation => "23502",
            SqlState::DependentObjectsStillExist => "2BP01",
            SqlState::WrongObjectType => "42809",
            SqlState::FeatureNotSupported => "0A000",
            SqlState::InvalidParameterValue => "22023",
            SqlState::InvalidArgumentForWidthBucket => "2201G",
            SqlState::InvalidRegularExpression => "2201B",
            SqlState::InvalidColumnReference => "42P10",
            SqlState::InvalidTableDefinition => "42P16",
            SqlState::InvalidObjectDefinition => "42P17",
            SqlState::BadCopyFileFormat => "22P04",
            SqlState::ProtocolViolation => "08P01",
            SqlState::QueryCanceled => "57014",
            SqlState::ConnectionFailure => "08006",
            SqlState::DataException => "22000",
            SqlState::NullValueNotAllowed => "22004",
            SqlState::ProgramLimitExceeded => "54000",
            SqlState::StatementTooComplex => "54001",
            SqlState::OutOfMemory => "53200",
            SqlState::TooManyConnections => "53300",
            SqlState::InvalidAuthorization => "28000",
            SqlState::InvalidPassword => "28P01",
            SqlState::InvalidCatalogName => "3D000",
            SqlState::UndefinedParameter => "42P02",
            SqlState::InsufficientPrivilege => "42501",
            SqlState::DuplicateObject => "42710",
            SqlState::ObjectInUse => "55006",
            SqlState::InvalidTransactionState => "25000",
            SqlState::CardinalityViolation => "21000",
            SqlState::CheckViolation => "23514",
            SqlState::ActiveSqlTransaction => "25001",
            SqlState::InFailedSqlTransaction => "25P02",
            SqlState::SerializationFailure => "40001",
            SqlState::IoError => "58030",
            SqlState::Internal => "XX000",
        }
    }
}

/// Our error inside DataFusion (a table provider or table function failing): it comes back
/// out of DataFusion whole, SQLSTATE included (see [`Error::sqlstate`]).
impl From<Error> for DataFusionError {
    fn from(error: Error) -> Self {
        DataFusionError::External(Box::new(error))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error raised by Sabot itself, with its SQLSTATE and Postgres-style parts.
    #[error("{message}")]
    Sql {
        state: SqlState,
        message: String,
        detail: Option<String>,
        hint: Option<String>,
        /// 1-based character offset into the statement text (syntax errors).
        position: Option<usize>,
    },
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{}", clean_datafusion_message(.0))]
    DataFusion(#[from] DataFusionError),
    #[error("{}", clean_arrow_message(.0))]
    Arrow(#[from] ArrowError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(state: SqlState, message: impl Into<String>) -> Self {
        Error::Sql { state, message: message.into(), detail: None, hint: None, position: None }
    }

    pub fn unsupported(what: impl std::fmt::Display) -> Self {
        Error::new(SqlState::FeatureNotSupported, format!("{what} is not supported"))
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Error::new(SqlState::Internal, message)
    }

    pub fn with_detail(mut self, text: impl Into<String>) -> Self {
        if let Error::Sql { detail, .. } = &mut self {
            *detail = Some(text.into());
        }
        self
    }

    pub fn with_hint(mut self, text: impl Into<String>) -> Self {
        if let Error::Sql { hint, .. } = &mut self {
            *hint = Some(text.into());
        }
        self
    }

    pub fn with_position(mut self, offset: usize) -> Self {
        if let Error::Sql { position, .. } = &mut self {
            *position = Some(offset);
        }
        self
    }

    pub fn detail(&self) -> Option<&str> {
        match self {
            Error::Sql { detail, .. } => detail.as_deref(),
            _ => None,
        }
    }

    pub fn hint(&self) -> Option<&str> {
        match self {
            Error::Sql { hint, .. } => hint.as_deref(),
            _ => None,
        }
    }

    pub fn position(&self) -> Option<usize> {
        match self {
            Error::Sql { position, .. } => *position,
            _ => None,
        }
    }

    /// The SQLSTATE of this error: the one place where errors are classified.
    pub fn sqlstate(&self) -> SqlState {
        match self {
            Error::Sql { state, .. } => *state,
            Error::State(_) => SqlState::IoError,
            Error::DataFusion(e) => datafusion_state(e),
            Error::Arrow(e) => arrow_state(e),
        }
    }
}

fn datafusion_state(error: &DataFusionError) -> SqlState {
    use datafusion::common::SchemaError;
    match error.find_root() {
        DataFusionError::ArrowError(e, _) => arrow_state(e),
        DataFusionError::SchemaError(e, _) => match e.as_ref() {
            SchemaError::FieldNotFound { .. } => SqlState::UndefinedColumn,
            SchemaError::DuplicateQualifiedField { .. } | SchemaError::DuplicateUnqualifiedField { .. } => {
                SqlState::DuplicateColumn
            }
            SchemaError::AmbiguousReference { .. } => SqlState::InvalidColumnReference,
        },
        DataFusionError::NotImplemented(_) => SqlState::FeatureNotSupported,
        DataFusionError::SQL(_, _) => SqlState::SyntaxError,
        DataFusionError::Plan(message) => plan_state(message),
        DataFusionError::Execution(message) => execution_state(message),
        DataFusionError::ResourcesExhausted(_) => SqlState::OutOfMemory,
        DataFusionError::External(e) => match e.downcast_ref::<Error>() {
            Some(inner) => inner.sqlstate(),
            None => SqlState::Internal,
        },
        _ => SqlState::Internal,
    }
}

/// DataFusion reports planning problems as free text; these are the shapes it uses.
fn plan_state(message: &str) -> SqlState {
    let lower = message.to_ascii_lowercase();
    if lower.contains("table") && lower.contains("not found") {
        SqlState::UndefinedTable
    } else if lower.contains("invalid function") || lower.contains("no function matches") {
        SqlState::UndefinedFunction
    } else if lower.contains("cannot coerce")
        || lower.contains("cannot infer common")
        || lower.contains("does not support")
        || lower.contains("cannot be cast")
        || lower.contains("failed to coerce")
        || lower.contains("type mismatch")
        || lower.contains("must be boolean")
        || lower.contains("not supported for")
        || lower.contains("no coercion")
        || lower.contains("coercion from")
    {
        SqlState::DatatypeMismatch
    } else if lower.contains("not supported")
        || lower.contains("unsupported")
        || lower.contains("does not support logical expression")
    {
        SqlState::FeatureNotSupported
    } else if lower.contains("ambiguous") {
        SqlState::InvalidColumnReference
    } else if lower.contains("schema") && lower.contains("not found") {
        SqlState::UndefinedSchema
    } else {
        SqlState::SyntaxError
    }
}

fn execution_state(message: &str) -> SqlState {
    let lower = message.to_ascii_lowercase();
    if is_numeric_cast_overflow(&lower) {
        SqlState::NumericValueOutOfRange
    } else if lower.contains("divide by zero") || lower.contains("division by zero") {
        SqlState::DivisionByZero
    } else if lower.contains("overflow") || lower.contains("out of range") {
        SqlState::NumericValueOutOfRange
    } else if lower.contains("cannot cast") || lower.contains("invalid") || lower.contains("parse") {
        SqlState::InvalidTextRepresentation
    } else {
        SqlState::Internal
    }
}

/// "can't cast value 40000 to type Int16": a number that does not fit its target type.
fn is_numeric_cast_overflow(lower: &str) -> bool {
    lower
        .strip_prefix("can't cast value ")
        .and_then(|rest| rest.split_whitespace().next())
        .is_some_and(|value| value.parse::<f64>().is_ok())
}

fn arrow_state(error: &ArrowError) -> SqlState {
    match error {
        ArrowError::DivideByZero => SqlState::DivisionByZero,
        ArrowError::ArithmeticOverflow(_) => SqlState::NumericValueOutOfRange,
        ArrowError::CastError(message) | ArrowError::ParseError(message)
            if message.contains("overflow")
                || message.contains("out of range")
                || message.contains("too large")
                || is_numeric_cast_overflow(&message.to_ascii_lowercase()) =>
        {
            SqlState::NumericValueOutOfRange
        }
        ArrowError::CastError(_) | ArrowError::ParseError(_) => SqlState::InvalidTextRepresentation,
        ArrowError::InvalidArgumentError(message)
            if message.contains("overflow") || message.contains("too large") =>
        {
            SqlState::NumericValueOutOfRange
        }
        ArrowError::ComputeError(message) if message.contains("verflow") => SqlState::NumericValueOutOfRange,
        ArrowError::ExternalError(e) => match e.downcast_ref::<Error>() {
            Some(inner) => inner.sqlstate(),
            None => SqlState::Internal,
        },
        _ => SqlState::DataException,
    }
}

/// DataFusion wraps messages in context ("Error during planning: ..."); Postgres users
/// expect the bare message, so keep only the innermost one and drop backtraces.
fn clean_datafusion_message(error: &DataFusionError) -> String {
    match error.find_root() {
        DataFusionError::ArrowError(e, _) => clean_arrow_message(e),
        DataFusionError::External(e) => e.to_string(),
        root => {
            let text = root.strip_backtrace();
            let message = strip_prefixes(&text);
            missing_relation(message).unwrap_or_else(|| lower_first(message))
        }
    }
}

/// DataFusion's "table 'sabot.public.t' not found", as Postgres says it: `relation "t"
/// does not exist` (schema-qualified outside `public`).
fn missing_relation(message: &str) -> Option<String> {
    let name = message.strip_prefix("table '")?.strip_suffix("' not found")?;
    let mut parts = name.splitn(3, '.');
    let (_catalog, schema, relation) = (parts.next()?, parts.next()?, parts.next()?);
    // "public" is `catalog::DEFAULT_SCHEMA` (common sits below catalog).
    let shown = if schema == "public" { relation.to_string() } else { format!("{schema}.{relation}") };
    Some(format!("relation \"{shown}\" does not exist"))
}

fn clean_arrow_message(error: &ArrowError) -> String {
    match error {
        ArrowError::CastError(m)
        | ArrowError::ParseError(m)
        | ArrowError::ComputeError(m)
        | ArrowError::InvalidArgumentError(m) => lower_first(m),
        ArrowError::DivideByZero => "division by zero".into(),
        ArrowError::ExternalError(e) => e.to_string(),
        other => lower_first(&other.to_string()),
    }
}

fn strip_prefixes(text: &str) -> &str {
    const PREFIXES: [&str; 7] = [
        "Error during planning: ",
        "Execution error: ",
        "Schema error: ",
        "This feature is not implemented: ",
        "SQL error: ",
        "Arrow error: ",
        "Optimizer rule",
    ];
    let mut rest = text;
    loop {
        let before = rest;
        for prefix in PREFIXES.iter().take(6) {
            if let Some(stripped) = rest.strip_prefix(prefix) {
                rest = stripped;
            }
        }
        if before == rest {
            return rest.trim();
        }
    }
}

fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) if chars.clone().next().is_some_and(|c| c.is_lowercase()) => {
            first.to_lowercase().chain(chars).collect()
        }
        _ => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datafusion_errors_map_to_sqlstates() {
        let plan = DataFusionError::Plan("table 'sabot.public.nope' not found".into());
        let missing = Error::from(plan);
        assert_eq!(missing.sqlstate().code(), "42P01");
        assert_eq!(missing.to_string(), "relation \"nope\" does not exist");
        let cast = DataFusionError::ArrowError(
            Box::new(ArrowError::CastError("Cannot cast string 'x' to value of Int32 type".into())),
            None,
        );
        let error = Error::from(cast);
        assert_eq!(error.sqlstate().code(), "22P02");
        assert_eq!(error.to_string(), "cannot cast string 'x' to value of Int32 type");
        assert_eq!(Error::from(ArrowError::DivideByZero).sqlstate().code(), "22012");
    }
}
