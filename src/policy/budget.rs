//! [`RetryBudget`]: the retry budget's settings (the running budget is in
//! [`limits`](crate::limits)).

use std::time::Duration;

/// The retry budget's settings. See the [limits module docs](crate::limits).
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
