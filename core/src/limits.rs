//! Every bound the core enforces, in one place. A limit here is part of the contract: the
//! edges validate against the same numbers, so a request that passes the edge cannot trip
//! an assertion deeper in.

/// The largest amount a single command may carry, in minor units. ISO 8583 DE 4 has twelve
/// digits, so nothing larger can arrive from a card network either.
pub const AMOUNT_MINOR_MAX: i64 = 999_999_999_999;

/// Identifiers (account, member, card, authorization, idempotency key) are at most this long.
pub const ID_BYTES_MAX: usize = 64;

/// Account ids are at most this long: an authorization id Tandem mints is
/// `<account>:<16 hex digits>` and must fit in [`ID_BYTES_MAX`], so it carries its account and
/// routes without any index (64 − 1 − 16 = 47).
pub const ACCOUNT_ID_BYTES_MAX: usize = ID_BYTES_MAX - 1 - 16;

/// Members of one account. Splits and settle-up are quadratic at worst in this number.
pub const MEMBERS_PER_ACCOUNT_MAX: usize = 64;

/// Cards of one account, blocked ones included.
pub const CARDS_PER_ACCOUNT_MAX: usize = 256;

/// Currency balances of one account.
pub const BALANCES_PER_ACCOUNT_MAX: usize = 32;

/// Merchant categories in one block or allow list; countries in one block list.
pub const CONTROL_LIST_ENTRIES_MAX: usize = 256;

/// Currencies in an owner-set funding priority list.
pub const FUNDING_PRIORITY_ENTRIES_MAX: usize = 32;

/// Currencies in one FX rate table.
pub const RATE_TABLE_ENTRIES_MAX: usize = 256;

/// Open holds on one account. Past this an authorization is declined 05 (do not honour,
/// `DeclineReason::TooManyOpenHolds`, `too_many_open_holds`) rather than letting one
/// account's state grow without bound; what does not open a hold still passes (a 0200
/// single-message purchase, an increment of an open lifecycle, advices and clearings), and a
/// withdrawal is refused (`account_has_open_holds`).
///
/// Why 10,000, for group accounts too: open holds are authorizations times the days until they
/// clear (most clear in one to three days; hotels and car hire hold up to the extended
/// expiry). The busiest shared account we serve, 64 members (`MEMBERS_PER_ACCOUNT_MAX`) on a
/// trip or a flat-share, each with twenty card spends a day clearing in three days, keeps about
/// 3,840 open, so 10,000 leaves more than twice that as headroom and is still small: a full
/// account is about 7 MB in memory, and what a decision costs does not grow with its open
/// holds (issue 35: retention's counts are kept by `apply`, the sweep takes due holds from the
/// expiry index). An account that reaches it is either runaway traffic (a merchant
/// authorizing without ever clearing) or a bug, and declining is the safe answer for both.
pub const OPEN_HOLDS_PER_ACCOUNT_MAX: usize = 10_000;

/// Incremental authorizations on one lifecycle. Each grows the lifecycle record that every
/// later event of it carries, so the number is bounded.
pub const INCREMENTS_PER_LIFECYCLE_MAX: u32 = 64;

/// Decisions one sweep forgets, so one sweep is a bounded amount of work; the sweeper
/// simply runs again.
pub const SWEEP_ITEMS_MAX: usize = 1_024;

/// Holds one sweep expires. Each expiry is a movement (released shares, a closed lifecycle,
/// the events and the watchers' change), a few microseconds each, and the account's actor
/// does nothing else meanwhile: 1,024 held a hot account's callers up for 5–38 ms under load
/// (issue 35), so a sweep takes 128 (about 1–2 ms) and the sweeper sweeps again, the
/// account's other messages running in between.
pub const SWEEP_EXPIRIES_MAX: usize = 128;

/// Milliseconds in a day, for window boundaries.
pub const DAY_MS: i64 = 86_400_000;

/// Closed lifecycles one account keeps (retention by count, beside `outcome_retention_ms`
/// by time). Past it the oldest-closed go, so a busy account's resident state and its
/// checkpoint stay bounded however long it runs. 4,096 is about a month of a busy family
/// card account; only an account closing more than ~585 lifecycles a day reaches it within
/// the seven-day window. A message for a lifecycle forgotten this way is answered as for
/// one forgotten by time (`docs/domain-model.md` 8.4).
pub const CLOSED_LIFECYCLES_KEPT_MAX: usize = 4_096;

/// Recorded outcomes one account keeps for repeats beyond those of its open lifecycles: two
/// per lifecycle (its authorization and its clearing) for as many lifecycles as are kept. The
/// outcomes of open lifecycles are pinned: not counted here and never forgotten by count (they
/// are bounded by `OPEN_HOLDS_PER_ACCOUNT_MAX` and the messages one lifecycle takes), so a
/// repeat of any message of an open lifecycle is always recognised.
pub const OUTCOMES_KEPT_MAX: usize = 8_192;

/// Tombstones (reversals that arrived before their original) one account keeps.
pub const TOMBSTONES_KEPT_MAX: usize = 1_024;

/// Where a count-bounded history is trimmed to once it passes its limit: an eighth below
/// it, so the scan that finds the oldest runs once per that many new items (amortised
/// O(1) per decision) rather than on every decision. At most `SWEEP_ITEMS_MAX` of each kind
/// go in one decision.
pub const fn kept_after_trim(max: usize) -> usize {
    max - max / 8
}
