//! Parsing: sqlparser's PostgreSQL dialect plus Sabot's own statements (DESIGN §1).
//!
//! Extensions are recognised by their leading keyword before sqlparser sees the statement,
//! so they never need a fork of the parser: `FLUSH` today, `CREATE SOURCE`, `SUBSCRIBE`, ...
//! later.

use datafusion::sql::sqlparser::ast;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use super::source_ddl::{self, CreateSource};
use crate::common::{Error, Result, SqlState};

/// Nesting limit of sqlparser's recursive descent (parentheses, subqueries, prefix
/// operators); deeper input is rejected with 54001 rather than exhausting the stack.
/// Operator chains are bounded separately (`sql::depth`).
const RECURSION_LIMIT: usize = 200;

#[derive(Clone, Debug, PartialEq)]
pub enum Statement {
    /// A statement sqlparser understands.
    Sql(Box<ast::Statement>),
    /// `FLUSH`: wait until every earlier write is committed and visible everywhere.
    Flush,
    /// `COPY ... FROM STDIN;` followed in the same text by its data and a `\.` line, as in
    /// psql scripts and test files.
    CopyInline { copy: Box<ast::Statement>, data: String },
    /// `CREATE SOURCE`, or `CREATE TABLE` with a connector or `APPEND ONLY`.
    CreateSource(Box<CreateSource>),
    /// `DROP SOURCE [IF EXISTS] names [CASCADE | RESTRICT]`.
    DropSource { names: Vec<ast::ObjectName>, if_exists: bool, cascade: bool },
    /// `SHOW SOURCES`.
    ShowSources,
    /// `CREATE SINK name FROM relation | AS query WITH (...)`.
    CreateSink(Box<super::source_ddl::CreateSink>),
    /// `DROP SINK [IF EXISTS] names [CASCADE | RESTRICT]`.
    DropSink { names: Vec<ast::ObjectName>, if_exists: bool, cascade: bool },
    /// `SHOW SINKS`.
    ShowSinks,
    /// `ALTER VIEW | MATERIALIZED VIEW | SOURCE | SINK [IF EXISTS] name RENAME TO new`
    /// (`kind` in lower case, as `TableDesc::kind_name` says it).
    RenameRelation { kind: &'static str, name: ast::ObjectName, new_name: ast::ObjectName, if_exists: bool },
    /// A statement whose query ends with `EMIT ON WINDOW CLOSE`: CREATE MATERIALIZED VIEW,
    /// EXPLAIN of one, or a bare query (a view's stored query, re-planned at start-up).
    EmitOnWindowClose(Box<ast::Statement>),
}

/// Memory the parser needs per byte of statement text, at worst (a token per byte, each
/// a `TokenWithSpan` of about 90 bytes plus its string); measured with
/// `select 1+1+...` (see the test below).
pub const PARSE_BYTES_PER_TEXT_BYTE: usize = 128;

/// Parses SQL that Sabot wrote itself (a rewrite, a statement built from a table's name):
/// exactly one plain statement, or an internal error.
pub fn parse_generated(sql: &str) -> Result<ast::Statement> {
    match parse(sql)?.pop() {
        Some(Statement::Sql(statement)) => Ok(*statement),
        _ => Err(crate::common::Error::internal(format!("generated SQL is not one statement: {sql}"))),
    }
}

/// Parses one or more `;`-separated statements.
pub fn parse(sql: &str) -> Result<Vec<Statement>> {
    parse_within(sql, usize::MAX)
}

/// Parses `sql` if parsing it fits in `memory_bytes` (COPY data inlined after its
/// statement is not parsed, and does not count); 54000 otherwise.
pub fn parse_within(sql: &str, memory_bytes: usize) -> Result<Vec<Statement>> {
    if let Some((head, data, rest)) = split_inline_copy(sql) {
        check_text_size(head, memory_bytes)?;
        let mut statements = parse_statements(head)?;
        match statements.pop() {
            Some(Statement::Sql(copy)) if matches!(copy.as_ref(), ast::Statement::Copy { .. }) => {
                statements.push(Statement::CopyInline { copy, data: data.to_string() });
            }
            _ => {
                return Err(Error::new(
                    SqlState::SyntaxError,
                    "COPY data without a COPY ... FROM STDIN statement",
                ));
            }
        }
        statements.extend(parse_within(rest, memory_bytes)?);
        return Ok(statements);
    }
    check_text_size(sql, memory_bytes)?;
    parse_statements(sql)
}

fn check_text_size(sql: &str, memory_bytes: usize) -> Result<()> {
    if sql.len().saturating_mul(PARSE_BYTES_PER_TEXT_BYTE) <= memory_bytes {
        return Ok(());
    }
    Err(Error::new(
        SqlState::ProgramLimitExceeded,
        format!("statement text of {} bytes is too long to parse within statement_memory_bytes_max", sql.len()),
    )
    .with_detail(format!(
        "parsing may take {PARSE_BYTES_PER_TEXT_BYTE} bytes of memory per byte of text; the limit is {memory_bytes} bytes"
    ))
    .with_hint("split the statement, load bulk data with COPY, or raise statement_memory_bytes_max"))
}

/// Splits `COPY ... FROM STDIN;\n<data>\n\\.\n<rest>` into its three parts.
fn split_inline_copy(sql: &str) -> Option<(&str, &str, &str)> {
    let start = sql.len() - sql.trim_start().len();
    if !sql[start..].get(..4).is_some_and(|w| w.eq_ignore_ascii_case("copy")) {
        return None;
    }
    let semicolon = sql.find(';')?;
    let newline = semicolon + 1 + sql[semicolon + 1..].find('\n')?;
    if !sql[semicolon + 1..newline].trim().is_empty() {
        return None;
    }
    let data_start = newline + 1;
    let mut offset = data_start;
    for line in sql[data_start..].split_inclusive('\n') {
        if line.trim_end_matches(['\n', '\r']) == "\\." {
            return Some((&sql[..=semicolon], &sql[data_start..offset], &sql[offset + line.len()..]));
        }
        offset += line.len();
    }
    None
}

fn parse_statements(sql: &str) -> Result<Vec<Statement>> {
    let dialect = PostgreSqlDialect {};
    let mut tokens =
        Tokenizer::new(&dialect, sql).tokenize_with_location().map_err(|e| syntax_error(sql, e.into()))?;
    super::frame_exclusion::mark_exclusions(&mut tokens)?;
    super::temporal_join::rewrite_versioned(&mut tokens)?;
    super::asof_join::rewrite_asof(&mut tokens)?;
    super::window::rewrite_flink_windows(&mut tokens);
    let window_closes = super::window::blank_emit_on_window_close(&mut tokens);
    let semicolons: Vec<usize> =
        (0..tokens.len()).filter(|&i| tokens[i].token == Token::SemiColon).chain([tokens.len()]).collect();
    super::depth::check_tokens(&tokens)?;
    let mut parser =
        Parser::new(&dialect).with_recursion_limit(RECURSION_LIMIT).with_tokens_with_locations(tokens);
    let mut statements = Vec::new();
    loop {
        while parser.consume_token(&Token::SemiColon) {}
        if parser.peek_token_ref().token == Token::EOF {
            break;
        }
        let start = parser.index();
        let statement = if peek_keyword(&parser, "FLUSH") {
            parser.next_token();
            Statement::Flush
        } else if let Some(statement) =
            parse_source_statement(&mut parser).map_err(|e| syntax_error(sql, e))?
        {
            statement
        } else if let Some(statement) = parse_rename(&mut parser).map_err(|e| syntax_error(sql, e))? {
            statement
        } else if peek_keywords(&parser, &["CREATE", "USER"]) || peek_keywords(&parser, &["ALTER", "USER"]) {
            let mut statement = parse_user_statement(&mut parser).map_err(|e| syntax_error(sql, e))?;
            super::depth::balance_and_check(&mut statement)?;
            Statement::Sql(Box::new(statement))
        } else {
            let mut statement = parser.parse_statement().map_err(|e| syntax_error(sql, e))?;
            super::depth::balance_and_check(&mut statement)?;
            super::fields::rewrite_field_access(&mut statement);
            super::window::name_window_calls(&mut statement);
            Statement::Sql(Box::new(statement))
        };
        let statement = rewrite_frame_exclusions(statement)?;
        let end = semicolons.iter().copied().find(|&i| i >= parser.index()).unwrap_or(usize::MAX);
        let statement = match window_closes.iter().any(|&i| i >= start && i < end) {
            true => emit_on_window_close(statement)?,
            false => statement,
        };
        statements.push(statement);
        match &parser.peek_token_ref().token {
            Token::SemiColon | Token::EOF => {}
            _ => {
                let found = parser.peek_token();
                let error = ParserError::ParserError(format!(
                    "Expected: end of statement, found: {} at {}",
                    found.token, found.span.start
                ));
                return Err(syntax_error(sql, error));
            }
        }
    }
    Ok(statements)
}

/// `statement` with its frame exclusions rewritten (`sql::frame_exclusion`).
fn rewrite_frame_exclusions(mut statement: Statement) -> Result<Statement> {
    match &mut statement {
        Statement::Sql(sql) => super::frame_exclusion::rewrite_exclusions(sql.as_mut())?,
        Statement::CreateSink(sink) => {
            if let source_ddl::SinkInput::Query(query) = &mut sink.input {
                super::frame_exclusion::rewrite_exclusions(query.as_mut())?;
            }
        }
        _ => {}
    }
    Ok(statement)
}

/// `statement` ended with `EMIT ON WINDOW CLOSE`: marks it, where a view's query can.
fn emit_on_window_close(statement: Statement) -> Result<Statement> {
    use ast::Statement as S;
    let marked = match statement {
        Statement::Sql(sql) => match sql.as_ref() {
            S::CreateView(view) if view.materialized => Some(Statement::EmitOnWindowClose(sql)),
            S::Explain { statement: inner, .. } if matches!(inner.as_ref(), S::CreateView(view) if view.materialized) => {
                Some(Statement::EmitOnWindowClose(sql))
            }
            S::Query(_) => Some(Statement::EmitOnWindowClose(sql)),
            _ => None,
        },
        Statement::CreateSink(mut sink) if matches!(sink.input, source_ddl::SinkInput::Query(_)) => {
            sink.emit_on_window_close = true;
            Some(Statement::CreateSink(sink))
        }
        _ => None,
    };
    marked.ok_or_else(|| {
        Error::new(
            SqlState::SyntaxError,
            "EMIT ON WINDOW CLOSE can only end the query of a materialized view or a sink",
        )
    })
}

/// `ALTER VIEW | MATERIALIZED VIEW | SOURCE | SINK [IF EXISTS] name RENAME TO new`, which
/// sqlparser does not parse (it knows ALTER VIEW ... AS only), or `None`.
fn parse_rename(parser: &mut Parser) -> std::result::Result<Option<Statement>, ParserError> {
    use datafusion::sql::sqlparser::keywords::Keyword;
    if !peek_keyword(parser, "ALTER") {
        return Ok(None);
    }
    parser.maybe_parse(|p| {
        p.expect_keyword(Keyword::ALTER)?;
        let kind = if p.parse_keywords(&[Keyword::MATERIALIZED, Keyword::VIEW]) {
            "materialized view"
        } else if p.parse_keyword(Keyword::VIEW) {
            "view"
        } else if p.parse_keyword(Keyword::SOURCE) {
            "source"
        } else if peek_keyword(p, "SINK") {
            p.next_token();
            "sink"
        } else {
            return p.expected("VIEW, MATERIALIZED VIEW, SOURCE or SINK", p.peek_token());
        };
        let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let name = p.parse_object_name(false)?;
        p.expect_keywords(&[Keyword::RENAME, Keyword::TO])?;
        let new_name = p.parse_object_name(false)?;
        Ok(Statement::RenameRelation { kind, name, new_name, if_exists })
    })
}

/// Sabot's connector statements (`sql::source_ddl`), or `None` for anything else.
fn parse_source_statement(parser: &mut Parser) -> std::result::Result<Option<Statement>, ParserError> {
    if peek_keywords(parser, &["CREATE", "SOURCE"]) {
        parser.next_token();
        parser.next_token();
        let create = source_ddl::parse_create_source(parser, false)?;
        return Ok(Some(Statement::CreateSource(Box::new(create))));
    }
    if peek_keywords(parser, &["CREATE", "TABLE"]) {
        let table = parser.maybe_parse(|p| {
            p.next_token();
            p.next_token();
            source_ddl::parse_create_source(p, true)
        })?;
        return Ok(table.map(|t| Statement::CreateSource(Box::new(t))));
    }
    if peek_keywords(parser, &["DROP", "SOURCE"]) {
        parser.next_token();
        parser.next_token();
        let (names, if_exists, cascade) = source_ddl::parse_drop(parser)?;
        return Ok(Some(Statement::DropSource { names, if_exists, cascade }));
    }
    if peek_keywords(parser, &["CREATE", "SINK"]) {
        parser.next_token();
        parser.next_token();
        return Ok(Some(Statement::CreateSink(Box::new(source_ddl::parse_create_sink(parser)?))));
    }
    if peek_keywords(parser, &["DROP", "SINK"]) {
        parser.next_token();
        parser.next_token();
        let (names, if_exists, cascade) = source_ddl::parse_drop(parser)?;
        return Ok(Some(Statement::DropSink { names, if_exists, cascade }));
    }
    if peek_keywords(parser, &["SHOW", "SINKS"]) {
        parser.next_token();
        parser.next_token();
        return Ok(Some(Statement::ShowSinks));
    }
    if peek_keywords(parser, &["SHOW", "SOURCES"]) {
        parser.next_token();
        parser.next_token();
        return Ok(Some(Statement::ShowSources));
    }
    Ok(None)
}

fn peek_keywords(parser: &Parser, keywords: &[&str]) -> bool {
    keywords.iter().enumerate().all(|(i, keyword)| {
        matches!(&parser.peek_nth_token_ref(i).token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(keyword))
    })
}

/// Postgres' `CREATE USER` is `CREATE ROLE` that can log in by default, and `ALTER USER`
/// is `ALTER ROLE` (sqlparser reads both as Snowflake's statements).
fn parse_user_statement(parser: &mut Parser) -> Result<ast::Statement, ParserError> {
    let create = peek_keywords(parser, &["CREATE"]);
    parser.next_token();
    parser.next_token();
    if create {
        let mut role = parser.parse_create_role()?;
        role.login = role.login.or(Some(true));
        Ok(ast::Statement::CreateRole(role))
    } else {
        parser.parse_alter_role()
    }
}

fn peek_keyword(parser: &Parser, keyword: &str) -> bool {
    matches!(&parser.peek_token_ref().token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(keyword))
}

/// Turns a sqlparser error into 42601 with a Postgres-style message and cursor position.
fn syntax_error(sql: &str, error: ParserError) -> Error {
    let text = match error {
        ParserError::RecursionLimitExceeded => {
            return Error::new(
                SqlState::StatementTooComplex,
                "statement is too complex: it nests too deeply",
            )
            .with_detail(format!("parentheses and subqueries may nest at most {RECURSION_LIMIT} levels"));
        }
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => m,
    };
    let (message, location) = match text.rfind(" at Line: ") {
        Some(at) => (&text[..at], Some(&text[at + " at Line: ".len()..])),
        None => (text.as_str(), None),
    };
    let at_end = message.ends_with(", found: EOF");
    let position = location
        .and_then(|loc| {
            let (line, column) = loc.split_once(", Column: ")?;
            char_offset(sql, line.trim().parse().ok()?, column.trim().parse().ok()?)
        })
        .or_else(|| at_end.then(|| sql.trim_end().chars().count() + 1));
    let message = describe(message);
    let error = Error::new(SqlState::SyntaxError, message);
    match position {
        Some(p) => error.with_position(p),
        None => error,
    }
}

/// "Expected: X, found: Y" becomes Postgres' `syntax error at or near "Y"` with the detail.
fn describe(message: &str) -> String {
    match message.split_once(", found: ") {
        Some((expected, found)) if found.trim() == "EOF" => {
            format!("syntax error at end of input ({})", lower(expected))
        }
        Some((expected, found)) => {
            format!("syntax error at or near \"{}\" ({})", found.trim(), lower(expected))
        }
        None => format!("syntax error: {}", lower(message)),
    }
}

fn lower(text: &str) -> String {
    text.replacen("Expected: ", "expected ", 1)
}

/// 1-based character offset of a 1-based line/column.
fn char_offset(sql: &str, line: usize, column: usize) -> Option<usize> {
    let mut offset = 0;
    for (index, text) in sql.split('\n').enumerate() {
        if index + 1 == line {
            return Some(offset + column.min(text.chars().count() + 1));
        }
        offset += text.chars().count() + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_mixes_with_ordinary_statements() {
        let statements = parse("INSERT INTO t VALUES (1); FLUSH; select 1;").unwrap();
        assert_eq!(statements.len(), 3);
        assert_eq!(statements[1], Statement::Flush);
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let error = parse("SELECT 1 FROM\nt WHERE )").unwrap_err();
        assert_eq!(error.sqlstate().code(), "42601");
        assert_eq!(error.position(), Some(23));
        assert!(error.to_string().starts_with("syntax error at or near \")\""), "{error}");
        let error = parse("SELEC 1").unwrap_err();
        assert_eq!(error.position(), Some(1));
        let error = parse("SELECT * FROM t WHERE").unwrap_err();
        assert_eq!(error.position(), Some(22));
    }

    #[test]
    fn copy_data_can_follow_its_statement() {
        let statements = parse("COPY t FROM STDIN;\n1\ta\n2\t\\N\n\\.\nSELECT 1").unwrap();
        assert_eq!(statements.len(), 2);
        let Statement::CopyInline { data, .. } = &statements[0] else { panic!("{statements:?}") };
        assert_eq!(data, "1\ta\n2\t\\N\n");
    }

    #[test]
    fn parsing_memory_per_text_byte_is_bounded() {
        // The worst case: one token per byte of text.
        let token_bytes = std::mem::size_of::<datafusion::sql::sqlparser::tokenizer::TokenWithSpan>();
        assert!(token_bytes + 32 <= PARSE_BYTES_PER_TEXT_BYTE, "a token takes {token_bytes} bytes");
        let error = parse_within("select 1", 8 * PARSE_BYTES_PER_TEXT_BYTE - 1).unwrap_err();
        assert_eq!(error.sqlstate().code(), "54000");
        parse_within("select 1", 8 * PARSE_BYTES_PER_TEXT_BYTE).unwrap();
        // Inline COPY data does not count.
        parse_within("COPY t FROM STDIN;\n1\t2\n3\t4\n5\t6\n7\t8\n\\.\n", 19 * PARSE_BYTES_PER_TEXT_BYTE)
            .unwrap();
    }

    #[test]
    fn garbage_after_a_statement_is_an_error() {
        assert_eq!(parse("FLUSH now").unwrap_err().sqlstate().code(), "42601");
    }
}
