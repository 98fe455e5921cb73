//! Temporal joins in processing time: `JOIN t FOR SYSTEM_TIME AS OF PROCTIME() [AS] r ON
//! ...` (RisingWave's and Flink's syntax). Each row of the stream on the left looks up the
//! version of `t`'s rows current when it arrives; later changes to `t` do not change
//! earlier output.
//!
//! The clause is taken off the token stream before parsing (Postgres' grammar has no table
//! versions): `t FOR SYSTEM_TIME AS OF PROCTIME() r` becomes `sabot_versioned(t) AS r`
//! (`AS t` when no alias follows), a table function whose [`VersionedTable`] reads `t`'s
//! rows. A batch query reads it as `t` (the current version); the streaming planner plans
//! `t`'s change stream and, where it is a join's right side, a lookup join.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableFunctionImpl, TableProvider};
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

/// The table function a versioned reference becomes.
pub const FUNCTION: &str = "sabot_versioned";

/// Rewrites every `name FOR SYSTEM_TIME AS OF PROCTIME() [[AS] alias]` of a statement's
/// tokens. 0A000 for any other `AS OF` (event-time temporal joins are not supported yet).
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
        if !proctime {
            return Err(Error::new(
                SqlState::FeatureNotSupported,
                "FOR SYSTEM_TIME AS OF is supported only with PROCTIME() (a processing-time temporal join)",
            )
            .with_hint("write JOIN t FOR SYSTEM_TIME AS OF PROCTIME() ON ...; event-time temporal joins are not supported yet"));
        }
        // The relation's name: `name` or `schema . name`, just before FOR.
        let name_end = n.checked_sub(1).filter(|&m| matches!(tokens[significant[m]].token, Token::Word(_)));
        let Some(name_end) = name_end else {
            return Err(Error::new(SqlState::SyntaxError, "FOR SYSTEM_TIME AS OF must follow a table name"));
        };
        let qualified = name_end >= 2
            && tokens[significant[name_end - 1]].token == Token::Period
            && matches!(tokens[significant[name_end - 2]].token, Token::Word(_));
        let name_start = if qualified { name_end - 2 } else { name_end };
        let Token::Word(last) = tokens[significant[name_end]].token.clone() else {
            unreachable!("checked above")
        };
        // An alias follows unless the next word is a keyword that cannot be one.
        let aliased = match significant.get(n + 7).map(|&i| &tokens[i].token) {
            Some(Token::Word(w)) => w.quote_style.is_some() || !RESERVED_FOR_TABLE_ALIAS.contains(&w.keyword),
            _ => false,
        };
        let name: Vec<TokenWithSpan> = tokens[significant[name_start]..=significant[name_end]].to_vec();
        let mut replacement =
            vec![TokenWithSpan::wrap(Token::make_word(FUNCTION, None)), TokenWithSpan::wrap(Token::LParen)];
        replacement.extend(name);
        replacement.push(TokenWithSpan::wrap(Token::RParen));
        if !aliased {
            replacement.extend([
                TokenWithSpan::wrap(Token::Whitespace(Whitespace::Space)),
                TokenWithSpan::wrap(Token::make_keyword("AS")),
                TokenWithSpan::wrap(Token::Whitespace(Whitespace::Space)),
                TokenWithSpan::wrap(Token::Word(last)),
            ]);
        }
        tokens.splice(significant[name_start]..=significant[n + 6], replacement);
    }
}

/// Registers `sabot_versioned`.
pub fn register(ctx: &SessionContext, resolve: RelationResolver) {
    ctx.register_udtf(FUNCTION, Arc::new(VersionedFunction { resolve }));
}

struct VersionedFunction {
    resolve: RelationResolver,
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
        Ok(Arc::new(VersionedTable { relation, input }))
    }
}

/// A relation read as of processing time: its rows now.
#[derive(Debug)]
pub struct VersionedTable {
    pub relation: Arc<TableDesc>,
    input: Arc<dyn TableProvider>,
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

/// Whether `plan` reads a versioned relation (through projections, filters and aliases).
pub fn reads_versioned(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::TableScan(scan) => datafusion::datasource::source_as_provider(&scan.source)
            .is_ok_and(|p| p.downcast_ref::<VersionedTable>().is_some()),
        LogicalPlan::Projection(_) | LogicalPlan::Filter(_) | LogicalPlan::SubqueryAlias(_) => {
            plan.inputs().into_iter().any(reads_versioned)
        }
        _ => false,
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
        let error = rewritten("SELECT * FROM s JOIN t FOR SYSTEM_TIME AS OF s.ts ON s.k = t.k").unwrap_err();
        assert_eq!(error.sqlstate(), SqlState::FeatureNotSupported);
    }
}
