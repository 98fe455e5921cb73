//! `EXCLUDE CURRENT ROW` in window frames, for batch queries and views alike.
//!
//! sqlparser 0.62 does not parse frame exclusions and DataFusion cannot evaluate them, so
//! Sabot rewrites them away before planning. On the tokens, `... EXCLUDE CURRENT ROW)` is
//! blanked and the window specification is marked with a leading window name
//! ([`MARKER`]); `EXCLUDE NO OTHERS` (the default) is blanked, `EXCLUDE GROUP` and
//! `EXCLUDE TIES` are refused. On the parsed statement, each marked call becomes an
//! expression over calls without exclusion:
//!
//! - a `ROWS` frame is split around the current row into the part before it and the part
//!   after it, and the call's results over the two are merged: `count` adds, `sum`, `min`
//!   and `max` combine ignoring an empty side, `avg` divides the merged sum by the merged
//!   count ([`AvgFrom`]), `first_value` / `last_value` take the first (last) non-empty
//!   part;
//! - a `RANGE` frame that holds the current row takes it out of the whole frame's result:
//!   `count` minus one, `sum` minus the row's value, `avg` from those two; `min`, `max`,
//!   `first_value` and `last_value` cannot be corrected so and are refused (0A000);
//! - ranking functions, `lag` and `lead` ignore frames, and so the exclusion.
//!
//! Views plan the rewritten query like any other, so the over-window operator maintains
//! each part incrementally.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Decimal128Array, Float64Array};
use datafusion::arrow::compute::kernels::cast::cast;
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Float64Type, Int64Type};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::sql::sqlparser::ast::{
    self, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, VisitMut, VisitorMut, WindowFrame,
    WindowFrameBound, WindowFrameUnits, WindowType,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Whitespace, Word};

use crate::common::{Error, Result, SqlState};

/// The window name that marks a specification whose frame excluded the current row.
const MARKER: &str = "__sabot_exclude_current_row";

/// Blanks frame exclusions on the tokens of a statement and marks the window
/// specifications that excluded the current row (see the module documentation).
pub fn mark_exclusions(tokens: &mut Vec<TokenWithSpan>) -> Result<()> {
    let mut at = 0;
    while at < tokens.len() {
        if !is_word(&tokens[at].token, "exclude") {
            at += 1;
            continue;
        }
        let next: Vec<usize> = significant_after(tokens, at).take(3).collect();
        let words = |names: &[&str]| {
            names.len() < next.len() + 1
                && names.iter().zip(&next).all(|(name, &i)| is_word(&tokens[i].token, name))
                && next.get(names.len()).is_some_and(|&i| tokens[i].token == Token::RParen)
        };
        let clause = if words(&["current", "row"]) {
            2
        } else if words(&["no", "others"]) {
            for &i in [at].iter().chain(&next[..2]) {
                tokens[i].token = Token::Whitespace(Whitespace::Space);
            }
            continue;
        } else if words(&["group"]) || words(&["ties"]) {
            return Err(Error::unsupported("EXCLUDE GROUP and EXCLUDE TIES in a window frame")
                .with_hint("EXCLUDE CURRENT ROW and EXCLUDE NO OTHERS are supported"));
        } else {
            at += 1;
            continue;
        };
        for &i in [at].iter().chain(&next[..clause]) {
            tokens[i].token = Token::Whitespace(Whitespace::Space);
        }
        let open = matching_open(tokens, next[clause])
            .ok_or_else(|| Error::new(SqlState::SyntaxError, "syntax error at or near \"EXCLUDE\""))?;
        if let Some(first) = significant_after(tokens, open).next()
            && matches!(&tokens[first].token, Token::Word(w) if w.keyword == datafusion::sql::sqlparser::keywords::Keyword::NoKeyword)
        {
            return Err(Error::unsupported("EXCLUDE CURRENT ROW in a window that refers to a named window")
                .with_hint("write the window's PARTITION BY and ORDER BY in the OVER clause"));
        }
        let marker = Token::Word(Word {
            value: MARKER.into(),
            quote_style: None,
            keyword: datafusion::sql::sqlparser::keywords::Keyword::NoKeyword,
        });
        let span = tokens[open].span;
        tokens.insert(open + 1, TokenWithSpan { token: Token::Whitespace(Whitespace::Space), span });
        tokens.insert(open + 1, TokenWithSpan { token: marker, span });
        at = next[clause] + 2;
    }
    Ok(())
}

fn is_word(token: &Token, name: &str) -> bool {
    matches!(token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(name))
}

fn significant_after(tokens: &[TokenWithSpan], at: usize) -> impl Iterator<Item = usize> + '_ {
    (at + 1..tokens.len()).filter(|&i| !matches!(tokens[i].token, Token::Whitespace(_)))
}

/// The `(` that the `)` at `close` closes.
fn matching_open(tokens: &[TokenWithSpan], close: usize) -> Option<usize> {
    let mut depth = 0usize;
    for i in (0..close).rev() {
        match tokens[i].token {
            Token::RParen => depth += 1,
            Token::LParen if depth == 0 => return Some(i),
            Token::LParen => depth -= 1,
            _ => {}
        }
    }
    None
}

/// Rewrites every marked window call in `statement` (see the module documentation).
pub fn rewrite_exclusions<V: VisitMut>(statement: &mut V) -> Result<()> {
    match VisitMut::visit(statement, &mut Exclusions) {
        ControlFlow::Break(error) => Err(error),
        ControlFlow::Continue(()) => Ok(()),
    }
}

struct Exclusions;

impl VisitorMut for Exclusions {
    type Break = Error;

    /// Named windows (`WINDOW w AS (... EXCLUDE CURRENT ROW)`) are inlined into the calls
    /// that use them, which the rewrite then sees.
    fn pre_visit_query(&mut self, query: &mut ast::Query) -> ControlFlow<Error> {
        let marked = inline_marked_windows(query.body.as_mut());
        if !marked.is_empty() {
            use_marked_windows(&mut query.order_by, &marked);
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<Error> {
        let Expr::Function(function) = expr else { return ControlFlow::Continue(()) };
        let Some(WindowType::WindowSpec(spec)) = &mut function.over else { return ControlFlow::Continue(()) };
        if spec.window_name.as_ref().is_none_or(|name| name.value != MARKER) {
            return ControlFlow::Continue(());
        }
        spec.window_name = None;
        match rewrite_call(function) {
            Ok(Some(rewritten)) => *expr = rewritten,
            Ok(None) => {}
            Err(error) => return ControlFlow::Break(error),
        }
        ControlFlow::Continue(())
    }
}

/// Inlines the marked named windows of `body`'s SELECTs into their calls; returns those
/// of a SELECT that is the whole body (its query's ORDER BY may use them too).
fn inline_marked_windows(body: &mut ast::SetExpr) -> Vec<(Ident, ast::WindowSpec)> {
    match body {
        ast::SetExpr::SetOperation { left, right, .. } => {
            inline_marked_windows(left);
            inline_marked_windows(right);
            Vec::new()
        }
        ast::SetExpr::Select(select) => {
            let marked: Vec<(Ident, ast::WindowSpec)> = select
                .named_window
                .iter()
                .filter_map(|ast::NamedWindowDefinition(name, expr)| match expr {
                    ast::NamedWindowExpr::WindowSpec(spec)
                        if spec.window_name.as_ref().is_some_and(|n| n.value == MARKER) =>
                    {
                        Some((name.clone(), spec.clone()))
                    }
                    _ => None,
                })
                .collect();
            if marked.is_empty() {
                return marked;
            }
            use_marked_windows(&mut select.projection, &marked);
            use_marked_windows(&mut select.having, &marked);
            select.named_window.retain(|ast::NamedWindowDefinition(name, _)| {
                !marked.iter().any(|(n, _)| n.value == name.value)
            });
            marked
        }
        _ => Vec::new(),
    }
}

/// Replaces `OVER name` by the marked window `name` stands for, in `node`.
fn use_marked_windows<V: VisitMut>(node: &mut V, marked: &[(Ident, ast::WindowSpec)]) {
    let _ = ast::visit_expressions_mut(node, |expr| {
        if let Expr::Function(function) = expr
            && let Some(WindowType::NamedWindow(name)) = &function.over
            && let Some((_, spec)) = marked.iter().find(|(n, _)| n.value == name.value)
        {
            function.over = Some(WindowType::WindowSpec(spec.clone()));
        }
        ControlFlow::<()>::Continue(())
    });
}

/// A bound's place relative to the current row, in rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Place {
    UnboundedPreceding,
    At(i128),
    UnboundedFollowing,
}

fn place(bound: &WindowFrameBound) -> Result<Place> {
    let offset = |expr: &Expr| -> Result<i128> {
        match expr {
            Expr::Value(value) => match &value.value {
                ast::Value::Number(n, _) => n.parse::<i128>().ok(),
                _ => None,
            },
            _ => None,
        }
        .ok_or_else(|| Error::unsupported(format!("EXCLUDE CURRENT ROW with the frame offset {expr}")))
    };
    Ok(match bound {
        WindowFrameBound::CurrentRow => Place::At(0),
        WindowFrameBound::Preceding(None) => Place::UnboundedPreceding,
        WindowFrameBound::Following(None) => Place::UnboundedFollowing,
        WindowFrameBound::Preceding(Some(n)) => Place::At(-offset(n)?),
        WindowFrameBound::Following(Some(n)) => Place::At(offset(n)?),
    })
}

fn bound(place: Place) -> WindowFrameBound {
    let number = |n: i128| Box::new(Expr::value(ast::Value::Number(n.to_string(), false)));
    match place {
        Place::UnboundedPreceding => WindowFrameBound::Preceding(None),
        Place::UnboundedFollowing => WindowFrameBound::Following(None),
        Place::At(0) => WindowFrameBound::CurrentRow,
        Place::At(n) if n < 0 => WindowFrameBound::Preceding(Some(number(-n))),
        Place::At(n) => WindowFrameBound::Following(Some(number(n))),
    }
}

/// The functions whose result the frame does not change.
const FRAMELESS: [&str; 8] =
    ["row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile", "lag", "lead"];

/// The expression a marked call becomes; None when the exclusion changes nothing.
fn rewrite_call(function: &ast::Function) -> Result<Option<Expr>> {
    let name = function.name.0.last().and_then(|part| part.as_ident()).map(|i| i.value.to_ascii_lowercase());
    let name = name.unwrap_or_default();
    if FRAMELESS.contains(&name.as_str()) {
        return Ok(None);
    }
    let Some(WindowType::WindowSpec(spec)) = &function.over else { return Ok(None) };
    let Some(frame) = &spec.window_frame else { return Ok(None) };
    let start = place(&frame.start_bound)?;
    let end = place(frame.end_bound.as_ref().unwrap_or(&WindowFrameBound::CurrentRow))?;
    if !(start <= Place::At(0) && end >= Place::At(0)) {
        return Ok(None);
    }
    let calls = Calls { function, name: &name, units: frame.units };
    let text = match frame.units {
        WindowFrameUnits::Rows => {
            let before = (start < Place::At(0)).then(|| (start, end.min(Place::At(-1))));
            let after = (end > Place::At(0)).then(|| (start.max(Place::At(1)), end));
            match (before, after) {
                (None, None) => calls.empty((start, end))?,
                (Some(part), None) | (None, Some(part)) => calls.call(part, None, None),
                (Some(before), Some(after)) => calls.merged(before, after)?,
            }
        }
        WindowFrameUnits::Range => calls.without_current((start, end))?,
        WindowFrameUnits::Groups => return Err(Error::unsupported("a GROUPS window frame")),
    };
    let dialect = PostgreSqlDialect {};
    let parsed = Parser::new(&dialect).try_with_sql(&text).and_then(|mut p| p.parse_expr());
    parsed
        .map(Some)
        .map_err(|e| Error::internal(format!("rewriting EXCLUDE CURRENT ROW produced {text}: {e}")))
}

type Part = (Place, Place);

/// Text for calls that share `function`'s window.
struct Calls<'a> {
    function: &'a ast::Function,
    name: &'a str,
    units: WindowFrameUnits,
}

impl Calls<'_> {
    /// The text of `function` over `part`, renamed to `name` (and without IGNORE NULLS)
    /// and with `argument` as its only argument where given.
    fn call(&self, part: Part, name: Option<&str>, argument: Option<FunctionArgExpr>) -> String {
        let mut call = self.function.clone();
        if let Some(WindowType::WindowSpec(spec)) = &mut call.over {
            spec.window_frame = Some(WindowFrame {
                units: self.units,
                start_bound: bound(part.0),
                end_bound: Some(bound(part.1)),
            });
        }
        if let Some(name) = name {
            call.name = ast::ObjectName::from(vec![Ident::new(name)]);
            call.null_treatment = None;
            if let FunctionArguments::List(list) = &mut call.args {
                list.clauses.clear();
            }
        }
        if let (Some(argument), FunctionArguments::List(list)) = (argument, &mut call.args) {
            list.args = vec![FunctionArg::Unnamed(argument)];
        }
        Expr::Function(call).to_string()
    }

    /// The first argument.
    fn argument(&self) -> Result<FunctionArgExpr> {
        match &self.function.args {
            FunctionArguments::List(list) => match list.args.first() {
                Some(FunctionArg::Unnamed(argument)) => Ok(argument.clone()),
                _ => Err(self.refused()),
            },
            _ => Err(self.refused()),
        }
    }

    fn refused(&self) -> Error {
        Error::unsupported(format!("EXCLUDE CURRENT ROW with {}", self.function.name))
            .with_hint("it is supported with count, sum, avg, min, max, first_value and last_value")
    }

    /// The call over a frame that held only the current row, now excluded.
    fn empty(&self, part: Part) -> Result<String> {
        let over = self.call(part, None, None);
        match self.name {
            "count" => Ok(format!("CASE WHEN false THEN {over} ELSE 0 END")),
            "sum" | "avg" | "min" | "max" | "first_value" | "last_value" => {
                Ok(format!("CASE WHEN false THEN {over} END"))
            }
            _ => Err(self.refused()),
        }
    }

    /// The call's result over the two parts of a ROWS frame.
    fn merged(&self, before: Part, after: Part) -> Result<String> {
        let (b, a) = (self.call(before, None, None), self.call(after, None, None));
        let sum = |b: &str, a: &str| {
            format!("CASE WHEN {b} IS NULL THEN {a} WHEN {a} IS NULL THEN {b} ELSE {b} + {a} END")
        };
        Ok(match self.name {
            "count" => format!("({b} + {a})"),
            "sum" => sum(&b, &a),
            "min" | "max" => {
                let op = if self.name == "min" { "<=" } else { ">=" };
                format!(
                    "CASE WHEN {b} IS NULL THEN {a} WHEN {a} IS NULL OR {b} {op} {a} THEN {b} ELSE {a} END"
                )
            }
            "avg" => {
                let x = self.argument()?;
                let sums = sum(&self.call(before, Some("sum"), None), &self.call(after, Some("sum"), None));
                let counts = format!(
                    "{} + {}",
                    self.call(before, Some("count"), None),
                    self.call(after, Some("count"), None)
                );
                format!("sabot_avg_from({sums}, {counts}, {x})")
            }
            "first_value" | "last_value" => {
                let counted = match self.ignores_nulls() {
                    true => self.argument()?,
                    false => FunctionArgExpr::Wildcard,
                };
                let (first, second) =
                    if self.name == "first_value" { (before, after) } else { (after, before) };
                let nonempty = self.call(first, Some("count"), Some(counted));
                let (first, second) = (self.call(first, None, None), self.call(second, None, None));
                format!("CASE WHEN {nonempty} > 0 THEN {first} ELSE {second} END")
            }
            _ => return Err(self.refused()),
        })
    }

    /// The call's result over a RANGE frame holding the current row, without the row.
    fn without_current(&self, part: Part) -> Result<String> {
        let argument = self.argument()?;
        let count = match &argument {
            FunctionArgExpr::Wildcard => format!("({} - 1)", self.call(part, Some("count"), None)),
            x => format!(
                "({} - CASE WHEN {x} IS NULL THEN 0 ELSE 1 END)",
                self.call(part, Some("count"), None)
            ),
        };
        let sum = format!(
            "CASE WHEN {x} IS NULL THEN {s} WHEN {count} = 0 THEN NULL ELSE {s} - {x} END",
            x = argument,
            s = self.call(part, Some("sum"), None),
        );
        Ok(match self.name {
            "count" => count,
            "sum" => sum,
            "avg" => format!("sabot_avg_from({sum}, {count}, {argument})"),
            _ => {
                return Err(Error::unsupported(format!(
                    "EXCLUDE CURRENT ROW with {} over a RANGE frame",
                    self.function.name
                ))
                .with_hint("use a ROWS frame"));
            }
        })
    }

    fn ignores_nulls(&self) -> bool {
        self.function.null_treatment == Some(ast::NullTreatment::IgnoreNulls)
            || matches!(&self.function.args, FunctionArguments::List(list)
                if list.clauses.iter().any(|c| matches!(c, ast::FunctionArgumentClause::IgnoreOrRespectNulls(ast::NullTreatment::IgnoreNulls))))
    }
}

/// `sabot_avg_from(sum, count, value)`: `sum / count` in the type `avg(value)` has (NULL
/// when `count` is 0), as DataFusion's `avg` computes it: floating point for numbers,
/// `DECIMAL(p + 4, s + 4)` truncated for decimals.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct AvgFrom {
    signature: Signature,
}

impl Default for AvgFrom {
    fn default() -> Self {
        AvgFrom { signature: Signature::any(3, Volatility::Immutable) }
    }
}

/// Registers `sabot_avg_from`.
pub fn register(ctx: &datafusion::execution::context::SessionContext) {
    ctx.register_udf(ScalarUDF::new_from_impl(AvgFrom::default()));
}

impl ScalarUDFImpl for AvgFrom {
    fn name(&self) -> &str {
        "sabot_avg_from"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, types: &[DataType]) -> datafusion::common::Result<DataType> {
        match &types[2] {
            DataType::Decimal128(p, s) => Ok(DataType::Decimal128((*p + 4).min(38), (*s + 4).min(38))),
            t if t.is_numeric() || t.is_null() => Ok(DataType::Float64),
            t => datafusion::common::plan_err!("EXCLUDE CURRENT ROW with avg over {t} is not supported"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> datafusion::common::Result<ColumnarValue> {
        let rows = args.number_rows;
        let sum = args.args[0].to_array(rows)?;
        let count = cast(&args.args[1].to_array(rows)?, &DataType::Int64)?;
        let count = count.as_primitive::<Int64Type>();
        let result: ArrayRef = match args.return_field.data_type() {
            DataType::Decimal128(p, s) => {
                let sum = match sum.data_type() {
                    DataType::Decimal128(..) => sum,
                    _ => cast(&sum, &DataType::Decimal128(38, 0))?,
                };
                let sum_scale = match sum.data_type() {
                    DataType::Decimal128(_, scale) => *scale,
                    _ => 0,
                };
                let factor = 10i128.pow(u32::try_from(*s - sum_scale).unwrap_or(0));
                let sum = sum.as_primitive::<Decimal128Type>();
                let values = (0..rows).map(|i| {
                    (sum.is_valid(i) && count.is_valid(i) && count.value(i) != 0)
                        .then(|| sum.value(i).checked_mul(factor).map(|v| v / i128::from(count.value(i))))
                        .flatten()
                });
                Arc::new(values.collect::<Decimal128Array>().with_precision_and_scale(*p, *s)?)
            }
            _ => {
                let sum = cast(&sum, &DataType::Float64)?;
                let sum = sum.as_primitive::<Float64Type>();
                let values = (0..rows).map(|i| {
                    (sum.is_valid(i) && count.is_valid(i) && count.value(i) != 0)
                        .then(|| sum.value(i) / count.value(i) as f64)
                });
                Arc::new(values.collect::<Float64Array>())
            }
        };
        Ok(ColumnarValue::Array(result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        match crate::sql::parse(sql).expect("parses").remove(0) {
            crate::sql::Statement::Sql(statement) => statement.to_string(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rows_frames_split_around_the_current_row() {
        let sql = rewritten(
            "SELECT count(v) OVER (PARTITION BY k ORDER BY t ROWS BETWEEN 2 PRECEDING AND 1 FOLLOWING EXCLUDE CURRENT ROW) FROM x",
        );
        assert!(sql.contains("ROWS BETWEEN 2 PRECEDING AND 1 PRECEDING"), "{sql}");
        assert!(sql.contains("ROWS BETWEEN 1 FOLLOWING AND 1 FOLLOWING"), "{sql}");
        let sql = rewritten(
            "SELECT sum(v) OVER (ORDER BY t ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW EXCLUDE CURRENT ROW) FROM x",
        );
        assert!(sql.contains("ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING"), "{sql}");
        assert!(!sql.contains(MARKER), "{sql}");
    }

    #[test]
    fn no_others_is_the_default_and_group_is_refused() {
        let sql = rewritten("SELECT sum(v) OVER (ORDER BY t ROWS 2 PRECEDING EXCLUDE NO OTHERS) FROM x");
        assert!(
            sql.contains("ROWS BETWEEN 2 PRECEDING AND CURRENT ROW") || sql.contains("ROWS 2 PRECEDING"),
            "{sql}"
        );
        let error = crate::sql::parse("SELECT sum(v) OVER (ORDER BY t ROWS 2 PRECEDING EXCLUDE TIES) FROM x")
            .expect_err("refused");
        assert_eq!(error.sqlstate(), SqlState::FeatureNotSupported);
        let error = crate::sql::parse(
            "SELECT min(v) OVER (ORDER BY t RANGE UNBOUNDED PRECEDING EXCLUDE CURRENT ROW) FROM x",
        )
        .expect_err("refused");
        assert_eq!(error.sqlstate(), SqlState::FeatureNotSupported);
    }
}
