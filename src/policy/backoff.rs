//! The backoff schedule: nominal exponential delays and the jitter applied to them.
//!
//! The nominal delay before retry `n` (`n = 1, 2, …`) is `min(base * 2^(n-1), max)`: with the
//! TelEcho defaults (base 1 s, max 30 s) that is 1, 2, 4, 8, 16, 30, 30 … seconds, exactly
//! what you get with [`Jitter::None`]. Every other [`Jitter`] keeps each delay inside
//! `[base, max]`.
//!
//! ```
//! use std::time::Duration;
//! use telecho_retry::{Jitter, RetryPolicy};
//!
//! let policy = RetryPolicy::builder().jitter(Jitter::None).build();
//! let ladder: Vec<u64> = (1..=7).map(|n| policy.nominal_delay(n).as_secs()).collect();
//! assert_eq!(ladder, [1, 2, 4, 8, 16, 30, 30]);
//! ```

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// How a backoff delay is randomized around its nominal value.
///
/// Every variant keeps every delay inside `[base, max]`, and only [`Jitter::None`] is
/// deterministic. With `nominal = min(base * 2^(n-1), max)`:
///
/// | variant | delay before retry `n` |
/// |---|---|
/// | [`Proportional`](Jitter::Proportional) (default) | uniform in `[nominal/2, nominal*3/2]`, clamped to `[base, max]` |
/// | [`Full`](Jitter::Full) | uniform in `[base, nominal]` |
/// | [`Equal`](Jitter::Equal) | uniform in `[nominal/2, nominal]`, clamped to `[base, max]` |
/// | [`Decorrelated`](Jitter::Decorrelated) | uniform in `[base, min(max, 3 * previous delay)]` |
/// | [`None`](Jitter::None) | exactly `nominal` |
///
/// # Why `Proportional` is the default
///
/// The TelEcho contract promises 1 s, 2 s, 4 s … 30 s; `Proportional` keeps each delay
/// centred on that ladder (its mean is the nominal delay until the cap) while spreading
/// clients over a window as wide as the delay itself. Unlike full and equal jitter it
/// randomizes the first retry (`[1 s, 1.5 s]` rather than exactly 1 s, since neither may go
/// below `base`) and keeps randomizing at the cap (`[15 s, 30 s]`): a herd that is
/// synchronized at 30 s is still a herd. The retry-storm simulation
/// (`cargo run --release --example storm`) compares all five.
///
/// When `base == max` there is no room to spread and every variant gives `base`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Jitter {
    /// No randomness: exactly the nominal delay.
    None,
    /// Uniform in `[nominal/2, nominal*3/2]`, clamped to `[base, max]`. The default.
    #[default]
    Proportional,
    /// "Full jitter": uniform in `[base, nominal]`.
    Full,
    /// "Equal jitter": uniform in `[nominal/2, nominal]`, clamped to `[base, max]`.
    Equal,
    /// "Decorrelated jitter": uniform in `[base, min(max, 3 * previous delay)]`, where the
    /// first retry's previous delay is `base`.
    Decorrelated,
}

/// The nominal delay before retry `n`: `min(base * 2^(n-1), max)`, saturating.
/// `n = 0` is treated as `n = 1`.
pub(crate) fn nominal_delay(base: Duration, max: Duration, n: u32) -> Duration {
    let exp = n.saturating_sub(1).min(63);
    let factor = 1u64 << exp;
    let nanos = base.as_nanos().saturating_mul(u128::from(factor));
    let max_nanos = max.as_nanos();
    if nanos >= max_nanos {
        max
    } else {
        from_nanos(nanos)
    }
}

fn from_nanos(n: u128) -> Duration {
    let secs = n / 1_000_000_000;
    if secs > u128::from(u64::MAX) {
        return Duration::MAX;
    }
    Duration::new(secs as u64, (n % 1_000_000_000) as u32)
}

impl Jitter {
    /// The delay before retry `n`, given the previous retry's delay (used by
    /// `Decorrelated`; pass `base` for the first retry).
    pub(crate) fn delay(
        self,
        base: Duration,
        max: Duration,
        n: u32,
        previous: Duration,
        rng: &mut Rng,
    ) -> Duration {
        let nominal = nominal_delay(base, max, n);
        let (lo, hi) = match self {
            Jitter::None => return nominal,
            Jitter::Proportional => (nominal / 2, nominal.saturating_add(nominal / 2)),
            Jitter::Full => (base, nominal),
            Jitter::Equal => (nominal / 2, nominal),
            Jitter::Decorrelated => (base, previous.max(base).saturating_mul(3)),
        };
        let lo = lo.clamp(base, max);
        let hi = hi.clamp(base, max);
        rng.uniform(lo, hi)
    }
}

/// A small seedable pseudo-random source (SplitMix64): not cryptographic, only for
/// spreading retries. Seeded per request from the policy.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    /// No source yet (see [`is_unseeded`](Self::is_unseeded)): a state of zero, which
    /// [`new`](Self::new) never makes, so that an unseeded source takes no more room than a
    /// seeded one.
    pub(crate) const UNSEEDED: Rng = Rng(0);

    /// Seeded with `seed` (a seed of zero is taken as another fixed value).
    pub(crate) fn new(seed: u64) -> Self {
        Rng(if seed == 0 {
            0x5eed_5eed_5eed_5eed
        } else {
            seed
        })
    }

    /// This source, seeded first with `seed()` if it is [`UNSEEDED`](Self::UNSEEDED).
    pub(crate) fn seeded_with(&mut self, seed: impl FnOnce() -> Rng) -> &mut Rng {
        if self.0 == 0 {
            *self = seed();
        }
        self
    }

    /// A seed that differs between processes and between calls.
    pub(crate) fn random_seed() -> u64 {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(0x07e1_ec40);
        h.finish()
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi]` (nanosecond resolution); `lo` when `hi <= lo`.
    pub(crate) fn uniform(&mut self, lo: Duration, hi: Duration) -> Duration {
        if hi <= lo {
            return lo;
        }
        let span = (hi - lo).as_nanos().min(u128::from(u64::MAX) - 1) as u64 + 1;
        let r = ((u128::from(self.next_u64()) * u128::from(span)) >> 64) as u64;
        lo + Duration::from_nanos(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn nominal_ladder_is_the_contract() {
        let got: Vec<Duration> = (1..=8).map(|n| nominal_delay(S(1), S(30), n)).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 30, 30, 30].map(S));
        assert_eq!(nominal_delay(S(1), S(30), 0), S(1));
        assert_eq!(nominal_delay(S(1), S(30), u32::MAX), S(30));
        assert_eq!(
            nominal_delay(Duration::MAX, Duration::MAX, 64),
            Duration::MAX
        );
    }

    #[test]
    fn none_is_exact() {
        let mut rng = Rng::new(1);
        for n in 1..10 {
            assert_eq!(
                Jitter::None.delay(S(1), S(30), n, S(1), &mut rng),
                nominal_delay(S(1), S(30), n)
            );
        }
    }

    #[test]
    fn every_jitter_stays_in_bounds_over_many_seeds() {
        for jitter in [
            Jitter::Proportional,
            Jitter::Full,
            Jitter::Equal,
            Jitter::Decorrelated,
        ] {
            for seed in 0..500 {
                let mut rng = Rng::new(seed);
                let mut prev = S(1);
                for n in 1..=12 {
                    let d = jitter.delay(S(1), S(30), n, prev, &mut rng);
                    assert!(
                        d >= S(1) && d <= S(30),
                        "{jitter:?} seed {seed} n {n}: {d:?}"
                    );
                    prev = d;
                }
            }
        }
    }

    #[test]
    fn proportional_randomizes_first_retry_and_the_cap() {
        let mut first = Vec::new();
        let mut capped = Vec::new();
        for seed in 0..200 {
            let mut rng = Rng::new(seed);
            first.push(Jitter::Proportional.delay(S(1), S(30), 1, S(1), &mut rng));
            capped.push(Jitter::Proportional.delay(S(1), S(30), 9, S(1), &mut rng));
        }
        assert!(first
            .iter()
            .all(|d| *d >= S(1) && *d <= Duration::from_millis(1500)));
        assert!(capped.iter().all(|d| *d >= S(15) && *d <= S(30)));
        first.sort();
        first.dedup();
        capped.sort();
        capped.dedup();
        assert!(first.len() > 190, "first retry not spread: {}", first.len());
        assert!(
            capped.len() > 190,
            "capped retry not spread: {}",
            capped.len()
        );
    }

    #[test]
    fn same_seed_same_delays() {
        let run = |seed| {
            let mut rng = Rng::new(seed);
            (1..8)
                .map(|n| Jitter::Proportional.delay(S(1), S(30), n, S(1), &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    #[test]
    fn base_equal_to_max_is_constant() {
        let mut rng = Rng::new(3);
        for j in [Jitter::Proportional, Jitter::Full, Jitter::Decorrelated] {
            assert_eq!(j.delay(S(5), S(5), 3, S(5), &mut rng), S(5));
        }
    }

    #[test]
    fn uniform_handles_huge_spans() {
        let mut rng = Rng::new(9);
        let d = rng.uniform(Duration::ZERO, Duration::MAX);
        assert!(d <= Duration::MAX);
    }
}
