//! Memory of running statements: each statement gets its own DataFusion memory pool,
//! bounded by `statement_memory_bytes_max`, and every pool reports to one gauge of the
//! whole server, so that a cancelled or abandoned statement visibly gives its memory
//! back — to the operating system too: when a statement that reserved much ends, the
//! allocator is asked to return its free pages (glibc keeps them otherwise, and the
//! server's resident memory would stay at its high-water mark).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::common::Result as DfResult;
use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryLimit, MemoryPool, MemoryReservation};

/// Bytes reserved by all running statements together.
#[derive(Debug, Default)]
pub struct MemoryGauge {
    reserved_bytes: AtomicUsize,
}

impl MemoryGauge {
    pub fn reserved_bytes(&self) -> usize {
        self.reserved_bytes.load(Ordering::Relaxed)
    }
}

/// A statement that reserved at least this much gives its pages back to the operating
/// system when it ends, in bytes.
const TRIM_AFTER_BYTES: usize = 32 << 20;

/// The memory pool of one statement: at most `limit` bytes, counted in the gauge too.
#[derive(Debug)]
pub struct StatementPool {
    inner: GreedyMemoryPool,
    gauge: Arc<MemoryGauge>,
    /// The most this statement had reserved at once.
    peak_bytes: AtomicUsize,
}

impl StatementPool {
    pub fn new(limit_bytes: usize, gauge: Arc<MemoryGauge>) -> Self {
        StatementPool { inner: GreedyMemoryPool::new(limit_bytes), gauge, peak_bytes: AtomicUsize::new(0) }
    }

    fn grown(&self) {
        self.peak_bytes.fetch_max(self.inner.reserved(), Ordering::Relaxed);
    }
}

impl Drop for StatementPool {
    fn drop(&mut self) {
        let peak_bytes = self.peak_bytes.load(Ordering::Relaxed);
        tracing::debug!(peak_bytes, "statement memory pool released");
        if peak_bytes >= TRIM_AFTER_BYTES {
            return_free_memory();
        }
    }
}

/// Asks the allocator to give free pages back to the operating system.
fn return_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only releases memory the allocator holds free; it touches no
        // live allocation and may be called from any thread.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

impl fmt::Display for StatementPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "statement pool ({})", self.inner)
    }
}

impl MemoryPool for StatementPool {
    fn name(&self) -> &str {
        "statement"
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.inner.grow(reservation, additional);
        self.gauge.reserved_bytes.fetch_add(additional, Ordering::Relaxed);
        self.grown();
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.inner.shrink(reservation, shrink);
        self.gauge.reserved_bytes.fetch_sub(shrink, Ordering::Relaxed);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> DfResult<()> {
        self.inner.try_grow(reservation, additional)?;
        self.gauge.reserved_bytes.fetch_add(additional, Ordering::Relaxed);
        self.grown();
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.inner.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.inner.memory_limit()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::execution::memory_pool::MemoryConsumer;

    use super::*;

    #[test]
    fn reservations_count_in_the_gauge_and_respect_the_limit() {
        let gauge = Arc::new(MemoryGauge::default());
        let pool: Arc<dyn MemoryPool> = Arc::new(StatementPool::new(1000, gauge.clone()));
        let reservation = MemoryConsumer::new("test").register(&pool);
        reservation.try_grow(600).unwrap();
        assert_eq!(gauge.reserved_bytes(), 600);
        let error = reservation.try_grow(600).unwrap_err();
        assert!(matches!(error.find_root(), datafusion::error::DataFusionError::ResourcesExhausted(_)));
        assert_eq!(gauge.reserved_bytes(), 600);
        drop(reservation);
        assert_eq!(gauge.reserved_bytes(), 0);
    }
}
