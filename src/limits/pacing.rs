//! [`Pacing`]: the settings of client-side pacing.

use std::time::Duration;

/// Client-side pacing: at most `requests` attempts per `period` to each origin, first
/// attempts and retries alike, spaced evenly (a GCRA, from the `governor` crate in process
/// or a Lua script in Redis for a fleet). An attempt whose slot lies ahead waits for it,
/// within the request's deadline; one whose slot lies further ahead than the policy's
/// [`max_retry_after`](crate::RetryPolicyBuilder::max_retry_after) fails at once with
/// [`RetryErrorKind::RateLimited`](crate::RetryErrorKind::RateLimited), carrying the wait.
///
/// Set it at (or, better, a little under) the server's limit (TelEcho: the API key's
/// `rate_limit_per_minute`; a server counting in fixed windows may see an attempt sent at
/// the end of one window arrive in the next, one too many there) and the
/// requests of every clone of one `TelEchoRetry` (or of every replica sharing a
/// fleet store, [`LimitsBuilder::redis`](crate::limits::LimitsBuilder::redis)) stay under it: a burst of 100 concurrent requests is
/// spread over the period instead of meeting 99 429s.
///
/// ```
/// use std::time::Duration;
/// use telecho_retry::limits::{Limits, Pacing};
///
/// // The key allows 600 requests a minute: one every 100 ms.
/// let pacing = Pacing::new(600, Duration::from_secs(60));
/// assert_eq!(pacing.interval(), Duration::from_millis(100));
/// let limits = Limits::builder().pacing(pacing).build();
/// # let _ = limits;
/// ```
///
/// The burst (how many attempts may go at once after a quiet spell) is 1 by default. A
/// burst of `b` lets up to `requests + b - 1` attempts into one period: with a server that
/// counts requests in windows (fixed or sliding), any burst above 1 at the server's rate
/// can meet 429s.
///
/// The spacing holds at the moment attempts are sent. An attempt takes its slot once the
/// inner service is ready, and waits for the slot holding what the service's `poll_ready`
/// reserved (a `ConcurrencyLimit` permit, a `Buffer` slot below the retry layer): attempts
/// that queued for a busy inner service still go out one interval apart, and while one
/// waits for its slot, that capacity is not free for other requests (to other origins
/// too). A rate-limit cooldown that began during the wait is seen before the slot is
/// taken: the attempt gives back the reservation and its place, waits out the cooldown,
/// and then takes a slot.
///
/// [`Pacing::adaptive`] learns the rate instead of being told it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pacing {
    requests: u32,
    period: Duration,
    burst: u32,
    adaptive: bool,
}

impl Pacing {
    /// At most `requests` attempts per `period`. `requests` is at least 1 and `period`
    /// between 1 ms and [`MAX_PERIOD`](Self::MAX_PERIOD) (values outside are brought to
    /// these); the interval between attempts is at least 1 µs.
    pub fn new(requests: u32, period: Duration) -> Self {
        Pacing {
            requests: requests.max(1),
            period: period.clamp(Duration::from_millis(1), Self::MAX_PERIOD),
            burst: 1,
            adaptive: false,
        }
    }

    /// Pacing whose rate is learned, per origin, from what the server answers; the
    /// default of [`Limits::builder`](crate::limits::Limits::builder). Off until the
    /// origin's first 429 (or a quota header that binds), then at an estimate of the rate
    /// the server allows:
    ///
    /// - a 429 cuts the estimate to 70 % once per congestion event (a 429 to a request sent
    ///   before the cut, or within its `Retry-After` after it, at most 250 ms, does not cut
    ///   again); the first cut, with only the start-up burst to go by, then grows as fast
    ///   as the send rate follows (slow start);
    /// - successes regrow it along the CUBIC curve, back to the rate of the last cut in a
    ///   few seconds and probing above it after that;
    /// - a quota the server states (`RateLimit: "default";r=N;t=T`,
    ///   `RateLimit-Remaining`/`-Reset`, `X-RateLimit-Remaining`/`-Reset`) sets it at once,
    ///   at `N / T` less 5 % (at least 0.5/s), once a tenth of the stated limit is left or
    ///   the measured send rate would spend it within 10 s (a quota far from spent paces
    ///   nothing; with no limit stated, only the send rate tells), until it is refilled;
    ///   nothing left: one request a second after the reset.
    ///
    /// With [`LimitsBuilder::redis`](crate::limits::LimitsBuilder::redis) the fleet keeps
    /// one estimate per origin in Redis, cut once per event whichever replicas see it.
    ///
    /// Against a token bucket stepping 50 → 20 → 50 requests per second, 16 callers
    /// without pacing were served 9–18 % of what the limit allowed (the shared cooldown
    /// stops every request for each `Retry-After`); with adaptive pacing 67–78 %, and
    /// 95–98 % with
    /// [`shared_cooldown(false)`](crate::limits::LimitsBuilder::shared_cooldown), at
    /// most 2.1 % of sends answered 429 either way (four runs of
    /// `tests/all/adaptive_pacing/stepping.rs`). So pair it with `shared_cooldown(false)` when
    /// the server's `Retry-After` is coarser than its limit (whole seconds on a
    /// per-second limit): the pacer then holds the rate and only the throttled requests
    /// wait. Keep the cooldown for fixed windows that answer `Retry-After` until the window
    /// ends. When you know the limit, [`Pacing::new`] a little under it meets no 429 at
    /// all.
    ///
    /// ```
    /// use telecho_retry::limits::{Limits, Pacing};
    ///
    /// let pacing = Pacing::adaptive();
    /// assert!(pacing.is_adaptive());
    /// let limits = Limits::builder()
    ///     .pacing(pacing)
    ///     .shared_cooldown(false)
    ///     .build();
    /// # let _ = limits;
    /// ```
    pub fn adaptive() -> Self {
        Pacing {
            adaptive: true,
            ..Pacing::new(Self::ADAPTIVE_MAX_RATE, Duration::from_secs(1))
        }
    }

    /// The highest rate adaptive pacing reaches, per second.
    const ADAPTIVE_MAX_RATE: u32 = 10_000;

    /// Whether the rate is learned ([`Pacing::adaptive`]). Its
    /// [`requests`](Self::requests) and [`period`](Self::period) are then the highest rate
    /// it may reach.
    pub fn is_adaptive(&self) -> bool {
        self.adaptive
    }

    /// The longest period: a year (which keeps every GCRA quantity within 64-bit
    /// nanoseconds).
    pub const MAX_PERIOD: Duration = Duration::from_secs(365 * 86_400);

    /// At most `requests` attempts per minute.
    pub fn per_minute(requests: u32) -> Self {
        Pacing::new(requests, Duration::from_secs(60))
    }

    /// Lets up to `burst` attempts go at once after a quiet spell (at least 1, at most
    /// `requests`). Adaptive pacing lets one go at a time.
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = burst.clamp(1, self.requests);
        self
    }

    /// The attempts allowed per period.
    pub fn requests(&self) -> u32 {
        self.requests
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The burst (1 by default).
    pub fn burst_size(&self) -> u32 {
        self.burst
    }

    /// The time between two attempts at the steady rate: `period / requests`, at least 1 µs.
    pub fn interval(&self) -> Duration {
        (self.period / self.requests).max(Duration::from_micros(1))
    }

    /// The same pacing at `share` of the rate (`0.25`: a quarter of the requests per
    /// period, and of the burst, at least 1), as a replica paces alone when the fleet's
    /// store cannot be reached. `share` is clamped to 0.001–1 (NaN counts as 1).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn scaled(&self, share: f64) -> Self {
        let share = if share.is_nan() {
            1.0
        } else {
            share.clamp(0.001, 1.0)
        };
        // The same interval times 1 / share, as requests per the period stretched to fit.
        let interval = self.interval().as_secs_f64() / share;
        let period = Duration::try_from_secs_f64(interval * f64::from(self.requests))
            .unwrap_or(Self::MAX_PERIOD);
        // N replicas each at 1 / N of the burst burst no more than the fleet would.
        let burst = (f64::from(self.burst) * share).floor().max(1.0) as u32;
        Pacing {
            adaptive: self.adaptive,
            ..Pacing::new(self.requests, period).burst(burst)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_are_raised_not_panicked_on() {
        let p = Pacing::new(0, Duration::ZERO).burst(0);
        assert_eq!(
            (p.requests(), p.period(), p.burst_size()),
            (1, Duration::from_millis(1), 1)
        );
        let p = Pacing::new(u32::MAX, Duration::from_millis(1));
        assert_eq!(p.interval(), Duration::from_micros(1));
        assert_eq!(
            Pacing::new(10, Duration::from_secs(1))
                .burst(50)
                .burst_size(),
            10
        );
        let huge = Pacing::new(1000, Duration::MAX).burst(1000);
        assert_eq!(huge.period(), Pacing::MAX_PERIOD);
        assert_eq!(
            Pacing::new(1, Duration::MAX).scaled(0.001).period(),
            Pacing::MAX_PERIOD
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_longest_pacing_makes_a_pacer_without_panicking() {
        for p in [
            Pacing::new(1000, Duration::MAX).burst(1000),
            Pacing::new(1, Duration::MAX).scaled(0.001),
            Pacing::new(u32::MAX, Duration::MAX).burst(u32::MAX),
        ] {
            let pacer = crate::limits::pacer::LocalPacer::new(p);
            assert!(matches!(
                pacer.pace(Duration::ZERO),
                crate::limits::Pace::Go
            ));
        }
    }

    #[test]
    fn a_share_stretches_the_interval() {
        let p = Pacing::new(50, Duration::from_secs(1));
        assert_eq!(p.scaled(0.25).interval(), Duration::from_millis(80));
        assert_eq!(p.scaled(f64::NAN), p);
        assert_eq!(p.scaled(7.0), p);
    }

    #[test]
    fn a_share_scales_the_burst_too() {
        let p = Pacing::new(40, Duration::from_secs(1)).burst(8);
        assert_eq!(
            p.scaled(0.25).burst_size(),
            2,
            "four replicas burst 8 together"
        );
        assert_eq!(p.scaled(0.1).burst_size(), 1, "never below one");
        assert_eq!(p.scaled(1.0).burst_size(), 8);
    }
}
