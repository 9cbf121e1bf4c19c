//! Client-side pacing: what a store answers when asked for an attempt's slot ([`Pace`]),
//! and the in-process pacer ([`LocalPacer`]), a GCRA from the `governor` crate timed by
//! tokio's clock.

use std::fmt;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::time::Instant;

use super::instant::AtomicInstant;
use super::pacing::Pacing;
use super::queue::WaitQueue;

/// The wait for a paced slot, as a store hands it to the engine: it resolves when the slot
/// has come. The engine bounds it by the request's deadline and drops it if the request is
/// cancelled.
pub(crate) type PaceFuture = Pin<Box<dyn Future<Output = Paced> + Send + 'static>>;

/// What a store answers when the engine asks for the next attempt's slot
/// (`OriginLimits::pace`).
pub(crate) enum Pace {
    /// Send now (no pacing, or the slot is now).
    Go,
    /// Wait for this future, then send (or fail, as it says).
    Wait(PaceFuture),
    /// The slot lies this far ahead, beyond what the request may wait: nothing was
    /// reserved.
    TooLong(Duration),
}

impl fmt::Debug for Pace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pace::Go => f.write_str("Go"),
            Pace::Wait(_) => f.write_str("Wait(..)"),
            Pace::TooLong(d) => f.debug_tuple("TooLong").field(d).finish(),
        }
    }
}

/// How a [`PaceFuture`] ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Paced {
    /// The slot has come: send.
    Go,
    /// The slot was free when the store answered: send. The time the future took was the
    /// store's round trip, not a wait for a slot: it is not counted as a pacing hold.
    Free,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    /// The slot lies this far ahead, beyond what the request may wait (a fleet store found
    /// out after a round trip): nothing was reserved.
    TooLong(Duration),
}

/// Tokio's clock, as `governor` reads it: time since the pacer was made. On a paused
/// clock (tests) the pacer follows the paused time.
#[derive(Clone, Copy, Debug)]
struct TokioClock {
    base: Instant,
}

impl Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        Instant::now().saturating_duration_since(self.base)
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>;

/// The in-process pacer of one origin: `governor`'s GCRA, with the attempts that have to
/// wait served first come, first served (one at a time takes the next slot).
///
/// A store for a fleet keeps the same GCRA elsewhere and falls back to a `LocalPacer` at a
/// share of the fleet's rate when it cannot be reached (the share follows the replicas
/// alive: [`LocalPacer::rescale`]).
#[derive(Clone)]
pub(crate) struct LocalPacer {
    inner: Arc<PacerState>,
}

struct PacerState {
    clock: TokioClock,
    /// The pacing and its GCRA; replaced whole when a fleet's fallback share changes.
    rate: RwLock<Rate>,
    /// The attempts waiting for a slot.
    queue: Arc<WaitQueue>,
    /// The earliest slot after the last attempt sent on another pacer's slot, if any.
    recorded: AtomicInstant,
    /// Until when the last slot given keeps the pacer from being the same as a fresh one.
    busy_until: AtomicInstant,
}

/// A pacing and the GCRA that keeps it.
struct Rate {
    pacing: Pacing,
    limiter: Limiter,
}

impl Rate {
    fn new(pacing: Pacing, clock: TokioClock) -> Self {
        let burst = NonZeroU32::new(pacing.burst_size()).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(pacing.interval())
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(burst);
        Rate {
            pacing,
            limiter: RateLimiter::direct_with_clock(quota, clock),
        }
    }
}

impl PacerState {
    fn rate(&self) -> RwLockReadGuard<'_, Rate> {
        self.rate.read().unwrap_or_else(|e| e.into_inner())
    }

    fn interval(&self) -> Duration {
        self.rate().pacing.interval()
    }

    /// Takes the next slot from the GCRA if it is now; else when it comes.
    fn take(&self) -> Result<(), Instant> {
        let rate = self.rate();
        match rate.limiter.check() {
            Ok(()) => {
                let burst = rate
                    .pacing
                    .interval()
                    .saturating_mul(rate.pacing.burst_size());
                if let Some(until) = Instant::now().checked_add(burst) {
                    self.busy_until.extend(until);
                }
                Ok(())
            }
            Err(not_until) => Err(self.instant(not_until.earliest_possible())),
        }
    }
}

impl PacerState {
    /// How long until the slot after the last [recorded](LocalPacer::record) attempt, if
    /// it lies ahead.
    fn held(&self) -> Option<Duration> {
        self.recorded.remaining(Instant::now())
    }

    /// `at` on the limiter's clock, as an instant.
    fn instant(&self, at: Duration) -> Instant {
        self.clock.base + at
    }
}

impl LocalPacer {
    /// A pacer at `pacing`'s rate. Call it within a tokio runtime's context when the clock
    /// is paused (tests), so that it reads the paused time.
    pub(crate) fn new(pacing: Pacing) -> Self {
        let clock = TokioClock {
            base: Instant::now(),
        };
        LocalPacer {
            inner: Arc::new(PacerState {
                clock,
                rate: RwLock::new(Rate::new(pacing, clock)),
                queue: WaitQueue::new(clock.base),
                recorded: AtomicInstant::new(clock.base),
                busy_until: AtomicInstant::new(clock.base),
            }),
        }
    }

    /// Whether forgetting this pacer would lose something: an attempt waiting, or a slot
    /// given within the last `burst` intervals (a fresh pacer would let a burst through
    /// beside it).
    pub(crate) fn is_busy(&self, now: Instant) -> bool {
        let inner = &self.inner;
        inner.queue.waiting() > 0
            || inner.held().is_some()
            || inner.busy_until.remaining(now).is_some()
    }

    /// Records an attempt sent `after` from now (zero: now) on another pacer's slot (a
    /// fleet store's): this pacer gives no slot earlier than one interval after it. When it
    /// takes over (the store cannot be reached), it goes on after the slots the store gave
    /// instead of letting a fresh burst through beside them. Nothing is recorded while
    /// attempts wait here: they keep their place.
    #[cfg(feature = "redis")]
    pub(crate) fn record(&self, after: Duration) {
        let inner = &self.inner;
        if inner.queue.waiting() > 0 {
            // Attempts wait here already: pushing their slot back with each slot the store
            // gives others would starve them.
            return;
        }
        let next = after.saturating_add(inner.interval());
        if let Some(next) = Instant::now().checked_add(next) {
            inner.recorded.extend(next);
        }
    }

    /// Paces at `pacing` from now on (a fleet store's fallback, when the share of the
    /// fleet's rate this replica keeps alone changes); nothing changes if it paces so
    /// already. The new GCRA starts afresh, after the slots [recorded](LocalPacer::record)
    /// and one interval after a slot the old one gave within its burst (not beside it).
    #[cfg(feature = "redis")]
    pub(crate) fn rescale(&self, pacing: Pacing) {
        let inner = &self.inner;
        if inner.rate().pacing == pacing {
            return;
        }
        let mut rate = inner.rate.write().unwrap_or_else(|e| e.into_inner());
        if rate.pacing == pacing {
            return; // another caller rescaled it meanwhile
        }
        *rate = Rate::new(pacing, inner.clock);
        drop(rate);
        let now = Instant::now();
        if inner.busy_until.remaining(now).is_some() {
            if let Some(next) = now.checked_add(pacing.interval()) {
                inner.recorded.extend(next);
            }
        }
    }

    /// Takes the next slot: now ([`Pace::Go`]), after a wait ([`Pace::Wait`]), or not at all
    /// when the wait would be longer than `max_wait` ([`Pace::TooLong`], with the wait
    /// estimated from the attempts already waiting).
    pub(crate) fn pace(&self, max_wait: Duration) -> Pace {
        let inner = &self.inner;
        let wait = match inner.queue.wait_behind(|| inner.interval(), Instant::now()) {
            Some(behind) => behind,
            None => match inner.held() {
                Some(held) => held,
                None => match inner.take() {
                    Ok(()) => return Pace::Go,
                    Err(at) => at.saturating_duration_since(Instant::now()),
                },
            },
        };
        if wait > max_wait {
            return Pace::TooLong(wait);
        }
        let place = inner.queue.join();
        let inner = Arc::clone(inner);
        Pace::Wait(Box::pin(async move {
            let turn = place.turn().await;
            loop {
                let due = match inner.held() {
                    Some(held) => Instant::now() + held,
                    None => match inner.take() {
                        Ok(()) => break,
                        Err(at) => at,
                    },
                };
                place.due_at(due);
                tokio::time::sleep_until(due).await;
            }
            drop(turn);
            drop(place);
            Paced::Go
        }))
    }
}

impl fmt::Debug for LocalPacer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalPacer")
            .field("pacing", &self.inner.rate().pacing)
            .field("waiting", &self.inner.queue.waiting())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go(pace: Pace) -> Option<PaceFuture> {
        match pace {
            Pace::Go => None,
            Pace::Wait(f) => Some(f),
            Pace::TooLong(d) => panic!("too long: {d:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_are_spaced_by_the_interval_in_arrival_order() {
        let pacer = LocalPacer::new(Pacing::new(10, Duration::from_secs(1)));
        let start = Instant::now();
        assert!(
            go(pacer.pace(Duration::from_secs(60))).is_none(),
            "first slot now"
        );
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for i in 0..5 {
            let wait = go(pacer.pace(Duration::from_secs(60))).expect("later slots wait");
            let tx = tx.clone();
            tokio::spawn(async move {
                assert_eq!(wait.await, Paced::Go);
                tx.send((i, start.elapsed())).unwrap();
            });
        }
        drop(tx);
        let mut got = Vec::new();
        while let Some(x) = rx.recv().await {
            got.push(x);
        }
        let want: Vec<_> = (0..5)
            .map(|i| (i, Duration::from_millis(100 * (i as u64 + 1))))
            .collect();
        assert_eq!(got, want);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_beyond_the_longest_wait_is_refused_without_taking_it() {
        let pacer = LocalPacer::new(Pacing::new(1, Duration::from_secs(10)));
        assert!(go(pacer.pace(Duration::from_secs(60))).is_none());
        match pacer.pace(Duration::from_secs(5)) {
            Pace::TooLong(d) => assert_eq!(d, Duration::from_secs(10)),
            other => panic!("{other:?}"),
        }
        // Nothing was reserved: after the interval the next slot is free at once.
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(go(pacer.pace(Duration::ZERO)).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_waiter_leaves_the_queue() {
        let pacer = LocalPacer::new(Pacing::new(1, Duration::from_secs(1)));
        assert!(go(pacer.pace(Duration::from_secs(60))).is_none());
        let wait = go(pacer.pace(Duration::from_secs(60))).unwrap();
        assert_eq!(pacer.inner.queue.waiting(), 1);
        drop(wait);
        assert_eq!(pacer.inner.queue.waiting(), 0);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(
            go(pacer.pace(Duration::ZERO)).is_none(),
            "its slot was never taken"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_behind_a_waiter_counts_from_its_slot() {
        let pacer = LocalPacer::new(Pacing::new(1, Duration::from_secs(1)));
        assert!(go(pacer.pace(Duration::from_secs(60))).is_none());
        tokio::time::advance(Duration::from_millis(900)).await;
        let first = tokio::spawn(go(pacer.pace(Duration::from_secs(60))).unwrap());
        tokio::task::yield_now().await; // it takes its turn and learns its slot (at 1 s)
        match pacer.pace(Duration::from_millis(1099)) {
            Pace::TooLong(d) => assert_eq!(d, Duration::from_millis(1100)),
            other => panic!("{other:?}"),
        }
        let second = go(pacer.pace(Duration::from_millis(1100))).expect("its slot at 2 s");
        let start = Instant::now();
        assert_eq!(first.await.unwrap(), Paced::Go);
        assert_eq!(second.await, Paced::Go);
        assert_eq!(start.elapsed(), Duration::from_millis(1100));
    }

    #[cfg(feature = "redis")]
    #[tokio::test(start_paused = true)]
    async fn a_recorded_attempt_takes_the_slot_it_would_have_had() {
        let pacer = LocalPacer::new(Pacing::new(1, Duration::from_secs(1)));
        pacer.record(Duration::ZERO);
        match pacer.pace(Duration::ZERO) {
            Pace::TooLong(d) => assert_eq!(d, Duration::from_secs(1)),
            other => panic!("{other:?}"),
        }
        tokio::time::advance(Duration::from_millis(500)).await;
        let start = Instant::now();
        go(pacer.pace(Duration::from_secs(1))).expect("waits").await;
        assert_eq!(start.elapsed(), Duration::from_millis(500));
        // And the pacer's own rate goes on from there.
        match pacer.pace(Duration::ZERO) {
            Pace::TooLong(d) => assert_eq!(d, Duration::from_secs(1)),
            other => panic!("{other:?}"),
        }
    }

    #[cfg(feature = "redis")]
    #[tokio::test(start_paused = true)]
    async fn slots_recorded_elsewhere_do_not_starve_a_waiter() {
        let pacer = LocalPacer::new(Pacing::new(10, Duration::from_secs(1)));
        assert!(go(pacer.pace(Duration::from_secs(60))).is_none());
        let waiter = tokio::spawn(go(pacer.pace(Duration::from_secs(60))).expect("waits"));
        tokio::task::yield_now().await;
        // The fleet store gives other attempts a slot every 50 ms meanwhile.
        let start = Instant::now();
        while !waiter.is_finished() {
            assert!(start.elapsed() < Duration::from_secs(1), "starved");
            pacer.record(Duration::ZERO);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(waiter.await.unwrap(), Paced::Go);
        assert!(
            start.elapsed() <= Duration::from_millis(150),
            "{:?}",
            start.elapsed()
        );
    }

    #[cfg(feature = "redis")]
    #[tokio::test(start_paused = true)]
    async fn a_rescaled_pacer_goes_on_at_the_new_rate_after_the_recorded_slot() {
        let pacer = LocalPacer::new(Pacing::new(10, Duration::from_secs(1)));
        pacer.record(Duration::ZERO); // a fleet slot now: none here before 100 ms
        pacer.rescale(Pacing::new(20, Duration::from_secs(1)));
        let start = Instant::now();
        let mut at = Vec::new();
        for _ in 0..4 {
            if let Some(wait) = go(pacer.pace(Duration::from_secs(60))) {
                assert_eq!(wait.await, Paced::Go);
            }
            at.push(start.elapsed());
        }
        let ms = |n: u64| Duration::from_millis(n);
        assert_eq!(at, [ms(100), ms(150), ms(200), ms(250)]);
    }

    #[cfg(feature = "redis")]
    #[tokio::test(start_paused = true)]
    async fn a_rescaled_pacer_gives_no_slot_beside_the_last_one() {
        let pacer = LocalPacer::new(Pacing::new(10, Duration::from_secs(1)));
        assert!(go(pacer.pace(Duration::ZERO)).is_none());
        pacer.rescale(Pacing::new(20, Duration::from_secs(1)));
        match pacer.pace(Duration::ZERO) {
            Pace::TooLong(d) => assert_eq!(d, Duration::from_millis(50)),
            other => panic!("a fresh pacer's slot: {other:?}"),
        }
    }

    #[cfg(feature = "redis")]
    #[tokio::test(start_paused = true)]
    async fn rescaling_to_the_same_rate_keeps_the_slots_given() {
        let pacer = LocalPacer::new(Pacing::new(10, Duration::from_secs(1)));
        assert!(go(pacer.pace(Duration::ZERO)).is_none());
        pacer.rescale(Pacing::new(10, Duration::from_secs(1)));
        match pacer.pace(Duration::ZERO) {
            Pace::TooLong(d) => assert_eq!(d, Duration::from_millis(100)),
            other => panic!("a fresh pacer's slot: {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_goes_at_once_then_the_rate_holds() {
        let pacer = LocalPacer::new(Pacing::new(10, Duration::from_secs(1)).burst(3));
        for _ in 0..3 {
            assert!(go(pacer.pace(Duration::ZERO)).is_none());
        }
        assert!(matches!(pacer.pace(Duration::ZERO), Pace::TooLong(_)));
    }
}
