//! # tandem-actors
//!
//! One ractor actor per shared account: the mailbox is the account's total order, decisions
//! are pipelined into the durable log. Filled by the issue "Durable account actors"; depends
//! on `tandem-core` and `tandem-storage`.
