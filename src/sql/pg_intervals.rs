//! Postgres' interval functions DataFusion lacks: `justify_hours` (24 hours make a day),
//! `justify_days` (30 days make a month), `justify_interval` (both, signs made to agree),
//! `age(a, b)` (the difference as years, months and days, as Postgres counts them: by
//! calendar fields, borrowing from the next larger one) and `age(a)` (from midnight
//! today), and `isfinite` (Sabot stores no infinite dates, timestamps or intervals).

use std::sync::Arc;

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, IntervalMonthDayNanoArray};
use datafusion::arrow::datatypes::{DataType, IntervalMonthDayNano, IntervalUnit, TimeUnit};
use datafusion::common::Result as DfResult;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};

const NANOS_PER_DAY: i64 = 86_400_000_000_000;
const NANOS_PER_SECOND: i64 = 1_000_000_000;

pub fn register(ctx: &SessionContext) {
    for kind in [Kind::JustifyHours, Kind::JustifyDays, Kind::JustifyInterval, Kind::Age, Kind::IsFinite] {
        ctx.register_udf(ScalarUDF::new_from_impl(IntervalFunction::new(kind)));
    }
}

/// `justify_hours`, which also turns a timestamp difference (an Arrow duration) into the
/// interval Postgres' `timestamp - timestamp` is: whole days of 24 hours and the rest.
pub fn justify_hours() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(IntervalFunction::new(Kind::JustifyHours)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    JustifyHours,
    JustifyDays,
    JustifyInterval,
    Age,
    IsFinite,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct IntervalFunction {
    kind: Kind,
    signature: Signature,
}

impl IntervalFunction {
    fn new(kind: Kind) -> Self {
        let signature = match kind {
            // Timestamps of any unit (literals are nanoseconds), converted when called.
            Kind::Age => {
                Signature::one_of(vec![TypeSignature::Any(1), TypeSignature::Any(2)], Volatility::Stable)
            }
            // Intervals, and durations (a timestamp minus a timestamp), converted when called.
            _ => Signature::any(1, Volatility::Immutable),
        };
        IntervalFunction { kind, signature }
    }
}

impl ScalarUDFImpl for IntervalFunction {
    fn name(&self) -> &str {
        match self.kind {
            Kind::JustifyHours => "justify_hours",
            Kind::JustifyDays => "justify_days",
            Kind::JustifyInterval => "justify_interval",
            Kind::Age => "age",
            Kind::IsFinite => "isfinite",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(match self.kind {
            Kind::IsFinite => DataType::Boolean,
            _ => DataType::Interval(IntervalUnit::MonthDayNano),
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let result: ArrayRef = match self.kind {
            Kind::IsFinite => {
                let finite: BooleanArray =
                    (0..arrays[0].len()).map(|i| (!arrays[0].is_null(i)).then_some(true)).collect();
                Arc::new(finite)
            }
            Kind::Age => Arc::new(ages(&arrays)?),
            kind => {
                let intervals = datafusion::arrow::compute::cast(
                    &arrays[0],
                    &DataType::Interval(IntervalUnit::MonthDayNano),
                )?;
                let intervals =
                    intervals.as_primitive::<datafusion::arrow::datatypes::IntervalMonthDayNanoType>();
                let justified: IntervalMonthDayNanoArray =
                    intervals.iter().map(|v| v.map(|v| justify(v, kind))).collect();
                Arc::new(justified)
            }
        };
        Ok(ColumnarValue::Array(result))
    }
}

/// Postgres' `interval_justify_hours` / `_days` / `_interval`, step for step.
fn justify(value: IntervalMonthDayNano, kind: Kind) -> IntervalMonthDayNano {
    let IntervalMonthDayNano { mut months, mut days, nanoseconds: mut time } = value;
    let whole_days = |time: &mut i64, days: &mut i32| {
        *days += (*time / NANOS_PER_DAY) as i32;
        *time %= NANOS_PER_DAY;
    };
    let time_sign = |time: &mut i64, days: &mut i32| {
        if *days > 0 && *time < 0 {
            *time += NANOS_PER_DAY;
            *days -= 1;
        } else if *days < 0 && *time > 0 {
            *time -= NANOS_PER_DAY;
            *days += 1;
        }
    };
    match kind {
        Kind::JustifyHours => {
            whole_days(&mut time, &mut days);
            time_sign(&mut time, &mut days);
        }
        Kind::JustifyDays => {
            months += days / 30;
            days %= 30;
            if months > 0 && days < 0 {
                days += 30;
                months -= 1;
            } else if months < 0 && days > 0 {
                days -= 30;
                months += 1;
            }
        }
        _ => {
            if (days > 0 && time > 0) || (days < 0 && time < 0) {
                whole_days(&mut time, &mut days);
            }
            months += days / 30;
            days %= 30;
            if months > 0 && (days < 0 || (days == 0 && time < 0)) {
                days += 30;
                months -= 1;
            } else if months < 0 && (days > 0 || (days == 0 && time > 0)) {
                days -= 30;
                months += 1;
            }
            whole_days(&mut time, &mut days);
            time_sign(&mut time, &mut days);
        }
    }
    IntervalMonthDayNano { months, days, nanoseconds: time }
}

/// `age(a, b)`, or `age(a)` from midnight of the current date (UTC).
fn ages(arrays: &[ArrayRef]) -> DfResult<IntervalMonthDayNanoArray> {
    let timestamp = DataType::Timestamp(TimeUnit::Microsecond, None);
    let arrays: Vec<ArrayRef> = arrays
        .iter()
        .map(|a| datafusion::arrow::compute::cast(a, &timestamp))
        .collect::<std::result::Result<_, _>>()?;
    let later = arrays[0].as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>();
    let earlier =
        arrays.get(1).map(|a| a.as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>());
    let midnight = chrono::Utc::now().date_naive().and_hms_opt(0, 0, 0).expect("midnight exists");
    Ok((0..later.len())
        .map(|i| {
            let (a, b) = match earlier {
                Some(earlier) if earlier.is_valid(i) && later.is_valid(i) => {
                    (micros(later.value(i))?, micros(earlier.value(i))?)
                }
                None if later.is_valid(i) => (midnight, micros(later.value(i))?),
                _ => return None,
            };
            Some(age(a, b))
        })
        .collect())
}

fn micros(value: i64) -> Option<NaiveDateTime> {
    chrono::DateTime::from_timestamp_micros(value).map(|t| t.naive_utc())
}

/// Postgres' `timestamp_age`: field by field, borrowing from the next larger field, the
/// days borrowed being those of the earlier timestamp's month (the later one's when the
/// result is negative).
fn age(a: NaiveDateTime, b: NaiveDateTime) -> IntervalMonthDayNano {
    let (later, earlier, sign) = if a >= b { (a, b, 1) } else { (b, a, -1) };
    let field = |t: &NaiveDateTime| {
        [
            i64::from(t.year()),
            i64::from(t.month()),
            i64::from(t.day()),
            i64::from(t.hour()),
            i64::from(t.minute()),
            i64::from(t.second()),
            i64::from(t.nanosecond() / 1000),
        ]
    };
    let (l, e) = (field(&later), field(&earlier));
    let mut d: Vec<i64> = l.iter().zip(&e).map(|(x, y)| x - y).collect();
    // micros, seconds, minutes, hours carry into the next field.
    for (i, base) in [(6, 1_000_000), (5, 60), (4, 60), (3, 24)] {
        while d[i] < 0 {
            d[i] += base;
            d[i - 1] -= 1;
        }
    }
    while d[2] < 0 {
        d[2] += days_in_month(earlier.year(), earlier.month());
        d[1] -= 1;
    }
    while d[1] < 0 {
        d[1] += 12;
        d[0] -= 1;
    }
    let months = (d[0] * 12 + d[1]) * sign;
    let days = d[2] * sign;
    let nanos = ((d[3] * 3600 + d[4] * 60 + d[5]) * NANOS_PER_SECOND + d[6] * 1000) * sign;
    IntervalMonthDayNano { months: months as i32, days: days as i32, nanoseconds: nanos }
}

fn days_in_month(year: i32, month: u32) -> i64 {
    let (next_year, next_month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    let first = NaiveDate::from_ymd_opt(year, month, 1);
    let next = NaiveDate::from_ymd_opt(next_year, next_month, 1);
    match (first, next) {
        (Some(first), Some(next)) => (next - first).num_days(),
        _ => 30,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    #[test]
    fn age_counts_calendar_fields_as_postgres() {
        // SELECT age('2026-03-01', '2025-01-15') = 1 year 1 mon 17 days (January's 31
        // days borrowed).
        let v = age(at("2026-03-01 00:00:00"), at("2025-01-15 00:00:00"));
        assert_eq!((v.months, v.days, v.nanoseconds), (13, 17, 0));
        // = -1 years -1 mons -17 days
        let v = age(at("2025-01-15 00:00:00"), at("2026-03-01 00:00:00"));
        assert_eq!((v.months, v.days), (-13, -17));
        // 2026-01-01 10:00 - 2025-12-30 12:30 = 1 day 21:30:00
        let v = age(at("2026-01-01 10:00:00"), at("2025-12-30 12:30:00"));
        assert_eq!((v.months, v.days, v.nanoseconds), (0, 1, (21 * 3600 + 30 * 60) * NANOS_PER_SECOND));
    }

    #[test]
    fn justify_moves_hours_and_days_up() {
        let v = |months, days, hours: i64| IntervalMonthDayNano {
            months,
            days,
            nanoseconds: hours * 3_600 * NANOS_PER_SECOND,
        };
        assert_eq!(justify(v(0, 0, 27), Kind::JustifyHours), v(0, 1, 3));
        assert_eq!(justify(v(0, 35, 0), Kind::JustifyDays), v(1, 5, 0));
        // justify_interval('1 mon -1 hour') = 29 days 23:00:00
        assert_eq!(justify(v(1, 0, -1), Kind::JustifyInterval), v(0, 29, 23));
    }
}
