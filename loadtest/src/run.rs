//! Drives traffic: open loop (Poisson arrivals, latency from the scheduled send time), closed
//! loop (N workers back to back, for maximum throughput), or steps of rising rate until p99
//! breaks the SLO. Keeps what the server answered, for the audit.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

use crate::audit::{Expected, HoldState, Ledger};
use crate::nodes::Nodes;
use crate::report::Recorder;
use crate::scenario::{Population, Traffic, Work};
use crate::schedule::Arrivals;
use crate::schedule::unix_ms;
use crate::target::{Answer, Op};

#[derive(Debug, Clone)]
pub struct Load {
    pub rate: f64,
    pub duration: Duration,
    /// `Some(n)`: closed loop with n workers instead of a schedule.
    pub closed_loop: Option<usize>,
    /// Requests outstanding at most (open loop); past it new sends wait, and the wait counts
    /// in their latency.
    pub outstanding_max: usize,
    pub seed: u64,
    pub quiet: bool,
}

/// Everything the tasks of one run share: the target, the traffic, the latency recorder, the
/// ledger the audit checks, and the population of accounts and cards.
pub struct RunState {
    pub target: Arc<Nodes>,
    pub traffic: Mutex<Traffic>,
    pub recorder: Recorder,
    pub ledger: Mutex<Ledger>,
    pub population: Population,
    /// Live balance streams on the accounts under load (`--watchers`), told of every answer
    /// that moved money.
    pub watchers: Option<Arc<crate::watch::Watchers>>,
}

/// `sent_at_ms`: when the request was due, no later than the server's decision (so a hold's
/// expiry window, counted by the server from its decision, is never shorter from here).
fn note(
    ledger: &Mutex<Ledger>,
    account: &str,
    op: &Op,
    result: &Result<Answer, String>,
    sent_at_ms: i64,
) {
    let mut ledger = ledger.lock().unwrap_or_else(|p| p.into_inner());
    ledger.touched.insert(account.to_owned());
    match (op, result) {
        (Op::Authorize(_), Err(_)) => {
            ledger.uncertain_accounts.insert(account.to_owned());
        }
        (Op::Authorize(request), Ok(Answer::Card(answer))) => {
            if answer.status == "approved" || answer.status == "partially_approved" {
                ledger.authorizations.insert(
                    answer.authorization_id.clone(),
                    Expected {
                        account: account.to_owned(),
                        currency: request.currency.clone(),
                        approved_minor: answer.approved_amount_minor,
                        state: HoldState::Open,
                        cleared_minor: 0,
                        approved_at_ms: sent_at_ms,
                    },
                );
            } else if !answer.authorization_id.is_empty() {
                ledger.declined.insert(answer.authorization_id.clone());
            }
        }
        (Op::Clear(r), result) => {
            let id = r.authorization_id.clone();
            match result {
                Ok(Answer::Card(answer)) if answer.response_code == "00" => {
                    if let Some(expected) = ledger.authorizations.get_mut(&id) {
                        expected.cleared_minor += r.amount_minor;
                        if r.r#final {
                            expected.state = HoldState::Closed;
                        }
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    ledger.uncertain.insert(id);
                }
            }
        }
        (Op::Reverse(r), result) => match result {
            Ok(Answer::Card(answer)) if answer.response_code == "00" => {
                if let Some(expected) = ledger.authorizations.get_mut(&r.authorization_id) {
                    expected.state = HoldState::Closed;
                }
            }
            Ok(_) => {}
            Err(_) => {
                ledger.uncertain.insert(r.authorization_id.clone());
            }
        },
        (Op::Increment(r), result) => match result {
            Ok(Answer::Card(answer))
                if answer.status == "approved" || answer.status == "partially_approved" =>
            {
                if let Some(expected) = ledger.authorizations.get_mut(&r.authorization_id) {
                    expected.approved_minor += answer.approved_amount_minor;
                }
            }
            Ok(_) => {}
            Err(_) => {
                ledger.uncertain.insert(r.authorization_id.clone());
            }
        },
        _ => {}
    }
}

async fn send(
    shared: &RunState,
    start: Instant,
    due: Instant,
    account: &str,
    op: Op,
) -> Result<Answer, String> {
    let name = op.name();
    let result = shared.target.call(op.clone()).await;
    let second = due.saturating_duration_since(start).as_secs() as usize;
    let latency = due.elapsed();
    shared.recorder.record(name, second, latency, &result);
    let sent_at_ms = unix_ms() - latency.as_millis() as i64;
    note(&shared.ledger, account, &op, &result, sent_at_ms);
    if let (Some(watchers), Ok(Answer::Card(answer))) = (&shared.watchers, &result)
        && matches!(
            answer.status.as_str(),
            "approved" | "partially_approved" | "accepted"
        )
        && let Some(balance) = &answer.balance
    {
        watchers.answered(account, balance);
    }
    result
}

/// Executes one unit of work that was due at `due`.
pub async fn execute(shared: Arc<RunState>, start: Instant, due: Instant, work: Work) {
    match work {
        Work::Single { account, op } => {
            let account = shared.population.account_id(account);
            let _ = send(&shared, start, due, &account, op).await;
        }
        Work::Lifecycle {
            account,
            authorize,
            then,
        } => {
            let account = shared.population.account_id(account);
            let result = send(
                &shared,
                start,
                due,
                &account,
                Op::Authorize(authorize.clone()),
            )
            .await;
            if let Ok(Answer::Card(answer)) = result
                && (answer.status == "approved" || answer.status == "partially_approved")
            {
                let follow_up = shared
                    .traffic
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .follow_up(then, &answer, &authorize);
                if let Some(op) = follow_up {
                    let _ = send(&shared, start, Instant::now(), &account, op).await;
                }
            }
        }
    }
}

/// Runs `load` against the shared target; answers the time it took.
pub async fn run(shared: Arc<RunState>, load: &Load) -> Duration {
    let start = Instant::now();
    // Live progress on the terminal (indicatif; hidden when stderr is not a terminal or in
    // quiet mode): approvals and answers per second, errors, p50 and p99 so far.
    let bar = if load.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(load.duration.as_secs().max(1))
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let reporter = {
        let shared = shared.clone();
        let bar = bar.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs(1));
            ticker.tick().await;
            let mut last = (0, 0);
            loop {
                ticker.tick().await;
                let progress = shared.recorder.snapshot();
                let (p50, p99) = progress.percentiles.unwrap_or((0, 0));
                bar.set_position(start.elapsed().as_secs());
                bar.set_message(format!(
                    "{} approvals/s, {} answers/s, {} errors, p50 {:.2} ms, p99 {:.2} ms",
                    progress.approved - last.0,
                    progress.answers - last.1,
                    progress.errors,
                    p50 as f64 / 1_000.0,
                    p99 as f64 / 1_000.0
                ));
                last = (progress.approved, progress.answers);
            }
        })
    };
    match load.closed_loop {
        Some(workers) => {
            let deadline = start + load.duration;
            let mut tasks = Vec::new();
            for _ in 0..workers.max(1) {
                let shared = shared.clone();
                tasks.push(tokio::spawn(async move {
                    while Instant::now() < deadline {
                        let work = shared
                            .traffic
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .next_work();
                        execute(shared.clone(), start, Instant::now(), work).await;
                    }
                }));
            }
            for task in tasks {
                let _ = task.await;
            }
        }
        None => {
            let permits = Arc::new(Semaphore::new(load.outstanding_max.max(1)));
            let mut tasks = tokio::task::JoinSet::new();
            for offset in Arrivals::poisson(load.rate, load.duration, load.seed) {
                let due = start + offset;
                let now = Instant::now();
                if due > now + Duration::from_micros(200) {
                    tokio::time::sleep_until(due.into()).await;
                }
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let work = shared
                    .traffic
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .next_work();
                let shared = shared.clone();
                tasks.spawn(async move {
                    execute(shared, start, due, work).await;
                    drop(permit);
                });
                while let Some(done) = tasks.try_join_next() {
                    let _ = done;
                }
            }
            while tasks.join_next().await.is_some() {}
        }
    }
    reporter.abort();
    bar.finish_and_clear();
    start.elapsed()
}

/// Reads every account of the run from the server and checks it against what the tester was
/// told.
pub async fn audit(shared: &Arc<RunState>) -> crate::audit::AuditSummary {
    use crate::audit::{AuditSummary, Observed, authorizations_by_account, check_account_with};
    let ledger = std::mem::take(&mut *shared.ledger.lock().unwrap_or_else(|p| p.into_inner()));
    let by_account = authorizations_by_account(&ledger);
    let mut summary = AuditSummary::default();
    for index in 0..shared.population.accounts {
        let account = shared.population.account_id(index);
        let observed = async {
            Ok::<_, String>(Observed {
                balance: shared.target.balance(&account).await?,
                holds: shared.target.holds(&account).await?.holds,
                entries: shared.target.entries(&account).await?,
                lifecycle_events: shared.target.lifecycle_events(&account).await?,
                read_at_ms: unix_ms(),
            })
        }
        .await;
        match observed {
            Ok(observed) => {
                let of_account = by_account
                    .get(account.as_str())
                    .map_or(&[][..], Vec::as_slice);
                check_account_with(&ledger, of_account, &account, &observed, &mut summary)
            }
            Err(error) => summary
                .findings
                .push(format!("{account}: could not be read: {error}")),
        }
    }
    summary
}
