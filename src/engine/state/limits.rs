//! The origin's limits as one request uses them: admission under the shared cooldown,
//! the paced slot, the cooldown a 429 starts, and what the origin learns from each
//! response (adaptive pacing).

use std::time::Duration;

use http::{HeaderMap, StatusCode};
use tokio::time::Instant;

use super::{Admission, RetryState};
use crate::classify::Outcome;
use crate::engine::info::StopReason;
use crate::limits::{Pace, MAX_COOLDOWN};

impl RetryState {
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
        // A wait another policy (sharing these limits) accepted, but above this one's cap;
        // or cooldowns renewed by other requests' 429s that would hold this one longer than
        // the cap in all.
        let reason = if self.held_back.saturating_add(cooldown) > self.policy.max_retry_after() {
            StopReason::RetryAfterTooLong
        } else {
            let spread = self.policy.retry_after_spread();
            let wait = cooldown.saturating_add(self.rng().uniform(Duration::ZERO, spread));
            if left.is_none_or(|left| wait < left) {
                self.slept = self.slept.saturating_add(wait);
                self.held_back = self.held_back.saturating_add(cooldown);
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
        self.slept = self.slept.saturating_add(waited);
    }

    /// Starts the origin's cooldown for `d` when `outcome` is a 429; at most
    /// [`MAX_COOLDOWN`] or the policy's `max_retry_after`, whichever is longer, so that one
    /// absurd `Retry-After` cannot lock the origin out for years.
    /// `refuse`: the wait is above the cap, so later requests fail at once rather than wait.
    pub(super) fn cool_down(&self, outcome: Outcome<'_>, d: Duration, refuse: bool) {
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

    /// Makes the origin's limits learn from each response ([`learn`](Self::learn)): the
    /// send time of each attempt is kept from now on.
    #[inline]
    pub(crate) fn learning(&mut self) {
        self.learns = true;
    }

    /// The origin learns from the response to the attempt just made (adaptive pacing:
    /// `status` and `headers` move its rate). Costs a branch when the origin's pacing
    /// does not learn.
    #[inline]
    pub(crate) fn learn(&self, status: StatusCode, headers: &HeaderMap) {
        if let (Some(sent_at), Some(limits)) = (self.sent_at, &self.limits) {
            limits.observe(sent_at, status, headers);
        }
    }
}
