//! `to_char(number, template)` with Postgres' number patterns (`9`, `0`, `.`/`D`, `,`/`G`,
//! `FM`, `S`, `MI`, `PL`, `SG`, `PR`, `L`, `V`, `EEEE`, `RN`/`rn`, `TH`/`th`, `B`, quoted text,
//! `\"`), printing what PostgreSQL 15 prints, character for character, quirks included (`FM9.99`
//! of 1 is `1.`; a NaN float is `NaN`, cut where the template's decimal point would go). A
//! template is parsed once into nodes and a [`Layout`] (Postgres' `NUMDesc`); a value is written
//! as plain digits the way its Postgres type's `to_char` does, then the nodes are walked
//! (Postgres' `NUM_processor`). Integers follow `int8` (`UInt64` `numeric`), `Decimal128`
//! `numeric`, `Float32` and `Float64` `float4` and `float8`.
//!
//! Where it differs from Postgres:
//! - Only the C locale: `D` is `.`, `G` is `,`, `L` a blank, `S` writes `+`/`-`.
//! - Every integer takes `int8`'s path; Postgres gives `int4` its own, where `EEEE` rounds a tie
//!   through a double, half to even (25 with `9EEEE` is ` 2e+01`; here ` 3e+01`), and `V`
//!   fails past the `int4` range ("integer out of range"; here past `int8`'s).
//! - A float outside the `int4` range under `RN` prints `#`s; Postgres 15 casts it to `int`
//!   in C, which gives the same `#`s on x86-64 only.

use std::fmt::Write;
use std::iter::repeat_n;
use std::mem::take;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Float32Type, Float64Type, Int64Type};
use datafusion::common::{Result as DfResult, exec_err};

/// `RN` without `FM` right-aligns the numeral in this many characters.
const ROMAN_WIDTH: usize = 15;
/// Significant digits Postgres keeps of a double and a float (C's `DBL_DIG`, `FLT_DIG`).
const FLOAT8_DIGITS: usize = 15;
const FLOAT4_DIGITS: usize = 6;

/// Whether to_char formats a value of this type as a number.
pub fn formats(data_type: &DataType) -> bool {
    data_type.is_integer()
        || matches!(data_type, DataType::Float32 | DataType::Float64 | DataType::Decimal128(_, _))
}

/// The type a value is cast to before formatting: the Arrow type of the Postgres type whose
/// `to_char` it follows.
pub fn coerced(data_type: &DataType) -> DataType {
    use DataType::*;
    match data_type {
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 => Int64,
        UInt64 => Decimal128(20, 0),
        other => other.clone(),
    }
}

/// Each value (of a `coerced` type) formatted by its row's template, NULL for a NULL value
/// or template; a template is parsed again only when it differs from the previous row's.
pub fn format_all(
    values: &ArrayRef,
    templates: &mut dyn Iterator<Item = Option<&str>>,
) -> DfResult<ArrayRef> {
    let mut out = StringBuilder::with_capacity(values.len(), values.len() * 16);
    let mut parsed: Option<(&str, Template)> = None;
    let (mut number, mut text) = (String::new(), String::new());
    for row in 0..values.len() {
        let template = templates.next().flatten();
        let (Some(template), false) = (template, values.is_null(row)) else {
            out.append_null();
            continue;
        };
        if parsed.as_ref().is_none_or(|(t, _)| *t != template) {
            parsed = Some((template, parse(template)?));
        }
        render(&parsed.as_ref().expect("parsed above").1, value_at(values, row)?, &mut number, &mut text)?;
        out.append_value(&text);
    }
    Ok(Arc::new(out.finish()))
}

/// One value, as the Postgres type whose `to_char` it follows (a numeric: unscaled, scale).
#[derive(Debug, Clone, Copy)]
enum Value {
    Int8(i64),
    Numeric(i128, i32),
    Float4(f32),
    Float8(f64),
}

fn value_at(values: &ArrayRef, row: usize) -> DfResult<Value> {
    Ok(match values.data_type() {
        DataType::Int64 => Value::Int8(values.as_primitive::<Int64Type>().value(row)),
        DataType::Float32 => Value::Float4(values.as_primitive::<Float32Type>().value(row)),
        DataType::Float64 => Value::Float8(values.as_primitive::<Float64Type>().value(row)),
        DataType::Decimal128(_, scale) => {
            Value::Numeric(values.as_primitive::<Decimal128Type>().value(row), i32::from(*scale))
        }
        other => return exec_err!("to_char: {other} is not cast to a number type"),
    })
}

/// A template pattern, or a character written as itself. `.` and `D`, `,` and `G` are one
/// each: the C locale writes them alike. `C` and `SP` are patterns that write nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Nine,
    Zero,
    Point,
    Group,
    Currency,
    Blank,
    Fill,
    LocaleSign,
    Minus,
    Plus,
    SignBoth,
    Brackets,
    Multiply,
    Exponent,
    Roman,
    RomanLower,
    Ordinal,
    OrdinalLower,
    Ignored,
    Text(char),
}

/// The pattern `text` starts with, and its length: upper or lower case, `SG` before `S`.
fn keyword(text: &str) -> Option<(usize, Node)> {
    use Node::*;
    const NAMES: &str = "EEEE FM MI PL PR RN SG SP TH B C D G L S V , . 0 9";
    const NODES: [Node; 20] = [
        Exponent, Fill, Minus, Plus, Brackets, Roman, SignBoth, Ignored, Ordinal, Blank, Ignored, Point,
        Group, Currency, LocaleSign, Multiply, Group, Point, Zero, Nine,
    ];
    NAMES.split(' ').zip(NODES).find_map(|(name, node)| {
        let head = text.as_bytes().get(..name.len())?;
        let lower = head != name.as_bytes()
            && head.iter().zip(name.bytes()).all(|(h, n)| *h == n.to_ascii_lowercase());
        let node = match node {
            Roman if lower => RomanLower,
            Ordinal if lower => OrdinalLower,
            node => node,
        };
        (head == name.as_bytes() || lower).then_some((name.len(), node))
    })
}

/// What a template says about the number as a whole (Postgres' `NUMDesc`): digit positions
/// before and after the point, `9`s after `V` (the value is multiplied by 10^multi), where the
/// first `0` before the point is (1-based) and the last `0` is, and whether `S` writes the sign
/// before the first digit or after the last (`pre_sign_digits` counts digits before the `S`).
#[derive(Debug, Clone, Copy, Default)]
struct Layout {
    pre: usize,
    post: usize,
    multi: u32,
    zero_start: usize,
    zero_end: usize,
    sign_first: bool,
    sign_last: bool,
    pre_sign_digits: usize,
    point: bool,
    zero: bool,
    blank: bool,
    fill: bool,
    brackets: bool,
    minus: bool,
    plus: bool,
    roman: bool,
    multiply: bool,
    exponent: bool,
}

impl Layout {
    /// Takes in one pattern, rejecting the combinations Postgres rejects.
    fn add(&mut self, node: Node) -> DfResult<()> {
        let signed = self.sign_first || self.sign_last;
        let any_sign = signed || self.brackets || self.minus || self.plus;
        match node {
            _ if self.exponent && node != Node::Exponent => {
                return exec_err!("\"EEEE\" must be the last pattern used");
            }
            Node::Nine if self.brackets => return exec_err!("\"9\" must be ahead of \"PR\""),
            Node::Zero if self.brackets => return exec_err!("\"0\" must be ahead of \"PR\""),
            Node::Nine if self.multiply => self.multi += 1,
            Node::Nine => *if self.point { &mut self.post } else { &mut self.pre } += 1,
            Node::Zero => {
                if !self.zero && !self.point {
                    (self.zero, self.zero_start) = (true, self.pre + 1);
                }
                *if self.point { &mut self.post } else { &mut self.pre } += 1;
                self.zero_end = self.pre + self.post;
            }
            Node::Blank => self.blank |= self.pre == 0 && self.post == 0 && !self.zero,
            Node::Point if self.point => return exec_err!("multiple decimal points"),
            Node::Point if self.multiply => return exec_err!("cannot use \"V\" and decimal point together"),
            Node::Multiply if self.point => return exec_err!("cannot use \"V\" and decimal point together"),
            Node::Point => self.point = true,
            Node::Multiply => self.multiply = true,
            Node::Fill => self.fill = true,
            Node::LocaleSign if signed => return exec_err!("cannot use \"S\" twice"),
            Node::LocaleSign if any_sign => {
                return exec_err!("cannot use \"S\" and \"PL\"/\"MI\"/\"SG\"/\"PR\" together");
            }
            Node::LocaleSign if self.point => self.sign_last = true,
            Node::LocaleSign => (self.sign_first, self.pre_sign_digits) = (true, self.pre),
            Node::Minus if signed => return exec_err!("cannot use \"S\" and \"MI\" together"),
            Node::Plus if signed => return exec_err!("cannot use \"S\" and \"PL\" together"),
            Node::SignBoth if signed => return exec_err!("cannot use \"S\" and \"SG\" together"),
            Node::Minus => self.minus = true,
            Node::Plus => self.plus = true,
            Node::SignBoth => (self.minus, self.plus) = (true, true),
            Node::Brackets if signed || self.plus || self.minus => {
                return exec_err!("cannot use \"PR\" and \"S\"/\"PL\"/\"MI\"/\"SG\" together");
            }
            Node::Brackets => self.brackets = true,
            Node::Roman | Node::RomanLower => self.roman = true,
            Node::Exponent if self.exponent => return exec_err!("cannot use \"EEEE\" twice"),
            Node::Exponent if any_sign || self.blank || self.fill || self.roman || self.multiply => {
                return exec_err!("\"EEEE\" is incompatible with other formats");
            }
            Node::Exponent => self.exponent = true,
            _ => {}
        }
        Ok(())
    }
}

/// A parsed template: its nodes and its layout.
struct Template(Vec<Node>, Layout);

fn parse(text: &str) -> DfResult<Template> {
    let (mut nodes, mut layout) = (Vec::with_capacity(text.len()), Layout::default());
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if let Some((len, node)) = keyword(rest) {
            layout.add(node)?;
            nodes.push(node);
            rest = &rest[len..];
        } else if c == '"' {
            // Quoted text runs to the closing quote; in it a backslash takes the next character.
            let mut chars = rest[1..].chars();
            while let Some(c) = chars.next() {
                let c = match c {
                    '"' => break,
                    '\\' => chars.next().unwrap_or('\\'),
                    c => c,
                };
                nodes.push(Node::Text(c));
            }
            rest = chars.as_str();
        } else {
            // Outside quotes a backslash only escapes a double quote.
            let escaped = c == '\\' && rest[1..].starts_with('"');
            nodes.push(Node::Text(if escaped { '"' } else { c }));
            rest = &rest[if escaped { 2 } else { c.len_utf8() }..];
        }
    }
    Ok(Template(nodes, layout))
}

/// Writes `value` formatted by `template` into `out`; `number` is scratch space.
fn render(template: &Template, value: Value, number: &mut String, out: &mut String) -> DfResult<()> {
    let (nodes, mut layout) = (&template.0, template.1);
    out.clear();
    number.clear();
    if nodes.is_empty() {
        return Ok(());
    } else if layout.exponent {
        // Postgres writes only the number, whatever else the template holds.
        write_exponent(value, &layout, number, out);
        return Ok(());
    }
    let (sign, blanks) = if layout.roman {
        write_roman(roman_value(value, number)?, number);
        // Nothing but `FM` matters next to `RN`, and a numeral has no sign.
        layout = Layout { fill: layout.fill, roman: true, ..Layout::default() };
        (0, 0)
    } else {
        let (negative, int_len) = plain_digits(value, &mut layout, number)?;
        if int_len > layout.pre {
            // Too wide: `#` for each digit position.
            number.clear();
            number.extend(repeat_n('#', layout.pre).chain(['.']).chain(repeat_n('#', layout.post)));
        }
        (if negative { b'-' } else { b'+' }, layout.pre.saturating_sub(int_len))
    };
    *out = Run::new(layout, number.as_str(), sign, blanks).run(nodes, take(out))?;
    Ok(())
}

/// |value| (times 10^multi for `V`) with `layout.post` decimals as its type's `to_char` writes
/// it; returns whether it is negative and its digits before the point.
fn plain_digits(value: Value, layout: &mut Layout, number: &mut String) -> DfResult<(bool, usize)> {
    let multi = if layout.multiply { layout.multi } else { 0 };
    layout.pre += multi as usize;
    let (unscaled, scale) = match value {
        Value::Int8(v) if 10i64.checked_pow(multi).and_then(|m| v.checked_mul(m)).is_none() => {
            return exec_err!("bigint out of range");
        }
        Value::Int8(v) => (i128::from(v), 0),
        Value::Numeric(unscaled, scale) => (unscaled, scale),
        Value::Float4(v) => {
            let v = if layout.multiply { v * 10f64.powf(f64::from(multi)) as f32 } else { v };
            return Ok(float_digits(f64::from(v), FLOAT4_DIGITS, layout, number));
        }
        Value::Float8(v) => {
            let v = if layout.multiply { v * 10f64.powf(f64::from(multi)) } else { v };
            return Ok(float_digits(v, FLOAT8_DIGITS, layout, number));
        }
    };
    let int_len =
        decimal_digits(unscaled.unsigned_abs(), i64::from(scale) - i64::from(multi), layout.post, number);
    Ok((unscaled < 0 && number.bytes().any(|b| matches!(b, b'1'..=b'9')), int_len))
}

/// `magnitude * 10^-scale` rounded half away from zero to `post` decimals, with one digit at
/// least before the point; returns the count of digits before the point.
fn decimal_digits(magnitude: u128, scale: i64, post: usize, number: &mut String) -> usize {
    let _ = write!(number, "{magnitude}");
    number.extend(repeat_n('0', (-scale).max(0) as usize));
    let (scale, post_scale) = (scale.max(0), post as i64);
    if scale > post_scale {
        // Drop the extra decimals; the first dropped digit (0 if beyond the digits) rounds.
        let cut = number.len().checked_sub((scale - post_scale) as usize);
        let round_up = cut.is_some_and(|cut| number.as_bytes()[cut] >= b'5');
        number.truncate(cut.unwrap_or(0));
        if round_up {
            // Add one: "199" becomes "200", "" becomes "1".
            let nines = number.bytes().rev().take_while(|&b| b == b'9').count();
            number.truncate(number.len() - nines);
            let last = number.pop().map_or('1', |d| char::from(d as u8 + 1));
            number.extend([last].into_iter().chain(repeat_n('0', nines)));
        }
    }
    number.extend(repeat_n('0', (post_scale - scale).max(0) as usize));
    while number.len() <= post {
        number.insert(0, '0');
    }
    let int_len = number.len() - post;
    let leading = number.bytes().take(int_len - 1).take_while(|&b| b == b'0').count();
    number.replace_range(..leading, "");
    if post > 0 {
        number.insert(number.len() - post, '.');
    }
    int_len - leading
}

/// |value| as C's `%.*f` writes it, with fewer decimals when the digits before the point leave
/// fewer than `max_digits` significant ones; NaN and infinity as Postgres' printf writes them.
fn float_digits(value: f64, max_digits: usize, layout: &mut Layout, number: &mut String) -> (bool, usize) {
    let magnitude = value.abs();
    for pass in 0..2 {
        let decimals = if pass == 0 { 0 } else { layout.post };
        number.clear();
        if magnitude.is_nan() {
            number.push_str("NaN");
        } else if magnitude.is_infinite() {
            number.push_str("Infinity");
        } else {
            // Rust, like glibc, writes the exact binary value rounded half to even.
            let _ = write!(number, "{magnitude:.decimals$}");
        }
        if pass == 0 {
            layout.post = layout.post.min(max_digits.saturating_sub(number.len()));
        }
    }
    // C keeps the sign of -0.0 ("-0.0"), and so does Postgres' output.
    (!value.is_nan() && value.is_sign_negative(), number.find('.').unwrap_or(number.len()))
}

/// The integer a Roman numeral shows (`number` is scratch space, left empty).
fn roman_value(value: Value, number: &mut String) -> DfResult<i32> {
    let whole = match value {
        Value::Int8(v) => v,
        Value::Numeric(unscaled, scale) => {
            decimal_digits(unscaled.unsigned_abs(), i64::from(scale), 0, number);
            let whole = number.parse::<i64>().unwrap_or(i64::MAX);
            number.clear();
            if unscaled < 0 { -whole } else { whole }
        }
        // `as` saturates and takes NaN to 0: `#`s either way, as in Postgres.
        Value::Float4(v) => return Ok(f64::from(v).round_ties_even() as i32),
        Value::Float8(v) => return Ok(v.round_ties_even() as i32),
    };
    i32::try_from(whole).or_else(|_| exec_err!("integer out of range"))
}

/// Upper-case Roman numeral; `#`s outside 1..=3999.
fn write_roman(value: i32, out: &mut String) {
    const ONES: [&str; 10] = ["", "I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX"];
    const TENS: [&str; 10] = ["", "X", "XX", "XXX", "XL", "L", "LX", "LXX", "LXXX", "XC"];
    const HUNDREDS: [&str; 10] = ["", "C", "CC", "CCC", "CD", "D", "DC", "DCC", "DCCC", "CM"];
    match usize::try_from(value) {
        Ok(n @ 1..=3999) => {
            out.extend(repeat_n('M', n / 1000));
            out.push_str(HUNDREDS[n / 100 % 10]);
            out.push_str(TENS[n / 10 % 10]);
            out.push_str(ONES[n % 10]);
        }
        _ => out.extend(repeat_n('#', ROMAN_WIDTH)),
    }
}

/// `EEEE`: `int8` and `numeric` round half away from zero (9.999 with two decimals is
/// `10.00e+00`, as in Postgres); floats are C's `%+.*e`.
fn write_exponent(value: Value, layout: &Layout, digits: &mut String, out: &mut String) {
    let (unscaled, scale) = match value {
        Value::Int8(v) => (i128::from(v), 0),
        Value::Numeric(unscaled, scale) => (unscaled, i64::from(scale)),
        Value::Float4(v) if v.is_finite() => return c_exponent(f64::from(v), layout.post, out),
        Value::Float8(v) if v.is_finite() => return c_exponent(v, layout.post, out),
        // NaN and infinities: `#`s as wide as the output with a two-digit exponent.
        Value::Float4(_) | Value::Float8(_) => {
            out.push(' ');
            return out.extend(repeat_n('#', layout.pre).chain(['.']).chain(repeat_n('#', layout.post + 4)));
        }
    };
    out.push(if unscaled < 0 { '-' } else { ' ' });
    let magnitude = unscaled.unsigned_abs();
    let shift = magnitude.checked_ilog10().map_or(0, i64::from);
    decimal_digits(magnitude, shift, layout.post, digits);
    out.push_str(digits);
    let exponent = if magnitude == 0 { 0 } else { shift - scale };
    let _ = write!(out, "e{}{:02}", if exponent < 0 { '-' } else { '+' }, exponent.unsigned_abs());
}

fn c_exponent(value: f64, post: usize, out: &mut String) {
    out.push(if value.is_sign_negative() { '-' } else { ' ' });
    let start = out.len();
    // Rust writes `1.23e3` and `1.23e-3`, C `1.23e+03` and `1.23e-03`.
    let _ = write!(out, "{:.post$e}", value.abs());
    let e_at = start + out[start..].rfind('e').expect("exponent formatting writes an e");
    let exponent: i64 = out[e_at + 1..].parse().expect("exponent formatting writes an integer after e");
    out.truncate(e_at);
    let _ = write!(out, "e{}{:02}", if exponent < 0 { '-' } else { '+' }, exponent.unsigned_abs());
}

/// The walk over a template's nodes that writes one number (Postgres' `NUM_processor`).
/// `number` reads as NUL past its end; `sign` is `b'+'`, `b'-'`, or 0 for a numeral; `blanks`
/// digit positions are blank (or zero) before the first digit; with `FM`, `last_kept` is the
/// last character after the point worth writing; `cut` is where Postgres wrote a NUL for a
/// missing digit, which ends its output.
#[derive(Default)]
struct Run<'a> {
    layout: Layout,
    number: &'a str,
    sign: u8,
    blanks: usize,
    sign_wrote: bool,
    num_count: isize,
    /// Whether the last digit position wrote a digit (so a group separator writes `,`).
    num_in: bool,
    num_curr: usize,
    cursor: usize,
    last_kept: Option<usize>,
    /// Whether `FM` keeps the point but no digit after it.
    point_only: bool,
    cut: Option<usize>,
    out: String,
}

impl<'a> Run<'a> {
    fn new(mut layout: Layout, number: &'a str, sign: u8, blanks: usize) -> Self {
        layout.zero_start = layout.zero_start.saturating_sub(1);
        let sign_wrote = if layout.plus || layout.minus {
            // MI and SG write the sign themselves; PL alone leaves a minus to the digits.
            !layout.plus || layout.minus
        } else {
            layout.brackets &= sign == b'-' || !layout.fill;
            if layout.sign_first && layout.pre == layout.pre_sign_digits {
                (layout.sign_first, layout.sign_last) = (false, true);
            }
            sign == b'+' && layout.fill && !layout.sign_first && !layout.sign_last
        };
        let last_kept = if layout.fill && layout.point { last_kept(number, &layout, blanks) } else { None };
        let num_count = (layout.pre + layout.post) as isize - isize::from(sign_wrote || blanks > 0);
        let point_only = last_kept.is_some_and(|i| number.as_bytes()[i] == b'.');
        Self { layout, number, sign, blanks, sign_wrote, num_count, last_kept, point_only, ..Self::default() }
    }

    /// Writes the number into `out` (emptied first) and gives it back.
    fn run(mut self, nodes: &[Node], mut out: String) -> DfResult<String> {
        out.clear();
        self.out = out;
        let (fill, sign) = (self.layout.fill, self.sign);
        for &node in nodes {
            match node {
                Node::Text(c) => self.out.push(c),
                Node::Nine | Node::Zero | Node::Point if !self.layout.roman => self.digit(node),
                Node::Group if self.num_in => self.out.push(','),
                Node::Group if !fill => self.out.push(' '),
                Node::Currency => self.out.push(' '),
                Node::Roman | Node::RomanLower => {
                    let lower = node == Node::RomanLower;
                    let numeral = self.number.chars().map(|c| if lower { c.to_ascii_lowercase() } else { c });
                    let padding = if fill { 0 } else { ROMAN_WIDTH.saturating_sub(self.number.len()) };
                    self.out.extend(repeat_n(' ', padding).chain(numeral));
                }
                Node::Ordinal | Node::OrdinalLower => self.ordinal(node == Node::Ordinal)?,
                Node::Minus if sign == b'-' => self.out.push('-'),
                Node::Plus if sign == b'+' => self.out.push('+'),
                Node::Minus | Node::Plus if !fill => self.out.push(' '),
                Node::SignBoth => self.write_char(sign),
                _ => {}
            }
        }
        if let Some(cut) = self.cut {
            self.out.truncate(cut);
        }
        Ok(self.out)
    }

    fn at(&self, i: usize) -> u8 {
        self.number.as_bytes().get(i).copied().unwrap_or(0)
    }

    fn write_char(&mut self, c: u8) {
        if c != 0 {
            self.out.push(char::from(c));
        } else if self.cut.is_none() {
            self.cut = Some(self.out.len());
        }
    }

    /// A zero before the point that is written blank: 0.1 with `9.9` is `  .1`.
    fn predec_space(&self) -> bool {
        !self.layout.zero && self.cursor == 0 && self.at(0) == b'0' && self.layout.post != 0
    }

    /// One digit position (`9`, `0`, or the point), with a sign before or after it.
    fn digit(&mut self, node: Node) {
        self.num_in = false;
        let (curr, Layout { zero, zero_start, fill, .. }) = (self.num_curr, self.layout);
        let at_digits = curr >= self.blanks || (zero && zero_start == curr);
        if !self.sign_wrote && at_digits && (!self.predec_space() || self.point_only) {
            self.sign_before();
        }
        let c = self.at(self.cursor);
        if curr < self.blanks {
            // Blanks, or zeros from the first `0` on.
            let padding = if zero && zero_start <= curr { Some('0') } else { (!fill).then_some(' ') };
            self.num_in = padding == Some('0');
            self.out.extend(padding);
        } else {
            if c == b'.' {
                // Even FM keeps the point with no digit after it (`FM9.99` of 1 is `1.`).
                self.out.push('.');
            } else if self.last_kept.is_some_and(|last| self.cursor > last) && node != Node::Zero {
                // FM drops a trailing zero that a `9` stands for.
            } else if self.predec_space() {
                self.out.extend(if fill { self.point_only.then_some('0') } else { Some(' ') });
            } else {
                self.write_char(c);
                self.num_in = true;
            }
            self.cursor += usize::from(c != 0);
        }
        self.sign_after(curr);
        self.num_curr += 1;
    }

    fn sign_before(&mut self) {
        let sign = char::from(self.sign);
        let written = match self.layout {
            Layout { sign_first: true, .. } => Some(sign),
            Layout { sign_last: true, .. } => return,
            Layout { brackets: true, .. } => Some(if sign == '+' { ' ' } else { '<' }),
            Layout { fill, .. } if sign == '+' => (!fill).then_some(' '),
            _ if sign == '-' => Some('-'),
            _ => return,
        };
        self.out.extend(written);
        self.sign_wrote = true;
    }

    /// After the last digit position: `PR`'s closing bracket, or a trailing `S` sign.
    fn sign_after(&mut self, curr: usize) {
        let end = if self.last_kept == Some(self.cursor) {
            curr as isize
        } else {
            self.num_count + isize::from(self.blanks > 0) + isize::from(self.layout.point)
        };
        let last = curr as isize + 1 == end;
        if last && self.sign_wrote && self.layout.brackets {
            self.out.push(if self.sign == b'+' { ' ' } else { '>' });
        } else if last && self.layout.sign_last {
            self.out.push(char::from(self.sign));
        }
    }

    /// `TH`/`th`: the ordinal suffix of a non-negative whole number.
    fn ordinal(&mut self, upper: bool) -> DfResult<()> {
        if self.layout.roman || self.at(0) == b'#' || self.sign == b'-' || self.layout.point {
            return Ok(());
        }
        let digits = self.number.as_bytes();
        let Some(&last) = digits.last().filter(|b| b.is_ascii_digit()) else {
            return exec_err!("\"{}\" is not a number", self.number);
        };
        let teen = digits.len() > 1 && digits[digits.len() - 2] == b'1';
        let suffix = ["th", "st", "nd", "rd"].get(usize::from(last - b'0')).copied().filter(|_| !teen);
        let suffix = suffix.unwrap_or("th");
        self.out.extend(suffix.chars().map(|c| if upper { c.to_ascii_uppercase() } else { c }));
        Ok(())
    }
}

/// With `FM`: the last non-zero character after the point, or the point itself, but not
/// before the last `0` pattern. `None` without a point.
fn last_kept(number: &str, layout: &Layout, blanks: usize) -> Option<usize> {
    let number = number.as_bytes();
    let point = number.iter().position(|&b| b == b'.')?;
    // The point is not '0', so this finds it at worst.
    let mut last = number.iter().rposition(|&b| b != b'0').unwrap_or(point);
    if layout.zero_end > blanks {
        last = last.max((number.len() - 1).min(layout.zero_end - blanks));
    }
    Some(last)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Decimal128Array, Float32Array, Float64Array, Int64Array};

    use super::*;

    /// `to_char` of a psql literal (`-12::int8`, `1.5::float4`, `-0.04::numeric`), or `ERROR: `
    /// and the error message.
    fn to_char(literal: &str, template: &str) -> String {
        let (value, kind) = literal.rsplit_once("::").expect("value::type");
        let scale = value.split_once('.').map_or(0, |(_, fraction)| fraction.len() as i8);
        let values: ArrayRef = match kind {
            "int8" => Arc::new(Int64Array::from(vec![value.parse::<i64>().expect("int8")])),
            "float4" => Arc::new(Float32Array::from(vec![value.parse::<f32>().expect("float4")])),
            "float8" => Arc::new(Float64Array::from(vec![value.parse::<f64>().expect("float8")])),
            _ => {
                let unscaled = value.replace('.', "").parse::<i128>().expect("numeric");
                let decimals = Decimal128Array::from(vec![unscaled]).with_precision_and_scale(38, scale);
                Arc::new(decimals.expect("scale"))
            }
        };
        match format_all(&values, &mut std::iter::once(Some(template))) {
            Ok(out) => out.as_string::<i32>().value(0).to_string(),
            Err(error) => format!("ERROR: {}", error.message()),
        }
    }

    /// Each expected string is what PostgreSQL 15.20 (C locale) printed for
    /// `SELECT to_char('<value>'::<type>, '<template>')`, or its error message.
    #[test]
    fn prints_what_postgres_prints() {
        let cases: &[&[(&str, &str, &str)]] = &[
            &[("0::int8", "9", " 0"), ("0::int8", "0.99", " 0.00"), ("0::int8", "9.99", "  .00")],
            &[("0::int8", "FM9.9", "0."), ("0.00::numeric", "FM999.990", ".000")],
            &[("1::int8", "FM9.99", "1."), ("1::int8", "FM9.00", "1.00"), ("12::int8", "9,999", "    12")],
            &[("-12::int8", "S999", " -12"), ("12::int8", "S999", " +12"), ("-12::int8", "999S", " 12-")],
            &[("-12::int8", "MI999", "- 12"), ("-12::int8", "999MI", " 12-"), ("12::int8", "PL999", "+  12")],
            &[("-12::int8", "PL999", "  -12"), ("-12::int8", "SG999", "- 12"), ("12::int8", "SG999", "+ 12")],
            &[("-12::int8", "999PR", " <12>"), ("12::int8", "999PR", "  12 ")],
            &[("-12::int8", "FM999PR", "<12>"), ("12::int8", "FM999PR", "12")],
            &[("-1234.56::numeric", "9,999.99", "-1,234.56")],
            &[("1234567.89::numeric", "9,999.99", " #,###.##"), ("12::int8", "0000", " 0012")],
            &[("-12::int8", "0000", "-0012"), ("123::int8", "99", " ##"), ("-123::int8", "99", "-##")],
            &[("1234.5::numeric", "9.9EEEE", " 1.2e+03"), ("-1234.5::numeric", "9.99EEEE", "-1.23e+03")],
            &[("9.999::numeric", "9.99EEEE", " 10.00e+00"), ("25::int8", "9EEEE", " 3e+01")],
            &[("0.000123::float8", "9.99EEEE", " 1.23e-04"), ("12::int8", "9V99", " ###")],
            &[("12.5::numeric", "99V9", " 125"), ("1994::int8", "RN", "        MCMXCIV")],
            &[("1994::int8", "FMRN", "MCMXCIV"), ("4::int8", "FMrn", "iv")],
            &[("4000::int8", "RN", "###############"), ("3.5::numeric", "FMRN", "IV")],
            &[("2.5::float8", "FMRN", "II"), ("1::int8", "FM999th", "1st"), ("3::int8", "FM999TH", "3RD")],
            &[("11::int8", "FM999th", "11th"), ("21::int8", "999th", "  21st")],
            &[("-21::int8", "999th", " -21"), ("12::int8", "\"Total: \"999\" items\"", "Total:   12 items")],
            &[("12::int8", "\"a\\\"b\"99", "a\"b 12"), ("12::int8", "\\\"99", "\" 12")],
            &[("123.456::float8", "999.99", " 123.46"), ("-123.456::float8", "999.99", "-123.46")],
            &[("0.125::float8", "9.99", "  .12"), ("0.125::numeric", "9.99", "  .13")],
            &[("-0::float8", "9.9", " -.0"), ("-0.04::numeric", "9.9", "  .0")],
            &[("NaN::float8", "999.99", " NaN"), ("Infinity::float8", "999.99", " ###.##")],
            &[("-Infinity::float8", "999PR", "<###>"), ("NaN::float8", "9.99EEEE", " #.######")],
            &[("NaN::float8", "RN", "###############"), ("123456.7::float4", "999999.99", " 123457")],
            &[("123456789.123456789::float8", "999999999.9999999999", " 123456789.123457")],
            &[("NaN::float4", "S999.9", "+NaN"), ("12::int8", "L999", "   12")],
            &[("1234567::int8", "FM9G999G999D00", "1,234,567.00"), ("-0.05::numeric", "FM90.99", "-0.05")],
            &[("-9223372036854775808::int8", "99999999999999999999", " -9223372036854775808")],
            &[("99999999999999999999999999999999999999::numeric", "9.99999EEEE", " 10.00000e+37")],
            &[("1::int8", "9.9.9", "ERROR: multiple decimal points")],
            &[("1::int8", "PR9", "ERROR: \"9\" must be ahead of \"PR\"")],
            &[("5000000000::int8", "RN", "ERROR: integer out of range")],
            &[("NaN::float8", "999th", "ERROR: \"NaN\" is not a number")],
        ];
        for &(literal, template, expected) in cases.iter().copied().flatten() {
            assert_eq!(to_char(literal, template), expected, "to_char({literal}, '{template}')");
        }
    }

    #[test]
    fn nulls_and_changing_templates() {
        let values: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None, Some(3), Some(4)]));
        let templates = [Some("FM9th"), Some("9"), None, Some("0.0")];
        let out = format_all(&values, &mut templates.into_iter()).expect("formats");
        let out: Vec<_> = out.as_string::<i32>().iter().collect();
        assert_eq!(out, [Some("1st"), None, None, Some(" 4.0")]);
    }
}
