//! The join node: a symmetric hash join, with what bounds its state (a watermarked key
//! pair, or time conditions between the sides: an interval join).

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::JoinType;
use datafusion::physical_expr::PhysicalExpr;

use super::StreamNode;
use crate::state::TableId;

#[derive(Debug, Clone)]
pub struct HashJoinNode {
    pub join_type: JoinType,
    pub left_keys: Vec<usize>,
    pub right_keys: Vec<usize>,
    /// Non-equi conditions, over the joined row (left visible, right visible, hidden).
    pub residual: Option<Arc<dyn PhysicalExpr>>,
    /// NOT IN: a NULL on the right makes the anti join empty.
    pub null_aware: bool,
    /// Keys compared with IS NOT DISTINCT FROM: a NULL key matches a NULL key (EXCEPT and
    /// INTERSECT join on every column so). Otherwise a row with a NULL key matches nothing.
    pub nulls_equal: bool,
    pub left_table: TableId,
    pub right_table: TableId,
    /// The first key pair carries a watermark on both sides (planner revision 3): each
    /// side's rows behind the other side's watermark can never match again and are freed,
    /// and a row behind its own side's watermark is late.
    pub closes: bool,
    /// Time bounds between the sides (planner revision 6), at most one per side: that
    /// side's rows are freed once the other side's watermark proves that no later row of
    /// it can meet them (see [`IntervalBound`]).
    pub intervals: Vec<IntervalBound>,
    /// A processing-time temporal join (`FOR SYSTEM_TIME AS OF PROCTIME()`): each left row
    /// looks up the right rows current when it arrives; left rows are not kept, and right
    /// changes show nothing by themselves.
    pub lookup: bool,
    /// An as-of join (`ASOF [LEFT] JOIN`): each left row matches the one right row of its
    /// key nearest in time (see [`AsOfBound`]); no residual.
    pub asof: Option<AsOfBound>,
    /// The input columns whose watermarks the output carries (see [`JoinWatermark`]).
    pub watermarks: Vec<JoinWatermark>,
}

/// An input column that carries a watermark through the join: its output rows all come
/// from rows of that side on time (behind the side's own watermark there are none) or
/// meet, later, stored rows of it that a later row of the other side can still reach.
/// A join that `closes` holds each side's watermark back to the other's (the stored rows
/// are those at or above it); an interval join by the bound that frees the side (plan
/// revision 7: [`HeldBack`]). From revision 7 a side whose rows may be NULL-padded carries
/// one only in a FULL join, marked `padded` (both sides before, unmarked).
#[derive(Debug, Clone)]
pub struct JoinWatermark {
    pub side: usize,
    pub column: usize,
    pub held_back: Option<HeldBack>,
    /// The side's rows may be NULL-padded (a FULL join, revision 7): the column's
    /// non-NULL values carry the watermark, and `coalesce` of both sides' columns does.
    pub padded: bool,
}

/// How far an interval join's rows of one side reach back: once the other side's
/// watermark on `other_column` is `W`, every stored row that a later row of the other side
/// can meet has its watermarked column at least `lower(W)`. From a bound `other <= expiry`
/// whose `expiry` is at most `column + k` (the column, `column ± constant`,
/// `date_trunc` / `date_bin` of it): `lower` is `other - k`.
#[derive(Debug, Clone)]
pub struct HeldBack {
    pub other_column: usize,
    /// Over the other side's columns.
    pub lower: Arc<dyn PhysicalExpr>,
}

impl HashJoinNode {
    /// The output columns of the join's watermarks, ascending: those that may be
    /// NULL-padded (`padded`) or the others.
    pub fn watermark_outputs(&self, inputs: &[StreamNode], padded: bool) -> Vec<usize> {
        let mut columns: Vec<usize> = self
            .watermarks
            .iter()
            .filter(|mark| mark.padded == padded)
            .filter_map(|mark| self.output_column(inputs, mark.side, mark.column))
            .collect();
        columns.sort_unstable();
        columns
    }

    /// Where column `column` of input `side` lands in the output, if it shows there.
    pub fn output_column(&self, inputs: &[StreamNode], side: usize, column: usize) -> Option<usize> {
        let (lv, rv) = (inputs[0].visible, inputs[1].visible);
        let ln = inputs[0].schema.fields().len();
        match (self.join_type, side) {
            (JoinType::LeftSemi | JoinType::LeftAnti, 0) | (JoinType::RightSemi | JoinType::RightAnti, 1) => {
                Some(column)
            }
            (JoinType::LeftSemi | JoinType::LeftAnti | JoinType::RightSemi | JoinType::RightAnti, _) => None,
            (_, 0) => Some(if column < lv { column } else { lv + rv + (column - lv) }),
            _ => Some(if column < rv { lv + column } else { lv + rv + (ln - lv) + (column - rv) }),
        }
    }
}

/// The inequality of an as-of join, `left_column OP right_column` (columns of each input,
/// of one type): each side keeps its rows ordered by it within a join key.
#[derive(Debug, Clone)]
pub struct AsOfBound {
    pub left_column: usize,
    pub right_column: usize,
    pub order: AsOfOrder,
    /// `>=` over append-only inputs watermarked on both times: left rows are freed once
    /// the right watermark passes them (the join's interval bound), right rows (versions)
    /// once a later row of their key is behind both watermarks; rows behind their own
    /// side's watermark are late.
    pub frees: bool,
}

/// An as-of join's inequality, as `left OP right`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd)]
pub enum AsOfOrder {
    /// `left >= right`: the latest right row at or before the left row.
    AtOrAfter,
    /// `left > right`: the latest right row before it.
    After,
    /// `left <= right`: the earliest right row at or after it.
    AtOrBefore,
    /// `left < right`: the earliest right row after it.
    Before,
}

impl AsOfOrder {
    /// The match is the right row with the greatest time (else the smallest).
    pub fn latest(self) -> bool {
        matches!(self, AsOfOrder::AtOrAfter | AsOfOrder::After)
    }

    /// Equal times do not match.
    pub fn strict(self) -> bool {
        matches!(self, AsOfOrder::After | AsOfOrder::Before)
    }

    pub fn symbol(self) -> &'static str {
        match self {
            AsOfOrder::AtOrAfter => ">=",
            AsOfOrder::After => ">",
            AsOfOrder::AtOrBefore => "<=",
            AsOfOrder::Before => "<",
        }
    }
}

/// A condition of the join's residual, `other <= expiry` (or `<`), where `other` is a
/// monotone function of the other side's watermarked column: once that watermark `W`
/// gives `other(W) > expiry(row)` (`>=` when strict), no later row of the other side can
/// satisfy it with `row`, which is freed. Rows of the other side behind their own
/// watermark are late (their partners may be freed).
#[derive(Debug, Clone)]
pub struct IntervalBound {
    /// The side whose rows are freed (0 left, 1 right).
    pub side: usize,
    /// Over that side's columns: the largest value of `other` a partner may have.
    pub expiry: Arc<dyn PhysicalExpr>,
    /// The other side's watermarked column...
    pub other_column: usize,
    /// ... and the expression over the other side's columns, monotone in it.
    pub other: Arc<dyn PhysicalExpr>,
    /// The type both expressions have.
    pub data_type: DataType,
    /// The condition is `other < expiry`: a row is freed once `other(W) >= expiry`.
    pub strict: bool,
    /// The freed side's rows by expiry: (instance, expiry, join key, stream key).
    pub index_table: TableId,
    /// The condition as EXPLAIN shows it.
    pub text: String,
}
