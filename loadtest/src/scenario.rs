//! What the traffic looks like: the accounts a run provisions and the requests each scenario
//! sends, in realistic proportions.

use rand::RngExt;
use tandem_proto::v1 as pb;

use crate::schedule::AccountPicker;
use crate::target::Op;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Approve-heavy authorizations on uniformly chosen accounts.
    Authorize,
    /// Authorizations followed by clearings, partial clearings, reversals, increments or
    /// nothing (left to expire).
    Lifecycle,
    /// A Zipf law over accounts plus a handful of very busy shared accounts.
    Hot,
    /// Children spending against limits and blocked categories: declines are exercised.
    Kids,
    /// Spends in currencies the account does not hold.
    Fx,
    /// All of the above, plus spend apps reading balances.
    Mixed,
    /// Spend apps reading balances only, on uniformly chosen accounts (over a cluster's
    /// nodes: follower reads, linearizable).
    Reads,
}

impl Scenario {
    pub fn parse(text: &str) -> Result<Self, String> {
        Ok(match text {
            "authorize" => Scenario::Authorize,
            "lifecycle" => Scenario::Lifecycle,
            "hot" => Scenario::Hot,
            "kids" => Scenario::Kids,
            "fx" => Scenario::Fx,
            "mixed" => Scenario::Mixed,
            "reads" => Scenario::Reads,
            other => {
                return Err(format!(
                    "--scenario must be one of authorize, lifecycle, hot, kids, fx, mixed, reads; got {other}"
                ));
            }
        })
    }
}

/// The accounts a run creates.
#[derive(Debug, Clone)]
pub struct Population {
    pub run_id: String,
    pub accounts: usize,
    pub members_per_account: usize,
    /// Every `kid_every`-th account is a kid account (0: none).
    pub kid_every: usize,
    pub currencies: Vec<String>,
    /// Deposited per currency into each adult account, minor units.
    pub deposit_minor: i64,
    /// Deposited into each kid account (its first currency).
    pub kid_deposit_minor: i64,
}

impl Population {
    pub fn account_id(&self, index: usize) -> String {
        format!("lt-{}-{index}", self.run_id)
    }

    pub fn is_kid(&self, index: usize) -> bool {
        self.kid_every > 0 && index % self.kid_every == self.kid_every - 1
    }

    /// The members of account `index` with their roles; the spender set is everyone but
    /// guardians.
    pub fn members(&self, index: usize) -> Vec<(String, &'static str)> {
        if self.is_kid(index) {
            vec![("guardian".into(), "guardian"), ("child".into(), "child")]
        } else {
            (0..self.members_per_account.max(1))
                .map(|m| (format!("m{m}"), if m == 0 { "owner" } else { "member" }))
                .collect()
        }
    }

    pub fn card_id(&self, index: usize, member: &str) -> String {
        format!("{}-{member}", self.account_id(index))
    }

    /// The PAN of account `index`'s card for its `member`-th member: 16 digits, unique in
    /// the run and, through the run id, across runs on one server.
    pub fn pan(&self, index: usize, member: usize) -> String {
        // FNV-1a of the run id, to five digits.
        let run = self.run_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        }) % 100_000;
        format!("9{run:05}{index:08}{member:02}")
    }
}

/// One unit of traffic: a request, or an authorization and what follows it.
#[derive(Debug, Clone)]
pub enum Work {
    Single {
        account: usize,
        op: Op,
    },
    Lifecycle {
        account: usize,
        authorize: pb::AuthorizeRequest,
        then: FollowUp,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUp {
    ClearFull,
    ClearPartial,
    Reverse,
    Increment,
    /// Nothing: the hold stays until it expires.
    Leave,
}

const GROCERY: &str = "5411";
const RESTAURANT: &str = "5812";
const GAMBLING: &str = "7995";
const CHANNELS: [&str; 4] = ["chip", "contactless", "ecommerce", "wallet"];

/// Makes the requests of a scenario.
pub struct Traffic {
    pub scenario: Scenario,
    pub population: Population,
    picker: AccountPicker,
    sequence: u64,
    /// Share of mixed traffic that is balance reads.
    pub read_share: f64,
    /// Steady state: every approved authorization is closed by its caller before it sends
    /// the next one (cleared in full in `authorize` and `hot`; cleared, partly cleared or
    /// reversed in `lifecycle`), so open holds never pile up and the open-hold bound is
    /// never what limits a run.
    pub settle: bool,
}

impl Traffic {
    pub fn new(scenario: Scenario, population: Population, seed: u64) -> Self {
        let accounts = population.accounts;
        let picker = match scenario {
            Scenario::Hot | Scenario::Mixed => {
                AccountPicker::zipf(accounts, 1.1, 4.min(accounts), 0.2, seed)
            }
            _ => AccountPicker::uniform(accounts, seed),
        };
        Self {
            scenario,
            population,
            picker,
            sequence: 0,
            read_share: 0.1,
            settle: false,
        }
    }

    /// The same traffic, with [`Traffic::settle`] set to `settle`.
    pub fn settled(mut self, settle: bool) -> Self {
        self.settle = settle;
        self
    }

    fn key(&mut self) -> String {
        self.sequence += 1;
        format!("lt-{}-{}", self.population.run_id, self.sequence)
    }

    fn spender(&mut self, account: usize) -> String {
        let members = self.population.members(account);
        let spenders: Vec<&(String, &str)> = members
            .iter()
            .filter(|(_, role)| *role != "guardian")
            .collect();
        let pick = self.picker.rng().random_range(0..spenders.len());
        spenders[pick].0.clone()
    }

    fn spend(
        &mut self,
        account: usize,
        amount_minor: i64,
        currency: &str,
        mcc: &str,
    ) -> pb::AuthorizeRequest {
        let member = self.spender(account);
        let channel = CHANNELS[self.picker.rng().random_range(0..CHANNELS.len())];
        pb::AuthorizeRequest {
            idempotency_key: self.key(),
            card_id: self.population.card_id(account, &member),
            amount_minor,
            currency: currency.to_owned(),
            mcc: mcc.to_owned(),
            channel: channel.to_owned(),
            merchant_name: "Load Test Merchant".to_owned(),
            merchant_country: "GB".to_owned(),
            partial_allowed: self.picker.rng().random_bool(0.1),
            ..Default::default()
        }
    }

    /// An adult account (retries a few picks; falls back to any account).
    fn adult(&mut self) -> usize {
        for _ in 0..8 {
            let account = self.picker.pick();
            if !self.population.is_kid(account) {
                return account;
            }
        }
        self.picker.pick()
    }

    fn kid(&mut self) -> usize {
        for _ in 0..64 {
            let account = self.picker.pick();
            if self.population.is_kid(account) {
                return account;
            }
        }
        self.picker.pick()
    }

    pub fn next_work(&mut self) -> Work {
        let scenario = match self.scenario {
            Scenario::Mixed => {
                let roll: f64 = self.picker.rng().random();
                if roll < self.read_share {
                    let account = self.picker.pick();
                    return Work::Single {
                        account,
                        op: Op::GetBalance(self.population.account_id(account)),
                    };
                }
                self.mixed_kind()
            }
            Scenario::Reads => {
                let account = self.picker.pick();
                return Work::Single {
                    account,
                    op: Op::GetBalance(self.population.account_id(account)),
                };
            }
            other => other,
        };
        self.work_of(scenario)
    }

    /// Which of the card scenarios a mixed work unit is.
    fn mixed_kind(&mut self) -> Scenario {
        match self.picker.rng().random_range(0..5) {
            0 => Scenario::Authorize,
            1 => Scenario::Lifecycle,
            2 => Scenario::Hot,
            3 if self.population.kid_every > 0 => Scenario::Kids,
            _ => Scenario::Fx,
        }
    }

    /// One unit of `scenario`'s card traffic.
    fn work_of(&mut self, scenario: Scenario) -> Work {
        let home = self
            .population
            .currencies
            .first()
            .cloned()
            .unwrap_or_else(|| "EUR".into());
        match scenario {
            // (Reads never come here: `next_work` answers them.)
            Scenario::Authorize | Scenario::Hot | Scenario::Mixed | Scenario::Reads => {
                let account = self.adult();
                let amount = self.picker.rng().random_range(100..20_000);
                let request = self.spend(account, amount, &home, GROCERY);
                if self.settle {
                    return Work::Lifecycle {
                        account,
                        authorize: request,
                        then: FollowUp::ClearFull,
                    };
                }
                Work::Single {
                    account,
                    op: Op::Authorize(request),
                }
            }
            Scenario::Fx => {
                let account = self.adult();
                let foreign = ["JPY", "CHF", "SEK"][self.picker.rng().random_range(0..3)];
                let amount = self.picker.rng().random_range(100..20_000);
                let request = self.spend(account, amount, foreign, RESTAURANT);
                Work::Single {
                    account,
                    op: Op::Authorize(request),
                }
            }
            Scenario::Kids => {
                let account = self.kid();
                let roll: f64 = self.picker.rng().random();
                let (amount, mcc) = if roll < 0.1 {
                    (500, GAMBLING) // always blocked for a child: 57
                } else if roll < 0.2 {
                    (8_000, GROCERY) // over the per-transaction limit: 61
                } else {
                    (self.picker.rng().random_range(50..1_500), GROCERY)
                };
                let request = self.spend(account, amount, &home, mcc);
                Work::Single {
                    account,
                    op: Op::Authorize(request),
                }
            }
            Scenario::Lifecycle => {
                let account = self.adult();
                let amount = self.picker.rng().random_range(1_000..20_000);
                let mut authorize = self.spend(account, amount, &home, RESTAURANT);
                authorize.partial_allowed = false;
                let roll: f64 = self.picker.rng().random();
                let then = if roll < 0.55 {
                    FollowUp::ClearFull
                } else if roll < 0.70 {
                    FollowUp::ClearPartial
                } else if self.settle || roll < 0.82 {
                    FollowUp::Reverse
                } else if roll < 0.90 {
                    FollowUp::Increment
                } else {
                    FollowUp::Leave
                };
                Work::Lifecycle {
                    account,
                    authorize,
                    then,
                }
            }
        }
    }

    /// The follow-up request for an approved lifecycle.
    pub fn follow_up(
        &mut self,
        then: FollowUp,
        approved: &pb::AuthorizeResponse,
        request: &pb::AuthorizeRequest,
    ) -> Option<Op> {
        let amount = approved.approved_amount_minor;
        // A clearing record carries the card and merchant, as networks send them.
        let posting = |key: String, amount_minor: i64, last: bool| pb::PostingRequest {
            idempotency_key: key,
            authorization_id: approved.authorization_id.clone(),
            card_id: request.card_id.clone(),
            amount_minor,
            currency: request.currency.clone(),
            mcc: request.mcc.clone(),
            channel: request.channel.clone(),
            merchant_name: request.merchant_name.clone(),
            merchant_country: request.merchant_country.clone(),
            r#final: last,
            ..Default::default()
        };
        Some(match then {
            FollowUp::ClearFull => Op::Clear(posting(self.key(), amount, true)),
            FollowUp::ClearPartial => Op::Clear(posting(self.key(), (amount / 2).max(1), true)),
            FollowUp::Reverse => Op::Reverse(pb::ReverseRequest {
                idempotency_key: self.key(),
                authorization_id: approved.authorization_id.clone(),
                amount_minor: None,
                currency: request.currency.clone(),
            }),
            FollowUp::Increment => Op::Increment(pb::IncrementRequest {
                idempotency_key: self.key(),
                authorization_id: approved.authorization_id.clone(),
                amount_minor: 500,
                currency: request.currency.clone(),
            }),
            FollowUp::Leave => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn population(accounts: usize) -> Population {
        Population {
            run_id: "t".into(),
            accounts,
            members_per_account: 2,
            kid_every: 0,
            currencies: vec!["EUR".into()],
            deposit_minor: 1_000_000,
            kid_deposit_minor: 0,
        }
    }

    /// The follow-up of a unit of work, if it is a lifecycle.
    fn then(work: &Work) -> Option<FollowUp> {
        match work {
            Work::Lifecycle { then, .. } => Some(*then),
            Work::Single { .. } => None,
        }
    }

    #[test]
    fn settled_traffic_closes_every_hold_it_opens() {
        for scenario in [Scenario::Authorize, Scenario::Hot, Scenario::Lifecycle] {
            let mut traffic = Traffic::new(scenario, population(1), 7).settled(true);
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..2_000 {
                let follow_up = then(&traffic.next_work());
                assert!(
                    matches!(
                        follow_up,
                        Some(FollowUp::ClearFull | FollowUp::ClearPartial | FollowUp::Reverse)
                    ),
                    "{scenario:?} left a hold open: {follow_up:?}"
                );
                seen.insert(format!("{follow_up:?}"));
            }
            let expected = if scenario == Scenario::Lifecycle {
                3
            } else {
                1
            };
            assert_eq!(seen.len(), expected, "{scenario:?}: {seen:?}");
        }
    }

    #[test]
    fn the_reads_scenario_reads_balances_only_and_spreads_over_the_accounts() {
        let mut reads = Traffic::new(Scenario::Reads, population(50), 7);
        let mut accounts = std::collections::BTreeSet::new();
        for _ in 0..1_000 {
            match reads.next_work() {
                Work::Single {
                    account,
                    op: Op::GetBalance(id),
                } => {
                    assert_eq!(id, population(50).account_id(account));
                    accounts.insert(account);
                }
                other => panic!("a reads run sent {other:?}"),
            }
        }
        assert!(accounts.len() > 40, "{} accounts read", accounts.len());
        assert_eq!(Scenario::parse("reads"), Ok(Scenario::Reads));
    }

    #[test]
    fn unsettled_traffic_keeps_its_shape() {
        let mut hot = Traffic::new(Scenario::Hot, population(1), 7);
        assert!(then(&hot.next_work()).is_none(), "hot sends single holds");
        let mut lifecycle = Traffic::new(Scenario::Lifecycle, population(1), 7);
        let leaves = (0..2_000)
            .filter(|_| then(&lifecycle.next_work()) == Some(FollowUp::Leave))
            .count();
        assert!(leaves > 0, "some lifecycles are left to expire");
    }
}
