//! Bounds on how deeply a statement nests, so that no statement can exhaust a thread's
//! stack (an overflow aborts the whole process, not just the statement).
//!
//! Two checks, both answering 54001 (statement_too_complex) as Postgres does:
//!
//! 1. [`check_tokens`], before parsing. sqlparser builds chains of infix operators
//!    (`1+1+1...`, `a OR b OR ...`, `UNION ALL` chains) in a loop, so the parser's own
//!    recursion limit does not bound how deep the resulting tree is, and dropping or
//!    cloning such a tree recurses once per level. A conservative bound computed from
//!    the tokens alone keeps every tree that is ever built shallow enough to drop safely,
//!    however large the message is.
//! 2. [`balance_and_check`], after parsing: chains of an associative operator (`AND`,
//!    `OR`, `UNION [ALL]`, `INTERSECT [ALL]`) are rebuilt as balanced trees with their
//!    operands in the same order (the same result, depth log n instead of n), so that
//!    generated SQL with thousands of `OR`s or `UNION ALL`s runs; then the exact depth of
//!    expressions and of set operations is checked against [`EXPRESSION_DEPTH_MAX`], so
//!    that planning and execution (which recurse over, and clone, the same trees) stay
//!    within the stacks Sabot gives them.
//!
//! [`balance_and_check`] also refuses a scalar or `IN` subquery without columns
//! (`(SELECT FROM t)`), as Postgres does (42601), which DataFusion's planner would panic on.
//!
//! The walks here run on sqlparser's stack-growing visitor or carry `#[recursive]`, so
//! the checks themselves cannot overflow.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, Query, SetExpr, SetOperator, SetQuantifier, Statement, Value, Values, Visit,
    VisitMut, Visitor, VisitorMut,
};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use crate::common::{Error, Result, SqlState};

/// How deeply expressions, and chains of set operations, may nest in one statement.
/// Postgres bounds the same thing through `max_stack_depth` (2 MB by default).
pub const EXPRESSION_DEPTH_MAX: usize = 1000;

/// Bound on the depth a statement's tokens could produce (see [`check_tokens`]). Trees
/// this deep are still dropped and cloned safely on Sabot's session threads
/// (`SESSION_STACK_BYTES`).
pub const TOKEN_DEPTH_MAX: usize = 16 * EXPRESSION_DEPTH_MAX;

/// Rejects a statement whose tokens could form a tree deeper than [`TOKEN_DEPTH_MAX`].
///
/// Within one parenthesis level, the tokens between two commas form one "unit"; an
/// operator chain cannot extend past a comma or out of its parentheses, so a tree path
/// crosses at most every token of one unit per level, plus one node per parenthesis.
/// The bound of a unit is its token count plus the deepest bound of the groups nested in
/// it; the bound of a statement is that of its deepest unit.
pub fn check_tokens(tokens: &[TokenWithSpan]) -> Result<()> {
    let mut groups = vec![Group::default()];
    // The bounds of every open group but the innermost, kept as a running sum.
    let mut outer = 0;
    for token in tokens {
        match &token.token {
            Token::Whitespace(_) => continue,
            Token::LParen | Token::LBracket | Token::LBrace => {
                outer += groups.last().map_or(0, Group::open);
                groups.push(Group::default());
            }
            Token::RParen | Token::RBracket | Token::RBrace if groups.len() > 1 => {
                let mut inner = groups.pop().expect("more than one group is open");
                inner.finish_unit();
                let parent = groups.last_mut().expect("the statement level is never popped");
                outer -= parent.open();
                parent.nested = parent.nested.max(inner.deepest + 1);
            }
            Token::Comma | Token::SemiColon => {
                groups.last_mut().expect("the statement level is never popped").finish_unit()
            }
            _ => groups.last_mut().expect("the statement level is never popped").tokens += 1,
        }
        if outer + groups.last().map_or(0, Group::open) > TOKEN_DEPTH_MAX {
            return Err(too_complex());
        }
    }
    Ok(())
}

/// One parenthesis level of [`check_tokens`].
#[derive(Default)]
struct Group {
    /// Tokens of the current unit (since the last comma).
    tokens: usize,
    /// The deepest group nested in the current unit.
    nested: usize,
    /// The deepest finished unit.
    deepest: usize,
}

impl Group {
    fn open(&self) -> usize {
        self.tokens + self.nested
    }

    fn finish_unit(&mut self) {
        self.deepest = self.deepest.max(self.open());
        self.tokens = 0;
        self.nested = 0;
    }
}

/// Balances chains of associative operators in `statement`, then rejects it if its
/// expressions or set operations still nest deeper than [`EXPRESSION_DEPTH_MAX`].
pub fn balance_and_check(statement: &mut Statement) -> Result<()> {
    let _ = VisitMut::visit(statement, &mut Balance);
    let mut depth = Depth::default();
    if Visit::visit(&*statement, &mut depth).is_break() {
        return Err(too_complex());
    }
    if Visit::visit(&*statement, &mut ColumnlessSubquery).is_break() {
        return Err(Error::new(SqlState::SyntaxError, "subquery must return only one column"));
    }
    Ok(())
}

/// Finds a scalar or `IN` subquery whose select list is empty.
struct ColumnlessSubquery;

impl Visitor for ColumnlessSubquery {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        let (Expr::Subquery(query) | Expr::InSubquery { subquery: query, .. }) = expr else {
            return ControlFlow::Continue(());
        };
        match query.body.as_ref() {
            SetExpr::Select(select) if select.projection.is_empty() => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        }
    }
}

/// Rebuilds trees of one associative operator as balanced trees (rebuilding a balanced
/// tree again, as the visit of its operands does, leaves it as it is).
struct Balance;

impl VisitorMut for Balance {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::BinaryOp { op: op @ (BinaryOperator::And | BinaryOperator::Or), .. } = expr {
            let op = op.clone();
            let operands = chain_operands(std::mem::replace(expr, placeholder_expr()), |e| match e {
                Expr::BinaryOp { left, op: this, right } if this == op => Split::Node(*left, *right),
                other => Split::Operand(other),
            });
            *expr = balanced(operands, &|left, right| Expr::BinaryOp {
                left: Box::new(left),
                op: op.clone(),
                right: Box::new(right),
            });
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        balance_set_operations(&mut query.body);
        ControlFlow::Continue(())
    }
}

/// Balances the chain of set operations at the top of `set`, and the chains of other
/// operators it contains (queries nested in parentheses are visited on their own).
#[recursive::recursive]
fn balance_set_operations(set: &mut SetExpr) {
    let SetExpr::SetOperation { op, set_quantifier, .. } = set else { return };
    let (op, quantifier) = (*op, *set_quantifier);
    let associative = matches!(op, SetOperator::Union | SetOperator::Intersect)
        && matches!(quantifier, SetQuantifier::All | SetQuantifier::Distinct | SetQuantifier::None);
    if !associative {
        if let SetExpr::SetOperation { left, right, .. } = set {
            balance_set_operations(left);
            balance_set_operations(right);
        }
        return;
    }
    let empty = Values { explicit_row: false, value_keyword: false, rows: Vec::new() };
    let taken = std::mem::replace(set, SetExpr::Values(empty));
    let mut operands = chain_operands(taken, |s| match s {
        SetExpr::SetOperation { left, op: this, set_quantifier, right }
            if this == op && set_quantifier == quantifier =>
        {
            Split::Node(*left, *right)
        }
        other => Split::Operand(other),
    });
    for operand in &mut operands {
        balance_set_operations(operand);
    }
    *set = balanced(operands, &|left, right| SetExpr::SetOperation {
        left: Box::new(left),
        op,
        set_quantifier: quantifier,
        right: Box::new(right),
    });
}

/// The operands of a tree of one operator, in order: `split` takes a node of the
/// operator apart into its left and right operand, or gives back any other node. Uses a
/// worklist, so a long chain costs no stack.
fn chain_operands<T>(top: T, split: impl Fn(T) -> Split<T>) -> Vec<T> {
    let mut operands = Vec::new();
    let mut pending = vec![top];
    while let Some(node) = pending.pop() {
        match split(node) {
            Split::Node(left, right) => {
                pending.push(right);
                pending.push(left);
            }
            Split::Operand(operand) => operands.push(operand),
        }
    }
    operands
}

/// A node taken apart by [`chain_operands`]' `split`.
enum Split<T> {
    /// A node of the operator: its left and right operands.
    Node(T, T),
    /// Anything else.
    Operand(T),
}

/// `operands` joined by `join`, as a tree of depth log2(n), in the same order.
fn balanced<T>(mut operands: Vec<T>, join: &dyn Fn(T, T) -> T) -> T {
    if operands.len() == 1 {
        return operands.pop().expect("one operand");
    }
    let right = operands.split_off(operands.len() / 2);
    join(balanced(operands, join), balanced(right, join))
}

fn placeholder_expr() -> Expr {
    Expr::Value(Value::Null.into())
}

fn too_complex() -> Error {
    Error::new(SqlState::StatementTooComplex, "statement is too complex: it nests too deeply")
        .with_detail(format!("expressions and set operations may nest at most {EXPRESSION_DEPTH_MAX} levels"))
        .with_hint("write long OR chains as IN (...) lists, and long UNION chains in several steps")
}

#[derive(Default)]
struct Depth {
    expressions: usize,
    deepest: usize,
}

impl Visitor for Depth {
    type Break = ();

    fn pre_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<()> {
        self.expressions += 1;
        self.deepest = self.deepest.max(self.expressions);
        if self.expressions > EXPRESSION_DEPTH_MAX {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    fn post_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<()> {
        self.expressions -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if set_operation_depth(&query.body, 0) > EXPRESSION_DEPTH_MAX {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

/// How deeply set operations nest below `set` (queries nested inside are visited on
/// their own). Stops counting past the limit.
#[recursive::recursive]
fn set_operation_depth(set: &SetExpr, above: usize) -> usize {
    if above > EXPRESSION_DEPTH_MAX {
        return above;
    }
    match set {
        SetExpr::SetOperation { left, right, .. } => {
            set_operation_depth(left, above + 1).max(set_operation_depth(right, above + 1))
        }
        _ => above,
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::tokenizer::Tokenizer;

    use super::*;

    fn token_check(sql: &str) -> Result<()> {
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize_with_location().unwrap();
        check_tokens(&tokens)
    }

    #[test]
    fn long_flat_lists_pass_the_token_check() {
        let list = (0..100_000).map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
        token_check(&format!("SELECT * FROM t WHERE x IN ({list})")).unwrap();
        let rows = (0..20_000).map(|i| format!("({i}, 'x')")).collect::<Vec<_>>().join(",");
        token_check(&format!("INSERT INTO t VALUES {rows}")).unwrap();
    }

    fn parse_one(sql: &str) -> Statement {
        let mut statements =
            datafusion::sql::sqlparser::parser::Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        statements.pop().unwrap()
    }

    /// The deepest expression nesting in `statement`.
    fn expression_depth(statement: &Statement) -> usize {
        let mut depth = Depth::default();
        let _ = statement.visit(&mut depth);
        depth.deepest
    }

    #[test]
    fn associative_chains_are_balanced_in_order() {
        let mut statement = parse_one("SELECT 1 WHERE a OR b OR c OR d OR e");
        assert_eq!(expression_depth(&statement), 5);
        balance_and_check(&mut statement).unwrap();
        // OR(OR(a, b), OR(c, OR(d, e))), printed in the same order.
        assert_eq!(expression_depth(&statement), 4);
        assert_eq!(statement.to_string(), "SELECT 1 WHERE a OR b OR c OR d OR e");
        let long = (0..5000).map(|i| format!("x = {i}")).collect::<Vec<_>>().join(" OR ");
        let mut statement = parse_one(&format!("SELECT 1 WHERE {long}"));
        balance_and_check(&mut statement).unwrap();
        assert!(expression_depth(&statement) <= 16, "{}", expression_depth(&statement));
        // Only runs of one operator are rebuilt: UNION ALL's run, then UNION on top.
        let mut statement = parse_one("SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION SELECT 4");
        balance_and_check(&mut statement).unwrap();
        let Statement::Query(query) = &statement else { panic!("a query") };
        let SetExpr::SetOperation { op, set_quantifier, left, .. } = query.body.as_ref() else {
            panic!("a union")
        };
        assert_eq!((*op, *set_quantifier), (SetOperator::Union, SetQuantifier::None));
        let SetExpr::SetOperation { right, .. } = left.as_ref() else { panic!("a union all") };
        assert!(matches!(right.as_ref(), SetExpr::SetOperation { set_quantifier: SetQuantifier::All, .. }));
        assert_eq!(statement.to_string(), "SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION SELECT 4");
        // Neither arithmetic nor EXCEPT is rebuilt.
        let sums = vec!["1"; 1500].join(" + ");
        assert_eq!(
            balance_and_check(&mut parse_one(&format!("SELECT {sums}"))).unwrap_err().sqlstate().code(),
            "54001"
        );
        let excepts = vec!["SELECT 1"; 1500].join(" EXCEPT ");
        assert_eq!(balance_and_check(&mut parse_one(&excepts)).unwrap_err().sqlstate().code(), "54001");
    }

    #[test]
    fn long_operator_chains_fail_the_token_check() {
        let chain = vec!["1"; TOKEN_DEPTH_MAX].join("+");
        let error = token_check(&format!("SELECT {chain}")).unwrap_err();
        assert_eq!(error.sqlstate().code(), "54001");
        // Nested groups add up: each level's unit counts.
        let nested = format!("SELECT {}1{}", "(1+1+1+1+".repeat(4000), ")".repeat(4000));
        assert_eq!(token_check(&nested).unwrap_err().sqlstate().code(), "54001");
    }
}
