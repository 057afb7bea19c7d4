//! The committer: the queue's submissions ([`Slot`], [`Done`]) gathered into one log batch
//! per write (group commit), and the answering task that runs each batch's `Done`s in
//! commit order.

use super::*;

pub(super) struct Submission {
    write: Write,
    done: Done,
}

/// What one submission adds to the log.
pub(super) enum Write {
    /// Nothing: answered once everything submitted before it is.
    Barrier,
    Account(AccountRecord),
    Settings(Vec<Setting>),
}

/// What a submission's owner runs once its fate is known: the record's log index once it is
/// committed and applied, or why not. The engine runs these in submission order on its one
/// answering task (see `answer_loop`), so they must be short (publish, answer). Dropped
/// unrun (the engine stopped with it queued), it runs with [`CommitError::ShuttingDown`], so
/// every submission hears exactly once.
pub struct Done(Option<Finish>);

pub(super) type Finish = Box<dyn FnOnce(Result<u64, CommitError>) + Send>;

impl Done {
    pub fn new(done: impl FnOnce(Result<u64, CommitError>) + Send + 'static) -> Self {
        Self(Some(Box::new(done)))
    }

    pub(super) fn finish(mut self, result: Result<u64, CommitError>) {
        if let Some(done) = self.0.take() {
            done(result);
        }
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        if let Some(done) = self.0.take() {
            done(Err(CommitError::ShuttingDown));
        }
    }
}

/// A place in the log's queue, taken before the caller commits itself to what it submits:
/// an actor takes one before it applies a decision, so a full queue refuses the decision
/// without changing the account.
pub struct Slot<'a>(pub(super) mpsc::Permit<'a, Submission>);

impl Slot<'_> {
    /// Submits `record`, or a barrier if `None`; `done` runs once its fate is known, after
    /// every earlier submission's.
    pub fn submit(self, record: Option<AccountRecord>, done: Done) {
        let write = record.map_or(Write::Barrier, Write::Account);
        self.0.send(Submission { write, done });
    }

    /// Submits changes to the settings; `done` runs as for a record.
    pub(super) fn submit_settings(self, settings: Vec<Setting>, done: Done) {
        self.0.send(Submission {
            write: Write::Settings(settings),
            done,
        });
    }
}

/// A batch's `Done`s and what became of it, on their way to the answerer.
pub(super) type Answer = (Vec<Done>, Result<u64, CommitError>);

/// Runs each batch's `Done`s in commit order. Off the committer, so the committer hands the
/// next batch to the log while the last one's callers are answered; one task, so the order
/// holds. Everything the committer answers goes through here, barriers and refusals too.
pub(super) async fn answer_loop(mut answers: mpsc::UnboundedReceiver<Answer>) {
    while let Some((waiters, result)) = answers.recv().await {
        for waiter in waiters {
            waiter.finish(result.clone());
        }
    }
}

/// A write handed to openraft: its answer, who waits for it, and how many records it holds.
pub(super) type InFlight = (
    <openraft::impls::OneshotResponder<TandemRaft> as openraft::raft::responder::Responder<
        TandemRaft,
    >>::Receiver,
    Vec<Done>,
    u64,
    std::time::Instant,
);

pub(super) async fn commit_loop(
    raft: Raft<TandemRaft>,
    mut receiver: mpsc::Receiver<Submission>,
    answers: mpsc::UnboundedSender<Answer>,
    batch_records_max: usize,
    writes_in_flight_max: usize,
    failed: Arc<FailureLatch>,
    stats: Arc<EngineStats>,
) {
    // Writes handed to openraft and not yet answered, oldest first. openraft appends them in
    // the order they were handed over, so answering the oldest first keeps log order.
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    // The last index the log committed, for barriers with nothing before them in flight.
    let mut committed = 0u64;
    let mut open = true;
    while open || !in_flight.is_empty() {
        tokio::select! {
            biased;
            written = async { (&mut in_flight.front_mut().expect("checked").0).await }, if !in_flight.is_empty() => {
                let (_, waiters, count, handed) = in_flight.pop_front().expect("checked");
                let result = match written {
                    Ok(Ok(response)) => Ok(response.log_id.index),
                    Ok(Err(error)) => Err(refused(error)),
                    Err(_) => Err(CommitError::LogFailed("openraft dropped the write".to_string())),
                };
                match result {
                    Ok(index) => {
                        committed = index;
                        stats.write_times.record(index, handed);
                        stats.batches.fetch_add(1, Ordering::Relaxed);
                        stats.records.fetch_add(count, Ordering::Relaxed);
                        metrics::histogram!("tandem_commit_batch_records").record(count as f64);
                        metrics::histogram!("tandem_commit_seconds")
                            .record(handed.elapsed().as_secs_f64());
                        let _ = answers.send((waiters, Ok(index)));
                    }
                    Err(error @ CommitError::NotLeader { .. }) => {
                        // Not a failure of the log: the next write is tried (and refused the
                        // same way until this node leads again).
                        let _ = answers.send((waiters, Err(error)));
                    }
                    Err(error) => {
                        failed.trip();
                        tracing::error!(%error, "log write failed; refusing further batches");
                        let _ = answers.send((waiters, Err(error)));
                    }
                }
            }
            first = receiver.recv(), if open && in_flight.len() < writes_in_flight_max => {
                let Some(first) = first else {
                    open = false;
                    continue;
                };
                let mut pending = Vec::with_capacity(batch_records_max.min(1_024));
                pending.push(first);
                while pending.len() < batch_records_max {
                    match receiver.try_recv() {
                        Ok(next) => pending.push(next),
                        Err(_) => break,
                    }
                }
                if failed.is_tripped() {
                    let waiters = pending.into_iter().map(|s| s.done).collect();
                    let _ = answers.send((waiters, Err(CommitError::LogFailed("an earlier batch failed".into()))));
                    continue;
                }
                let mut records = Vec::with_capacity(pending.len());
                let mut settings = Vec::new();
                let mut waiters = Vec::with_capacity(pending.len());
                for submission in pending {
                    match submission.write {
                        Write::Barrier => {}
                        Write::Account(record) => records.push(record),
                        Write::Settings(changes) => settings.extend(changes),
                    }
                    waiters.push(submission.done);
                }
                if records.is_empty() && settings.is_empty() {
                    // Only barriers: they wait for the last write in flight, or for nothing.
                    match in_flight.back_mut() {
                        Some(last) => last.1.extend(waiters),
                        None => {
                            let _ = answers.send((waiters, Ok(committed)));
                        }
                    }
                    continue;
                }
                let count = records.len() as u64;
                match raft.client_write_ff(LogBatch {
                    records,
                    settings,
                    at_ms: tandem_core::Timestamp::now().millis(),
                }).await {
                    Ok(responder) => {
                        in_flight.push_back((responder, waiters, count, std::time::Instant::now()))
                    }
                    Err(error) => {
                        failed.trip();
                        let message = error.to_string();
                        let _ = answers.send((waiters, Err(CommitError::LogFailed(message))));
                    }
                }
            }
        }
    }
}
