//! Model check of the ordered commit hand-off's failure rule with loom (run: `RUSTFLAGS="--cfg
//! loom" cargo test -p tandem-storage --test loom --release`, which `.ci/run` does), on the
//! production `latch.rs`. The queue and the writes are modelled as the engine uses them: the
//! submitter checks the latch and queues; the committer takes batches in order, checks the
//! latch before each write, and trips it when a write fails. Loom explores every interleaving
//! and checks that nothing after a failed batch is ever written, and that batches are written
//! in submission order.
#![cfg(loom)]

use loom::sync::{Arc, Mutex};
use loom::thread;
use std::collections::VecDeque;
use tandem_storage::latch::FailureLatch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Written,
    Refused,
}

struct Model {
    latch: FailureLatch,
    queue: Mutex<VecDeque<u32>>,
    /// Batches in the order the "log" took them.
    written: Mutex<Vec<u32>>,
    answers: Mutex<Vec<(u32, Answer)>>,
}

impl Model {
    /// `Engine::submit`: refuse at once when the log failed, else queue.
    fn submit(&self, batch: u32) {
        if self.latch.is_tripped() {
            self.answers.lock().unwrap().push((batch, Answer::Refused));
        } else {
            self.queue.lock().unwrap().push_back(batch);
        }
    }

    /// One turn of the committer: take the oldest batch, refuse it if the log failed, else
    /// write it (batch `fails` fails, tripping the latch).
    fn commit_one(&self, fails: u32) -> bool {
        let Some(batch) = self.queue.lock().unwrap().pop_front() else {
            return false;
        };
        if self.latch.is_tripped() {
            self.answers.lock().unwrap().push((batch, Answer::Refused));
        } else if batch == fails {
            self.latch.trip();
            self.answers.lock().unwrap().push((batch, Answer::Refused));
        } else {
            self.written.lock().unwrap().push(batch);
            self.answers.lock().unwrap().push((batch, Answer::Written));
        }
        true
    }
}

#[test]
fn nothing_after_a_failed_batch_is_written_and_order_is_kept() {
    loom::model(|| {
        let model = Arc::new(Model {
            latch: FailureLatch::new(),
            queue: Mutex::new(VecDeque::new()),
            written: Mutex::new(Vec::new()),
            answers: Mutex::new(Vec::new()),
        });
        // Batch 1 is queued first; batch 2 fails when written; batch 3 races the failure.
        model.submit(1);
        model.submit(2);
        let submitter = {
            let model = model.clone();
            thread::spawn(move || model.submit(3))
        };
        let committer = {
            let model = model.clone();
            thread::spawn(move || {
                let mut turns = 0;
                while turns < 3 {
                    if model.commit_one(2) {
                        turns += 1;
                    } else {
                        thread::yield_now();
                        if model.answers.lock().unwrap().len() == 3 {
                            break;
                        }
                    }
                }
            })
        };
        submitter.join().unwrap();
        committer.join().unwrap();
        // Drain anything the committer left (it stops after three turns at most).
        while model.commit_one(2) {}
        let written = model.written.lock().unwrap().clone();
        assert_eq!(
            written,
            vec![1],
            "only the batch before the failure is written"
        );
        let answers = model.answers.lock().unwrap().clone();
        assert_eq!(answers.len(), 3, "every batch is answered");
        assert!(
            answers.contains(&(3, Answer::Refused)),
            "the batch after the failure is refused"
        );
    });
}
