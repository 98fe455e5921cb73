//! Binding of the window table functions `TUMBLE`, `HOP` and `CUMULATE` (DESIGN §5 step 2).
//!
//! `FROM TUMBLE(bid, date_time, INTERVAL '10' SECOND)` is a DataFusion table function
//! call: [`WindowFunction`] resolves the relation and time column and returns a
//! [`WindowTable`], whose schema is the relation's columns plus `window_start` and
//! `window_end`. A batch query scans it (the relation's rows, windowed by the kernel in
//! `common::window`); the streaming planner recognises it in a `TableScan` and plans the
//! relation's change stream followed by a `WindowTvf` node.
//!
//! Flink's form `TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' MINUTES))` is
//! rewritten to the RisingWave form on the token stream before parsing
//! ([`rewrite_flink_windows`]).

use std::ops::ControlFlow;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableFunctionImpl, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::sql::sqlparser::ast::{
    Expr as AstExpr, FunctionArg, FunctionArgExpr, Statement, TableAlias, TableFactor, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Whitespace, Word};

use crate::catalog::TableDesc;
use crate::common::window::{WindowKind, WindowSpec, windowed_columns};
use crate::common::{Error, Result, SqlState};

/// Finds a relation by schema (None: the default one) and name: its description and the
/// provider that reads its committed rows.
pub type RelationResolver =
    Arc<dyn Fn(Option<&str>, &str) -> Result<(Arc<TableDesc>, Arc<dyn TableProvider>)> + Send + Sync>;

/// Registers TUMBLE, HOP, CUMULATE and SESSION (see `session_window`).
pub fn register(ctx: &SessionContext, resolve: RelationResolver) {
    for kind in [WindowKind::Tumble, WindowKind::Hop, WindowKind::Cumulate] {
        let function = WindowFunction { kind: Some(kind), resolve: resolve.clone() };
        ctx.register_udtf(&kind.name().to_ascii_lowercase(), Arc::new(function));
    }
    ctx.register_udtf("session", Arc::new(WindowFunction { kind: None, resolve }));
}

/// One window table function; `kind` None is SESSION.
struct WindowFunction {
    kind: Option<WindowKind>,
    resolve: RelationResolver,
}

impl std::fmt::Debug for WindowFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowFunction").field("kind", &self.kind).finish()
    }
}

impl TableFunctionImpl for WindowFunction {
    fn call_with_args(
        &self,
        args: datafusion::catalog::TableFunctionArgs,
    ) -> DfResult<Arc<dyn TableProvider>> {
        let Some(kind) = self.kind else {
            let args = args.exprs();
            let Some(Expr::Column(relation)) = args.first() else {
                return Err(DataFusionError::from(Error::new(
                    SqlState::InvalidParameterValue,
                    "invalid arguments to SESSION: its first argument must name a table, source or materialized view",
                )));
            };
            let schema = relation.relation.as_ref().map(|r| r.table());
            let (desc, input) = (self.resolve)(schema, &relation.name).map_err(DataFusionError::from)?;
            let table = super::session_window::SessionTable::bind(args, desc, input)
                .map_err(DataFusionError::from)?;
            return Ok(Arc::new(table));
        };
        let table = WindowTable::bind(kind, args.exprs(), &self.resolve).map_err(DataFusionError::from)?;
        Ok(Arc::new(table))
    }
}

/// A relation seen through a window table function.
#[derive(Debug)]
pub struct WindowTable {
    pub relation: Arc<TableDesc>,
    /// Over the relation's visible columns.
    pub spec: WindowSpec,
    input: Arc<dyn TableProvider>,
    schema: SchemaRef,
}

impl WindowTable {
    fn bind(kind: WindowKind, args: &[Expr], resolve: &RelationResolver) -> Result<WindowTable> {
        let names = kind.interval_arguments();
        if args.len() != names.len() + 2 && args.len() != names.len() + 3 {
            return Err(Error::new(
                SqlState::UndefinedFunction,
                format!(
                    "{} takes {} or {} arguments, not {}",
                    kind.name(),
                    names.len() + 2,
                    names.len() + 3,
                    args.len()
                ),
            )
            .with_hint(format!(
                "{}(relation, time column, {} [, offset])",
                kind.name(),
                names.join(", ")
            )));
        }
        let Expr::Column(relation) = &args[0] else {
            return Err(argument_error(
                kind,
                "its first argument must name a table, source or materialized view",
            ));
        };
        let schema = relation.relation.as_ref().map(|r| r.table());
        let (relation, input) = resolve(schema, &relation.name)?;
        let Expr::Column(time) = &args[1] else {
            return Err(argument_error(kind, "its second argument must name the time column"));
        };
        let visible = relation.visible_schema();
        let (time_column, time_field) = visible.column_with_name(&time.name).ok_or_else(|| {
            Error::new(
                SqlState::UndefinedColumn,
                format!("column \"{}\" does not exist in \"{}\"", time.name, relation.name),
            )
        })?;
        let intervals = args[2..].iter().map(|arg| interval_nanos(kind, arg)).collect::<Result<Vec<_>>>()?;
        let spec = WindowSpec::new(kind, time_column, time_field.data_type(), &intervals)?;
        for name in ["window_start", "window_end"] {
            if visible.column_with_name(name).is_some() {
                return Err(Error::new(
                    SqlState::DuplicateColumn,
                    format!(
                        "{} adds column \"{name}\", which \"{}\" already has",
                        kind.name(),
                        relation.name
                    ),
                ));
            }
        }
        let fields = visible.fields().iter().cloned().chain([
            Arc::new(Field::new("window_start", spec.time_type.clone(), false)),
            Arc::new(Field::new("window_end", spec.time_type.clone(), false)),
        ]);
        let schema = Arc::new(Schema::new(fields.collect::<Vec<_>>()));
        Ok(WindowTable { relation, spec, input, schema })
    }
}

fn argument_error(kind: WindowKind, what: &str) -> Error {
    Error::new(SqlState::InvalidParameterValue, format!("invalid arguments to {}: {what}", kind.name()))
}

/// An interval argument in nanoseconds; months are rejected (their length varies).
fn interval_nanos(kind: WindowKind, arg: &Expr) -> Result<i64> {
    let value = match arg {
        Expr::Literal(value, _) => value,
        Expr::Cast(cast) => match cast.expr.as_ref() {
            Expr::Literal(value, _) => value,
            _ => return Err(argument_error(kind, "its sizes must be constant intervals")),
        },
        _ => return Err(argument_error(kind, "its sizes must be constant intervals")),
    };
    let (months, days, nanos) = match value {
        ScalarValue::IntervalMonthDayNano(Some(v)) => (v.months as i64, v.days as i64, v.nanoseconds),
        ScalarValue::IntervalDayTime(Some(v)) => (0, v.days as i64, v.milliseconds as i64 * 1_000_000),
        ScalarValue::IntervalYearMonth(Some(months)) => (*months as i64, 0, 0),
        _ => return Err(argument_error(kind, &format!("its sizes must be intervals, not {value}"))),
    };
    if months != 0 {
        return Err(Error::unsupported(format!("a {} window measured in months or years", kind.name()))
            .with_hint("give the size in days or smaller units"));
    }
    days.checked_mul(86_400_000_000_000)
        .and_then(|d| d.checked_add(nanos))
        .ok_or_else(|| Error::new(SqlState::DatetimeFieldOverflow, "window interval is out of range"))
}

#[async_trait]
impl TableProvider for WindowTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let input = self.input.scan(state, None, &[], None).await?;
        let batches = collect(input, state.task_ctx()).await?;
        let at = self.schema.fields().len() - 2;
        let mut windowed = Vec::with_capacity(batches.len());
        for batch in batches {
            let assignment = self
                .spec
                .assign(batch.column(self.spec.time_column).as_ref())
                .map_err(DataFusionError::from)?;
            if assignment.rows.is_empty() {
                continue;
            }
            let columns =
                windowed_columns(batch.columns(), &assignment, at).map_err(DataFusionError::from)?;
            windowed.push(RecordBatch::try_new(self.schema.clone(), columns)?);
        }
        Ok(MemorySourceConfig::try_new_exec(&[windowed], self.schema.clone(), projection.cloned())?)
    }
}

/// A window call without an alias is named after its relation, as in RisingWave:
/// `FROM HOP(bid, ...)` reads as `bid`, so `bid.auction` resolves.
pub fn name_window_calls(statement: &mut Statement) {
    let _ = VisitMut::visit(statement, &mut NameWindowCalls);
}

struct NameWindowCalls;

impl VisitorMut for NameWindowCalls {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table { name, alias: alias @ None, args: Some(args), .. } = factor
            && let [part] = name.0.as_slice()
            && part.as_ident().is_some_and(|f| {
                WindowKind::from_name(&f.value).is_some() || f.value.eq_ignore_ascii_case("session")
            })
        {
            let relation = match args.args.first() {
                Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(AstExpr::Identifier(relation)))) => relation,
                Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(AstExpr::CompoundIdentifier(parts)))) => {
                    match parts.last() {
                        Some(relation) => relation,
                        None => return ControlFlow::Continue(()),
                    }
                }
                _ => return ControlFlow::Continue(()),
            };
            *alias =
                Some(TableAlias { explicit: true, name: relation.clone(), columns: Vec::new(), at: None });
        }
        ControlFlow::Continue(())
    }
}

/// Blanks every `EMIT ON WINDOW CLOSE` outside parentheses and returns where each was (the
/// index of its first token), so that the statement around it can be marked.
pub fn blank_emit_on_window_close(tokens: &mut [TokenWithSpan]) -> Vec<usize> {
    const CLAUSE: [&str; 4] = ["emit", "on", "window", "close"];
    let significant: Vec<usize> =
        (0..tokens.len()).filter(|&i| !matches!(tokens[i].token, Token::Whitespace(_))).collect();
    let mut found = Vec::new();
    let mut depth = 0usize;
    for (n, &i) in significant.iter().enumerate() {
        match tokens[i].token {
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            _ => {}
        }
        let words = significant.get(n..n + CLAUSE.len());
        let is_clause = words.is_some_and(|words| {
            words.iter().zip(CLAUSE).all(|(&k, word)| is_word_token(&tokens[k].token, &[word]))
        });
        if depth == 0 && is_clause {
            found.push(i);
            for &k in &significant[n..n + CLAUSE.len()] {
                tokens[k].token = Token::Whitespace(Whitespace::Space);
            }
        }
    }
    found
}

/// Flink's window syntax to RisingWave's, on the tokens of a statement:
/// `TABLE(TUMBLE(TABLE t, DESCRIPTOR(c), INTERVAL '1' MINUTES))` becomes
/// `TUMBLE(t, c, INTERVAL '1' MINUTE)`, and window function names are lower-cased so that
/// DataFusion finds them however they are spelled.
pub fn rewrite_flink_windows(tokens: &mut [TokenWithSpan]) {
    const FUNCTIONS: [&str; 4] = ["tumble", "hop", "cumulate", "session"];
    let significant: Vec<usize> =
        (0..tokens.len()).filter(|&i| !matches!(tokens[i].token, Token::Whitespace(_))).collect();
    let is_paren = |k: Option<&usize>| k.is_some_and(|&k| tokens[k].token == Token::LParen);
    let mut blank: Vec<usize> = Vec::new();
    let mut calls: Vec<(usize, usize, usize)> = Vec::new();
    for (n, &i) in significant.iter().enumerate() {
        let is_call = |at: usize| {
            significant.get(at).is_some_and(|&a| is_word_token(&tokens[a].token, &FUNCTIONS))
                && is_paren(significant.get(at + 1))
        };
        // TABLE ( fn ( ... ) ): drop the wrapper.
        if is_word_token(&tokens[i].token, &["table"])
            && is_paren(significant.get(n + 1))
            && is_call(n + 2)
            && let Some(close) = matching_paren(tokens, &significant, n + 1)
        {
            blank.extend([i, significant[n + 1], close]);
        }
        if is_call(n) {
            let Some(close) = matching_paren(tokens, &significant, n + 1) else { continue };
            calls.push((i, significant[n + 1], close));
        }
    }
    for (name, open, close) in calls {
        if let Token::Word(w) = &mut tokens[name].token {
            w.value = w.value.to_ascii_lowercase();
        }
        if let Token::Word(w) = &tokens[name].token {
            let function = w.value.clone();
            order_named_arguments(tokens, &function, open, close);
        }
        let inner: Vec<usize> =
            (open + 1..close).filter(|&k| !matches!(tokens[k].token, Token::Whitespace(_))).collect();
        flink_arguments(tokens, &inner, &mut blank);
    }
    for i in blank {
        tokens[i].token = Token::Whitespace(Whitespace::Space);
    }
}

/// Flink's named arguments (`DATA => TABLE t, TIMECOL => DESCRIPTOR(ts), SIZE => ...`) in
/// the positional order, names dropped: the tokens between `open` and `close` are
/// permuted in place. Calls with no names, or with a name the function does not have, are
/// left alone (DataFusion then reports them).
fn order_named_arguments(tokens: &mut [TokenWithSpan], function: &str, open: usize, close: usize) {
    let order: &[&str] = match function {
        "tumble" => &["data", "timecol", "size", "offset"],
        "hop" => &["data", "timecol", "slide", "size", "offset"],
        "cumulate" => &["data", "timecol", "step", "size", "offset"],
        _ => return,
    };
    let mut arguments: Vec<Vec<TokenWithSpan>> = vec![Vec::new()];
    let mut depth = 0usize;
    for token in &tokens[open + 1..close] {
        match token.token {
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            Token::Comma if depth == 0 => {
                arguments.push(Vec::new());
                continue;
            }
            _ => {}
        }
        arguments.last_mut().expect("one argument at least").push(token.clone());
    }
    let mut ranked = Vec::with_capacity(arguments.len());
    for mut argument in arguments {
        let significant: Vec<usize> =
            (0..argument.len()).filter(|&k| !matches!(argument[k].token, Token::Whitespace(_))).collect();
        let (Some(&name_at), Some(&arrow_at)) = (significant.first(), significant.get(1)) else { return };
        let Token::Word(name) = &argument[name_at].token else { return };
        if argument[arrow_at].token != Token::RArrow {
            return;
        }
        let Some(rank) = order.iter().position(|o| name.value.eq_ignore_ascii_case(o)) else { return };
        argument[name_at].token = Token::Whitespace(Whitespace::Space);
        argument[arrow_at].token = Token::Whitespace(Whitespace::Space);
        ranked.push((rank, argument));
    }
    ranked.sort_by_key(|(rank, _)| *rank);
    let mut at = open + 1;
    for (i, (_, argument)) in ranked.into_iter().enumerate() {
        if i > 0 {
            tokens[at] = TokenWithSpan::wrap(Token::Comma);
            at += 1;
        }
        for token in argument {
            tokens[at] = token;
            at += 1;
        }
    }
    debug_assert_eq!(at, close, "the arguments keep their tokens");
}

/// Inside a window call (`args`: significant token positions between its parentheses):
/// `TABLE t` → `t`, `DESCRIPTOR(c)` → `c`, `INTERVAL 'n' MINUTES` → `... MINUTE`.
fn flink_arguments(tokens: &mut [TokenWithSpan], args: &[usize], blank: &mut Vec<usize>) {
    let mut depth = 0usize;
    for (n, &i) in args.iter().enumerate() {
        match tokens[i].token {
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth != 0 {
            continue;
        }
        let at_argument_start = n == 0 || tokens[args[n - 1]].token == Token::Comma;
        if at_argument_start && is_word_token(&tokens[i].token, &["table"]) && args.get(n + 1).is_some() {
            blank.push(i);
        }
        if at_argument_start
            && is_word_token(&tokens[i].token, &["descriptor"])
            && args.get(n + 1).is_some_and(|&o| tokens[o].token == Token::LParen)
            && args.get(n + 3).is_some_and(|&c| tokens[c].token == Token::RParen)
        {
            blank.extend([i, args[n + 1], args[n + 3]]);
        }
        let after_literal = n >= 2
            && matches!(tokens[args[n - 1]].token, Token::SingleQuotedString(_))
            && is_word_token(&tokens[args[n - 2]].token, &["interval"]);
        if after_literal && is_word_token(&tokens[i].token, &["days", "hours", "minutes", "seconds"]) {
            let Token::Word(w) = &tokens[i].token else { continue };
            let singular = w.value[..w.value.len() - 1].to_string();
            tokens[i].token =
                Token::Word(Word { keyword: keyword_of(&singular), value: singular, quote_style: None });
        }
    }
}

fn is_word_token(token: &Token, names: &[&str]) -> bool {
    matches!(token, Token::Word(w) if w.quote_style.is_none() && names.iter().any(|n| w.value.eq_ignore_ascii_case(n)))
}

fn keyword_of(word: &str) -> datafusion::sql::sqlparser::keywords::Keyword {
    use datafusion::sql::sqlparser::keywords::Keyword;
    match word.to_ascii_uppercase().as_str() {
        "DAY" => Keyword::DAY,
        "HOUR" => Keyword::HOUR,
        "MINUTE" => Keyword::MINUTE,
        _ => Keyword::SECOND,
    }
}

/// The position of the `)` matching the `(` at `significant[open]`.
fn matching_paren(tokens: &[TokenWithSpan], significant: &[usize], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for &i in &significant[open..] {
        match tokens[i].token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::tokenizer::Tokenizer;

    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize_with_location().unwrap();
        rewrite_flink_windows(&mut tokens);
        let text: String = tokens.iter().map(|t| t.token.to_string()).collect();
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn flink_window_calls_become_risingwave_calls() {
        assert_eq!(
            rewritten("SELECT * FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' MINUTES))"),
            "SELECT * FROM tumble( bid, date_time , INTERVAL '10' MINUTE)"
        );
        assert_eq!(
            rewritten(
                "select * from table(Hop(table b, descriptor(ts), interval '1' second, interval '5' seconds)) w"
            ),
            "select * from hop( b, ts , interval '1' second, interval '5' second) w"
        );
        // Flink's named arguments, in any order.
        assert_eq!(
            rewritten(
                "SELECT * FROM TABLE(HOP(SIZE => INTERVAL '10' MINUTES, DATA => TABLE bid, \
                 TIMECOL => DESCRIPTOR(date_time), SLIDE => INTERVAL '5' MINUTES))"
            ),
            "SELECT * FROM hop( bid, date_time , INTERVAL '5' MINUTE, INTERVAL '10' MINUTE)"
        );
        // The RisingWave form and other uses of TABLE are left alone (but for the name's case).
        assert_eq!(
            rewritten("SELECT * FROM TUMBLE(t, ts, INTERVAL '1' HOUR)"),
            "SELECT * FROM tumble(t, ts, INTERVAL '1' HOUR)"
        );
        assert_eq!(rewritten("CREATE TABLE tumble_t (a INT)"), "CREATE TABLE tumble_t (a INT)");
    }
}
