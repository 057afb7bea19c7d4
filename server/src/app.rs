//! `App`: what every operation runs against. It holds the account system (once recovery has
//! handed it over), the API keys, the audit log, the card directory's lock and the deadline
//! bookkeeping, and it executes one command: `App::execute` asks `ops::route` where the
//! account runs (here, or forwarded to the leader by `ops::forward`), hands the command to
//! the account system (answered only once durable), and records metrics and, for admin
//! actions, the audit line.
//!
//! The operations themselves are `impl App` blocks in `crate::ops`, one file per family; the
//! gateways in `crate::edge` decode their wire and call them. No state is touched before an
//! operation's scope check passes.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tandem_actors::AccountSystem;
use tandem_core::{AccountId, Actor, Command, CommandBody, IdempotencyKey, Outcome};

use crate::keys::{KeyRole, KeyStore, Principal};
use crate::names::snake;
use crate::ops::OpError;

pub struct App {
    system: std::sync::OnceLock<Arc<AccountSystem>>,
    pub keys: KeyStore,
    pub data_dir: PathBuf,
    /// Every member's id and gRPC address, when this node is a cluster member (`--peers`).
    pub peers: Option<std::collections::BTreeMap<u64, String>>,
    /// Recovery is complete and the listeners are up.
    pub ready: AtomicBool,
    /// Serializes card issuance, so a card id or PAN is unique across accounts.
    pub(crate) directory: tokio::sync::Mutex<()>,
    audit: Mutex<Option<std::fs::File>>,
    sequence: AtomicU64,
    /// Set when the node was started with fault injection enabled.
    pub(crate) faults: std::sync::OnceLock<tandem_actors::WriteFaults>,
    /// Card traffic whose deadline passed and whose timeout mark is not durable yet.
    pub(crate) deadlines: crate::ops::timing_out::Deadlines,
    /// A cluster member's channels to its peers, for writes forwarded to the leader.
    pub(crate) peers_network: std::sync::OnceLock<tandem_replication::GrpcNetwork>,
}

/// How long a cluster member may know no leader before it says it cannot serve: past the
/// time an election takes once called (milliseconds), so an election that ends normally does not flap
/// its readiness.
pub const LEADERLESS_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// The audit log, opened for appending.
fn open_audit(data_dir: &std::path::Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.join("audit.log"))
}

impl App {
    /// An app whose account system is not up yet: every call answers "recovering" until
    /// [`App::recovered`] hands it over.
    pub fn new(
        keys: KeyStore,
        data_dir: PathBuf,
        peers: Option<std::collections::BTreeMap<u64, String>>,
    ) -> Self {
        let audit = open_audit(&data_dir)
            .map_err(|error| tracing::warn!(%error, "cannot open audit.log; admin actions are refused until it opens"))
            .ok();
        Self {
            system: std::sync::OnceLock::new(),
            keys,
            data_dir,
            peers,
            ready: AtomicBool::new(false),
            directory: tokio::sync::Mutex::new(()),
            audit: Mutex::new(audit),
            sequence: AtomicU64::new(0),
            faults: std::sync::OnceLock::new(),
            deadlines: Default::default(),
            peers_network: std::sync::OnceLock::new(),
        }
    }

    pub fn enable_fault_injection(&self, faults: tandem_actors::WriteFaults) {
        let _ = self.faults.set(faults);
    }

    /// Recovery is done: serve with `system` from now on (its keys are attached already,
    /// see `serve.rs`).
    pub fn recovered(&self, system: Arc<AccountSystem>) {
        let _ = self.system.set(system);
        self.ready.store(true, Ordering::Release);
    }

    pub fn system(&self) -> Result<&Arc<AccountSystem>, OpError> {
        self.system.get().ok_or_else(OpError::recovering)
    }

    /// Forwards writes this node does not lead through `network` (a cluster member's).
    pub fn forward_through(&self, network: tandem_replication::GrpcNetwork) {
        let _ = self.peers_network.set(network);
    }

    /// On a cluster member that does not lead, catches up with the leader (a read index
    /// the leader confirms, then applied here), so that a lookup which found nothing can be
    /// asked again: this node may only lag. Answers whether it did; a single node and the
    /// leader have nothing to catch up with.
    pub(crate) async fn caught_up(&self) -> Result<bool, OpError> {
        if self.peers.is_none() {
            return Ok(false);
        }
        let system = self.system()?;
        if system.leader() == tandem_actors::Leader::This {
            return Ok(false);
        }
        system.linearizable_read().await?;
        Ok(true)
    }

    /// Whether this cluster member has known no leader for longer than an election takes
    /// ([`LEADERLESS_AFTER`]): it can decide nothing, so `/readyz` answers 503 and an ISO
    /// 8583 echo 91, and networks and load balancers route around it. Never on a single node.
    pub fn leaderless(&self) -> bool {
        self.peers.is_some()
            && self
                .system()
                .ok()
                .and_then(|system| system.leaderless_for())
                .is_some_and(|how_long| how_long >= LEADERLESS_AFTER)
    }

    /// Where a write runs now (`ops::route`).
    pub(crate) fn route(&self) -> Result<crate::ops::Route, OpError> {
        let leader = match &self.peers {
            None => None,
            Some(_) => Some(self.system()?.leader()),
        };
        crate::ops::route(leader)
    }

    // ------------------------------------------------------------------ scope checks

    /// The actor a caller is on `account`: admins act as the platform, app keys as their
    /// member of their account only; network keys manage nothing.
    pub(crate) fn actor_for(
        &self,
        principal: &Principal,
        account: &AccountId,
    ) -> Result<Actor, OpError> {
        match principal.role {
            KeyRole::Admin => Ok(Actor::Platform),
            KeyRole::App => match (&principal.account, &principal.member) {
                (Some(own), Some(member)) if own == account => Ok(Actor::Member(member.clone())),
                _ => Err(OpError::forbidden(format!(
                    "this key acts for one member of one account, not for {account}"
                ))),
            },
            KeyRole::Network => Err(OpError::forbidden(
                "network keys send authorization traffic only",
            )),
        }
    }

    // ------------------------------------------------------------------ execution

    /// A key for a command whose effect is idempotent by content (PUTs, creations checked
    /// against state): unique per request.
    pub(crate) fn fresh_key(&self, kind: &str) -> IdempotencyKey {
        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        IdempotencyKey::new(&format!(
            "{kind}-{}-{n}",
            tandem_core::Timestamp::now().millis()
        ))
        .expect("generated keys are valid")
    }

    pub(crate) async fn execute(
        &self,
        principal: &Principal,
        account: &AccountId,
        key: IdempotencyKey,
        actor: Actor,
        body: CommandBody,
    ) -> Result<Outcome, OpError> {
        self.execute_with_pan(principal, account, Command::new(key, actor, body), None)
            .await
    }

    /// Decides `command` on this node's account system.
    pub(crate) async fn execute_here(
        &self,
        principal: &Principal,
        account: &AccountId,
        command: Command,
        pan_hash: Option<String>,
    ) -> Result<Outcome, OpError> {
        let Command {
            key,
            actor,
            body,
            references,
        } = command;
        let command_name = body.kind_name();
        let started = Instant::now();
        // Admin actions are recorded; card traffic is not an admin action even when an admin
        // key sends it (its record is the account's own history).
        if principal.role == KeyRole::Admin && !body.is_card_traffic() {
            self.audit(
                principal,
                command_name,
                serde_json::json!({"account_id": account.as_str(), "idempotency_key": key.as_str()}),
            )?;
        }
        let outcome = self
            .system()?
            .execute_with_pan(
                account,
                Command {
                    key,
                    actor,
                    body,
                    references,
                },
                pan_hash,
            )
            .await;
        metrics::histogram!("tandem_decision_seconds", "command" => command_name)
            .record(started.elapsed().as_secs_f64());
        let (label, reason) = match &outcome {
            Ok(Outcome::Approved { .. }) => ("approved", String::new()),
            Ok(Outcome::Declined { reason, .. }) => ("declined", snake(reason)),
            Ok(Outcome::Accepted { .. } | Outcome::Balances { .. }) => ("accepted", String::new()),
            Ok(Outcome::Rejected { reason }) => ("rejected", snake(reason)),
            Err(_) => ("error", String::new()),
        };
        metrics::counter!("tandem_decisions_total", "command" => command_name, "outcome" => label, "reason" => reason)
            .increment(1);
        Ok(outcome?)
    }

    /// Appends an admin action to `<data-dir>/audit.log` (one JSON line: time, key id,
    /// action, `detail`'s fields) before it is carried out. A line that cannot be written
    /// refuses the action (`storage_unavailable`): no admin action goes unrecorded.
    pub(crate) fn audit(
        &self,
        principal: &Principal,
        action: &str,
        detail: serde_json::Value,
    ) -> Result<(), OpError> {
        let mut line = serde_json::json!({
            "at_ms": tandem_core::Timestamp::now().millis(),
            "key_id": principal.key_id,
            "action": action,
        });
        if let (Some(line), serde_json::Value::Object(detail)) = (line.as_object_mut(), detail) {
            line.extend(detail);
        }
        tracing::info!(target: "tandem::audit", key_id = %principal.key_id, action, %line, "admin action");
        let unavailable = |e: std::io::Error| {
            OpError::unavailable(
                "storage_unavailable",
                format!("could not write the audit log, so the action was not carried out: {e}"),
            )
        };
        let mut audit = self.audit.lock().unwrap_or_else(|p| p.into_inner());
        if audit.is_none() {
            *audit = Some(open_audit(&self.data_dir).map_err(unavailable)?);
        }
        let file = audit.as_mut().expect("opened above");
        use std::io::Write;
        writeln!(file, "{line}").map_err(unavailable)
    }
}
