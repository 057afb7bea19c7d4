//! Who may do what. One function answers for every command, before any state is touched.
//!
//! | action | platform | network | owner | guardian | member | child |
//! |---|---|---|---|---|---|---|
//! | open account, sweep | yes | no | no | no | no | no |
//! | card traffic (authorize, advise, clear, ...) | yes | yes | no | no | no | no |
//! | manage members, account status, split rule, funding policy | yes | no | yes | no | no | no |
//! | issue a card to someone | yes | no | yes | to a child | no | no |
//! | set controls of a child | yes | no | no | yes | no | no |
//! | set controls of anyone else | yes | no | yes | no | no | no |
//! | change a card's status | yes | no | any card | a child's or own card | freeze, unfreeze or block own | freeze or block own |
//! | replace a card | yes | no | any card | a child's or own card | own | no |
//! | deposit (money confirmed in) | yes | no | no | no | no | no |
//! | withdraw | yes | no | for self | for self | for self | no |
//! | record a settlement (the payee confirms being paid) | yes | no | any, former members too | as payee | as payee | as payee |

use crate::account::Account;
use crate::card::{Card, CardStatus};
use crate::command::Actor;
use crate::ids::MemberId;
use crate::member::{Member, Role};
use crate::outcome::RejectReason;

#[derive(Debug, Clone, Copy)]
pub enum Action<'a> {
    OpenAccount,
    Housekeeping,
    CardTraffic,
    ManageAccount,
    IssueCardTo {
        member: &'a Member,
    },
    SetControlsOf {
        member: &'a Member,
    },
    ChangeCardStatus {
        card: &'a Card,
        to: CardStatus,
    },
    ReplaceCard {
        card: &'a Card,
    },
    Deposit,
    Withdraw {
        for_member: &'a MemberId,
    },
    Settle {
        from: &'a MemberId,
        to: &'a MemberId,
    },
}

/// `Ok` when `actor` may perform `action` on `account`.
pub fn check(account: &Account, actor: &Actor, action: Action<'_>) -> Result<(), RejectReason> {
    let acting = match actor {
        Actor::Platform => return Ok(()),
        Actor::Network => {
            return if matches!(action, Action::CardTraffic) {
                Ok(())
            } else {
                Err(RejectReason::NotPermitted)
            };
        }
        Actor::Member(id) => account.members.get(id).ok_or(RejectReason::NotAMember)?,
    };
    let role = acting.role;
    let is_child = |member: &MemberId| {
        account
            .members
            .get(member)
            .is_some_and(|m| m.role == Role::Child)
    };
    let allowed = match action {
        Action::OpenAccount | Action::Housekeeping | Action::CardTraffic => false,
        Action::ManageAccount => role == Role::Owner,
        Action::IssueCardTo { member } => {
            role == Role::Owner || (role == Role::Guardian && member.role == Role::Child)
        }
        Action::SetControlsOf { member } => {
            if member.role == Role::Child {
                role == Role::Guardian
            } else {
                role == Role::Owner
            }
        }
        Action::ChangeCardStatus { card, to } => {
            let own = card.member == acting.id;
            match role {
                Role::Owner => true,
                Role::Guardian => is_child(&card.member) || own,
                Role::Member => own,
                Role::Child => own && matches!(to, CardStatus::Frozen | CardStatus::Blocked),
            }
        }
        Action::ReplaceCard { card } => match role {
            Role::Owner => true,
            Role::Guardian => is_child(&card.member) || card.member == acting.id,
            Role::Member => card.member == acting.id,
            Role::Child => false,
        },
        // A deposit records money that has arrived; only the platform's funding rails confirm
        // that, so no member (app key) can create money.
        Action::Deposit => false,
        Action::Withdraw { for_member } => role != Role::Child && *for_member == acting.id,
        // The one who was paid confirms it, so no one can wipe out their own debt alone.
        Action::Settle { to, .. } => role == Role::Owner || *to == acting.id,
    };
    if allowed {
        Ok(())
    } else {
        Err(RejectReason::NotPermitted)
    }
}
