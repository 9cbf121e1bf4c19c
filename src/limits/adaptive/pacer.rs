//! [`AdaptivePacer`]: the in-process pacer of [`Pacing::adaptive`](crate::limits::Pacing::adaptive),
//! at the rate an [`AdaptiveRate`] learns from the origin's responses.
//!
//! It keeps its own schedule (the last slot given plus the interval at the current rate,
//! read at each slot) rather than `governor`'s, whose quota is fixed when the limiter is
//! made: a rate that changes applies from the next slot, with no limiter to rebuild and no
//! debt for the callers already waiting.

use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::{Duration, SystemTime};

use http::header::RETRY_AFTER;
use http::{HeaderMap, StatusCode};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{AdaptiveConfig, AdaptiveRate};
use crate::classify::parse_retry_after_at;
use crate::engine::observe;
use crate::limits::pacer::{Pace, Paced};
use crate::limits::queue::WaitQueue;
use crate::limits::quota::Quota;

/// The pacer of one origin whose rate is learned: no pacing until the first 429 or quota,
/// then one attempt per interval at the estimated rate, the waiters served first come,
/// first served.
#[derive(Clone)]
pub(crate) struct AdaptivePacer {
    inner: Arc<AdaptiveState>,
}

struct AdaptiveState {
    /// The epoch of the estimate's clock.
    base: Instant,
    schedule: Mutex<Schedule>,
    /// The attempts waiting for a slot.
    queue: Arc<WaitQueue>,
    /// Wakes the waiter whose turn it is when the rate rises: its slot may be earlier.
    faster: Notify,
}

struct Schedule {
    rate: AdaptiveRate,
    /// The last slot given, if any.
    last: Option<Instant>,
    /// The share of a fleet's rate the rate was set at ([`AdaptivePacer::set_share_of`]);
    /// `None`: the rate is this pacer's own.
    share: Option<f64>,
}

impl Schedule {
    /// Takes the next slot if it is now; else says when it comes. A slot taken late (a
    /// timer's granularity) counts from when it was due, as long as that is within one
    /// interval: the rate holds on average.
    fn take(&mut self, now: Instant) -> Result<(), Instant> {
        let due = self
            .rate
            .interval()
            .and_then(|interval| Some((self.last?.checked_add(interval)?, interval)));
        match due {
            Some((due, _)) if due > now => Err(due),
            Some((due, interval)) if now < due + interval => {
                self.last = Some(due);
                Ok(())
            }
            _ => {
                self.last = Some(now);
                Ok(())
            }
        }
    }
}

impl AdaptiveState {
    fn schedule(&self) -> MutexGuard<'_, Schedule> {
        // The schedule holds no invariant a panic could break halfway.
        self.schedule.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn since_base(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.base)
    }
}

impl AdaptivePacer {
    /// Off until the first 429 or quota; `cooldown`: whether a 429 holds every request back
    /// for its `Retry-After` (regrowth then starts after it). Call it within a tokio
    /// runtime's context when the clock is paused (tests), so that it reads the paused time.
    pub(crate) fn new(cooldown: bool) -> Self {
        let base = Instant::now();
        AdaptivePacer {
            inner: Arc::new(AdaptiveState {
                base,
                schedule: Mutex::new(Schedule {
                    rate: AdaptiveRate::new(AdaptiveConfig {
                        held: cooldown,
                        ..AdaptiveConfig::default()
                    }),
                    last: None,
                    share: None,
                }),
                queue: WaitQueue::new(base),
                faster: Notify::new(),
            }),
        }
    }

    /// The rate it paces at, per second; `None`: not pacing (yet).
    pub(crate) fn rate(&self) -> Option<f64> {
        self.inner.schedule().rate.rate()
    }

    /// Whether forgetting this pacer would lose a paced slot ahead or a waiter (the learned
    /// rate of an idle origin may be forgotten: it is learned again).
    pub(crate) fn is_busy(&self, now: Instant) -> bool {
        let inner = &self.inner;
        if inner.queue.waiting() > 0 {
            return true;
        }
        let schedule = inner.schedule();
        let interval = schedule.rate.interval();
        matches!((schedule.last, interval), (Some(last), Some(i)) if last + i > now)
    }

    /// Takes the next slot: now ([`Pace::Go`]), after a wait ([`Pace::Wait`]), or not at all
    /// when the next slot lies more than `max_wait` ahead ([`Pace::TooLong`]). Behind other
    /// waiters it waits (the rate may rise meanwhile), and gives up with
    /// [`Paced::TooLong`] after `max_wait`.
    pub(crate) fn pace(&self, max_wait: Duration) -> Pace {
        let inner = &self.inner;
        let now = Instant::now();
        if inner.queue.waiting() == 0 {
            match inner.schedule().take(now) {
                Ok(()) => return Pace::Go,
                Err(due) if due - now > max_wait => return Pace::TooLong(due - now),
                Err(_) => {}
            }
        }
        // Behind other waiters the wait is not refused up front from the current rate:
        // the rate may rise while they wait (slow start after a cut drains a queue in
        // seconds that the current rate would take minutes for). The attempt waits at most
        // `max_wait` instead.
        let place = inner.queue.join();
        let inner = Arc::clone(inner);
        Pace::Wait(Box::pin(async move {
            let slot = async {
                let turn = place.turn().await;
                loop {
                    // Registered before the slot is read: a rise in between is not missed.
                    let mut faster = pin!(inner.faster.notified());
                    faster.as_mut().enable();
                    let due = match inner.schedule().take(Instant::now()) {
                        Ok(()) => break,
                        Err(due) => due,
                    };
                    place.due_at(due);
                    let mut sleep = pin!(tokio::time::sleep_until(due));
                    poll_fn(|cx| {
                        if sleep.as_mut().poll(cx).is_ready() || faster.as_mut().poll(cx).is_ready()
                        {
                            Poll::Ready(())
                        } else {
                            Poll::Pending
                        }
                    })
                    .await;
                }
                drop(turn);
            };
            match tokio::time::timeout(max_wait, slot).await {
                Ok(()) => Paced::Go,
                // It waited all it may: its slot lies beyond.
                Err(_) => Paced::TooLong(max_wait.saturating_add(Duration::from_nanos(1))),
            }
        }))
    }

    /// The response to an attempt sent at `sent_at` arrived now: a 429 cuts the rate (once
    /// per congestion event), a success regrows it, a quota in the headers sets it; the
    /// change is reported (metrics, an event on a cut).
    pub(crate) fn observe(&self, sent_at: Instant, status: StatusCode, headers: &HeaderMap) {
        if let Some(change) = self.learn(sent_at, status, headers) {
            change.emit();
        }
    }

    /// As [`observe`](Self::observe), reporting nothing: what changed, if anything (a fleet
    /// store reports the fleet's rate instead of this one).
    pub(crate) fn learn(
        &self,
        sent_at: Instant,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Option<Change> {
        let inner = &self.inner;
        let quota = Quota::from_headers(headers, SystemTime::now);
        let throttled = status == StatusCode::TOO_MANY_REQUESTS;
        if quota.is_none() && !throttled && !status.is_success() {
            return None;
        }
        let now = Instant::now();
        let at = inner.since_base(now);
        let mut schedule = inner.schedule();
        let before = schedule.rate.rate();
        let mut cut = false;
        let retry_after = throttled
            .then(|| headers.get(RETRY_AFTER))
            .flatten()
            .and_then(|v| parse_retry_after_at(v, SystemTime::now));
        if throttled {
            cut = schedule
                .rate
                .throttled(inner.since_base(sent_at), at, retry_after);
        } else if status.is_success() {
            schedule.rate.succeeded(at);
        }
        let binds = quota.as_ref().is_some_and(|quota| {
            let binds = schedule.rate.learned_from_quota(quota, at);
            if binds && quota.remaining == 0 {
                // Nothing left: the next slot is one interval (about the reset) from now.
                schedule.last = Some(schedule.last.map_or(now, |last| last.max(now)));
            }
            binds
        });
        let after = schedule.rate.rate();
        drop(schedule);
        if after.is_none() && before.is_some() {
            // A quota with plenty left lifted pacing: reported as the highest rate, so that
            // a fleet's rate is lifted too.
            self.inner.faster.notify_waiters();
            let rate = AdaptiveConfig::default().max_rate;
            return Some(Change {
                before,
                rate,
                cut: false,
                quota: true,
                retry_after: None,
            });
        }
        let rate = after.filter(|_| after != before)?;
        self.woken_if_faster(before, rate);
        Some(Change {
            before,
            rate,
            cut,
            quota: binds,
            retry_after,
        })
    }

    /// Paces at `rate` from now, at the share it was set at.
    #[cfg(feature = "redis")]
    pub(crate) fn set_rate(&self, rate: f64) {
        self.change(|schedule, now| schedule.rate.set(rate, now));
    }

    /// Paces at `share` of a fleet's `rate` from now.
    #[cfg(feature = "redis")]
    pub(crate) fn set_share_of(&self, rate: f64, share: f64) {
        self.change(|schedule, now| {
            schedule.rate.set(rate * share, now);
            schedule.share = Some(share);
        });
    }

    /// A rate set at a share of a fleet's rate follows the fleet's new `share` (what it
    /// learned since, its cuts, is kept); a rate of its own stays.
    #[cfg(feature = "redis")]
    pub(crate) fn follow_share(&self, share: f64) {
        self.change(|schedule, now| {
            if let (Some(was), Some(rate)) = (schedule.share, schedule.rate.rate()) {
                if was != share {
                    schedule.rate.set(rate / was * share, now);
                    schedule.share = Some(share);
                }
            }
        });
    }

    /// Changes the schedule; wakes the waiter whose turn it is if the rate rose.
    #[cfg(feature = "redis")]
    fn change(&self, change: impl FnOnce(&mut Schedule, Duration)) {
        let now = Instant::now();
        let mut schedule = self.inner.schedule();
        let before = schedule.rate.rate();
        change(&mut schedule, self.inner.since_base(now));
        let after = schedule.rate.rate();
        drop(schedule);
        if let Some(after) = after {
            self.woken_if_faster(before, after);
        }
    }

    /// The measured rate of responses, per second.
    #[cfg(feature = "redis")]
    pub(crate) fn measured(&self) -> f64 {
        self.inner.schedule().rate.measured()
    }

    /// Records an attempt sent `after` from now on another pacer's slot (a fleet store's):
    /// this pacer's next slot is one interval after it, at its current rate.
    #[cfg(feature = "redis")]
    pub(crate) fn record(&self, after: Duration) {
        let Some(at) = Instant::now().checked_add(after) else {
            return;
        };
        if self.inner.queue.waiting() > 0 {
            return; // as `LocalPacer::record`: the waiters keep their place
        }
        let mut schedule = self.inner.schedule();
        schedule.last = Some(schedule.last.map_or(at, |last| last.max(at)));
    }

    fn woken_if_faster(&self, before: Option<f64>, rate: f64) {
        if before.is_none_or(|b| rate > b * 1.05) {
            self.inner.faster.notify_waiters();
        }
    }
}

/// A change of an [`AdaptivePacer`]'s rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Change {
    pub(crate) before: Option<f64>,
    pub(crate) rate: f64,
    /// A 429 cut it.
    pub(crate) cut: bool,
    /// A quota header set it.
    pub(crate) quota: bool,
    /// The 429's `Retry-After`, if a 429 came with one.
    pub(crate) retry_after: Option<Duration>,
}

impl Change {
    /// Reports it: the gauge, and on a cut the counter and an event.
    pub(crate) fn emit(&self) {
        if self.cut {
            observe::pacing_cut(self.before, self.rate);
        } else if self.quota {
            observe::pacing_set(self.rate);
        } else {
            observe::pacing_rate(self.rate);
        }
    }
}

impl fmt::Debug for AdaptivePacer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptivePacer")
            .field("rate", &self.rate())
            .field("waiting", &self.inner.queue.waiting())
            .finish()
    }
}

#[cfg(test)]
mod tests;
