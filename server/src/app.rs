//! The operations both protocols serve. gRPC and HTTP handlers parse nothing themselves:
//! they pass the caller's [`Principal`] and a `tandem.v1` message here and render the answer.
//!
//! Order inside every operation: check the caller's scope, parse and validate, route to the
//! account, execute through the account system (answered only once durable), render. No
//! state is touched before the scope check passes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tandem_actors::AccountSystem;
use tandem_core::{
    Account, AccountId, Actor, AuthorizationId, CardId, Command, CommandBody, Currency, Event,
    IdempotencyKey, MemberId, Merchant, Outcome, RateTable, RejectReason, Spend,
};
use tandem_proto::v1 as pb;

use crate::convert::{self, id, snake};
use crate::keys::{KeyRole, KeyStore, Principal};
use crate::ops::OpError;
use crate::ops::card_traffic::{self, CardName};
pub use crate::ops::card_traffic::{lifecycle_account, lifecycle_id};

/// Account ids are at most this long, so an authorization id (`<account>:<16 hex>`) can embed
/// its account and route without any index.
pub const ACCOUNT_ID_BYTES_MAX: usize = 47;

/// Entries one page of the feed holds at most.
pub const ENTRIES_PAGE_MAX: u32 = 1_000;

pub struct App {
    system: std::sync::OnceLock<Arc<AccountSystem>>,
    pub keys: KeyStore,
    pub data_dir: PathBuf,
    /// Recovery is complete and the listeners are up.
    pub ready: AtomicBool,
    /// Serializes card issuance, so a card id or PAN is unique across accounts.
    directory: tokio::sync::Mutex<()>,
    audit: Mutex<Option<std::fs::File>>,
    sequence: AtomicU64,
    /// Set when the node was started with fault injection enabled.
    faults: std::sync::OnceLock<tandem_storage::WriteFaults>,
    /// Card traffic whose deadline passed and whose timeout mark is not durable yet.
    pub(crate) deadlines: crate::ops::deadline::Deadlines,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn key(text: &str) -> Result<IdempotencyKey, OpError> {
    id("idempotency_key", text, IdempotencyKey::new)
}

fn account_id(text: &str) -> Result<AccountId, OpError> {
    let account = id("account_id", text, AccountId::new)?;
    if text.len() > ACCOUNT_ID_BYTES_MAX {
        return Err(OpError::invalid(
            "account_id",
            format!("is at most {ACCOUNT_ID_BYTES_MAX} bytes"),
        ));
    }
    Ok(account)
}

fn member_id(text: &str) -> Result<MemberId, OpError> {
    id("member_id", text, MemberId::new)
}

fn card_id(field: &str, text: &str) -> Result<CardId, OpError> {
    id(field, text, CardId::new)
}

fn authorization_id(text: &str) -> Result<AuthorizationId, OpError> {
    id("authorization_id", text, AuthorizationId::new)
}

fn merchant(mcc: &str, country: &str, name: &str) -> Result<Merchant, OpError> {
    if name.len() > 64 {
        return Err(OpError::invalid("merchant_name", "is at most 64 bytes"));
    }
    Ok(Merchant {
        mcc: convert::mcc("mcc", mcc)?,
        country: convert::country("merchant_country", country)?,
        name: (!name.is_empty()).then(|| name.into()),
    })
}

/// A PAN: 12 to 19 digits.
fn pan(text: &str) -> Result<String, OpError> {
    if !(12..=19).contains(&text.len()) || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(OpError::invalid("pan", "must be 12 to 19 digits"));
    }
    Ok(text.to_owned())
}

/// The wire fields of a card spend, before parsing.
struct SpendFields<'a> {
    amount_minor: i64,
    currency: &'a str,
    mcc: &'a str,
    channel: &'a str,
    merchant_name: &'a str,
    merchant_country: &'a str,
}

fn spend(card: CardId, fields: SpendFields<'_>) -> Result<Spend, OpError> {
    Ok(Spend {
        card,
        amount: convert::amount(fields.amount_minor, fields.currency)?,
        cashback_minor: 0,
        kind: tandem_core::SpendKind::Purchase,
        merchant: merchant(fields.mcc, fields.merchant_country, fields.merchant_name)?,
        channel: convert::channel(fields.channel)?,
        presented_expiry: None,
        partial_allowed: false,
    })
}

pub fn result(outcome: &Outcome) -> pb::CommandResult {
    let (status, reason, balance) = match outcome {
        Outcome::Approved {
            approved,
            requested,
            balance,
            ..
        } => (
            if approved.amount_minor < requested.amount_minor {
                "partially_approved"
            } else {
                "approved"
            },
            String::new(),
            Some(*balance),
        ),
        Outcome::Declined { reason, balance } => ("declined", snake(reason), *balance),
        Outcome::Accepted { balance } => ("accepted", String::new(), *balance),
        Outcome::Rejected { reason } => ("rejected", snake(reason), None),
        Outcome::Balances { balances } => ("accepted", String::new(), balances.first().copied()),
    };
    pb::CommandResult {
        status: status.to_owned(),
        response_code: outcome.response_code().as_str().to_owned(),
        reason,
        balance: balance.as_ref().map(convert::balance),
    }
}

/// The answer to card traffic; `authorization` is the lifecycle (none for an unknown card).
fn authorize_response(
    authorization: Option<&AuthorizationId>,
    outcome: &Outcome,
) -> pb::AuthorizeResponse {
    let summary = result(outcome);
    let (approved_amount_minor, approval_code) = match outcome {
        Outcome::Approved {
            approved,
            approval_code,
            ..
        } => (approved.amount_minor, approval_code.as_str().to_owned()),
        _ => (0, String::new()),
    };
    pb::AuthorizeResponse {
        authorization_id: authorization.map(ToString::to_string).unwrap_or_default(),
        status: summary.status,
        approved_amount_minor,
        response_code: summary.response_code,
        decline_reason: summary.reason,
        approval_code,
        balance: summary.balance,
    }
}

/// A management command's answer: accepted, or the refusal as an error.
fn accepted(outcome: Outcome) -> Result<pb::CommandResult, OpError> {
    match outcome {
        Outcome::Rejected { reason } => Err(OpError::rejected(reason)),
        other => Ok(result(&other)),
    }
}

impl App {
    /// An app whose account system is not up yet: every call answers "recovering" until
    /// [`App::recovered`] hands it over.
    pub fn new(keys: KeyStore, data_dir: PathBuf) -> Self {
        let audit = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.join("audit.log"))
            .map_err(|error| tracing::warn!(%error, "cannot open audit.log; admin actions will be logged only"))
            .ok();
        Self {
            system: std::sync::OnceLock::new(),
            keys,
            data_dir,
            ready: AtomicBool::new(false),
            directory: tokio::sync::Mutex::new(()),
            audit: Mutex::new(audit),
            sequence: AtomicU64::new(0),
            faults: std::sync::OnceLock::new(),
            deadlines: Default::default(),
        }
    }

    pub fn enable_fault_injection(&self, faults: tandem_storage::WriteFaults) {
        let _ = self.faults.set(faults);
    }

    /// Sets the faults in force, when enabled at start: log writes fail as on a full disk,
    /// and each waits `commit_delay_ms` first (a slow disk).
    pub fn set_faults(
        &self,
        principal: &Principal,
        full: bool,
        commit_delay_ms: u64,
    ) -> Result<(), OpError> {
        self.admin_only(principal, "fault injection")?;
        let faults = self.faults.get().ok_or_else(|| {
            OpError::forbidden("fault injection is not enabled on this node (--fault-injection)")
        })?;
        faults.fail_with_no_space(full);
        faults.delay_writes(std::time::Duration::from_millis(commit_delay_ms));
        tracing::warn!(target: "tandem::audit", key_id = %principal.key_id, full, commit_delay_ms, "faults set");
        Ok(())
    }

    /// Recovery is done: serve with `system` from now on.
    pub fn recovered(&self, system: Arc<AccountSystem>) {
        let _ = self.system.set(system);
        self.ready.store(true, Ordering::Release);
    }

    pub fn system(&self) -> Result<&Arc<AccountSystem>, OpError> {
        self.system.get().ok_or_else(|| {
            OpError::unavailable("recovering", "the node is still recovering; retry shortly")
        })
    }

    // ------------------------------------------------------------------ scope checks

    /// The actor a caller is on `account`: admins act as the platform, app keys as their
    /// member of their account only; network keys manage nothing.
    fn actor_for(&self, principal: &Principal, account: &AccountId) -> Result<Actor, OpError> {
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

    fn admin_only(&self, principal: &Principal, what: &str) -> Result<(), OpError> {
        if principal.role == KeyRole::Admin {
            Ok(())
        } else {
            Err(OpError::forbidden(format!("{what} needs an admin key")))
        }
    }

    fn may_read(&self, principal: &Principal, account: &AccountId) -> Result<(), OpError> {
        match principal.role {
            KeyRole::Admin => Ok(()),
            KeyRole::App if principal.account.as_ref() == Some(account) => Ok(()),
            _ => Err(OpError::forbidden(format!(
                "this key may not read account {account}"
            ))),
        }
    }

    // ------------------------------------------------------------------ execution

    /// A key for a command whose effect is idempotent by content (PUTs, creations checked
    /// against state): unique per request.
    fn fresh_key(&self, kind: &str) -> IdempotencyKey {
        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        IdempotencyKey::new(&format!("{kind}-{}-{n}", now_ms())).expect("generated keys are valid")
    }

    pub(crate) async fn execute(
        &self,
        principal: &Principal,
        account: &AccountId,
        key: IdempotencyKey,
        actor: Actor,
        body: CommandBody,
    ) -> Result<Outcome, OpError> {
        let command_name = body.kind_name();
        let started = Instant::now();
        // Admin actions are recorded; card traffic is not an admin action even when an admin
        // key sends it (its record is the account's own history).
        if principal.role == KeyRole::Admin && !body.is_card_traffic() {
            self.audit(principal, command_name, account, &key);
        }
        let outcome = match crate::ops::route(account) {
            crate::ops::Route::Here => {
                self.system()?
                    .execute(account, Command { key, actor, body })
                    .await
            }
        };
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

    /// A management command with a fresh key: accepted, or the refusal as an error.
    async fn manage(
        &self,
        principal: &Principal,
        account: &AccountId,
        actor: Actor,
        kind: &str,
        body: CommandBody,
    ) -> Result<pb::CommandResult, OpError> {
        let outcome = self
            .execute(principal, account, self.fresh_key(kind), actor, body)
            .await?;
        accepted(outcome)
    }

    fn audit(
        &self,
        principal: &Principal,
        action: &str,
        account: &AccountId,
        key: &IdempotencyKey,
    ) {
        let line = serde_json::json!({
            "at_ms": now_ms(),
            "key_id": principal.key_id,
            "action": action,
            "account_id": account.as_str(),
            "idempotency_key": key.as_str(),
        });
        tracing::info!(target: "tandem::audit", key_id = %principal.key_id, action, account = %account, "admin action");
        let mut audit = self.audit.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(file) = audit.as_mut() {
            use std::io::Write;
            let _ = writeln!(file, "{line}");
        }
    }

    fn card_account(&self, card: &CardId) -> Result<Option<AccountId>, OpError> {
        self.system()?
            .card_account(card)
            .map_err(|e| OpError::internal(format!("card directory: {e}")))
    }

    async fn routed_card(&self, card: &CardId) -> Result<AccountId, OpError> {
        self.card_account(card)?
            .ok_or_else(|| OpError::not_found(format!("no card {card}")))
    }

    /// The account of a card a management request names, and who acts on it, for
    /// `principal`. The key's scope is checked before the card is looked up (network keys
    /// manage nothing), and a key of one account gets the same 403 whether the card is another
    /// account's or does not exist: it learns nothing about cards outside its account.
    async fn card_in_scope(
        &self,
        principal: &Principal,
        card: &CardId,
    ) -> Result<(AccountId, Actor), OpError> {
        match principal.role {
            KeyRole::Admin => {
                let account = self.routed_card(card).await?;
                Ok((account, Actor::Platform))
            }
            KeyRole::App => match self.card_account(card)? {
                Some(account) if principal.account.as_ref() == Some(&account) => {
                    let actor = self.actor_for(principal, &account)?;
                    Ok((account, actor))
                }
                _ => Err(OpError::forbidden(format!(
                    "this key acts for one member of one account; card {card} is not one of its cards"
                ))),
            },
            KeyRole::Network => Err(OpError::forbidden(
                "network keys send authorization traffic only",
            )),
        }
    }

    /// The committed account as sled holds it (for holds, positions and checks).
    async fn committed(&self, account: &AccountId) -> Result<Account, OpError> {
        self.system()?
            .committed_account(account)
            .await
            .map_err(|e| OpError::internal(format!("could not load the account: {e}")))
    }

    async fn existing(&self, account: &AccountId) -> Result<Account, OpError> {
        let state = self.committed(account).await?;
        if state.status == tandem_core::AccountStatus::Unopened {
            return Err(OpError::not_found(format!("no account {account}")));
        }
        Ok(state)
    }

    // ------------------------------------------------------------------ accounts

    pub async fn open_account(
        &self,
        principal: &Principal,
        request: pb::OpenAccountRequest,
    ) -> Result<pb::Created, OpError> {
        self.admin_only(principal, "opening an account")?;
        let account = account_id(&request.account_id)?;
        let kind = convert::account_kind(&request.kind)?;
        let outcome = self
            .execute(
                principal,
                &account,
                self.fresh_key("open"),
                Actor::Platform,
                CommandBody::OpenAccount { kind },
            )
            .await?;
        if let Outcome::Rejected {
            reason: RejectReason::AccountAlreadyOpen,
        } = outcome
        {
            let existing = self.system()?.snapshot(&account).await?;
            if existing.kind != kind {
                return Err(OpError::conflict(
                    "account_exists",
                    format!(
                        "account {account} exists as a {} account",
                        snake(&existing.kind)
                    ),
                ));
            }
            return Ok(pb::Created {
                id: account.to_string(),
                result: Some(result(&Outcome::Accepted { balance: None })),
            });
        }
        Ok(pb::Created {
            id: account.to_string(),
            result: Some(accepted(outcome)?),
        })
    }

    pub async fn add_member(
        &self,
        principal: &Principal,
        request: pb::MemberRequest,
    ) -> Result<pb::Created, OpError> {
        let account = account_id(&request.account_id)?;
        let actor = self.actor_for(principal, &account)?;
        let member = member_id(&request.member_id)?;
        let role = convert::role(&request.role)?;
        let outcome = self
            .execute(
                principal,
                &account,
                self.fresh_key("member"),
                actor,
                CommandBody::AddMember {
                    member: member.clone(),
                    role,
                },
            )
            .await?;
        if let Outcome::Rejected {
            reason: RejectReason::MemberExists,
        } = outcome
        {
            let existing = self.system()?.snapshot(&account).await?;
            let same = existing
                .members
                .iter()
                .any(|m| m.member == member && m.role == role);
            if !same {
                return Err(OpError::conflict(
                    "member_exists",
                    format!("member {member} exists with another role"),
                ));
            }
            return Ok(pb::Created {
                id: member.to_string(),
                result: Some(result(&Outcome::Accepted { balance: None })),
            });
        }
        Ok(pb::Created {
            id: member.to_string(),
            result: Some(accepted(outcome)?),
        })
    }

    pub async fn update_member(
        &self,
        principal: &Principal,
        request: pb::MemberRequest,
    ) -> Result<pb::CommandResult, OpError> {
        let account = account_id(&request.account_id)?;
        let actor = self.actor_for(principal, &account)?;
        let member = member_id(&request.member_id)?;
        let role = convert::role(&request.role)?;
        self.manage(
            principal,
            &account,
            actor,
            "role",
            CommandBody::UpdateMember { member, role },
        )
        .await
    }

    pub async fn remove_member(
        &self,
        principal: &Principal,
        request: pb::RemoveMemberRequest,
    ) -> Result<pb::CommandResult, OpError> {
        let account = account_id(&request.account_id)?;
        let actor = self.actor_for(principal, &account)?;
        let member = member_id(&request.member_id)?;
        self.manage(
            principal,
            &account,
            actor,
            "remove",
            CommandBody::RemoveMember { member },
        )
        .await
    }

    /// Checks that `card` (and `pan`, hashed) are free or already this account's card.
    /// Answers the PAN hash and whether the card already exists here.
    async fn claim_card(
        &self,
        account: &AccountId,
        card: &CardId,
        pan: Option<&str>,
    ) -> Result<(Option<String>, bool), OpError> {
        let exists_here = match self.card_account(card)? {
            Some(owner) if &owner == account => true,
            Some(_) => {
                return Err(OpError::conflict(
                    "card_exists",
                    format!("card id {card} belongs to another account"),
                ));
            }
            None => false,
        };
        let hash = match pan {
            Some(pan) => {
                let hash = self.system()?.hash_pan(pan);
                match self
                    .system()?
                    .pan_card(&hash)
                    .map_err(|e| OpError::internal(format!("PAN directory: {e}")))?
                {
                    Some((owner, owned)) if &owner == account && &owned == card => {}
                    Some(_) => {
                        return Err(OpError::conflict(
                            "pan_exists",
                            "this PAN belongs to another card",
                        ));
                    }
                    None => {}
                }
                Some(hash)
            }
            None => None,
        };
        Ok((hash, exists_here))
    }

    /// Records the PAN directory entry for a card that exists.
    async fn link_pan(
        &self,
        account: &AccountId,
        card: &CardId,
        hash: String,
    ) -> Result<(), OpError> {
        match self.system()?.link_pan(account, card, hash).await {
            Ok(()) => Ok(()),
            Err(tandem_storage::CommitError::ShuttingDown) => Err(OpError::unavailable(
                "shutting_down",
                "the server is stopping",
            )),
            Err(error) => Err(OpError::unavailable(
                "log_unavailable",
                format!("the card exists but its PAN could not be recorded ({error}); retry"),
            )),
        }
    }

    pub async fn issue_card(
        &self,
        principal: &Principal,
        request: pb::IssueCardRequest,
    ) -> Result<pb::Created, OpError> {
        let account = account_id(&request.account_id)?;
        let actor = self.actor_for(principal, &account)?;
        let card = card_id("card_id", &request.card_id)?;
        let member = member_id(&request.member_id)?;
        let pan = (!request.pan.is_empty())
            .then(|| pan(&request.pan))
            .transpose()?;
        let expiry = convert::expiry(&request.expiry, now_ms())?;
        let _directory = self.directory.lock().await;
        let (hash, exists_here) = self.claim_card(&account, &card, pan.as_deref()).await?;
        let outcome = if exists_here {
            let state = self.existing(&account).await?;
            let same = state.cards.get(&card).is_some_and(|c| c.member == member);
            if !same {
                return Err(OpError::conflict(
                    "card_exists",
                    format!("card {card} exists for another member"),
                ));
            }
            Outcome::Accepted { balance: None }
        } else {
            self.execute(
                principal,
                &account,
                self.fresh_key("card"),
                actor,
                CommandBody::IssueCard {
                    card: card.clone(),
                    member,
                    expiry,
                },
            )
            .await?
        };
        let result = accepted(outcome)?;
        if let Some(hash) = hash {
            self.link_pan(&account, &card, hash).await?;
        }
        Ok(pb::Created {
            id: card.to_string(),
            result: Some(result),
        })
    }

    pub async fn replace_card(
        &self,
        principal: &Principal,
        request: pb::ReplaceCardRequest,
    ) -> Result<pb::Created, OpError> {
        let card = card_id("card_id", &request.card_id)?;
        let new_card = card_id("new_card_id", &request.new_card_id)?;
        let pan = (!request.pan.is_empty())
            .then(|| pan(&request.pan))
            .transpose()?;
        let expiry = convert::expiry(&request.expiry, now_ms())?;
        let (account, actor) = self.card_in_scope(principal, &card).await?;
        let _directory = self.directory.lock().await;
        let (hash, exists_here) = self.claim_card(&account, &new_card, pan.as_deref()).await?;
        if exists_here {
            return Err(OpError::conflict(
                "card_exists",
                format!("card {new_card} exists already"),
            ));
        }
        let outcome = self
            .execute(
                principal,
                &account,
                self.fresh_key("replace"),
                actor,
                CommandBody::ReplaceCard {
                    card,
                    new_card: new_card.clone(),
                    expiry,
                },
            )
            .await?;
        let result = accepted(outcome)?;
        if let Some(hash) = hash {
            self.link_pan(&account, &new_card, hash).await?;
        }
        Ok(pb::Created {
            id: new_card.to_string(),
            result: Some(result),
        })
    }

    pub async fn set_card_status(
        &self,
        principal: &Principal,
        request: pb::CardStatusRequest,
    ) -> Result<pb::CommandResult, OpError> {
        let card = card_id("card_id", &request.card_id)?;
        let status = convert::card_status(&request.status)?;
        let (account, actor) = self.card_in_scope(principal, &card).await?;
        self.manage(
            principal,
            &account,
            actor,
            "status",
            CommandBody::SetCardStatus { card, status },
        )
        .await
    }

    pub async fn set_member_controls(
        &self,
        principal: &Principal,
        request: pb::MemberControlsRequest,
    ) -> Result<pb::CommandResult, OpError> {
        let account = account_id(&request.account_id)?;
        let actor = self.actor_for(principal, &account)?;
        let member = member_id(&request.member_id)?;
        let controls = convert::controls(&request.controls.unwrap_or_default())?;
        self.manage(
            principal,
            &account,
            actor,
            "controls",
            CommandBody::SetMemberControls { member, controls },
        )
        .await
    }

    pub async fn set_card_controls(
        &self,
        principal: &Principal,
        request: pb::CardControlsRequest,
    ) -> Result<pb::CommandResult, OpError> {
        let card = card_id("card_id", &request.card_id)?;
        let controls = convert::controls(&request.controls.unwrap_or_default())?;
        let (account, actor) = self.card_in_scope(principal, &card).await?;
        self.manage(
            principal,
            &account,
            actor,
            "controls",
            CommandBody::SetCardControls { card, controls },
        )
        .await
    }

    pub async fn set_split_rule(
        &self,
        principal: &Principal,
        request: pb::SplitRuleRequest,
    ) -> Result<pb::CommandResult, OpError> {
        use tandem_core::SplitRule;
        let account = account_id(&request.account_id)?;
        let actor = self.actor_for(principal, &account)?;
        let rule = match request.rule.as_str() {
            "payer_pays" => SplitRule::PayerPays,
            "equal" => SplitRule::Equal,
            "weighted" => SplitRule::Weighted {
                weights: request
                    .weights
                    .iter()
                    .map(|w| Ok((member_id(&w.member_id)?, w.weight)))
                    .collect::<Result<_, OpError>>()?,
            },
            other => {
                return Err(OpError::invalid(
                    "rule",
                    format!("must be one of payer_pays, equal, weighted, got {other:?}"),
                ));
            }
        };
        self.manage(
            principal,
            &account,
            actor,
            "split",
            CommandBody::SetSplitRule { rule },
        )
        .await
    }

    pub async fn set_funding_policy(
        &self,
        principal: &Principal,
        request: pb::FundingPolicyRequest,
    ) -> Result<pb::CommandResult, OpError> {
        use tandem_core::FundingPolicy;
        let account = account_id(&request.account_id)?;
        let actor = self.actor_for(principal, &account)?;
        let policy = match request.policy.as_str() {
            "largest_available_first" => FundingPolicy::LargestAvailableFirst,
            "priority" => FundingPolicy::Priority {
                currencies: request
                    .currencies
                    .iter()
                    .map(|c| convert::currency("currencies", c))
                    .collect::<Result<_, _>>()?,
            },
            other => {
                return Err(OpError::invalid(
                    "policy",
                    format!("must be largest_available_first or priority, got {other:?}"),
                ));
            }
        };
        self.manage(
            principal,
            &account,
            actor,
            "funding",
            CommandBody::SetFundingPolicy { policy },
        )
        .await
    }

    pub async fn deposit(
        &self,
        principal: &Principal,
        request: pb::MoneyRequest,
    ) -> Result<pb::CommandResult, OpError> {
        let account = account_id(&request.account_id)?;
        self.admin_only(principal, "a deposit (money arriving from outside)")?;
        let key = key(&request.idempotency_key)?;
        let member = member_id(&request.member_id)?;
        let amount = convert::amount(request.amount_minor, &request.currency)?;
        let outcome = self
            .execute(
                principal,
                &account,
                key,
                Actor::Platform,
                CommandBody::Deposit { member, amount },
            )
            .await?;
        accepted(outcome)
    }

    pub async fn withdraw(
        &self,
        principal: &Principal,
        request: pb::MoneyRequest,
    ) -> Result<pb::WithdrawalResponse, OpError> {
        let account = account_id(&request.account_id)?;
        let actor = self.actor_for(principal, &account)?;
        let key = key(&request.idempotency_key)?;
        let member = member_id(&request.member_id)?;
        let amount = convert::amount(request.amount_minor, &request.currency)?;
        let withdrawal = lifecycle_id(&account, &key);
        let outcome = self
            .execute(
                principal,
                &account,
                key,
                actor,
                CommandBody::Withdraw {
                    withdrawal: withdrawal.clone(),
                    member,
                    amount,
                },
            )
            .await?;
        if let Outcome::Rejected { reason } = outcome {
            return Err(OpError::rejected(reason));
        }
        Ok(pb::WithdrawalResponse {
            withdrawal_id: withdrawal.to_string(),
            result: Some(result(&outcome)),
        })
    }

    pub async fn set_rates(
        &self,
        principal: &Principal,
        request: pb::SetRatesRequest,
    ) -> Result<pb::CommandResult, OpError> {
        self.admin_only(principal, "setting FX rates")?;
        let table = rates_table(&request)?;
        let bytes =
            serde_json::to_vec_pretty(&request).map_err(|e| OpError::internal(e.to_string()))?;
        crate::keys::write_private(&self.data_dir.join("fx-rates.json"), &bytes).map_err(|e| {
            OpError::unavailable(
                "storage_unavailable",
                format!("could not save the rates: {e}"),
            )
        })?;
        self.system()?.set_rates(table);
        tracing::info!(target: "tandem::audit", key_id = %principal.key_id, base = %request.base, count = request.rates.len(), "FX rates set");
        Ok(result(&Outcome::Accepted { balance: None }))
    }

    // ------------------------------------------------------------------ card traffic
    //
    // The API's card traffic (gRPC unary, the processor stream, HTTP): each method reads its
    // `tandem.v1` request into core types and calls `ops::card_traffic`, as the ISO 8583
    // gateway does with its messages.

    pub async fn authorize(
        &self,
        principal: &Principal,
        request: pb::AuthorizeRequest,
    ) -> Result<pb::AuthorizeResponse, OpError> {
        card_traffic::may_send(principal)?;
        let key = key(&request.idempotency_key)?;
        let card = card_id("card_id", &request.card_id)?;
        let mut spend = spend(
            card.clone(),
            SpendFields {
                amount_minor: request.amount_minor,
                currency: &request.currency,
                mcc: &request.mcc,
                channel: &request.channel,
                merchant_name: &request.merchant_name,
                merchant_country: &request.merchant_country,
            },
        )?;
        spend.kind = convert::spend_kind(&request.kind)?;
        spend.partial_allowed = request.partial_allowed;
        spend.cashback_minor = request.cashback_minor;
        let Some((account, _)) = self.find_card(principal, CardName::Id(&card))? else {
            return Ok(authorize_response(None, &card_traffic::unknown_card()));
        };
        let authorization = lifecycle_id(&account, &key);
        let body = CommandBody::Authorize {
            authorization: authorization.clone(),
            spend,
            single_message: request.single_message,
        };
        let outcome = self.card_traffic(principal, &account, key, body).await?;
        Ok(authorize_response(Some(&authorization), &outcome))
    }

    /// Traffic on a lifecycle Tandem named: its id carries the account.
    async fn lifecycle_traffic(
        &self,
        principal: &Principal,
        key: IdempotencyKey,
        body: CommandBody,
    ) -> Result<pb::AuthorizeResponse, OpError> {
        let authorization = body
            .authorization()
            .cloned()
            .expect("lifecycle traffic names its lifecycle");
        let account = lifecycle_account(&authorization)?;
        let outcome = self.card_traffic(principal, &account, key, body).await?;
        Ok(authorize_response(Some(&authorization), &outcome))
    }

    pub async fn increment(
        &self,
        principal: &Principal,
        request: pb::IncrementRequest,
    ) -> Result<pb::AuthorizeResponse, OpError> {
        card_traffic::may_send(principal)?;
        let key = key(&request.idempotency_key)?;
        let authorization = authorization_id(&request.authorization_id)?;
        let amount = convert::amount(request.amount_minor, &request.currency)?;
        let body = CommandBody::Increment {
            authorization,
            amount,
        };
        self.lifecycle_traffic(principal, key, body).await
    }

    pub async fn reverse(
        &self,
        principal: &Principal,
        request: pb::ReverseRequest,
    ) -> Result<pb::AuthorizeResponse, OpError> {
        card_traffic::may_send(principal)?;
        let key = key(&request.idempotency_key)?;
        let authorization = authorization_id(&request.authorization_id)?;
        lifecycle_account(&authorization)?;
        let replacement = match request.amount_minor {
            None | Some(0) => None,
            Some(amount) => Some(convert::amount(amount, &request.currency)?),
        };
        let body = CommandBody::Reverse {
            authorization,
            replacement,
        };
        self.lifecycle_traffic(principal, key, body).await
    }

    /// A posting's spend, filling what the request leaves out from the lifecycle it names.
    async fn posting_spend(
        &self,
        account: &AccountId,
        authorization: Option<&AuthorizationId>,
        request: &pb::PostingRequest,
    ) -> Result<Spend, OpError> {
        let mut card = request.card_id.clone();
        let mut mcc = request.mcc.clone();
        let mut channel = request.channel.clone();
        let mut currency = request.currency.clone();
        let mut name = request.merchant_name.clone();
        let mut country = request.merchant_country.clone();
        if let Some(authorization) = authorization
            && (card.is_empty() || mcc.is_empty() || channel.is_empty() || currency.is_empty())
        {
            let state = self.committed(account).await?;
            if let Some(lifecycle) = state.authorizations.get(authorization) {
                if card.is_empty()
                    && let Some(c) = &lifecycle.card
                {
                    card = c.to_string();
                }
                if let Some(m) = &lifecycle.merchant {
                    if mcc.is_empty() {
                        mcc = format!("{:04}", m.mcc.code());
                    }
                    if name.is_empty()
                        && let Some(n) = &m.name
                    {
                        name = n.to_string();
                    }
                    if country.is_empty()
                        && let Some(c) = &m.country
                    {
                        country = c.as_str().to_owned();
                    }
                }
                if channel.is_empty()
                    && let Some(c) = lifecycle.channel
                {
                    channel = snake(&c);
                }
                if currency.is_empty() {
                    currency = lifecycle.spend_currency().alpha().to_owned();
                }
            }
        }
        if channel.is_empty() {
            channel = "chip".to_owned();
        }
        let card = card_id("card_id", &card)?;
        spend(
            card,
            SpendFields {
                amount_minor: request.amount_minor,
                currency: &currency,
                mcc: &mcc,
                channel: &channel,
                merchant_name: &name,
                merchant_country: &country,
            },
        )
    }

    pub async fn clear(
        &self,
        principal: &Principal,
        request: pb::PostingRequest,
    ) -> Result<pb::AuthorizeResponse, OpError> {
        card_traffic::may_send(principal)?;
        let key = key(&request.idempotency_key)?;
        let authorization = authorization_id(&request.authorization_id)?;
        let account = lifecycle_account(&authorization)?;
        let spend = self
            .posting_spend(&account, Some(&authorization), &request)
            .await?;
        let body = CommandBody::Clear {
            authorization,
            spend,
            final_clearing: request.r#final,
        };
        self.lifecycle_traffic(principal, key, body).await
    }

    /// Advices, force posts and refunds route by card; their lifecycle is the one named, or
    /// one derived from the key. `fill_from` is the lifecycle whose card and merchant fill
    /// what the request leaves out (the posting's own by default). `None` for an unknown card.
    async fn card_posting(
        &self,
        principal: &Principal,
        request: &pb::PostingRequest,
        fill_from: Option<&AuthorizationId>,
    ) -> Result<Option<(AccountId, IdempotencyKey, AuthorizationId, Spend)>, OpError> {
        card_traffic::may_send(principal)?;
        let key = key(&request.idempotency_key)?;
        let card = card_id("card_id", &request.card_id)?;
        let Some((account, _)) = self.find_card(principal, CardName::Id(&card))? else {
            return Ok(None);
        };
        let authorization = if request.authorization_id.is_empty() {
            lifecycle_id(&account, &key)
        } else {
            authorization_id(&request.authorization_id)?
        };
        let spend = self
            .posting_spend(&account, Some(fill_from.unwrap_or(&authorization)), request)
            .await?;
        Ok(Some((account, key, authorization, spend)))
    }

    /// Answers a posting by card: `body` builds its command from the lifecycle and spend.
    async fn answer_posting(
        &self,
        principal: &Principal,
        request: &pb::PostingRequest,
        fill_from: Option<&AuthorizationId>,
        body: impl FnOnce(AuthorizationId, Spend) -> CommandBody,
    ) -> Result<pb::AuthorizeResponse, OpError> {
        let Some((account, key, authorization, spend)) =
            self.card_posting(principal, request, fill_from).await?
        else {
            return Err(OpError::not_found(format!("no card {}", request.card_id)));
        };
        let outcome = self
            .card_traffic(principal, &account, key, body(authorization.clone(), spend))
            .await?;
        Ok(authorize_response(Some(&authorization), &outcome))
    }

    pub async fn advise(
        &self,
        principal: &Principal,
        request: pb::PostingRequest,
    ) -> Result<pb::AuthorizeResponse, OpError> {
        let network_approved = request.network_approved;
        self.answer_posting(principal, &request, None, |authorization, spend| {
            CommandBody::Advise {
                authorization,
                spend,
                network_approved,
            }
        })
        .await
    }

    pub async fn force_post(
        &self,
        principal: &Principal,
        request: pb::PostingRequest,
    ) -> Result<pb::AuthorizeResponse, OpError> {
        self.answer_posting(principal, &request, None, |authorization, spend| {
            CommandBody::ForcePost {
                authorization,
                spend,
            }
        })
        .await
    }

    pub async fn refund(
        &self,
        principal: &Principal,
        request: pb::PostingRequest,
    ) -> Result<pb::AuthorizeResponse, OpError> {
        let mut request = request;
        let original = (!request.original_authorization_id.is_empty())
            .then(|| authorization_id(&request.original_authorization_id))
            .transpose()?;
        // The refund is its own lifecycle; it borrows the original's card and merchant.
        request.authorization_id.clear();
        let fill_from = original.clone();
        self.answer_posting(principal, &request, fill_from.as_ref(), |refund, spend| {
            CommandBody::Refund {
                refund,
                spend,
                original,
            }
        })
        .await
    }

    pub async fn balance_inquiry(
        &self,
        principal: &Principal,
        request: pb::BalanceInquiryRequest,
    ) -> Result<pb::BalanceInquiryResponse, OpError> {
        card_traffic::may_send(principal)?;
        let key = key(&request.idempotency_key)?;
        let card = card_id("card_id", &request.card_id)?;
        let outcome = match self.find_card(principal, CardName::Id(&card))? {
            Some((account, card)) => {
                self.card_traffic(
                    principal,
                    &account,
                    key,
                    CommandBody::BalanceInquiry { card },
                )
                .await?
            }
            None => card_traffic::unknown_card(),
        };
        let balances = match &outcome {
            Outcome::Balances { balances } => balances.iter().map(convert::balance).collect(),
            _ => Vec::new(),
        };
        Ok(pb::BalanceInquiryResponse {
            response_code: outcome.response_code().as_str().to_owned(),
            balances,
        })
    }

    // ------------------------------------------------------------------ reads

    pub fn reader_account(&self, principal: &Principal, text: &str) -> Result<AccountId, OpError> {
        let account = account_id(text)?;
        self.may_read(principal, &account)?;
        Ok(account)
    }

    pub async fn balance(
        &self,
        principal: &Principal,
        request: pb::AccountRef,
    ) -> Result<pb::BalanceSnapshot, OpError> {
        let account = self.reader_account(principal, &request.account_id)?;
        let snapshot = self.system()?.snapshot(&account).await?;
        if snapshot.status == tandem_core::AccountStatus::Unopened {
            return Err(OpError::not_found(format!("no account {account}")));
        }
        Ok(convert::snapshot(&snapshot, String::new()))
    }

    pub async fn holds(
        &self,
        principal: &Principal,
        request: pb::AccountRef,
    ) -> Result<pb::Holds, OpError> {
        let account = self.reader_account(principal, &request.account_id)?;
        let state = self.existing(&account).await?;
        let mut holds: Vec<pb::Hold> = state
            .authorizations
            .values()
            .filter(|a| !a.legs.is_empty())
            .map(|a| pb::Hold {
                authorization_id: a.id.to_string(),
                card_id: a.card.as_ref().map(|c| c.to_string()).unwrap_or_default(),
                member_id: a.member.to_string(),
                state: snake(&a.state),
                requested: Some(convert::money(a.requested)),
                held: a.legs.iter().map(|l| convert::money(l.amount())).collect(),
                expires_at_ms: a.expires_at.0,
                merchant_name: a
                    .merchant
                    .as_ref()
                    .and_then(|m| m.name.as_ref())
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
                mcc: a
                    .merchant
                    .as_ref()
                    .map(|m| format!("{:04}", m.mcc.code()))
                    .unwrap_or_default(),
            })
            .collect();
        holds.sort_by(|a, b| a.authorization_id.cmp(&b.authorization_id));
        Ok(pb::Holds {
            account_id: account.to_string(),
            holds,
        })
    }

    pub async fn positions(
        &self,
        principal: &Principal,
        request: pb::AccountRef,
    ) -> Result<pb::Positions, OpError> {
        let account = self.reader_account(principal, &request.account_id)?;
        let state = self.existing(&account).await?;
        let positions = state
            .positions
            .iter()
            .map(|(member, by_currency)| pb::Position {
                member_id: member.to_string(),
                net: by_currency
                    .iter()
                    .map(|(currency, amount)| {
                        convert::money(tandem_core::Money::new(*amount, *currency))
                    })
                    .collect(),
            })
            .collect();
        let settle_up = state
            .settle_up()
            .into_iter()
            .map(|t| pb::Transfer {
                from_member_id: t.from.to_string(),
                to_member_id: t.to.to_string(),
                amount: Some(convert::money(t.amount)),
            })
            .collect();
        Ok(pb::Positions {
            account_id: account.to_string(),
            positions,
            settle_up,
        })
    }

    pub async fn entries(
        &self,
        principal: &Principal,
        request: pb::EntriesRequest,
    ) -> Result<pb::Entries, OpError> {
        let account = self.reader_account(principal, &request.account_id)?;
        let limit = match request.limit {
            0 => 100,
            n => n.min(ENTRIES_PAGE_MAX),
        } as usize;
        let (after_seq, after_index) = if request.after.is_empty() {
            (0, None)
        } else {
            let (seq, index) = request
                .after
                .split_once('-')
                .and_then(|(s, i)| Some((s.parse::<u64>().ok()?, i.parse::<usize>().ok()?)))
                .ok_or_else(|| {
                    OpError::invalid("after", "is a cursor like \"12-0\" from an earlier page")
                })?;
            (seq, Some(index))
        };
        let (entries, more) = self
            .system()?
            .each_committed_event(
                &account,
                after_seq,
                (Vec::new(), false),
                move |(entries, more), seq, event| {
                    let Event::Movement(movement) = event else {
                        return true;
                    };
                    for (index, entry) in movement.entries.iter().enumerate() {
                        if seq == after_seq && after_index.is_some_and(|after| index <= after) {
                            continue;
                        }
                        if entries.len() == limit {
                            *more = true;
                            return false;
                        }
                        entries.push(pb::PostedEntry {
                            id: format!("{seq}-{index}"),
                            seq,
                            at_ms: movement.at.0,
                            cause: snake(&movement.cause),
                            kind: snake(&entry.kind),
                            currency: entry.currency.alpha().to_owned(),
                            amount_minor: entry.amount_minor,
                            member_id: movement.member.to_string(),
                            authorization_id: movement
                                .authorization
                                .as_ref()
                                .map(|a| a.id.to_string())
                                .unwrap_or_default(),
                            shares: entry
                                .shares
                                .iter()
                                .map(|(member, amount)| pb::Share {
                                    member_id: member.to_string(),
                                    amount_minor: *amount,
                                })
                                .collect(),
                        });
                    }
                    true
                },
            )
            .await
            .map_err(|e| OpError::internal(format!("could not read the history: {e}")))?;
        let next = if more {
            entries.last().map(|e| e.id.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(pb::Entries {
            account_id: account.to_string(),
            entries,
            next,
        })
    }

    // ------------------------------------------------------------------ keys

    pub fn issue_key(
        &self,
        principal: &Principal,
        role: &str,
        account: &str,
        member: &str,
    ) -> Result<serde_json::Value, OpError> {
        self.admin_only(principal, "issuing API keys")?;
        let role: KeyRole = serde_json::from_value(serde_json::Value::String(role.to_owned()))
            .map_err(|_| OpError::invalid("role", "must be one of admin, network, app"))?;
        let (account, member) = match role {
            KeyRole::App => (Some(account_id(account)?), Some(member_id(member)?)),
            _ => {
                if !account.is_empty() || !member.is_empty() {
                    return Err(OpError::invalid(
                        "account_id",
                        "only app keys are scoped to an account and member",
                    ));
                }
                (None, None)
            }
        };
        let (id, token) = self
            .keys
            .issue(role, account.clone(), member.clone(), &principal.key_id)
            .map_err(|e| OpError::unavailable("storage_unavailable", e.to_string()))?;
        tracing::info!(target: "tandem::audit", key_id = %principal.key_id, issued = %id, role = ?role, "API key issued");
        Ok(serde_json::json!({
            "id": id,
            "token": token,
            "role": role,
            "account_id": account.map(|a| a.to_string()),
            "member_id": member.map(|m| m.to_string()),
        }))
    }

    pub fn revoke_key(&self, principal: &Principal, id: &str) -> Result<(), OpError> {
        self.admin_only(principal, "revoking API keys")?;
        match self.keys.revoke(id) {
            Ok(true) => {
                tracing::info!(target: "tandem::audit", key_id = %principal.key_id, revoked = %id, "API key revoked");
                Ok(())
            }
            Ok(false) => Err(OpError::not_found(format!("no API key {id}"))),
            Err(e) => Err(OpError::unavailable("storage_unavailable", e.to_string())),
        }
    }
}

/// Parses and checks a rate table.
pub fn rates_table(request: &pb::SetRatesRequest) -> Result<RateTable, OpError> {
    let base = convert::currency("base", &request.base)?;
    let mut rates: BTreeMap<Currency, rust_decimal::Decimal> = BTreeMap::new();
    for (code, text) in &request.rates {
        let currency = convert::currency("rates", code)?;
        let rate: rust_decimal::Decimal = text
            .parse()
            .map_err(|_| OpError::invalid("rates", format!("{code}: {text:?} is not a decimal")))?;
        rates.insert(currency, rate);
    }
    RateTable::new(base, rates).map_err(|e| OpError::invalid("rates", e))
}
