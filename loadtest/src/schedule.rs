//! When requests are sent: Poisson arrivals at a target rate (exponential gaps), fixed in
//! advance from a seed, so a stalled server cannot slow the schedule down (no coordinated
//! omission: latency is measured from the scheduled send time).

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Exp, Zipf};
use std::time::Duration;

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Offsets from the start at which requests are due.
pub struct Arrivals {
    rng: SmallRng,
    gaps: Exp<f64>,
    at: Duration,
    end: Duration,
}

impl Arrivals {
    /// `rate` requests per second for `duration`.
    pub fn poisson(rate: f64, duration: Duration, seed: u64) -> Self {
        let gaps = Exp::new(rate.max(1e-9)).expect("a positive rate");
        Self {
            rng: SmallRng::seed_from_u64(seed),
            gaps,
            at: Duration::ZERO,
            end: duration,
        }
    }
}

impl Iterator for Arrivals {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let gap: f64 = self.gaps.sample(&mut self.rng);
        self.at += Duration::from_secs_f64(gap);
        (self.at < self.end).then_some(self.at)
    }
}

/// Picks accounts: uniformly, or by a Zipf law with a few very busy accounts on top.
pub struct AccountPicker {
    rng: SmallRng,
    accounts: usize,
    zipf: Option<Zipf<f64>>,
    /// (how many hot accounts, the share of traffic they take).
    hot: Option<(usize, f64)>,
}

impl AccountPicker {
    pub fn uniform(accounts: usize, seed: u64) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(seed),
            accounts: accounts.max(1),
            zipf: None,
            hot: None,
        }
    }

    /// Zipf with exponent `s` over all accounts; `hot` accounts (the first ones) take `share`
    /// of all traffic besides.
    pub fn zipf(accounts: usize, s: f64, hot: usize, share: f64, seed: u64) -> Self {
        let accounts = accounts.max(1);
        Self {
            rng: SmallRng::seed_from_u64(seed),
            accounts,
            zipf: Some(Zipf::new(accounts as f64, s).expect("a valid Zipf law")),
            hot: (hot > 0).then_some((hot.min(accounts), share)),
        }
    }

    /// An account index in `0..accounts`.
    pub fn pick(&mut self) -> usize {
        if let Some((hot, share)) = self.hot
            && self.rng.random::<f64>() < share
        {
            return self.rng.random_range(0..hot);
        }
        match &self.zipf {
            Some(zipf) => (zipf.sample(&mut self.rng) as usize)
                .saturating_sub(1)
                .min(self.accounts - 1),
            None => self.rng.random_range(0..self.accounts),
        }
    }

    pub fn rng(&mut self) -> &mut SmallRng {
        &mut self.rng
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_arrivals_hold_the_rate_and_only_move_forward() {
        let arrivals: Vec<Duration> =
            Arrivals::poisson(10_000.0, Duration::from_secs(10), 7).collect();
        let count = arrivals.len() as f64;
        assert!(
            (count - 100_000.0).abs() < 2_000.0,
            "{count} arrivals for 10 s at 10k/s"
        );
        assert!(arrivals.windows(2).all(|w| w[0] <= w[1]));
        assert!(
            arrivals
                .last()
                .is_some_and(|last| *last < Duration::from_secs(10))
        );
        // Exponential gaps: about 1/e of them are longer than the mean gap (100 µs).
        let long = arrivals
            .windows(2)
            .filter(|w| w[1] - w[0] > Duration::from_micros(100))
            .count() as f64;
        let fraction = long / count;
        assert!((fraction - (-1.0f64).exp()).abs() < 0.02, "{fraction}");
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        let a: Vec<Duration> = Arrivals::poisson(500.0, Duration::from_secs(2), 3).collect();
        let b: Vec<Duration> = Arrivals::poisson(500.0, Duration::from_secs(2), 3).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn zipf_puts_most_traffic_on_the_head_and_hot_accounts_on_top() {
        let mut picker = AccountPicker::zipf(1_000, 1.1, 0, 0.0, 1);
        let mut counts = vec![0u32; 1_000];
        for _ in 0..100_000 {
            counts[picker.pick()] += 1;
        }
        assert!(counts[0] > counts[1] && counts[1] > counts[10] && counts[10] > counts[500]);
        let head: u32 = counts[..10].iter().sum();
        assert!(
            head > 30_000,
            "the top 1% of accounts take a large share: {head}"
        );

        let mut hot = AccountPicker::zipf(1_000, 1.1, 4, 0.5, 2);
        let mut on_hot = 0;
        for _ in 0..100_000 {
            if hot.pick() < 4 {
                on_hot += 1;
            }
        }
        assert!(
            on_hot > 50_000,
            "hot accounts take their share plus their Zipf rank: {on_hot}"
        );
    }

    #[test]
    fn uniform_picks_cover_every_account() {
        let mut picker = AccountPicker::uniform(50, 9);
        let mut seen = [false; 50];
        for _ in 0..5_000 {
            seen[picker.pick()] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }
}
