//! Applying committed entries: each record's writes (events, snapshot, directory links with
//! the first owner standing, the expiry index move) gathered into one batch in memory.

use super::*;
use crate::types::AccountRecord;

impl StateMachine {
    pub(super) fn apply_entries(&mut self, entries: Vec<Entry>) -> io::Result<Vec<BatchApplied>> {
        let mut batch = Writes::new();
        let mut answers = Vec::with_capacity(entries.len());
        // Each account's records in this call, gathered into one value (first seq, chunks):
        // a busy account costs one store insert per apply, not one per decision.
        let mut tails: std::collections::HashMap<AccountId, (u64, Vec<u8>)> =
            std::collections::HashMap::new();
        // Moves of the expiry entries, kept only while format-1 records need them.
        let mut expiry_moves: std::collections::HashMap<AccountId, Option<i64>> =
            std::collections::HashMap::new();
        let mut links = NewLinks::default();
        if self.format1_expiries.is_none() && entries.iter().any(moves_a_format1_expiry) {
            self.format1_expiries = Some(self.expiry_entries()?);
        }
        // The records, for the accounts in memory once the writes are in place (a load that
        // read the writes before them is then either kept and current, or not kept).
        let mut applied = Vec::new();
        for entry in entries {
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Membership(membership) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), membership);
                }
                EntryPayload::Normal(log_batch) => {
                    self.time_floor
                        .fetch_max(log_batch.at_ms, std::sync::atomic::Ordering::AcqRel);
                    for record in &log_batch.records {
                        self.apply_record(
                            &mut batch,
                            &mut tails,
                            &mut expiry_moves,
                            &mut links,
                            record,
                        )?;
                    }
                    for setting in &log_batch.settings {
                        batch.insert(setting_key(&setting.name), setting.value.clone());
                    }
                    applied.push((entry.log_id.index, log_batch.records, log_batch.settings));
                }
            }
            self.applied = Some(entry.log_id);
            answers.push(BatchApplied {
                index: entry.log_id.index,
            });
        }
        for (account, (seq_first, chunks)) in tails {
            batch.insert(events_key(&account, seq_first), Some(chunks));
        }
        // `m:applied` and the membership are written by the checkpoint that covers them.
        self.store.apply(batch);
        self.directory.extend(links);
        if let Some(expiries) = &mut self.format1_expiries {
            for (account, next) in expiry_moves {
                match next {
                    Some(at) => expiries.insert(account, at),
                    None => expiries.remove(&account),
                };
            }
        }
        for (index, records, _) in &applied {
            for record in records {
                self.accounts.apply(record, *index);
            }
        }
        if applied.iter().any(|(_, _, settings)| !settings.is_empty()) {
            self.settings
                .apply(applied.iter().flat_map(|(_, _, settings)| settings));
        }
        Ok(answers)
    }
}

impl StateMachine {
    pub(super) fn apply_record(
        &self,
        batch: &mut Writes,
        tails: &mut std::collections::HashMap<AccountId, (u64, Vec<u8>)>,
        expiry_moves: &mut std::collections::HashMap<AccountId, Option<i64>>,
        links: &mut NewLinks,
        record: &AccountRecord,
    ) -> io::Result<()> {
        let account = record.account.clone();
        let value = codec::encode_value(&account).map_err(io::Error::other)?;
        for card in &record.cards {
            // A card id has one owner, as a PAN has (below): the first one stands. The
            // directory's cache usually knows (the edge looked the card up before it proposed
            // the link); else this reads the state. Only records that link cards or PANs
            // look.
            let owner = links
                .cards
                .iter()
                .rev()
                .find(|(linked, _)| linked == card)
                .map(|(_, owner)| Ok(Some(owner.clone())))
                .unwrap_or_else(|| self.directory.card(&self.store, card))?;
            if !first_owner_stands(&account, owner.as_ref()) {
                tracing::error!(
                    %account, %card, ?owner,
                    "a committed card names a card id another account owns; the first owner stands"
                );
                continue;
            }
            batch.insert(card_key(card), Some(value.clone()));
            links.cards.push((card.clone(), account.clone()));
        }
        for (hash, card) in &record.pans {
            // A PAN has one owner. The edge decides claims before they reach the log; should
            // a second link for a PAN owned by another card ever be committed, the first one
            // stands, decided from committed state alone, so every replica decides the same.
            let owner = links
                .pans
                .iter()
                .rev()
                .find(|(linked, _)| linked.as_ref() == hash.as_slice())
                .map(|(_, owner)| Ok(Some(owner.clone())))
                .unwrap_or_else(|| self.directory.pan(&self.store, hash))?;
            let claim = (account.clone(), card.clone());
            if !first_owner_stands(&claim, owner.as_ref()) {
                tracing::error!(
                    %account, %card, ?owner,
                    "a committed PAN link names a PAN another card owns; the first link stands"
                );
                continue;
            }
            let link = codec::encode_value(&(&account, card)).map_err(io::Error::other)?;
            batch.insert(pan_key(hash), Some(link));
            links
                .pans
                .push((Box::from(hash.as_slice()), (account.clone(), card.clone())));
        }
        // A format-1 record does not say where the entry was: the entries read for it have
        // it, as this batch left them (module docs).
        let moved = expiry_change(record, || match expiry_moves.get(&account) {
            Some(moved) => *moved,
            None => self
                .format1_expiries
                .as_ref()
                .and_then(|expiries| expiries.get(&account).copied()),
        });
        if let Some((old, next)) = moved {
            if let Some(old) = old {
                batch.insert(expiry_key(old, &account), None);
            }
            // Only the format-1 entries need this batch's moves.
            if self.format1_expiries.is_some() {
                expiry_moves.insert(account.clone(), next);
            }
            if let Some(at) = next {
                batch.insert(expiry_key(at, &account), Some(Vec::new()));
            }
        }
        if record.event_count == 0 {
            return Ok(());
        }
        // Events are kept after a snapshot covers them: they are the account's history (the
        // posted-entries feed reads them). Loading starts at the snapshot.
        if let Some(snapshot) = &record.snapshot {
            batch.insert(snapshot_key(&account), Some(snapshot.clone()));
        }
        let (_, chunks) = tails
            .entry(account)
            .or_insert_with(|| (record.seq_first, Vec::new()));
        push_chunk(chunks, &record.events);
        Ok(())
    }
}

/// Whether a link to `claim` is written: a card id or PAN has one owner, and the first link
/// stands (`owner` is who holds it now, if anyone). Decided from committed state alone, so
/// every replica decides the same.
pub(super) fn first_owner_stands<T: PartialEq>(claim: &T, owner: Option<&T>) -> bool {
    owner.is_none_or(|owner| owner == claim)
}

/// How `record` moves its account's expiry index entry: `(the entry to remove, the entry to
/// add)`, or `None` when it does not move it. A record says where the entry was; one of log
/// format 1 does not, and `was` answers it.
pub(super) fn expiry_change(
    record: &AccountRecord,
    was: impl FnOnce() -> Option<i64>,
) -> Option<(Option<i64>, Option<i64>)> {
    match (record.expiry, record.format1_next_expiry) {
        (Some(ExpiryMove { from, to }), _) => Some((from, to)),
        (None, Some(to)) => Some((was(), to)),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_owner_of_a_link_stands() {
        assert!(first_owner_stands(&"a", None), "a free link is written");
        assert!(
            first_owner_stands(&"a", Some(&"a")),
            "the owner's own link again"
        );
        assert!(
            !first_owner_stands(&"b", Some(&"a")),
            "another's claim is not written"
        );
    }

    #[test]
    fn a_record_moves_the_expiry_entry_from_where_it_says() {
        let account = AccountId::new("acct-1").expect("id");
        // A record with no events and no links: only its expiry fields matter here.
        let mut record = AccountRecord::pan_links(&account, Vec::new());
        assert_eq!(expiry_change(&record, || Some(7)), None, "no move");
        record.expiry = Some(ExpiryMove {
            from: Some(5),
            to: Some(9),
        });
        assert_eq!(
            expiry_change(&record, || panic!("not asked")),
            Some((Some(5), Some(9)))
        );
        record.expiry = Some(ExpiryMove {
            from: Some(9),
            to: None,
        });
        assert_eq!(
            expiry_change(&record, || None),
            Some((Some(9), None)),
            "last hold closed"
        );
        // Log format 1 says only where the entry goes.
        record.expiry = None;
        record.format1_next_expiry = Some(Some(12));
        assert_eq!(
            expiry_change(&record, || Some(7)),
            Some((Some(7), Some(12)))
        );
    }
}
