//! Window assignment for the window table functions TUMBLE, HOP and CUMULATE: which
//! windows each row's time value falls into. One kernel serves batch queries
//! (`batch::window`) and views (`stream::operator::window_tvf`), so both give the same
//! rows.
//!
//! A window is `[start, end)`. Windows are aligned to the Unix epoch plus `offset`:
//! `TUMBLE(size)` puts `ts` into `[s, s + size)` with `s = ts - (ts - offset) mod size`;
//! `HOP(slide, size)` into every `[s, s + size)` with `s` a multiple of `slide` (plus
//! offset) that contains `ts`; `CUMULATE(step, size)` into `[s, s + step·j)` for every
//! `j` in `1..=size/step` whose window contains `ts`, `s` being the tumbling window of
//! `size`. A row whose time value is NULL belongs to no window.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, UInt32Array, make_array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type, TimeUnit};

use super::{Error, Result, SqlState};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowKind {
    Tumble,
    Hop,
    Cumulate,
}

impl WindowKind {
    pub fn name(self) -> &'static str {
        match self {
            WindowKind::Tumble => "TUMBLE",
            WindowKind::Hop => "HOP",
            WindowKind::Cumulate => "CUMULATE",
        }
    }

    pub fn from_name(name: &str) -> Option<WindowKind> {
        match name.to_ascii_lowercase().as_str() {
            "tumble" => Some(WindowKind::Tumble),
            "hop" => Some(WindowKind::Hop),
            "cumulate" => Some(WindowKind::Cumulate),
            _ => None,
        }
    }

    /// The names of the interval arguments after the relation and the time column:
    /// required ones, then the optional offset.
    pub fn interval_arguments(self) -> &'static [&'static str] {
        match self {
            WindowKind::Tumble => &["size"],
            WindowKind::Hop => &["slide", "size"],
            WindowKind::Cumulate => &["step", "size"],
        }
    }
}

/// A window table function applied to one time column.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowSpec {
    pub kind: WindowKind,
    /// The time column (an input column index).
    pub time_column: usize,
    /// The type of the time column and of `window_start` / `window_end`.
    pub time_type: DataType,
    /// HOP's slide and CUMULATE's step, in the time column's unit; equals `size` for TUMBLE.
    pub slide: i64,
    /// The window's length, in the time column's unit.
    pub size: i64,
    /// The alignment of windows to the epoch, in the time column's unit, in `[0, slide)`.
    pub offset: i64,
    /// Nanoseconds per unit of the time column (for display).
    unit_nanos: i64,
}

/// For each output row: the input row it copies and its window.
pub struct WindowAssignment {
    pub rows: UInt32Array,
    pub starts: ArrayRef,
    pub ends: ArrayRef,
}

impl WindowSpec {
    /// A window over a column of `time_type`, with `intervals` in nanoseconds in the order
    /// of [`WindowKind::interval_arguments`] and an optional trailing offset.
    pub fn new(
        kind: WindowKind,
        time_column: usize,
        time_type: &DataType,
        intervals: &[i64],
    ) -> Result<Self> {
        let DataType::Timestamp(unit, _) = time_type else {
            return Err(Error::new(
                SqlState::DatatypeMismatch,
                format!("{} needs a timestamp or timestamptz time column, not {time_type}", kind.name()),
            ));
        };
        let unit_nanos = unit_nanos(unit);
        let names = kind.interval_arguments();
        if intervals.len() != names.len() && intervals.len() != names.len() + 1 {
            return Err(Error::internal("a window function with the wrong number of intervals"));
        }
        let mut values = Vec::with_capacity(intervals.len());
        for (i, &nanos) in intervals.iter().enumerate() {
            let name = names.get(i).copied().unwrap_or("offset");
            let positive = name != "offset";
            if (positive && nanos <= 0) || (!positive && nanos < 0) {
                let must = if positive { "greater than zero" } else { "zero or more" };
                return Err(Error::new(
                    SqlState::InvalidParameterValue,
                    format!("the window {name} of {} must be {must}", kind.name()),
                ));
            }
            if nanos % unit_nanos != 0 {
                return Err(Error::new(
                    SqlState::InvalidParameterValue,
                    format!("the window {name} of {} is finer than the time column's precision", kind.name()),
                ));
            }
            values.push(nanos / unit_nanos);
        }
        let (slide, size) = match kind {
            WindowKind::Tumble => (values[0], values[0]),
            WindowKind::Hop | WindowKind::Cumulate => (values[0], values[1]),
        };
        if kind == WindowKind::Cumulate && size % slide != 0 {
            return Err(Error::new(
                SqlState::InvalidParameterValue,
                "the window size of CUMULATE must be a multiple of its step",
            ));
        }
        let offset = values.get(names.len()).copied().unwrap_or(0);
        let align = if kind == WindowKind::Cumulate { size } else { slide };
        Ok(WindowSpec {
            kind,
            time_column,
            time_type: time_type.clone(),
            slide,
            size,
            offset: offset.rem_euclid(align),
            unit_nanos,
        })
    }

    /// The windows of every row of `times` (a column of `time_type`), rows in order and
    /// each row's windows by ascending start, then end.
    pub fn assign(&self, times: &dyn Array) -> Result<WindowAssignment> {
        let values = cast(times, &DataType::Int64)?;
        let values = values.as_primitive::<Int64Type>();
        let mut rows: Vec<u32> = Vec::with_capacity(values.len());
        let mut starts: Vec<i64> = Vec::with_capacity(values.len());
        let mut ends: Vec<i64> = Vec::with_capacity(values.len());
        for (row, ts) in values.iter().enumerate() {
            let Some(ts) = ts else { continue };
            let mut push = |start: i128, end: i128| -> Result<()> {
                rows.push(row as u32);
                starts.push(in_range(start)?);
                ends.push(in_range(end)?);
                Ok(())
            };
            let (ts, slide, size, offset) =
                (ts as i128, self.slide as i128, self.size as i128, self.offset as i128);
            match self.kind {
                WindowKind::Tumble => {
                    let start = ts - (ts - offset).rem_euclid(size);
                    push(start, start + size)?;
                }
                WindowKind::Hop => {
                    let last = ts - (ts - offset).rem_euclid(slide);
                    let reach = size - (ts - last);
                    let count = if reach > 0 { (reach + slide - 1) / slide } else { 0 };
                    for i in (0..count).rev() {
                        let start = last - i * slide;
                        push(start, start + size)?;
                    }
                }
                WindowKind::Cumulate => {
                    let start = ts - (ts - offset).rem_euclid(size);
                    let first = (ts - start) / slide + 1;
                    for j in first..=size / slide {
                        push(start, start + j * slide)?;
                    }
                }
            }
        }
        Ok(WindowAssignment {
            rows: UInt32Array::from(rows),
            starts: self.time_array(starts)?,
            ends: self.time_array(ends)?,
        })
    }

    fn time_array(&self, values: Vec<i64>) -> Result<ArrayRef> {
        let data = Int64Array::from(values).into_data().into_builder().data_type(self.time_type.clone());
        Ok(make_array(data.build()?))
    }

    fn describe(&self, value: i64) -> String {
        describe_duration(value, self.unit_nanos)
    }

    /// `HOP(date_time, 00:00:02, 00:00:10)`: the function, its column and intervals.
    pub fn display(&self, column: &str) -> String {
        let mut text = format!("{}({column}", self.kind.name());
        if self.kind != WindowKind::Tumble {
            text.push_str(&format!(", {}", self.describe(self.slide)));
        }
        text.push_str(&format!(", {}", self.describe(self.size)));
        if self.offset != 0 {
            text.push_str(&format!(", offset {}", self.describe(self.offset)));
        }
        text.push(')');
        text
    }
}

fn in_range(value: i128) -> Result<i64> {
    i64::try_from(value)
        .map_err(|_| Error::new(SqlState::DatetimeFieldOverflow, "window bound is out of range"))
}

/// The output rows of `assignment` over `batch`: each input column taken by
/// `assignment.rows`, with `window_start` and `window_end` inserted before column `at`.
pub fn windowed_columns(
    columns: &[ArrayRef],
    assignment: &WindowAssignment,
    at: usize,
) -> Result<Vec<ArrayRef>> {
    let taken: Vec<ArrayRef> = columns
        .iter()
        .map(|c| datafusion::arrow::compute::take(c.as_ref(), &assignment.rows, None))
        .collect::<std::result::Result<_, _>>()?;
    let mut out = Vec::with_capacity(taken.len() + 2);
    out.extend(taken[..at].iter().cloned());
    out.push(Arc::clone(&assignment.starts));
    out.push(Arc::clone(&assignment.ends));
    out.extend(taken[at..].iter().cloned());
    Ok(out)
}

/// Nanoseconds per unit of a timestamp.
pub fn unit_nanos(unit: &TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => 1_000_000_000,
        TimeUnit::Millisecond => 1_000_000,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1,
    }
}

/// Each row's session start (or `end`: last time plus `gap`) over times in ascending
/// order: a session is a run of times less than `gap` apart; a NULL time stands alone
/// with a NULL bound. Batch queries and the over-window operator both use it.
pub fn session_bounds(times: &[Option<i64>], gap: i64, end: bool) -> Vec<Option<i64>> {
    let mut out = vec![None; times.len()];
    let mut i = 0;
    while i < times.len() {
        let Some(first) = times[i] else {
            i += 1;
            continue;
        };
        let mut j = i;
        while let (Some(a), Some(Some(b))) = (times[j], times.get(j + 1)) {
            if b.saturating_sub(a) >= gap {
                break;
            }
            j += 1;
        }
        let last = times[j].expect("a time");
        let value = if end { last.saturating_add(gap) } else { first };
        out[i..=j].fill(Some(value));
        i = j + 1;
    }
    out
}

/// `value` time units of `unit_nanos` nanoseconds each as `hh:mm:ss[.fraction]`.
pub fn describe_duration(value: i64, unit_nanos: i64) -> String {
    let nanos = value as i128 * unit_nanos as i128;
    let seconds = nanos / 1_000_000_000;
    let fraction = nanos % 1_000_000_000;
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    let mut text = format!("{h:02}:{m:02}:{s:02}");
    if fraction != 0 {
        let digits = format!("{fraction:09}");
        text.push('.');
        text.push_str(digits.trim_end_matches('0'));
    }
    text
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::TimestampMicrosecondArray;

    use super::*;

    const SECOND: i64 = 1_000_000_000;

    fn micros(spec: &WindowSpec, values: &[Option<i64>]) -> Vec<(u32, i64, i64)> {
        let times = TimestampMicrosecondArray::from(values.to_vec());
        let out = spec.assign(&times).unwrap();
        let starts = cast(&out.starts, &DataType::Int64).unwrap();
        let ends = cast(&out.ends, &DataType::Int64).unwrap();
        (0..out.rows.len())
            .map(|i| {
                (
                    out.rows.value(i),
                    starts.as_primitive::<Int64Type>().value(i) / 1_000_000,
                    ends.as_primitive::<Int64Type>().value(i) / 1_000_000,
                )
            })
            .collect()
    }

    fn spec(kind: WindowKind, seconds: &[i64]) -> WindowSpec {
        let nanos: Vec<i64> = seconds.iter().map(|s| s * SECOND).collect();
        WindowSpec::new(kind, 0, &DataType::Timestamp(TimeUnit::Microsecond, None), &nanos).unwrap()
    }

    #[test]
    fn tumble_aligns_to_the_epoch_and_offset() {
        let s = |v: i64| Some(v * 1_000_000);
        let tumble = spec(WindowKind::Tumble, &[10]);
        assert_eq!(
            micros(&tumble, &[s(0), s(9), s(10), None, s(-1)]),
            vec![(0, 0, 10), (1, 0, 10), (2, 10, 20), (4, -10, 0)]
        );
        let shifted = spec(WindowKind::Tumble, &[10, 3]);
        assert_eq!(micros(&shifted, &[s(2), s(3)]), vec![(0, -7, 3), (1, 3, 13)]);
    }

    #[test]
    fn hop_puts_a_row_into_every_window_containing_it() {
        let s = |v: i64| Some(v * 1_000_000);
        let hop = spec(WindowKind::Hop, &[2, 5]);
        // Starts are multiples of 2: 7 is in [4,9) and [6,11); [2,7) ends just before it.
        assert_eq!(micros(&hop, &[s(7)]), vec![(0, 4, 9), (0, 6, 11)]);
        assert_eq!(micros(&hop, &[s(6)]), vec![(0, 2, 7), (0, 4, 9), (0, 6, 11)]);
        // A slide longer than the size leaves gaps: 3 is in no window of [0,2), [4,6), ...
        let sparse = spec(WindowKind::Hop, &[4, 2]);
        assert_eq!(micros(&sparse, &[s(3), s(5)]), vec![(1, 4, 6)]);
    }

    #[test]
    fn cumulate_grows_windows_from_the_tumbling_start() {
        let s = |v: i64| Some(v * 1_000_000);
        let cumulate = spec(WindowKind::Cumulate, &[2, 6]);
        assert_eq!(micros(&cumulate, &[s(3)]), vec![(0, 0, 4), (0, 0, 6)]);
        assert_eq!(micros(&cumulate, &[s(7)]), vec![(0, 6, 8), (0, 6, 10), (0, 6, 12)]);
    }

    #[test]
    fn bad_sizes_are_rejected() {
        let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
        let error = WindowSpec::new(WindowKind::Tumble, 0, &ts, &[0]).unwrap_err();
        assert_eq!(error.sqlstate().code(), "22023");
        assert!(error.to_string().contains("size of TUMBLE must be greater than zero"), "{error}");
        let error = WindowSpec::new(WindowKind::Hop, 0, &ts, &[SECOND, -SECOND]).unwrap_err();
        assert!(error.to_string().contains("size of HOP"), "{error}");
        let error = WindowSpec::new(WindowKind::Cumulate, 0, &ts, &[4 * SECOND, 6 * SECOND]).unwrap_err();
        assert!(error.to_string().contains("multiple of its step"), "{error}");
        let error = WindowSpec::new(WindowKind::Tumble, 0, &ts, &[1]).unwrap_err();
        assert!(error.to_string().contains("precision"), "{error}");
        let error = WindowSpec::new(WindowKind::Tumble, 0, &DataType::Int64, &[SECOND]).unwrap_err();
        assert_eq!(error.sqlstate().code(), "42804");
    }

    #[test]
    fn display_names_the_function_and_intervals() {
        assert_eq!(spec(WindowKind::Hop, &[2, 3600]).display("ts"), "HOP(ts, 00:00:02, 01:00:00)");
    }
}
