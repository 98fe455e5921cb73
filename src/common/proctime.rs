//! Processing time: the wall clock as `PROCTIME()` reads it, made monotone for the whole
//! process. A row's processing time is the time an operator evaluated it; a watermark on
//! a processing-time column is the clock itself (DESIGN §3), which is only sound when no
//! later reading is smaller than an earlier one. The system clock can step back (NTP), so
//! every reading is at least the largest one handed out before.

use std::sync::atomic::{AtomicI64, Ordering};

static LATEST_MICROS: AtomicI64 = AtomicI64::new(i64::MIN);

/// Microseconds since the Unix epoch (UTC), never less than an earlier reading.
pub fn now_micros() -> i64 {
    let wall = chrono::Utc::now().timestamp_micros();
    let before = LATEST_MICROS.fetch_max(wall, Ordering::SeqCst);
    before.max(wall)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_never_go_back() {
        let mut last = now_micros();
        for _ in 0..1000 {
            let next = now_micros();
            assert!(next >= last, "{next} < {last}");
            last = next;
        }
        // A reading close to the wall clock, not a counter.
        assert!((chrono::Utc::now().timestamp_micros() - last).abs() < 60_000_000);
    }
}
