//! A shard: one ractor actor owning many resident accounts (decision 0024).
//!
//! An account belongs to one shard for life (a hash of its id), so the shard's mailbox orders
//! each account's messages exactly as one actor per account did, while an account costs only
//! its state: no task, mailbox, supervision channels or registry entry of its own.
//!
//! - An account not resident is lent by the committed accounts in memory. If it is not there
//!   its load runs off the runtime's workers while the shard goes on serving its other
//!   accounts; the account's messages wait, in order, until it arrives.
//! - A failed commit drops that account alone (it is loaded again from durable state).
//! - A tick every half idle timeout passivates accounts idle that long with nothing in
//!   flight: each goes back to the committed accounts in memory.

use ractor::{ActorProcessingErr, ActorRef};
use rustc_hash::FxHashMap;
use std::sync::Arc;
use std::time::Duration;

use tandem_core::AccountId;
use tandem_storage::{Lease, LoadError};

use crate::account::AccountState;
use crate::messages::{AccountMsg, ExecuteError, ShardMsg};
use crate::shared::Shared;

/// Where an account of this shard stands: being loaded, or resident with its actor state.
enum Residence {
    /// Being loaded; its messages wait here in arrival order.
    Loading(Vec<AccountMsg>),
    // Boxed so the map's empty slots stay small.
    Resident(Box<AccountState>),
}

pub(crate) struct Shard {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct ShardState {
    accounts: FxHashMap<AccountId, Residence>,
}

/// How often a shard looks for idle accounts: twice per idle timeout, so an account leaves
/// between one and one and a half timeouts after its last use.
fn tick_every(idle: Duration) -> Duration {
    (idle / 2).max(Duration::from_millis(10))
}

impl ractor::Actor for Shard {
    type Msg = ShardMsg;
    type State = ShardState;
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<ShardMsg>,
        _args: (),
    ) -> Result<ShardState, ActorProcessingErr> {
        if let Some(idle) = self.shared.config.idle_timeout {
            // The timer's task ends when the shard does.
            drop(myself.send_interval(tick_every(idle), || ShardMsg::Tick));
        }
        Ok(ShardState {
            accounts: FxHashMap::default(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<ShardMsg>,
        message: ShardMsg,
        state: &mut ShardState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ShardMsg::Account(account, message) => self.deliver(&myself, state, account, message),
            ShardMsg::Loaded {
                account,
                lease,
                loaded,
            } => self.loaded(&myself, state, account, lease, loaded),
            ShardMsg::LogFailed(account) => {
                // Only if the resident copy is the one whose commit failed: a copy loaded
                // since is current, and later failures of the old one tell nothing new.
                if let Some(Residence::Resident(resident)) = state.accounts.get(&account)
                    && resident.has_failed()
                    && let Some(Residence::Resident(resident)) = state.accounts.remove(&account)
                {
                    tracing::warn!(%account, "a commit failed; the account is loaded again from durable state when next needed");
                    resident.leave();
                }
            }
            #[cfg(test)]
            ShardMsg::Panic => panic!("a shard failing on purpose (test)"),
            ShardMsg::Depose => {
                for (_, slot) in state.accounts.drain() {
                    if let Residence::Resident(resident) = slot {
                        resident.leave();
                    }
                }
            }
            ShardMsg::Tick => {
                let idle = self.shared.config.idle_timeout.unwrap_or(Duration::MAX);
                let leaving = state.accounts.extract_if(
                    |_, slot| matches!(slot, Residence::Resident(resident) if resident.is_idle(idle)),
                );
                for (_, slot) in leaving {
                    if let Residence::Resident(resident) = slot {
                        resident.leave();
                    }
                }
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<ShardMsg>,
        state: &mut ShardState,
    ) -> Result<(), ActorProcessingErr> {
        // Stopping (the system shuts down): every resident account with nothing in flight
        // goes back to the committed accounts in memory. Waiting messages are dropped; their
        // callers see the account interrupted.
        for (_, slot) in state.accounts.drain() {
            if let Residence::Resident(resident) = slot {
                resident.leave();
            }
        }
        Ok(())
    }
}

impl Shard {
    fn deliver(
        &self,
        myself: &ActorRef<ShardMsg>,
        state: &mut ShardState,
        account: AccountId,
        message: AccountMsg,
    ) {
        match state.accounts.get_mut(&account) {
            Some(Residence::Resident(resident)) => resident.handle(message),
            Some(Residence::Loading(waiting)) => waiting.push(message),
            // A read never loads an account: dropping its reply sends the caller to the
            // account at rest.
            None if matches!(message, AccountMsg::Read { .. }) => {}
            None => self.load(myself, state, account, message),
        }
    }

    /// Makes `account` resident for `message`: lent at once if it is in memory, else loaded
    /// off the runtime's workers while its messages wait.
    fn load(
        &self,
        myself: &ActorRef<ShardMsg>,
        state: &mut ShardState,
        account: AccountId,
        message: AccountMsg,
    ) {
        let reader = self.shared.engine.reader().clone();
        let (lease, resting) = reader.accounts().lend(&account);
        if let Some(resting) = resting {
            let mut resident = AccountState::new(&self.shared, myself.clone(), lease, resting);
            resident.handle(message);
            state
                .accounts
                .insert(account, Residence::Resident(Box::new(resident)));
            return;
        }
        state
            .accounts
            .insert(account.clone(), Residence::Loading(vec![message]));
        let shard = myself.clone();
        tokio::spawn(async move {
            let id = account.clone();
            let loaded = tokio::task::spawn_blocking(move || reader.load_account(&id))
                .await
                .map_err(|e| LoadError::Background(e.to_string()))
                .and_then(|loaded| loaded);
            // If the shard stopped meanwhile, the lease is replaced at the next lend.
            let _ = shard.cast(ShardMsg::Loaded {
                account,
                lease,
                loaded,
            });
        });
    }

    fn loaded(
        &self,
        myself: &ActorRef<ShardMsg>,
        state: &mut ShardState,
        account: AccountId,
        lease: Lease,
        loaded: Result<tandem_core::Account, LoadError>,
    ) {
        let Some(Residence::Loading(waiting)) = state.accounts.remove(&account) else {
            // Not waiting for it (cannot happen: only a load inserts `Loading`).
            self.shared
                .engine
                .reader()
                .accounts()
                .end_lease(&account, lease);
            return;
        };
        match loaded {
            Ok(resting) => {
                let mut resident = AccountState::new(&self.shared, myself.clone(), lease, resting);
                for message in waiting {
                    resident.handle(message);
                }
                state
                    .accounts
                    .insert(account, Residence::Resident(Box::new(resident)));
            }
            Err(error) => {
                tracing::warn!(%account, %error, "could not load the account");
                self.shared
                    .engine
                    .reader()
                    .accounts()
                    .end_lease(&account, lease);
                for message in waiting {
                    message.refuse(&self.shared, ExecuteError::LoadFailed(error.to_string()));
                }
            }
        }
    }
}
