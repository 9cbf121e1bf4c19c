//! Models of the [`WaitQueue`] under loom: its waiters taking their turns as both pacers'
//! do (join, wait for the turn, take a slot under it, leave), with tokio's fair mutex as
//! the turn. (The queue is owned by std's `Arc`, as in the pacers.)

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use loom::thread;
use tokio::time::Instant;

use super::{Place, WaitQueue};
use crate::sync::model::{block_on, poll_once};
use crate::sync::{AtomicUsize, Ordering::SeqCst};

/// The slots given out, and how many waiters hold the turn.
#[derive(Default)]
struct Slots {
    taken: AtomicUsize,
    holding: AtomicUsize,
}

type Attempt = Pin<Box<dyn std::future::Future<Output = usize> + Send>>;

/// Takes the next slot (its number) under the turn and tells newcomers when it is due.
fn take_slot(place: &Place, slots: &Slots, base: Instant) -> usize {
    assert_eq!(slots.holding.fetch_add(1, SeqCst), 0, "two hold the turn");
    let slot = slots.taken.fetch_add(1, SeqCst);
    place.due_at(base + Duration::from_secs(slot as u64));
    slots.holding.fetch_sub(1, SeqCst);
    slot
}

/// An attempt that joined the queue: it waits for its turn, takes a slot, then leaves.
fn attempt(place: Place, slots: Arc<Slots>, base: Instant) -> Attempt {
    Box::pin(async move {
        let turn = place.turn().await;
        let slot = take_slot(&place, &slots, base);
        drop(turn);
        drop(place);
        slot
    })
}

/// A slot is granted to exactly one waiter at a time, the waiters in the order they asked.
#[test]
fn waiters_take_one_slot_each_in_turn() {
    let base = Instant::now();
    loom::model(move || {
        let queue = WaitQueue::new(base);
        let slots = Arc::new(Slots::default());
        // One holds the turn while two others ask for it, in this order.
        let holder = queue.join();
        let turn = block_on(holder.turn());
        let mut waiters: Vec<_> = (0..2)
            .map(|_| attempt(queue.join(), Arc::clone(&slots), base))
            .collect();
        for w in &mut waiters {
            assert!(poll_once(w).is_pending());
        }
        assert_eq!(queue.waiting(), 3);
        let waiters: Vec<_> = waiters
            .into_iter()
            .map(|w| thread::spawn(move || block_on(w)))
            .collect();
        assert_eq!(take_slot(&holder, &slots, base), 0);
        drop(turn);
        drop(holder);
        let got: Vec<_> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
        assert_eq!(got, [1, 2]);
        assert_eq!(queue.waiting(), 0);
    });
}

/// A waiter cancelled while it waits, or after the turn was handed to it but before it took
/// it, passes the turn on and leaves the queue.
#[test]
fn a_waiter_cancelled_mid_hand_off_passes_the_turn_on() {
    let base = Instant::now();
    loom::model(move || {
        let queue = WaitQueue::new(base);
        let slots = Arc::new(Slots::default());
        let holder = queue.join();
        let turn = block_on(holder.turn());
        // The next in line, cancelled while the turn is released: before it is handed the
        // turn, or after.
        let mut next = attempt(queue.join(), Arc::clone(&slots), base);
        assert!(poll_once(&mut next).is_pending());
        let cancel = thread::spawn(move || drop(next));
        // One more joins and asks meanwhile.
        let last = {
            let (queue, slots) = (Arc::clone(&queue), Arc::clone(&slots));
            thread::spawn(move || block_on(attempt(queue.join(), slots, base)))
        };
        drop(turn);
        drop(holder);
        cancel.join().unwrap();
        assert_eq!(last.join().unwrap(), 0, "the last one takes the first slot");
        assert_eq!(slots.taken.load(SeqCst), 1);
        assert_eq!(queue.waiting(), 0);
    });
}
