//! jsonb arguments that stay jsonb at run time (plan revision 12). The jsonb functions tell
//! a jsonb argument from text by its field's type mark, and DataFusion derives an
//! argument's field from the batch being computed; a view's batches carry no marks, so in
//! a materialized view `to_jsonb(doc)`, `jsonb_build_array(doc)` and `jsonb_agg(doc)` over
//! a jsonb column made JSON strings of the documents (`["1"]` for `[1]`), where a batch
//! query did not. [`JsonbArguments`], an analyzer rule, wraps each such column argument in
//! `sabot_jsonb_marked(x)`: a struct of one field named [`FIELD`] holding the text, which
//! the jsonb functions read as jsonb. A type, unlike a field's mark, stays with the values
//! when the planner computes the call in a projection of its own (a common expression).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StructArray};
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, Result as DfResult};
use datafusion::logical_expr::expr::{Cast, ScalarFunction};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::optimizer::AnalyzerRule;

use crate::common::SqlType;
use crate::common::types::PG_TYPE_METADATA;

/// The rule's name, by which views of older plan revisions leave it out.
pub const RULE_NAME: &str = "jsonb_arguments";

/// [`CastMarks`]' name, by which views of older plan revisions leave it out.
pub const CAST_RULE_NAME: &str = "cast_marks";

/// The one field of a marked argument.
pub const FIELD: &str = "sabot_jsonb";

/// Functions that read an argument as jsonb only when it is marked so.
const READERS: &[&str] = &["to_jsonb", "jsonb_build_array", "jsonb_build_object", "sabot_jsonb_delete"];

#[derive(Debug)]
pub struct JsonbArguments;

impl AnalyzerRule for JsonbArguments {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        super::pg_casts::rewrite_expressions(plan, mark)
    }

    fn name(&self) -> &str {
        RULE_NAME
    }
}

fn mark(expr: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    let Expr::ScalarFunction(call) = &expr else { return Ok(Transformed::no(expr)) };
    if !READERS.contains(&call.func.name()) {
        return Ok(Transformed::no(expr));
    }
    let jsonb_column = |e: &Expr| {
        matches!(e, Expr::Column(_))
            && e.to_field(schema).is_ok_and(|(_, f)| SqlType::from_arrow(&f) == SqlType::Jsonb)
    };
    if !call.args.iter().any(jsonb_column) {
        return Ok(Transformed::no(expr));
    }
    let marked =
        Arc::new(ScalarUDF::new_from_impl(Marked { signature: Signature::any(1, Volatility::Immutable) }));
    let args = call
        .args
        .iter()
        .map(|a| match jsonb_column(a) {
            true => Expr::ScalarFunction(ScalarFunction::new_udf(marked.clone(), vec![a.clone()])),
            false => a.clone(),
        })
        .collect();
    Ok(Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(call.func.clone(), args))))
}

/// A cast is of its target type: DataFusion passes its operand's field marks on through a
/// cast to a type alone, so `doc::text` of a jsonb column was still jsonb (`pg_typeof`
/// said so, and clients were told the column is jsonb). The rule gives such casts a
/// target field of their own, without marks (plan revision 12).
#[derive(Debug)]
pub struct CastMarks;

impl AnalyzerRule for CastMarks {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        super::pg_casts::rewrite_expressions(plan, unmark_cast)
    }

    fn name(&self) -> &str {
        CAST_RULE_NAME
    }
}

fn unmark_cast(expr: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    let Expr::Cast(Cast { expr: inner, field }) = &expr else { return Ok(Transformed::no(expr)) };
    let type_only = field.name().is_empty() && field.metadata().is_empty();
    let marked = inner.to_field(schema).is_ok_and(|(_, f)| f.metadata().contains_key(PG_TYPE_METADATA));
    if !type_only || !marked {
        return Ok(Transformed::no(expr));
    }
    let target = Arc::new(Field::new("cast", field.data_type().clone(), true));
    Ok(Transformed::yes(Expr::Cast(Cast::new_from_field(inner.clone(), target))))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Marked {
    signature: Signature,
}

impl ScalarUDFImpl for Marked {
    fn name(&self) -> &str {
        "sabot_jsonb_marked"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Named as its argument, so that the plan's schema stays as planned.
    fn schema_name(&self, args: &[Expr]) -> DfResult<String> {
        Ok(args[0].schema_name().to_string())
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Struct(Fields::from(vec![Field::new(FIELD, DataType::Utf8, true)])))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let texts =
            datafusion::arrow::compute::cast(&args.args[0].to_array(args.number_rows)?, &DataType::Utf8)?;
        let nulls = texts.nulls().cloned();
        let fields = Fields::from(vec![Field::new(FIELD, DataType::Utf8, true)]);
        let marked: ArrayRef = Arc::new(StructArray::try_new(fields, vec![texts], nulls)?);
        super::pg_functions::like_arguments(&args.args, marked)
    }
}

/// The text of a marked jsonb argument.
pub fn unmarked(array: &ArrayRef) -> Option<&ArrayRef> {
    let DataType::Struct(fields) = array.data_type() else { return None };
    (fields.len() == 1 && fields[0].name() == FIELD).then(|| array.as_struct().column(0))
}
