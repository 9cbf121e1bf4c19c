//! The in-process store: each origin's budget, cooldown, refusal and pacer in memory.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::adaptive::AdaptivePacer;
use super::budget::{Budget, RetryBudget, Withdrawal};
use super::instant::AtomicInstant;
use super::origin::Origin;
use super::pacer::{LocalPacer, Pace};
use super::pacing::Pacing;
use super::table::{OriginTable, WhenFull};
use super::{LimitStore, OriginLimits};

/// The budget, cooldown, refusal and pacer of one origin, in this process.
pub(crate) struct LocalOrigin {
    budget: Option<Budget>,
    cooldown: Option<AtomicInstant>,
    refusal: Option<AtomicInstant>,
    pacer: Option<OriginPacer>,
}

/// An origin's pacer: at the configured rate, or at the rate [`Pacing::adaptive`] learns.
#[derive(Clone, Debug)]
pub(crate) enum OriginPacer {
    Fixed(LocalPacer),
    Learned(AdaptivePacer),
}

impl OriginPacer {
    /// The next slot (see [`LocalPacer::pace`]).
    pub(crate) fn pace(&self, max_wait: Duration) -> Pace {
        match self {
            OriginPacer::Fixed(p) => p.pace(max_wait),
            OriginPacer::Learned(p) => p.pace(max_wait),
        }
    }

    /// An attempt sent `after` from now on a fleet store's slot (see
    /// [`LocalPacer::record`]).
    #[cfg(feature = "redis")]
    pub(crate) fn record(&self, after: Duration) {
        match self {
            OriginPacer::Fixed(p) => p.record(after),
            OriginPacer::Learned(p) => p.record(after),
        }
    }

    fn is_busy(&self, now: Instant) -> bool {
        match self {
            OriginPacer::Fixed(p) => p.is_busy(now),
            OriginPacer::Learned(p) => p.is_busy(now),
        }
    }
}

impl LocalOrigin {
    /// Whether forgetting this origin would lose something: a cooldown or refusal running,
    /// or a paced slot ahead.
    pub(crate) fn is_busy(&self, now: Instant) -> bool {
        self.cooldown_remaining(now).is_some()
            || self.refusal_remaining(now).is_some()
            || self.pacer.as_ref().is_some_and(|p| p.is_busy(now))
    }

    /// The in-process pacer (a fleet store's fallback), if pacing is on.
    #[cfg(feature = "redis")]
    pub(crate) fn pacer(&self) -> Option<&OriginPacer> {
        self.pacer.as_ref()
    }
}

impl OriginLimits for LocalOrigin {
    fn deposit(&self, now: Instant) {
        if let Some(b) = &self.budget {
            b.deposit(now);
        }
    }

    fn withdraw(&self, now: Instant) -> Option<Withdrawal> {
        match &self.budget {
            Some(b) => b.withdraw(now),
            None => Some(Withdrawal::FREE),
        }
    }

    fn refund(&self, taken: Withdrawal) {
        if let Some(b) = &self.budget {
            b.refund(taken);
        }
    }

    fn cool_down_until(&self, until: Instant) {
        if let Some(c) = &self.cooldown {
            c.extend(until);
        }
    }

    fn cooldown_remaining(&self, now: Instant) -> Option<Duration> {
        self.cooldown.as_ref().and_then(|c| c.remaining(now))
    }

    fn refuse_until(&self, until: Instant) {
        if let Some(c) = &self.refusal {
            c.extend(until);
        }
    }

    fn refusal_remaining(&self, now: Instant) -> Option<Duration> {
        self.refusal.as_ref().and_then(|c| c.remaining(now))
    }

    fn pace(&self, max_wait: Duration, _deadline_left: Option<Duration>) -> Pace {
        self.pacer.as_ref().map_or(Pace::Go, |p| p.pace(max_wait))
    }

    fn observe(&self, sent_at: Instant, status: http::StatusCode, headers: &http::HeaderMap) {
        if let Some(OriginPacer::Learned(p)) = &self.pacer {
            p.observe(sent_at, status, headers);
        }
    }
}

impl fmt::Debug for LocalOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalOrigin")
            .field("budget", &self.budget.is_some())
            .field(
                "cooldown_remaining",
                &self.cooldown_remaining(Instant::now()),
            )
            .field("pacer", &self.pacer)
            .finish()
    }
}

/// The in-process [`LimitStore`]: per-origin limits in memory, the cooldown an atomic read
/// on the request path.
pub(crate) struct LocalStore {
    budget: Option<RetryBudget>,
    cooldown: bool,
    pacing: Option<Pacing>,
    base: Instant,
    origins: OriginTable<LocalOrigin>,
}

impl LocalStore {
    pub(crate) fn new(budget: Option<RetryBudget>, cooldown: bool, pacing: Option<Pacing>) -> Self {
        LocalStore {
            budget,
            cooldown,
            pacing,
            base: Instant::now(),
            origins: OriginTable::new(WhenFull::Share),
        }
    }

    /// The limits of `origin`, as their concrete type (a fleet store wraps them).
    pub(crate) fn local(&self, origin: &Origin<'_>) -> Arc<LocalOrigin> {
        self.origins
            .get_or_insert(origin.key(), LocalOrigin::is_busy, || LocalOrigin {
                budget: self.budget.map(|b| Budget::new(b, self.base)),
                cooldown: self.cooldown.then(|| AtomicInstant::new(self.base)),
                refusal: self.cooldown.then(|| AtomicInstant::new(self.base)),
                pacer: self.pacing.map(|p| {
                    if p.is_adaptive() {
                        OriginPacer::Learned(AdaptivePacer::new(self.cooldown))
                    } else {
                        OriginPacer::Fixed(LocalPacer::new(p))
                    }
                }),
            })
    }

    /// Every origin's limits in use.
    pub(crate) fn all(&self) -> Vec<Arc<LocalOrigin>> {
        self.origins.all()
    }

    #[cfg(test)]
    pub(crate) fn kept(&self) -> usize {
        self.origins.len()
    }
}

impl LimitStore for LocalStore {
    fn origin(&self, origin: &Origin<'_>) -> Arc<dyn OriginLimits> {
        self.local(origin)
    }

    fn cooldown_remaining(&self, origin: &Origin<'_>, now: Instant) -> Option<Duration> {
        let o = self.local(origin);
        o.cooldown_remaining(now).max(o.refusal_remaining(now))
    }

    fn longest_cooldown(&self, now: Instant) -> Option<Duration> {
        self.all()
            .iter()
            .filter_map(|o| o.cooldown_remaining(now).max(o.refusal_remaining(now)))
            .max()
    }
}

impl LocalStore {
    /// Its `Debug` fields but the pacing (a fleet store shows the fleet's, not its
    /// fallback's).
    pub(crate) fn debug_fields(&self, d: &mut fmt::DebugStruct<'_, '_>) {
        d.field("budget", &self.budget)
            .field("shared_cooldown", &self.cooldown)
            .field("origins", &self.origins.len())
            .field("longest_cooldown", &self.longest_cooldown(Instant::now()));
    }
}

impl fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("LocalStore");
        d.field("pacing", &self.pacing);
        self.debug_fields(&mut d);
        d.finish()
    }
}
