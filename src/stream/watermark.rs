//! Watermark generation at the head of a stream (DESIGN §3): a relation declared with
//! `WATERMARK FOR column AS expression` advances its watermark on `column` to the largest
//! value of `expression` over every row it has produced. Table writers publish it after
//! each chunk that advanced it; the reader of a source takes the minimum over its splits.
//!
//! Values are kept as `i64` (timestamps in their unit, integers as they are) and turned
//! into a `ScalarValue` of the column's type when published.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::compute::{cast, max};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::execution::context::SessionContext;
use datafusion::physical_expr::PhysicalExpr;

use crate::catalog::TableDesc;
use crate::common::{Error, Result, SqlState};

/// The compiled `WATERMARK FOR` clause of a relation.
#[derive(Clone, Debug)]
pub struct WatermarkExpr {
    /// The watermarked column (an index into the relation's columns).
    pub column: usize,
    pub data_type: DataType,
    expr: Arc<dyn PhysicalExpr>,
}

impl WatermarkExpr {
    /// The relation's watermark expression compiled over its full schema, or None when it
    /// declares none. 42804 when the expression's type is not the column's.
    pub fn of(desc: &TableDesc) -> Result<Option<WatermarkExpr>> {
        let Some(def) = &desc.watermark else { return Ok(None) };
        let schema = desc.full_schema();
        let column = schema.field(def.column);
        let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
        let ctx = SessionContext::new();
        let logical = ctx.parse_sql_expr(&def.expression, &df_schema)?;
        let expr = ctx.create_physical_expr(logical, &df_schema)?;
        let data_type = expr.data_type(schema.as_ref())?;
        if &data_type != column.data_type() {
            return Err(Error::new(
                SqlState::DatatypeMismatch,
                format!(
                    "the watermark expression {} is {data_type}, but column \"{}\" is {}",
                    def.expression,
                    column.name(),
                    column.data_type()
                ),
            )
            .with_hint("the expression must have the column's type, as in ts - INTERVAL '5' SECOND"));
        }
        Ok(Some(WatermarkExpr { column: def.column, data_type, expr }))
    }

    /// The largest value of the expression over `batch` (in the relation's full schema),
    /// or None when every value is NULL.
    pub fn batch_max(&self, batch: &RecordBatch) -> Result<Option<i64>> {
        let values = self.expr.evaluate(batch)?.into_array(batch.num_rows())?;
        let values = cast(&values, &DataType::Int64)?;
        Ok(max(values.as_primitive::<Int64Type>()))
    }

    /// `value` as a value of the column's type.
    pub fn scalar(&self, value: i64) -> Result<ScalarValue> {
        Ok(ScalarValue::Int64(Some(value)).cast_to(&self.data_type)?)
    }
}

/// The watermark of one stream head: the largest expression value seen so far.
#[derive(Clone, Debug)]
pub struct WatermarkGenerator {
    pub expr: WatermarkExpr,
    pub current: Option<i64>,
}

impl WatermarkGenerator {
    pub fn new(expr: WatermarkExpr, current: Option<i64>) -> Self {
        WatermarkGenerator { expr, current }
    }

    /// Takes `batch`'s rows into account; returns the new watermark when it advanced.
    pub fn observe(&mut self, batch: &RecordBatch) -> Result<Option<ScalarValue>> {
        let Some(value) = self.expr.batch_max(batch)? else { return Ok(None) };
        if self.current.is_some_and(|c| c >= value) {
            return Ok(None);
        }
        self.current = Some(value);
        Ok(Some(self.expr.scalar(value)?))
    }

    /// The current watermark as a value of the column's type.
    pub fn current_scalar(&self) -> Result<Option<ScalarValue>> {
        self.current.map(|v| self.expr.scalar(v)).transpose()
    }
}

/// The watermarks of a consumer of several streams (the channels of an operator input,
/// the inputs of a union): per column, the minimum over the streams once each has one.
#[derive(Clone, Debug)]
pub struct WatermarkMinimum {
    /// Per stream: its watermark of each column (never moving back).
    streams: Vec<HashMap<usize, ScalarValue>>,
    /// Per column: the minimum passed on.
    passed: HashMap<usize, ScalarValue>,
}

impl WatermarkMinimum {
    pub fn new(streams: usize) -> Self {
        WatermarkMinimum { streams: vec![HashMap::new(); streams], passed: HashMap::new() }
    }

    /// Stream `stream` reached `value` on `column`; the minimum over the streams when it
    /// advanced.
    pub fn advance(&mut self, stream: usize, column: usize, value: ScalarValue) -> Option<ScalarValue> {
        let current = self.streams[stream].entry(column).or_insert_with(|| value.clone());
        if value > *current {
            *current = value;
        }
        let mut minimum: Option<&ScalarValue> = None;
        for marks in &self.streams {
            let mark = marks.get(&column)?;
            if minimum.is_none_or(|m| mark < m) {
                minimum = Some(mark);
            }
        }
        let minimum = minimum?.clone();
        if self.passed.get(&column).is_some_and(|p| *p >= minimum) {
            return None;
        }
        self.passed.insert(column, minimum.clone());
        Some(minimum)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use datafusion::arrow::array::{Int64Array, TimestampMicrosecondArray};

    use super::*;
    use crate::catalog::{ColumnDesc, WatermarkDef};
    use crate::common::SqlType;

    /// An append-only table (v BIGINT, ts TIMESTAMP, hidden row id) with `WATERMARK FOR ts
    /// AS expression`.
    pub fn table(expression: &str) -> TableDesc {
        let column = |name: &str, sql_type: SqlType, hidden| ColumnDesc {
            name: name.into(),
            sql_type,
            nullable: true,
            default: None,
            hidden,
        };
        TableDesc {
            id: 1024,
            schema: "public".into(),
            name: "t".into(),
            columns: vec![
                column("v", SqlType::Int64, false),
                column("ts", SqlType::Timestamp, false),
                column("_row_id", SqlType::Int64, true),
            ],
            primary_key: vec![2],
            view: None,
            connector: None,
            append_only: true,
            watermark: Some(WatermarkDef { column: 1, expression: expression.into() }),
            plain_view: None,
            checks: Vec::new(),
            key_constraint: None,
            uniques: Vec::new(),
        }
    }

    #[test]
    fn the_watermark_is_the_largest_expression_value_so_far() {
        let desc = table("ts - INTERVAL '5' SECOND");
        let expr = WatermarkExpr::of(&desc).unwrap().unwrap();
        let mut generator = WatermarkGenerator::new(expr, None);
        let batch = |times: Vec<Option<i64>>| rows(&desc, times);
        let advanced = generator.observe(&batch(vec![Some(10_000_000), None, Some(7_000_000)])).unwrap();
        assert_eq!(advanced, Some(ScalarValue::TimestampMicrosecond(Some(5_000_000), None)));
        // Older rows do not move it back; NULLs do not move it.
        assert_eq!(generator.observe(&batch(vec![Some(8_000_000), None])).unwrap(), None);
        assert_eq!(generator.observe(&batch(vec![None])).unwrap(), None);
        assert_eq!(generator.current, Some(5_000_000));
    }

    /// Rows of [`table`] with times `times` (microseconds).
    pub fn rows(desc: &TableDesc, times: Vec<Option<i64>>) -> RecordBatch {
        let n = times.len();
        RecordBatch::try_new(
            desc.full_schema(),
            vec![
                Arc::new(Int64Array::from(vec![1; n])),
                Arc::new(TimestampMicrosecondArray::from(times)),
                Arc::new(Int64Array::from_iter_values(0..n as i64)),
            ],
        )
        .unwrap()
    }

    #[test]
    fn the_expression_must_have_the_column_type() {
        let error = WatermarkExpr::of(&table("v + 1")).unwrap_err();
        assert_eq!(error.sqlstate().code(), "42804");
        assert!(error.to_string().contains("column \"ts\""), "{error}");
    }
}
