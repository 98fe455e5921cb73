//! `to_char(timestamp | date, template)` with Postgres' template patterns (plan revision
//! 12): `YYYY-MM-DD HH24:MI:SS`, `Month`, `Dy`, `FMDD`, `DDth`, `"quoted text"`, ...
//! DataFusion's `to_char` reads a chrono format (`%Y-%m-%d`), so a Postgres template came
//! back as itself: `to_char(ts, 'YYYY-MM-DD')` was the text `YYYY-MM-DD` for every row.
//! Views of older plan revisions keep DataFusion's function. Numbers: `pg_to_char_number`.
//!
//! The template is read once per batch; each value is written into one output buffer.
//! A `timestamptz` prints in UTC, the time zone Sabot shows them in.

use std::fmt::Write;
use std::sync::Arc;

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{Result as DfResult, ScalarValue, exec_err, plan_err};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

pub fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::new_from_impl(ToChar {
        signature: Signature::user_defined(Volatility::Immutable),
    }));
}

/// DataFusion's `to_char`, for views of plan revision 11 and older.
pub fn datafusion_function() -> Arc<ScalarUDF> {
    datafusion::functions::datetime::to_char()
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ToChar {
    signature: Signature,
}

impl ScalarUDFImpl for ToChar {
    fn name(&self) -> &str {
        "to_char"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        let [value, _] = arg_types else { return plan_err!("to_char takes a value and a template") };
        let value = match value {
            DataType::Date32 | DataType::Date64 => DataType::Date32,
            DataType::Timestamp(_, zone) => DataType::Timestamp(TimeUnit::Microsecond, zone.clone()),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => {
                DataType::Timestamp(TimeUnit::Microsecond, None)
            }
            number if super::pg_to_char_number::formats(number) => super::pg_to_char_number::coerced(number),
            other => return plan_err!("function to_char({other}, text) does not exist"),
        };
        Ok(vec![value, DataType::Utf8])
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let values = args.args[0].to_array(args.number_rows)?;
        let out: ArrayRef = match &args.args[1] {
            ColumnarValue::Scalar(ScalarValue::Utf8(template)) => {
                let Some(template) = template else {
                    return Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)));
                };
                format_all(&values, &mut std::iter::repeat(Some(template.as_str())))?
            }
            ColumnarValue::Array(templates) => {
                let templates = templates.as_string::<i32>();
                format_all(&values, &mut templates.iter())?
            }
            other => return exec_err!("to_char: unexpected template {other:?}"),
        };
        super::pg_functions::like_arguments(&args.args, out)
    }
}

/// Each value formatted by its row's template; a template is parsed again only when it
/// changes.
fn format_all(values: &ArrayRef, templates: &mut dyn Iterator<Item = Option<&str>>) -> DfResult<ArrayRef> {
    if super::pg_to_char_number::formats(values.data_type()) {
        return super::pg_to_char_number::format_all(values, templates);
    }
    let mut out = StringBuilder::with_capacity(values.len(), values.len() * 16);
    let mut parsed: Option<(&str, Vec<Item>)> = None;
    let mut text = String::new();
    for row in 0..values.len() {
        let template = templates.next().flatten();
        // An empty template gives NULL, as in Postgres.
        let (Some(template), false) = (template.filter(|t| !t.is_empty()), values.is_null(row)) else {
            out.append_null();
            continue;
        };
        if parsed.as_ref().is_none_or(|(t, _)| *t != template) {
            parsed = Some((template, parse(template)));
        }
        let Some(moment) = moment(values, row) else { return exec_err!("timestamp out of range") };
        text.clear();
        let zoned = matches!(values.data_type(), DataType::Timestamp(_, Some(_)));
        write_items(&mut text, &parsed.as_ref().expect("parsed above").1, &moment, zoned);
        out.append_value(&text);
    }
    Ok(Arc::new(out.finish()))
}

fn moment(values: &ArrayRef, row: usize) -> Option<NaiveDateTime> {
    match values.data_type() {
        DataType::Date32 => {
            let days = values.as_primitive::<datafusion::arrow::datatypes::Date32Type>().value(row);
            NaiveDate::from_num_days_from_ce_opt(days.checked_add(719_163)?)?.and_hms_opt(0, 0, 0)
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            let micros =
                values.as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>().value(row);
            chrono::DateTime::from_timestamp_micros(micros).map(|t| t.naive_utc())
        }
        _ => None,
    }
}

/// A template pattern (Postgres' `dch_keywords`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Hour12,
    Hour24,
    Minute,
    Second,
    Millis,
    Micros,
    Fraction(u8),
    SecondsOfDay,
    Meridiem(Case, bool),
    YearComma,
    Year(u8),
    IsoYear(u8),
    Era(Case, bool),
    MonthName(Case),
    MonthAbbrev(Case),
    Month,
    DayName(Case),
    DayAbbrev(Case),
    DayOfYear,
    IsoDayOfYear,
    Day,
    WeekDay,
    IsoWeekDay,
    WeekOfMonth,
    WeekOfYear,
    IsoWeek,
    Century,
    Julian,
    Quarter,
    RomanMonth(Case),
    Zone(Case),
    ZoneHours,
    ZoneMinutes,
    Offset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Upper,
    Capital,
    Lower,
}

#[derive(Debug, PartialEq)]
enum Item {
    Text(String),
    Field { field: Field, fill: bool, ordinal: Option<Case> },
}

/// The keywords, each written as it must appear; numeric ones also in lower case.
const KEYWORDS: &[(&str, Field)] = {
    use Case::*;
    use Field::*;
    &[
        ("A.D.", Era(Upper, true)),
        ("A.M.", Meridiem(Upper, true)),
        ("AD", Era(Upper, false)),
        ("AM", Meridiem(Upper, false)),
        ("B.C.", Era(Upper, true)),
        ("BC", Era(Upper, false)),
        ("CC", Century),
        ("DAY", DayName(Upper)),
        ("DDD", DayOfYear),
        ("DD", Day),
        ("DY", DayAbbrev(Upper)),
        ("Day", DayName(Capital)),
        ("Dy", DayAbbrev(Capital)),
        ("D", WeekDay),
        ("FF1", Fraction(1)),
        ("FF2", Fraction(2)),
        ("FF3", Fraction(3)),
        ("FF4", Fraction(4)),
        ("FF5", Fraction(5)),
        ("FF6", Fraction(6)),
        ("HH24", Hour24),
        ("HH12", Hour12),
        ("HH", Hour12),
        ("IDDD", IsoDayOfYear),
        ("ID", IsoWeekDay),
        ("IW", IsoWeek),
        ("IYYY", IsoYear(4)),
        ("IYY", IsoYear(3)),
        ("IY", IsoYear(2)),
        ("I", IsoYear(1)),
        ("J", Julian),
        ("MI", Minute),
        ("MM", Month),
        ("MONTH", MonthName(Upper)),
        ("MON", MonthAbbrev(Upper)),
        ("MS", Millis),
        ("Month", MonthName(Capital)),
        ("Mon", MonthAbbrev(Capital)),
        ("OF", Offset),
        ("P.M.", Meridiem(Upper, true)),
        ("PM", Meridiem(Upper, false)),
        ("Q", Quarter),
        ("RM", RomanMonth(Upper)),
        ("SSSSS", SecondsOfDay),
        ("SSSS", SecondsOfDay),
        ("SS", Second),
        ("TZH", ZoneHours),
        ("TZM", ZoneMinutes),
        ("TZ", Zone(Upper)),
        ("US", Micros),
        ("WW", WeekOfYear),
        ("W", WeekOfMonth),
        ("Y,YYY", YearComma),
        ("YYYY", Year(4)),
        ("YYY", Year(3)),
        ("YY", Year(2)),
        ("Y", Year(1)),
        ("a.d.", Era(Lower, true)),
        ("a.m.", Meridiem(Lower, true)),
        ("ad", Era(Lower, false)),
        ("am", Meridiem(Lower, false)),
        ("b.c.", Era(Lower, true)),
        ("bc", Era(Lower, false)),
        ("day", DayName(Lower)),
        ("dy", DayAbbrev(Lower)),
        ("month", MonthName(Lower)),
        ("mon", MonthAbbrev(Lower)),
        ("p.m.", Meridiem(Lower, true)),
        ("pm", Meridiem(Lower, false)),
        ("rm", RomanMonth(Lower)),
        ("tz", Zone(Lower)),
    ]
};

/// Whether `field` is written in digits (and so also matches in lower case).
fn numeric(field: Field) -> bool {
    use Field::*;
    !matches!(
        field,
        Meridiem(..)
            | Era(..)
            | MonthName(_)
            | MonthAbbrev(_)
            | DayName(_)
            | DayAbbrev(_)
            | RomanMonth(_)
            | Zone(_)
    )
}

/// The longest keyword at the start of `rest`.
fn keyword(rest: &str) -> Option<(usize, Field)> {
    KEYWORDS
        .iter()
        .filter(|(word, field)| {
            rest.starts_with(word)
                || (numeric(*field)
                    && rest.len() >= word.len()
                    && rest.is_char_boundary(word.len())
                    && rest[..word.len()] == word.to_ascii_lowercase())
        })
        .max_by_key(|(word, _)| word.len())
        .map(|(word, field)| (word.len(), *field))
}

/// The template's patterns and text, as Postgres reads it: `FM` before a pattern drops its
/// padding, `TH` / `th` after a number adds its ordinal suffix, `"..."` is text, `\x` is
/// `x`, and anything else is itself.
fn parse(template: &str) -> Vec<Item> {
    let mut items = Vec::new();
    let mut text = String::new();
    let mut rest = template;
    while !rest.is_empty() {
        let mut fill = false;
        let mut after_prefix = rest;
        loop {
            if after_prefix.starts_with("FM") || after_prefix.starts_with("fm") {
                fill = true;
            } else if !(after_prefix.starts_with("TM")
                || after_prefix.starts_with("tm")
                || after_prefix.starts_with("FX")
                || after_prefix.starts_with("fx"))
            {
                break;
            }
            after_prefix = &after_prefix[2..];
        }
        if let Some((length, field)) = keyword(after_prefix) {
            if !text.is_empty() {
                items.push(Item::Text(std::mem::take(&mut text)));
            }
            rest = &after_prefix[length..];
            let ordinal = if rest.starts_with("TH") {
                Some(Case::Upper)
            } else if rest.starts_with("th") {
                Some(Case::Lower)
            } else {
                None
            };
            if ordinal.is_some() {
                rest = &rest[2..];
            }
            if rest.starts_with("SP") || rest.starts_with("sp") {
                rest = &rest[2..];
            }
            items.push(Item::Field { field, fill, ordinal: ordinal.filter(|_| numeric(field)) });
            continue;
        }
        // A prefix before no pattern is dropped.
        rest = after_prefix;
        if rest.is_empty() {
            break;
        }
        let mut chars = rest.chars();
        match chars.next().expect("not empty") {
            '"' => {
                let mut escaped = false;
                for c in chars.by_ref() {
                    match (escaped, c) {
                        (false, '\\') => escaped = true,
                        (false, '"') => break,
                        _ => {
                            text.push(c);
                            escaped = false;
                        }
                    }
                }
            }
            '\\' => match chars.next() {
                Some(c) => text.push(c),
                None => text.push('\\'),
            },
            c => text.push(c),
        }
        rest = chars.as_str();
    }
    if !text.is_empty() {
        items.push(Item::Text(text));
    }
    items
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const ROMAN_MONTHS: [&str; 12] = ["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII"];

fn write_items(out: &mut String, items: &[Item], moment: &NaiveDateTime, zoned: bool) {
    for item in items {
        match item {
            Item::Text(text) => out.push_str(text),
            Item::Field { field, fill, ordinal } => {
                let start = out.len();
                write_field(out, *field, *fill, moment, zoned);
                if let Some(case) = ordinal {
                    let suffix = ordinal_suffix(&out[start..]);
                    out.push_str(&if *case == Case::Upper {
                        suffix.to_ascii_uppercase()
                    } else {
                        suffix.to_string()
                    });
                }
            }
        }
    }
}

/// `st`, `nd`, `rd` or `th` for the number `digits` ends with.
fn ordinal_suffix(digits: &str) -> &'static str {
    let bytes = digits.as_bytes();
    let last = bytes.last().copied().unwrap_or(b'0');
    if bytes.len() > 1 && bytes[bytes.len() - 2] == b'1' {
        return "th";
    }
    match last {
        b'1' => "st",
        b'2' => "nd",
        b'3' => "rd",
        _ => "th",
    }
}

fn cased(out: &mut String, word: &str, case: Case) {
    match case {
        Case::Upper => out.extend(word.chars().map(|c| c.to_ascii_uppercase())),
        Case::Capital => out.push_str(word),
        Case::Lower => out.extend(word.chars().map(|c| c.to_ascii_lowercase())),
    }
}

/// `word` in `case`, padded with blanks to `width` unless in fill mode.
fn padded(out: &mut String, word: &str, case: Case, width: usize, fill: bool) {
    cased(out, word, case);
    if !fill {
        out.extend(std::iter::repeat_n(' ', width.saturating_sub(word.len())));
    }
}

fn number(out: &mut String, value: i64, width: usize, fill: bool) {
    let width = if fill { 0 } else { width };
    if value < 0 {
        let _ = write!(out, "-{:0width$}", -value, width = width.saturating_sub(1));
    } else {
        let _ = write!(out, "{value:0width$}");
    }
}

fn write_field(out: &mut String, field: Field, fill: bool, t: &NaiveDateTime, zoned: bool) {
    use Field::*;
    // Years before 1 AD are written as BC years (year 0 is 1 BC).
    let year = |y: i32| i64::from(if y <= 0 { 1 - y } else { y });
    let micros = i64::from(t.nanosecond() / 1000);
    let iso = t.iso_week();
    match field {
        Hour12 => {
            number(out, i64::from(if t.hour().is_multiple_of(12) { 12 } else { t.hour() % 12 }), 2, fill)
        }
        Hour24 => number(out, i64::from(t.hour()), 2, fill),
        Minute => number(out, i64::from(t.minute()), 2, fill),
        Second => number(out, i64::from(t.second()), 2, fill),
        Millis => number(out, micros / 1000, 3, fill),
        Micros => number(out, micros, 6, fill),
        Fraction(digits) => {
            number(out, micros / 10_i64.pow(6 - u32::from(digits)), usize::from(digits), false)
        }
        SecondsOfDay => number(out, i64::from(t.num_seconds_from_midnight()), 0, true),
        Meridiem(case, dotted) => {
            let word = match (t.hour() < 12, dotted) {
                (true, false) => "AM",
                (false, false) => "PM",
                (true, true) => "A.M.",
                (false, true) => "P.M.",
            };
            cased(out, word, case);
        }
        YearComma => {
            let y = year(t.year());
            let _ = write!(out, "{},{:03}", y / 1000, y % 1000);
        }
        Year(4) => number(out, year(t.year()), 4, fill),
        Year(digits) => {
            number(out, year(t.year()) % 10_i64.pow(u32::from(digits)), usize::from(digits), fill)
        }
        IsoYear(4) => number(out, year(iso.year()), 4, fill),
        IsoYear(digits) => {
            number(out, year(iso.year()) % 10_i64.pow(u32::from(digits)), usize::from(digits), fill)
        }
        Era(case, dotted) => {
            let word = match (t.year() <= 0, dotted) {
                (true, false) => "BC",
                (false, false) => "AD",
                (true, true) => "B.C.",
                (false, true) => "A.D.",
            };
            cased(out, word, case);
        }
        MonthName(case) => padded(out, MONTHS[t.month0() as usize], case, 9, fill),
        MonthAbbrev(case) => cased(out, &MONTHS[t.month0() as usize][..3], case),
        Month => number(out, i64::from(t.month()), 2, fill),
        DayName(case) => padded(out, DAYS[t.weekday().num_days_from_sunday() as usize], case, 9, fill),
        DayAbbrev(case) => cased(out, &DAYS[t.weekday().num_days_from_sunday() as usize][..3], case),
        DayOfYear => number(out, i64::from(t.ordinal()), 3, fill),
        IsoDayOfYear => {
            number(out, i64::from((iso.week() - 1) * 7 + t.weekday().number_from_monday()), 3, fill)
        }
        Day => number(out, i64::from(t.day()), 2, fill),
        WeekDay => number(out, i64::from(t.weekday().number_from_sunday()), 1, fill),
        IsoWeekDay => number(out, i64::from(t.weekday().number_from_monday()), 1, fill),
        WeekOfMonth => number(out, i64::from((t.day() - 1) / 7 + 1), 1, fill),
        WeekOfYear => number(out, i64::from((t.ordinal() - 1) / 7 + 1), 2, fill),
        IsoWeek => number(out, i64::from(iso.week()), 2, fill),
        Century => {
            let y = i64::from(t.year());
            let century = if y > 0 { (y + 99) / 100 } else { -((99 - (y - 1)) / 100) };
            number(out, century, if century < 0 { 3 } else { 2 }, fill)
        }
        Julian => number(out, i64::from(t.num_days_from_ce()) + 1_721_425, 0, true),
        Quarter => number(out, i64::from(t.month0() / 3 + 1), 1, fill),
        RomanMonth(case) => padded(out, ROMAN_MONTHS[t.month0() as usize], case, 4, fill),
        Zone(case) if zoned => cased(out, "UTC", case),
        Zone(_) => {}
        ZoneHours if zoned => out.push_str("+00"),
        ZoneMinutes if zoned => out.push_str("00"),
        Offset if zoned => out.push_str("+00"),
        ZoneHours | ZoneMinutes | Offset => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn formatted(template: &str, at: &str) -> String {
        let moment = NaiveDateTime::parse_from_str(at, "%Y-%m-%d %H:%M:%S%.f").unwrap();
        let mut out = String::new();
        write_items(&mut out, &parse(template), &moment, false);
        out
    }

    #[test]
    fn templates_print_as_postgres_prints_them() {
        let at = "2026-03-01 14:05:09.123456";
        assert_eq!(formatted("YYYY-MM-DD HH24:MI:SS", at), "2026-03-01 14:05:09");
        assert_eq!(formatted("yyyy-mm-dd hh24:mi", at), "2026-03-01 14:05");
        assert_eq!(formatted("HH12:MI AM, Day Month DDth", at), "02:05 PM, Sunday    March     01st");
        assert_eq!(formatted("FMDay, FMMonth FMDDth, Y,YYY", at), "Sunday, March 1st, 2,026");
        assert_eq!(formatted("Dy dy DY Mon mon MON rm", at), "Sun sun SUN Mar mar MAR iii ");
        assert_eq!(formatted("MS US FF3 SSSS", at), "123 123456 123 50709");
        assert_eq!(
            formatted("\"Quarter\" Q, \"week\" IW/WW, DDD, J, CC, a.m.", at),
            "Quarter 1, week 09/09, 060, 2461101, 21, p.m."
        );
        assert_eq!(formatted("IYYY-IW-ID", "2027-01-01 00:00:00"), "2026-53-5");
        assert_eq!(
            formatted(
                "HH:MI:SS pm \"at\" \\\"q\\\" W D ID IDDD YY YYY Y I IY BC b.c.",
                "2026-01-02 00:00:00"
            ),
            "12:00:00 am at \"1\" 1 6 5 005 26 026 6 6 26 AD a.d."
        );
        let before_christ = NaiveDate::from_ymd_opt(-43, 3, 15).unwrap().and_hms_opt(12, 0, 0).unwrap();
        let mut out = String::new();
        write_items(&mut out, &parse("YYYY BC CC"), &before_christ, false);
        assert_eq!(out, "0044 BC -01");
        assert_eq!(formatted("DDTH ddth FMDDth", "2026-03-21 00:00:00"), "21ST 21st 21st");
        assert_eq!(formatted("DDth DDth", "2026-03-11 00:00:00"), "11th 11th");
        assert_eq!(formatted("Mm Dd Hh mI", "2026-03-01 14:05:09"), "Mm 11 Hh m6");
        assert_eq!(formatted("FMx YYYYFM", "2026-03-01 14:05:09"), "x 2026");
    }
}
