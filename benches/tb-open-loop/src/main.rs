//! TigerBeetle driven open loop, the way `tandem-loadtest` drives Tandem: Poisson arrivals at
//! RATE units of work per second for SECONDS, each unit a pending transfer (a hold) on one of
//! HOT accounts and then its full post (a clearing), latency counted from the unit's scheduled
//! time for the hold and from its send for the post. One shared client, which batches
//! concurrent calls, as the peer's closed-loop benchmark uses it.
//!
//! Usage: `TB_ADDRESSES=127.0.0.1:3390 tb-open-loop RATE SECONDS HOT`
//! Prints one line in the peer benchmark's format:
//! `conc=open rate=R hot=H mode=lifecycle transfers/s=T p50=Xms p99=Yms n=N`

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tigerbeetle as tb;

/// xorshift64*: enough randomness for arrival gaps, no dependency.
struct Gaps(u64);

impl Gaps {
    /// The next exponential gap, in seconds, of a Poisson process at `rate` per second.
    fn next(&mut self, rate: f64) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
        let uniform = (bits as f64 + 0.5) / (1u64 << 53) as f64;
        -uniform.ln() / rate
    }
}

/// Whether a `create_transfers` call created every transfer it carried.
fn created<E>(result: Result<Vec<tb::CreateTransferResult>, E>) -> bool {
    result.is_ok_and(|r| {
        r.iter()
            .all(|x| x.status == tb::CreateTransferStatus::Created)
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: tb-open-loop RATE SECONDS HOT";
    let rate: f64 = args.get(1).and_then(|a| a.parse().ok()).expect(usage);
    let seconds: f64 = args.get(2).and_then(|a| a.parse().ok()).expect(usage);
    let hot: usize = args.get(3).and_then(|a| a.parse().ok()).expect(usage);
    let addresses = std::env::var("TB_ADDRESSES").unwrap_or_else(|_| "127.0.0.1:3300".into());
    let client = Arc::new(tb::Client::new(0, &addresses).expect("client"));
    // HOT spending accounts that may not go below zero, and one funding account.
    let ids: Vec<u128> = (0..=hot).map(|_| tb::id()).collect();
    let accounts: Vec<tb::Account> = ids
        .iter()
        .enumerate()
        .map(|(i, &id)| tb::Account {
            id,
            ledger: 1,
            code: 1,
            flags: if i < hot {
                tb::AccountFlags::DebitsMustNotExceedCredits
            } else {
                tb::AccountFlags::empty()
            },
            ..Default::default()
        })
        .collect();
    for chunk in accounts.chunks(100) {
        client.create_accounts(chunk).await.expect("accounts");
    }
    let funding: Vec<tb::Transfer> = (0..hot)
        .map(|i| tb::Transfer {
            id: tb::id(),
            debit_account_id: ids[hot],
            credit_account_id: ids[i],
            amount: 1u128 << 60,
            ledger: 1,
            code: 1,
            ..Default::default()
        })
        .collect();
    for chunk in funding.chunks(100) {
        client.create_transfers(chunk).await.expect("funding");
    }

    let latencies = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let failures = Arc::new(Mutex::new(0u64));
    let mut gaps = Gaps(0x9e37_79b9_7f4a_7c15);
    let start = Instant::now();
    let end = Duration::from_secs_f64(seconds);
    let mut offset = Duration::ZERO;
    let mut tasks = tokio::task::JoinSet::new();
    let mut unit = 0usize;
    loop {
        offset += Duration::from_secs_f64(gaps.next(rate));
        if offset >= end {
            break;
        }
        let due = start + offset;
        tokio::time::sleep_until(due.into()).await;
        let (client, latencies, failures) = (client.clone(), latencies.clone(), failures.clone());
        let account = ids[unit % hot];
        let funding = ids[hot];
        unit += 1;
        tasks.spawn(async move {
            let hold = tb::id();
            let result = client
                .create_transfers(&[tb::Transfer {
                    id: hold,
                    debit_account_id: account,
                    credit_account_id: funding,
                    amount: 100,
                    ledger: 1,
                    code: 1,
                    timeout: 3600,
                    flags: tb::TransferFlags::Pending,
                    ..Default::default()
                }])
                .await;
            if !created(result) {
                *failures.lock().unwrap() += 1;
                return;
            }
            let held = due.elapsed();
            let sent = Instant::now();
            let result = client
                .create_transfers(&[tb::Transfer {
                    id: tb::id(),
                    pending_id: hold,
                    debit_account_id: account,
                    credit_account_id: funding,
                    amount: 100,
                    ledger: 1,
                    code: 1,
                    flags: tb::TransferFlags::PostPendingTransfer,
                    ..Default::default()
                }])
                .await;
            let posted = sent.elapsed();
            let mut all = latencies.lock().unwrap();
            all.push(held);
            if created(result) {
                all.push(posted);
            } else {
                *failures.lock().unwrap() += 1;
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = start.elapsed().as_secs_f64();
    let mut all = std::mem::take(&mut *latencies.lock().unwrap());
    all.sort();
    let failures = *failures.lock().unwrap();
    assert!(!all.is_empty(), "no transfer was created");
    let p = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)].as_secs_f64() * 1e3;
    println!(
        "conc=open rate={rate:.0} hot={hot} mode=lifecycle transfers/s={:.0} p50={:.2}ms p99={:.2}ms n={} failed={failures}",
        all.len() as f64 / elapsed,
        p(0.5),
        p(0.99),
        all.len()
    );
}
