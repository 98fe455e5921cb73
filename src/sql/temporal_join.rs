//! Temporal joins in processing time: `JOIN t FOR SYSTEM_TIME AS OF PROCTIME() [AS] r ON
//! ...` (RisingWave's and Flink's syntax). Each row of the stream on the left looks up the
//! version of `t`'s rows current when it arrives; later changes to `t` do not change
//! earlier output.
//!
//! The clause is taken off the token stream before parsing (Postgres' grammar has no table
//! versions): `t FOR SYSTEM_TIME AS OF PROCTIME() r` becomes `sabot_versioned(t) AS r`
//! (`AS t` when no alias follows), a table function whose [`VersionedTable`] reads `t`'s
//! rows. A batch query reads it as `t` (the current version); the streaming planner plans
//! `t`'s change stream and, where it is a join's right side, a lookup join. The right
//! side of an `ASOF JOIN` is marked the same way (`sabot_asof(t)`, see `sql::asof_join`).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableFunctionImpl, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::sql::sqlparser::keywords::RESERVED_FOR_TABLE_ALIAS;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Whitespace};

use super::window::RelationResolver;
use crate::catalog::TableDesc;
use crate::common::{Error, Result, SqlState};

/// How a join reads a marked relation: the table function a reference becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// `FOR SYSTEM_TIME AS OF PROCTIME()`: the rows current when a left row arrives.
    Proctime,
    /// `FOR SYSTEM_TIME AS OF s.ts`: the version valid at a left row's event time (an
    /// as-of join on the relation's event time, see `sql::asof_join`).
    EventTime,
    /// The right side of an `ASOF JOIN` (see `sql::asof_join`).
    Asof,
}

impl Marker {
    pub fn function(self) -> &'static str {
        match self {
            Marker::Proctime => "sabot_versioned",
            Marker::EventTime => "sabot_versioned_at",
            Marker::Asof => "sabot_asof",
        }
    }
}

/// Rewrites every `name FOR SYSTEM_TIME AS OF PROCTIME() [[AS] alias]` of a statement's
/// tokens to `sabot_versioned(name) AS alias`, and every `name FOR SYSTEM_TIME AS OF
/// s.ts [[AS] alias]` (a column of the other side) to `sabot_versioned_at(name, 's.ts')
/// AS alias`.
pub fn rewrite_versioned(tokens: &mut Vec<TokenWithSpan>) -> Result<()> {
    loop {
        let significant: Vec<usize> =
            (0..tokens.len()).filter(|&i| !matches!(tokens[i].token, Token::Whitespace(_))).collect();
        let word = |n: usize, text: &str| {
            significant.get(n).is_some_and(|&i| matches!(&tokens[i].token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(text)))
        };
        let Some(n) = (0..significant.len()).find(|&n| {
            word(n, "for") && word(n + 1, "system_time") && word(n + 2, "as") && word(n + 3, "of")
        }) else {
            return Ok(());
        };
        let proctime = word(n + 4, "proctime")
            && significant.get(n + 5).is_some_and(|&i| tokens[i].token == Token::LParen)
            && significant.get(n + 6).is_some_and(|&i| tokens[i].token == Token::RParen);
        let (marker, through, as_of) = match proctime {
            true => (Marker::Proctime, n + 6, None),
            false => {
                let (end, column) = column_reference(tokens, &significant, n + 4).ok_or_else(|| {
                    Error::new(
                        SqlState::FeatureNotSupported,
                        "FOR SYSTEM_TIME AS OF takes PROCTIME() or a column of the other side of the join",
                    )
                    .with_hint(
                        "write JOIN t FOR SYSTEM_TIME AS OF PROCTIME() or JOIN t FOR SYSTEM_TIME AS OF s.ts",
                    )
                })?;
                (Marker::EventTime, end, Some(column))
            }
        };
        // The relation's name: `name` or `schema . name`, just before FOR.
        let name_end = n.checked_sub(1).filter(|&m| matches!(tokens[significant[m]].token, Token::Word(_)));
        let Some(name_end) = name_end else {
            return Err(Error::new(SqlState::SyntaxError, "FOR SYSTEM_TIME AS OF must follow a table name"));
        };
        let qualified = name_end >= 2
            && tokens[significant[name_end - 1]].token == Token::Period
            && matches!(tokens[significant[name_end - 2]].token, Token::Word(_));
        let name_start = if qualified { name_end - 2 } else { name_end };
        wrap_relation(tokens, &significant, (name_start, name_end), through, (marker, as_of));
    }
}

/// A column reference (`a`, `s.a`, `"S".a`) starting at significant token `start`: the
/// significant token it ends at, and its text.
fn column_reference(
    tokens: &[TokenWithSpan],
    significant: &[usize],
    start: usize,
) -> Option<(usize, String)> {
    let word = |m: usize| match significant.get(m).map(|&i| &tokens[i].token) {
        Some(token @ Token::Word(_)) => Some(token.to_string()),
        _ => None,
    };
    let mut text = word(start)?;
    let mut end = start;
    while significant.get(end + 1).is_some_and(|&i| tokens[i].token == Token::Period)
        && let Some(part) = word(end + 2)
    {
        text = format!("{text}.{part}");
        end += 2;
    }
    // A function call is not a column.
    let call = significant.get(end + 1).is_some_and(|&i| tokens[i].token == Token::LParen);
    (!call).then_some((end, text))
}

/// Replaces significant tokens `name.0 ..= through` (a relation's name, then whatever
/// marks it) with `marker(name[, 'argument'])`, followed by `AS last` unless an alias
/// follows.
pub(super) fn wrap_relation(
    tokens: &mut Vec<TokenWithSpan>,
    significant: &[usize],
    (name_start, name_end): (usize, usize),
    through: usize,
    (marker, argument): (Marker, Option<String>),
) {
    let Token::Word(last) = tokens[significant[name_end]].token.clone() else {
        unreachable!("a relation's name ends in a word")
    };
    // An alias follows unless the next word is a keyword that cannot be one.
    let aliased = match significant.get(through + 1).map(|&i| &tokens[i].token) {
        Some(Token::Word(w)) => w.quote_style.is_some() || !RESERVED_FOR_TABLE_ALIAS.contains(&w.keyword),
        _ => false,
    };
    let name: Vec<TokenWithSpan> = tokens[significant[name_start]..=significant[name_end]].to_vec();
    let mut replacement = vec![
        TokenWithSpan::wrap(Token::make_word(marker.function(), None)),
        TokenWithSpan::wrap(Token::LParen),
    ];
    replacement.extend(name);
    if let Some(argument) = argument {
        replacement.push(TokenWithSpan::wrap(Token::Comma));
        replacement.push(TokenWithSpan::wrap(Token::SingleQuotedString(argument)));
    }
    replacement.push(TokenWithSpan::wrap(Token::RParen));
    if !aliased {
        replacement.extend([
            TokenWithSpan::wrap(Token::Whitespace(Whitespace::Space)),
            TokenWithSpan::wrap(Token::make_keyword("AS")),
            TokenWithSpan::wrap(Token::Whitespace(Whitespace::Space)),
            TokenWithSpan::wrap(Token::Word(last)),
        ]);
    }
    tokens.splice(significant[name_start]..=significant[through], replacement);
}

/// Registers the markers' table functions.
pub fn register(ctx: &SessionContext, resolve: RelationResolver) {
    for marker in [Marker::Proctime, Marker::EventTime, Marker::Asof] {
        ctx.register_udtf(
            marker.function(),
            Arc::new(VersionedFunction { resolve: resolve.clone(), marker }),
        );
    }
}

struct VersionedFunction {
    resolve: RelationResolver,
    marker: Marker,
}

impl std::fmt::Debug for VersionedFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VersionedFunction")
    }
}

impl TableFunctionImpl for VersionedFunction {
    fn call_with_args(
        &self,
        args: datafusion::catalog::TableFunctionArgs,
    ) -> DfResult<Arc<dyn TableProvider>> {
        let Some(Expr::Column(relation)) = args.exprs().first() else {
            return Err(DataFusionError::from(Error::internal("FOR SYSTEM_TIME AS OF without a table")));
        };
        let schema = relation.relation.as_ref().map(|r| r.table());
        let (relation, input) = (self.resolve)(schema, &relation.name).map_err(DataFusionError::from)?;
        let as_of = match args.exprs().get(1) {
            Some(Expr::Literal(ScalarValue::Utf8(Some(column)), _)) => Some(column.clone()),
            _ => None,
        };
        Ok(Arc::new(VersionedTable { relation, input, marker: self.marker, as_of }))
    }
}

/// A marked relation: read as itself (its rows now), joined as its marker says.
#[derive(Debug)]
pub struct VersionedTable {
    pub relation: Arc<TableDesc>,
    input: Arc<dyn TableProvider>,
    pub marker: Marker,
    /// `FOR SYSTEM_TIME AS OF s.ts`: the column of the other side, as written.
    pub as_of: Option<String>,
}

#[async_trait]
impl TableProvider for VersionedTable {
    fn schema(&self) -> SchemaRef {
        self.input.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.input.scan(state, projection, filters, limit).await
    }
}

/// Whether `plan` reads a relation marked `marker` (through projections, filters and
/// aliases).
pub fn reads_marked(plan: &LogicalPlan, marker: Marker) -> bool {
    marked_relation(plan).is_some_and(|v| v.marker == marker)
}

/// A marked relation as a join reads it.
pub struct Marked {
    pub marker: Marker,
    pub relation: Arc<TableDesc>,
    pub as_of: Option<String>,
}

/// The marked relation `plan` reads (through projections, filters and aliases), if any.
pub fn marked_relation(plan: &LogicalPlan) -> Option<Marked> {
    match plan {
        LogicalPlan::TableScan(scan) => {
            let provider = datafusion::datasource::source_as_provider(&scan.source).ok()?;
            let versioned = provider.downcast_ref::<VersionedTable>()?;
            Some(Marked {
                marker: versioned.marker,
                relation: versioned.relation.clone(),
                as_of: versioned.as_of.clone(),
            })
        }
        LogicalPlan::Projection(_) | LogicalPlan::Filter(_) | LogicalPlan::SubqueryAlias(_) => {
            plan.inputs().into_iter().find_map(marked_relation)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::tokenizer::Tokenizer;

    use super::*;

    fn rewritten(sql: &str) -> Result<String> {
        let mut tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize_with_location().unwrap();
        rewrite_versioned(&mut tokens)?;
        Ok(tokens.iter().map(|t| t.token.to_string()).collect())
    }

    #[test]
    fn versioned_references_become_table_function_calls() {
        assert_eq!(
            rewritten("SELECT * FROM s JOIN t FOR SYSTEM_TIME AS OF PROCTIME() ON s.k = t.k").unwrap(),
            "SELECT * FROM s JOIN sabot_versioned(t) AS t ON s.k = t.k"
        );
        assert_eq!(
            rewritten("SELECT * FROM s LEFT JOIN public.t for system_time as of proctime() AS r ON true")
                .unwrap(),
            "SELECT * FROM s LEFT JOIN sabot_versioned(public.t) AS r ON true"
        );
        assert_eq!(
            rewritten("SELECT * FROM s JOIN t FOR SYSTEM_TIME AS OF PROCTIME() r ON s.k = r.k").unwrap(),
            "SELECT * FROM s JOIN sabot_versioned(t) r ON s.k = r.k"
        );
        assert_eq!(
            rewritten("SELECT * FROM s JOIN t FOR SYSTEM_TIME AS OF s.ts ON s.k = t.k").unwrap(),
            "SELECT * FROM s JOIN sabot_versioned_at(t,'s.ts') AS t ON s.k = t.k"
        );
        assert_eq!(
            rewritten("SELECT * FROM s LEFT JOIN t FOR SYSTEM_TIME AS OF \"S\".ts r ON true").unwrap(),
            "SELECT * FROM s LEFT JOIN sabot_versioned_at(t,'\"S\".ts') r ON true"
        );
        let error = rewritten("SELECT * FROM s JOIN t FOR SYSTEM_TIME AS OF now() ON s.k = t.k").unwrap_err();
        assert_eq!(error.sqlstate(), SqlState::FeatureNotSupported);
    }
}
