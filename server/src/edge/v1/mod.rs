//! The `tandem.v1` contract, which gRPC (`edge/grpc.rs`) and HTTP/JSON (`edge/http.rs`)
//! both speak: each function reads one request message into core types (the shape first,
//! then the core type; every field error names its field), calls the operation in
//! `crate::ops`, and renders the core outcome as the response message. Nothing here decides
//! anything or reads state itself; a posting that leaves fields out gets them from its
//! lifecycle through the operation `App::posting_spend`.
//!
//! One file per concern: `fields.rs` reads requests, `answers.rs` renders responses, and the
//! handlers by family: `accounts.rs`, `traffic.rs`, `reads.rs`.

use tandem_core::controls::Channels;
use tandem_core::{
    AccountId, AccountKind, AmountLimit, AuthorizationId, BalanceSnapshot, BalanceView, CardId,
    CardStatus, Channel, CommandBody, Controls, Country, Currency, IdempotencyKey, LimitScope, Mcc,
    MemberId, Merchant, Money, Outcome, Role, Spend, SpendKind, Window, WindowLimit, YearMonth,
};
use tandem_proto::v1 as pb;

use crate::app::App;
use crate::keys::Principal;
use crate::names::snake;
use crate::ops::OpError;
use crate::ops::accounts::ACCOUNT_ID_BYTES_MAX;
use crate::ops::admin::SavedRates;
use crate::ops::card_traffic::{self, CardName, PostingFields, lifecycle_account, lifecycle_id};
use crate::ops::reads::After;

mod accounts;
mod answers;
mod fields;
mod reads;
mod traffic;

pub use self::accounts::*;
pub use self::answers::snapshot;
use self::answers::{authorize_response, created, result};
use self::fields::{
    SpendFields, authorization_id, card_id, key, optional_pan, posting_fields, spend,
};
pub use self::fields::{account_id, member_id, rates_table};
pub use self::reads::*;
pub use self::traffic::*;
