//! Numeric literals as Postgres types them. Since plan revision 11 a decimal literal is a
//! `numeric` (DataFusion's `parse_float_as_decimal`: `1.10` is `Decimal128(3, 2)`, so
//! `1.10 * 2.005` is `2.20550`). A literal with an exponent that leaves no fractional
//! digits (`1e3`, `1.5e2`) would be a decimal of negative scale, which Arrow's kernels
//! print and cast wrongly; it is written out before planning as the integer it is, cast to
//! `numeric(p, 0)` (`1000`, `150`), or, past numeric's 38 digits, to `double precision`.
//!
//! Where a numeric meets a float, Postgres computes in `double precision` (numeric casts
//! to float8 implicitly); DataFusion in a decimal (`Decimal128(30, 15)`, which cannot hold
//! `Infinity` and fails on it). [`FloatOperands`] casts the numeric side of arithmetic and
//! comparisons to float8 as they are planned, `coalesce` / `greatest` / `least` / `nullif`
//! type their arguments so ([`FloatFirst`]), and [`FloatOperandLists`] does the same for
//! `BETWEEN` and `IN (...)` before type coercion.
//!
//! A `CASE` is typed by its results together, as Postgres types it ([`type_mixed_results`]:
//! `CASE WHEN .. THEN 1 ELSE 2.5 END` is a numeric, with a float among them a float8);
//! DataFusion types it by its first result, and its rows were cast to that type
//! (`2.5` became `2`). `VALUES` and `UNION` columns where floats meet numerics are float8. Views of plan revision 10 and older
//! are planned without both.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::datatypes::FieldRef;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, Result as DfResult};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::expr::{Between, InList};
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::type_coercion::binary::comparison_coercion;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ExprSchemable, LogicalPlan, ReturnFieldArgs, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, cast,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::sql::sqlparser::ast;

/// The most digits a `numeric` literal keeps (Arrow's Decimal128).
const NUMERIC_DIGITS_MAX: usize = 38;

/// Rewrites exponent literals of negative scale in `statement` (see the module note).
pub fn rewrite_literals(statement: &mut ast::Statement) {
    let _ = ast::VisitMut::visit(statement, &mut ExponentLiterals);
}

struct ExponentLiterals;

impl ast::VisitorMut for ExponentLiterals {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut ast::Expr) -> ControlFlow<()> {
        let ast::Expr::Value(value) = expr else { return ControlFlow::Continue(()) };
        let ast::Value::Number(text, _) = &value.value else { return ControlFlow::Continue(()) };
        if let Some(rewritten) = written_out(text) {
            *expr = rewritten;
        }
        ControlFlow::Continue(())
    }
}

/// `1.5e2` as `CAST(150 AS numeric(3, 0))`; `None` for a literal of scale 0 or more.
fn written_out(text: &str) -> Option<ast::Expr> {
    let (mantissa, exponent) = text.split_once(['e', 'E'])?;
    let exponent: i64 = exponent.parse().ok()?;
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let scale = fraction.len() as i64 - exponent;
    if scale >= 0 {
        return None;
    }
    let digits = format!("{whole}{fraction}");
    let digits = digits.trim_start_matches('0');
    let number = |s: String| ast::Expr::value(ast::Value::Number(s, false));
    if digits.is_empty() {
        return Some(number("0".into()));
    }
    let zeros = usize::try_from(-scale).ok()?;
    let data_type = if digits.len() + zeros <= NUMERIC_DIGITS_MAX {
        let precision = (digits.len() + zeros) as u64;
        ast::DataType::Numeric(ast::ExactNumberInfo::PrecisionAndScale(precision, 0))
    } else {
        ast::DataType::DoublePrecision
    };
    let value = if digits.len() + zeros <= NUMERIC_DIGITS_MAX {
        number(format!("{digits}{}", "0".repeat(zeros)))
    } else {
        ast::Expr::value(ast::Value::SingleQuotedString(text.to_string()))
    };
    Some(ast::Expr::Cast {
        kind: ast::CastKind::Cast,
        expr: Box::new(value),
        data_type,
        array: false,
        format: None,
    })
}

/// The planner's name (its `Debug` form), by which older plan revisions leave it out.
pub const PLANNER_NAME: &str = "FloatOperands";

/// The rule's name, by which older plan revisions leave it out.
pub const RULE_NAME: &str = "pg_float_comparisons";

pub fn planner() -> Arc<dyn ExprPlanner> {
    Arc::new(FloatOperands)
}

fn is_float(t: &DataType) -> bool {
    matches!(t, DataType::Float16 | DataType::Float32 | DataType::Float64)
}

fn is_decimal(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Decimal32(..)
            | DataType::Decimal64(..)
            | DataType::Decimal128(..)
            | DataType::Decimal256(..)
    )
}

/// `e` as float8 where it is a numeric (it stands beside a float).
fn float8_if_numeric(e: Expr, schema: &DFSchema) -> Expr {
    match e.get_type(schema) {
        Ok(t) if is_decimal(&t) => cast(e, DataType::Float64),
        _ => e,
    }
}

fn any_float<'a>(mut exprs: impl Iterator<Item = &'a Expr>, schema: &DFSchema) -> bool {
    exprs.any(|e| e.get_type(schema).is_ok_and(|t| is_float(&t)))
}

#[derive(Debug)]
struct FloatOperands;

impl ExprPlanner for FloatOperands {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> DfResult<PlannerResult<RawBinaryExpr>> {
        let RawBinaryExpr { op, left, right } = expr;
        let (left_type, right_type) = (left.get_type(schema), right.get_type(schema));
        let mixed = match (&left_type, &right_type) {
            (Ok(l), Ok(r)) => (is_float(l) && is_decimal(r)) || (is_decimal(l) && is_float(r)),
            _ => false,
        };
        if !mixed {
            return Ok(PlannerResult::Original(RawBinaryExpr { op, left, right }));
        }
        let (left, right) = (float8_if_numeric(left, schema), float8_if_numeric(right, schema));
        Ok(PlannerResult::Original(RawBinaryExpr { op, left, right }))
    }
}

/// `BETWEEN` and `IN (...)` over floats and numerics compare as floats (before coercion).
#[derive(Debug, Default)]
pub struct FloatOperandLists;

impl AnalyzerRule for FloatOperandLists {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        super::pg_casts::rewrite_expressions(plan, float8_operands)
    }

    fn name(&self) -> &str {
        RULE_NAME
    }
}

fn float8_operands(expr: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    match expr {
        Expr::Between(Between { expr, negated, low, high })
            if any_float([expr.as_ref(), low.as_ref(), high.as_ref()].into_iter(), schema) =>
        {
            let float = |e: Box<Expr>| Box::new(float8_if_numeric(*e, schema));
            Ok(Transformed::yes(Expr::Between(Between {
                expr: float(expr),
                negated,
                low: float(low),
                high: float(high),
            })))
        }
        Expr::InList(InList { expr, list, negated })
            if any_float(std::iter::once(expr.as_ref()).chain(&list), schema) =>
        {
            let expr = Box::new(float8_if_numeric(*expr, schema));
            let list = list.into_iter().map(|e| float8_if_numeric(e, schema)).collect();
            Ok(Transformed::yes(Expr::InList(InList { expr, list, negated })))
        }
        other => Ok(Transformed::no(other)),
    }
}

/// `plan` with results of mixed types typed as Postgres types them, and the schemas above
/// typed again, so that a result column has its rows' type from the start: each `CASE`
/// whose results differ in type is cast to their common type (float8 where a float meets
/// a numeric, else DataFusion's union coercion); a `VALUES` column or a `UNION` column
/// where a float meets a numeric is float8 (DataFusion makes both a `Decimal128(30, 15)`,
/// which holds no `Infinity` and drops digits). Other plans are returned as they are.
pub fn type_mixed_results(plan: LogicalPlan) -> DfResult<LogicalPlan> {
    let mut mixed = false;
    plan.apply_with_subqueries(|node| {
        mixed |= float_values_columns(node).is_some() || float_union_columns(node).is_some();
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                mixed |= matches!(e, Expr::Case(_)) && case_type(e, &input_schema_of(node)).is_some();
                Ok(if mixed { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
            })
        })
    })?;
    if !mixed {
        return Ok(plan);
    }
    plan.transform_up_with_subqueries(|node| {
        if let Some(columns) = float_values_columns(&node) {
            return values_as_float8(node, &columns).map(Transformed::yes);
        }
        if let Some(columns) = float_union_columns(&node) {
            return union_as_float8(node, &columns).map(Transformed::yes);
        }
        let schema = input_schema_of(&node);
        // Columns keep their names (a cast result would show in them otherwise).
        let names = datafusion::logical_expr::expr_rewriter::NamePreserver::new(&node);
        node.map_expressions(|expr| {
            let name = names.save(&expr);
            expr.transform_up(|e| cast_case_results(e, &schema)).map(|t| t.update_data(|e| name.restore(e)))
        })?
        .map_data(|node| node.recompute_schema())
    })
    .map(|t| t.data)
}

/// The columns of a `VALUES` where DataFusion cast a float to a decimal.
fn float_values_columns(node: &LogicalPlan) -> Option<Vec<usize>> {
    let LogicalPlan::Values(values) = node else { return None };
    let empty = DFSchema::empty();
    let columns: Vec<usize> = (0..values.schema.fields().len())
        .filter(|&j| {
            values.values.iter().any(|row| {
                matches!(&row[j], Expr::Cast(c) if is_decimal(c.field.data_type())
                    && c.expr.get_type(&empty).is_ok_and(|t| is_float(&t)))
            })
        })
        .collect();
    (!columns.is_empty()).then_some(columns)
}

fn values_as_float8(node: LogicalPlan, columns: &[usize]) -> DfResult<LogicalPlan> {
    let LogicalPlan::Values(mut values) = node else { unreachable!("float_values_columns checked") };
    for row in &mut values.values {
        for &j in columns {
            let cell =
                std::mem::replace(&mut row[j], Expr::Literal(datafusion::common::ScalarValue::Null, None));
            row[j] = match cell {
                // Undo DataFusion's cast to its decimal.
                Expr::Cast(c) if is_decimal(c.field.data_type()) => cast(*c.expr, DataType::Float64),
                other => cast(other, DataType::Float64),
            };
        }
    }
    values.schema = Arc::new(retyped(&values.schema, columns)?);
    Ok(LogicalPlan::Values(values))
}

/// The columns of a `UNION` that are floats in one input and numerics in another.
fn float_union_columns(node: &LogicalPlan) -> Option<Vec<usize>> {
    let LogicalPlan::Union(union) = node else { return None };
    let width = union.schema.fields().len();
    let columns: Vec<usize> = (0..width)
        .filter(|&j| {
            let types =
                || union.inputs.iter().filter_map(|i| i.schema().fields().get(j).map(|f| f.data_type()));
            types().any(is_float) && types().any(is_decimal)
        })
        .collect();
    (!columns.is_empty()).then_some(columns)
}

fn union_as_float8(node: LogicalPlan, columns: &[usize]) -> DfResult<LogicalPlan> {
    let LogicalPlan::Union(union) = node else { unreachable!("float_union_columns checked") };
    let inputs = union
        .inputs
        .into_iter()
        .map(|input| {
            let exprs = input
                .schema()
                .iter()
                .enumerate()
                .map(|(j, (qualifier, field))| {
                    let column = Expr::Column(datafusion::common::Column::from((qualifier, field)));
                    if columns.contains(&j) && field.data_type() != &DataType::Float64 {
                        cast(column, DataType::Float64).alias_qualified(qualifier.cloned(), field.name())
                    } else {
                        column
                    }
                })
                .collect::<Vec<_>>();
            datafusion::logical_expr::Projection::try_new(exprs, input)
                .map(|p| Arc::new(LogicalPlan::Projection(p)))
        })
        .collect::<DfResult<Vec<_>>>()?;
    datafusion::logical_expr::Union::try_new_with_loose_types(inputs).map(LogicalPlan::Union)
}

/// `schema` with `columns` typed float8.
fn retyped(schema: &DFSchema, columns: &[usize]) -> DfResult<DFSchema> {
    let fields: Vec<(Option<datafusion::common::TableReference>, Arc<datafusion::arrow::datatypes::Field>)> =
        schema
            .iter()
            .enumerate()
            .map(|(j, (qualifier, field))| {
                let field = if columns.contains(&j) {
                    Arc::new(field.as_ref().clone().with_data_type(DataType::Float64))
                } else {
                    field.clone()
                };
                (qualifier.cloned(), field)
            })
            .collect();
    DFSchema::new_with_metadata(fields, schema.metadata().clone())
}

fn input_schema_of(node: &LogicalPlan) -> DFSchema {
    super::pg_casts::input_schema(node).unwrap_or_else(|_| DFSchema::empty())
}

/// The type a `CASE` with results of differing types has; `None` where they agree.
fn case_type(expr: &Expr, schema: &DFSchema) -> Option<DataType> {
    let Expr::Case(case) = expr else { return None };
    let mut types = Vec::new();
    for result in case.when_then_expr.iter().map(|(_, then)| then.as_ref()).chain(case.else_expr.as_deref()) {
        match result.get_type(schema).ok()? {
            DataType::Null => {}
            t => types.push(t),
        }
    }
    if types.windows(2).all(|pair| pair[0] == pair[1]) {
        return None;
    }
    if types.iter().any(is_float) && types.iter().any(is_decimal) {
        return Some(DataType::Float64);
    }
    datafusion::logical_expr::type_coercion::other::get_coerce_type_for_case_expression(&types, None)
}

fn cast_case_results(expr: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    let Some(common) = case_type(&expr, schema) else { return Ok(Transformed::no(expr)) };
    let Expr::Case(mut case) = expr else { unreachable!("case_type is only Some for a CASE") };
    let typed = |e: Expr| match e.get_type(schema) {
        Ok(t) if t == common => e,
        _ => cast(e, common.clone()),
    };
    case.when_then_expr = std::mem::take(&mut case.when_then_expr)
        .into_iter()
        .map(|(when, then)| (when, Box::new(typed(*then))))
        .collect();
    case.else_expr = case.else_expr.take().map(|otherwise| Box::new(typed(*otherwise)));
    Ok(Transformed::yes(Expr::Case(case)))
}

/// `coalesce`, `greatest`, `least` and `nullif` typing floats beside numerics as float8;
/// `ceil` (`ceiling`), `floor` and `trunc` of a numeric as a whole number (scale 0, or
/// `trunc(x, n)`'s `n`), as Postgres prints them (`ceil(-1.5)` is `-1`, not `-1.0`).
pub fn register(ctx: &SessionContext) {
    let [coalesce, greatest, least, nullif, ceil, floor, trunc] = datafusion_functions();
    for inner in [coalesce, greatest, least, nullif] {
        let signature = Signature::user_defined(inner.signature().volatility);
        ctx.register_udf(ScalarUDF::new_from_impl(FloatFirst { inner, signature }));
    }
    for inner in [ceil, floor, trunc] {
        ctx.register_udf(ScalarUDF::new_from_impl(WholeNumeric { inner }));
    }
}

/// DataFusion's own `coalesce`, `greatest`, `least`, `nullif`, `ceil` (with Sabot's
/// `ceiling` alias), `floor` and `trunc`, for views of older plan revisions.
pub fn datafusion_functions() -> [Arc<ScalarUDF>; 7] {
    use datafusion::functions::core::{coalesce, greatest, least, nullif};
    use datafusion::functions::math::{ceil, floor, trunc};
    let ceil = Arc::new(ceil().as_ref().clone().with_aliases(["ceiling"]));
    [coalesce(), greatest(), least(), nullif(), ceil, floor(), trunc()]
}

/// `ceil` / `floor` / `trunc` of a numeric typed with the scale Postgres prints: 0, or
/// `trunc(x, n)`'s constant `n`. The inner function computes (over one more digit of
/// precision: `ceil(9.5)` is `10.0` first), its result is rescaled (exactly: the dropped
/// digits are zeros).
#[derive(Debug, PartialEq, Eq, Hash)]
struct WholeNumeric {
    inner: Arc<ScalarUDF>,
}

impl WholeNumeric {
    /// The result type for a numeric argument of `precision` and `scale`.
    fn rescaled(&self, args: &ReturnFieldArgs) -> Option<DataType> {
        let DataType::Decimal128(precision, scale) = args.arg_fields.first()?.data_type() else {
            return None;
        };
        let kept = match args.scalar_arguments {
            [_] => 0,
            [_, Some(digits)] => match digits.cast_to(&DataType::Int64).ok()? {
                datafusion::common::ScalarValue::Int64(Some(n)) => n.clamp(0, 30) as i8,
                _ => return None,
            },
            _ => return None,
        };
        // One more digit before the point: ceil(9.5) is 10.
        let whole_digits = (*precision as i16 - *scale as i16 + 1).max(1);
        Some(DataType::Decimal128((whole_digits + kept as i16).min(38) as u8, kept))
    }
}

impl ScalarUDFImpl for WholeNumeric {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let inner = self.inner.return_field_from_args(ReturnFieldArgs {
            arg_fields: args.arg_fields,
            scalar_arguments: args.scalar_arguments,
        })?;
        Ok(match self.rescaled(&args) {
            Some(t) => Arc::new(inner.as_ref().clone().with_data_type(t)),
            None => inner,
        })
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let wanted = args.return_field.data_type().clone();
        if let DataType::Decimal128(precision, scale) = args.arg_fields[0].data_type()
            && *precision < 38
        {
            let wider = DataType::Decimal128(precision + 1, *scale);
            args.args[0] = args.args[0].cast_to(&wider, None)?;
            args.arg_fields[0] = Arc::new(args.arg_fields[0].as_ref().clone().with_data_type(wider));
        }
        let scalars: Vec<Option<datafusion::common::ScalarValue>> = args
            .args
            .iter()
            .map(|a| match a {
                ColumnarValue::Scalar(v) => Some(v.clone()),
                ColumnarValue::Array(_) => None,
            })
            .collect();
        let scalar_refs: Vec<Option<&datafusion::common::ScalarValue>> =
            scalars.iter().map(Option::as_ref).collect();
        args.return_field = self.inner.return_field_from_args(ReturnFieldArgs {
            arg_fields: &args.arg_fields,
            scalar_arguments: &scalar_refs,
        })?;
        let result = self.inner.invoke_with_args(args)?;
        if result.data_type() == wanted {
            return Ok(result);
        }
        result.cast_to(&wanted, None)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

/// A function as DataFusion has it, but with numeric arguments beside float ones coerced
/// to float8 (see the module note); everything else is the inner function's.
#[derive(Debug, PartialEq, Eq, Hash)]
struct FloatFirst {
    inner: Arc<ScalarUDF>,
    /// User-defined, so that [`FloatFirst::coerce_types`] decides (`nullif`'s own is
    /// `comparable`).
    signature: Signature,
}

impl ScalarUDFImpl for FloatFirst {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        let floats = arg_types.iter().any(is_float);
        let types: Vec<DataType> = arg_types
            .iter()
            .map(|t| if floats && is_decimal(t) { DataType::Float64 } else { t.clone() })
            .collect();
        match (&self.inner.signature().type_signature, types.as_slice()) {
            (TypeSignature::UserDefined, _) => self.inner.coerce_types(&types),
            // `nullif(a, b)`: both as the type they compare in.
            (_, [a, b]) => {
                let common = comparison_coercion(a, b).ok_or_else(|| {
                    datafusion::common::DataFusionError::Plan(format!(
                        "{} cannot compare {a} and {b}",
                        self.name()
                    ))
                })?;
                Ok(vec![common.clone(), common])
            }
            _ => Ok(types),
        }
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        self.inner.invoke_with_args(args)
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> DfResult<ExprSimplifyResult> {
        self.inner.simplify(args, info)
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn conditional_arguments<'a>(&self, args: &'a [Expr]) -> Option<(Vec<&'a Expr>, Vec<&'a Expr>)> {
        self.inner.conditional_arguments(args)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

#[cfg(test)]
mod tests {
    use super::written_out;

    fn shown(text: &str) -> Option<String> {
        written_out(text).map(|e| e.to_string())
    }

    #[test]
    fn exponents_of_negative_scale_are_written_out() {
        assert_eq!(shown("1e3").as_deref(), Some("CAST(1000 AS NUMERIC(4,0))"));
        assert_eq!(shown("1.5E2").as_deref(), Some("CAST(150 AS NUMERIC(3,0))"));
        assert_eq!(shown("1e100").as_deref(), Some("CAST('1e100' AS DOUBLE PRECISION)"));
        assert_eq!(shown("0e5").as_deref(), Some("0"));
        assert_eq!(shown("2.5e-1"), None);
        assert_eq!(shown("1.5e1"), None);
        assert_eq!(shown("42"), None);
    }
}
