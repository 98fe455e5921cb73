//! Interval text as Postgres reads it where Arrow's parser refuses it: times of day
//! (`'1 day 04:05:06.5'`, `'-02:30'`, `'1:02.5'` as minutes and seconds), SQL-standard
//! year-month and day-time forms (`'1-2'`, `'3 4:05:06'`), `@` and `ago`
//! (`'@ 1 day ago'`), a number alone as seconds (`'90'`), units run into their number
//! (`'1day'`) and ISO 8601 durations (`'P1Y2M3DT4H5M6S'`, `'PT1.5S'`).
//!
//! [`arrow_form`] restates such text in the `<amount> <unit>` form Arrow reads. It is used
//! twice: interval literals (`INTERVAL '...'`, `'...'::interval`) are rewritten before
//! planning where Arrow alone fails on them (so a literal Arrow reads plans as before), and
//! text cast to interval at run time goes through [`PgIntervalCasts`], an analyzer rule
//! of its own that views of plan revision 10 and older are planned without.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, IntervalMonthDayNanoBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, IntervalMonthDayNano, IntervalUnit};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::sql::sqlparser::ast;

use crate::common::{Error, SqlState};

/// The rule's name, by which views of older plan revisions leave it out.
pub const RULE_NAME: &str = "pg_interval_casts";

/// `text` as an interval, as Postgres reads it; `None` where Postgres would not either.
pub fn parse(text: &str) -> Option<IntervalMonthDayNano> {
    let arrow =
        |t: &str| datafusion::arrow::compute::kernels::cast_utils::parse_interval_month_day_nano(t).ok();
    match arrow_form(text) {
        Some(form) => arrow(&form),
        None => arrow(text),
    }
}

/// `text` restated as `<amount> <unit>` pairs, where it holds a form Arrow does not read
/// (or reads otherwise than Postgres: a number alone); `None` where it holds none.
pub fn arrow_form(text: &str) -> Option<String> {
    let lower = text.trim().to_ascii_lowercase();
    let (body, ago) = match lower.strip_suffix("ago") {
        Some(rest) if rest.ends_with(char::is_whitespace) => (rest.trim(), true),
        _ => (lower.as_str(), false),
    };
    let body = body.strip_prefix('@').map_or(body, str::trim_start);
    let special = ago || body.len() != lower.len();
    let mut parts = match body.strip_prefix('p') {
        Some(iso) => iso_8601(iso)?,
        None => {
            let (parts, needs_rewrite) = postgres_tokens(body)?;
            if !(needs_rewrite || special) {
                return None;
            }
            parts
        }
    };
    if ago {
        for (amount, _) in &mut parts {
            *amount = negated(amount);
        }
    }
    if parts.is_empty() {
        return Some("0 seconds".into());
    }
    Some(parts.iter().map(|(amount, unit)| format!("{amount} {unit}")).collect::<Vec<_>>().join(" "))
}

type Parts = Vec<(String, &'static str)>;

/// Postgres' word forms; the flag says whether any needs restating for Arrow.
fn postgres_tokens(body: &str) -> Option<(Parts, bool)> {
    let tokens = split_run_in_units(body);
    let mut parts = Parts::new();
    // Units run into their numbers, and `+` signs, are restated too.
    let mut rewrite =
        tokens.len() != body.split_whitespace().count() || tokens.iter().any(|t| t.starts_with('+'));
    let mut i = 0;
    while i < tokens.len() {
        let token = tokens[i].as_str();
        let next = tokens.get(i + 1).map(String::as_str);
        if token.contains(':') {
            parts.extend(time_of_day(token)?);
            rewrite = true;
        } else if let Some((years, months)) = year_month(token) {
            parts.push((years, "years"));
            parts.push((months, "months"));
            rewrite = true;
        } else if is_amount(token) {
            match next {
                Some(unit) if unit.starts_with(|c: char| c.is_ascii_alphabetic()) => {
                    parts.push((plain(token), unit_name(unit)?));
                    i += 1;
                }
                // `3 4:05:06`: days before a time of day.
                Some(time) if time.contains(':') => {
                    parts.push((plain(token), "days"));
                    rewrite = true;
                }
                Some(_) => return None,
                None => {
                    parts.push((plain(token), "seconds"));
                    rewrite = true;
                }
            }
        } else {
            return None;
        }
        i += 1;
    }
    Some((parts, rewrite))
}

/// Whitespace-separated tokens, with a unit run into its number (`1day`) split off.
fn split_run_in_units(body: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    for word in body.split_whitespace() {
        let split = word.find(|c: char| c.is_ascii_alphabetic()).filter(|&at| at > 0);
        match split {
            Some(at) if is_amount(&word[..at]) => {
                tokens.push(word[..at].to_string());
                tokens.push(word[at..].to_string());
            }
            _ => tokens.push(word.to_string()),
        }
    }
    tokens
}

fn is_amount(token: &str) -> bool {
    let digits = token.strip_prefix(['+', '-']).unwrap_or(token);
    !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
        && digits.chars().filter(|&c| c == '.').count() <= 1
        && digits != "."
}

/// An amount without a leading `+` (Arrow's amounts take none).
fn plain(amount: &str) -> String {
    amount.strip_prefix('+').unwrap_or(amount).to_string()
}

fn negated(amount: &str) -> String {
    match amount.strip_prefix('-') {
        Some(positive) => positive.to_string(),
        None => format!("-{}", plain(amount)),
    }
}

/// A unit word Postgres knows, by Arrow's name for it.
fn unit_name(word: &str) -> Option<&'static str> {
    Some(match word {
        "microsecond" | "microseconds" | "us" | "usec" | "usecs" | "usecond" | "useconds" => "microseconds",
        "millisecond" | "milliseconds" | "ms" | "msec" | "msecs" | "msecond" | "mseconds" => "milliseconds",
        "second" | "seconds" | "s" | "sec" | "secs" => "seconds",
        "minute" | "minutes" | "m" | "min" | "mins" => "minutes",
        "hour" | "hours" | "h" | "hr" | "hrs" => "hours",
        "day" | "days" | "d" => "days",
        "week" | "weeks" | "w" => "weeks",
        "month" | "months" | "mon" | "mons" => "months",
        "year" | "years" | "y" | "yr" | "yrs" => "years",
        "decade" | "decades" | "dec" | "decs" => "decades",
        "century" | "centuries" | "c" | "cent" | "cents" => "centuries",
        _ => return None,
    })
}

/// `[-]h:m[:s[.f]]`, or `m:s.f` (two fields, the second with a fraction, as Postgres reads
/// them): one sign for all its fields.
fn time_of_day(token: &str) -> Option<Parts> {
    let (sign, body) = match token.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", token.strip_prefix('+').unwrap_or(token)),
    };
    let fields: Vec<&str> = body.split(':').collect();
    let whole = |f: &str| !f.is_empty() && f.chars().all(|c| c.is_ascii_digit());
    let seconds = |f: &str| is_amount(f) && !f.starts_with(['+', '-']);
    let units: &[&'static str] = match fields.as_slice() {
        [m, s] if whole(m) && s.contains('.') && seconds(s) => &["minutes", "seconds"],
        [h, m] if whole(h) && whole(m) => &["hours", "minutes"],
        [h, m, s] if whole(h) && whole(m) && seconds(s) => &["hours", "minutes", "seconds"],
        _ => return None,
    };
    Some(fields.iter().zip(units).map(|(f, unit)| (format!("{sign}{f}"), *unit)).collect())
}

/// `[-]y-m`: years and months, one sign for both.
fn year_month(token: &str) -> Option<(String, String)> {
    let (sign, body) = match token.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", token.strip_prefix('+').unwrap_or(token)),
    };
    let (years, months) = body.split_once('-')?;
    let whole = |f: &str| !f.is_empty() && f.chars().all(|c| c.is_ascii_digit());
    (whole(years) && whole(months)).then(|| (format!("{sign}{years}"), format!("{sign}{months}")))
}

/// ISO 8601 designators after the `P`: `nYnMnWnD` then `T` and `nHnMnS`.
fn iso_8601(body: &str) -> Option<Parts> {
    let (date, time) = match body.split_once('t') {
        Some((date, time)) => (date, Some(time)),
        None => (body, None),
    };
    let mut parts = Parts::new();
    designated(date, &[('y', "years"), ('m', "months"), ('w', "weeks"), ('d', "days")], &mut parts)?;
    if let Some(time) = time {
        if time.is_empty() {
            return None;
        }
        designated(time, &[('h', "hours"), ('m', "minutes"), ('s', "seconds")], &mut parts)?;
    }
    (!body.is_empty()).then_some(parts)
}

fn designated(mut text: &str, units: &[(char, &'static str)], parts: &mut Parts) -> Option<()> {
    let mut allowed = units;
    while !text.is_empty() {
        let at = text.find(|c: char| c.is_ascii_alphabetic())?;
        let (amount, rest) = text.split_at(at);
        let designator = rest.chars().next()?;
        let position = allowed.iter().position(|(d, _)| *d == designator)?;
        if !is_amount(amount) {
            return None;
        }
        parts.push((plain(amount), allowed[position].1));
        allowed = &allowed[position + 1..];
        text = &rest[1..];
    }
    Some(())
}

/// Rewrites interval literals Arrow cannot read (`INTERVAL '1 day 04:05'`,
/// `'04:05'::interval`, `CAST('04:05' AS interval)`) into the form it reads.
pub fn rewrite_literals(statement: &mut ast::Statement) {
    let _ = ast::VisitMut::visit(statement, &mut Literals);
}

struct Literals;

impl ast::VisitorMut for Literals {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut ast::Expr) -> ControlFlow<()> {
        let text = match expr {
            ast::Expr::Interval(ast::Interval { value, leading_field: None, last_field: None, .. }) => {
                string_literal(value)
            }
            ast::Expr::Cast { expr: value, data_type: ast::DataType::Interval { .. }, .. } => {
                string_literal(value)
            }
            _ => None,
        };
        if let Some(text) = text
            && let Some(form) = arrow_form(text)
        {
            let value = match expr {
                ast::Expr::Interval(interval) => &mut interval.value,
                ast::Expr::Cast { expr: value, .. } => value,
                _ => unreachable!("matched above"),
            };
            **value = ast::Expr::value(ast::Value::SingleQuotedString(form));
        }
        ControlFlow::Continue(())
    }
}

fn string_literal(expr: &ast::Expr) -> Option<&str> {
    match expr {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

/// Casts of text to interval, read as Postgres reads them (after type coercion).
#[derive(Debug, Default)]
pub struct PgIntervalCasts;

impl AnalyzerRule for PgIntervalCasts {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        super::pg_casts::rewrite_expressions(plan, replace)
    }

    fn name(&self) -> &str {
        RULE_NAME
    }
}

fn replace(expr: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    match super::pg_casts::text_cast(&expr, schema) {
        // Literals were restated before planning; they stay constants DataFusion folds.
        Some((text, DataType::Interval(IntervalUnit::MonthDayNano)))
            if !matches!(text, Expr::Literal(..)) =>
        {
            let function = TextToInterval { signature: Signature::any(1, Volatility::Immutable) };
            Ok(super::pg_casts::call_instead(function, text))
        }
        _ => Ok(Transformed::no(expr)),
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct TextToInterval {
    signature: Signature,
}

impl ScalarUDFImpl for TextToInterval {
    fn name(&self) -> &str {
        "sabot_text_to_interval"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Named as the cast it replaces: after what it casts (the plan's schema keeps it).
    fn schema_name(&self, args: &[Expr]) -> DfResult<String> {
        Ok(args[0].schema_name().to_string())
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Interval(IntervalUnit::MonthDayNano))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let texts = cast(&args.args[0].to_array(args.number_rows)?, &DataType::Utf8)?;
        let texts = texts.as_string::<i32>();
        let mut out = IntervalMonthDayNanoBuilder::with_capacity(texts.len());
        for row in 0..texts.len() {
            if texts.is_null(row) {
                out.append_null();
                continue;
            }
            let text = texts.value(row);
            let value = parse(text).ok_or_else(|| {
                Error::new(
                    SqlState::InvalidDatetimeFormat,
                    format!("invalid input syntax for type interval: \"{text}\""),
                )
            })?;
            out.append_value(value);
        }
        let array: ArrayRef = Arc::new(out.finish());
        super::pg_functions::like_arguments(&args.args, array)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(text: &str) -> Option<String> {
        arrow_form(text)
    }

    #[test]
    fn restates_what_arrow_does_not_read() {
        assert_eq!(
            form("1 year 2 months 3 days 04:05:06.5").as_deref(),
            Some("1 years 2 months 3 days 04 hours 05 minutes 06.5 seconds")
        );
        assert_eq!(form("-02:30").as_deref(), Some("-02 hours -30 minutes"));
        assert_eq!(form("1:02.5").as_deref(), Some("1 minutes 02.5 seconds"));
        assert_eq!(form("1-2").as_deref(), Some("1 years 2 months"));
        assert_eq!(form("3 4:05:06").as_deref(), Some("3 days 4 hours 05 minutes 06 seconds"));
        assert_eq!(form("@ 1 day 2 hours ago").as_deref(), Some("-1 days -2 hours"));
        assert_eq!(form("90").as_deref(), Some("90 seconds"));
        assert_eq!(form("1day +2hours").as_deref(), Some("1 days 2 hours"));
        assert_eq!(
            form("P1Y2M3DT4H5M6.5S").as_deref(),
            Some("1 years 2 months 3 days 4 hours 5 minutes 6.5 seconds")
        );
        assert_eq!(form("PT90M").as_deref(), Some("90 minutes"));
    }

    #[test]
    fn leaves_what_arrow_reads_and_refuses_nonsense() {
        assert_eq!(form("1 day 2 hours"), None);
        assert_eq!(form("banana"), None);
        assert_eq!(form("1 fortnight 04:00"), None);
        assert_eq!(form("P1X"), None);
        assert_eq!(form("12:xx"), None);
    }

    #[test]
    fn parses_to_postgres_values() {
        let v = parse("1 day 04:05:06.5").expect("parses");
        assert_eq!((v.months, v.days, v.nanoseconds), (0, 1, 14_706_500_000_000));
        let v = parse("-1 day +02:00").expect("parses");
        assert_eq!((v.months, v.days, v.nanoseconds), (0, -1, 7_200_000_000_000));
        let v = parse("2 hours ago").expect("parses");
        assert_eq!((v.months, v.days, v.nanoseconds), (0, 0, -7_200_000_000_000));
        assert!(parse("tomorrow-ish").is_none());
    }
}
