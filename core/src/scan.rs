//! How much retained history decisions look at: a per-thread count tests and benchmarks read
//! to show that a decision's cost stays bounded as an account fills up.

thread_local! {
    /// Items of retained history this thread's decisions have looked at (see
    /// [`history_items_scanned`]).
    static HISTORY_ITEMS_SCANNED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Items of an account's retained history (lifecycles, recorded outcomes, tombstones) that
/// decisions made on this thread have looked at so far: what a decision costs beyond its own
/// command. Tests and benchmarks read it to show that the cost stays bounded as an account
/// fills up; it is a per-thread counter, so it costs nothing to keep.
pub fn history_items_scanned() -> u64 {
    HISTORY_ITEMS_SCANNED.with(std::cell::Cell::get)
}

pub(crate) fn scanned(items: usize) {
    HISTORY_ITEMS_SCANNED.with(|count| count.set(count.get() + items as u64));
}
