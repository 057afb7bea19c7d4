//! Reads: an account's live balance, its committed state (holds, positions) and its history
//! of posted entries. A reader is an admin or an app key of the account; reads never queue
//! behind the account's work and never show an effect that is not durable.

use std::sync::Arc;

use tandem_core::{Account, AccountId, AccountStatus, BalanceSnapshot, Event, Movement};

use super::OpError;
use crate::app::App;
use crate::keys::{KeyRole, Principal};
use crate::limits::{ENTRIES_PAGE_DEFAULT, ENTRIES_PAGE_MAX};

/// Where a page of entries starts: after entry `index` of the movement committed at `seq`
/// (the default, seq 0 and no index, is the start of the history).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct After {
    pub seq: u64,
    pub index: Option<usize>,
}

/// One posted entry: entry `index` of the movement committed at `seq`.
#[derive(Debug, Clone)]
pub struct Posted {
    pub seq: u64,
    pub index: usize,
    pub movement: Arc<Movement>,
}

/// A page of the entries feed; `more` when entries follow it.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub entries: Vec<Posted>,
    pub more: bool,
}

/// Items a page of a feed holds for a caller's `limit`: the default for 0, at most
/// [`ENTRIES_PAGE_MAX`].
fn page_limit(limit: u32) -> usize {
    let limit = match limit {
        0 => ENTRIES_PAGE_DEFAULT,
        n => n.min(ENTRIES_PAGE_MAX),
    };
    limit as usize
}

/// A page of the lifecycle feed: each movement naming a lifecycle, with the sequence number
/// it was committed at; `more` when changes follow it.
#[derive(Debug, Clone, Default)]
pub struct LifecyclePage {
    pub events: Vec<(u64, Box<Movement>)>,
    pub more: bool,
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// This node's applied state, at once (a follower may be a moment behind).
    #[default]
    Applied,
    /// Everything acknowledged before the read, on any node: a read index the leader
    /// confirms, applied here first.
    Linearizable,
}

impl App {
    /// Where a read of `account` stands, once `principal` may read it: for a linearizable
    /// read, after this node has applied everything committed before the call. Answers the
    /// commit index the read reports.
    pub async fn read_point(
        &self,
        principal: &Principal,
        account: &AccountId,
        consistency: Consistency,
    ) -> Result<u64, OpError> {
        self.may_read(principal, account)?;
        let system = self.system()?;
        if consistency == Consistency::Linearizable {
            system.linearizable_read().await?;
        }
        Ok(system.commit_index())
    }

    /// Whether `principal` may read `account`: admins any, an app key its own.
    pub fn may_read(&self, principal: &Principal, account: &AccountId) -> Result<(), OpError> {
        match principal.role {
            KeyRole::Admin => Ok(()),
            KeyRole::App if principal.account.as_ref() == Some(account) => Ok(()),
            _ => Err(OpError::forbidden(format!(
                "this key may not read account {account}"
            ))),
        }
    }

    /// The account's published balance snapshot (committed effects only).
    pub async fn balance(
        &self,
        principal: &Principal,
        account: &AccountId,
    ) -> Result<Arc<BalanceSnapshot>, OpError> {
        self.may_read(principal, account)?;
        let system = self.system()?;
        let mut snapshot = system.snapshot(account).await?;
        // A lagging member asks the leader before it says an account does not exist.
        if snapshot.status == AccountStatus::Unopened && self.caught_up().await? {
            snapshot = system.snapshot(account).await?;
        }
        if snapshot.status == AccountStatus::Unopened {
            return Err(OpError::not_found(format!("no account {account}")));
        }
        Ok(snapshot)
    }

    /// The account's committed state, for its holds and positions.
    pub async fn committed_state(
        &self,
        principal: &Principal,
        account: &AccountId,
    ) -> Result<Account, OpError> {
        self.may_read(principal, account)?;
        self.existing(account).await
    }

    /// A page of at most `limit` (capped at [`ENTRIES_PAGE_MAX`]) posted entries after `after`.
    pub async fn entries(
        &self,
        principal: &Principal,
        account: &AccountId,
        after: After,
        limit: u32,
    ) -> Result<Page, OpError> {
        self.may_read(principal, account)?;
        let limit = page_limit(limit);
        self.system()?
            .each_committed_event(
                account,
                after.seq,
                Page::default(),
                move |page, seq, event| {
                    let Event::Movement(movement) = event else {
                        return true;
                    };
                    let movement: Arc<Movement> = Arc::from(movement);
                    for index in 0..movement.entries.len() {
                        if seq == after.seq && after.index.is_some_and(|after| index <= after) {
                            continue;
                        }
                        if page.entries.len() == limit {
                            page.more = true;
                            return false;
                        }
                        page.entries.push(Posted {
                            seq,
                            index,
                            movement: movement.clone(),
                        });
                    }
                    true
                },
            )
            .await
            .map_err(|e| OpError::internal(format!("could not read the history: {e}")))
    }

    /// A page of at most `limit` (capped at [`ENTRIES_PAGE_MAX`]) lifecycle changes committed
    /// after sequence number `after` (0: from the start): every movement that names a
    /// lifecycle, releases included, so a reader can tell what became of each hold.
    pub async fn lifecycle_events(
        &self,
        principal: &Principal,
        account: &AccountId,
        after: Option<u64>,
        limit: u32,
    ) -> Result<LifecyclePage, OpError> {
        self.may_read(principal, account)?;
        let limit = page_limit(limit);
        let from = after.map_or(0, |seq| seq + 1);
        self.system()?
            .each_committed_event(
                account,
                from,
                LifecyclePage::default(),
                move |page, seq, event| {
                    let Event::Movement(movement) = event else {
                        return true;
                    };
                    if movement.authorization.is_none() {
                        return true;
                    }
                    if page.events.len() == limit {
                        page.more = true;
                        return false;
                    }
                    page.events.push((seq, movement));
                    true
                },
            )
            .await
            .map_err(|e| OpError::internal(format!("could not read the history: {e}")))
    }

    /// The committed account as the checkpoint holds it.
    pub(crate) async fn committed(&self, account: &AccountId) -> Result<Account, OpError> {
        self.system()?
            .committed_account(account)
            .await
            .map_err(|e| OpError::internal(format!("could not load the account: {e}")))
    }

    /// [`App::committed`], for an account that was opened.
    pub(crate) async fn existing(&self, account: &AccountId) -> Result<Account, OpError> {
        let mut state = self.committed(account).await?;
        if state.status == AccountStatus::Unopened && self.caught_up().await? {
            state = self.committed(account).await?;
        }
        if state.status == AccountStatus::Unopened {
            return Err(OpError::not_found(format!("no account {account}")));
        }
        Ok(state)
    }
}
