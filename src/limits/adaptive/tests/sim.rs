//! A time-stepped (1 ms) model of N closed-loop senders against a rate-limited server,
//! after issue 23's model `adaptive_sim.py`: one shared GCRA paced at the estimate's
//! rate (reserving at the slot, no debt), and a shared cooldown until `Retry-After` (or,
//! without it, each throttled sender waits its own).

use std::ops::Range;
use std::time::Duration;

use super::AdaptiveRate;

/// A rate-limited server.
pub(super) trait Server {
    /// Time passes to `t` (seconds).
    fn tick(&mut self, t: f64, dt: f64);
    /// A request arrives at `t`: served, or throttled with a `Retry-After`.
    fn admit(&mut self, t: f64) -> Result<(), f64>;
}

/// A token bucket whose rate steps down for a while; its capacity is 0.1 s of the rate.
pub(super) struct TokenBucket {
    tokens: f64,
    high: f64,
    low: f64,
    /// When (seconds) the rate is `low`.
    low_during: Range<f64>,
    now: f64,
}

impl TokenBucket {
    /// `high` per second, `low` during `low_during`, full at the start.
    pub(super) fn stepping(high: f64, low: f64, low_during: Range<f64>) -> Self {
        TokenBucket {
            tokens: high * 0.1,
            high,
            low,
            low_during,
            now: 0.0,
        }
    }

    fn rate(&self, t: f64) -> f64 {
        if self.low_during.contains(&t) {
            self.low
        } else {
            self.high
        }
    }
}

impl Server for TokenBucket {
    fn tick(&mut self, t: f64, dt: f64) {
        let r = self.rate(t);
        self.tokens = (self.tokens + r * dt).min(r * 0.1);
        self.now = t;
    }

    fn admit(&mut self, _t: f64) -> Result<(), f64> {
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err((1.0 - self.tokens) / self.rate(self.now))
        }
    }
}

/// `limit` requests per fixed window of `window` seconds, windows starting at `offset`.
pub(super) struct FixedWindow {
    limit: u32,
    window: f64,
    offset: f64,
    current: i64,
    count: u32,
}

impl FixedWindow {
    pub(super) fn new(limit: u32, window: u64, offset: u64) -> Self {
        FixedWindow {
            limit,
            window: window as f64,
            offset: offset as f64,
            current: i64::MIN,
            count: 0,
        }
    }
}

impl Server for FixedWindow {
    fn tick(&mut self, _t: f64, _dt: f64) {}

    fn admit(&mut self, t: f64) -> Result<(), f64> {
        let index = ((t - self.offset) / self.window).floor();
        if index as i64 != self.current {
            self.current = index as i64;
            self.count = 0;
        }
        if self.count < self.limit {
            self.count += 1;
            Ok(())
        } else {
            Err(self.offset + (index + 1.0) * self.window - t)
        }
    }
}

/// Per second: (sent, served, throttled).
pub(super) type Stats = Vec<(u32, u32, u32)>;

/// The sums of `(sent, served, throttled)` over `seconds`.
pub(super) fn sum(seconds: &[(u32, u32, u32)]) -> (u32, u32, u32) {
    seconds
        .iter()
        .fold((0, 0, 0), |s, x| (s.0 + x.0, s.1 + x.1, s.2 + x.2))
}

struct InFlight {
    done: u64,
    sent: u64,
    result: Result<(), f64>,
}

/// The senders: how many, and how they take a 429.
#[derive(Clone, Copy)]
pub(super) struct Senders {
    pub(super) n: usize,
    /// A 429 holds every sender back until its `Retry-After` (else only its own).
    pub(super) cooldown: bool,
    /// The `Retry-After` is stated in whole seconds, rounded up (as HTTP does).
    pub(super) whole_seconds: bool,
}

impl Senders {
    /// `n` senders, a shared cooldown, the exact `Retry-After`.
    pub(super) fn shared(n: usize) -> Self {
        Senders {
            n,
            cooldown: true,
            whole_seconds: false,
        }
    }
}

/// Runs `senders` for `seconds`, paced by `estimate`.
pub(super) fn run(
    server: &mut impl Server,
    estimate: &mut AdaptiveRate,
    senders: Senders,
    seconds: u64,
) -> Stats {
    let n = senders.n;
    const RTT_MS: u64 = 20;
    let mut stats = vec![(0, 0, 0); seconds as usize];
    // Staggered starts over the first 50 ms.
    let mut ready: Vec<f64> = (0..n).map(|i| 0.05 * i as f64 / n as f64).collect();
    let mut in_flight: Vec<Option<InFlight>> = (0..n).map(|_| None).collect();
    let (mut tat, mut cooldown) = (0.0_f64, 0.0_f64);
    for ms in 0..seconds * 1000 {
        let t = ms as f64 / 1000.0;
        let now = Duration::from_millis(ms);
        server.tick(t, 0.001);
        for i in 0..n {
            if let Some(f) = in_flight[i].take_if(|f| f.done <= ms) {
                ready[i] = t;
                match f.result {
                    Ok(()) => estimate.succeeded(now),
                    Err(retry_after) => {
                        let retry_after = if senders.whole_seconds {
                            retry_after.ceil()
                        } else {
                            retry_after
                        };
                        if senders.cooldown {
                            cooldown = cooldown.max(t + retry_after);
                        } else {
                            ready[i] = t + retry_after;
                        }
                        let sent = Duration::from_millis(f.sent);
                        estimate.throttled(sent, now, Some(Duration::from_secs_f64(retry_after)));
                    }
                }
            }
            if in_flight[i].is_some() || ready[i] > t {
                continue;
            }
            if t < cooldown {
                ready[i] = cooldown;
                continue;
            }
            if let Some(rate) = estimate.rate() {
                if tat > t {
                    ready[i] = tat;
                    continue;
                }
                tat = tat.max(t) + 1.0 / rate;
            }
            let result = server.admit(t);
            let s = &mut stats[(ms / 1000) as usize];
            s.0 += 1;
            match result {
                Ok(()) => s.1 += 1,
                Err(_) => s.2 += 1,
            }
            in_flight[i] = Some(InFlight {
                done: ms + RTT_MS,
                sent: ms,
                result,
            });
        }
    }
    stats
}
