//! [`Remote`]: what one origin's limits need of Redis, shared by a paced attempt's future
//! (`pace`) and by what learns the fleet's rate (`learn`); and [`Learned`], what this
//! replica knows of that rate.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::link::{Link, Reservation};
use super::names::Write;
use crate::engine::observe;
use crate::limits::local::OriginPacer;
use crate::limits::queue::WaitQueue;

/// What a paced attempt's future needs, `'static`.
pub(crate) struct Remote {
    pub(crate) name: Arc<str>,
    pub(crate) pace_key: String,
    /// The slots given back after a later one was reserved (see `GIVE_BACK`).
    pub(crate) freed_key: String,
    /// The latest theoretical arrival time this process stored in Redis (µs of Redis
    /// time, 0: none): the floor of the next slot, should Redis lose it.
    pub(crate) floor: AtomicU64,
    pub(crate) link: Arc<Link>,
    /// `None`: the shared cooldown is off.
    pub(crate) writes: Option<mpsc::Sender<Write>>,
    /// `Some` with adaptive pacing: the fleet's learned rate.
    pub(crate) learned: Option<Learned>,
}

impl Remote {
    /// Keeps the fallback pacer at this replica's share of the fleet's rate as last
    /// counted (replicas come and go; an origin's pacer may be made before the first
    /// count): a fixed one at its share of the fleet's pacing, a learned one at its share
    /// of the fleet's rate it was set at (its cuts kept). Called when Redis answers, and
    /// before the fallback paces.
    pub(crate) fn follow_share(&self, fallback: &OriginPacer) {
        match fallback {
            OriginPacer::Fixed(pacer) => {
                if let Some(pacing) = self.link.fallback_pacing() {
                    pacer.rescale(pacing);
                }
            }
            OriginPacer::Learned(pacer) => pacer.follow_share(self.link.fallback_share()),
        }
    }

    /// Gives back the reserved `slot` (see `GIVE_BACK`); a failure only counts as one.
    pub(crate) async fn give_back(&self, slot: Reservation) {
        let keys = (self.pace_key.as_str(), self.freed_key.as_str());
        if let Ok(Some(back)) = self.link.give_back(keys, slot).await {
            let _ =
                self.floor
                    .compare_exchange(slot.tat, back, Ordering::AcqRel, Ordering::Acquire);
        }
    }
}

/// The least time between two quota rates one replica writes for one origin.
pub(crate) const SET_EVERY: Duration = Duration::from_millis(250);

/// What a replica knows of the fleet's learned rate for one origin.
#[derive(Debug)]
pub(crate) struct Learned {
    pub(crate) rate_key: String,
    /// Whether the fleet paces the origin, as far as this replica knows: until then its
    /// attempts go without a round trip.
    on: AtomicBool,
    /// The rate last reported to metrics (`f64` bits; 0: none).
    pub(super) reported: AtomicU64,
    /// The attempts told to ask again later for their slot, in turn (see `pace`).
    pub(super) later: Arc<WaitQueue>,
    /// When this replica last wrote a quota's rate.
    last_set: Mutex<Option<Instant>>,
    /// When Redis last gave this replica a slot at the fleet's rate, or its fallback cut
    /// it while Redis could not be reached.
    pub(super) last_seen: Mutex<Option<Instant>>,
    /// The fleet's rate as this replica last knew it (`f64` bits; 0: none): Redis' rate,
    /// or while Redis cannot be reached its fallback's rate over its share. Written back
    /// into a Redis that lost the rate.
    pub(super) known: AtomicU64,
}

impl Learned {
    pub(crate) fn new(rate_key: String) -> Self {
        Learned {
            rate_key,
            on: AtomicBool::new(false),
            reported: AtomicU64::new(0),
            later: WaitQueue::new(Instant::now()),
            last_set: Mutex::new(None),
            last_seen: Mutex::new(None),
            known: AtomicU64::new(0),
        }
    }

    /// Whether the fleet paces the origin, as far as this replica knows.
    pub(crate) fn is_on(&self) -> bool {
        self.on.load(Ordering::Acquire)
    }

    /// The fleet paces the origin (a replica announced it), or no longer does (Redis holds
    /// no rate for it).
    pub(crate) fn set_on(&self, on: bool) {
        self.on.store(on, Ordering::Release);
    }

    /// Reports `rate` as the origin's rate if it moved by more than 5 % since the last
    /// report (the gauge is not set on every request).
    pub(super) fn report(&self, rate: f64) {
        let last = f64::from_bits(self.reported.load(Ordering::Relaxed));
        if last == 0.0 || (rate - last).abs() > last * 0.05 {
            self.reported.store(rate.to_bits(), Ordering::Relaxed);
            observe::pacing_rate(rate);
        }
    }

    /// The fleet's rate is `rate`, as far as this replica knows (see [`Learned::known`]).
    pub(super) fn knows(&self, rate: f64) {
        self.known.store(rate.to_bits(), Ordering::Relaxed);
        *self.last_seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// Whether a quota's rate may be written now (one per [`SET_EVERY`]).
    pub(super) fn may_set(&self, now: Instant) -> bool {
        let mut last = self.last_set.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|at| now.saturating_duration_since(at) < SET_EVERY) {
            return false;
        }
        *last = Some(now);
        true
    }
}
