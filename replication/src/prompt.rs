//! Prompt elections: a follower whose leader has been silent past the leader's lease asks
//! its peers where their logs end and whether they still hear a leader; the member holding
//! the greatest log (the lowest id among equals) calls the election at once.
//!
//! openraft 0.9 alone waits longer and less evenly. A follower calls an election only once
//! the lease (`election_timeout_max`) *and* its own random timeout have passed since the
//! leader's last append, looked at every 1.5 heartbeats: 0.6–1.0 s here. When the first to
//! call holds the shorter log it loses, and openraft adds twice the timeout's maximum to that
//! node's next attempt; a node keeps that penalty until it next calls an election itself, so
//! one lost vote can slow a failover long after (measured: 2.8 s, three rounds of votes).
//! Asking first means the one member the others will vote for is the one that calls, as soon
//! as their leases allow a vote. openraft's own timer stays as the fallback: a peer that
//! cannot be asked, an answer that says wait, or an election that fails leaves the next step
//! to it.
//!
//! Calling an election is always safe in Raft (a vote needs a majority, and a voter refuses
//! a candidate with less log); what this decides is only who calls, and when.

use std::collections::BTreeMap;
use std::time::Duration;

use openraft::{LogId, ServerState};
use serde::{Deserialize, Serialize};
use tandem_storage::types::{NodeId, TandemRaft};

use crate::GrpcNetwork;

/// How often a follower looks at its leader's silence.
const LOOK_EVERY: Duration = Duration::from_millis(25);

/// How far past the lease a follower waits before it asks: the other followers' leases,
/// started by the same appends, must have passed too, or they refuse the vote.
const PAST_LEASE: Duration = Duration::from_millis(30);

/// How often a follower asks again during one silence (a peer's lease may have been renewed
/// a little later than its own).
const ASK_AGAIN: Duration = Duration::from_millis(100);

/// How long a peer has to say where it stands.
pub(crate) const STANDING_DEADLINE: Duration = Duration::from_millis(150);

/// What a member says of itself when a peer is about to call an election
/// (`tandem.raft.v1.Raft/Standing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Standing {
    /// The last entry its log holds.
    pub last_log: Option<LogId<NodeId>>,
    /// How long since its vote last changed or was renewed by its leader's append (openraft's
    /// lease clock); `None` before it ever voted.
    pub silent_ms: Option<u64>,
    /// It leads.
    pub leads: bool,
}

/// Where `raft` stands now.
pub(crate) async fn standing_of(raft: &openraft::Raft<TandemRaft>) -> Option<Standing> {
    let (silent, leads) = raft
        .with_raft_state(|state| {
            (
                state.vote_last_modified().map(|at| at.elapsed()),
                state.server_state == ServerState::Leader,
            )
        })
        .await
        .ok()?;
    Some(Standing {
        last_log: raft.data_metrics().borrow().last_log,
        silent_ms: silent.map(|s| s.as_millis() as u64),
        leads,
    })
}

/// Calls prompt elections for `raft`, whose peers `network` reaches, whose leader's lease is
/// `lease`, until the node stops.
pub fn spawn(
    raft: openraft::Raft<TandemRaft>,
    network: GrpcNetwork,
    lease: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move { run(raft, network, lease).await })
}

async fn run(raft: openraft::Raft<TandemRaft>, network: GrpcNetwork, lease: Duration) {
    let me = raft.metrics().borrow().id;
    // The silence last asked about (by when the vote was last renewed), and when.
    let mut asked: Option<(tokio::time::Instant, tokio::time::Instant)> = None;
    loop {
        tokio::time::sleep(LOOK_EVERY).await;
        // A watch read, no message to the Raft core (whose thread is the commit path): only
        // a follower asks the core how long its leader has been silent.
        let state = raft.server_metrics().borrow().state;
        match state {
            ServerState::Follower => {}
            ServerState::Shutdown => return,
            _ => continue,
        }
        let Ok(silence) = raft
            .with_raft_state(move |state| {
                let vote = state.vote_ref();
                let follows_a_leader = state.server_state == ServerState::Follower
                    && vote.is_committed()
                    && vote.leader_id().voted_for() != Some(me)
                    && state
                        .membership_state
                        .effective()
                        .membership()
                        .voter_ids()
                        .any(|id| id == me);
                follows_a_leader
                    .then(|| state.vote_last_modified())
                    .flatten()
                    .map(|at| (at, at.elapsed()))
            })
            .await
        else {
            return; // the node stopped
        };
        let Some((since, silent)) = silence else {
            continue;
        };
        // Past twice the lease openraft's own timer calls anyway.
        if silent < lease + PAST_LEASE
            || silent > 2 * lease
            || asked.is_some_and(|(s, at)| s == since && at.elapsed() < ASK_AGAIN)
        {
            continue;
        }
        asked = Some((since, tokio::time::Instant::now()));
        let (voters, mine) = {
            let metrics = raft.metrics().borrow().clone();
            let membership = metrics.membership_config.membership().clone();
            let voters: BTreeMap<NodeId, String> = membership
                .voter_ids()
                .filter(|id| *id != me)
                .filter_map(|id| membership.get_node(&id).map(|n| (id, n.addr.clone())))
                .collect();
            (voters, raft.data_metrics().borrow().last_log)
        };
        let asked = voters.iter().map(|(id, address)| {
            let network = network.clone();
            async move { (*id, network.standing(*id, address).await) }
        });
        let answers = futures_util::future::join_all(asked).await;
        let members = voters.len() + 1;
        let majority = members / 2 + 1;
        match first_to_call(me, mine, lease, &answers, majority) {
            Ok(()) => {
                tracing::info!(
                    silent_ms = silent.as_millis() as u64,
                    "the leader is silent past its lease and this member holds the greatest log: calling an election"
                );
                metrics::counter!("tandem_prompt_elections_total").increment(1);
                if raft.trigger().elect().await.is_err() {
                    return;
                }
            }
            Err(why) => tracing::debug!(why, "no prompt election: openraft's timer decides"),
        }
    }
}

/// Whether member `me`, holding `mine`, should call the election, given what its peers
/// answered (an error: it could not be asked, so it is taken as down).
fn first_to_call(
    me: NodeId,
    mine: Option<LogId<NodeId>>,
    lease: Duration,
    answers: &[(NodeId, Result<Standing, String>)],
    majority: usize,
) -> Result<(), &'static str> {
    let mut reachable = 1;
    for (peer, answer) in answers {
        let Ok(peer_standing) = answer else {
            continue;
        };
        reachable += 1;
        if peer_standing.leads {
            return Err("a peer leads");
        }
        if peer_standing
            .silent_ms
            .is_some_and(|ms| ms < lease.as_millis() as u64)
        {
            return Err("a peer still hears a leader, or has just voted");
        }
        if peer_standing.last_log > mine || (peer_standing.last_log == mine && *peer < me) {
            return Err("a peer holds a greater log, or as much with a lower id");
        }
    }
    if reachable < majority {
        return Err("too few members answer to win a vote");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;

    const LEASE: Duration = Duration::from_millis(400);

    fn log(term: u64, index: u64) -> Option<LogId<NodeId>> {
        Some(LogId::new(CommittedLeaderId::new(term, 1), index))
    }

    fn silent(last_log: Option<LogId<NodeId>>) -> Result<Standing, String> {
        Ok(Standing {
            last_log,
            silent_ms: Some(450),
            leads: false,
        })
    }

    #[test]
    fn the_member_with_the_greatest_log_calls_and_the_others_leave_it_to_it() {
        let dead = (1, Err("unreachable".to_owned()));
        // Node 2 holds more than node 3: 2 calls, 3 does not.
        assert_eq!(
            first_to_call(
                2,
                log(3, 90),
                LEASE,
                &[dead.clone(), (3, silent(log(3, 80)))],
                2
            ),
            Ok(())
        );
        assert!(
            first_to_call(
                3,
                log(3, 80),
                LEASE,
                &[dead.clone(), (2, silent(log(3, 90)))],
                2
            )
            .is_err()
        );
        // A later term wins over a longer log of an earlier one.
        assert!(
            first_to_call(
                2,
                log(2, 95),
                LEASE,
                &[dead.clone(), (3, silent(log(3, 80)))],
                2
            )
            .is_err()
        );
        // Equal logs: the lower id calls.
        assert_eq!(
            first_to_call(
                2,
                log(3, 90),
                LEASE,
                &[dead.clone(), (3, silent(log(3, 90)))],
                2
            ),
            Ok(())
        );
        assert!(first_to_call(3, log(3, 90), LEASE, &[dead, (2, silent(log(3, 90)))], 2).is_err());
    }

    #[test]
    fn a_peer_that_still_hears_a_leader_or_too_few_answers_means_wait() {
        let hears = Ok(Standing {
            last_log: log(3, 10),
            silent_ms: Some(100),
            leads: false,
        });
        assert!(
            first_to_call(2, log(3, 90), LEASE, &[(1, Err("x".into())), (3, hears)], 2).is_err()
        );
        let leads = Ok(Standing {
            last_log: log(3, 10),
            silent_ms: None,
            leads: true,
        });
        assert!(
            first_to_call(2, log(3, 90), LEASE, &[(1, Err("x".into())), (3, leads)], 2).is_err()
        );
        // Both peers unreachable: this member alone cannot win.
        assert!(
            first_to_call(
                2,
                log(3, 90),
                LEASE,
                &[(1, Err("x".into())), (3, Err("y".into()))],
                2
            )
            .is_err()
        );
    }
}
