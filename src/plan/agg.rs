//! The aggregate nodes of the plan IR: the hash aggregate and its partial phase, and the
//! aggregate calls they compute (kind, input columns, ORDER BY keys, FILTER, DISTINCT).

use std::fmt::Write;

use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::DataType;

use super::StreamNode;
use crate::state::TableId;

#[derive(Debug, Clone)]
pub struct HashAggNode {
    /// The first `group_len` input columns are the group key.
    pub group_len: usize,
    pub calls: Vec<AggCall>,
    /// Per group: row count and inline accumulator state.
    pub group_table: TableId,
    /// The input is a PartialAgg's: column `group_len` holds each partial's row count and
    /// each call's `input` the first of its partial columns (see [`AggCall::partial_types`]).
    pub merge: bool,
    /// A group column whose input carries a watermark: once the watermark passes a
    /// group's value there, the group is final; its state is freed and later rows for it
    /// are late (kept as dead letters). The column leads the stored group key, so that
    /// closed groups are one key range.
    pub closing_column: Option<usize>,
    /// EMIT ON WINDOW CLOSE: each group shows once, when it closes (append-only output),
    /// instead of changing as rows arrive. Needs `closing_column`.
    pub emit_on_close: bool,
    /// With grouping sets that include the empty set `()`: its grouping id (the last group
    /// column; the others NULL). That group always shows a row, as Postgres' grand total
    /// does over no rows at all, like an aggregate without GROUP BY.
    pub empty_set_id: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct PartialAggNode {
    /// The first `group_len` input columns are the group key.
    pub group_len: usize,
    /// Calls over the input, all [`AggCall::is_decomposable`].
    pub calls: Vec<AggCall>,
    /// The merging HashAgg's closing column: rows behind its watermark are late here
    /// already, so that the dead letter keeps the row itself rather than a partial.
    pub closing_column: Option<usize>,
    /// The merging HashAgg's group table (where it records how far groups are closed).
    pub group_table: TableId,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AggKind {
    /// count(*): every row.
    CountRows,
    Count,
    CountDistinct,
    Sum,
    Avg,
    Min,
    Max,
    BoolAnd,
    BoolOr,
    StringAgg {
        delimiter: String,
    },
    /// bit_and / bit_or / bit_xor of integers: per bit, the count of values with it set.
    Bits(BitOp),
    /// The variance and standard deviation family, from the count, sum and sum of squares.
    Spread(Spread),
    /// array_agg: every value, NULLs included, in ORDER BY order.
    ArrayAgg,
    /// first_value / last_value: the value of the first / last row in ORDER BY order.
    FirstValue,
    LastValue,
    /// percentile_cont / percentile_disc at a fraction, WITHIN GROUP (ORDER BY the value).
    PercentileCont(f64),
    PercentileDisc(f64),
    /// mode() WITHIN GROUP (ORDER BY the value): the most frequent value (the first in
    /// order among equally frequent ones).
    Mode,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BitOp {
    And,
    Or,
    Xor,
}

/// var_pop, var_samp (variance), stddev_pop, stddev_samp (stddev).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub sample: bool,
    pub root: bool,
}

impl AggKind {
    /// Aggregates that keep the multiset of their input values in a state table.
    pub fn keeps_values(&self) -> bool {
        matches!(
            self,
            AggKind::CountDistinct
                | AggKind::Min
                | AggKind::Max
                | AggKind::StringAgg { .. }
                | AggKind::ArrayAgg
                | AggKind::FirstValue
                | AggKind::LastValue
                | AggKind::PercentileCont(_)
                | AggKind::PercentileDisc(_)
                | AggKind::Mode
        )
    }

    /// Value-keeping aggregates that keep NULL values too (in their order).
    pub fn keeps_nulls(&self) -> bool {
        matches!(self, AggKind::ArrayAgg | AggKind::FirstValue | AggKind::LastValue)
    }
}

#[derive(Debug, Clone)]
pub struct AggCall {
    pub kind: AggKind,
    /// The input column (None for count(*)).
    pub input: Option<usize>,
    pub input_type: DataType,
    pub output_type: DataType,
    /// The value multiset of value-keeping calls ([`AggKind::keeps_values`]). None for min
    /// and max over an append-only input: they keep their current extreme inline.
    pub value_table: Option<TableId>,
    /// Input columns the values are ordered by before the value itself (`ORDER BY` inside
    /// array_agg, string_agg, first_value, last_value), each with its direction.
    pub order_by: Vec<(usize, SortOptions)>,
    /// A boolean input column: only rows where it is true count (`FILTER (WHERE ...)`).
    pub filter: Option<usize>,
    /// `sum(DISTINCT x)`, `avg(DISTINCT x)`, `array_agg(DISTINCT x)`, `string_agg(DISTINCT
    /// x, ...)`: each value counts once (count(DISTINCT) is its own kind).
    pub distinct: bool,
}

/// A sort key as EXPLAIN shows it: the column, and DESC where it descends.
pub(super) fn sort_key_text(name: &str, options: &SortOptions) -> String {
    format!("{name}{}", if options.descending { " DESC" } else { "" })
}

impl AggCall {
    /// The aggregates ordered WITHIN GROUP by their value: `order_by` is the value column
    /// itself, with its direction, and the value multiset is kept in that order.
    pub fn is_within_group(&self) -> bool {
        matches!(self.kind, AggKind::PercentileCont(_) | AggKind::PercentileDisc(_) | AggKind::Mode)
    }

    /// Whether the call keeps its multiset of values in a value table: the value-keeping
    /// kinds, and sums and averages of DISTINCT values (whose sum moves as values appear
    /// and vanish from the multiset).
    pub fn keeps_values(&self) -> bool {
        self.kind.keeps_values() || (self.distinct && matches!(self.kind, AggKind::Sum | AggKind::Avg))
    }

    /// Whether the call's value comes from its inline accumulator although it keeps a
    /// value table (count, sum and avg of DISTINCT values).
    pub fn inline_over_values(&self) -> bool {
        self.kind == AggKind::CountDistinct
            || (self.distinct && matches!(self.kind, AggKind::Sum | AggKind::Avg))
    }

    /// Whether partial states of the call (over disjoint parts of a group's rows) merge
    /// into its state: all but the aggregates that keep a multiset of values.
    pub fn is_decomposable(&self) -> bool {
        match self.kind {
            // Their partial states have no merge (yet).
            AggKind::Bits(_) | AggKind::Spread(_) => false,
            AggKind::Min | AggKind::Max => self.value_table.is_none(),
            _ => !self.keeps_values(),
        }
    }

    /// The columns a PartialAgg outputs for the call: count(x) its count; sum and avg the
    /// count of values and their sum (exact as a 38-digit decimal, else a float); bool_and
    /// and bool_or the counts of trues and falses; an inline min / max its extreme
    /// (NULL: none); count(*) nothing (the partial's row count serves).
    pub fn partial_types(&self) -> Vec<DataType> {
        match self.kind {
            AggKind::CountRows => vec![],
            AggKind::Count => vec![DataType::Int64],
            AggKind::Sum | AggKind::Avg => {
                let sum = match &self.input_type {
                    DataType::Float16 | DataType::Float32 | DataType::Float64 => DataType::Float64,
                    DataType::Decimal128(_, scale) => DataType::Decimal128(38, *scale),
                    _ => DataType::Decimal128(38, 0),
                };
                vec![DataType::Int64, sum]
            }
            AggKind::BoolAnd | AggKind::BoolOr => vec![DataType::Int64, DataType::Int64],
            _ => vec![self.input_type.clone()],
        }
    }

    pub(super) fn describe(&self, input: &StreamNode) -> String {
        let name = match &self.kind {
            AggKind::CountRows => return "count(*)".into(),
            AggKind::Count => "count",
            AggKind::CountDistinct => "count distinct",
            AggKind::Sum => "sum",
            AggKind::Avg => "avg",
            AggKind::Min => "min",
            AggKind::Max => "max",
            AggKind::BoolAnd => "bool_and",
            AggKind::BoolOr => "bool_or",
            AggKind::StringAgg { .. } => "string_agg",
            AggKind::Bits(BitOp::And) => "bit_and",
            AggKind::Bits(BitOp::Or) => "bit_or",
            AggKind::Bits(BitOp::Xor) => "bit_xor",
            AggKind::Spread(Spread { sample: false, root: false }) => "var_pop",
            AggKind::Spread(Spread { sample: true, root: false }) => "var_samp",
            AggKind::Spread(Spread { sample: false, root: true }) => "stddev_pop",
            AggKind::Spread(Spread { sample: true, root: true }) => "stddev_samp",
            AggKind::ArrayAgg => "array_agg",
            AggKind::FirstValue => "first_value",
            AggKind::LastValue => "last_value",
            AggKind::PercentileCont(f) => return self.within_group("percentile_cont", *f, input),
            AggKind::PercentileDisc(f) => return self.within_group("percentile_disc", *f, input),
            AggKind::Mode => return self.within_group("mode", f64::NAN, input),
        };
        let arg = self.input.map(|i| input.column_name(i)).unwrap_or_default();
        let distinct = if self.distinct { "DISTINCT " } else { "" };
        let mut text = format!("{name}({distinct}{arg}");
        if !self.order_by.is_empty() {
            let keys: Vec<String> =
                self.order_by.iter().map(|(c, o)| sort_key_text(&input.column_name(*c), o)).collect();
            let _ = write!(text, " ORDER BY {}", keys.join(", "));
        }
        text.push(')');
        if let Some(filter) = self.filter {
            let _ = write!(text, " FILTER ({})", input.column_name(filter));
        }
        text
    }

    /// `name(fraction) WITHIN GROUP (ORDER BY value)` (no fraction when it is NaN).
    fn within_group(&self, name: &str, fraction: f64, input: &StreamNode) -> String {
        let arg = self.input.map(|i| input.column_name(i)).unwrap_or_default();
        let fraction = if fraction.is_nan() { String::new() } else { fraction.to_string() };
        let descending = self.order_by.first().is_some_and(|(_, o)| o.descending);
        let direction = if descending { " DESC" } else { "" };
        let mut text = format!("{name}({fraction}) WITHIN GROUP (ORDER BY {arg}{direction})");
        if let Some(filter) = self.filter {
            let _ = write!(text, " FILTER ({})", input.column_name(filter));
        }
        text
    }
}
