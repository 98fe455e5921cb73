//! DDL for connectors, in RisingWave's syntax, parsed beside sqlparser (which does not
//! know it):
//!
//! ```sql
//! CREATE SOURCE [IF NOT EXISTS] name (column type, ...)
//!   WITH (connector = 'nexmark', nexmark.table.type = 'Bid', ...)
//!   [FORMAT PLAIN ENCODE CSV (delimiter = ',')];
//! CREATE TABLE name (...) [APPEND ONLY] WITH (connector = ...) [FORMAT ... ENCODE ...];
//! DROP SOURCE [IF EXISTS] name [, ...] [CASCADE | RESTRICT];
//! SHOW SOURCES;
//! ```
//!
//! Option keys are dotted words (`nexmark.table.type`), folded to lower case; values are
//! string literals, numbers or words; a trailing comma is allowed.

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::ast::{
    ColumnDef, DataType, Expr, Ident, ObjectName, StructBracketKind, StructField, TableConstraint,
};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;

use super::ddl::normalize_ident;
use super::ddl::{bind_columns, key_columns, resolve_name};
use crate::catalog::{Catalog, ColumnDesc, ConnectorDef, FormatDef, TableDesc, WatermarkDef};
use crate::common::{Error, Result, SqlState, SqlType};

/// `CREATE SOURCE`, or `CREATE TABLE` with a connector (or `APPEND ONLY`).
#[derive(Clone, Debug, PartialEq)]
pub struct CreateSource {
    /// `CREATE TABLE`: the rows are stored (and accept DML).
    pub table: bool,
    pub name: ObjectName,
    pub if_not_exists: bool,
    pub columns: Vec<ColumnDef>,
    pub constraints: Vec<TableConstraint>,
    /// `WATERMARK FOR column AS expression` clauses.
    pub watermarks: Vec<(Ident, Expr)>,
    /// `APPEND ONLY`: rows are only ever inserted.
    pub append_only: bool,
    /// `WITH (...)`, keys lower-cased, in the order written.
    pub options: Vec<(String, String)>,
    pub format: Option<FormatClause>,
}

/// `FORMAT format ENCODE encode (options)`.
#[derive(Clone, Debug, PartialEq)]
pub struct FormatClause {
    pub format: String,
    pub encode: String,
    pub options: Vec<(String, String)>,
}

/// Parses what follows `CREATE SOURCE` (`table` false) or `CREATE TABLE` (`table` true).
/// For a table, fails unless it has `APPEND ONLY`, `WITH` or `FORMAT` (then it is an
/// ordinary `CREATE TABLE` for sqlparser).
pub fn parse_create_source(parser: &mut Parser, table: bool) -> Result<CreateSource, ParserError> {
    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = parser.parse_object_name(false)?;
    let (columns, constraints, watermarks) = parse_columns(parser)?;
    let append_only = is_word(parser, "APPEND") && {
        parser.next_token();
        parser.expect_keyword_is(Keyword::ONLY)?;
        true
    };
    let options = if parser.parse_keyword(Keyword::WITH) { parse_options(parser)? } else { Vec::new() };
    let format = parse_format(parser)?;
    if table && !append_only && options.is_empty() && format.is_none() && watermarks.is_empty() {
        return parser.expected("WITH (connector = ...) or APPEND ONLY", parser.peek_token());
    }
    Ok(CreateSource {
        table,
        name,
        if_not_exists,
        columns,
        constraints,
        watermarks,
        append_only,
        options,
        format,
    })
}

type Columns = (Vec<ColumnDef>, Vec<TableConstraint>, Vec<(Ident, Expr)>);

/// `(column type, ..., [PRIMARY KEY (...)], [WATERMARK FOR column AS expression])`.
fn parse_columns(parser: &mut Parser) -> Result<Columns, ParserError> {
    let (mut columns, mut constraints, mut watermarks) = (Vec::new(), Vec::new(), Vec::new());
    if !parser.consume_token(&Token::LParen) || parser.consume_token(&Token::RParen) {
        return Ok((columns, constraints, watermarks));
    }
    loop {
        if is_word(parser, "WATERMARK") {
            parser.next_token();
            parser.expect_keyword_is(Keyword::FOR)?;
            let column = parser.parse_identifier()?;
            parser.expect_keyword_is(Keyword::AS)?;
            watermarks.push((column, parser.parse_expr()?));
        } else if let Some(constraint) = parser.parse_optional_table_constraint()? {
            constraints.push(constraint);
        } else if is_struct_column(parser) {
            let name = parser.parse_identifier()?;
            columns.push(ColumnDef { name, data_type: parse_struct_type(parser)?, options: Vec::new() });
        } else {
            columns.push(parser.parse_column_def()?);
        }
        let comma = parser.consume_token(&Token::Comma);
        if parser.consume_token(&Token::RParen) {
            return Ok((columns, constraints, watermarks));
        }
        if !comma {
            return parser.expected("',' or ')' after a column definition", parser.peek_token());
        }
    }
}

/// Whether the next tokens are `name STRUCT <` (RisingWave's struct columns, which
/// sqlparser reads only in other dialects).
fn is_struct_column(parser: &Parser) -> bool {
    matches!(&parser.peek_nth_token_ref(1).token, Token::Word(w) if w.keyword == Keyword::STRUCT)
        && parser.peek_nth_token_ref(2).token == Token::Lt
}

/// `STRUCT<field type, ...>`; field names may be quoted. Nested structs are not supported.
fn parse_struct_type(parser: &mut Parser) -> Result<DataType, ParserError> {
    parser.expect_keyword_is(Keyword::STRUCT)?;
    parser.expect_token(&Token::Lt)?;
    let mut fields = Vec::new();
    loop {
        let name = parser.parse_identifier()?;
        if matches!(&parser.peek_token_ref().token, Token::Word(w) if w.keyword == Keyword::STRUCT) {
            return parser
                .expected("a field type (nested STRUCT types are not supported)", parser.peek_token());
        }
        let field_type = parser.parse_data_type()?;
        fields.push(StructField { field_name: Some(name), field_type, options: None });
        if parser.consume_token(&Token::Gt) {
            return Ok(DataType::Struct(fields, StructBracketKind::AngleBrackets));
        }
        parser.expect_token(&Token::Comma)?;
    }
}

/// `(key = value, ...)`, keys lower-cased; a trailing comma is allowed.
pub fn parse_options(parser: &mut Parser) -> Result<Vec<(String, String)>, ParserError> {
    parser.expect_token(&Token::LParen)?;
    let mut options = Vec::new();
    loop {
        if parser.consume_token(&Token::RParen) {
            return Ok(options);
        }
        let key = parse_key(parser)?;
        parser.expect_token(&Token::Eq)?;
        let value = parse_option_value(parser)?;
        options.push((key, value));
        if !parser.consume_token(&Token::Comma) {
            parser.expect_token(&Token::RParen)?;
            return Ok(options);
        }
    }
}

/// A dotted option key (`nexmark.table.type`), or a quoted one.
fn parse_key(parser: &mut Parser) -> Result<String, ParserError> {
    let mut parts = Vec::new();
    loop {
        let token = parser.next_token();
        match &token.token {
            Token::Word(word) => parts.push(if word.quote_style.is_some() {
                word.value.clone()
            } else {
                word.value.to_lowercase()
            }),
            Token::SingleQuotedString(text) if parts.is_empty() => return Ok(text.to_lowercase()),
            _ => return parser.expected("an option name", token),
        }
        if !parser.consume_token(&Token::Period) {
            return Ok(parts.join("."));
        }
    }
}

/// A string, a number (optionally negative) or a word, as text.
fn parse_option_value(parser: &mut Parser) -> Result<String, ParserError> {
    let negative = parser.consume_token(&Token::Minus);
    let token = parser.next_token();
    let text = match &token.token {
        Token::SingleQuotedString(text) | Token::DoubleQuotedString(text) => text.clone(),
        Token::Number(number, _) => number.clone(),
        Token::Word(word) if !negative => word.value.clone(),
        _ => return parser.expected("an option value (a string, a number or a word)", token),
    };
    Ok(if negative { format!("-{text}") } else { text })
}

/// `FORMAT format ENCODE encode [(options)]`.
fn parse_format(parser: &mut Parser) -> Result<Option<FormatClause>, ParserError> {
    if !parser.parse_keyword(Keyword::FORMAT) {
        return Ok(None);
    }
    let format = parser.parse_identifier()?.value.to_uppercase();
    if !is_word(parser, "ENCODE") {
        return parser.expected("ENCODE", parser.peek_token());
    }
    parser.next_token();
    let encode = parser.parse_identifier()?.value.to_uppercase();
    let options =
        if parser.peek_token_ref().token == Token::LParen { parse_options(parser)? } else { Vec::new() };
    Ok(Some(FormatClause { format, encode, options }))
}

/// `CREATE SINK`.
#[derive(Clone, Debug, PartialEq)]
pub struct CreateSink {
    pub name: ObjectName,
    pub if_not_exists: bool,
    /// `FROM relation`, or `AS query`.
    pub input: SinkInput,
    pub options: Vec<(String, String)>,
    pub format: Option<FormatClause>,
    /// The query ended with `EMIT ON WINDOW CLOSE`.
    pub emit_on_window_close: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum SinkInput {
    From(ObjectName),
    Query(Box<datafusion::sql::sqlparser::ast::Query>),
}

/// Parses what follows `CREATE SINK`: `[IF NOT EXISTS] name FROM relation | AS query
/// WITH (...) [FORMAT ... ENCODE ...]`.
pub fn parse_create_sink(parser: &mut Parser) -> Result<CreateSink, ParserError> {
    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = parser.parse_object_name(false)?;
    let input = if parser.parse_keyword(Keyword::FROM) {
        SinkInput::From(parser.parse_object_name(false)?)
    } else if parser.parse_keyword(Keyword::AS) {
        SinkInput::Query(parse_query_before_with(parser)?)
    } else {
        return parser.expected("FROM or AS", parser.peek_token());
    };
    if !parser.parse_keyword(Keyword::WITH) {
        return parser.expected("WITH (connector = ...)", parser.peek_token());
    }
    let options = parse_options(parser)?;
    let format = parse_format(parser)?;
    Ok(CreateSink { name, if_not_exists, input, options, format, emit_on_window_close: false })
}

/// The query of `CREATE SINK ... AS query WITH (...)`. It is parsed from the tokens before
/// the statement's last top-level `WITH (`, since sqlparser would take `FROM t WITH (...)`
/// for table hints.
fn parse_query_before_with(
    parser: &mut Parser,
) -> Result<Box<datafusion::sql::sqlparser::ast::Query>, ParserError> {
    let mut depth = 0usize;
    let mut split = None;
    let mut i = 0;
    loop {
        match &parser.peek_nth_token_ref(i).token {
            Token::EOF => break,
            Token::SemiColon if depth == 0 => break,
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            Token::Word(w)
                if depth == 0
                    && w.keyword == Keyword::WITH
                    && parser.peek_nth_token_ref(i + 1).token == Token::LParen =>
            {
                split = Some(i)
            }
            _ => {}
        }
        i += 1;
    }
    let Some(split) = split else {
        return parser.expected("WITH (connector = ...) after the query", parser.peek_token());
    };
    let tokens: Vec<_> = (0..split).map(|_| parser.next_token()).collect();
    let dialect = datafusion::sql::sqlparser::dialect::PostgreSqlDialect {};
    let mut inner = Parser::new(&dialect).with_tokens_with_locations(tokens);
    let query = inner.parse_query()?;
    if inner.peek_token_ref().token != Token::EOF {
        return inner.expected("WITH (connector = ...) after the query", inner.peek_token());
    }
    Ok(query)
}

/// A sink's `WITH` and `FORMAT` as a [`ConnectorDef`].
/// RisingWave writes `force_append_only` in the sink's `FORMAT` options; it is moved to
/// the `WITH` options.
pub fn sink_connector(create: &CreateSink) -> Result<ConnectorDef> {
    let mut def = connector_of(&create.options, create.format.as_ref(), false, "blackhole")?;
    if let Some(format) = def.format.as_mut()
        && let Some(force) = format.options.remove("force_append_only")
        && def.options.insert("force_append_only".into(), force).is_some()
    {
        return Err(Error::new(
            SqlState::SyntaxError,
            "option \"force_append_only\" is given more than once",
        ));
    }
    Ok(def)
}

/// `DROP SOURCE`'s names and flags, after `DROP SOURCE`.
pub fn parse_drop(parser: &mut Parser) -> Result<(Vec<ObjectName>, bool, bool), ParserError> {
    let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
    let names = parser.parse_comma_separated(|p| p.parse_object_name(false))?;
    let cascade = parser.parse_keyword(Keyword::CASCADE);
    if !cascade {
        let _ = parser.parse_keyword(Keyword::RESTRICT);
    }
    Ok((names, if_exists, cascade))
}

/// The descriptor of a new source (its rows keyed by a hidden row id) or table (keyed by
/// its primary key, or a hidden row id), with its connector's options as written;
/// `connector::prepare_source` checks them.
pub fn bind_source(create: &CreateSource, catalog: &mut Catalog, default_schema: &str) -> Result<TableDesc> {
    let (schema, name) = resolve_name(&create.name, default_schema)?;
    if !catalog.schema_exists(&schema) {
        return Err(Error::new(SqlState::UndefinedSchema, format!("schema \"{schema}\" does not exist")));
    }
    let what = if create.table { "table" } else { "source" };
    if create.columns.is_empty() {
        return Err(Error::unsupported(format!("a {what} without columns"))
            .with_hint("declare the columns the connector produces"));
    }
    let super::ddl::BoundColumns { mut columns, primary_key, checks, uniques } =
        bind_columns(&create.columns, &create.constraints, &name)?;
    if !uniques.is_empty() {
        return Err(Error::unsupported("UNIQUE constraints on a source or a table with a connector")
            .with_hint("a connector's rows upsert by the primary key; declare the key as PRIMARY KEY"));
    }
    if !checks.is_empty() {
        return Err(Error::unsupported("CHECK constraints on a source or a table with a connector")
            .with_hint("filter the rows in a view over it"));
    }
    // A connector's rows are not checked like INSERTed rows, so a length would not hold.
    if let Some(column) = columns.iter().find(|c| c.sql_type.max_characters().is_some()) {
        return Err(Error::unsupported(format!(
            "type {} for column \"{}\" of a source or a table with a connector",
            column.sql_type.name(),
            column.name
        ))
        .with_hint("declare it varchar or text"));
    }
    if create.table
        && let Some(column) = columns.iter().find(|c| matches!(c.sql_type, crate::common::SqlType::Struct(_)))
    {
        return Err(Error::unsupported(format!("STRUCT column \"{}\" in a table", column.name))
            .with_hint("struct columns are for sources; a view over the source can select their fields"));
    }
    if !create.table {
        if primary_key.is_some() {
            return Err(Error::unsupported("a primary key on a source")
                .with_hint("a source's rows are only ever inserted; a table with a connector may have one"));
        }
        if let Some(column) = columns.iter().find(|c| c.default.is_some() || !c.nullable) {
            return Err(Error::unsupported(format!(
                "DEFAULT or NOT NULL on source column \"{}\"",
                column.name
            )));
        }
    }
    if create.append_only && primary_key.is_some() {
        return Err(Error::unsupported("a primary key on an APPEND ONLY table")
            .with_hint("rows of an append-only table are only ever inserted, never replaced"));
    }
    let watermark = bind_watermark(create, &columns)?;
    let primary_key = key_columns(&mut columns, primary_key);
    let connector = if create.table && create.options.is_empty() && create.format.is_none() {
        None
    } else {
        Some(connector_def(create)?)
    };
    Ok(TableDesc {
        id: catalog.allocate_table_id(),
        schema,
        name,
        columns,
        primary_key,
        view: None,
        connector,
        append_only: create.append_only || !create.table,
        watermark,
        plain_view: None,
        checks: Vec::new(),
        key_constraint: None,
        uniques: Vec::new(),
    })
}

/// The `WATERMARK FOR` clause: at most one, on a timestamp, timestamptz or integer column
/// of a source or an append-only table. The expression's type is checked by the engine,
/// which can type it (`engine::sources`).
fn bind_watermark(create: &CreateSource, columns: &[ColumnDesc]) -> Result<Option<WatermarkDef>> {
    let [(column, expression)] = create.watermarks.as_slice() else {
        if create.watermarks.len() > 1 {
            return Err(Error::unsupported("more than one WATERMARK FOR clause"));
        }
        return Ok(None);
    };
    if create.table && !create.append_only {
        return Err(Error::unsupported("WATERMARK FOR on a table that is not APPEND ONLY").with_hint(
            "rows behind a watermark cannot be updated or deleted: declare the table APPEND ONLY",
        ));
    }
    let name = normalize_ident(column);
    let index = columns.iter().position(|c| c.name == name).ok_or_else(|| {
        Error::new(
            SqlState::UndefinedColumn,
            format!("column \"{name}\" named in WATERMARK FOR does not exist"),
        )
    })?;
    let sql_type = &columns[index].sql_type;
    if !matches!(
        sql_type,
        SqlType::Timestamp | SqlType::TimestampTz | SqlType::Int16 | SqlType::Int32 | SqlType::Int64
    ) {
        return Err(Error::new(
            SqlState::DatatypeMismatch,
            format!(
                "WATERMARK FOR column \"{name}\" is {}: it must be a timestamp, timestamptz or integer",
                sql_type.name()
            ),
        ));
    }
    Ok(Some(WatermarkDef { column: index, expression: expression.to_string() }))
}

/// `WITH` and `FORMAT` as a [`ConnectorDef`]: `connector` is required, keys are unique.
fn connector_def(create: &CreateSource) -> Result<ConnectorDef> {
    connector_of(&create.options, create.format.as_ref(), create.table, "datagen")
}

/// `WITH` options and a `FORMAT` clause as a [`ConnectorDef`]; `example` is a connector
/// for the hint when `connector` is missing.
fn connector_of(
    options: &[(String, String)],
    format: Option<&FormatClause>,
    stored: bool,
    example: &str,
) -> Result<ConnectorDef> {
    let mut options = unique_options(options)?;
    let name = options.remove("connector").ok_or_else(|| {
        Error::new(SqlState::InvalidParameterValue, "option \"connector\" is required")
            .with_hint(format!("for example WITH (connector = '{example}')"))
    })?;
    let format = match format {
        Some(format) => Some(FormatDef {
            format: format.format.clone(),
            encode: format.encode.clone(),
            options: unique_options(&format.options)?,
        }),
        None => None,
    };
    Ok(ConnectorDef { name: name.to_lowercase(), options, format, stored })
}

fn unique_options(options: &[(String, String)]) -> Result<BTreeMap<String, String>> {
    let mut unique = BTreeMap::new();
    for (key, value) in options {
        if unique.insert(key.clone(), value.clone()).is_some() {
            return Err(Error::new(
                SqlState::SyntaxError,
                format!("option \"{key}\" is given more than once"),
            ));
        }
    }
    Ok(unique)
}

/// Whether the next token is the unquoted word `word` (which need not be a keyword).
pub fn is_word(parser: &Parser, word: &str) -> bool {
    matches!(&parser.peek_token_ref().token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;

    use super::*;

    fn parse(sql: &str, table: bool) -> Result<CreateSource, ParserError> {
        let dialect = PostgreSqlDialect {};
        let mut parser = Parser::new(&dialect).try_with_sql(sql)?;
        parse_create_source(&mut parser, table)
    }

    #[test]
    fn sources_with_dotted_options_and_a_format() {
        let source = parse(
            "s (a BIGINT, b VARCHAR, WATERMARK FOR b AS b) WITH (connector = 'nexmark', Nexmark.Table.Type = 'Bid',
             nexmark.split.num = 2, flag = true,) FORMAT plain ENCODE csv (without_header = 'true')",
            false,
        )
        .unwrap();
        assert_eq!(source.columns.len(), 2);
        assert_eq!(source.watermarks.len(), 1);
        assert_eq!(
            source.options,
            [
                ("connector".to_string(), "nexmark".to_string()),
                ("nexmark.table.type".into(), "Bid".into()),
                ("nexmark.split.num".into(), "2".into()),
                ("flag".into(), "true".into())
            ]
        );
        let format = source.format.unwrap();
        assert_eq!((format.format.as_str(), format.encode.as_str()), ("PLAIN", "CSV"));
        assert_eq!(format.options, [("without_header".to_string(), "true".to_string())]);
    }

    #[test]
    fn a_plain_create_table_is_left_to_sqlparser() {
        assert!(parse("t (a INT PRIMARY KEY)", true).is_err());
        let table = parse("t (a INT) APPEND ONLY", true).unwrap();
        assert!(table.append_only && table.options.is_empty());
        assert!(parse("s (a INT) WITH (connector = )", false).is_err());
    }
}
