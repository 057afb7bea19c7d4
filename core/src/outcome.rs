//! What a decision answers. Declines and refusals are values with stable numbers and one
//! mapping to ISO 8583 response codes (profile: `shared/iso8583-profile.md`); `Err` is kept for
//! "could not decide".

use serde::{Deserialize, Serialize};

use crate::currency::Currency;
use crate::ids::AuthorizationId;
use crate::money::Money;

/// ISO 8583 DE 39 values Tandem answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ResponseCode {
    Approved,
    DoNotHonour,
    PartialApproval,
    InvalidAmount,
    UnknownCard,
    FormatError,
    InsufficientFunds,
    ExpiredCard,
    NotPermitted,
    AmountLimitExceeded,
    RestrictedCard,
    CountLimitExceeded,
    IssuerUnavailable,
    DuplicateKeyMismatch,
    SystemError,
}

impl ResponseCode {
    /// The two characters of DE 39.
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseCode::Approved => "00",
            ResponseCode::DoNotHonour => "05",
            ResponseCode::PartialApproval => "10",
            ResponseCode::InvalidAmount => "13",
            ResponseCode::UnknownCard => "14",
            ResponseCode::FormatError => "30",
            ResponseCode::InsufficientFunds => "51",
            ResponseCode::ExpiredCard => "54",
            ResponseCode::NotPermitted => "57",
            ResponseCode::AmountLimitExceeded => "61",
            ResponseCode::RestrictedCard => "62",
            ResponseCode::CountLimitExceeded => "65",
            ResponseCode::IssuerUnavailable => "91",
            ResponseCode::DuplicateKeyMismatch => "94",
            ResponseCode::SystemError => "96",
        }
    }
}

/// Why a spend was declined. The number of each variant is stable (it is stored and
/// reported); new reasons get new numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u16)]
pub enum DeclineReason {
    InvalidAmount = 1,
    UnknownCard = 2,
    CardExpired = 3,
    CardFrozen = 4,
    CardBlocked = 5,
    AccountNotActive = 6,
    MerchantCategoryBlocked = 7,
    ChannelNotPermitted = 8,
    CountryBlocked = 9,
    PerTransactionLimitExceeded = 10,
    AmountLimitExceeded = 11,
    CountLimitExceeded = 12,
    InsufficientFunds = 13,
    /// A reversal for this authorization arrived before it did (tombstone).
    VoidedByEarlierReversal = 14,
    /// An increment for an authorization we never saw.
    UnknownAuthorization = 15,
    /// A limit or balance in another currency could not be compared: no rate.
    NoExchangeRate = 16,
    /// The key was used before for a different message (sender, type, lifecycle, card, amount
    /// or currency), or the lifecycle id is already taken.
    DuplicateKeyMismatch = 17,
    TooManyOpenHolds = 18,
    /// Answered 91 at the edge because the decision was not durable in time.
    IssuerUnavailable = 19,
    /// The card's member has left the account.
    MemberRemoved = 20,
    /// A balance is below zero through what the network pushed through (an advice, a force
    /// post, a clearing above the hold); nothing new is approved until it is cured.
    AccountOverdrawn = 21,
    /// One lifecycle has had as many incremental authorizations as it may.
    TooManyIncrements = 22,
}

impl DeclineReason {
    pub fn number(self) -> u16 {
        self as u16
    }

    pub fn response_code(self) -> ResponseCode {
        use DeclineReason::*;
        match self {
            InvalidAmount => ResponseCode::InvalidAmount,
            UnknownCard => ResponseCode::UnknownCard,
            CardExpired => ResponseCode::ExpiredCard,
            CardFrozen | CardBlocked | MemberRemoved => ResponseCode::RestrictedCard,
            AccountNotActive
            | VoidedByEarlierReversal
            | UnknownAuthorization
            | NoExchangeRate
            | TooManyOpenHolds
            | TooManyIncrements => ResponseCode::DoNotHonour,
            MerchantCategoryBlocked | ChannelNotPermitted | CountryBlocked => {
                ResponseCode::NotPermitted
            }
            PerTransactionLimitExceeded | AmountLimitExceeded => ResponseCode::AmountLimitExceeded,
            CountLimitExceeded => ResponseCode::CountLimitExceeded,
            InsufficientFunds | AccountOverdrawn => ResponseCode::InsufficientFunds,
            DuplicateKeyMismatch => ResponseCode::DuplicateKeyMismatch,
            IssuerUnavailable => ResponseCode::IssuerUnavailable,
        }
    }
}

/// Why an account-management command was refused (permissions, unknown names, state rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u16)]
pub enum RejectReason {
    /// The acting member's role does not allow this.
    NotPermitted = 1,
    /// The actor is not a member of this account.
    NotAMember = 2,
    UnknownMember = 3,
    UnknownCard = 4,
    MemberExists = 5,
    CardExists = 6,
    /// Blocked is final.
    CardBlocked = 7,
    AccountNotOpen = 8,
    AccountAlreadyOpen = 9,
    AccountClosed = 10,
    AccountHasOpenHolds = 11,
    AccountHasBalance = 12,
    /// A member with a non-zero net position cannot leave until settled up.
    MemberHasPosition = 13,
    InvalidControls = 14,
    InvalidSplitRule = 15,
    InvalidFundingPolicy = 16,
    InsufficientFunds = 17,
    UnknownWithdrawal = 18,
    TooManyMembers = 19,
    TooManyCards = 20,
    AmountOutOfRange = 21,
    TooManyBalances = 22,
    /// The key was used before for a different command.
    DuplicateKeyMismatch = 23,
    /// The last owner cannot leave or lose the role.
    LastOwner = 24,
    AccountNotActive = 25,
    /// A group member may withdraw at most their own net position.
    ExceedsOwnPosition = 26,
    /// Members still owe each other: settle up before closing.
    MembersNotSettled = 27,
}

impl RejectReason {
    pub fn number(self) -> u16 {
        self as u16
    }

    pub fn response_code(self) -> ResponseCode {
        use RejectReason::*;
        match self {
            NotPermitted | NotAMember => ResponseCode::NotPermitted,
            UnknownCard => ResponseCode::UnknownCard,
            CardBlocked => ResponseCode::RestrictedCard,
            InsufficientFunds | ExceedsOwnPosition => ResponseCode::InsufficientFunds,
            AmountOutOfRange => ResponseCode::InvalidAmount,
            DuplicateKeyMismatch => ResponseCode::DuplicateKeyMismatch,
            _ => ResponseCode::DoNotHonour,
        }
    }
}

/// One currency balance as an answer shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BalanceView {
    pub currency: Currency,
    pub ledger_minor: i64,
    pub held_minor: i64,
    pub available_minor: i64,
}

/// A six-character approval code (ISO 8583 DE 38), derived from the account's sequence number
/// so that it is deterministic and replays identically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ApprovalCode(pub [u8; 6]);

impl ApprovalCode {
    pub fn from_sequence(seq: u64) -> Self {
        // An odd multiplier is a bijection modulo 10^6 on the low bits, so consecutive
        // approvals on one account get distinct, non-consecutive codes.
        let mixed = (seq.wrapping_mul(982_451_653) ^ (seq >> 20)) % 1_000_000;
        let mut digits = [b'0'; 6];
        let mut rest = mixed;
        for slot in digits.iter_mut().rev() {
            *slot = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        Self(digits)
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("000000")
    }
}

/// The answer to one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A hold placed (or a single-message spend posted, or a withdrawal held), possibly for
    /// less than asked when the request allowed partial approval.
    Approved {
        authorization: AuthorizationId,
        approved: Money,
        requested: Money,
        approval_code: ApprovalCode,
        /// The first balance that funded it, after the hold (DE 54).
        balance: BalanceView,
    },
    Declined {
        reason: DeclineReason,
        balance: Option<BalanceView>,
    },
    /// Done: advices, clearings, reversals, refunds, deposits, account management.
    Accepted {
        balance: Option<BalanceView>,
    },
    Rejected {
        reason: RejectReason,
    },
    /// A balance inquiry's answer.
    Balances {
        balances: Vec<BalanceView>,
    },
}

impl Outcome {
    pub fn response_code(&self) -> ResponseCode {
        match self {
            Outcome::Approved {
                approved,
                requested,
                ..
            } if approved.amount_minor < requested.amount_minor => ResponseCode::PartialApproval,
            Outcome::Approved { .. } | Outcome::Accepted { .. } | Outcome::Balances { .. } => {
                ResponseCode::Approved
            }
            Outcome::Declined { reason, .. } => reason.response_code(),
            Outcome::Rejected { reason } => reason.response_code(),
        }
    }

    pub fn is_approved(&self) -> bool {
        matches!(self, Outcome::Approved { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approval_codes_are_six_digits_and_distinct_for_neighbours() {
        let codes: std::collections::BTreeSet<_> =
            (1..=10_000u64).map(ApprovalCode::from_sequence).collect();
        assert_eq!(codes.len(), 10_000);
        assert!(
            codes
                .iter()
                .all(|c| c.as_str().bytes().all(|b| b.is_ascii_digit()))
        );
    }

    #[test]
    fn decline_reasons_map_to_the_profile_table() {
        assert_eq!(
            DeclineReason::InsufficientFunds.response_code().as_str(),
            "51"
        );
        assert_eq!(
            DeclineReason::MerchantCategoryBlocked
                .response_code()
                .as_str(),
            "57"
        );
        assert_eq!(DeclineReason::CardExpired.response_code().as_str(), "54");
        assert_eq!(DeclineReason::CardFrozen.response_code().as_str(), "62");
        assert_eq!(
            DeclineReason::CountLimitExceeded.response_code().as_str(),
            "65"
        );
        assert_eq!(
            DeclineReason::AmountLimitExceeded.response_code().as_str(),
            "61"
        );
        assert_eq!(DeclineReason::UnknownCard.response_code().as_str(), "14");
        assert_eq!(
            DeclineReason::DuplicateKeyMismatch.response_code().as_str(),
            "94"
        );
        assert_eq!(
            DeclineReason::IssuerUnavailable.response_code().as_str(),
            "91"
        );
        assert_eq!(DeclineReason::InvalidAmount.response_code().as_str(), "13");
    }
}
