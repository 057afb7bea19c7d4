//! Spend checks shared by the lifecycle steps: amount, card and member, per-transaction
//! limits, channel, category and country rules, usage charges, and the new lifecycle record.

use super::*;

/// Cash part of a spend, for cash (ATM) limits.
fn cash_minor(spend: &Spend) -> i64 {
    if spend.kind == SpendKind::Cash
        || spend.channel == Channel::Atm
        || spend.merchant.mcc == Mcc::ATM
    {
        spend.amount.amount_minor
    } else if spend.kind == SpendKind::PurchaseWithCashback {
        spend.cashback_minor
    } else {
        0
    }
}

/// Channel, category and country rules of one set of controls.
pub(super) fn check_rules(
    controls: &Controls,
    spend: &Spend,
    is_child: bool,
) -> Result<(), DeclineReason> {
    let is_atm = spend.channel == Channel::Atm || spend.merchant.mcc == Mcc::ATM;
    if !controls.channels.permits(spend.channel)
        || (is_atm && !controls.channels.permits(Channel::Atm))
    {
        return Err(DeclineReason::ChannelNotPermitted);
    }
    if !controls.permits_mcc(spend.merchant.mcc) || (is_child && child_blocks(spend.merchant.mcc)) {
        return Err(DeclineReason::MerchantCategoryBlocked);
    }
    if let Some(country) = spend.merchant.country
        && controls.blocked_countries.contains(&country)
    {
        return Err(DeclineReason::CountryBlocked);
    }
    Ok(())
}

/// One lifecycle is one spend for count limits: more of a spend whose lifecycle already
/// stands counted (an increment, an advice raising the hold, a clearing above it) charges and
/// checks the amount only.
pub(super) fn stands_counted(record: &Authorization) -> bool {
    record.usage.iter().any(|c| c.count > 0)
}

/// Builds a minimal spend view of an existing lifecycle, for increments and postings.
pub(super) fn spend_of(record: &Authorization, amount: Money) -> Option<Spend> {
    Some(Spend {
        card: record.card.clone()?,
        amount,
        cashback_minor: 0,
        kind: record.kind,
        merchant: record.merchant.clone()?,
        channel: record.channel.unwrap_or(Channel::Chip),
        presented_expiry: None,
        partial_allowed: false,
    })
}

impl<'a> Decider<'a> {
    pub(super) fn valid_amount(amount: Money) -> bool {
        (1..=AMOUNT_MINOR_MAX).contains(&amount.amount_minor)
    }

    pub(super) fn decline_with_balance(
        &self,
        reason: DeclineReason,
        currency: Currency,
    ) -> Outcome {
        let balance = self
            .state
            .balances
            .contains_key(&currency)
            .then(|| self.state.balance_view(currency));
        Outcome::Declined { reason, balance }
    }

    /// Card, account and member checks shared by authorizations and increments.
    pub(super) fn check_card(
        &self,
        spend: &Spend,
        check_expiry: bool,
    ) -> Result<(&'a crate::card::Card, &'a Member), DeclineReason> {
        let card = self
            .state
            .cards
            .get(&spend.card)
            .ok_or(DeclineReason::UnknownCard)?;
        if self.state.status != AccountStatus::Active {
            return Err(DeclineReason::AccountNotActive);
        }
        match card.status {
            CardStatus::Active => {}
            CardStatus::Frozen => return Err(DeclineReason::CardFrozen),
            CardStatus::Blocked => return Err(DeclineReason::CardBlocked),
        }
        let member = self
            .state
            .members
            .get(&card.member)
            .ok_or(DeclineReason::MemberRemoved)?;
        if check_expiry
            && (card.expiry.has_passed(self.now())
                || spend.presented_expiry.is_some_and(|e| e != card.expiry))
        {
            return Err(DeclineReason::CardExpired);
        }
        Ok((card, member))
    }

    /// The member's and the card's per-transaction limits against a transaction's total.
    pub(super) fn check_per_transaction(
        &self,
        card: &crate::card::Card,
        member: &Member,
        total: Money,
    ) -> Result<(), DeclineReason> {
        for limit in [
            member.controls.per_transaction,
            card.controls.per_transaction,
        ]
        .into_iter()
        .flatten()
        {
            self.within_per_transaction(total, limit)?;
        }
        Ok(())
    }

    /// Whether `amount`, in the limit's currency (rounded up, to cover it), is within a
    /// per-transaction `limit`.
    fn within_per_transaction(
        &self,
        amount: Money,
        limit: crate::controls::AmountLimit,
    ) -> Result<(), DeclineReason> {
        let counted = self
            .ctx
            .rates
            .convert(amount, limit.currency, Rounding::UpToCover)
            .map_err(|_| DeclineReason::NoExchangeRate)?;
        if counted.amount_minor > limit.amount_minor {
            return Err(DeclineReason::PerTransactionLimitExceeded);
        }
        Ok(())
    }

    /// What `amount` on `record` charges to its card's and member's usage, not enforced (the
    /// network decided, or the money is already gone): `None` if its card or member is gone.
    pub(super) fn usage_unenforced(
        &self,
        record: &Authorization,
        amount: Money,
    ) -> Option<Vec<UsageDelta>> {
        let spend = spend_of(record, amount)?;
        let card = self.state.cards.get(&spend.card)?;
        let member = self.state.members.get(&record.member)?;
        let new_spend = !stands_counted(record);
        self.usage_charges(card, member, &spend, amount, false, new_spend)
            .ok()
    }

    /// Usage charges for `amount` of `spend` against both subjects' limits; with `enforce`,
    /// the first limit it would break declines it. `new_spend` is false for more of a spend
    /// already counted, which charges amounts but no count.
    pub(super) fn usage_charges(
        &self,
        card: &crate::card::Card,
        member: &Member,
        spend: &Spend,
        amount: Money,
        enforce: bool,
        new_spend: bool,
    ) -> Result<Vec<UsageDelta>, DeclineReason> {
        let mut charges = Vec::new();
        let cash = if amount == spend.amount {
            cash_minor(spend)
        } else {
            cash_minor(spend).min(amount.amount_minor)
        };
        let subjects: [(UsageSubject, &Controls, &Usage); 2] = [
            (
                UsageSubject::Member(member.id.clone()),
                &member.controls,
                &member.usage,
            ),
            (
                UsageSubject::Card(card.id.clone()),
                &card.controls,
                &card.usage,
            ),
        ];
        let now = self.now();
        for (subject, controls, usage) in subjects {
            if let Some(limit) = controls.per_transaction
                && enforce
            {
                self.within_per_transaction(amount, limit)?;
            }
            for limit in &controls.window_limits {
                let counted_minor = match limit.scope {
                    LimitScope::All => amount.amount_minor,
                    LimitScope::Cash if cash > 0 => cash,
                    LimitScope::Cash => continue,
                };
                let counted = Money::new(counted_minor, amount.currency);
                let currency = limit.amount.map(|a| a.currency);
                let charge_minor = match limit.amount {
                    Some(a) => {
                        match self
                            .ctx
                            .rates
                            .convert(counted, a.currency, Rounding::UpToCover)
                        {
                            Ok(m) => m.amount_minor,
                            Err(_) if enforce => return Err(DeclineReason::NoExchangeRate),
                            Err(_) => continue,
                        }
                    }
                    None => 0,
                };
                if enforce {
                    let (used_minor, used_count) =
                        usage.current(limit.scope, limit.window, now, currency);
                    if let Some(a) = limit.amount
                        && used_minor.saturating_add(charge_minor) > a.amount_minor
                    {
                        return Err(DeclineReason::AmountLimitExceeded);
                    }
                    if let Some(count) = limit.count
                        && new_spend
                        && used_count.saturating_add(1) > count
                    {
                        return Err(DeclineReason::CountLimitExceeded);
                    }
                }
                charges.push(UsageDelta {
                    subject: subject.clone(),
                    scope: limit.scope,
                    window: limit.window,
                    window_id: limit.window.id(now),
                    currency,
                    epoch: usage.epoch_for(limit.scope, limit.window, now, currency),
                    amount_minor: charge_minor,
                    count: i32::from(new_spend),
                });
            }
        }
        Ok(charges)
    }

    /// A new lifecycle for `spend`, holding nothing yet: the caller adds legs, usage and the
    /// approved amount.
    pub(super) fn new_record(
        &self,
        authorization: &AuthorizationId,
        spend: &Spend,
        member: &MemberId,
        network_decided: bool,
    ) -> Box<Authorization> {
        let expiry = self.ctx.policy.hold_expiry_ms_for(Some(spend.merchant.mcc));
        let mut record = self.open_record(authorization, member, spend.kind, spend.amount, expiry);
        record.card = Some(spend.card.clone());
        record.merchant = Some(spend.merchant.clone());
        record.channel = Some(spend.channel);
        record.network_decided = network_decided;
        record
    }

    /// A new lifecycle of `kind` for `requested`, by `member`, expiring `expiry_ms` from now,
    /// holding nothing and naming no card yet.
    pub(super) fn open_record(
        &self,
        id: &AuthorizationId,
        member: &MemberId,
        kind: SpendKind,
        requested: Money,
        expiry_ms: i64,
    ) -> Box<Authorization> {
        Box::new(Authorization {
            id: id.clone(),
            origin_key: self.command.key.clone(),
            card: None,
            member: member.clone(),
            kind,
            merchant: None,
            channel: None,
            state: LifecycleState::Pending,
            requested,
            authorized_minor: 0,
            legs: Vec::new(),
            posted: Vec::new(),
            cleared_minor: 0,
            credited_minor: 0,
            usage: Vec::new(),
            usage_basis_minor: 0,
            created_at: self.now(),
            expires_at: self.now().saturating_add_millis(expiry_ms),
            closed_at: None,
            network_decided: false,
            increments: 0,
            single_message: false,
            review: None,
        })
    }
}
