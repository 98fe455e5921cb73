//! As-of joins: `l ASOF [LEFT] JOIN r ON l.k = r.k [AND ...] AND l.t >= r.t` (RisingWave's
//! and DuckDB's syntax). Each left row joins the one right row of its key that is nearest
//! to it in the inequality's direction: for `>=` (`>`) the right row with the greatest
//! time at or before (before) the left row's, for `<=` (`<`) the one with the smallest
//! time at or after (after) it. Inner: left rows without such a row are not shown; LEFT:
//! they are shown NULL-padded. When right rows tie on that time, one of them matches (the
//! one whose stream key sorts last for `>=`/`>`, first for `<=`/`<`, in a view).
//!
//! The keyword is taken off the token stream before parsing (sqlparser reads `ASOF JOIN`
//! only with Snowflake's `MATCH_CONDITION`): `ASOF [LEFT [OUTER]] JOIN t [alias]` becomes
//! `[LEFT] JOIN sabot_asof(t) AS alias`, a marked relation (`sql::temporal_join`). The
//! plan's join over it is then replaced before analysis: for a view by an [`AsofJoinNode`]
//! (an extension node, which the optimizer cannot push filters through: a filter on the
//! right side taken below an as-of join would change which row is nearest), for a batch
//! query by the same join ranked with `row_number()` per left row, nearest first, keeping
//! the first ([`lower_for_batch`]).

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, DFSchemaRef};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    BinaryExpr, Expr, ExprFunctionExt, Extension, Join, JoinType, LogicalPlan, LogicalPlanBuilder, Operator,
    UserDefinedLogicalNodeCore,
};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use super::temporal_join::{Marker, marked_relation, wrap_relation};
use crate::common::{Error, Result, SqlState};
pub use crate::plan::AsOfOrder;

/// Rewrites every `ASOF [LEFT [OUTER] | INNER] JOIN name` of a statement's tokens.
pub fn rewrite_asof(tokens: &mut Vec<TokenWithSpan>) -> Result<()> {
    loop {
        let significant: Vec<usize> =
            (0..tokens.len()).filter(|&i| !matches!(tokens[i].token, Token::Whitespace(_))).collect();
        let word = |n: usize, text: &str| {
            significant.get(n).is_some_and(|&i| matches!(&tokens[i].token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(text)))
        };
        // ASOF before JOIN, INNER JOIN, LEFT [OUTER] JOIN (elsewhere it is a name).
        let join_after = |n: usize| {
            let patterns: [&[&str]; 4] =
                [&["join"], &["inner", "join"], &["left", "join"], &["left", "outer", "join"]];
            patterns
                .iter()
                .find_map(|p| p.iter().enumerate().all(|(i, w)| word(n + 1 + i, w)).then_some(n + p.len()))
        };
        if let Some(n) =
            (0..significant.len()).find(|&n| word(n, "asof") && (word(n + 1, "right") || word(n + 1, "full")))
        {
            let kind = if word(n + 1, "right") { "RIGHT" } else { "FULL" };
            return Err(Error::new(
                SqlState::FeatureNotSupported,
                format!("ASOF {kind} JOIN is not supported"),
            )
            .with_hint("ASOF JOIN and ASOF LEFT JOIN are supported"));
        }
        let Some((n, join)) = (0..significant.len())
            .find_map(|n| if word(n, "asof") { join_after(n).map(|j| (n, j)) } else { None })
        else {
            return Ok(());
        };
        let is_word =
            |m: usize| significant.get(m).is_some_and(|&i| matches!(tokens[i].token, Token::Word(_)));
        if !is_word(join + 1) || word(join + 1, "lateral") {
            return Err(Error::new(
                SqlState::FeatureNotSupported,
                "the right side of an ASOF JOIN must be a table, view or source",
            )
            .with_hint("name the relation, or make the subquery a view"));
        }
        let qualified =
            significant.get(join + 2).is_some_and(|&i| tokens[i].token == Token::Period) && is_word(join + 3);
        let name = (join + 1, if qualified { join + 3 } else { join + 1 });
        wrap_relation(tokens, &significant, name, name.1, (Marker::Asof, None));
        // ASOF and the space after it go (the name, after them, is already in place).
        tokens.drain(significant[n]..significant[n + 1]);
    }
}

/// The order of a comparison operator, as `left OP right`.
fn order_of(op: Operator) -> Option<AsOfOrder> {
    match op {
        Operator::GtEq => Some(AsOfOrder::AtOrAfter),
        Operator::Gt => Some(AsOfOrder::After),
        Operator::LtEq => Some(AsOfOrder::AtOrBefore),
        Operator::Lt => Some(AsOfOrder::Before),
        _ => None,
    }
}

/// An as-of join's condition taken apart: the equalities and the inequality, each side's
/// expressions over that side's schema.
pub struct AsOfCondition {
    pub left_keys: Vec<Expr>,
    pub right_keys: Vec<Expr>,
    pub left_time: Expr,
    pub right_time: Expr,
    pub order: AsOfOrder,
}

fn asof_error(detail: impl Into<String>) -> Error {
    Error::new(
        SqlState::FeatureNotSupported,
        "an ASOF JOIN condition must be equalities and one inequality between the two sides",
    )
    .with_detail(detail)
    .with_hint("write ON l.k = r.k AND l.t >= r.t (or >, <=, <); filter either side in a subquery or WHERE")
}

/// Splits `condition` (over `left` then `right`) into equalities and one inequality
/// between the sides; 0A000 for anything else, or for no equality.
pub fn split_condition(condition: &Expr, left: &DFSchema, right: &DFSchema) -> Result<AsOfCondition> {
    let side_of = |expr: &Expr| super::stream_plan::interval::side_of(expr, [left, right]);
    let (mut left_keys, mut right_keys, mut inequality) = (Vec::new(), Vec::new(), None);
    for conjunct in split_conjunction(condition) {
        let Expr::BinaryExpr(BinaryExpr { left: a, op, right: b }) = conjunct else {
            return Err(asof_error(format!("the condition {conjunct} is neither")));
        };
        let (a, b, op) = match (side_of(a), side_of(b)) {
            (Some(0), Some(1)) => (a.as_ref().clone(), b.as_ref().clone(), *op),
            (Some(1), Some(0)) => match op.swap() {
                Some(swapped) => (b.as_ref().clone(), a.as_ref().clone(), swapped),
                None => return Err(asof_error(format!("the condition {conjunct} is neither"))),
            },
            _ => return Err(asof_error(format!("the condition {conjunct} does not compare the two sides"))),
        };
        match (op, order_of(op)) {
            (Operator::Eq, _) => {
                left_keys.push(a);
                right_keys.push(b);
            }
            (_, Some(order)) if inequality.is_none() => inequality = Some((a, b, order)),
            (_, Some(_)) => return Err(asof_error("it has more than one inequality")),
            _ => return Err(asof_error(format!("the condition {conjunct} is neither"))),
        }
    }
    let Some((left_time, right_time, order)) = inequality else {
        return Err(asof_error("it has no inequality (<, <=, >, >=) between the sides"));
    };
    if left_keys.is_empty() {
        return Err(asof_error("it has no equality between the sides"));
    }
    Ok(AsOfCondition { left_keys, right_keys, left_time, right_time, order })
}

/// A view's as-of join: the join over the marked relation, kept whole through the
/// optimizer and planned by the streaming planner as an as-of join.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AsofJoinNode {
    pub left: LogicalPlan,
    pub right: LogicalPlan,
    pub join_type: JoinType,
    /// The whole ON condition, over the left schema then the right.
    pub condition: Expr,
    pub schema: DFSchemaRef,
}

/// Ordered by inputs and condition (the schema follows from them).
impl PartialOrd for AsofJoinNode {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        (&self.left, &self.right, &self.join_type, &self.condition).partial_cmp(&(
            &other.left,
            &other.right,
            &other.join_type,
            &other.condition,
        ))
    }
}

impl UserDefinedLogicalNodeCore for AsofJoinNode {
    fn name(&self) -> &str {
        "AsofJoin"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.left, &self.right]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        vec![self.condition.clone()]
    }

    fn fmt_for_explain(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "AsofJoin: {} on {}", self.join_type, self.condition)
    }

    fn with_exprs_and_inputs(
        &self,
        mut exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> datafusion::error::Result<Self> {
        let (Some(condition), Some(right), Some(left)) = (exprs.pop(), inputs.pop(), inputs.pop()) else {
            return Err(datafusion::error::DataFusionError::Internal(
                "an as-of join has two inputs and a condition".into(),
            ));
        };
        Ok(AsofJoinNode { left, right, join_type: self.join_type, condition, schema: self.schema.clone() })
    }
}

/// The join of an `ASOF JOIN` or of an event-time temporal join (`JOIN t FOR SYSTEM_TIME
/// AS OF s.ts`, an as-of join on `s.ts >= t`'s event time), if `join` is one: its type
/// (inner or left) and condition.
fn asof_join(join: &Join) -> Result<Option<(JoinType, Expr)>> {
    let as_of = |plan: &LogicalPlan| marked_relation(plan).filter(|m| m.marker != Marker::Proctime);
    if as_of(&join.left).is_some() {
        return Err(Error::new(
            SqlState::FeatureNotSupported,
            "a versioned relation on the left side of a join",
        )
        .with_hint(
            "put it on the right: s JOIN t FOR SYSTEM_TIME AS OF s.ts ON ..., or s ASOF JOIN t ON ...",
        ));
    }
    let Some(marked) = as_of(&join.right) else { return Ok(None) };
    if !matches!(join.join_type, JoinType::Inner | JoinType::Left) {
        return Err(Error::new(
            SqlState::FeatureNotSupported,
            format!("an ASOF or temporal {} JOIN", join.join_type),
        )
        .with_hint("inner and LEFT joins are supported"));
    }
    let equalities = join.on.iter().map(|(l, r)| l.clone().eq(r.clone()));
    let time = match &marked.as_of {
        Some(column) => Some(version_condition(join, &marked.relation, column)?),
        None => None,
    };
    let Some(condition) = equalities.chain(join.filter.clone()).chain(time).reduce(Expr::and) else {
        return Err(asof_error("it has no condition (ASOF JOIN needs ON)"));
    };
    Ok(Some((join.join_type, condition)))
}

/// `s.ts >= t.et`: the condition an event-time temporal join adds, where `s.ts` is the
/// left side's `column` and `et` the versioned relation's event time (its watermark
/// column).
fn version_condition(join: &Join, relation: &crate::catalog::TableDesc, column: &str) -> Result<Expr> {
    let left = datafusion::common::Column::from_qualified_name(column);
    if !join.left.schema().has_column(&left) {
        return Err(Error::new(
            SqlState::UndefinedColumn,
            format!("column {column} of FOR SYSTEM_TIME AS OF is not a column of the join's left side"),
        ));
    }
    // The event time: a table's or source's WATERMARK column, or the first column a view
    // carries a watermark on.
    let event_time = match (&relation.watermark, &relation.view) {
        (Some(watermark), _) => Some(watermark.column),
        (None, Some(view)) => view.watermark_columns.first().copied(),
        (None, None) => None,
    };
    let Some(event_time) = event_time else {
        return Err(Error::new(
            SqlState::FeatureNotSupported,
            format!(
                "FOR SYSTEM_TIME AS OF {column} needs a relation with an event time, and \"{}\" has none",
                relation.name
            ),
        )
        .with_hint("declare WATERMARK FOR its time column (a version is valid from that time on), or join a view that carries one"));
    };
    let name = &relation.columns[event_time].name;
    let (qualifier, _) = join.right.schema().qualified_field_with_unqualified_name(name)?;
    let right = datafusion::common::Column::new(qualifier.cloned(), name);
    Ok(Expr::Column(left).gt_eq(Expr::Column(right)))
}

/// A view's plan: every as-of join an [`AsofJoinNode`].
pub fn to_extension(plan: LogicalPlan) -> Result<LogicalPlan> {
    Ok(plan
        .transform_up(|node| {
            let LogicalPlan::Join(join) = &node else { return Ok(Transformed::no(node)) };
            let Some((join_type, condition)) = asof_join(join)? else { return Ok(Transformed::no(node)) };
            split_condition(&condition, join.left.schema(), join.right.schema())?;
            let asof = AsofJoinNode {
                left: join.left.as_ref().clone(),
                right: join.right.as_ref().clone(),
                join_type,
                condition,
                schema: join.schema.clone(),
            };
            Ok(Transformed::yes(LogicalPlan::Extension(Extension { node: Arc::new(asof) })))
        })?
        .data)
}

/// A batch query's plan: every as-of join the join it is, ranked per left row (numbered
/// first), nearest right row first, keeping rank 1.
pub fn lower_for_batch(plan: LogicalPlan) -> Result<LogicalPlan> {
    let mut joins = 0usize;
    Ok(plan
        .transform_up(|node| {
            let LogicalPlan::Join(join) = &node else { return Ok(Transformed::no(node)) };
            let Some((join_type, condition)) = asof_join(join)? else { return Ok(Transformed::no(node)) };
            let split = split_condition(&condition, join.left.schema(), join.right.schema())?;
            joins += 1;
            let (row, rank) = (format!("__sabot_asof_row{joins}"), format!("__sabot_asof_rank{joins}"));
            let numbered = datafusion::functions_window::expr_fn::row_number().alias(&row);
            let nearest = split.right_time.clone().sort(!split.order.latest(), false);
            let ranked = datafusion::functions_window::expr_fn::row_number()
                .partition_by(vec![Expr::Column(row.as_str().into())])
                .order_by(vec![nearest])
                .build()?
                .alias(&rank);
            let output: Vec<Expr> = join.schema.columns().into_iter().map(Expr::Column).collect();
            let plan = LogicalPlanBuilder::from(join.left.as_ref().clone())
                .window(vec![numbered])?
                .join_on(join.right.as_ref().clone(), join_type, [condition])?
                .window(vec![ranked])?
                .filter(Expr::Column(rank.as_str().into()).eq(datafusion::logical_expr::lit(1u64)))?
                .project(output)?
                .build()?;
            Ok(Transformed::yes(plan))
        })?
        .data)
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::tokenizer::Tokenizer;

    use super::*;

    fn rewritten(sql: &str) -> Result<String> {
        let mut tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize_with_location().unwrap();
        rewrite_asof(&mut tokens)?;
        Ok(tokens.iter().map(|t| t.token.to_string()).collect())
    }

    #[test]
    fn asof_joins_become_joins_of_marked_relations() {
        assert_eq!(
            rewritten("SELECT * FROM l ASOF JOIN r ON l.k = r.k AND l.t >= r.t").unwrap(),
            "SELECT * FROM l JOIN sabot_asof(r) AS r ON l.k = r.k AND l.t >= r.t"
        );
        assert_eq!(
            rewritten("SELECT * FROM l asof left outer join public.r AS x ON true").unwrap(),
            "SELECT * FROM l left outer join sabot_asof(public.r) AS x ON true"
        );
        assert_eq!(
            rewritten("SELECT * FROM l ASOF LEFT JOIN r x ON l.k = x.k").unwrap(),
            "SELECT * FROM l LEFT JOIN sabot_asof(r) x ON l.k = x.k"
        );
        assert_eq!(rewritten("SELECT asof FROM t").unwrap(), "SELECT asof FROM t");
        let subquery = rewritten("SELECT * FROM l ASOF JOIN (SELECT * FROM r) s ON true").unwrap_err();
        assert_eq!(subquery.sqlstate(), SqlState::FeatureNotSupported);
    }
}
