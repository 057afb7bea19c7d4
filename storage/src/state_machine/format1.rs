//! Log format 1 (before issue 19): its records did not say where an account's expiry entry
//! was, so the first one applied reads every entry into memory.

use super::*;

/// Whether an entry holds a log-format-1 record that moves an expiry index entry.
pub(super) fn moves_a_format1_expiry(entry: &Entry) -> bool {
    match &entry.payload {
        EntryPayload::Normal(batch) => batch
            .records
            .iter()
            .any(|record| record.expiry.is_none() && record.format1_next_expiry.is_some()),
        _ => false,
    }
}

impl StateMachine {
    /// Every account's expiry index entry as the state holds it (for format-1 records).
    pub(super) fn expiry_entries(&self) -> io::Result<FxHashMap<AccountId, i64>> {
        let started = std::time::Instant::now();
        let mut expiries: FxHashMap<AccountId, i64> = FxHashMap::default();
        let mut end = b"x:".to_vec();
        end.push(0xff);
        self.store.scan(
            (Bound::Included(b"x:".to_vec()), Bound::Excluded(end)),
            |key, _| {
                let (at, account) = expiry_entry(key)
                    .ok_or_else(|| io::Error::other("an expiry index key does not decode"))?;
                if let Some(other) = expiries.insert(account.clone(), at) {
                    // One entry per account is the rule; should two be found, the earlier is
                    // the one that matters (a sweep then moves it).
                    tracing::warn!(%account, at, other, "two expiry index entries for one account");
                    expiries.insert(account, at.min(other));
                }
                Ok(true)
            },
        )?;
        tracing::info!(
            entries = expiries.len(),
            ms = started.elapsed().as_millis(),
            "log format 1 replayed: the expiry index's entries were read into memory"
        );
        Ok(expiries)
    }
}
