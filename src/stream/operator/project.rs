//! Project: evaluates one expression per output column.
//!
//! Stateless and row-for-row: every op (insert, delete, either half of an update pair)
//! keeps its op, so retractions meet the same values their inserts produced (expressions
//! are deterministic, but for `PROCTIME()`, which the planner allows only over
//! append-only inputs). Barriers pass through. A watermark on an input column becomes one
//! on each output column that is a monotone function of it (`ts - INTERVAL '1' MINUTE`,
//! `date_trunc('hour', ts)`), with that function applied to it. An output column that is
//! a monotone function of `PROCTIME()` gets a watermark at each barrier: the function of
//! the clock then, which no later row's value is below (`common::proctime`). A
//! `coalesce` of columns with watermarks (a FULL join's two window starts, each of which
//! may be NULL-padded) gets the smallest of theirs, once each has one.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::physical_expr::PhysicalExpr;

use super::{Operator, OperatorContext, evaluate, evaluate_one_row};
use crate::common::Result;
use crate::plan::{Monotone, monotone_of};
use crate::stream::message::{Chunk, Message};

pub struct ProjectOperator {
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
    watermarks: Option<DerivedWatermarks>,
}

/// The output columns with a watermark, and what it derives from.
struct DerivedWatermarks {
    input_schema: SchemaRef,
    /// (output column, the input column it is a monotone function of).
    from_columns: Vec<(usize, usize)>,
    /// Output columns that are a monotone function of the processing-time clock.
    from_clock: Vec<usize>,
    /// (output column, the input columns it takes the first non-NULL of) ...
    coalesced: Vec<(usize, Vec<usize>)>,
    /// ... with each input column's watermark so far, and what each output had last.
    input_marks: HashMap<usize, ScalarValue>,
    passed: HashMap<usize, ScalarValue>,
}

impl ProjectOperator {
    pub fn new(exprs: Vec<Arc<dyn PhysicalExpr>>, schema: SchemaRef) -> Self {
        ProjectOperator { exprs, schema, watermarks: None }
    }

    /// Derives output watermarks for the output columns `marked` (the plan's watermark
    /// columns) from the input's or from the clock.
    pub fn with_watermarks(mut self, input_schema: SchemaRef, marked: &[usize]) -> Self {
        let (mut from_columns, mut from_clock, mut coalesced) = (Vec::new(), Vec::new(), Vec::new());
        for &i in marked {
            match monotone_of(&self.exprs[i]) {
                Some(Monotone::Column(c)) => from_columns.push((i, c)),
                Some(Monotone::ProcessingTime) => from_clock.push(i),
                Some(Monotone::Coalesce(columns)) => coalesced.push((i, columns)),
                None => {}
            }
        }
        if !from_columns.is_empty() || !from_clock.is_empty() || !coalesced.is_empty() {
            self.watermarks = Some(DerivedWatermarks {
                input_schema,
                from_columns,
                from_clock,
                coalesced,
                input_marks: HashMap::new(),
                passed: HashMap::new(),
            });
        }
        self
    }

    /// The watermarks of the `coalesce` columns over `column`, which reached `value`: the
    /// expression at the smallest of their columns' watermarks (that column holding it,
    /// the others NULL) once each has one, when it rose.
    fn coalesced_watermarks(
        &mut self,
        column: usize,
        value: &ScalarValue,
        view: &str,
    ) -> Result<Vec<Message>> {
        let Some(derived) = &mut self.watermarks else { return Ok(Vec::new()) };
        if derived.coalesced.iter().all(|(_, columns)| !columns.contains(&column)) {
            return Ok(Vec::new());
        }
        let mark = derived.input_marks.entry(column).or_insert_with(|| value.clone());
        if *mark < *value {
            *mark = value.clone();
        }
        let mut out = Vec::new();
        for (output, columns) in derived.coalesced.iter().filter(|(_, c)| c.contains(&column)) {
            let mut smallest: Option<(usize, &ScalarValue)> = None;
            for c in columns {
                let Some(mark) = derived.input_marks.get(c) else {
                    smallest = None;
                    break;
                };
                if smallest.is_none_or(|(_, s)| mark < s) {
                    smallest = Some((*c, mark));
                }
            }
            let Some(smallest) = smallest else { continue };

            let value = evaluate_one_row(&self.exprs[*output], &derived.input_schema, Some(smallest), view)?;
            if value.is_null() || derived.passed.get(output).is_some_and(|p| *p >= value) {
                continue;
            }
            derived.passed.insert(*output, value.clone());
            out.push(Message::Watermark { column: *output, value });
        }
        Ok(out)
    }
}

impl Operator for ProjectOperator {
    fn name(&self) -> &'static str {
        "Project"
    }

    fn on_chunk(&mut self, ctx: &OperatorContext, _input: usize, chunk: Chunk) -> Result<Vec<Chunk>> {
        let columns: Vec<ArrayRef> =
            self.exprs.iter().map(|e| evaluate(e, &chunk.data, ctx)).collect::<Result<_>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(chunk.len()));
        let data = RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)?;
        Ok(vec![Chunk::new(chunk.ops, data)])
    }

    /// An output column that is a monotone function of the input column gets the
    /// function of the watermark: evaluated over one row holding the watermark value.
    fn on_watermark(
        &mut self,
        ctx: &OperatorContext,
        _input: usize,
        column: usize,
        value: &ScalarValue,
    ) -> Result<Vec<Message>> {
        let Some(derived) = &self.watermarks else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for &(output, _) in derived.from_columns.iter().filter(|(_, c)| *c == column) {
            let value = evaluate_one_row(
                &self.exprs[output],
                &derived.input_schema,
                Some((column, value)),
                &ctx.view,
            )?;
            if !value.is_null() {
                out.push(Message::Watermark { column: output, value });
            }
        }
        out.extend(self.coalesced_watermarks(column, value, &ctx.view)?);
        Ok(out)
    }

    /// Processing-time columns: the clock now, through the column's function. Every row
    /// this operator evaluates after the barrier reads the clock later.
    fn watermarks_after_barrier(&mut self) -> Vec<Message> {
        let Some(derived) = &self.watermarks else { return Vec::new() };
        let mut out = Vec::new();
        for &output in &derived.from_clock {
            match evaluate_one_row(&self.exprs[output], &derived.input_schema, None, "") {
                Ok(value) if !value.is_null() => out.push(Message::Watermark { column: output, value }),
                Ok(_) => {}
                // Only a function that fails on the clock's value gets here; the column
                // then has no watermark this epoch, and its windows close at the next.
                Err(error) => tracing::warn!(%error, "processing-time watermark not derived"),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::Operator as BinaryOp;
    use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};

    use super::*;
    use crate::stream::operator::testing::{Harness, chunk, lines, pretty, schema, watermarks};

    #[test]
    fn failing_rows_become_null_and_ops_are_kept() {
        let input_schema = schema("k:int v:int");
        // 100 / v: division by zero makes that row's value NULL, the others are computed.
        let divide = Arc::new(BinaryExpr::new(
            Arc::new(Literal::new(ScalarValue::Int64(Some(100)))),
            BinaryOp::Divide,
            Arc::new(Column::new("v", 1)),
        ));
        let mut project =
            ProjectOperator::new(vec![Arc::new(Column::new("k", 0)), divide], schema("k:int q:int"));
        let harness = Harness::new();
        let out = project
            .on_chunk(
                &harness.ctx,
                0,
                chunk(
                    &input_schema,
                    "+ 1 5
                     U- 2 0
                     U+ 2 4
                     - 3 .",
                ),
            )
            .unwrap();
        assert_eq!(
            pretty(&out),
            lines(
                "+ 1 20
                 U- 2 .
                 U+ 2 25
                 - 3 ."
            )
        );
    }

    #[test]
    fn watermarks_follow_monotone_expressions() {
        let input_schema = schema("k:int v:int");
        let minus_ten = Arc::new(BinaryExpr::new(
            Arc::new(Column::new("v", 1)),
            BinaryOp::Minus,
            Arc::new(Literal::new(ScalarValue::Int64(Some(10)))),
        ));
        let times_two = Arc::new(BinaryExpr::new(
            Arc::new(Column::new("v", 1)),
            BinaryOp::Multiply,
            Arc::new(Literal::new(ScalarValue::Int64(Some(2)))),
        ));
        let exprs: Vec<Arc<dyn PhysicalExpr>> = vec![Arc::new(Column::new("v", 1)), minus_ten, times_two];
        let marked = [0, 1];
        let mut project = ProjectOperator::new(exprs, schema("v:int early:int double:int"))
            .with_watermarks(input_schema, &marked);
        let harness = Harness::new();
        let marks =
            watermarks(&project.on_watermark(&harness.ctx, 0, 1, &ScalarValue::Int64(Some(50))).unwrap());
        // v passes as it is, v - 10 is shifted; v * 2 is not in the plan's marked columns.
        assert_eq!(marks, vec![(0, ScalarValue::Int64(Some(50))), (1, ScalarValue::Int64(Some(40)))]);
        assert!(project.on_watermark(&harness.ctx, 0, 0, &ScalarValue::Int64(Some(1))).unwrap().is_empty());
    }

    #[test]
    fn processing_time_columns_get_the_clock_as_watermark_at_barriers() {
        use datafusion::arrow::array::AsArray;
        use datafusion::arrow::datatypes::{Field, Schema, TimestampMicrosecondType};
        use datafusion::common::DFSchema;
        use datafusion::execution::context::SessionContext;
        use datafusion::logical_expr::ScalarUDF;

        use crate::sql::proctime::{ProcTime, proctime_type};

        let input_schema = schema("k:int");
        let df_schema = DFSchema::try_from(input_schema.as_ref().clone()).unwrap();
        let call = ScalarUDF::new_from_impl(ProcTime::default()).call(vec![]);
        let proctime = SessionContext::new().create_physical_expr(call, &df_schema).unwrap();
        let output = Arc::new(Schema::new(vec![
            Field::new("k", datafusion::arrow::datatypes::DataType::Int64, true),
            Field::new("p", proctime_type(), true),
        ]));
        let mut project = ProjectOperator::new(vec![Arc::new(Column::new("k", 0)), proctime], output)
            .with_watermarks(input_schema.clone(), &[1]);
        let harness = Harness::new();
        let stamp = |project: &mut ProjectOperator| {
            let out = project.on_chunk(&harness.ctx, 0, chunk(&input_schema, "+ 1\n+ 2")).unwrap();
            let times = out[0].data.column(1).as_primitive::<TimestampMicrosecondType>().clone();
            assert_eq!(times.value(0), times.value(1), "one reading per chunk");
            times.value(0)
        };
        let before = stamp(&mut project);
        let marks = watermarks(&project.watermarks_after_barrier());
        let [(1, ScalarValue::TimestampMicrosecond(Some(mark), _))] = marks.as_slice() else {
            panic!("one processing-time watermark on p: {marks:?}")
        };
        let after = stamp(&mut project);
        assert!(before <= *mark && *mark <= after, "{before} <= {mark} <= {after}");
    }

    #[test]
    fn coalesce_of_watermarked_columns_gets_the_smaller_watermark_once_both_have_one() {
        use datafusion::physical_expr::expressions::{CaseExpr, IsNotNullExpr};

        let input_schema = schema("a:int b:int");
        // coalesce(a, b) as the optimizer leaves it.
        let (a, b): (Arc<dyn PhysicalExpr>, Arc<dyn PhysicalExpr>) =
            (Arc::new(Column::new("a", 0)), Arc::new(Column::new("b", 1)));
        let coalesce: Arc<dyn PhysicalExpr> = Arc::new(
            CaseExpr::try_new(None, vec![(Arc::new(IsNotNullExpr::new(a.clone())), a)], Some(b)).unwrap(),
        );
        assert!(matches!(monotone_of(&coalesce), Some(Monotone::Coalesce(c)) if c == [0, 1]));
        let mut project =
            ProjectOperator::new(vec![coalesce], schema("t:int")).with_watermarks(input_schema, &[0]);
        let harness = Harness::new();
        let mut mark = |column: usize, value: i64| {
            watermarks(
                &project.on_watermark(&harness.ctx, 0, column, &ScalarValue::Int64(Some(value))).unwrap(),
            )
        };
        // Nothing until both columns have one; then the smaller, only when it rises.
        assert!(mark(0, 50).is_empty());
        assert_eq!(mark(1, 40), vec![(0, ScalarValue::Int64(Some(40)))]);
        assert_eq!(mark(1, 60), vec![(0, ScalarValue::Int64(Some(50)))]);
        assert!(mark(1, 70).is_empty());
        assert!(mark(0, 45).is_empty());
        assert_eq!(mark(0, 65), vec![(0, ScalarValue::Int64(Some(65)))]);
    }
}
