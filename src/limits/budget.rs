//! The retry budget: its settings ([`RetryBudget`]) and the running budget of one origin
//! ([`Budget`]).

use std::time::Duration;

use tokio::time::Instant;

use crate::sync::Mutex;

/// The retry budget's settings: retries may add at most `retry_ratio` of the requests of
/// the last `ttl`, plus `min_per_sec × ttl` whatever the traffic (Finagle's budget, as in
/// tower's `TpsBudget`). Kept per origin; a spent budget hands the response back with
/// [`StopReason::Budget`](crate::StopReason::Budget).
///
/// The window is `ttl` cut into ten slots aligned on the clock: a request counts for between
/// 0.9 × and 1 × `ttl`, a retry for between 1 × and 1.1 × `ttl`, so the retries of any
/// `ttl` never exceed the share of the requests of that `ttl` (a retry that is never sent,
/// its request cancelled while it waited, is given back if it still counts).
///
/// ```
/// use std::time::Duration;
/// use telecho_retry::limits::{Limits, RetryBudget};
///
/// // Retries may add 10 % load, with a floor of 1 retry per second, over 30 s.
/// let limits = Limits::builder()
///     .retry_budget(RetryBudget::new(Duration::from_secs(30), 1, 0.1))
///     .build();
/// # let _ = limits;
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryBudget {
    ttl: Duration,
    min_per_sec: u32,
    retry_ratio: f32,
}

impl Default for RetryBudget {
    /// 10 s window, 10 retries per second floor, 20 % extra load (Finagle's defaults).
    fn default() -> Self {
        RetryBudget {
            ttl: Duration::from_secs(10),
            min_per_sec: 10,
            retry_ratio: 0.2,
        }
    }
}

impl RetryBudget {
    /// A budget over a sliding window of `ttl` (clamped to 1–60 s), allowing
    /// `min_per_sec` retries per second whatever the traffic, plus `retry_ratio` retries per
    /// request (clamped to 0–1000; `0.2` is 20 % extra load; NaN counts as 0).
    pub fn new(ttl: Duration, min_per_sec: u32, retry_ratio: f32) -> Self {
        let retry_ratio = if retry_ratio.is_nan() {
            0.0
        } else {
            retry_ratio.clamp(0.0, 1000.0)
        };
        RetryBudget {
            ttl: ttl.clamp(Duration::from_secs(1), Duration::from_secs(60)),
            min_per_sec: min_per_sec.min(i32::MAX as u32 / 60),
            retry_ratio,
        }
    }

    /// The window.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The floor, in retries per second.
    pub fn min_per_sec(&self) -> u32 {
        self.min_per_sec
    }

    /// Retries allowed per request.
    pub fn retry_ratio(&self) -> f32 {
        self.retry_ratio
    }
}

// ===== the running budget =====

/// Slots per `ttl`: deposits count over the current slot and the `SLOTS - 1` before it,
/// withdrawals over the current one and the `SLOTS` before it.
const SLOTS: u64 = 10;

/// Fixed-point scale: a request deposits `SCALE` when the ratio is above zero, a retry
/// withdraws `SCALE / ratio`, rounded. (Integer division of `1 / ratio`, as tower's
/// `TpsBudget` does, would let a ratio of 0.6 allow as many retries as 1.0.)
const SCALE: u64 = 1000;

/// A retry taken from a [`Budget`]: the slot it counts in, to give it back (`None`: taken
/// from no budget).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Withdrawal(Option<u64>);

impl Withdrawal {
    /// A retry no budget counts.
    pub(crate) const FREE: Withdrawal = Withdrawal(None);
}

/// The running budget of one origin: deposits per request, withdrawals per retry, in slots
/// of `ttl / 10` aligned on the clock. One short lock per call.
#[derive(Debug)]
pub(crate) struct Budget {
    base: Instant,
    slot_nanos: u64,
    deposit: u64,
    withdraw: u64,
    reserve: u64,
    slots: Mutex<Slots>,
}

#[derive(Debug, Default)]
struct Slots {
    /// The newest slot counted in.
    latest: u64,
    ring: [BudgetSlot; SLOTS as usize + 1],
}

#[derive(Clone, Copy, Debug, Default)]
struct BudgetSlot {
    id: u64,
    deposits: u64,
    withdrawals: u64,
}

impl Budget {
    pub(crate) fn new(cfg: RetryBudget, base: Instant) -> Self {
        let (deposit, withdraw) = if cfg.retry_ratio() <= 0.0 {
            (0, SCALE)
        } else {
            let w = (SCALE as f64 / f64::from(cfg.retry_ratio())).round();
            (SCALE, (w as u64).max(1))
        };
        Budget {
            base,
            slot_nanos: u64::try_from((cfg.ttl() / SLOTS as u32).as_nanos())
                .unwrap_or(u64::MAX)
                .max(1),
            deposit,
            withdraw,
            reserve: u64::from(cfg.min_per_sec())
                .saturating_mul(cfg.ttl().as_secs())
                .saturating_mul(withdraw),
            slots: Mutex::new(Default::default()),
        }
    }

    /// The slot `now` falls in.
    fn slot_of(&self, now: Instant) -> u64 {
        let nanos = now.saturating_duration_since(self.base).as_nanos();
        u64::try_from(nanos / u128::from(self.slot_nanos)).unwrap_or(u64::MAX)
    }

    fn with_slots<T>(&self, f: impl FnOnce(&mut Slots) -> T) -> T {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut slots)
    }

    /// Records a request.
    pub(crate) fn deposit(&self, now: Instant) {
        if self.deposit == 0 {
            return;
        }
        let id = self.slot_of(now);
        self.with_slots(|slots| {
            let id = slots.advance(id);
            slots.current(id).deposits += 1;
        });
    }

    /// Takes one retry, if the budget allows it.
    pub(crate) fn withdraw(&self, now: Instant) -> Option<Withdrawal> {
        let id = self.slot_of(now);
        self.with_slots(|slots| {
            let id = slots.advance(id);
            slots.current(id);
            let (mut deposits, mut withdrawals) = (0u64, 0u64);
            for s in slots.ring.iter() {
                let age = id.wrapping_sub(s.id);
                if s.id <= id && age < SLOTS {
                    deposits += s.deposits;
                }
                if s.id <= id && age <= SLOTS {
                    withdrawals += s.withdrawals;
                }
            }
            let credit = deposits
                .saturating_mul(self.deposit)
                .saturating_add(self.reserve);
            if withdrawals.saturating_add(1).saturating_mul(self.withdraw) > credit {
                return None;
            }
            slots.current(id).withdrawals += 1;
            Some(Withdrawal(Some(id)))
        })
    }

    /// Gives back a retry that was never sent, if its slot still counts.
    pub(crate) fn refund(&self, taken: Withdrawal) {
        let Some(id) = taken.0 else { return };
        self.with_slots(|slots| {
            let slot = &mut slots.ring[(id % (SLOTS + 1)) as usize];
            if slot.id == id {
                slot.withdrawals = slot.withdrawals.saturating_sub(1);
            }
        });
    }
}

impl Slots {
    /// `id`, or the newest slot counted in if that is later: a call whose clock was read
    /// before another's but which takes the lock after it counts in the newer slot, rather
    /// than move the slot back a whole ring (which would empty it).
    fn advance(&mut self, id: u64) -> u64 {
        self.latest = self.latest.max(id);
        self.latest
    }

    /// The slot `id`, emptied first if it held an older one.
    fn current(&mut self, id: u64) -> &mut BudgetSlot {
        let slot = &mut self.ring[(id % (SLOTS + 1)) as usize];
        if slot.id != id {
            *slot = BudgetSlot {
                id,
                ..BudgetSlot::default()
            };
        }
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_with_a_stale_clock_does_not_empty_a_newer_slot() {
        let base = Instant::now();
        let at = |millis| base + Duration::from_millis(millis);
        let b = Budget::new(RetryBudget::new(Duration::from_secs(10), 0, 1.0), base);
        b.deposit(at(10_500));
        assert!(b.withdraw(at(11_500)).is_some());
        // Its clock read in slot 0, a whole ring (11 slots) before: the same place.
        b.deposit(at(500));
        assert!(
            b.withdraw(at(500)).is_some(),
            "counts the deposit just made"
        );
        assert_eq!(
            b.withdraw(at(11_500)),
            None,
            "the retries taken still count"
        );
    }
}

#[cfg(all(test, loom))]
mod loom_tests;
