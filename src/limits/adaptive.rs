//! [`AdaptiveRate`]: the rate a server allows, estimated from what it answers, for pacing
//! that finds the limit by itself. One per origin in process (a fleet keeps one in Redis,
//! in `redis::learn`, by the same rules); pure and clock-injected: every call passes the time as a `Duration`
//! since an epoch the caller chooses, so it can be driven by tokio's clock or a test's.
//!
//! - It starts off (no pacing).
//! - A 429 cuts the rate once per congestion event: `rate × β` (β = 0.7) of the lower of
//!   the rate and the measured send rate. 429s for requests *sent* before the last cut
//!   (or within the 429's `Retry-After` after it, at most 250 ms) belong to the event
//!   already answered and are ignored, so N tasks or replicas that
//!   see the 429s of one burst cut once (as the AWS SDKs' adaptive limiter and the model
//!   `gcra_cubic` in the fleet pacing model `adaptive_sim.py` do).
//! - Successes regrow it along the CUBIC curve `W(t) = C (t − K)³ + W_max` (t from the
//!   end of the 429's `Retry-After` when the shared cooldown holds requests for it), with
//!   `K = ∛(W_max (1 − β) / C)` and `C = 0.4`: back to the rate of the last cut after `K`
//!   seconds, probing above it after that. It never grows past twice the measured send
//!   rate (so a quiet client does not build up a rate it never tried) and never falls
//!   below a floor (0.5/s).
//! - The first cut has no rate to go by, only the send rate measured around the first
//!   429 (a burst at start-up measures low). Until the next cut the rate grows as fast as
//!   that bound allows, doubling with the send rate (TCP's slow start), not along the
//!   curve.
//! - A quota from the response headers ([`Quota`]) sets the rate at once: `remaining`
//!   over `reset`, less a margin; better than probing. It binds once a tenth of it is
//!   left (nothing, if no limit is stated), or sooner when the measured send rate would
//!   spend it within 10 s.
//!
//! Nothing here waits or owes: the rate is what a pacer reads for the next slot, so a rate
//! that drops does not put debt on callers already waiting.

use std::time::Duration;

use super::quota::Quota;

/// The settings of an [`AdaptiveRate`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct AdaptiveConfig {
    /// The multiplicative decrease on a congestion event.
    pub(crate) beta: f64,
    /// CUBIC's scaling constant `C`.
    pub(crate) scale: f64,
    /// The lowest rate, per second.
    pub(crate) min_rate: f64,
    /// The highest rate, per second.
    pub(crate) max_rate: f64,
    /// Regrowth stops at this many times the measured send rate.
    pub(crate) growth_bound: f64,
    /// The share of a quota's rate left unused, for the requests in
    /// flight and clock skew.
    pub(crate) margin: f64,
    /// Whether a 429's `Retry-After` holds every request back (the shared cooldown): then
    /// regrowth starts when it ends, not during it.
    pub(crate) held: bool,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        AdaptiveConfig {
            beta: 0.7,
            scale: 0.4,
            min_rate: 0.5,
            max_rate: 10_000.0,
            growth_bound: 2.0,
            margin: 0.05,
            held: true,
        }
    }
}

/// The estimated rate of one origin (see the module docs).
#[derive(Clone, Debug)]
pub(crate) struct AdaptiveRate {
    config: AdaptiveConfig,
    /// Requests per second; `None`: off.
    rate: Option<f64>,
    /// The rate before the last cut (CUBIC's `W_max`).
    w_max: f64,
    /// CUBIC's `K` for `w_max`, in seconds.
    k: f64,
    /// When the last cut was, in seconds: 429s for requests sent before are ignored.
    last_cut: Option<f64>,
    /// When the CUBIC curve starts (the last cut, or the end of a hold), in seconds.
    growth_from: f64,
    /// Whether the rate came from a first cut, made with no rate to go by: it then grows
    /// as fast as the send rate allows (slow start, as TCP's), until the next cut.
    slow_start: bool,
    /// What the quota that paces had left, if the rate is a quota's (lifted when the
    /// quota is refilled with plenty).
    quota_left: Option<u64>,
    /// The last quota seen: what it had left, and the earliest its reset was said to be
    /// (seconds since the epoch). A reset is stated in whole seconds, rounded: each
    /// response bounds it anew, and the tightest bound of one window is the nearest.
    quota_seen: Option<(u64, f64)>,
    sent: SendRate,
}

impl AdaptiveRate {
    /// Off: no pacing until the first 429 or quota.
    pub(crate) fn new(config: AdaptiveConfig) -> Self {
        AdaptiveRate {
            config,
            rate: None,
            w_max: 0.0,
            k: 0.0,
            last_cut: None,
            growth_from: 0.0,
            slow_start: false,
            quota_left: None,
            quota_seen: None,
            sent: SendRate::default(),
        }
    }

    /// The rate to pace at, per second; `None`: do not pace.
    pub(crate) fn rate(&self) -> Option<f64> {
        self.rate
    }

    /// The interval between slots at [`rate`](Self::rate).
    pub(crate) fn interval(&self) -> Option<Duration> {
        // `None` rather than a panic should a configured floor of zero ever be reached.
        self.rate
            .and_then(|r| Duration::try_from_secs_f64(1.0 / r).ok())
    }

    /// A response that was not throttled arrived at `now`.
    pub(crate) fn succeeded(&mut self, now: Duration) {
        let now = now.as_secs_f64();
        self.sent.record(now);
        let Some(rate) = self.rate else { return };
        if now < self.growth_from {
            return; // held back by a 429's `Retry-After`
        }
        let t = now - self.growth_from - self.k;
        let bound = self.config.growth_bound * self.sent.estimate();
        let target = if self.slow_start {
            bound
        } else {
            (self.config.scale * t * t * t + self.w_max).min(bound)
        }
        .min(self.config.max_rate);
        if target > rate {
            self.rate = Some(target);
        }
    }

    /// A 429 arrived at `now` for a request sent at `sent_at`, with the server's
    /// `Retry-After` if it gave one. Cuts the rate unless the request was sent before the
    /// last cut (the same congestion event); whether it did.
    pub(crate) fn throttled(
        &mut self,
        sent_at: Duration,
        now: Duration,
        retry_after: Option<Duration>,
    ) -> bool {
        let (sent_at, now) = (sent_at.as_secs_f64(), now.as_secs_f64());
        self.sent.record(now);
        let grace = event_grace(retry_after).as_secs_f64();
        if self.last_cut.is_some_and(|cut| sent_at < cut + grace) {
            return false;
        }
        self.last_cut = Some(now);
        self.quota_left = None;
        let measured = self.sent.estimate();
        self.slow_start = self.rate.is_none();
        let before = match self.rate {
            Some(rate) if measured > 0.0 => rate.min(measured),
            Some(rate) => rate,
            None => measured,
        };
        let (min, max) = (self.config.min_rate, self.config.max_rate);
        self.rate = Some((before * self.config.beta).clamp(min, max));
        self.set_w_max(before.clamp(min, max));
        // With the shared cooldown, the curve starts when the server lets requests through
        // again: the time held back by its `Retry-After` (nothing sent) is no time to regrow
        // in.
        let held = retry_after.filter(|_| self.config.held).unwrap_or_default();
        self.growth_from = now + held.min(MAX_HOLD).as_secs_f64();
        true
    }

    /// The server said what is left: `quota.remaining` until `quota.reset`. Whether the
    /// quota binds: it does when
    ///
    /// - a tenth or less of a stated limit is left, or nothing, or
    /// - at the measured send rate, what is left would be spent within [`QUOTA_HORIZON`]
    ///   (or before the reset, if sooner), or
    /// - it paced already and has not been refilled since.
    ///
    /// A quota that binds paces at `remaining / reset`, less the margin (the reset being the
    /// nearest that the responses of this window stated), from `now`, regrowing from there;
    /// nothing left: one request a second after the reset. A quota far from spent paces
    /// nothing (an hourly quota of 5000 does not spread every short burst at 1.3/s); one
    /// refilled with plenty (a new window) lifts its pacing.
    pub(crate) fn learned_from_quota(&mut self, quota: &Quota, now: Duration) -> bool {
        let remaining = quota.remaining;
        let now = now.as_secs_f64();
        let stated = now + quota.reset.as_secs_f64();
        // The same window (nothing refilled, the reset no more than a second later): the
        // nearest reset stated so far.
        let reset_at = match self.quota_seen {
            Some((left, at)) if remaining <= left && stated < at + 1.0 => at.min(stated),
            _ => stated,
        };
        self.quota_seen = Some((remaining, reset_at));
        let reset = reset_at - now;
        // Without a stated limit, only the send rate tells whether what is left is much.
        let plenty = remaining > 0
            && quota
                .limit
                .is_none_or(|limit| remaining.saturating_mul(10) > limit);
        let horizon = reset.min(QUOTA_HORIZON.as_secs_f64());
        let running_out = (remaining as f64) < self.sent.estimate() * horizon;
        let refilled = self.quota_left.is_none_or(|left| remaining > left);
        if plenty && !running_out && refilled {
            if self.quota_left.take().is_some() {
                self.rate = None;
            }
            return false;
        }
        if reset <= 0.0 {
            return false; // the window ends now: it says nothing about the next
        }
        // `remaining` as f64 may round: it is an estimate. Nothing left: one request a
        // second after the reset (stated in whole seconds), below the floor if need be (the
        // floor would send more than the quota allows); not a margin of the reset, which
        // would put a day's reset an hour late.
        let rate = if remaining == 0 {
            1.0 / (reset + 1.0)
        } else {
            let rate = remaining as f64 / reset * (1.0 - self.config.margin);
            rate.clamp(self.config.min_rate, self.config.max_rate)
        };
        self.rate = Some(rate);
        self.set_w_max(rate);
        self.growth_from = now;
        self.slow_start = false;
        self.quota_left = Some(remaining);
        true
    }

    /// Paces at `rate` from `now` (a fleet's estimate, or its share of it), regrowing from
    /// there; the last cut is kept, so the 429s of an event already answered still cut
    /// nothing.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn set(&mut self, rate: f64, now: Duration) {
        if !rate.is_finite() || rate <= 0.0 {
            return;
        }
        let rate = rate.clamp(self.config.min_rate, self.config.max_rate);
        self.rate = Some(rate);
        self.set_w_max(rate);
        self.growth_from = now.as_secs_f64();
        self.slow_start = false;
    }

    /// The measured rate of responses, per second.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn measured(&self) -> f64 {
        self.sent.estimate()
    }

    fn set_w_max(&mut self, w_max: f64) {
        self.w_max = w_max;
        self.k = (w_max * (1.0 - self.config.beta) / self.config.scale).cbrt();
    }
}

/// A quota paces once the measured send rate would spend what is left within this time.
const QUOTA_HORIZON: Duration = Duration::from_secs(10);

/// The longest `Retry-After` that delays regrowth after a cut.
const MAX_HOLD: Duration = Duration::from_secs(3600);

/// How long after a cut a 429 still belongs to the congestion event that cut: the
/// server's `Retry-After`, at most [`MAX_GRACE`] (0 without one). Requests sent just after
/// a cut meet what the burst before it left (an empty bucket), and a fleet's slots
/// reserved before it go out within its pacing horizon (also 250 ms): cutting again for
/// each would take the rate to its floor. A 429 later than that is a new event, though
/// `Retry-After` is stated in whole seconds: a rate still above a token bucket's is cut
/// again within a quarter second, not a second.
pub(crate) fn event_grace(retry_after: Option<Duration>) -> Duration {
    retry_after.map_or(Duration::ZERO, |ra| ra.min(MAX_GRACE))
}

/// The longest a 429 after a cut still belongs to the cut's event.
const MAX_GRACE: Duration = Duration::from_millis(250);

// ===== the measured send rate =====

/// Responses per second, counted per half second and smoothed (as the AWS SDKs' adaptive
/// limiter and the model measure the send rate).
#[derive(Clone, Debug, Default)]
struct SendRate {
    /// The start of the current half second.
    bucket: f64,
    /// Responses in it.
    count: u32,
    /// The smoothed rate of the buckets before.
    smoothed: f64,
}

impl SendRate {
    const BUCKET: f64 = 0.5;
    const SMOOTH: f64 = 0.8;

    fn record(&mut self, now: f64) {
        let bucket = (now / Self::BUCKET).floor() * Self::BUCKET;
        if bucket > self.bucket {
            let rate = f64::from(self.count) / (bucket - self.bucket);
            self.smoothed = rate * Self::SMOOTH + self.smoothed * (1.0 - Self::SMOOTH);
            self.bucket = bucket;
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
    }

    /// The smoothed rate, or the current half second's if higher (a burst that has not
    /// yet ended a bucket).
    fn estimate(&self) -> f64 {
        self.smoothed.max(f64::from(self.count) / Self::BUCKET)
    }
}

mod pacer;
#[cfg(test)]
mod tests;

pub(crate) use pacer::AdaptivePacer;
#[cfg(feature = "redis")]
pub(crate) use pacer::Change;
