//! Tests of a value against a subquery's rows, in the forms DataFusion does not plan where
//! users write them (plan revision 12):
//!
//! - `x op ANY (subquery)` / `x op ALL (subquery)` for `<`, `<=`, `>`, `>=` (and `= ALL`,
//!   `<> ANY`): DataFusion turns them into `EXISTS` tests inside a `CASE`, which it can
//!   plan nowhere. They become `sabot_compare_each(x, (SELECT array_agg(e) FROM ...), 'op',
//!   all)`, a scalar subquery the planner decorrelates, and a function with SQL's
//!   three-valued answer: for ANY true when a comparison is true, else NULL when one is
//!   NULL, else false (no rows: false); for ALL false when one is false, else NULL when one
//!   is NULL, else true (no rows: true).
//! - `x = ANY (subquery)` is `x IN (subquery)` and `x <> ALL (subquery)` is `x NOT IN
//!   (subquery)` (the same three values), which a filter plans as a (null-aware) join.
//! - `x [NOT] IN (subquery)` in a select list, which DataFusion plans only as a filter:
//!   `sabot_compare_each` with `=` / ANY (`<>` / ALL), so NULL where Postgres answers NULL.
//!   Views of plan revision 11 and older keep `coalesce(array_has(..), false)`, false there.
//! - `[NOT] EXISTS (subquery)` in a select list: `(SELECT count(*) FROM ...) > 0` (`= 0`).
//! - in a materialized view, `EXISTS` and `IN` inside another expression of a filter
//!   (`WHERE a OR EXISTS (...)`), which DataFusion plans as a mark join (not maintained in
//!   views): as in a select list. A test that is itself a condition of the filter (`AND`ed,
//!   or negated) stays a semi or anti join.
//!
//! A subquery of one plain `SELECT` is aggregated in place, so a correlated one stays
//! correlated; any other (grouped, `DISTINCT`, `LIMIT`, set operations) is read as a
//! derived table, which works when it is not correlated.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, BooleanBuilder, UInt32Array};
use datafusion::arrow::compute::kernels::cmp;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{Result as DfResult, ScalarValue, exec_err, plan_err};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, GroupByExpr, Query, SelectItem, SetExpr, Statement, VisitMut, VisitorMut,
};

use super::pg_compat::{aggregates, parse_query, template_expr};

const FUNCTION: &str = "sabot_compare_each";

pub fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::new_from_impl(CompareEach {
        signature: Signature::user_defined(Volatility::Immutable),
    }));
}

/// Rewrites the forms above in `statement`, as plan revision `revision` plans them; the
/// tests inside filter expressions only for a materialized view (`for_view`): a batch query
/// runs them as DataFusion's mark joins, which also take a correlation that is not an
/// equality.
pub fn rewrite(statement: &mut Statement, revision: u32, for_view: bool) {
    if revision >= 12 {
        let _ = statement.visit(&mut Quantified);
        if for_view {
            let _ = statement.visit(&mut NestedInFilters);
        }
    }
    super::select_lists::rewrite_exprs(statement, &mut |expr| in_select_list(expr, revision));
}

/// A test of a subquery's rows in a select list (or nested in a filter's condition) as the
/// scalar subquery it is computed with.
fn in_select_list(expr: &mut Expr, revision: u32) {
    let rewritten = match expr {
        Expr::InSubquery { expr: needle, subquery, negated } if revision >= 12 => {
            let (op, all) = if *negated { ("<>", true) } else { ("=", false) };
            compare_each(needle, op, subquery, all)
        }
        Expr::InSubquery { expr: needle, subquery, negated } => {
            membership_before_12(needle, subquery, *negated)
        }
        Expr::Exists { subquery, negated } if revision >= 12 => exists_as_count(subquery, *negated),
        _ => None,
    };
    if let Some(rewritten) = rewritten {
        *expr = rewritten;
    }
}

/// Filters' `EXISTS` / `IN` tests inside other expressions (see the module's doc).
struct NestedInFilters;

impl VisitorMut for NestedInFilters {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let SetExpr::Select(select) = query.body.as_mut()
            && let Some(selection) = &mut select.selection
        {
            for condition in conditions(selection) {
                if !is_join_test(condition) {
                    super::select_lists::rewrite_own_exprs(condition, &mut |e| in_select_list(e, 12));
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// The `AND`ed conditions of a filter.
fn conditions(expr: &mut Expr) -> Vec<&mut Expr> {
    let and = |e: &Expr| matches!(e, Expr::BinaryOp { op: BinaryOperator::And, .. });
    let split = match &*expr {
        Expr::Nested(inner) => and(inner),
        other => and(other),
    };
    match (split, expr) {
        (true, Expr::BinaryOp { left, right, .. }) => {
            let mut all = conditions(left);
            all.extend(conditions(right));
            all
        }
        (true, Expr::Nested(inner)) => conditions(inner),
        (_, other) => vec![other],
    }
}

/// A condition the planner runs as a semi or anti join: `[NOT] EXISTS`, `[NOT] IN`.
fn is_join_test(condition: &Expr) -> bool {
    match condition {
        Expr::Exists { .. } | Expr::InSubquery { .. } => true,
        Expr::Nested(inner)
        | Expr::UnaryOp { expr: inner, op: datafusion::sql::sqlparser::ast::UnaryOperator::Not } => {
            is_join_test(inner)
        }
        _ => false,
    }
}

struct Quantified;

impl VisitorMut for Quantified {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let (needle, op, right, all) = match expr {
            Expr::AnyOp { left, compare_op, right, .. } => (left, compare_op, right, false),
            Expr::AllOp { left, compare_op, right } => (left, compare_op, right, true),
            _ => return ControlFlow::Continue(()),
        };
        let Expr::Subquery(subquery) = right.as_ref() else { return ControlFlow::Continue(()) };
        let rewritten = match (op, all) {
            (BinaryOperator::Eq, false) | (BinaryOperator::NotEq, true) => {
                Some(Expr::InSubquery { expr: needle.clone(), subquery: subquery.clone(), negated: all })
            }
            (BinaryOperator::Eq, _) => compare_each(needle, "=", subquery, all),
            (BinaryOperator::NotEq, _) => compare_each(needle, "<>", subquery, all),
            (BinaryOperator::Lt, _) => compare_each(needle, "<", subquery, all),
            (BinaryOperator::LtEq, _) => compare_each(needle, "<=", subquery, all),
            (BinaryOperator::Gt, _) => compare_each(needle, ">", subquery, all),
            (BinaryOperator::GtEq, _) => compare_each(needle, ">=", subquery, all),
            _ => None,
        };
        if let Some(rewritten) = rewritten {
            *expr = rewritten;
        }
        ControlFlow::Continue(())
    }
}

/// `sabot_compare_each(needle, (SELECT array_agg(..) ..), 'op', all)`.
fn compare_each(needle: &Expr, op: &str, subquery: &Query, all: bool) -> Option<Expr> {
    let values = aggregated(subquery, "array_agg")?;
    template_expr(&format!("{FUNCTION}({needle}, ({values}), '{op}', {all})"))
}

/// `[NOT] EXISTS (subquery)` as `(SELECT count(*) FROM ...) > 0` (`= 0`).
fn exists_as_count(subquery: &Query, negated: bool) -> Option<Expr> {
    let count = aggregated(subquery, "count")?;
    let test = if negated { "= 0" } else { "> 0" };
    template_expr(&format!("(({count}) {test})"))
}

/// `subquery` with its one column aggregated by `aggregate` (`count` counts rows): in place
/// for one plain SELECT, else over the subquery as a derived table.
fn aggregated(subquery: &Query, aggregate: &str) -> Option<Box<Query>> {
    let counting = aggregate == "count";
    if let Some(select) = plain_select(subquery) {
        let argument = match select.projection.as_slice() {
            _ if counting => "*".to_string(),
            [SelectItem::UnnamedExpr(value) | SelectItem::ExprWithAlias { expr: value, .. }] => {
                value.to_string()
            }
            _ => return None,
        };
        let SetExpr::Select(items) = *parse_query(&format!("SELECT {aggregate}({argument})"))?.body else {
            return None;
        };
        let mut aggregated = select.clone();
        aggregated.projection = items.projection;
        return parse_query(&aggregated.to_string());
    }
    let (argument, columns) = if counting { ("*", "") } else { ("__sabot_element", " (__sabot_element)") };
    parse_query(&format!("SELECT {aggregate}({argument}) FROM ({subquery}) AS __sabot_set{columns}"))
}

/// The subquery's SELECT when it is one, without grouping, aggregates, DISTINCT, ordering
/// or limits.
fn plain_select(subquery: &Query) -> Option<&datafusion::sql::sqlparser::ast::Select> {
    if subquery.with.is_some()
        || subquery.limit_clause.is_some()
        || subquery.order_by.is_some()
        || subquery.fetch.is_some()
    {
        return None;
    }
    let SetExpr::Select(select) = subquery.body.as_ref() else { return None };
    let grouped = !matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty());
    let plain = !grouped
        && select.having.is_none()
        && select.distinct.is_none()
        && select.top.is_none()
        && select.named_window.is_empty()
        && !aggregates(&select.projection);
    plain.then_some(select.as_ref())
}

/// Plan revision 11 and older: `coalesce(array_has((SELECT array_agg(e) FROM ...), x),
/// false)`, false where Postgres answers NULL.
fn membership_before_12(needle: &Expr, subquery: &Query, negated: bool) -> Option<Expr> {
    plain_select(subquery)?;
    let values = aggregated(subquery, "array_agg")?;
    let not = if negated { "NOT " } else { "" };
    template_expr(&format!("{not}coalesce(array_has(({values}), {needle}), false)"))
}

/// `sabot_compare_each(needle, values, op, all)`: `needle op ANY (values)` or `needle op
/// ALL (values)` with SQL's three values; a NULL list is an empty set (no rows).
#[derive(Debug, PartialEq, Eq, Hash)]
struct CompareEach {
    signature: Signature,
}

impl ScalarUDFImpl for CompareEach {
    fn name(&self) -> &str {
        FUNCTION
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        let [needle, values, _, _] = arg_types else {
            return plan_err!("{FUNCTION} takes a value, a list, an operator and a quantifier");
        };
        let element = match values {
            DataType::List(field) | DataType::LargeList(field) | DataType::FixedSizeList(field, _) => {
                field.data_type().clone()
            }
            DataType::Null => needle.clone(),
            other => return plan_err!("{FUNCTION} compares with a list, not {other}"),
        };
        let common = if needle == &element {
            element
        } else {
            datafusion::logical_expr::type_coercion::binary::comparison_coercion(needle, &element)
                .ok_or_else(|| {
                    datafusion::error::DataFusionError::Plan(format!(
                        "operator does not exist: {needle} compared with {element}"
                    ))
                })?
        };
        let list = DataType::List(Arc::new(Field::new_list_field(common.clone(), true)));
        Ok(vec![common, list, DataType::Utf8, DataType::Boolean])
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let (
            ColumnarValue::Scalar(ScalarValue::Utf8(Some(op))),
            ColumnarValue::Scalar(ScalarValue::Boolean(Some(all))),
        ) = (&args.args[2], &args.args[3])
        else {
            return exec_err!("{FUNCTION} takes its operator and quantifier as constants");
        };
        let needles = args.args[0].to_array(args.number_rows)?;
        let lists = args.args[1].to_array(args.number_rows)?;
        let answers = compare_each_row(&needles, &lists, op, *all)?;
        super::pg_functions::like_arguments(&args.args, Arc::new(answers))
    }
}

/// Row `i`'s answer compares `needles[i]` with each value of `lists[i]`: one comparison
/// kernel over all the lists' values, each beside its row's needle.
fn compare_each_row(needles: &ArrayRef, lists: &ArrayRef, op: &str, all: bool) -> DfResult<BooleanArray> {
    let lists = datafusion::common::cast::as_list_array(lists)?;
    let offsets = lists.value_offsets();
    let (first, last) = (offsets[0] as usize, offsets[lists.len()] as usize);
    let values = lists.values().slice(first, last - first);
    let rows: UInt32Array = (0..lists.len())
        .flat_map(|row| std::iter::repeat_n(row as u32, (offsets[row + 1] - offsets[row]) as usize))
        .collect();
    let beside = datafusion::arrow::compute::take(needles.as_ref(), &rows, None)?;
    let compared = match op {
        "=" => cmp::eq(&values, &beside)?,
        "<>" => cmp::neq(&values, &beside)?,
        // `values` is on the left: `needle < value` is `value > needle`.
        "<" => cmp::gt(&values, &beside)?,
        "<=" => cmp::gt_eq(&values, &beside)?,
        ">" => cmp::lt(&values, &beside)?,
        ">=" => cmp::lt_eq(&values, &beside)?,
        _ => return exec_err!("{FUNCTION}: no operator {op}"),
    };
    let mut answers = BooleanBuilder::with_capacity(lists.len());
    for row in 0..lists.len() {
        let range = (offsets[row] as usize - first)..(offsets[row + 1] as usize - first);
        // The answer that decides (true for ANY, false for ALL) wins over NULL.
        let (mut decided, mut unknown) = (false, false);
        for i in range {
            if compared.is_null(i) {
                unknown = true;
            } else if compared.value(i) != all {
                decided = true;
                break;
            }
        }
        match (decided, unknown) {
            (true, _) => answers.append_value(!all),
            (false, true) => answers.append_null(),
            (false, false) => answers.append_value(all),
        }
    }
    Ok(answers.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, ListArray};
    use datafusion::arrow::datatypes::Int64Type;

    fn rewritten(sql: &str, revision: u32) -> String {
        let mut statement = crate::sql::parser::parse_generated(sql).unwrap();
        rewrite(&mut statement, revision, true);
        statement.to_string()
    }

    #[test]
    fn quantified_comparisons_become_array_tests() {
        assert_eq!(
            rewritten(
                "SELECT a FROM t WHERE a > ALL (SELECT b FROM u WHERE u.k = t.k) AND a = ANY (SELECT c FROM v)",
                12
            ),
            "SELECT a FROM t WHERE sabot_compare_each(a, (SELECT array_agg(b) FROM u WHERE u.k = t.k), '>', true) \
             AND a IN (SELECT c FROM v)"
        );
        assert_eq!(
            rewritten("SELECT a < ANY (SELECT DISTINCT b FROM u) FROM t", 12),
            "SELECT sabot_compare_each(a, (SELECT array_agg(__sabot_element) FROM (SELECT DISTINCT b FROM u) \
             AS __sabot_set (__sabot_element)), '<', false) FROM t"
        );
    }

    #[test]
    fn membership_and_existence_in_a_select_list() {
        assert_eq!(
            rewritten(
                "SELECT a IN (SELECT b FROM u), NOT EXISTS (SELECT 1 FROM u WHERE u.b = t.a) FROM t",
                12
            ),
            "SELECT sabot_compare_each(a, (SELECT array_agg(b) FROM u), '=', false), \
             ((SELECT count(*) FROM u WHERE u.b = t.a) = 0) FROM t"
        );
        assert_eq!(
            rewritten("SELECT a NOT IN (SELECT b FROM u) FROM t", 11),
            "SELECT NOT coalesce(array_has((SELECT array_agg(b) FROM u), a), false) FROM t"
        );
        // A filter's EXISTS is the planner's (a semi join), unless inside an expression.
        let kept =
            "SELECT a FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.b = t.a) AND NOT a IN (SELECT c FROM v)";
        assert_eq!(rewritten(kept, 12), kept);
        assert_eq!(
            rewritten(
                "SELECT a FROM t WHERE a > 1 AND (a < 0 OR EXISTS (SELECT 1 FROM u WHERE u.b = t.a))",
                12
            ),
            "SELECT a FROM t WHERE a > 1 AND (a < 0 OR ((SELECT count(*) FROM u WHERE u.b = t.a) > 0))"
        );
        // A batch query keeps DataFusion's mark join there.
        let batch = "SELECT a FROM t WHERE a < 0 OR EXISTS (SELECT 1 FROM u WHERE u.b > t.a)";
        let mut statement = crate::sql::parser::parse_generated(batch).unwrap();
        rewrite(&mut statement, 12, false);
        assert_eq!(statement.to_string(), batch);
    }

    #[test]
    fn each_row_gets_three_valued_answers() {
        let lists: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
            Some(vec![Some(1), Some(5)]),
            Some(vec![Some(1), None]),
            Some(vec![]),
            None,
            Some(vec![Some(7)]),
        ]));
        let needles: ArrayRef = Arc::new(Int64Array::from(vec![Some(3), Some(3), Some(3), Some(3), None]));
        let answers =
            |op, all| compare_each_row(&needles, &lists, op, all).unwrap().iter().collect::<Vec<_>>();
        // 3 > ALL: {1,5} false, {1,NULL} NULL, {} true, no rows true, NULL > 7 NULL.
        assert_eq!(answers(">", true), [Some(false), None, Some(true), Some(true), None]);
        // 3 > ANY: {1,5} true, {1,NULL} true, {} false, no rows false.
        assert_eq!(answers(">", false), [Some(true), Some(true), Some(false), Some(false), None]);
        assert_eq!(answers("=", false), [Some(false), None, Some(false), Some(false), None]);
    }
}
