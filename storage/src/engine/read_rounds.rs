//! Linearizable reads on a follower share their rounds to the leader.
//!
//! A follower's linearizable read needs a read index the leader confirmed *after* the read
//! arrived (a round of heartbeats there); one `ReadIndex` call per read made every read pay
//! a peer round trip and the leader a heartbeat round (5,438 reads/s over two followers,
//! docs/BENCHMARKS.md). Here reads gather into a round while the previous one is in flight;
//! once it has answered, the gathered round is sent, one call for all of them. A read joins
//! only a round not yet sent, so the index it gets was confirmed after it arrived: as
//! linearizable as its own call would have been. If the read that sends a round is dropped
//! before the answer, the others of the round start again.

use std::future::Future;
use std::sync::Mutex;

use tokio::sync::{Semaphore, watch};

type Answer = Option<Result<u64, String>>;

/// The rounds of one follower's reads.
pub(crate) struct ReadRounds {
    /// The round reads join now: sent once the round in flight has answered.
    gathering: Mutex<Option<watch::Receiver<Answer>>>,
    /// One round in flight at a time.
    in_flight: Semaphore,
}

impl Default for ReadRounds {
    fn default() -> Self {
        Self {
            gathering: Mutex::new(None),
            in_flight: Semaphore::new(1),
        }
    }
}

enum Role {
    /// Another read sends the round; wait for its answer.
    Join(watch::Receiver<Answer>),
    /// This read opened the round and sends it.
    Send(watch::Sender<Answer>),
}

impl ReadRounds {
    /// A read index confirmed after this call began, from `ask` (one call to the leader),
    /// shared with the reads that gathered with this one.
    pub(crate) async fn read_index<F, Fut>(&self, ask: F) -> Result<u64, String>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<u64, String>>,
    {
        loop {
            let role = {
                let mut gathering = self.gathering.lock().unwrap_or_else(|p| p.into_inner());
                match gathering.as_ref() {
                    // A round still gathering, its sender alive: join it.
                    Some(round) if round.has_changed().is_ok() => Role::Join(round.clone()),
                    _ => {
                        let (sender, round) = watch::channel(None);
                        *gathering = Some(round);
                        Role::Send(sender)
                    }
                }
            };
            match role {
                Role::Join(mut round) => {
                    if let Ok(answer) = round.wait_for(Option::is_some).await
                        && let Some(answer) = answer.clone()
                    {
                        return answer;
                    }
                    // Its sender was dropped before the answer: gather again.
                }
                Role::Send(sender) => {
                    let _turn = self.in_flight.acquire().await.map_err(|e| e.to_string())?;
                    // Closed to newcomers from here: they gather into the next round.
                    *self.gathering.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    let answer = ask().await;
                    let _ = sender.send(Some(answer.clone()));
                    return answer;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    /// A leader whose read index is the number of rounds it has been asked, counted when the
    /// round is sent, answered after `takes`.
    fn leader(
        asked: Arc<AtomicU64>,
        takes: Duration,
    ) -> impl Fn() -> std::pin::Pin<Box<dyn Future<Output = Result<u64, String>> + Send>> {
        move || {
            let round = asked.fetch_add(1, Ordering::SeqCst) + 1;
            Box::pin(async move {
                tokio::time::sleep(takes).await;
                Ok(round)
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn many_reads_share_a_few_rounds() {
        let rounds = Arc::new(ReadRounds::default());
        let asked = Arc::new(AtomicU64::new(0));
        let reads: Vec<_> = (0..100)
            .map(|_| {
                let (rounds, asked) = (rounds.clone(), asked.clone());
                tokio::spawn(async move {
                    rounds
                        .read_index(leader(asked, Duration::from_millis(5)))
                        .await
                })
            })
            .collect();
        for read in reads {
            assert!(read.await.unwrap().is_ok());
        }
        let asked = asked.load(Ordering::SeqCst);
        assert!(
            (1..=2).contains(&asked),
            "{asked} rounds for 100 reads at once"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_never_takes_the_index_of_a_round_sent_before_it_arrived() {
        let rounds = Arc::new(ReadRounds::default());
        let asked = Arc::new(AtomicU64::new(0));
        let first = {
            let (rounds, asked) = (rounds.clone(), asked.clone());
            tokio::spawn(async move {
                rounds
                    .read_index(leader(asked, Duration::from_millis(50)))
                    .await
            })
        };
        // Round 1 is on its way when the second read arrives.
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        let second = rounds
            .read_index(leader(asked.clone(), Duration::from_millis(50)))
            .await;
        assert_eq!(first.await.unwrap(), Ok(1));
        assert_eq!(
            second,
            Ok(2),
            "the second read waited for a round of its own"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn reads_whose_sender_is_dropped_gather_again() {
        let rounds = Arc::new(ReadRounds::default());
        let asked = Arc::new(AtomicU64::new(0));
        let read = |takes| {
            let (rounds, asked) = (rounds.clone(), asked.clone());
            tokio::spawn(async move { rounds.read_index(leader(asked, takes)).await })
        };
        // A's round is in flight; B opens the next round and waits its turn; C joins B's.
        let a = read(Duration::from_millis(50));
        tokio::time::sleep(Duration::from_millis(1)).await;
        let b = read(Duration::from_millis(5));
        tokio::time::sleep(Duration::from_millis(1)).await;
        let c = read(Duration::from_millis(5));
        tokio::time::sleep(Duration::from_millis(1)).await;
        // B goes (its caller gave up) before sending: C gathers again and sends its own.
        b.abort();
        assert_eq!(a.await.unwrap(), Ok(1));
        assert_eq!(c.await.unwrap(), Ok(2));
        assert_eq!(asked.load(Ordering::SeqCst), 2);
    }
}
