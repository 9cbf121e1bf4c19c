//! Models of the running [`Budget`]: every order in which racing calls take its lock, under
//! loom. The budget: 10 s window (slots of 1 s), one retry per request, no floor.

use std::time::Duration;

use loom::thread;
use tokio::time::Instant;

use super::{Budget, RetryBudget};
use crate::sync::Arc;

fn budget(base: Instant) -> Arc<Budget> {
    Arc::new(Budget::new(
        RetryBudget::new(Duration::from_secs(10), 0, 1.0),
        base,
    ))
}

fn millis(base: Instant, n: u64) -> Instant {
    base + Duration::from_millis(n)
}

/// Racing withdrawals never take more retries than the window's deposits allow.
#[test]
fn racing_withdrawals_take_no_more_than_the_credit() {
    let base = Instant::now();
    loom::model(move || {
        let b = budget(base);
        b.deposit(millis(base, 500));
        let other = {
            let b = Arc::clone(&b);
            thread::spawn(move || b.withdraw(millis(base, 600)).is_some())
        };
        let mine = b.withdraw(millis(base, 700)).is_some();
        let theirs = other.join().unwrap();
        assert!(mine ^ theirs, "taken: {mine} and {theirs}");
    });
}

/// Across the window's slide, a refund gives back only its own withdrawal, never one
/// counted in a later slot, so the retries kept never exceed the window's credit.
#[test]
fn a_refund_across_the_slide_credits_only_its_own_withdrawal() {
    let base = Instant::now();
    loom::model(move || {
        let b = budget(base);
        // A request in slot 0, long gone from the window by slot 11 (the same array place).
        b.deposit(millis(base, 500));
        // A retry whose clock was read in slot 0, then cancelled and refunded.
        let cancelled = {
            let b = Arc::clone(&b);
            thread::spawn(move || {
                if let Some(taken) = b.withdraw(millis(base, 500)) {
                    b.refund(taken);
                }
            })
        };
        // A request in slot 10 and its retry in slot 11.
        b.deposit(millis(base, 10_500));
        let kept = usize::from(b.withdraw(millis(base, 11_500)).is_some());
        cancelled.join().unwrap();
        let mut more = 0;
        while b.withdraw(millis(base, 11_500)).is_some() {
            more += 1;
            assert!(more <= 2, "no end to the credit");
        }
        assert_eq!(kept + more, 1, "kept {kept}, then took {more} more");
    });
}
