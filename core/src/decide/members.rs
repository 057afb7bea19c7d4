//! Account management, members and cards: status, closing, members and roles, cards and
//! their status, member and card controls.

use super::*;

impl<'a> Decider<'a> {
    pub(super) fn set_account_status(
        &mut self,
        status: AccountStatus,
    ) -> Result<Outcome, DecideError> {
        if !matches!(status, AccountStatus::Active | AccountStatus::Frozen) {
            return Ok(rejected(RejectReason::NotPermitted));
        }
        if self.state.status != status {
            self.events.push(Event::AccountStatusChanged { status });
        }
        Ok(accepted())
    }

    pub(super) fn close_account(&mut self) -> Result<Outcome, DecideError> {
        if self.state.open_holds > 0 {
            return Ok(rejected(RejectReason::AccountHasOpenHolds));
        }
        if self.state.balances.values().any(|b| b.ledger_minor != 0) {
            return Ok(rejected(RejectReason::AccountHasBalance));
        }
        if self
            .state
            .positions
            .values()
            .flat_map(|p| p.values())
            .any(|v| *v != 0)
        {
            return Ok(rejected(RejectReason::MembersNotSettled));
        }
        self.events.push(Event::AccountStatusChanged {
            status: AccountStatus::Closed,
        });
        Ok(accepted())
    }

    pub(super) fn owners(&self) -> usize {
        self.state
            .members
            .values()
            .filter(|m| m.role == Role::Owner)
            .count()
    }

    pub(super) fn add_member(
        &mut self,
        member: &MemberId,
        role: Role,
    ) -> Result<Outcome, DecideError> {
        if self.state.members.contains_key(member) {
            return Ok(rejected(RejectReason::MemberExists));
        }
        if self.state.members.len() >= MEMBERS_PER_ACCOUNT_MAX {
            return Ok(rejected(RejectReason::TooManyMembers));
        }
        self.events.push(Event::MemberAdded {
            member: member.clone(),
            role,
        });
        Ok(accepted())
    }

    pub(super) fn update_member(
        &mut self,
        member: &MemberId,
        role: Role,
    ) -> Result<Outcome, DecideError> {
        let Some(current) = self.state.members.get(member) else {
            return Ok(rejected(RejectReason::UnknownMember));
        };
        if current.role == Role::Owner && role != Role::Owner && self.owners() == 1 {
            return Ok(rejected(RejectReason::LastOwner));
        }
        if current.role != role {
            self.events.push(Event::MemberRoleChanged {
                member: member.clone(),
                role,
            });
        }
        Ok(accepted())
    }

    pub(super) fn remove_member(&mut self, member: &MemberId) -> Result<Outcome, DecideError> {
        let Some(current) = self.state.members.get(member) else {
            return Ok(rejected(RejectReason::UnknownMember));
        };
        if current.role == Role::Owner && self.owners() == 1 {
            return Ok(rejected(RejectReason::LastOwner));
        }
        if self
            .state
            .positions
            .get(member)
            .is_some_and(|p| p.values().any(|v| *v != 0))
        {
            return Ok(rejected(RejectReason::MemberHasPosition));
        }
        if self
            .state
            .authorizations
            .values()
            .any(|a| a.state.is_open() && &a.member == member)
        {
            return Ok(rejected(RejectReason::AccountHasOpenHolds));
        }
        for card in self
            .state
            .cards
            .values()
            .filter(|c| &c.member == member && c.status != CardStatus::Blocked)
        {
            self.events.push(Event::CardStatusChanged {
                card: card.id.clone(),
                status: CardStatus::Blocked,
            });
        }
        self.events.push(Event::MemberRemoved {
            member: member.clone(),
        });
        Ok(accepted())
    }

    pub(super) fn issue_card(
        &mut self,
        card: &crate::ids::CardId,
        member: &MemberId,
        expiry: crate::time::YearMonth,
    ) -> Result<Outcome, DecideError> {
        let Some(holder) = self.state.members.get(member) else {
            return Ok(rejected(RejectReason::UnknownMember));
        };
        if let Err(reason) = self.may(Action::IssueCardTo { member: holder }) {
            return Ok(rejected(reason));
        }
        if self.state.cards.contains_key(card) {
            return Ok(rejected(RejectReason::CardExists));
        }
        if self.state.cards.len() >= CARDS_PER_ACCOUNT_MAX {
            return Ok(rejected(RejectReason::TooManyCards));
        }
        self.events.push(Event::CardIssued {
            card: card.clone(),
            member: member.clone(),
            expiry,
        });
        Ok(accepted())
    }

    pub(super) fn replace_card(
        &mut self,
        card: &crate::ids::CardId,
        new_card: &crate::ids::CardId,
        expiry: crate::time::YearMonth,
    ) -> Result<Outcome, DecideError> {
        let Some(old) = self.state.cards.get(card) else {
            return Ok(rejected(RejectReason::UnknownCard));
        };
        if let Err(reason) = self.may(Action::ReplaceCard { card: old }) {
            return Ok(rejected(reason));
        }
        if !self.state.members.contains_key(&old.member) {
            return Ok(rejected(RejectReason::UnknownMember));
        }
        if self.state.cards.contains_key(new_card) {
            return Ok(rejected(RejectReason::CardExists));
        }
        if self.state.cards.len() >= CARDS_PER_ACCOUNT_MAX {
            return Ok(rejected(RejectReason::TooManyCards));
        }
        self.events.push(Event::CardReplaced {
            card: card.clone(),
            new_card: new_card.clone(),
            expiry,
        });
        Ok(accepted())
    }

    pub(super) fn set_card_status(
        &mut self,
        card: &crate::ids::CardId,
        status: CardStatus,
    ) -> Result<Outcome, DecideError> {
        let Some(current) = self.state.cards.get(card) else {
            return Ok(rejected(RejectReason::UnknownCard));
        };
        if let Err(reason) = self.may(Action::ChangeCardStatus {
            card: current,
            to: status,
        }) {
            return Ok(rejected(reason));
        }
        if current.status == CardStatus::Blocked && status != CardStatus::Blocked {
            return Ok(rejected(RejectReason::CardBlocked));
        }
        if current.status != status {
            self.events.push(Event::CardStatusChanged {
                card: card.clone(),
                status,
            });
        }
        Ok(accepted())
    }

    /// Whether the caller may give `holder` (a member, or the holder of a card) `controls`,
    /// and whether they are valid.
    fn may_set_controls(&self, holder: &Member, controls: &Controls) -> Result<(), RejectReason> {
        self.may(Action::SetControlsOf { member: holder })?;
        controls
            .validate()
            .map_err(|_| RejectReason::InvalidControls)
    }

    pub(super) fn set_member_controls(
        &mut self,
        member: &MemberId,
        controls: &Controls,
    ) -> Result<Outcome, DecideError> {
        let Some(target) = self.state.members.get(member) else {
            return Ok(rejected(RejectReason::UnknownMember));
        };
        if let Err(reason) = self.may_set_controls(target, controls) {
            return Ok(rejected(reason));
        }
        self.events.push(Event::MemberControlsSet {
            member: member.clone(),
            controls: Box::new(controls.clone()),
        });
        Ok(accepted())
    }

    pub(super) fn set_card_controls(
        &mut self,
        card: &crate::ids::CardId,
        controls: &Controls,
    ) -> Result<Outcome, DecideError> {
        let Some(current) = self.state.cards.get(card) else {
            return Ok(rejected(RejectReason::UnknownCard));
        };
        let Some(holder) = self.state.members.get(&current.member) else {
            return Ok(rejected(RejectReason::UnknownMember));
        };
        if let Err(reason) = self.may_set_controls(holder, controls) {
            return Ok(rejected(reason));
        }
        self.events.push(Event::CardControlsSet {
            card: card.clone(),
            controls: Box::new(controls.clone()),
        });
        Ok(accepted())
    }
}
