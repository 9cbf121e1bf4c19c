//! Models of [`AtomicInstant`]: every interleaving of its operations, under loom.
//!
//! Only moves to later instants race in the crate (the cooldowns, the pacer's instants): a
//! plain set is made by one writer at a time (the waiter whose turn it is, in the wait
//! queue's models). A set racing a read-modify-write is not modeled: loom 0.7 orders the
//! two wrongly (tokio-rs/loom#254).

use std::time::Duration;

use loom::thread;
use tokio::time::Instant;

use super::AtomicInstant;
use crate::sync::Arc;

fn secs(base: Instant, n: u64) -> Instant {
    base + Duration::from_secs(n)
}

/// Racing moves to later instants leave the latest of them, and a reader never sees the
/// instant move back.
#[test]
fn racing_extends_keep_the_latest() {
    let base = Instant::now();
    loom::model(move || {
        let at = Arc::new(AtomicInstant::new(base));
        let writers: Vec<_> = [5, 3]
            .into_iter()
            .map(|n| {
                let at = Arc::clone(&at);
                thread::spawn(move || at.extend(secs(base, n)))
            })
            .collect();
        let first = at.load();
        let second = at.load();
        let set = [None, Some(secs(base, 3)), Some(secs(base, 5))];
        assert!(set.contains(&first) && set.contains(&second));
        assert!(second >= first, "read {second:?} after {first:?}");
        for w in writers {
            w.join().unwrap();
        }
        assert_eq!(at.load(), Some(secs(base, 5)));
    });
}
