//! Accounts, members (and their spending controls), how spending splits and is funded, and
//! money in and out: the management operations on one account, whichever gateway asks.
//!
//! Each checks the caller's scope first (admins act as the platform, an app key as its
//! member of its own account only), then executes on the account. A management command the
//! account refuses is an [`OpError`] (`OpError::rejected`), not an outcome; creating calls
//! are idempotent by content: the same account or member again is accepted, other content is
//! a conflict.

use tandem_core::{
    AccountId, AccountKind, Actor, AuthorizationId, CommandBody, Controls, FundingPolicy,
    IdempotencyKey, MemberId, Money, Outcome, RejectReason, Role, SplitRule,
};

use super::OpError;
use super::card_traffic::lifecycle_id;
use crate::app::App;
use crate::keys::Principal;
use crate::names::snake;

pub use tandem_core::limits::ACCOUNT_ID_BYTES_MAX;

/// A management command's answer: accepted, or the refusal as an error.
pub fn accepted(outcome: Outcome) -> Result<Outcome, OpError> {
    match outcome {
        Outcome::Rejected { reason } => Err(OpError::rejected(reason)),
        other => Ok(other),
    }
}

/// What a repeated creating call was accepted as.
fn accepted_again() -> Outcome {
    Outcome::Accepted { balance: None }
}

impl App {
    /// Opens `account` (admins only). Opening it again with the same kind is accepted.
    pub async fn open_account(
        &self,
        principal: &Principal,
        account: &AccountId,
        kind: AccountKind,
    ) -> Result<Outcome, OpError> {
        self.admin_only(principal, "opening an account")?;
        // Whichever gateway asks: a longer id could not be embedded in its lifecycles' ids.
        if account.as_str().len() > ACCOUNT_ID_BYTES_MAX {
            return Err(OpError::invalid(
                "account_id",
                format!("is at most {ACCOUNT_ID_BYTES_MAX} bytes"),
            ));
        }
        let body = CommandBody::OpenAccount { kind };
        let outcome = self
            .execute(
                principal,
                account,
                self.fresh_key("open"),
                Actor::Platform,
                body,
            )
            .await?;
        if let Outcome::Rejected {
            reason: RejectReason::AccountAlreadyOpen,
        } = outcome
        {
            // Opened at the leader; a follower reads its kind once it has caught up.
            self.caught_up().await?;
            let existing = self.system()?.snapshot(account).await?;
            if existing.kind != kind {
                return Err(OpError::conflict(
                    "account_exists",
                    format!(
                        "account {account} exists as a {} account",
                        snake(&existing.kind)
                    ),
                ));
            }
            return Ok(accepted_again());
        }
        accepted(outcome)
    }

    /// Adds `member` with `role`. Adding the same member with the same role is accepted.
    pub async fn add_member(
        &self,
        principal: &Principal,
        account: &AccountId,
        member: &MemberId,
        role: Role,
    ) -> Result<Outcome, OpError> {
        let actor = self.actor_for(principal, account)?;
        let body = CommandBody::AddMember {
            member: member.clone(),
            role,
        };
        let outcome = self
            .execute(principal, account, self.fresh_key("member"), actor, body)
            .await?;
        if let Outcome::Rejected {
            reason: RejectReason::MemberExists,
        } = outcome
        {
            let existing = self.system()?.snapshot(account).await?;
            let same = existing
                .members
                .iter()
                .any(|m| &m.member == member && m.role == role);
            if !same {
                return Err(OpError::conflict(
                    "member_exists",
                    format!("member {member} exists with another role"),
                ));
            }
            return Ok(accepted_again());
        }
        accepted(outcome)
    }

    pub async fn update_member(
        &self,
        principal: &Principal,
        account: &AccountId,
        member: MemberId,
        role: Role,
    ) -> Result<Outcome, OpError> {
        let body = CommandBody::UpdateMember { member, role };
        self.manage(principal, account, "role", body).await
    }

    pub async fn remove_member(
        &self,
        principal: &Principal,
        account: &AccountId,
        member: MemberId,
    ) -> Result<Outcome, OpError> {
        let body = CommandBody::RemoveMember { member };
        self.manage(principal, account, "remove", body).await
    }

    pub async fn set_member_controls(
        &self,
        principal: &Principal,
        account: &AccountId,
        member: MemberId,
        controls: Controls,
    ) -> Result<Outcome, OpError> {
        let body = CommandBody::SetMemberControls { member, controls };
        self.manage(principal, account, "controls", body).await
    }

    pub async fn set_split_rule(
        &self,
        principal: &Principal,
        account: &AccountId,
        rule: SplitRule,
    ) -> Result<Outcome, OpError> {
        let body = CommandBody::SetSplitRule { rule };
        self.manage(principal, account, "split", body).await
    }

    pub async fn set_funding_policy(
        &self,
        principal: &Principal,
        account: &AccountId,
        policy: FundingPolicy,
    ) -> Result<Outcome, OpError> {
        let body = CommandBody::SetFundingPolicy { policy };
        self.manage(principal, account, "funding", body).await
    }

    /// Money arriving from outside, credited to `member` (admins only).
    pub async fn deposit(
        &self,
        principal: &Principal,
        account: &AccountId,
        key: IdempotencyKey,
        member: MemberId,
        amount: Money,
    ) -> Result<Outcome, OpError> {
        self.admin_only(principal, "a deposit (money arriving from outside)")?;
        let body = CommandBody::Deposit { member, amount };
        let outcome = self
            .execute(principal, account, key, Actor::Platform, body)
            .await?;
        accepted(outcome)
    }

    /// Money leaving for `member`: held until the withdrawal completes or is cancelled.
    /// Answers the withdrawal's id and its outcome.
    pub async fn withdraw(
        &self,
        principal: &Principal,
        account: &AccountId,
        key: IdempotencyKey,
        member: MemberId,
        amount: Money,
    ) -> Result<(AuthorizationId, Outcome), OpError> {
        let actor = self.actor_for(principal, account)?;
        let withdrawal = lifecycle_id(account, &key);
        let body = CommandBody::Withdraw {
            withdrawal: withdrawal.clone(),
            member,
            amount,
        };
        let outcome = self.execute(principal, account, key, actor, body).await?;
        Ok((withdrawal, accepted(outcome)?))
    }

    /// A management command by the caller's actor on `account`, with a fresh key.
    pub(crate) async fn manage(
        &self,
        principal: &Principal,
        account: &AccountId,
        kind: &str,
        body: CommandBody,
    ) -> Result<Outcome, OpError> {
        let actor = self.actor_for(principal, account)?;
        self.manage_as(principal, account, actor, kind, body).await
    }

    /// [`App::manage`] with the actor already known (card management finds it with the card).
    pub(crate) async fn manage_as(
        &self,
        principal: &Principal,
        account: &AccountId,
        actor: Actor,
        kind: &str,
        body: CommandBody,
    ) -> Result<Outcome, OpError> {
        let outcome = self
            .execute(principal, account, self.fresh_key(kind), actor, body)
            .await?;
        accepted(outcome)
    }
}
