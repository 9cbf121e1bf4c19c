//! Limits shared by every request through one [`TelEchoRetry`](crate::TelEchoRetry): the
//! retry budget and the rate-limit cooldown.
//!
//! Retries multiply load exactly when the server can least take it. Two mechanisms keep
//! that in check, both shared by all clones of one `TelEchoRetry` (one [`SharedLimits`]):
//!
//! - **Retry budget** ([`RetryBudget`]): retries may add at most a share of extra load
//!   (default 20 % of requests, plus a floor of 10 retries per second so that a quiet client
//!   can still retry), measured over a sliding window (default 10 s). When it is spent the
//!   response is returned with [`StopReason::Budget`](crate::StopReason::Budget) instead of
//!   being retried. The algorithm is Finagle's, as in tower's `TpsBudget`; tower's type is
//!   not reused because the core must build without tower and its constructor panics on
//!   out-of-range values, where ours clamps them.
//! - **Shared cooldown**: when a request gets a 429 with `Retry-After: T`, every request
//!   through the same `TelEchoRetry` waits until then before its next attempt, first
//!   attempts included (plus the policy's `retry_after_spread`), so that 100 concurrent
//!   requests do not each collect their own 429: the contract's limits are per API key. On
//!   by default for 429; see
//!   [`RetryPolicyBuilder::shared_cooldown`](crate::RetryPolicyBuilder::shared_cooldown).

use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::policy::RetryPolicy;

/// The retry budget's settings. See the [module docs](crate::limits).
///
/// ```
/// use std::time::Duration;
/// use telecho_retry::limits::RetryBudget;
/// use telecho_retry::RetryPolicy;
///
/// // Retries may add 10 % load, with a floor of 1 retry per second, over 30 s.
/// let policy = RetryPolicy::builder()
///     .retry_budget(RetryBudget::new(Duration::from_secs(30), 1, 0.1))
///     .build();
/// # let _ = policy;
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryBudget {
    ttl: Duration,
    min_per_sec: u32,
    retry_ratio: f32,
}

impl Default for RetryBudget {
    /// 10 s window, 10 retries per second floor, 20 % extra load (Finagle's defaults).
    fn default() -> Self {
        RetryBudget {
            ttl: Duration::from_secs(10),
            min_per_sec: 10,
            retry_ratio: 0.2,
        }
    }
}

impl RetryBudget {
    /// A budget over a sliding window of `ttl` (clamped to 1–60 s), allowing
    /// `min_per_sec` retries per second whatever the traffic, plus `retry_ratio` retries per
    /// request (clamped to 0–1000; `0.2` is 20 % extra load; NaN counts as 0).
    pub fn new(ttl: Duration, min_per_sec: u32, retry_ratio: f32) -> Self {
        let retry_ratio = if retry_ratio.is_nan() {
            0.0
        } else {
            retry_ratio.clamp(0.0, 1000.0)
        };
        RetryBudget {
            ttl: ttl.clamp(Duration::from_secs(1), Duration::from_secs(60)),
            min_per_sec: min_per_sec.min(i32::MAX as u32 / 60),
            retry_ratio,
        }
    }

    /// The window.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The floor, in retries per second.
    pub fn min_per_sec(&self) -> u32 {
        self.min_per_sec
    }

    /// Retries allowed per request.
    pub fn retry_ratio(&self) -> f32 {
        self.retry_ratio
    }
}

const SLOTS: usize = 10;

/// The running token bucket of a [`RetryBudget`]: deposits per request, withdrawals per
/// retry, kept in `SLOTS` slots of `ttl / SLOTS` each.
struct Budget {
    inner: Mutex<BudgetInner>,
    reserve: i64,
    window: Duration,
    deposit: i64,
    withdraw: i64,
}

struct BudgetInner {
    slots: [i64; SLOTS],
    current: i64,
    index: usize,
    since: Instant,
}

impl Budget {
    fn new(cfg: RetryBudget) -> Self {
        let (deposit, withdraw) = if cfg.retry_ratio <= 0.0 {
            (0, 1)
        } else if cfg.retry_ratio <= 1.0 {
            (1, (1.0 / cfg.retry_ratio) as i64)
        } else {
            (1000, ((1000.0 / cfg.retry_ratio) as i64).max(1))
        };
        Budget {
            inner: Mutex::new(BudgetInner {
                slots: [0; SLOTS],
                current: 0,
                index: 0,
                since: Instant::now(),
            }),
            reserve: i64::from(cfg.min_per_sec)
                .saturating_mul(cfg.ttl.as_secs() as i64)
                .saturating_mul(withdraw),
            window: cfg.ttl / SLOTS as u32,
            deposit,
            withdraw,
        }
    }

    fn lock(&self) -> MutexGuard<'_, BudgetInner> {
        self.lock_at(Instant::now())
    }

    /// Locks the bucket, first sliding its window to `now`.
    fn lock_at(&self, now: Instant) -> MutexGuard<'_, BudgetInner> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.expire(self.window, now);
        g
    }

    fn deposit(&self, now: Instant) {
        let mut g = self.lock_at(now);
        g.current = g.current.saturating_add(self.deposit);
    }

    fn withdraw(&self) -> bool {
        let mut g = self.lock();
        let balance = g
            .slots
            .iter()
            .fold(g.current, |a, s| a.saturating_add(*s))
            .saturating_add(self.reserve);
        if balance >= self.withdraw {
            g.current -= self.withdraw;
            true
        } else {
            false
        }
    }
}

impl BudgetInner {
    fn expire(&mut self, window: Duration, now: Instant) {
        let mut elapsed = now.saturating_duration_since(self.since);
        if elapsed < window {
            return;
        }
        self.slots[self.index] = std::mem::take(&mut self.current);
        let mut index = (self.index + 1) % SLOTS;
        let mut cleared = 0;
        while elapsed > window && cleared < SLOTS {
            self.slots[index] = 0;
            elapsed -= window;
            index = (index + 1) % SLOTS;
            cleared += 1;
        }
        // The slot that `current` will be committed to next holds data one window older
        // than the ttl: it no longer counts.
        self.slots[index] = 0;
        self.index = index;
        self.since = now;
    }
}

/// The instant until which requests hold back after a 429.
struct Cooldown {
    until: Mutex<Option<Instant>>,
}

impl Cooldown {
    fn extend(&self, until: Instant) {
        let mut g = self.until.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_none_or(|u| u < until) {
            *g = Some(until);
        }
    }

    fn remaining(&self) -> Option<Duration> {
        let g = self.until.lock().unwrap_or_else(|e| e.into_inner());
        let until = (*g)?;
        let now = Instant::now();
        (until > now).then(|| until - now)
    }
}

/// The budget and cooldown shared by every request of one
/// [`TelEchoRetry`](crate::TelEchoRetry). Adapters hold one in an `Arc` and start each
/// request's [`RetryState`](crate::RetryState) with
/// [`RetryState::with_limits`](crate::RetryState::with_limits).
pub struct SharedLimits {
    budget: Option<Budget>,
    cooldown: Option<Cooldown>,
}

impl SharedLimits {
    /// Limits as the policy configures them.
    pub fn new(policy: &RetryPolicy) -> Self {
        SharedLimits {
            budget: policy.budget().map(Budget::new),
            cooldown: policy.shared_cooldown().then(|| Cooldown {
                until: Mutex::new(None),
            }),
        }
    }

    /// Records a new logical request, started at `now` (a deposit into the budget). The
    /// caller passes its own clock reading so that starting a request reads the clock once.
    pub(crate) fn deposit(&self, now: Instant) {
        if let Some(b) = &self.budget {
            b.deposit(now);
        }
    }

    /// Takes one retry from the budget; `false` when it is spent.
    pub(crate) fn withdraw(&self) -> bool {
        self.budget.as_ref().is_none_or(Budget::withdraw)
    }

    /// Returns a retry taken with [`withdraw`](Self::withdraw) that was never sent (its
    /// request was cancelled while waiting).
    pub(crate) fn refund(&self) {
        if let Some(b) = &self.budget {
            let mut g = b.lock();
            g.current = g.current.saturating_add(b.withdraw);
        }
    }

    /// Holds every request back until `until` (if later than the current cooldown).
    pub(crate) fn cool_down_until(&self, until: Instant) {
        if let Some(c) = &self.cooldown {
            c.extend(until);
        }
    }

    /// How long requests must still hold back, if at all.
    pub fn cooldown_remaining(&self) -> Option<Duration> {
        self.cooldown.as_ref().and_then(Cooldown::remaining)
    }
}

impl fmt::Debug for SharedLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedLimits")
            .field("budget", &self.budget.is_some())
            .field("cooldown_remaining", &self.cooldown_remaining())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(budget: RetryBudget) -> SharedLimits {
        SharedLimits::new(&RetryPolicy::builder().retry_budget(budget).build())
    }

    #[tokio::test(start_paused = true)]
    async fn floor_allows_min_per_sec_times_ttl() {
        let l = limits(RetryBudget::new(Duration::from_secs(10), 1, 0.0));
        let allowed = (0..100).filter(|_| l.withdraw()).count();
        assert_eq!(allowed, 10);
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_buy_a_share_of_retries() {
        let l = limits(RetryBudget::new(Duration::from_secs(10), 0, 0.2));
        for _ in 0..50 {
            l.deposit(Instant::now());
        }
        let allowed = (0..100).filter(|_| l.withdraw()).count();
        assert_eq!(allowed, 10, "20 % of 50 requests");
    }

    #[tokio::test(start_paused = true)]
    async fn spent_budget_refills_as_the_window_slides() {
        let l = limits(RetryBudget::new(Duration::from_secs(10), 1, 0.0));
        assert_eq!((0..100).filter(|_| l.withdraw()).count(), 10);
        assert!(!l.withdraw());
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(!l.withdraw(), "withdrawals still inside the window");
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!((0..100).filter(|_| l.withdraw()).count(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn refund_gives_a_retry_back() {
        let l = limits(RetryBudget::new(Duration::from_secs(10), 1, 0.0));
        assert_eq!((0..100).filter(|_| l.withdraw()).count(), 10);
        l.refund();
        assert!(l.withdraw());
        assert!(!l.withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn no_budget_never_refuses() {
        let l = SharedLimits::new(&RetryPolicy::builder().without_retry_budget().build());
        assert!((0..10_000).all(|_| l.withdraw()));
    }

    #[test]
    fn out_of_range_settings_are_clamped() {
        let b = RetryBudget::new(Duration::ZERO, u32::MAX, f32::NAN);
        assert_eq!(b.ttl(), Duration::from_secs(1));
        assert_eq!(b.retry_ratio(), 0.0);
        let b = RetryBudget::new(Duration::from_secs(3600), 0, 5000.0);
        assert_eq!(b.ttl(), Duration::from_secs(60));
        assert_eq!(b.retry_ratio(), 1000.0);
    }

    #[tokio::test(start_paused = true)]
    async fn cooldown_keeps_the_latest_instant() {
        let l = SharedLimits::new(&RetryPolicy::default());
        assert_eq!(l.cooldown_remaining(), None);
        let now = Instant::now();
        l.cool_down_until(now + Duration::from_secs(5));
        l.cool_down_until(now + Duration::from_secs(2));
        assert_eq!(l.cooldown_remaining(), Some(Duration::from_secs(5)));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(l.cooldown_remaining(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn cooldown_can_be_turned_off() {
        let l = SharedLimits::new(&RetryPolicy::builder().shared_cooldown(false).build());
        l.cool_down_until(Instant::now() + Duration::from_secs(5));
        assert_eq!(l.cooldown_remaining(), None);
    }
}
