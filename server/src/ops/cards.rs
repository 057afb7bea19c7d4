//! Cards: issuing and replacing cards (with the card and PAN directories that keep card ids
//! and PANs unique across accounts), a card's status and its spending controls. A member's
//! own controls are account management (`accounts.rs`).
//!
//! Operations that name a card check the caller's scope before the card is looked up
//! (`App::card_in_scope`): a key of one account gets the same 403 whether the card is
//! another account's or does not exist.

use tandem_core::{
    AccountId, Actor, CardId, CardStatus, Command, CommandBody, Controls, MemberId, Outcome,
    YearMonth,
};

use super::OpError;
use super::accounts::accepted;
use super::forward::{Forwarded, forwarded_outcome};
use super::route::Route;
use crate::app::App;
use crate::keys::{KeyRole, Principal};

impl App {
    /// Issues `card` to `member`, with its PAN recorded (as a keyed hash) when given. The
    /// same card for the same member again is accepted; a card id or PAN another account or
    /// card holds is a conflict.
    pub async fn issue_card(
        &self,
        principal: &Principal,
        account: &AccountId,
        card: &CardId,
        member: MemberId,
        pan: Option<&str>,
        expiry: YearMonth,
    ) -> Result<Outcome, OpError> {
        let pan_hash = pan.map(|pan| self.pan_hash(pan)).transpose()?;
        match self.route()? {
            Route::Here => {
                self.issue_card_here(principal, account, card, member, pan_hash, expiry)
                    .await
            }
            Route::AtLeader { id, address } => {
                let operation = Forwarded::IssueCard {
                    account: account.clone(),
                    card: card.clone(),
                    member,
                    pan_hash,
                    expiry,
                };
                forwarded_outcome(self.forward(principal, id, &address, operation).await)
            }
        }
    }

    /// [`App::issue_card`] on the leader (or a single node), with the PAN hashed: the card
    /// and PAN directories are checked and written under one lock, on one node.
    pub(crate) async fn issue_card_here(
        &self,
        principal: &Principal,
        account: &AccountId,
        card: &CardId,
        member: MemberId,
        pan_hash: Option<String>,
        expiry: YearMonth,
    ) -> Result<Outcome, OpError> {
        let actor = self.actor_for(principal, account)?;
        let _directory = self.directory.lock().await;
        let (hash, exists_here) = self.claim_card(account, card, pan_hash).await?;
        let outcome = if exists_here {
            let state = self.existing(account).await?;
            let same = state.cards.get(card).is_some_and(|c| c.member == member);
            if !same {
                return Err(OpError::conflict(
                    "card_exists",
                    format!("card {card} exists for another member"),
                ));
            }
            Outcome::Accepted { balance: None }
        } else {
            let body = CommandBody::IssueCard {
                card: card.clone(),
                member,
                expiry,
            };
            let key = self.fresh_key("card");
            // The PAN's link is written with the card, in one log record.
            let command = Command::new(key, actor, body);
            let outcome = self
                .execute_with_pan(principal, account, command, hash)
                .await?;
            return accepted(outcome);
        };
        let outcome = accepted(outcome)?;
        // The card existed already (a repeat, or a card issued without its PAN): its link
        // is a record of its own.
        if let Some(hash) = hash {
            self.link_pan(account, card, hash).await?;
        }
        Ok(outcome)
    }

    /// Replaces `card` by `new_card` (same member and controls; the old card is closed).
    pub async fn replace_card(
        &self,
        principal: &Principal,
        card: CardId,
        new_card: &CardId,
        pan: Option<&str>,
        expiry: YearMonth,
    ) -> Result<Outcome, OpError> {
        let pan_hash = pan.map(|pan| self.pan_hash(pan)).transpose()?;
        match self.route()? {
            Route::Here => {
                self.replace_card_here(principal, card, new_card, pan_hash, expiry)
                    .await
            }
            Route::AtLeader { id, address } => {
                let operation = Forwarded::ReplaceCard {
                    card,
                    new_card: new_card.clone(),
                    pan_hash,
                    expiry,
                };
                forwarded_outcome(self.forward(principal, id, &address, operation).await)
            }
        }
    }

    /// [`App::replace_card`] on the leader (or a single node), with the PAN hashed.
    pub(crate) async fn replace_card_here(
        &self,
        principal: &Principal,
        card: CardId,
        new_card: &CardId,
        pan_hash: Option<String>,
        expiry: YearMonth,
    ) -> Result<Outcome, OpError> {
        let (account, actor) = self.card_in_scope(principal, &card).await?;
        let _directory = self.directory.lock().await;
        let (hash, exists_here) = self.claim_card(&account, new_card, pan_hash).await?;
        if exists_here {
            return Err(OpError::conflict(
                "card_exists",
                format!("card {new_card} exists already"),
            ));
        }
        let body = CommandBody::ReplaceCard {
            card,
            new_card: new_card.clone(),
            expiry,
        };
        let key = self.fresh_key("replace");
        // The new card's PAN link is written with the card, in one log record.
        let command = Command::new(key, actor, body);
        let outcome = self
            .execute_with_pan(principal, &account, command, hash)
            .await?;
        accepted(outcome)
    }

    pub async fn set_card_status(
        &self,
        principal: &Principal,
        card: CardId,
        status: CardStatus,
    ) -> Result<Outcome, OpError> {
        self.manage_card(principal, card, "status", |card| {
            CommandBody::SetCardStatus { card, status }
        })
        .await
    }

    pub async fn set_card_controls(
        &self,
        principal: &Principal,
        card: CardId,
        controls: Controls,
    ) -> Result<Outcome, OpError> {
        self.manage_card(principal, card, "controls", |card| {
            CommandBody::SetCardControls { card, controls }
        })
        .await
    }

    /// Executes the management command `body` builds for `card`, on the account and as the
    /// actor the card's scope finds (`card_in_scope`).
    async fn manage_card(
        &self,
        principal: &Principal,
        card: CardId,
        kind: &str,
        body: impl FnOnce(CardId) -> CommandBody,
    ) -> Result<Outcome, OpError> {
        let (account, actor) = self.card_in_scope(principal, &card).await?;
        self.manage_as(principal, &account, actor, kind, body(card))
            .await
    }

    /// The account of a card a management request names, and who acts on it, for
    /// `principal`. The key's scope is checked before the card is looked up (network keys
    /// manage nothing), and a key of one account gets the same 403 whether the card is
    /// another account's or does not exist: it learns nothing about cards outside its account.
    async fn card_in_scope(
        &self,
        principal: &Principal,
        card: &CardId,
    ) -> Result<(AccountId, Actor), OpError> {
        match principal.role {
            KeyRole::Admin => {
                let account = self
                    .card_account(card)
                    .await?
                    .ok_or_else(|| OpError::not_found(format!("no card {card}")))?;
                Ok((account, Actor::Platform))
            }
            KeyRole::App => match self.card_account(card).await? {
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

    async fn card_account(&self, card: &CardId) -> Result<Option<AccountId>, OpError> {
        let look_up = || async {
            self.system()?
                .card_account(card)
                .await
                .map_err(|e| OpError::internal(format!("card directory: {e}")))
        };
        match look_up().await? {
            None if self.caught_up().await? => look_up().await,
            found => Ok(found),
        }
    }

    /// Checks that `card` (and the PAN `pan_hash` stands for) are free or already this
    /// account's card. Answers the PAN hash and whether the card already exists here.
    async fn claim_card(
        &self,
        account: &AccountId,
        card: &CardId,
        pan_hash: Option<String>,
    ) -> Result<(Option<String>, bool), OpError> {
        let exists_here = match self.card_account(card).await? {
            Some(owner) if &owner == account => true,
            Some(_) => {
                return Err(OpError::conflict(
                    "card_exists",
                    format!("card id {card} belongs to another account"),
                ));
            }
            None => false,
        };
        let hash = match pan_hash {
            Some(hash) => {
                match self
                    .system()?
                    .pan_card(&hash)
                    .await
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
        // The one conversion every decision's error takes: busy, not_leader, shutting_down,
        // log_unavailable, each retryable.
        self.system()?
            .link_pan(account, card, hash)
            .await
            .map_err(OpError::from)
    }
}
