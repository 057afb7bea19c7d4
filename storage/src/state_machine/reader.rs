//! Read access to the applied state: accounts (rebuilt from snapshot and events), the card
//! and PAN directories, the expiry index and the last applied log id.

use super::*;

/// Read access to the applied state, shared with the actors.
#[derive(Clone)]
pub struct StateReader {
    pub(super) store: Arc<Layered>,
    pub(super) directory: Arc<Directory>,
    pub(super) accounts: Arc<Accounts>,
    pub(super) settings: Arc<Settings>,
    pub(super) time_floor: Arc<std::sync::atomic::AtomicI64>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("stored account does not decode: {0}")]
    Codec(#[from] codec::CodecError),
    #[error(
        "stored events of {account} do not continue its state (expected seq {expected}, found {found})"
    )]
    Gap {
        account: AccountId,
        expected: u64,
        found: u64,
    },
    /// The blocking task that read it panicked or was cancelled.
    #[error("the read did not finish: {0}")]
    Background(String),
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
}

impl StateReader {
    /// A digest of the applied state: every key and value but the checkpoint's own marks
    /// (`m:`), which say how far the store is written, not what it holds. Two replicas that
    /// applied the same entries have the same digest, wherever each one's checkpoints fell:
    /// an account's events are hashed as one run of records, not as the values a checkpoint
    /// happened to join them into (`keys::same_accounts_events`). Blocking and O(state): for
    /// tests and drills.
    pub fn digest(&self) -> io::Result<String> {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        // The events key whose run of records is being hashed.
        let mut run: Option<Vec<u8>> = None;
        self.store
            .scan((Bound::Unbounded, Bound::Unbounded), |key, value| {
                if key.starts_with(b"m:") {
                    return Ok(true);
                }
                if run
                    .as_deref()
                    .is_some_and(|first| crate::keys::same_accounts_events(first, key))
                {
                    hasher.update(value);
                    return Ok(true);
                }
                if run.take().is_some() {
                    hasher.update(u64::MAX.to_be_bytes());
                }
                hasher.update((key.len() as u64).to_be_bytes());
                hasher.update(key);
                if crate::keys::same_accounts_events(key, key) {
                    // A run's records are framed by their own lengths.
                    hasher.update(value);
                    run = Some(key.to_vec());
                } else {
                    hasher.update((value.len() as u64).to_be_bytes());
                    hasher.update(value);
                }
                Ok(true)
            })?;
        Ok(hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect())
    }

    /// The latest time an applied entry was proposed at (`LogBatch::at_ms`): decisions are
    /// made no earlier (milliseconds since the epoch).
    pub fn time_floor(&self) -> i64 {
        self.time_floor.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The settings as applied (`settings.rs`).
    pub fn settings(&self) -> &Arc<Settings> {
        &self.settings
    }

    /// Rebuilds an account from its latest snapshot and the events after it, as the checkpoint
    /// holds it, not kept in memory (for an actor the account is lent to); a fresh unopened
    /// account if nothing is stored. Blocking: run it off the async workers.
    pub fn load_account(&self, account: &AccountId) -> Result<Account, LoadError> {
        let mut state = match self.store.get(&snapshot_key(account))? {
            Some(bytes) => codec::decode_account(&bytes)?,
            None => Account::new(account.clone()),
        };
        let start = state.seq;
        let mut gap = None;
        self.each_event(account, start, |seq, event| {
            if seq != state.seq {
                gap = Some(seq);
                return false;
            }
            tandem_core::apply_owned(&mut state, event);
            true
        })?;
        if let Some(found) = gap {
            return Err(LoadError::Gap {
                account: account.clone(),
                expected: state.seq,
                found,
            });
        }
        Ok(state)
    }

    /// The account's recorded events with sequence number `from` and later, in order, each
    /// with its sequence number (the account's `seq` before it), until `visit` answers false.
    pub fn each_event(
        &self,
        account: &AccountId,
        from: u64,
        mut visit: impl FnMut(u64, tandem_core::Event) -> bool,
    ) -> Result<(), LoadError> {
        let prefix = events_prefix(account);
        // Past the prefix: it ends in `e`, so the same with `f`.
        let mut end = prefix.clone();
        *end.last_mut().expect("prefixes are not empty") += 1;
        let mut failed = None;
        // The chunk holding `from` starts at or before it: at the last key at or below it.
        self.store.scan_from_floor(
            (Bound::Included(prefix.clone()), Bound::Excluded(end)),
            events_key(account, from),
            |key, value| {
                if !key.starts_with(&prefix) {
                    return Ok(false);
                }
                let seq_bytes: [u8; 8] = key[key.len() - 8..]
                    .try_into()
                    .expect("events keys end in 8 bytes");
                let mut seq = u64::from_be_bytes(seq_bytes);
                for chunk in chunks(value) {
                    let events = match codec::decode_events(chunk) {
                        Ok(events) => events,
                        Err(error) => {
                            failed = Some(error);
                            return Ok(false);
                        }
                    };
                    for event in events {
                        if seq >= from && !visit(seq, event) {
                            return Ok(false);
                        }
                        seq += 1;
                    }
                }
                Ok(true)
            },
        )?;
        match failed {
            Some(error) => Err(error.into()),
            None => Ok(()),
        }
    }

    /// The committed accounts in memory.
    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    pub(crate) fn accounts_shared(&self) -> Arc<Accounts> {
        self.accounts.clone()
    }

    /// The account's committed state, loaded from the checkpoint and kept in memory (see
    /// `accounts.rs`). Blocking: run it off the async workers.
    pub fn load_resting(&self, account: &AccountId) -> Result<Account, LoadError> {
        let epoch = self.accounts.epoch(account);
        let resting = self.load_account(account)?;
        self.accounts.keep_loaded(account, epoch, resting.clone());
        Ok(resting)
    }

    /// The account and card a keyed PAN hash belongs to (the PAN directory). Blocking when
    /// the directory's cache does not know it: run it off the async workers, after
    /// [`StateReader::cached_pan_card`].
    pub fn pan_card(&self, hash: &[u8]) -> Result<Option<(AccountId, CardId)>, LoadError> {
        Ok(self.directory.pan(&self.store, hash)?)
    }

    /// What the PAN directory's cache knows of a keyed PAN hash: `Some(None)` for a PAN known
    /// not to be linked, `None` if it must be read ([`StateReader::pan_card`]).
    pub fn cached_pan_card(&self, hash: &[u8]) -> Option<Option<(AccountId, CardId)>> {
        self.directory.cached_pan(hash)
    }

    /// The account a card belongs to (the card directory). Blocking when the directory's
    /// cache does not know it: run it off the async workers, after
    /// [`StateReader::cached_card_account`].
    pub fn card_account(&self, card: &CardId) -> Result<Option<AccountId>, LoadError> {
        Ok(self.directory.card(&self.store, card)?)
    }

    /// What the card directory's cache knows of a card: `Some(None)` for a card known not to
    /// exist, `None` if it must be read ([`StateReader::card_account`]).
    pub fn cached_card_account(&self, card: &CardId) -> Option<Option<AccountId>> {
        self.directory.cached_card(card)
    }

    /// Entries the card and PAN directories' caches hold.
    pub fn directory_cached(&self) -> usize {
        self.directory.cached()
    }

    /// Accounts whose earliest open hold is due at or before `now_ms`, oldest first, at most
    /// `limit`. An account's entry moves when its earliest expiry changes (the actor sends the
    /// new one with its next record), so a swept account drops out by itself.
    pub fn due_expiries(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<(i64, AccountId)>, LoadError> {
        let mut due = Vec::new();
        let end = expiry_key(now_ms.saturating_add(1), &AccountId::new("0").expect("id"));
        self.store.scan(
            (Bound::Included(b"x:".to_vec()), Bound::Excluded(end)),
            |key, _| {
                if due.len() >= limit {
                    return Ok(false);
                }
                if let Some(entry) = expiry_entry(key) {
                    due.push(entry);
                }
                Ok(true)
            },
        )?;
        Ok(due)
    }

    /// The last applied log id the durable checkpoint holds.
    pub fn applied(&self) -> Result<Option<LogId>, LoadError> {
        Ok(match self.store.stored(APPLIED)? {
            Some(bytes) => codec::decode_value(&bytes)?,
            None => None,
        })
    }
}
