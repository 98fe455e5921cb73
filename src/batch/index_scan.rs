//! Index scans: a batch query reads a table or materialized view through one of its
//! indexes when its filters pin the index's leading key columns to literals (`a = 5`,
//! `a IN (1, 2)`) and may bound the next one (`b > 3`, `b BETWEEN 1 AND 9`).
//!
//! An index's entries are stored in key order under their key columns' memcomparable
//! encoding (`crate::common::row`), each column's bytes self-delimiting, so the entries
//! with given leading values are one contiguous key range, and a bound on the next column
//! narrows it further. The scan reads those ranges from the statement's snapshot — the
//! index commits in the same epoch as its relation, so they agree — takes each entry's
//! relation key and reads the rows under those keys. Filters stay inexact: DataFusion
//! applies them again to what the scan returns.

use std::ops::Bound;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, new_null_array};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::Result as DfResult;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, expr::Between};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};

use crate::catalog::{TableCodec, TableDesc};
use crate::common::Result;
use crate::common::row::RowCodec;
use crate::state::{Snapshot, prefix_end};

/// A `[start, end)` range of index keys (`end` None: to the end of the index).
pub type KeyRange = (Vec<u8>, Option<Vec<u8>>);

/// Upper bound on the key prefixes (combinations of pinned values) one scan reads.
const PREFIXES_MAX: usize = 1024;

/// How a scan uses an index: the values its leading key columns are pinned to, and the
/// bounds of the next key column.
#[derive(Debug)]
pub struct IndexChoice {
    pub index: Arc<TableDesc>,
    /// One list of values per leading key column (the column's type).
    pinned: Vec<Vec<ScalarValue>>,
    /// Bounds on the key column after the pinned ones.
    range: Option<(Bound<ScalarValue>, Bound<ScalarValue>)>,
    /// The condition the index serves, as EXPLAIN prints it.
    pub condition: String,
}

/// The index that serves `filters` best (most pinned columns, then a range), if any does.
pub fn choose(table: &TableDesc, indexes: &[Arc<TableDesc>], filters: &[Expr]) -> Option<IndexChoice> {
    let score = |c: &IndexChoice| 2 * c.pinned.len() + usize::from(c.range.is_some());
    let mut best: Option<IndexChoice> = None;
    for index in indexes {
        let Some(choice) = usable(table, index, filters) else { continue };
        if best.as_ref().is_none_or(|b| score(&choice) > score(b)) {
            best = Some(choice);
        }
    }
    best
}

/// How `index` serves `filters`, if it serves them at all.
fn usable(table: &TableDesc, index: &Arc<TableDesc>, filters: &[Expr]) -> Option<IndexChoice> {
    let def = index.index()?;
    let mut pinned = Vec::new();
    let mut range = None;
    let mut condition = Vec::new();
    for (position, &column) in def.key_columns.iter().enumerate() {
        let name = &table.columns[column].name;
        let target = index.columns[*index.primary_key.get(position)?].sql_type.to_arrow();
        if let Some(values) = filters.iter().find_map(|f| super::pinned_values(f, name)) {
            let values: Vec<ScalarValue> =
                values.iter().map(|v| exact_cast(v, &target)).collect::<Option<_>>()?;
            condition.push(equality_text(name, &values));
            pinned.push(values);
            continue;
        }
        let (mut lower, mut upper) = (Bound::Unbounded, Bound::Unbounded);
        for filter in filters {
            for (low, is_lower) in bounds(filter, name) {
                let Some(value) = map_bound(low, |v| exact_cast(&v, &target)) else { continue };
                if is_lower {
                    lower = tighter(lower, value, std::cmp::Ordering::Greater);
                } else {
                    upper = tighter(upper, value, std::cmp::Ordering::Less);
                }
            }
        }
        if !matches!((&lower, &upper), (Bound::Unbounded, Bound::Unbounded)) {
            condition.push(range_text(name, &lower, &upper));
            range = Some((lower, upper));
        }
        break;
    }
    let combinations: usize = pinned.iter().map(Vec::len).product();
    if (pinned.is_empty() && range.is_none()) || combinations > PREFIXES_MAX {
        return None;
    }
    Some(IndexChoice { index: index.clone(), pinned, range, condition: condition.join(" AND ") })
}

/// `value` in `target`'s type, when it converts without changing.
fn exact_cast(value: &ScalarValue, target: &DataType) -> Option<ScalarValue> {
    let cast = value.cast_to(target).ok()?;
    let back = cast.cast_to(&value.data_type()).ok()?;
    (!cast.is_null() && back == *value).then_some(cast)
}

fn map_bound<T, U>(bound: Bound<T>, f: impl FnOnce(T) -> Option<U>) -> Option<Bound<U>> {
    match bound {
        Bound::Included(v) => f(v).map(Bound::Included),
        Bound::Excluded(v) => f(v).map(Bound::Excluded),
        Bound::Unbounded => Some(Bound::Unbounded),
    }
}

/// The tighter of two bounds on one side: the one further in direction `inward`
/// (`Greater` for lower bounds); at equal values the exclusive one.
fn tighter(
    current: Bound<ScalarValue>,
    new: Bound<ScalarValue>,
    inward: std::cmp::Ordering,
) -> Bound<ScalarValue> {
    let value = |b: &Bound<ScalarValue>| match b {
        Bound::Included(v) | Bound::Excluded(v) => Some(v.clone()),
        Bound::Unbounded => None,
    };
    match (value(&current), value(&new)) {
        (None, _) => new,
        (_, None) => current,
        (Some(a), Some(b)) => match b.partial_cmp(&a) {
            Some(order) if order == inward => new,
            Some(std::cmp::Ordering::Equal) if matches!(new, Bound::Excluded(_)) => new,
            _ => current,
        },
    }
}

/// The bounds `filter` puts on `column` (`column > v`, `v >= column`, `column BETWEEN a
/// AND b`), each with whether it is a lower bound.
fn bounds(filter: &Expr, column: &str) -> Vec<(Bound<ScalarValue>, bool)> {
    let is_column = |e: &Expr| matches!(e, Expr::Column(c) if c.name == column);
    let literal = |e: &Expr| match e {
        Expr::Literal(value, _) if !value.is_null() => Some(value.clone()),
        _ => None,
    };
    match filter {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (value, op) = if is_column(left) {
                (literal(right), *op)
            } else if is_column(right) {
                (literal(left), op.swap().unwrap_or(*op))
            } else {
                return Vec::new();
            };
            let Some(value) = value else { return Vec::new() };
            match op {
                Operator::Gt => vec![(Bound::Excluded(value), true)],
                Operator::GtEq => vec![(Bound::Included(value), true)],
                Operator::Lt => vec![(Bound::Excluded(value), false)],
                Operator::LtEq => vec![(Bound::Included(value), false)],
                _ => Vec::new(),
            }
        }
        Expr::Between(Between { expr, negated: false, low, high }) if is_column(expr) => {
            match (literal(low), literal(high)) {
                (Some(low), Some(high)) => vec![(Bound::Included(low), true), (Bound::Included(high), false)],
                _ => Vec::new(),
            }
        }
        _ => Vec::new(),
    }
}

fn literal_text(value: &ScalarValue) -> String {
    match value {
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => {
            format!("'{}'", s.replace('\'', "''"))
        }
        other => other.to_string(),
    }
}

fn equality_text(column: &str, values: &[ScalarValue]) -> String {
    match values {
        [value] => format!("{column} = {}", literal_text(value)),
        _ => {
            let list: Vec<String> = values.iter().map(literal_text).collect();
            format!("{column} IN ({})", list.join(", "))
        }
    }
}

fn range_text(column: &str, lower: &Bound<ScalarValue>, upper: &Bound<ScalarValue>) -> String {
    let mut parts = Vec::new();
    match lower {
        Bound::Included(v) => parts.push(format!("{column} >= {}", literal_text(v))),
        Bound::Excluded(v) => parts.push(format!("{column} > {}", literal_text(v))),
        Bound::Unbounded => {}
    }
    match upper {
        Bound::Included(v) => parts.push(format!("{column} <= {}", literal_text(v))),
        Bound::Excluded(v) => parts.push(format!("{column} < {}", literal_text(v))),
        Bound::Unbounded => {}
    }
    parts.join(" AND ")
}

impl IndexChoice {
    /// The `[start, end)` key ranges of the index's entries the condition selects
    /// (`end` None: to the end of the index).
    pub fn key_ranges(&self) -> Result<Vec<KeyRange>> {
        let key_types = self.index.key_types();
        let mut ranges = Vec::new();
        for prefix in self.prefixes(&key_types[..self.pinned.len()])? {
            let Some((lower, upper)) = &self.range else {
                ranges.push((prefix.clone(), prefix_end(&prefix)));
                continue;
            };
            let codec = RowCodec::new(&key_types[self.pinned.len()..=self.pinned.len()])?;
            let encode = |value: Option<&ScalarValue>| -> Result<Vec<u8>> {
                let array: ArrayRef = match value {
                    Some(v) => v.to_array()?,
                    None => new_null_array(&key_types[self.pinned.len()], 1),
                };
                Ok([prefix.as_slice(), codec.encode(&[array])?.row(0).data()].concat())
            };
            let start = match lower {
                // Past the NULLs, which no comparison selects.
                Bound::Unbounded => prefix_end(&encode(None)?),
                Bound::Included(v) => Some(encode(Some(v))?),
                Bound::Excluded(v) => prefix_end(&encode(Some(v))?),
            };
            let end = match upper {
                Bound::Unbounded => prefix_end(&prefix),
                Bound::Included(v) => prefix_end(&encode(Some(v))?),
                Bound::Excluded(v) => Some(encode(Some(v))?),
            };
            if let Some(start) = start {
                ranges.push((start, end));
            }
        }
        Ok(ranges)
    }

    /// The encoded key prefix of every combination of the pinned values, in key order.
    fn prefixes(&self, types: &[DataType]) -> Result<Vec<Vec<u8>>> {
        if self.pinned.is_empty() {
            return Ok(vec![Vec::new()]);
        }
        let combinations: usize = self.pinned.iter().map(Vec::len).product();
        let mut columns: Vec<Vec<ScalarValue>> = vec![Vec::with_capacity(combinations); self.pinned.len()];
        for n in 0..combinations {
            let mut rest = n;
            for (i, values) in self.pinned.iter().enumerate() {
                columns[i].push(values[rest % values.len()].clone());
                rest /= values.len();
            }
        }
        let arrays: Vec<ArrayRef> = columns
            .into_iter()
            .zip(types)
            .map(|(values, t)| Ok(datafusion::arrow::compute::cast(&ScalarValue::iter_to_array(values)?, t)?))
            .collect::<Result<_>>()?;
        let rows = RowCodec::new(types)?.encode(&arrays)?;
        let mut prefixes: Vec<Vec<u8>> = rows.iter().map(|r| r.data().to_vec()).collect();
        prefixes.sort();
        prefixes.dedup();
        Ok(prefixes)
    }

    /// The keys, in `table`, of the rows whose index entries the condition selects.
    pub fn table_keys(&self, table: &TableDesc, snapshot: &dyn Snapshot) -> Result<Vec<Vec<u8>>> {
        let def = self.index.index().ok_or_else(|| crate::common::Error::internal("not an index"))?;
        let mut entries: Vec<Vec<u8>> = Vec::new();
        for (start, end) in self.key_ranges()? {
            snapshot.scan_range(self.index.id, &start, end.as_deref(), &mut |_, value| {
                entries.push(value.to_vec());
                Ok(true)
            })?;
        }
        let entries = TableCodec::new(&self.index)?.decode_rows(entries.iter().map(Vec::as_slice))?;
        let key_columns: Vec<ArrayRef> = def
            .table_key
            .iter()
            .zip(table.key_types())
            .map(|(&i, t)| Ok(datafusion::arrow::compute::cast(entries.column(i), &t)?))
            .collect::<Result<_>>()?;
        if key_columns.is_empty() {
            // A relation of at most one row, under the empty key.
            return Ok(if entries.num_rows() > 0 { vec![Vec::new()] } else { Vec::new() });
        }
        let keys = TableCodec::new(table)?.encode_key_columns(&key_columns)?;
        Ok(keys.iter().map(|k| k.data().to_vec()).collect())
    }
}

/// The scan of a relation through an index, as EXPLAIN shows it; it runs the plan that
/// returns the rows read.
#[derive(Debug)]
pub struct IndexScanExec {
    pub table: String,
    pub index: String,
    pub condition: String,
    pub rows: Arc<dyn ExecutionPlan>,
}

impl DisplayAs for IndexScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "IndexScanExec: table={}, index={}, condition={}", self.table, self.index, self.condition)
    }
}

impl ExecutionPlan for IndexScanExec {
    fn name(&self) -> &'static str {
        "IndexScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.rows.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        self.rows.execute(partition, context)
    }
}
