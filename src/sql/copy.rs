//! `COPY ... FROM STDIN` and `COPY ... TO STDOUT`: options and the text and CSV formats,
//! as Postgres defines them.
//!
//! Parsing yields one string column per target column (NULLs where the data says so); the
//! engine then casts each column to its SQL type in one vectorized step, so bad values are
//! reported with the same 22P02 errors as in `INSERT`. Writing takes each value's Postgres
//! text form and escapes or quotes it as Postgres' `COPY TO` does.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringBuilder};
use datafusion::sql::sqlparser::ast::{CopyLegacyCsvOption, CopyLegacyOption, CopyOption};

use crate::common::{Error, Result, SqlState};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyFormat {
    Text,
    Csv,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyOptions {
    pub format: CopyFormat,
    pub delimiter: char,
    pub null: String,
    pub header: bool,
    pub quote: char,
    pub escape: char,
    /// `FORCE_QUOTE (columns)`: CSV output quotes every non-NULL value of these columns.
    /// (`FORCE_QUOTE *` does not parse: sqlparser wants a column list.)
    pub force_quote: Vec<String>,
}

impl CopyOptions {
    pub fn from_ast(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> Result<Self> {
        let mut format = CopyFormat::Text;
        let (mut delimiter, mut null, mut header, mut quote, mut escape) = (None, None, false, '"', None);
        let mut force_quote = Vec::new();
        for option in options {
            match option {
                CopyOption::Format(name) => {
                    format = match name.value.to_ascii_lowercase().as_str() {
                        "text" => CopyFormat::Text,
                        "csv" => CopyFormat::Csv,
                        other => return Err(Error::unsupported(format!("COPY format \"{other}\""))),
                    }
                }
                CopyOption::Delimiter(c) => delimiter = Some(*c),
                CopyOption::Null(s) => null = Some(s.clone()),
                CopyOption::Header(h) => header = *h,
                CopyOption::Quote(c) => quote = *c,
                CopyOption::Escape(c) => escape = Some(*c),
                CopyOption::Encoding(e)
                    if e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("utf-8") => {}
                CopyOption::Freeze(_) => {}
                CopyOption::ForceQuote(columns) => force_quote.extend(columns.iter().cloned()),
                other => return Err(Error::unsupported(format!("COPY option {other}"))),
            }
        }
        for option in legacy {
            match option {
                CopyLegacyOption::Delimiter(c) => delimiter = Some(*c),
                CopyLegacyOption::Null(s) => null = Some(s.clone()),
                CopyLegacyOption::Header => header = true,
                CopyLegacyOption::Csv(csv_options) => {
                    format = CopyFormat::Csv;
                    for csv_option in csv_options {
                        match csv_option {
                            CopyLegacyCsvOption::Header => header = true,
                            CopyLegacyCsvOption::Quote(c) => quote = *c,
                            CopyLegacyCsvOption::Escape(c) => escape = Some(*c),
                            CopyLegacyCsvOption::ForceQuote(columns) => {
                                force_quote.extend(columns.iter().cloned())
                            }
                            other => return Err(Error::unsupported(format!("COPY option {other}"))),
                        }
                    }
                }
                other => return Err(Error::unsupported(format!("COPY option {other}"))),
            }
        }
        let csv = format == CopyFormat::Csv;
        if !force_quote.is_empty() && !csv {
            return Err(Error::new(SqlState::FeatureNotSupported, "COPY FORCE_QUOTE requires CSV mode"));
        }
        Ok(CopyOptions {
            format,
            delimiter: delimiter.unwrap_or(if csv { ',' } else { '\t' }),
            null: null.unwrap_or_else(|| if csv { String::new() } else { "\\N".into() }),
            header,
            quote,
            escape: escape.unwrap_or(quote),
            force_quote: force_quote.iter().map(crate::sql::ddl::normalize_ident).collect(),
        })
    }

    /// Whether CSV output quotes every non-NULL value of `column`.
    pub fn forces_quote(&self, column: &str) -> bool {
        self.format == CopyFormat::Csv && self.force_quote.iter().any(|c| c == column)
    }
}

/// Appends one row of `COPY TO` output, ended by a newline. `values` are the Postgres
/// text forms (None for NULL); `forced[i]` quotes value `i` in CSV even when it need not be.
pub fn write_row<'a>(
    values: impl ExactSizeIterator<Item = Option<&'a str>>,
    forced: &[bool],
    options: &CopyOptions,
    out: &mut String,
) {
    let single = values.len() == 1;
    for (i, value) in values.enumerate() {
        if i > 0 {
            out.push(options.delimiter);
        }
        match (value, options.format) {
            (None, _) => out.push_str(&options.null),
            (Some(value), CopyFormat::Text) => write_text_field(value, options.delimiter, out),
            (Some(value), CopyFormat::Csv) => {
                write_csv_field(value, forced.get(i).copied().unwrap_or(false), single, options, out)
            }
        }
    }
    out.push('\n');
}

/// The text format's backslash escapes (Postgres' `CopyAttributeOutText`).
fn write_text_field(value: &str, delimiter: char, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if c == delimiter => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
}

/// CSV quoting (Postgres' `CopyAttributeOutCSV`): a value is quoted when forced, when it
/// equals the NULL string (so it reads back as a value), when it holds the delimiter, the
/// quote or a line break, or when it is `\.` alone on its line.
fn write_csv_field(value: &str, forced: bool, single: bool, options: &CopyOptions, out: &mut String) {
    let (delimiter, quote, escape) = (options.delimiter, options.quote, options.escape);
    let needs_quote = forced
        || value == options.null
        || (single && value == "\\.")
        || value.chars().any(|c| c == delimiter || c == quote || c == '\n' || c == '\r');
    if !needs_quote {
        out.push_str(value);
        return;
    }
    out.push(quote);
    for c in value.chars() {
        if c == quote || c == escape {
            out.push(escape);
        }
        out.push(c);
    }
    out.push(quote);
}

/// Parses COPY data into one string column per target column.
pub fn parse_copy_data(data: &[u8], options: &CopyOptions, column_names: &[String]) -> Result<Vec<ArrayRef>> {
    let text = std::str::from_utf8(data).map_err(|e| {
        Error::new(SqlState::BadCopyFileFormat, format!("invalid byte sequence for encoding \"UTF8\": {e}"))
    })?;
    let mut builders: Vec<StringBuilder> = column_names.iter().map(|_| StringBuilder::new()).collect();
    let mut records = match options.format {
        CopyFormat::Text => split_text(text, options)?,
        CopyFormat::Csv => split_csv(text, options)?,
    };
    if options.header && !records.is_empty() {
        records.remove(0);
    }
    for (index, fields) in records.iter().enumerate() {
        let line = index + 1 + usize::from(options.header);
        if fields.len() < column_names.len() {
            return Err(Error::new(
                SqlState::BadCopyFileFormat,
                format!("missing data for column \"{}\"", column_names[fields.len()]),
            )
            .with_detail(format!("COPY line {line}")));
        }
        if fields.len() > column_names.len() {
            return Err(Error::new(SqlState::BadCopyFileFormat, "extra data after last expected column")
                .with_detail(format!("COPY line {line}")));
        }
        for (builder, field) in builders.iter_mut().zip(fields) {
            builder.append_option(field.as_deref());
        }
    }
    Ok(builders.into_iter().map(|mut b| Arc::new(b.finish()) as ArrayRef).collect())
}

type Record = Vec<Option<String>>;

fn split_text(text: &str, options: &CopyOptions) -> Result<Vec<Record>> {
    let mut records = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line == "\\." {
            break;
        }
        records.push(line);
    }
    // The newline that ends the last row leaves one empty piece behind.
    if records.last() == Some(&"") {
        records.pop();
    }
    records
        .into_iter()
        .map(|line| {
            line.split(options.delimiter)
                .map(|raw| if raw == options.null { Ok(None) } else { unescape_text(raw).map(Some) })
                .collect()
        })
        .collect()
}

/// Undoes the backslash escapes of the text format.
fn unescape_text(raw: &str) -> Result<String> {
    if !raw.contains('\\') {
        return Ok(raw.to_string());
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('v') => out.push('\u{b}'),
            Some(d @ '0'..='7') => {
                let mut value = d.to_digit(8).expect("octal digit");
                for _ in 0..2 {
                    match chars.peek().and_then(|c| c.to_digit(8)) {
                        Some(v) => {
                            value = value * 8 + v;
                            chars.next();
                        }
                        None => break,
                    }
                }
                out.push(char::from_u32(value).unwrap_or('\u{fffd}'));
            }
            Some('x') => {
                let mut value = 0;
                let mut digits = 0;
                while digits < 2 {
                    match chars.peek().and_then(|c| c.to_digit(16)) {
                        Some(v) => {
                            value = value * 16 + v;
                            chars.next();
                            digits += 1;
                        }
                        None => break,
                    }
                }
                if digits == 0 {
                    out.push('x');
                } else {
                    out.push(char::from_u32(value).unwrap_or('\u{fffd}'));
                }
            }
            Some(other) => out.push(other),
            None => {
                return Err(Error::new(SqlState::BadCopyFileFormat, "unterminated backslash escape"));
            }
        }
    }
    Ok(out)
}

/// CSV as Postgres reads it: an unquoted field equal to the NULL string is NULL, a quoted
/// one never is; quotes are escaped by `escape` (by default a doubled quote).
fn split_csv(text: &str, options: &CopyOptions) -> Result<Vec<Record>> {
    let (delimiter, quote, escape) = (options.delimiter, options.quote, options.escape);
    let mut records = Vec::new();
    let mut record: Record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut in_quotes = false;
    let mut at_record_start = true;
    let mut chars = text.chars().peekable();
    let finish_field = |field: &mut String, quoted: &mut bool, record: &mut Record| {
        let value = std::mem::take(field);
        record.push(if !*quoted && value == options.null { None } else { Some(value) });
        *quoted = false;
    };
    while let Some(c) = chars.next() {
        if in_quotes {
            let next = chars.peek().copied();
            if c == escape && (next == Some(quote) || (escape != quote && next == Some(escape))) {
                field.push(chars.next().expect("peeked"));
            } else if c == quote {
                in_quotes = false;
            } else {
                field.push(c);
            }
            continue;
        }
        if at_record_start && c == '\\' && text_starts_end_marker(&mut chars.clone()) {
            break;
        }
        at_record_start = false;
        match c {
            c if c == quote => {
                in_quotes = true;
                quoted = true;
            }
            c if c == delimiter => finish_field(&mut field, &mut quoted, &mut record),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                finish_field(&mut field, &mut quoted, &mut record);
                records.push(std::mem::take(&mut record));
                at_record_start = true;
            }
            c => field.push(c),
        }
    }
    if in_quotes {
        return Err(Error::new(SqlState::BadCopyFileFormat, "unterminated CSV quoted field"));
    }
    if !at_record_start || !field.is_empty() || quoted || !record.is_empty() {
        finish_field(&mut field, &mut quoted, &mut record);
        records.push(record);
    }
    Ok(records)
}

/// After a leading backslash: is this the `\.` end-of-data line?
fn text_starts_end_marker(rest: &mut std::iter::Peekable<std::str::Chars<'_>>) -> bool {
    rest.next() == Some('.') && matches!(rest.next(), None | Some('\n') | Some('\r'))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, AsArray};

    use super::*;

    fn columns(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i}")).collect()
    }

    fn values(arrays: &[ArrayRef]) -> Vec<Vec<Option<String>>> {
        let rows = arrays[0].len();
        (0..rows)
            .map(|r| {
                arrays
                    .iter()
                    .map(|a| {
                        let s = a.as_string::<i32>();
                        (!s.is_null(r)).then(|| s.value(r).to_string())
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn text_format_handles_nulls_and_escapes() {
        let options = CopyOptions::from_ast(&[], &[]).unwrap();
        let data = b"1\ta\\tb\n2\t\\N\n\\.\nignored\n";
        let arrays = parse_copy_data(data, &options, &columns(2)).unwrap();
        assert_eq!(
            values(&arrays),
            vec![vec![Some("1".into()), Some("a\tb".into())], vec![Some("2".into()), None]]
        );
    }

    #[test]
    fn csv_distinguishes_empty_strings_from_nulls() {
        let options =
            CopyOptions::from_ast(&[CopyOption::Format("csv".into()), CopyOption::Header(true)], &[])
                .unwrap();
        let data = b"a,b\n1,\"x,\"\"y\"\"\nz\"\n2,\n3,\"\"\n";
        let arrays = parse_copy_data(data, &options, &columns(2)).unwrap();
        assert_eq!(
            values(&arrays),
            vec![
                vec![Some("1".into()), Some("x,\"y\"\nz".into())],
                vec![Some("2".into()), None],
                vec![Some("3".into()), Some(String::new())],
            ]
        );
    }

    fn written(rows: &[Vec<Option<&str>>], options: &CopyOptions) -> String {
        let mut out = String::new();
        for row in rows {
            write_row(row.iter().copied(), &[], options, &mut out);
        }
        out
    }

    #[test]
    fn text_output_escapes_what_input_unescapes() {
        let options = CopyOptions::from_ast(&[], &[]).unwrap();
        let rows = vec![vec![Some("a\tb\\c\nd"), None], vec![Some(""), Some("\\N")]];
        let out = written(&rows, &options);
        assert_eq!(out, "a\\tb\\\\c\\nd\t\\N\n\t\\\\N\n");
        let back = parse_copy_data(out.as_bytes(), &options, &columns(2)).unwrap();
        let expected: Vec<Vec<Option<String>>> =
            rows.iter().map(|r| r.iter().map(|v| v.map(str::to_string)).collect()).collect();
        assert_eq!(values(&back), expected);
    }

    #[test]
    fn csv_output_quotes_only_where_needed() {
        let options = CopyOptions::from_ast(&[CopyOption::Format("csv".into())], &[]).unwrap();
        let rows = vec![vec![Some("plain"), Some(""), None, Some("x,\"y\"\nz")]];
        let out = written(&rows, &options);
        assert_eq!(out, "plain,\"\",,\"x,\"\"y\"\"\nz\"\n");
        let back = parse_copy_data(out.as_bytes(), &options, &columns(4)).unwrap();
        assert_eq!(
            values(&back),
            vec![vec![Some("plain".into()), Some(String::new()), None, Some("x,\"y\"\nz".into())]]
        );
        let mut out = String::new();
        write_row([Some("1"), Some("\\.")].into_iter(), &[true, false], &options, &mut out);
        write_row([Some("\\.")].into_iter(), &[false], &options, &mut out);
        assert_eq!(out, "\"1\",\\.\n\"\\.\"\n");
    }

    #[test]
    fn wrong_field_counts_are_22p04() {
        let options = CopyOptions::from_ast(&[], &[]).unwrap();
        let error = parse_copy_data(b"1\n", &options, &columns(2)).unwrap_err();
        assert_eq!(error.sqlstate().code(), "22P04");
        assert_eq!(error.to_string(), "missing data for column \"c1\"");
        let error = parse_copy_data(b"1\t2\t3\n", &options, &columns(2)).unwrap_err();
        assert_eq!(error.sqlstate().code(), "22P04");
    }
}
