//! Write faults: switches a test or a drill turns on to make the log's writes fail as on a
//! full disk, slow as on a disk in trouble, or written in an older log format. The engine
//! holds them in its config and the log store reads them on every append; they sit here,
//! below both.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Switches that make log writes fail as on a full disk (ENOSPC), slow, as on a disk in
/// trouble, or written in log format 1, as a build before format 2 wrote them (how tests
/// replay an older log), and applies late. Off unless a test or drill turns them on.
#[derive(Debug, Clone, Default)]
pub struct WriteFaults(Arc<FaultState>);

#[derive(Debug, Default)]
struct FaultState {
    no_space: AtomicBool,
    delay_ms: AtomicU64,
    apply_delay_ms: AtomicU64,
    format_1: AtomicBool,
}

impl WriteFaults {
    pub fn fail_with_no_space(&self, on: bool) {
        self.0.no_space.store(on, Ordering::Release);
    }

    pub fn failing(&self) -> bool {
        self.0.no_space.load(Ordering::Acquire)
    }

    /// Every log write waits this long before it starts (0 for none).
    pub fn delay_writes(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.0.delay_ms.store(ms, Ordering::Release);
    }

    pub fn write_delay(&self) -> Duration {
        Duration::from_millis(self.0.delay_ms.load(Ordering::Acquire))
    }

    /// Every apply of committed entries to the state machine waits this long first (0 for
    /// none): a node that applies far behind what it knows committed, as a loaded one may.
    pub fn delay_applies(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.0.apply_delay_ms.store(ms, Ordering::Release);
    }

    pub fn apply_delay(&self) -> Duration {
        Duration::from_millis(self.0.apply_delay_ms.load(Ordering::Acquire))
    }

    /// Log entries appended while set are written in log format 1 (`log_store.rs`).
    pub fn write_log_format_1(&self, on: bool) {
        self.0.format_1.store(on, Ordering::Release);
    }

    pub fn writing_log_format_1(&self) -> bool {
        self.0.format_1.load(Ordering::Acquire)
    }
}
