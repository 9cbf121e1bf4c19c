//! [`RetryState`]: the per-request half of the engine, shared by every adapter.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::info::{RetryInfo, StopReason};
use super::overrides::RetryOverride;
use crate::classify::{Decision, Outcome};
use crate::limits::{OriginLimits, Withdrawal};
use crate::policy::backoff::Rng;
use crate::policy::RetryPolicy;

/// What the adapter does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Sleep this long, then send the request again.
    Retry(Duration),
    /// Hand this outcome to the caller, unchanged.
    Stop(StopReason),
}

/// Whether the next attempt (the first included) may be sent now: the answer of
/// [`RetryState::admit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Send it now.
    Send,
    /// Hold back this long (the shared cooldown, plus a random share of the policy's
    /// `retry_after_spread`), then ask again.
    Wait(Duration),
    /// Do not send it: the origin is refused, or its cooldown is above this policy's cap
    /// ([`StopReason::RetryAfterTooLong`]), or it would cross the deadline
    /// ([`StopReason::Deadline`]).
    Reject {
        /// Why.
        reason: StopReason,
        /// The cooldown left, if one holds the request back.
        cooldown: Option<Duration>,
    },
}

/// The per-request half of the engine, shared by every adapter.
///
/// It is created per logical request with its origin's limits; the engine's future drives
/// it: `admit`, `pace`, `attempt_sent` when an attempt goes, `next` for each outcome. The
/// schedule (attempt counting, backoff, jitter, `Retry-After` spread, caps) lives here and
/// only here.
#[derive(Debug)]
pub(crate) struct RetryState {
    policy: RetryPolicy,
    limits: Option<Arc<dyn OriginLimits>>,
    // The policy's settings, as this request's `RetryOverride` changed them.
    max_retries: u32,
    deadline: Option<Duration>,
    attempt_timeout: Option<Duration>,
    idempotent: Option<bool>,
    /// A retry was granted (and taken from the budget) but not sent yet.
    retry_pending: Option<Withdrawal>,
    /// Seeded on first use: a request that succeeds at once never pays for it.
    rng: Rng,
    started: Instant,
    attempts: u32,
    slept: Duration,
    /// Time spent held back by cooldowns, in all (bounded by `max_retry_after`).
    held_back: Duration,
    previous_delay: Duration,
    /// The decision for the last outcome.
    decision: Option<Decision>,
    stop: Option<StopReason>,
    /// When the last attempt was sent, kept only when the origin learns from responses
    /// (see [`learning`](Self::learning)).
    learns: bool,
    sent_at: Option<Instant>,
}

impl RetryState {
    /// Starts the state for one logical request, on its own: no budget, no cooldown shared
    /// with other requests (tests).
    #[cfg(test)]
    pub(crate) fn new(policy: &RetryPolicy) -> Self {
        RetryState::started_at(policy, Instant::now())
    }

    #[inline]
    fn started_at(policy: &RetryPolicy, started: Instant) -> Self {
        RetryState {
            limits: None,
            max_retries: policy.max_retries(),
            deadline: policy.deadline(),
            attempt_timeout: policy.attempt_timeout(),
            idempotent: None,
            retry_pending: None,
            rng: Rng::UNSEEDED,
            previous_delay: policy.base_delay(),
            policy: policy.clone(),
            started,
            attempts: 0,
            slept: Duration::ZERO,
            held_back: Duration::ZERO,
            decision: None,
            stop: None,
            learns: false,
            sent_at: None,
        }
    }

    #[inline]
    pub(crate) fn with_origin_limits(policy: &RetryPolicy, scope: Arc<dyn OriginLimits>) -> Self {
        // One clock reading, not two, serves the budget's window and the request's start:
        // on the success path a reading is one of the larger fixed costs.
        let now = Instant::now();
        scope.deposit(now);
        let mut state = RetryState::started_at(policy, now);
        state.limits = Some(scope);
        state
    }

    /// What is left of the deadline now, if there is one. Without a deadline (the default)
    /// the clock is not read: on the success path a reading is one of the larger costs.
    #[inline]
    fn deadline_left(&self) -> Option<Duration> {
        let deadline = self.deadline?;
        Some(deadline.saturating_sub(self.started.elapsed()))
    }

    /// What is left of the deadline at `now`, if there is one.
    #[inline]
    fn deadline_left_at(&self, now: Instant) -> Option<Duration> {
        let deadline = self.deadline?;
        Some(deadline.saturating_sub(now.saturating_duration_since(self.started)))
    }

    /// Applies a per-request [`RetryOverride`] (adapters read it from the request's
    /// extensions). Call it before the first attempt.
    pub(crate) fn apply_override(&mut self, o: &RetryOverride) {
        if let Some(n) = o.max_retries_value() {
            self.max_retries = n;
        }
        if let Some(d) = o.deadline_value() {
            self.deadline = Some(d);
        }
        if let Some(t) = o.attempt_timeout_value() {
            self.attempt_timeout = Some(t);
        }
        if let Some(i) = o.idempotent_value() {
            self.idempotent = Some(i);
        }
    }

    /// The most retries this request may make (the policy's, or its override's).
    #[cfg_attr(not(feature = "reqwest"), allow(dead_code))]
    pub(crate) fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// The deadline of this request (the policy's, or its override's).
    #[inline]
    pub(crate) fn deadline(&self) -> Option<Duration> {
        self.deadline
    }

    /// The time each attempt of this request may take, before the deadline cuts it.
    #[inline]
    pub(crate) fn per_attempt_timeout(&self) -> Option<Duration> {
        self.attempt_timeout
    }

    /// Whether a request with this method and headers is safe to resend: the override's
    /// word if it has one, else [`RetryPolicy::is_idempotent`].
    pub(crate) fn is_idempotent(&self, method: &http::Method, headers: &http::HeaderMap) -> bool {
        self.idempotent
            .unwrap_or_else(|| self.policy.is_idempotent(method, headers))
    }

    /// Whether this request's [`RetryOverride`] says it is safe to resend, if it says.
    #[inline]
    pub(crate) fn idempotent_override(&self) -> Option<bool> {
        self.idempotent
    }

    /// The policy driving this state.
    #[inline]
    pub(crate) fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// `true` when the attempt about to be sent could still be followed by a retry. An
    /// adapter duplicates the request only then: the last allowed attempt needs no copy.
    #[inline]
    pub(crate) fn may_retry(&self) -> bool {
        self.stop.is_none() && self.attempts < self.max_retries
    }

    /// Records the outcome of the attempt just made, as the policy decided it, and says what
    /// to do next.
    pub(crate) fn apply(
        &mut self,
        decision: Decision,
        outcome: Outcome<'_>,
        can_resend: bool,
    ) -> Action {
        self.attempts = self.attempts.saturating_add(1);
        let too_long =
            matches!(decision, Decision::RetryAfter(d) if d > self.policy.max_retry_after());
        // A `Retry-After` above the cap is not waited for: recorded as final.
        self.decision = Some(if too_long { Decision::Fatal } else { decision });
        let wait = match decision {
            Decision::Accept => return self.stop(StopReason::Success),
            Decision::Fatal => return self.stop(StopReason::Fatal),
            Decision::RetryAfter(d) if too_long => {
                // Every later request to this origin would meet the same 429: they fail
                // at once until it passes (see `admit`).
                self.cool_down(outcome, d, true);
                return self.stop(StopReason::RetryAfterTooLong);
            }
            Decision::RetryAfter(d) => {
                self.cool_down(outcome, d, false);
                // Never earlier than told; and a server that keeps rate limiting gets at
                // least the backoff schedule on top of its instruction.
                let spread = self.policy.retry_after_spread();
                let told = d.saturating_add(self.rng().uniform(Duration::ZERO, spread));
                told.max(self.backoff())
            }
            Decision::Backoff => self.backoff(),
        };
        // Another request's 429 may hold every request back for longer, or for longer
        // than this policy waits at all.
        let now = Instant::now();
        if let Some(limits) = &self.limits {
            if limits.refusal_remaining(now).is_some_and(|d| !d.is_zero()) {
                return self.stop(StopReason::RetryAfterTooLong);
            }
        }
        let cooldown = self
            .limits
            .as_ref()
            .and_then(|l| l.cooldown_remaining(now))
            .filter(|d| !d.is_zero());
        let wait = match cooldown {
            Some(cooldown) if cooldown > self.policy.max_retry_after() => {
                return self.stop(StopReason::RetryAfterTooLong)
            }
            Some(cooldown) => wait.max(cooldown),
            None => wait,
        };
        if self.attempts > self.max_retries {
            return self.stop(StopReason::MaxRetries);
        }
        if !can_resend {
            return self.stop(StopReason::NotReplayable);
        }
        if let Some(deadline) = self.deadline {
            // A retry due at the deadline would be refused when it wakes: stop now.
            if self.elapsed().saturating_add(wait) >= deadline {
                return self.stop(StopReason::Deadline);
            }
        }
        if let Some(limits) = &self.limits {
            match limits.withdraw(Instant::now()) {
                Some(taken) => self.retry_pending = Some(taken),
                None => return self.stop(StopReason::Budget),
            }
        }
        self.slept = self.slept.saturating_add(wait);
        Action::Retry(wait)
    }

    /// Records that the deadline ended the request: an attempt in flight was cut (`sent`),
    /// or the next one was not sent.
    pub(crate) fn stop_at_deadline(&mut self, sent: bool) {
        if sent {
            self.attempts = self.attempts.saturating_add(1);
        }
        self.stop = Some(StopReason::Deadline);
    }

    /// Ends the request for `reason` before the retry that was granted is sent (the
    /// retry's budget token is given back when the state is dropped).
    pub(crate) fn give_up(&mut self, reason: StopReason) {
        self.stop = Some(reason);
    }

    /// When the request started (tokio's clock).
    #[inline]
    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    /// Tells the state that the next attempt was sent. A retry granted by
    /// [`next`](Self::next) and never sent (the request was dropped while it waited) is
    /// given back to the budget when the state is dropped.
    #[inline]
    pub(crate) fn attempt_sent(&mut self) {
        self.retry_pending = None;
        if self.learns {
            self.sent_at = Some(Instant::now());
        }
    }

    fn rng(&mut self) -> &mut Rng {
        let policy = &self.policy;
        self.rng.seeded_with(|| policy.new_rng())
    }

    /// The jittered backoff delay for the retry being decided (retry `attempts`).
    fn backoff(&mut self) -> Duration {
        let previous = self.previous_delay;
        let policy = &self.policy;
        let rng = self.rng.seeded_with(|| policy.new_rng());
        let d = policy.backoff_delay(self.attempts, previous, rng);
        self.previous_delay = d;
        d
    }

    #[inline]
    fn stop(&mut self, reason: StopReason) -> Action {
        self.stop = Some(reason);
        Action::Stop(reason)
    }

    /// Attempts whose outcome was recorded.
    #[inline]
    pub(crate) fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The decision for the last outcome (what spans and metrics show).
    #[cfg_attr(not(any(feature = "tracing", feature = "metrics")), allow(dead_code))]
    pub(crate) fn decision(&self) -> Option<Decision> {
        self.decision
    }

    /// Time since the state was created (tokio's clock: paused in tests).
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Why retrying stopped, once it has.
    #[inline]
    pub(crate) fn stop_reason(&self) -> Option<StopReason> {
        self.stop
    }

    /// Whether [`info`](Self::info) says "one attempt, success" (see
    /// [`RetryInfo::is_first_try_success`]).
    #[inline]
    pub(crate) fn is_first_try_success(&self) -> bool {
        self.info().is_first_try_success()
    }

    /// A summary to attach to the response.
    #[inline]
    pub(crate) fn info(&self) -> RetryInfo {
        RetryInfo {
            attempts: self.attempts,
            slept: self.slept,
            stop: self.stop,
        }
    }
}

impl Drop for RetryState {
    fn drop(&mut self) {
        if let (Some(taken), Some(limits)) = (self.retry_pending, &self.limits) {
            limits.refund(taken);
        }
    }
}

mod limits;
#[cfg(test)]
mod tests;
