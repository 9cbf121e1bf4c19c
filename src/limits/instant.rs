//! [`AtomicInstant`]: an optional instant on tokio's clock in one atomic, read and moved
//! later without a lock (the cooldowns of the limits, the slots of the pacer).

use std::time::Duration;

use tokio::time::Instant;

use crate::sync::{AtomicU64, Ordering};

/// An instant on tokio's clock, or none: nanoseconds after `base`, plus one (`0`: none).
/// Instants before `base` count as `base`; those 584 years after it, as the last one that
/// fits.
#[derive(Debug)]
pub(crate) struct AtomicInstant {
    base: Instant,
    nanos: AtomicU64,
}

impl AtomicInstant {
    /// None yet, counting from `base`.
    pub(crate) fn new(base: Instant) -> Self {
        AtomicInstant {
            base,
            nanos: AtomicU64::new(0),
        }
    }

    fn encode(&self, at: Instant) -> u64 {
        let nanos = at.saturating_duration_since(self.base).as_nanos();
        u64::try_from(nanos)
            .unwrap_or(u64::MAX - 1)
            .min(u64::MAX - 1)
            + 1
    }

    /// Sets it to `at`.
    pub(crate) fn store(&self, at: Instant) {
        self.nanos.store(self.encode(at), Ordering::Release);
    }

    /// Moves it to `at`, if that is later.
    pub(crate) fn extend(&self, at: Instant) {
        self.nanos.fetch_max(self.encode(at), Ordering::AcqRel);
    }

    /// The instant, if one was set.
    pub(crate) fn load(&self) -> Option<Instant> {
        match self.nanos.load(Ordering::Acquire) {
            0 => None,
            nanos => Some(self.base + Duration::from_nanos(nanos - 1)),
        }
    }

    /// How long from `now` until it, if it lies ahead.
    pub(crate) fn remaining(&self, now: Instant) -> Option<Duration> {
        self.load()
            .filter(|at| *at > now)
            .map(|at| at.duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn extend_keeps_the_latest_and_store_sets() {
        let now = Instant::now();
        let at = AtomicInstant::new(now);
        assert_eq!((at.load(), at.remaining(now)), (None, None));
        at.extend(now + Duration::from_secs(5));
        at.extend(now + Duration::from_secs(2));
        assert_eq!(at.remaining(now), Some(Duration::from_secs(5)));
        at.store(now + Duration::from_secs(1));
        assert_eq!(at.load(), Some(now + Duration::from_secs(1)));
        assert_eq!(at.remaining(now + Duration::from_secs(1)), None);
        at.extend(now + Duration::from_secs(1000 * 365 * 86_400));
        assert!(
            at.remaining(now).is_some(),
            "a far instant saturates, not wraps"
        );
    }
}

#[cfg(all(test, loom))]
mod loom_tests;
