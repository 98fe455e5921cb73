//! Enforcing `CHECK` constraints: each condition is evaluated over a statement's whole
//! batch of new rows at once; a row for which it is false (not NULL) rejects the
//! statement with 23514, naming the first such constraint in name order and the row.

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::common::DFSchema;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{Expr, ExprSchemable};

use crate::catalog::{CheckDef, TableDesc};
use crate::common::{Error, Result, SqlState};

/// At CREATE TABLE: every condition must plan over the table's columns and be boolean.
pub(super) fn validate(desc: &TableDesc) -> Result<()> {
    let ctx = SessionContext::new();
    let schema = DFSchema::try_from(desc.full_schema().as_ref().clone())?;
    for check in &desc.checks {
        let data_type = condition(&ctx, check, &schema)?.get_type(&schema)?;
        if !matches!(data_type, DataType::Boolean | DataType::Null) {
            let sql_type = crate::common::SqlType::from_arrow(&datafusion::arrow::datatypes::Field::new(
                "", data_type, true,
            ));
            return Err(Error::new(
                SqlState::DatatypeMismatch,
                format!("argument of CHECK must be type boolean, not type {}", sql_type.name()),
            ));
        }
    }
    Ok(())
}

/// Fails with 23514 if a row of `rows` (columns named as the table's) violates a check.
pub(super) fn enforce(desc: &TableDesc, rows: &RecordBatch) -> Result<()> {
    if desc.checks.is_empty() || rows.num_rows() == 0 {
        return Ok(());
    }
    let ctx = SessionContext::new();
    let schema = DFSchema::try_from(rows.schema().as_ref().clone())?;
    for check in &desc.checks {
        let expr = condition(&ctx, check, &schema)?;
        let physical = ctx.create_physical_expr(expr, &schema)?;
        let values = physical.evaluate(rows)?.into_array(rows.num_rows())?;
        let values = datafusion::arrow::compute::cast(&values, &DataType::Boolean)?;
        let values = values.as_boolean();
        if let Some(row) = (0..values.len()).find(|&i| values.is_valid(i) && !values.value(i)) {
            return Err(violation(desc, check, rows, row));
        }
    }
    Ok(())
}

fn condition(ctx: &SessionContext, check: &CheckDef, schema: &DFSchema) -> Result<Expr> {
    ctx.parse_sql_expr(&check.expression, schema).map_err(|e| {
        Error::new(
            SqlState::SyntaxError,
            format!("invalid CHECK constraint \"{}\": {}", check.name, Error::from(e)),
        )
    })
}

fn violation(desc: &TableDesc, check: &CheckDef, rows: &RecordBatch, row: usize) -> Error {
    let values: Vec<String> = desc
        .columns
        .iter()
        .filter(|c| !c.hidden)
        .filter_map(|c| rows.schema().index_of(&c.name).ok())
        .map(|i| {
            let column = rows.column(i);
            if column.is_null(row) {
                "null".to_string()
            } else {
                array_value_to_string(column, row).unwrap_or_default()
            }
        })
        .collect();
    Error::new(
        SqlState::CheckViolation,
        format!("new row for relation \"{}\" violates check constraint \"{}\"", desc.name, check.name),
    )
    .with_detail(format!("Failing row contains ({}).", values.join(", ")))
}
