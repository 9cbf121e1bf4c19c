//! [`WaitQueue`]: the attempts waiting for a paced slot, served first come, first served.
//! Both pacers (the fixed-rate one and the adaptive one) queue their waiters here.

// The `Arc` that owns the queue is std's in every build (its count decides nothing).
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;

use super::instant::AtomicInstant;
use crate::sync::{AtomicUsize, Ordering};

/// The attempts waiting for a slot of one pacer.
#[derive(Debug)]
pub(crate) struct WaitQueue {
    /// Waiters take their slots in turn (tokio's mutex is fair: first come, first served).
    turn: Arc<tokio::sync::Mutex<()>>,
    /// Attempts waiting.
    waiting: AtomicUsize,
    /// When the slot of the waiter whose turn it is comes (if known): what a newcomer's
    /// wait is estimated from.
    head_due: AtomicInstant,
}

impl WaitQueue {
    pub(crate) fn new(base: Instant) -> Arc<Self> {
        Arc::new(WaitQueue {
            turn: Arc::new(tokio::sync::Mutex::new(())),
            waiting: AtomicUsize::new(0),
            head_due: AtomicInstant::new(base),
        })
    }

    /// How many attempts wait.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// The wait of an attempt that joins now, behind those already waiting: each takes one
    /// slot, `interval()` after the other, from the slot of the one whose turn it is (if it
    /// is known, else at most an interval away). `None` when nobody waits (and `interval` is
    /// not called).
    pub(crate) fn wait_behind(
        &self,
        interval: impl FnOnce() -> Duration,
        now: Instant,
    ) -> Option<Duration> {
        let ahead = self.waiting();
        if ahead == 0 {
            return None;
        }
        let interval = interval();
        let ahead = u32::try_from(ahead).unwrap_or(u32::MAX);
        Some(match self.head_due.load().filter(|due| *due >= now) {
            Some(due) => (due - now).saturating_add(interval.saturating_mul(ahead)),
            None => interval.saturating_mul(ahead.saturating_add(1)),
        })
    }

    /// Joins the queue: the attempt counts among the waiters until the place is dropped,
    /// however its wait ends (a request cancelled while it waits drops it, polled or not).
    pub(crate) fn join(self: &Arc<Self>) -> Place {
        self.waiting.fetch_add(1, Ordering::AcqRel);
        Place(Arc::clone(self))
    }
}

/// One attempt's place among the waiters, until dropped.
pub(crate) struct Place(Arc<WaitQueue>);

impl Place {
    /// Waits for this attempt's turn: the slot is its to take while the guard lives (the
    /// guard may outlive the place: a fleet's slot given back holds the turn until Redis
    /// has it back).
    pub(crate) async fn turn(&self) -> OwnedMutexGuard<()> {
        Arc::clone(&self.0.turn).lock_owned().await
    }

    /// Tells newcomers when the slot of the attempt whose turn it is comes.
    pub(crate) fn due_at(&self, due: Instant) {
        self.0.head_due.store(due);
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(all(test, loom))]
mod loom_tests;
