//! [`RetryState`]: the per-request half of the engine, shared by every adapter.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tokio::time::Instant;

use super::info::{RetryInfo, StopReason};
use super::overrides::RetryOverride;
#[cfg(test)]
use crate::classify::RequestView;
use crate::classify::{Decision, Outcome};
use crate::limits::{OriginLimits, Pace, Withdrawal, MAX_COOLDOWN};
use crate::policy::backoff::Rng;
use crate::policy::{RetryPolicy, Verdict};

/// What the adapter does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum Action {
    /// Sleep this long, then send the request again.
    Retry(Duration),
    /// Hand this outcome to the caller, unchanged.
    Stop(StopReason),
}

/// Whether the next attempt (the first included) may be sent now: the answer of
/// [`RetryState::admit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum Admission {
    /// Send it now.
    Send,
    /// Hold back this long (the shared cooldown, plus a random share of the policy's
    /// `retry_after_spread`), then ask again.
    Wait(Duration),
    /// Do not send it; hand the caller an error. `reason` is
    /// [`StopReason::RetryAfterTooLong`] while the origin is refused (a 429 with a
    /// `Retry-After` above the cap was seen: until that wait has passed, however little of
    /// it is left) or when its cooldown lasts longer than this policy's `max_retry_after`
    /// (another policy sharing the limits accepted a longer wait), or
    /// [`StopReason::Deadline`] when the deadline is reached or the cooldown would cross
    /// it; `cooldown` is the cooldown left, if any.
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
    // Durations in 8 bytes rather than 16 (see `Nanos`): the state lives in every request's
    // future, which every call moves.
    deadline: Nanos,
    attempt_timeout: Nanos,
    idempotent: Option<bool>,
    /// A retry was granted (and taken from the budget) but not sent yet.
    retry_pending: Option<Withdrawal>,
    /// Seeded on first use: a request that succeeds at once never pays for it.
    rng: Rng,
    started: Instant,
    attempts: u32,
    slept: Nanos,
    previous_delay: Nanos,
    next_delay: Nanos,
    // The decision for the last outcome in 9 bytes rather than 16: which one, and the
    // wait of a `RetryAfter` (see `DecisionKind`).
    decision: Option<DecisionKind>,
    retry_after: Nanos,
    stop: Option<StopReason>,
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
            deadline: Nanos::new(policy.deadline()),
            attempt_timeout: Nanos::new(policy.attempt_timeout()),
            idempotent: None,
            retry_pending: None,
            rng: Rng::UNSEEDED,
            previous_delay: Nanos::of(policy.base_delay()),
            policy: policy.clone(),
            started,
            attempts: 0,
            slept: Nanos::of(Duration::ZERO),
            next_delay: Nanos::NONE,
            decision: None,
            retry_after: Nanos::NONE,
            stop: None,
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

    /// Asks whether the next attempt (the first included) may be sent now. Call it before
    /// reserving the inner service: a request held back should hold no capacity.
    ///
    /// A wait it answers counts in [`RetryInfo::slept`]; a rejection ends the request
    /// (its [`stop_reason`](Self::stop_reason) is set).
    pub(crate) fn admit(&mut self) -> Admission {
        self.admit_at(Instant::now())
    }

    /// [`admit`](Self::admit) at `now`. The engine's first admission, made as the state is
    /// created, passes [`started`](Self::started): one clock reading fewer per request.
    #[inline]
    pub(crate) fn admit_at(&mut self, now: Instant) -> Admission {
        let left = self.deadline_left_at(now);
        if left == Some(Duration::ZERO) {
            self.stop = Some(StopReason::Deadline);
            return Admission::Reject {
                reason: StopReason::Deadline,
                cooldown: None,
            };
        }
        let Some(limits) = self.limits.as_ref() else {
            return Admission::Send;
        };
        // A 429 above some policy's cap: refused while it lasts, however little is left.
        // A store may answer "zero left" for a wait that is over: that is no wait.
        let waiting = |d: Option<Duration>| d.filter(|d| !d.is_zero());
        if let Some(refused) = waiting(limits.refusal_remaining(now)) {
            self.stop = Some(StopReason::RetryAfterTooLong);
            return Admission::Reject {
                reason: StopReason::RetryAfterTooLong,
                cooldown: Some(refused),
            };
        }
        let Some(cooldown) = waiting(limits.cooldown_remaining(now)) else {
            return Admission::Send;
        };
        // A wait another policy (sharing these limits) accepted, but above this one's cap.
        let reason = if cooldown > self.policy.max_retry_after() {
            StopReason::RetryAfterTooLong
        } else {
            let spread = self.policy.retry_after_spread();
            let wait = cooldown.saturating_add(self.rng().uniform(Duration::ZERO, spread));
            if left.is_none_or(|left| wait < left) {
                self.slept = self.slept.plus(wait);
                return Admission::Wait(wait);
            }
            StopReason::Deadline
        };
        self.stop = Some(reason);
        Admission::Reject {
            reason,
            cooldown: Some(cooldown),
        }
    }

    /// Takes the paced slot of the attempt about to be sent, when the limits pace (see
    /// [`Pacing`](crate::limits::Pacing)). Call it when [`admit`](Self::admit) answered
    /// [`Admission::Send`], before reserving the inner service.
    ///
    /// [`Pace::Wait`]: wait for the future, bounded by the deadline, then
    /// [`admit`](Self::admit) again (without pacing again) and report the wait with
    /// [`paced`](Self::paced). [`Pace::TooLong`]: the slot lies beyond the policy's
    /// `max_retry_after` or the deadline; the request ends (its
    /// [`stop_reason`](Self::stop_reason) says which).
    #[inline]
    pub(crate) fn pace(&mut self) -> Pace {
        let Some(limits) = self.limits.as_ref() else {
            return Pace::Go;
        };
        // A slot exactly at the deadline is too late: nothing may be sent at the deadline.
        let left = self
            .deadline_left()
            .map(|left| left.saturating_sub(Duration::from_nanos(1)));
        let max_wait = left.map_or(self.policy.max_retry_after(), |left| {
            left.min(self.policy.max_retry_after())
        });
        match limits.pace(max_wait, left) {
            Pace::TooLong(wait) => {
                self.pace_refused(wait);
                Pace::TooLong(wait)
            }
            other => other,
        }
    }

    /// A paced slot lies `wait` ahead, beyond what this request may wait: ends the request
    /// and says why ([`StopReason::RetryAfterTooLong`] beyond `max_retry_after`, else
    /// [`StopReason::Deadline`]).
    pub(crate) fn pace_refused(&mut self, wait: Duration) -> StopReason {
        let reason = if wait > self.policy.max_retry_after() {
            StopReason::RetryAfterTooLong
        } else {
            StopReason::Deadline
        };
        self.stop = Some(reason);
        reason
    }

    /// The attempt about to be sent waited `waited` for its paced slot: counts it in
    /// [`RetryInfo::slept`].
    pub(crate) fn paced(&mut self, waited: Duration) {
        self.slept = self.slept.plus(waited);
    }

    /// What is left of the deadline now, if there is one. Without a deadline (the default)
    /// the clock is not read: on the success path a reading is one of the larger costs.
    #[inline]
    fn deadline_left(&self) -> Option<Duration> {
        let deadline = self.deadline.get()?;
        Some(deadline.saturating_sub(self.started.elapsed()))
    }

    /// What is left of the deadline at `now`, if there is one.
    #[inline]
    fn deadline_left_at(&self, now: Instant) -> Option<Duration> {
        let deadline = self.deadline.get()?;
        Some(deadline.saturating_sub(now.saturating_duration_since(self.started)))
    }

    /// Applies a per-request [`RetryOverride`] (adapters read it from the request's
    /// extensions). Call it before the first attempt.
    pub(crate) fn apply_override(&mut self, o: &RetryOverride) {
        if let Some(n) = o.max_retries_value() {
            self.max_retries = n;
        }
        if let Some(d) = o.deadline_value() {
            self.deadline = Nanos::of(d);
        }
        if let Some(t) = o.attempt_timeout_value() {
            self.attempt_timeout = Nanos::of(t);
        }
        if let Some(i) = o.idempotent_value() {
            self.idempotent = Some(i);
        }
    }

    /// The most retries this request may make (the policy's, or its override's).
    pub(crate) fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// The deadline of this request (the policy's, or its override's).
    #[inline]
    pub(crate) fn deadline(&self) -> Option<Duration> {
        self.deadline.get()
    }

    /// The time each attempt of this request may take, before the deadline cuts it.
    #[inline]
    pub(crate) fn per_attempt_timeout(&self) -> Option<Duration> {
        self.attempt_timeout.get()
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

    /// Records the outcome of the attempt just made and says what to do next.
    ///
    /// `can_resend` tells whether the adapter holds a usable duplicate of the request; a
    /// retryable outcome without one stops with [`StopReason::NotReplayable`].
    #[cfg(test)]
    pub(crate) fn next(&mut self, outcome: Outcome<'_>, can_resend: bool) -> Action {
        let idempotent = match outcome {
            Outcome::Transport { idempotent, .. } => idempotent,
            Outcome::Response { .. } => false,
        };
        self.next_for(&RequestView::detached(idempotent), outcome, can_resend)
    }

    /// Like [`next`](Self::next), for an outcome of `request` (what the classifier sees
    /// of it).
    #[cfg(test)]
    pub(crate) fn next_for(
        &mut self,
        request: &RequestView<'_>,
        outcome: Outcome<'_>,
        can_resend: bool,
    ) -> Action {
        let verdict = self.policy.verdict(request, &outcome);
        self.apply(verdict, outcome, can_resend)
    }

    /// Like [`next_for`](Self::next_for), with the policy's verdict already made (the
    /// engine's future classifies with a view that borrows the policy).
    #[inline]
    pub(crate) fn apply(
        &mut self,
        verdict: Verdict,
        outcome: Outcome<'_>,
        can_resend: bool,
    ) -> Action {
        self.attempts = self.attempts.saturating_add(1);
        self.next_delay = Nanos::NONE;
        (self.decision, self.retry_after) = DecisionKind::of(verdict.into());
        if let Verdict::Accept = verdict {
            return self.stop(StopReason::Success);
        }
        self.apply_failure(verdict, outcome, can_resend)
    }

    /// [`apply`](Self::apply) for any verdict but `Accept` (out of line: the success path
    /// inlines only the head of `apply`).
    fn apply_failure(
        &mut self,
        verdict: Verdict,
        outcome: Outcome<'_>,
        can_resend: bool,
    ) -> Action {
        let wait = match verdict {
            Verdict::Accept => return self.stop(StopReason::Success),
            Verdict::Fatal => return self.stop(StopReason::Fatal),
            Verdict::TooLong(d) => {
                // Every later request to this origin would meet the same 429: they fail
                // at once until it passes (see `admit`).
                self.cool_down(outcome, d, true);
                return self.stop(StopReason::RetryAfterTooLong);
            }
            Verdict::RetryAfter(d) => {
                self.cool_down(outcome, d, false);
                // Never earlier than told; and a server that keeps rate limiting gets at
                // least the backoff schedule on top of its instruction.
                let spread = self.policy.retry_after_spread();
                let told = d.saturating_add(self.rng().uniform(Duration::ZERO, spread));
                told.max(self.backoff())
            }
            Verdict::Backoff => self.backoff(),
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
        if let Some(deadline) = self.deadline.get() {
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
        self.slept = self.slept.plus(wait);
        self.next_delay = Nanos::of(wait);
        Action::Retry(wait)
    }

    /// Records that the deadline ended the request: an attempt in flight was cut (`sent`),
    /// or the next one was not sent.
    pub(crate) fn stop_at_deadline(&mut self, sent: bool) {
        if sent {
            self.attempts = self.attempts.saturating_add(1);
        }
        self.next_delay = Nanos::NONE;
        self.stop = Some(StopReason::Deadline);
    }

    /// Ends the request for `reason` before the retry that was granted is sent (the
    /// retry's budget token is given back when the state is dropped).
    pub(crate) fn give_up(&mut self, reason: StopReason) {
        self.next_delay = Nanos::NONE;
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
    }

    /// Starts the origin's cooldown for `d` when `outcome` is a 429; at most
    /// [`MAX_COOLDOWN`] or the policy's `max_retry_after`, whichever is longer, so that one
    /// absurd `Retry-After` cannot lock the origin out for years.
    /// `refuse`: the wait is above the cap, so later requests fail at once rather than wait.
    fn cool_down(&self, outcome: Outcome<'_>, d: Duration, refuse: bool) {
        if let (Outcome::Response { status, .. }, Some(limits)) = (outcome, &self.limits) {
            if status == StatusCode::TOO_MANY_REQUESTS {
                let d = d.min(MAX_COOLDOWN.max(self.policy.max_retry_after()));
                // `d` may be huge: saturate, never overflow.
                let now = Instant::now();
                let far = now + Duration::from_secs(86_400 * 365 * 30);
                let until = now.checked_add(d).unwrap_or(far).min(far);
                if refuse {
                    limits.refuse_until(until);
                } else {
                    limits.cool_down_until(until);
                }
            }
        }
    }

    fn rng(&mut self) -> &mut Rng {
        let policy = &self.policy;
        self.rng.seeded_with(|| policy.new_rng())
    }

    /// The jittered backoff delay for the retry being decided (retry `attempts`).
    fn backoff(&mut self) -> Duration {
        let previous = self.previous_delay.get().unwrap_or_default();
        let policy = &self.policy;
        let rng = self.rng.seeded_with(|| policy.new_rng());
        let d = policy.backoff_delay(self.attempts, previous, rng);
        self.previous_delay = Nanos::of(d);
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

    /// The decision for the last outcome. (A `RetryAfter` of 584 years or more reads as
    /// the longest wait 64-bit nanoseconds hold, as the state's other durations do.)
    pub(crate) fn decision(&self) -> Option<Decision> {
        let after = self.retry_after;
        self.decision.map(|kind| kind.with(after))
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
            slept: self.slept.get().unwrap_or_default(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::TransportErrorKind;
    use crate::limits::{Limits, Origin};
    use crate::policy::Jitter;
    use http::header::RETRY_AFTER;
    use http::HeaderMap;
    use http::HeaderValue;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn status(s: u16) -> (StatusCode, HeaderMap) {
        (StatusCode::from_u16(s).unwrap(), HeaderMap::new())
    }

    fn resp(st: &(StatusCode, HeaderMap)) -> Outcome<'_> {
        Outcome::Response {
            status: st.0,
            headers: &st.1,
            code: None,
        }
    }

    fn exact(max_retries: u32) -> RetryPolicy {
        RetryPolicy::builder()
            .max_retries(max_retries)
            .jitter(Jitter::None)
            .retry_after_spread(Duration::ZERO)
            .build()
    }

    #[test]
    fn ladder_is_exact_without_jitter() {
        let p = exact(8);
        let mut st = RetryState::new(&p);
        let r = status(503);
        let mut got = Vec::new();
        while let Action::Retry(d) = st.next(resp(&r), true) {
            got.push(d);
        }
        assert_eq!(got, [1, 2, 4, 8, 16, 30, 30, 30].map(S));
        assert_eq!(st.stop_reason(), Some(StopReason::MaxRetries));
        assert_eq!(st.info().attempts(), 9);
        assert_eq!(st.info().slept(), S(121));
    }

    #[test]
    fn may_retry_is_false_for_the_last_attempt() {
        let p = exact(2);
        let mut st = RetryState::new(&p);
        let r = status(500);
        assert!(st.may_retry());
        st.next(resp(&r), true);
        assert!(st.may_retry());
        st.next(resp(&r), true);
        assert!(!st.may_retry(), "third attempt is the last: no copy needed");
        assert_eq!(
            st.next(resp(&r), false),
            Action::Stop(StopReason::MaxRetries)
        );
        assert!(!RetryState::new(&exact(0)).may_retry());
    }

    #[test]
    fn retry_after_then_backoff_counts_retries() {
        let p = exact(5);
        let mut st = RetryState::new(&p);
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        let limited = (StatusCode::TOO_MANY_REQUESTS, h);
        assert_eq!(st.next(resp(&limited), true), Action::Retry(S(7)));
        // Second retry on the backoff ladder is n = 2.
        assert_eq!(st.next(resp(&status(502)), true), Action::Retry(S(2)));
        assert_eq!(
            st.next(resp(&status(201)), true),
            Action::Stop(StopReason::Success)
        );
        assert_eq!(st.info().slept(), S(9));
        assert_eq!(st.decision(), Some(Decision::Accept));
    }

    #[test]
    fn retry_after_is_a_floor_under_the_backoff_schedule() {
        let p = exact(6);
        let mut st = RetryState::new(&p);
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        let limited = (StatusCode::TOO_MANY_REQUESTS, h);
        let got: Vec<Duration> = (0..6)
            .map(|_| match st.next(resp(&limited), true) {
                Action::Retry(d) => d,
                other => panic!("{other:?}"),
            })
            .collect();
        // max(Retry-After, nominal backoff 1, 2, 4, 8, 16, 30).
        assert_eq!(got, [7, 7, 7, 8, 16, 30].map(S));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lifted_cap_and_an_absurd_retry_after_do_not_overflow() {
        let p = RetryPolicy::builder()
            .max_retry_after(Duration::MAX)
            .build();
        let limits = Limits::default();
        let mut st = RetryState::with_origin_limits(&p, limits.origin(&Origin::default()));
        let mut h = HeaderMap::new();
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("99999999999999999999"),
        );
        match st.next(resp(&(StatusCode::TOO_MANY_REQUESTS, h)), true) {
            Action::Retry(d) => assert!(d >= Duration::from_secs(u64::MAX)),
            other => panic!("{other:?}"),
        }
        let left = limits.cooldown_remaining(&"/".parse().unwrap()).unwrap();
        assert!(left >= Duration::from_secs(86_400 * 365));
        assert!(matches!(st.admit(), Admission::Wait(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn an_absurd_retry_after_locks_the_origin_out_for_a_day_at_most() {
        let p = RetryPolicy::default();
        let limits = Limits::default();
        let mut st = RetryState::with_origin_limits(&p, limits.origin(&Origin::default()));
        st.next(resp(&rate_limited("99999999999999999999")), true);
        assert_eq!(
            limits.cooldown_remaining(&"/".parse().unwrap()),
            Some(MAX_COOLDOWN)
        );
        tokio::time::advance(MAX_COOLDOWN).await;
        let mut later = RetryState::with_origin_limits(&p, limits.origin(&Origin::default()));
        assert_eq!(later.admit(), Admission::Send);
    }

    fn rate_limited(retry_after: &'static str) -> (StatusCode, HeaderMap) {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static(retry_after));
        (StatusCode::TOO_MANY_REQUESTS, h)
    }

    #[tokio::test(start_paused = true)]
    async fn admission_holds_back_behind_the_cooldown_and_counts_the_wait() {
        let p = exact(3);
        let limits = Limits::default();
        let origin = Origin::default();
        let mut first = RetryState::with_origin_limits(&p, limits.origin(&origin));
        assert_eq!(first.admit(), Admission::Send);
        first.next(resp(&rate_limited("5")), true);
        let mut other = RetryState::with_origin_limits(&p, limits.origin(&origin));
        assert_eq!(other.admit(), Admission::Wait(S(5)));
        assert_eq!(other.info().slept(), S(5));
        tokio::time::advance(S(5)).await;
        assert_eq!(other.admit(), Admission::Send);
    }

    #[tokio::test(start_paused = true)]
    async fn admission_rejects_what_the_deadline_or_the_cap_cannot_wait_for() {
        let p = RetryPolicy::builder()
            .max_retries(3)
            .retry_after_spread(Duration::ZERO)
            .deadline(S(5))
            .build();
        let limits = Limits::default();
        let origin = Origin::default();
        let mut first = RetryState::with_origin_limits(&p, limits.origin(&origin));
        // 50 s fits under the 60 s cap but not under this request's 5 s deadline.
        assert_eq!(
            first.next(resp(&rate_limited("50")), true),
            Action::Stop(StopReason::Deadline)
        );
        let mut second = RetryState::with_origin_limits(&p, limits.origin(&origin));
        assert_eq!(
            second.admit(),
            Admission::Reject {
                reason: StopReason::Deadline,
                cooldown: Some(S(50))
            }
        );
        assert_eq!(second.stop_reason(), Some(StopReason::Deadline));

        // Above the cap: the 429 is returned, and later requests fail at once.
        let mut third = RetryState::with_origin_limits(&p, limits.origin(&origin));
        tokio::time::advance(S(50)).await;
        assert_eq!(
            third.admit(),
            Admission::Reject {
                reason: StopReason::Deadline,
                cooldown: None
            },
            "third's deadline passed while it waited"
        );
        let mut fourth = RetryState::with_origin_limits(&p, limits.origin(&origin));
        assert_eq!(fourth.admit(), Admission::Send);
        assert_eq!(
            fourth.next(resp(&rate_limited("3600")), true),
            Action::Stop(StopReason::RetryAfterTooLong)
        );
        let mut fifth = RetryState::with_origin_limits(&p, limits.origin(&origin));
        assert_eq!(
            fifth.admit(),
            Admission::Reject {
                reason: StopReason::RetryAfterTooLong,
                cooldown: Some(S(3600))
            }
        );
        assert_eq!(fifth.info().attempts(), 0);
    }

    #[test]
    fn first_try_success_is_the_only_unannotated_outcome() {
        let p = exact(3);
        let mut st = RetryState::new(&p);
        st.next(resp(&status(200)), true);
        assert!(st.info().is_first_try_success());
        let mut st = RetryState::new(&p);
        st.next(resp(&status(404)), true);
        assert!(!st.info().is_first_try_success());
        let mut st = RetryState::new(&p);
        st.next(resp(&status(503)), true);
        st.next(resp(&status(200)), true);
        assert!(!st.info().is_first_try_success());
        assert_eq!(RetryInfo::of(&http::Extensions::new()).attempts(), 1);
    }

    #[test]
    fn retry_after_spread_is_bounded_and_never_early() {
        let p = RetryPolicy::builder().seed(7).build();
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        let limited = (StatusCode::TOO_MANY_REQUESTS, h);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let mut st = RetryState::new(&p);
            match st.next(resp(&limited), true) {
                Action::Retry(d) => {
                    assert!(d >= S(7) && d <= S(7) + Duration::from_millis(500), "{d:?}");
                    seen.insert(d);
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(seen.len() > 190, "spread is random per request");
    }

    #[test]
    fn fatal_and_too_long_stop_at_once() {
        let p = exact(5);
        let mut st = RetryState::new(&p);
        assert_eq!(
            st.next(resp(&status(401)), true),
            Action::Stop(StopReason::Fatal)
        );
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("3600"));
        let mut st = RetryState::new(&p);
        assert_eq!(
            st.next(resp(&(StatusCode::TOO_MANY_REQUESTS, h)), true),
            Action::Stop(StopReason::RetryAfterTooLong)
        );
        assert_eq!(st.info().attempts(), 1);
        assert_eq!(st.info().slept(), Duration::ZERO);
    }

    #[test]
    fn not_replayable_stops_retryable_outcomes_only() {
        let p = exact(5);
        let mut st = RetryState::new(&p);
        assert_eq!(
            st.next(resp(&status(503)), false),
            Action::Stop(StopReason::NotReplayable)
        );
        let mut st = RetryState::new(&p);
        assert_eq!(
            st.next(resp(&status(200)), false),
            Action::Stop(StopReason::Success)
        );
    }

    #[test]
    fn transport_outcomes_follow_idempotency() {
        let p = exact(5);
        let mut st = RetryState::new(&p);
        let post_timeout = Outcome::Transport {
            kind: TransportErrorKind::Timeout,
            idempotent: false,
        };
        assert_eq!(st.next(post_timeout, true), Action::Stop(StopReason::Fatal));
        let mut st = RetryState::new(&p);
        let get_timeout = Outcome::Transport {
            kind: TransportErrorKind::Timeout,
            idempotent: true,
        };
        assert_eq!(st.next(get_timeout, true), Action::Retry(S(1)));
        let post_connect = Outcome::Transport {
            kind: TransportErrorKind::Connect,
            idempotent: false,
        };
        assert_eq!(st.next(post_connect, true), Action::Retry(S(2)));
    }

    #[test]
    fn seeded_policies_reproduce_delays() {
        let run = || {
            let p = RetryPolicy::builder().seed(99).build();
            let r = status(503);
            (0..20)
                .map(|_| {
                    let mut st = RetryState::new(&p);
                    (0..4).map(|_| st.next(resp(&r), true)).collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }
}

/// An optional duration in 8 bytes: whole nanoseconds, `u64::MAX` for none. A duration of
/// 584 years or more is kept as the longest that fits (no deadline or delay of this crate
/// tells them apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Nanos(u64);

impl Nanos {
    const NONE: Nanos = Nanos(u64::MAX);

    #[inline]
    fn of(d: Duration) -> Nanos {
        Nanos(u64::try_from(d.as_nanos()).map_or(u64::MAX - 1, |n| n.min(u64::MAX - 1)))
    }

    #[inline]
    fn new(d: Option<Duration>) -> Nanos {
        d.map_or(Nanos::NONE, Nanos::of)
    }

    #[inline]
    fn get(self) -> Option<Duration> {
        (self.0 != u64::MAX).then(|| Duration::from_nanos(self.0))
    }

    /// This duration (none counts as zero) plus `d`, saturating.
    #[inline]
    fn plus(self, d: Duration) -> Nanos {
        Nanos::of(self.get().unwrap_or_default().saturating_add(d))
    }
}

/// Which [`Decision`] [`RetryState`] keeps, in one byte; a `RetryAfter`'s wait is kept
/// beside it in 64-bit nanoseconds (the two packed with the state's other small fields
/// take 9 bytes, a `Decision` 16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DecisionKind {
    Accept,
    RetryAfter,
    Backoff,
    Fatal,
}

impl DecisionKind {
    /// Which `decision` is, and its wait if it is a `RetryAfter`.
    #[inline]
    fn of(decision: Decision) -> (Option<DecisionKind>, Nanos) {
        let (kind, after) = match decision {
            Decision::Accept => (DecisionKind::Accept, Nanos::NONE),
            Decision::RetryAfter(d) => (DecisionKind::RetryAfter, Nanos::of(d)),
            Decision::Backoff => (DecisionKind::Backoff, Nanos::NONE),
            Decision::Fatal => (DecisionKind::Fatal, Nanos::NONE),
        };
        (Some(kind), after)
    }

    /// The decision again, with `after` the wait [`of`](Self::of) kept.
    fn with(self, after: Nanos) -> Decision {
        match self {
            DecisionKind::Accept => Decision::Accept,
            DecisionKind::RetryAfter => Decision::RetryAfter(after.get().unwrap_or_default()),
            DecisionKind::Backoff => Decision::Backoff,
            DecisionKind::Fatal => Decision::Fatal,
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::policy::Jitter;
    use http::{HeaderMap, StatusCode};
    use proptest::prelude::*;

    fn any_jitter() -> impl Strategy<Value = Jitter> {
        prop_oneof![
            Just(Jitter::None),
            Just(Jitter::Proportional),
            Just(Jitter::Full),
            Just(Jitter::Equal),
            Just(Jitter::Decorrelated),
        ]
    }

    proptest! {
    #[test]
    fn every_delay_stays_within_base_and_max(
        seed in any::<u64>(),
        jitter in any_jitter(),
        base_ms in 1u64..5_000,
        extra_ms in 0u64..120_000,
        retries in 1u32..40,
    ) {
        let base = Duration::from_millis(base_ms);
        let max = base + Duration::from_millis(extra_ms);
        let policy = RetryPolicy::builder()
            .seed(seed)
            .jitter(jitter)
            .base_delay(base)
            .max_delay(max)
            .max_retries(retries)
            .build();
        let mut state = RetryState::new(&policy);
        let headers = HeaderMap::new();
        for n in 1..=retries {
            let outcome = Outcome::Response { status: StatusCode::SERVICE_UNAVAILABLE, headers: &headers, code: None };
            match state.next(outcome, true) {
                Action::Retry(d) => {
                    prop_assert!(d >= base && d <= max, "retry {} of {:?}: {:?} not in [{:?}, {:?}]", n, jitter, d, base, max);
                    if jitter == Jitter::None {
                        prop_assert_eq!(d, policy.nominal_delay(n));
                    }
                }
                other => prop_assert!(false, "stopped early: {:?}", other),
            }
        }
    }

    }
}
