//! The account system: routes an account's messages to its shard, admits work within bounds,
//! supervises the shards (restarting a failed one), keeps the published views, and runs the
//! expiry sweeper for accounts that are not resident.

use arc_swap::ArcSwapOption;
use ractor::{ActorProcessingErr, ActorRef, SupervisionEvent};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{broadcast, oneshot};

use std::path::Path;
use tandem_core::{
    Account, AccountId, Actor, BalanceSnapshot, CardId, Command, CommandBody, Event,
    IdempotencyKey, Outcome, RateTable,
};
use tandem_storage::{
    AccountRecord, BackupError, BackupInfo, ClusterStatus, Derived, Engine, EngineStats, Formed,
    Leader, LeaderWatch, LoadError, Setting, SettingsView,
};

use crate::config::SystemConfig;
use crate::leadership::{Gate, LeadChange};
use crate::messages::{AccountMsg, ExecuteError, ShardMsg};
use crate::shard::Shard;
use crate::shared::Shared;
use crate::view::{AccountView, Change};

/// The shard actors, by index; a failed one is replaced in place.
type Shards = Arc<[ArcSwapOption<ActorRef<ShardMsg>>]>;

/// Restarts failed shards. A shard fails only on a bug (its accounts' failures are handled
/// inside it); the new one starts empty, and each account is lent to it again from the
/// committed accounts in memory or loaded from the checkpoint (a stale lease is replaced).
struct Supervisor {
    shared: Arc<Shared>,
    shards: Shards,
}

impl ractor::Actor for Supervisor {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _myself: ActorRef<()>, _args: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<()>,
        event: SupervisionEvent,
        _state: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(cell, error) = event {
            tracing::error!(%error, "shard failed; restarting it");
            let failed = cell.get_id();
            if let Some(index) = self.shards.iter().position(|shard| {
                shard
                    .load()
                    .as_ref()
                    .is_some_and(|shard| shard.get_id() == failed)
            }) {
                match spawn_shard(&self.shared, myself.get_cell()).await {
                    Ok(shard) => self.shards[index].store(Some(Arc::new(shard))),
                    Err(error) => tracing::error!(%error, index, "could not restart a shard"),
                }
            }
        }
        Ok(())
    }
}

/// Starts a shard under `supervisor`. Unnamed: ractor's registry is process-wide, and the
/// supervisor knows a shard by its id.
async fn spawn_shard(
    shared: &Arc<Shared>,
    supervisor: ractor::ActorCell,
) -> Result<ActorRef<ShardMsg>, ractor::SpawnErr> {
    let shard = Shard {
        shared: shared.clone(),
    };
    let (shard, _) = ractor::Actor::spawn_linked(None, shard, (), supervisor).await?;
    Ok(shard)
}

/// The setting the FX rates are committed under: `codec::encode_value` of a [`RateTable`].
pub const RATES_SETTING: &str = "fx-rates";

/// The FX rates committed to the log, if any were. A value this build cannot read (written
/// by a newer one) is reported and the configured rates stand until the next change.
fn committed_rates(settings: &SettingsView) -> Option<RateTable> {
    let bytes = settings.get(RATES_SETTING)?;
    match tandem_storage::codec::decode_value(bytes) {
        Ok(rates) => Some(rates),
        Err(error) => {
            tracing::error!(%error, "the committed FX rates do not decode; the configured base stands");
            None
        }
    }
}

/// The running account system.
pub struct AccountSystem {
    shared: Arc<Shared>,
    supervisor: ActorRef<()>,
    shards: Shards,
    sweeper: tokio::task::JoinHandle<()>,
    /// Opens and closes the decision gate as leadership changes ([`lead_loop`]).
    deposer: tokio::task::JoinHandle<()>,
}

/// Only the leader runs actors, and only from its committed state (`leadership.rs`): at each
/// change of the term this node leads in, every shard lets its resident accounts go
/// (`ShardMsg::Depose`), so none of its copies outlives the term it was lent in, and its reads
/// come from the records it applies; a new term's gate opens once it has applied everything
/// committed before it.
async fn lead_loop(
    system: std::sync::Weak<AccountSystem>,
    built: oneshot::Receiver<()>,
    mut leadership: LeaderWatch,
) {
    // Spawned while the system is being built: it cannot be reached until then.
    if built.await.is_err() {
        return;
    }
    let mut now = Some(leadership.current());
    while let Some(leading) = now {
        let Some(system) = system.upgrade() else {
            return;
        };
        if let LeadChange::Depose { settle } = system.shared.gate.follow(&leading) {
            if settle.is_none() {
                tracing::warn!(leader = ?leading.leader, term = leading.term, "this node no longer leads; its accounts leave their actors");
            }
            // Cast before the gate can open again: a shard's mailbox is in order, so every
            // decision of the new term finds the old copies gone.
            for shard in system.shards.iter() {
                if let Some(shard) = shard.load().as_ref() {
                    let _ = shard.cast(ShardMsg::Depose);
                }
            }
            if let Some(term) = settle {
                let shared = system.shared.clone();
                tokio::spawn(async move { shared.gate.settle(&shared.engine, term).await });
            }
        }
        drop(system);
        now = leadership.changed().await;
    }
    if let Some(system) = system.upgrade() {
        system.shared.gate.engine_stopped();
    }
}

impl AccountSystem {
    /// Starts the system over `engine`. Decisions convert with the FX rates committed to the
    /// log (`set_rates`); until any are, with `rates`.
    pub async fn start(
        engine: Engine,
        config: SystemConfig,
        rates: RateTable,
    ) -> Result<Arc<Self>, ractor::SpawnErr> {
        let rates = Derived::new(engine.reader().settings().clone(), move |settings| {
            committed_rates(settings).unwrap_or_else(|| rates.clone())
        });
        let shared = Arc::new(Shared {
            engine,
            config,
            rates,
            admitted: AtomicUsize::new(0),
            views: RwLock::new(HashMap::new()),
            gate: Gate::default(),
        });
        shared
            .engine
            .reader()
            .accounts()
            .set_watch(Arc::new(crate::shared::AppliedToViews(Arc::downgrade(
                &shared,
            ))));
        let shards: Shards = (0..shared.config.shards.max(1))
            .map(|_| ArcSwapOption::empty())
            .collect();
        let (supervisor, _) = ractor::Actor::spawn(
            None,
            Supervisor {
                shared: shared.clone(),
                shards: shards.clone(),
            },
            (),
        )
        .await?;
        for shard in shards.iter() {
            shard.store(Some(Arc::new(
                spawn_shard(&shared, supervisor.get_cell()).await?,
            )));
        }
        let leadership = shared.engine.leader_watch();
        let (built, is_built) = oneshot::channel();
        let system = Arc::new_cyclic(|weak: &std::sync::Weak<AccountSystem>| {
            let sweeper = tokio::spawn(sweep_loop(weak.clone(), shared.config.sweep_every));
            let deposer = tokio::spawn(lead_loop(weak.clone(), is_built, leadership));
            AccountSystem {
                shared,
                supervisor,
                shards,
                sweeper,
                deposer,
            }
        });
        let _ = built.send(());
        Ok(system)
    }

    /// The engine, for this crate only: the gateways reach committed state and the log
    /// through the narrow methods below, so the next issues can move what is behind them.
    pub(crate) fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// Sends `message` to the shard `account` belongs to; false if the shard has stopped
    /// (the message is dropped, and its caller sees the account interrupted).
    /// The index of the shard `account` belongs to.
    fn shard_of(&self, account: &AccountId) -> usize {
        use std::hash::BuildHasher;
        let hash = rustc_hash::FxBuildHasher.hash_one(account);
        (hash as usize) % self.shards.len()
    }

    fn send(&self, account: &AccountId, message: AccountMsg) -> bool {
        let shard = &self.shards[self.shard_of(account)];
        shard.load().as_ref().is_some_and(|shard| {
            shard
                .cast(ShardMsg::Account(account.clone(), message))
                .is_ok()
        })
    }

    // ------------------------------------------------ committed state and the directories

    /// The account a card belongs to (the card directory), from committed state: from the
    /// directory's cache, else read off the async workers.
    pub async fn card_account(&self, card: &CardId) -> Result<Option<AccountId>, LoadError> {
        let reader = self.engine().reader();
        if let Some(found) = reader.cached_card_account(card) {
            return Ok(found);
        }
        let card = card.clone();
        self.off_workers(move |reader| reader.card_account(&card))
            .await
    }

    /// A PAN's keyed hash, as the PAN directory stores it (never the PAN itself).
    pub fn hash_pan(&self, pan: &str) -> String {
        self.engine().pan_key().hash(pan)
    }

    /// The account and card a keyed PAN hash belongs to (the PAN directory): from the
    /// directory's cache, else read off the async workers.
    pub async fn pan_card(&self, hash: &str) -> Result<Option<(AccountId, CardId)>, LoadError> {
        let reader = self.engine().reader();
        if let Some(found) = reader.cached_pan_card(hash.as_bytes()) {
            return Ok(found);
        }
        let hash = hash.to_owned();
        self.off_workers(move |reader| reader.pan_card(hash.as_bytes()))
            .await
    }

    /// `read` of committed state, which may wait on sled, off the runtime's workers.
    async fn off_workers<T: Send + 'static>(
        &self,
        read: impl FnOnce(&tandem_storage::StateReader) -> Result<T, LoadError> + Send + 'static,
    ) -> Result<T, LoadError> {
        let reader = self.engine().reader().clone();
        tokio::task::spawn_blocking(move || read(&reader))
            .await
            .map_err(|e| LoadError::Background(e.to_string()))?
    }

    /// Records that the PAN with keyed hash `hash` is `account`'s card `card`: a log write of
    /// its own, answered once durable. Its errors are a decision's ([`ExecuteError`]).
    pub async fn link_pan(
        &self,
        account: &AccountId,
        card: &CardId,
        hash: String,
    ) -> Result<(), ExecuteError> {
        let record = AccountRecord::pan_links(account, vec![(hash.into_bytes(), card.clone())]);
        match self.engine().submit(record).await {
            Ok(result) => result.map(|_| ()).map_err(ExecuteError::from),
            Err(_) => Err(ExecuteError::ShuttingDown),
        }
    }

    /// The committed account. From its actor if one runs (a copy answered once every
    /// decision in it is durable), else from the committed accounts in memory, else loaded
    /// from the checkpoint off the runtime's workers. Never starts an actor.
    pub async fn committed_account(&self, account: &AccountId) -> Result<Account, LoadError> {
        if self.engine().reader().accounts().is_lent(account) {
            let (reply, answer) = oneshot::channel();
            if self.send(account, AccountMsg::Read { reply })
                && let Ok(answered) = answer.await
            {
                return answered.map_err(|error| LoadError::Background(error.to_string()));
            }
            // It left its shard before the read reached it: it was given back, or it is in
            // the checkpoint.
        }
        self.resting(account, |resting| resting.clone()).await
    }

    /// `read` of the account's committed state at rest: in memory if it is there, else
    /// loaded from the checkpoint off the runtime's workers (and kept in memory).
    async fn resting<T: Send + 'static>(
        &self,
        account: &AccountId,
        read: impl Fn(&Account) -> T + Send + 'static,
    ) -> Result<T, LoadError> {
        let reader = self.engine().reader();
        if let Some(value) = reader.accounts().read(account, &read) {
            return Ok(value);
        }
        let account = account.clone();
        self.off_workers(move |reader| reader.load_resting(&account).map(|r| read(&r)))
            .await
    }

    /// The committed snapshot of an account without a resident actor.
    async fn resting_snapshot(
        &self,
        account: &AccountId,
    ) -> Result<Arc<BalanceSnapshot>, ExecuteError> {
        self.resting(account, |resting| {
            Arc::new(BalanceSnapshot::of(resting, tandem_core::Timestamp::now()))
        })
        .await
        .map_err(|error| ExecuteError::LoadFailed(error.to_string()))
    }

    /// Visits the account's committed events from sequence `from` (see
    /// `StateReader::each_event`) off the runtime's workers, and answers what `visit` built.
    pub async fn each_committed_event<T: Send + 'static>(
        &self,
        account: &AccountId,
        from: u64,
        init: T,
        visit: impl FnMut(&mut T, u64, Event) -> bool + Send + 'static,
    ) -> Result<T, LoadError> {
        let account = account.clone();
        let mut visit = visit;
        self.off_workers(move |reader| {
            let mut state = init;
            reader
                .each_event(&account, from, |seq, event| visit(&mut state, seq, event))
                .map(|()| state)
        })
        .await
    }

    /// The log's counters (batches and records committed), for metrics.
    pub fn log_stats(&self) -> &EngineStats {
        self.engine().stats()
    }

    /// Writes a consistent copy of the node to `dir` (see `Engine::backup`).
    pub async fn backup(&self, data_dir: &Path, dir: &Path) -> Result<BackupInfo, BackupError> {
        self.engine().backup(data_dir, dir).await
    }

    /// Replaces the FX rates new decisions use, on every node: a log write, answered once
    /// durable and applied here.
    pub async fn set_rates(&self, rates: &RateTable) -> Result<(), ExecuteError> {
        self.put_settings(vec![Self::rates_setting(rates)?])
            .await
            .map(|_| ())
    }

    /// The setting that commits `rates` as the FX rates ([`RATES_SETTING`]).
    pub fn rates_setting(rates: &RateTable) -> Result<Setting, ExecuteError> {
        let value = tandem_storage::codec::encode_value(rates)
            .map_err(|error| ExecuteError::CouldNotDecide(error.to_string()))?;
        Ok(Setting {
            name: RATES_SETTING.to_owned(),
            value: Some(value),
        })
    }

    /// The FX rates decisions convert with now.
    pub fn rates(&self) -> Arc<RateTable> {
        self.shared.rates.get()
    }

    /// Commits changes to the cluster's settings (`tandem_storage::settings`); answers the
    /// log index once they are durable and applied on this node.
    pub async fn put_settings(&self, settings: Vec<Setting>) -> Result<u64, ExecuteError> {
        match self.engine().submit_settings(settings).await {
            Ok(result) => result.map_err(ExecuteError::from),
            Err(_) => Err(ExecuteError::ShuttingDown),
        }
    }

    /// The cluster as this node sees it (roles, term, indexes, each member's lag).
    pub fn cluster_status(&self) -> ClusterStatus {
        self.engine().status()
    }

    /// A digest of this node's applied state and the log index it was taken at: two members
    /// at the same index hold the same state iff their digests are equal (an SRE's drill, and
    /// how the tests compare a replica that installed a snapshot). O(state), off the workers;
    /// taken again while entries apply under it, so index and digest belong together.
    pub async fn state_digest(&self) -> Result<(u64, String), LoadError> {
        loop {
            let before = self.engine().status().applied_index;
            let digest = self
                .off_workers(|reader| reader.digest().map_err(LoadError::from))
                .await?;
            if self.engine().status().applied_index == before {
                return Ok((before, digest));
            }
        }
    }

    /// Forms the cluster of `members` (see `Engine::form`): safe to repeat on any member.
    pub async fn form_cluster(
        &self,
        members: std::collections::BTreeMap<u64, String>,
    ) -> Result<Formed, String> {
        self.engine()
            .form(members)
            .await
            .map_err(|error| error.to_string())
    }

    /// A linearizable read point (see `Engine::linearizable_read`): once it answers, this
    /// node has applied everything committed before the call.
    pub async fn linearizable_read(&self) -> Result<u64, ExecuteError> {
        self.engine()
            .linearizable_read()
            .await
            .map_err(ExecuteError::from)
    }

    /// Who leads the cluster, as this node last learned it (a single node leads itself).
    pub fn leader(&self) -> Leader {
        self.engine().leader()
    }

    /// How long this node has known no leader; `None` while it knows one.
    pub fn leaderless_for(&self) -> Option<Duration> {
        self.engine().leaderless_for()
    }

    /// The highest index this node knows committed (what every read reports).
    pub fn commit_index(&self) -> u64 {
        self.engine().commit_index()
    }

    /// The settings as applied on this node.
    pub fn settings(&self) -> Arc<SettingsView> {
        self.engine().reader().settings().current()
    }

    /// A value derived from the settings, rebuilt when they change.
    pub fn derive<T>(
        &self,
        derive: impl Fn(&SettingsView) -> T + Send + Sync + 'static,
    ) -> Derived<T> {
        Derived::new(self.engine().reader().settings().clone(), derive)
    }

    /// Decides `command` on `account` and answers once the decision is durable.
    pub async fn execute(
        &self,
        account: &AccountId,
        command: Command,
    ) -> Result<Outcome, ExecuteError> {
        self.execute_with_pan(account, command, None).await
    }

    /// [`AccountSystem::execute`] for a command that issues a card (`IssueCard`,
    /// `ReplaceCard`) with its PAN's keyed hash: the PAN directory's link is written in the
    /// same log record as the card, so after any crash either both exist or neither. The
    /// caller has checked the PAN is free (see the server's card directory lock).
    pub async fn execute_with_pan(
        &self,
        account: &AccountId,
        command: Command,
        pan_hash: Option<String>,
    ) -> Result<Outcome, ExecuteError> {
        self.send_execute(account, command, pan_hash.map(String::into_bytes), None)
            .await
    }

    /// Sends `command` to the account's actor (see `AccountMsg::Execute`) and waits for its
    /// durable answer.
    async fn send_execute(
        &self,
        account: &AccountId,
        command: Command,
        pan: Option<Vec<u8>>,
        swept_entry: Option<i64>,
    ) -> Result<Outcome, ExecuteError> {
        if !self.shared.gate.is_open() {
            self.shared
                .gate
                .wait_open(|| self.leader())
                .await
                .map_err(|leader| ExecuteError::NotLeader { leader })?;
        }
        // A shard that stops (it failed, or the system is shutting down) drops our message
        // unanswered; asking again is safe because the command carries its key.
        for _ in 0..3 {
            if self.shared.admitted.fetch_add(1, Ordering::AcqRel)
                >= self.shared.config.in_flight_max
            {
                self.shared.release_admission();
                return Err(ExecuteError::Busy);
            }
            let (reply, answer) = oneshot::channel();
            let message = AccountMsg::Execute {
                command: command.clone(),
                reply,
                pan: pan.clone(),
                swept_entry,
            };
            if !self.send(account, message) {
                self.shared.release_admission();
                continue;
            }
            match answer.await {
                Ok(result) => return result,
                Err(_) => {
                    // Dropped unanswered: the admission was not released by a completion.
                    self.shared.release_admission();
                    continue;
                }
            }
        }
        Err(ExecuteError::Interrupted)
    }

    /// The latest committed snapshot, without queueing behind the account's work: the
    /// published one, or from the committed account at rest. Never starts an actor.
    pub async fn snapshot(
        &self,
        account: &AccountId,
    ) -> Result<Arc<BalanceSnapshot>, ExecuteError> {
        if let Some(view) = self.resident_view(account) {
            return Ok(view.snapshot.load());
        }
        self.resting_snapshot(account).await
    }

    /// Every committed change of `account` from now on, with the current snapshot first.
    pub async fn watch(
        &self,
        account: &AccountId,
    ) -> Result<(Arc<BalanceSnapshot>, broadcast::Receiver<Change>), ExecuteError> {
        let view = match self.resident_view(account) {
            Some(view) => view,
            None => {
                // A view of its own until an actor starts and takes it over; no actor is
                // started for a watcher.
                let current = self.resting_snapshot(account).await?;
                self.shared.watched_view(account, current)
            }
        };
        let buffer = self.shared.config.watch_buffer;
        let receiver = view
            .changes
            .get_or_init(|| broadcast::channel(buffer).0)
            .subscribe();
        if !self.is_resident(account) {
            // Records applied from now on reach this watcher (`AppliedToViews`); one applied
            // between the first read and the subscription is in this second read.
            let current = self.resting_snapshot(account).await?;
            if current.seq > view.snapshot.load().seq {
                view.snapshot.publish(current);
            }
        }
        Ok((view.snapshot.load(), receiver))
    }

    /// A watcher of `account` left: its view goes if nobody else watches and no actor
    /// holds the account.
    pub fn unwatched(&self, account: &AccountId) {
        let mut views = self.shared.views.write().unwrap_or_else(|p| p.into_inner());
        // Under the views lock: an actor lends the account before it takes its view, so
        // either it is lent now, or its view is made after this.
        if !self.engine().reader().accounts().is_lent(account)
            && views
                .get(account)
                .is_some_and(|v| v.changes.get().is_none_or(|c| c.receiver_count() == 0))
        {
            views.remove(account);
        }
    }

    fn resident_view(&self, account: &AccountId) -> Option<Arc<AccountView>> {
        self.shared
            .views
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(account)
            .cloned()
    }

    /// Accounts with a resident actor.
    pub fn resident_accounts(&self) -> usize {
        self.shared
            .views
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Whether `account` is resident on its shard (or being loaded there).
    pub fn is_resident(&self, account: &AccountId) -> bool {
        self.engine().reader().accounts().is_lent(account)
    }

    /// Committed accounts in memory that no actor holds.
    pub fn accounts_at_rest(&self) -> usize {
        self.engine().reader().accounts().resting()
    }

    /// Entries the card and PAN directories' caches hold.
    pub fn directory_cached(&self) -> usize {
        self.engine().reader().directory_cached()
    }

    /// Work admitted and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.shared.admitted.load(Ordering::Acquire)
    }

    /// Expires due holds now (what the sweeper does on its timer). One sweep decision
    /// expires at most `SWEEP_EXPIRIES_MAX` holds of an account, so an account with more due
    /// is swept again, round after round, until nothing due at the start of this call is
    /// left (at most [`SWEEP_ROUNDS_MAX`] rounds): a hot account that leaves thousands of
    /// holds open a second keeps pace with them. Returns the sweep decisions made.
    pub async fn sweep_due(&self) -> usize {
        // Only the leader decides; a follower applies the leader's sweeps.
        if self.leader() != Leader::This {
            return 0;
        }
        let now = self.shared.now().millis();
        let mut swept = 0;
        for _ in 0..SWEEP_ROUNDS_MAX {
            let reader = self.shared.engine.reader().clone();
            let due = match tokio::task::spawn_blocking(move || reader.due_expiries(now, 1_024))
                .await
                .map_err(|e| LoadError::Background(e.to_string()))
                .and_then(|read| read)
            {
                Ok(due) => due,
                Err(error) => {
                    tracing::warn!(%error, "could not read the expiry index");
                    return swept;
                }
            };
            let mut this_round = 0;
            for (at, account) in due {
                let key =
                    IdempotencyKey::new(&format!("sweep-{now}")).expect("sweep keys are valid");
                let command = Command::new(key, Actor::Platform, CommandBody::Sweep);
                // Expiring the holds moves the account's entry in the expiry index; an entry
                // the account does not hold goes.
                if self
                    .send_execute(&account, command, None, Some(at))
                    .await
                    .is_ok()
                {
                    this_round += 1;
                }
            }
            if this_round == 0 {
                break;
            }
            swept += this_round;
        }
        swept
    }

    /// Stops every shard and the sweeper; answers already durable have been given.
    pub async fn shutdown(self: Arc<Self>) {
        self.sweeper.abort();
        self.deposer.abort();
        // Each shard gives back its resident accounts with nothing in flight.
        for shard in self.shards.iter() {
            if let Some(shard) = shard.swap(None) {
                shard
                    .stop_and_wait(None, Some(Duration::from_secs(5)))
                    .await
                    .ok();
            }
        }
        self.supervisor
            .stop_and_wait(None, Some(Duration::from_secs(5)))
            .await
            .ok();
    }

    /// Stops the actors, then the log: everything answered before is durable, and later
    /// submissions fail. The engine stays valid for whoever else still holds it.
    pub async fn stop(self: Arc<Self>) {
        self.clone().shutdown().await;
        self.engine().stop().await;
    }
}

/// Sweep rounds one tick of the sweeper makes at most: 128 rounds of up to 128 holds an
/// account, so one tick can expire 16,384 holds of a hot account, more than the
/// `OPEN_HOLDS_PER_ACCOUNT_MAX` it can hold.
pub const SWEEP_ROUNDS_MAX: usize = 128;

async fn sweep_loop(system: std::sync::Weak<AccountSystem>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let Some(system) = system.upgrade() else {
            return;
        };
        system.sweep_due().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_core::testkit::{member, money, standard_rates};
    use tandem_core::{AccountKind, IdempotencyKey, Role};
    use tandem_storage::EngineConfig;

    fn command(key: &str, body: CommandBody) -> Command {
        Command {
            key: IdempotencyKey::new(key).expect("key"),
            actor: Actor::Platform,
            body,
            references: Vec::new(),
        }
    }

    async fn ledger_eur(system: &AccountSystem, account: &AccountId) -> i64 {
        let snapshot = system.snapshot(account).await.expect("snapshot");
        snapshot.balances.iter().map(|b| b.ledger_minor).sum()
    }

    /// A shard that fails is restarted by the supervisor: its accounts are served again from
    /// their committed state, and accounts on other shards never noticed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_shard_is_restarted_and_its_accounts_are_served_again() {
        let dir = tempfile::tempdir().expect("dir");
        let engine = Engine::open(EngineConfig::new(dir.path()))
            .await
            .expect("engine opens");
        let system = AccountSystem::start(engine, SystemConfig::default(), standard_rates())
            .await
            .expect("system starts");
        let accounts: Vec<AccountId> = (0..8)
            .map(|i| AccountId::new(&format!("acct-{i}")).expect("id"))
            .collect();
        for account in &accounts {
            for (step, body) in [
                CommandBody::OpenAccount {
                    kind: AccountKind::Joint,
                },
                CommandBody::AddMember {
                    member: member("owner"),
                    role: Role::Owner,
                },
                CommandBody::Deposit {
                    member: member("owner"),
                    amount: money(10_00, "EUR"),
                },
            ]
            .into_iter()
            .enumerate()
            {
                system
                    .execute(account, command(&format!("{account}-{step}"), body))
                    .await
                    .expect("decided");
            }
        }
        let victim = &accounts[0];
        let index = system.shard_of(victim);
        let before = system.shards[index].load_full().expect("a shard").get_id();
        system.shards[index]
            .load_full()
            .expect("a shard")
            .cast(ShardMsg::Panic)
            .expect("sent");
        let mut restarted = false;
        for _ in 0..200 {
            if system.shards[index]
                .load_full()
                .is_some_and(|shard| shard.get_id() != before)
            {
                restarted = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(restarted, "the supervisor put a new shard in its place");
        for (i, account) in accounts.iter().enumerate() {
            let outcome = system
                .execute(
                    account,
                    command(
                        &format!("{account}-after"),
                        CommandBody::Deposit {
                            member: member("owner"),
                            amount: money(1_00, "EUR"),
                        },
                    ),
                )
                .await
                .expect("served after the restart");
            assert!(
                matches!(outcome, Outcome::Accepted { .. }),
                "{i}: {outcome:?}"
            );
            assert_eq!(
                ledger_eur(&system, account).await,
                11_00,
                "{account}: nothing lost"
            );
        }
        system.shutdown().await;
    }
}
