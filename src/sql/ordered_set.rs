//! Postgres's ordered-set aggregates for batch queries, registered in every context:
//! `percentile_cont(f)`, `percentile_disc(f)` and `mode()`, each `WITHIN GROUP (ORDER BY
//! value [DESC])`. percentile_cont interpolates as Postgres does (`lo + (hi - lo) * p`;
//! DataFusion's own quantizes `p` to six digits); percentile_disc and mode are missing
//! from DataFusion. NULL values are skipped; a fraction outside 0..1 is 22003. Also
//! `variance`, Postgres' name for `var_samp`.
//! Materialized views maintain the same aggregates incrementally, with an order-statistic
//! cursor per group (`stream::operator::hash_agg::values`).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, ListArray};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::{SortOptions, concat, filter, is_not_null, sort_to_indices, take};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::{Result, ScalarValue};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility};
use datafusion::physical_expr::expressions::Literal;

use crate::common::{Error, SqlState};

pub fn register(ctx: &SessionContext) {
    for kind in [Kind::Cont, Kind::Disc, Kind::Mode] {
        ctx.register_udaf(AggregateUDF::new_from_impl(OrderedSet::new(kind)));
    }
    // Postgres' name for var_samp.
    let var_samp = datafusion::functions_aggregate::variance::var_samp_udaf();
    ctx.register_udaf(var_samp.as_ref().clone().with_aliases(["variance"]));
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Cont,
    Disc,
    Mode,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct OrderedSet {
    kind: Kind,
    signature: Signature,
}

impl OrderedSet {
    fn new(kind: Kind) -> Self {
        OrderedSet { kind, signature: Signature::user_defined(Volatility::Immutable) }
    }
}

impl AggregateUDFImpl for OrderedSet {
    fn name(&self) -> &str {
        match self.kind {
            Kind::Cont => "percentile_cont",
            Kind::Disc => "percentile_disc",
            Kind::Mode => "mode",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The value (a double for percentile_cont), then the fraction as a double.
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let arguments = if self.kind == Kind::Mode { 1 } else { 2 };
        if arg_types.len() != arguments {
            return Err(Error::new(
                SqlState::UndefinedFunction,
                format!(
                    "{} takes {} argument(s) and WITHIN GROUP (ORDER BY a value)",
                    self.name(),
                    arguments - 1
                ),
            )
            .into());
        }
        let value = if self.kind == Kind::Cont { DataType::Float64 } else { arg_types[0].clone() };
        Ok(std::iter::once(value).chain((arguments == 2).then_some(DataType::Float64)).collect())
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(if self.kind == Kind::Cont { DataType::Float64 } else { arg_types[0].clone() })
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let item = Field::new_list_field(args.input_fields[0].data_type().clone(), true);
        Ok(vec![Arc::new(Field::new(format!("{}[values]", args.name), DataType::List(Arc::new(item)), true))])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let fraction = match self.kind {
            Kind::Mode => 0.0,
            _ => fraction(self.name(), &args.exprs[1])?,
        };
        let options = args.order_bys.first().map(|sort| sort.options).unwrap_or_default();
        let data_type = args.expr_fields[0].data_type().clone();
        Ok(Box::new(OrderedSetAccumulator {
            kind: self.kind,
            fraction,
            options,
            data_type,
            values: Vec::new(),
        }))
    }

    fn supports_within_group_clause(&self) -> bool {
        true
    }
}

/// The fraction argument: a constant from 0 to 1.
fn fraction(name: &str, expr: &Arc<dyn datafusion::physical_expr::PhysicalExpr>) -> Result<f64> {
    let value = expr.downcast_ref::<Literal>().and_then(|l| l.value().cast_to(&DataType::Float64).ok());
    match value {
        Some(ScalarValue::Float64(Some(f))) if (0.0..=1.0).contains(&f) => Ok(f),
        Some(ScalarValue::Float64(Some(f))) => Err(Error::new(
            SqlState::NumericValueOutOfRange,
            format!("percentile value {f} is not between 0 and 1"),
        )
        .into()),
        _ => Err(Error::new(
            SqlState::FeatureNotSupported,
            format!("{name} of a fraction that is not a constant"),
        )
        .into()),
    }
}

#[derive(Debug)]
struct OrderedSetAccumulator {
    kind: Kind,
    fraction: f64,
    options: SortOptions,
    data_type: DataType,
    /// The non-NULL values so far, as they came.
    values: Vec<ArrayRef>,
}

impl OrderedSetAccumulator {
    /// Every value so far, in WITHIN GROUP order.
    fn sorted(&self) -> Result<ArrayRef> {
        let parts: Vec<&dyn Array> = self.values.iter().map(|a| a.as_ref()).collect();
        let all = match parts.as_slice() {
            [] => return Ok(datafusion::arrow::array::new_empty_array(&self.data_type)),
            [one] => one.slice(0, one.len()),
            _ => concat(&parts)?,
        };
        let indices = sort_to_indices(&all, Some(self.options), None)?;
        Ok(take(&all, &indices, None)?)
    }
}

impl Accumulator for OrderedSetAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let present = filter(&values[0], &is_not_null(&values[0])?)?;
        if !present.is_empty() {
            self.values.push(present);
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let lists = states[0].as_list::<i32>();
        for list in lists.iter().flatten() {
            self.update_batch(&[list])?;
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let values = self.sorted()?;
        let item = Arc::new(Field::new_list_field(self.data_type.clone(), true));
        let offsets = OffsetBuffer::from_lengths([values.len()]);
        Ok(vec![ScalarValue::List(Arc::new(ListArray::try_new(item, offsets, values, None)?))])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let sorted = self.sorted()?;
        let n = sorted.len();
        if n == 0 {
            return ScalarValue::try_from(&self.return_type());
        }
        match self.kind {
            Kind::Disc => {
                let rank = ((self.fraction * n as f64).ceil() as usize).max(1) - 1;
                ScalarValue::try_from_array(&sorted, rank.min(n - 1))
            }
            Kind::Cont => {
                let position = self.fraction * (n - 1) as f64;
                let (first, second) = (position.floor() as usize, position.ceil() as usize);
                let values = datafusion::arrow::compute::cast(&sorted, &DataType::Float64)?;
                let values = values.as_primitive::<Float64Type>();
                let (low, high) = (values.value(first), values.value(second.min(n - 1)));
                Ok(ScalarValue::Float64(Some(low + (high - low) * (position - first as f64))))
            }
            Kind::Mode => {
                let converter = RowConverter::new(vec![SortField::new(self.data_type.clone())])?;
                let rows = converter.convert_columns(std::slice::from_ref(&sorted))?;
                // The longest run of equal values, the first of equally long ones.
                let (mut best, mut best_length, mut start) = (0, 0, 0);
                for i in 1..=n {
                    if i == n || rows.row(i) != rows.row(start) {
                        if i - start > best_length {
                            (best, best_length) = (start, i - start);
                        }
                        start = i;
                    }
                }
                ScalarValue::try_from_array(&sorted, best)
            }
        }
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.values.iter().map(|a| a.get_array_memory_size()).sum::<usize>()
    }
}

impl OrderedSetAccumulator {
    fn return_type(&self) -> DataType {
        if self.kind == Kind::Cont { DataType::Float64 } else { self.data_type.clone() }
    }
}
