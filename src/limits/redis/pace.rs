//! A paced attempt's slot: asked of Redis (one round trip, waited on for at most the call
//! timeout), or of the in-process fallback pacer while Redis cannot be reached. An attempt
//! waiting on the fallback when Redis answers again asks Redis: two pacers at once would
//! send more than the fleet's rate.
//!
//! One attempt takes at most one slot. A slot Redis reserved for an attempt that will not
//! use it is given back in Redis: when the attempt is dropped while it waits for its slot,
//! and when Redis' reply comes after the attempt stopped waiting for it (it went on the
//! fallback, or was dropped). If no later slot was taken since, the stored time moves back
//! one interval; else the slot goes to a set of freed slots, which the next reservations,
//! of any replica, take first until it has passed (two replicas under 300 ms `Timeout`s
//! at 10/s sent 4-17 in 4 s when such a slot stayed taken, 38-42 now). The give-back is
//! spawned, never awaited in a `Drop`.
//!
//! At a learned rate, Redis reserves no slot beyond its horizon: an attempt whose slot
//! lies further is told to ask again nearer it. Such attempts wait their turn in this
//! replica, first come, first served, and newcomers queue behind them; the one whose turn
//! it is keeps it until its slot has come (or has been given back), so that one reserved
//! slot at a time is outstanding for those in line. Without the turn, an attempt that asked
//! again could find its slot taken by newcomers each time (a 6 s run of 12 callers at
//! 10/s saw one wait 4-7 s, where its turn comes after 1.2 s).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::sync::futures::OwnedNotified;
use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;

use super::calls::{LearnedSlot, HORIZON};
use super::learn;
use super::link::{CallFailed, Reservation};
use super::remote::Remote;
use crate::engine::observe::StoreLimit;
use crate::limits::local::{LocalOrigin, OriginPacer};
use crate::limits::pacer::PaceFuture;
use crate::limits::{Pace, Paced};

/// The slot of the next attempt to `remote`'s origin, waiting at most `max_wait`; `local`
/// holds the fallback pacer.
///
/// The round trip is waited on for the call timeout, whatever `max_wait` is (a request
/// that may not wait for a slot still asks Redis whether one is free). Only a request whose
/// deadline is nearer than twice the call timeout stops waiting sooner, at half the time
/// it has left (`deadline_left`), so that it can still be sent on the fallback; that says
/// nothing of Redis and does not mark it unreachable.
pub(crate) fn pace(
    remote: &Arc<Remote>,
    local: &Arc<LocalOrigin>,
    max_wait: Duration,
    deadline_left: Option<Duration>,
) -> Pace {
    let Some(fallback) = local.pacer() else {
        return Pace::Go; // no pacing
    };
    if remote.link.answers() && remote.learned.as_ref().is_some_and(|l| !l.is_on()) {
        return Pace::Go; // the fleet learned no rate (yet)
    }
    let call_timeout = remote.link.call_timeout;
    let hurry = deadline_left
        .map(|left| left / 2)
        .filter(|half| *half < call_timeout);
    let (remote, fallback) = (Arc::clone(remote), fallback.clone());
    let start = Instant::now();
    if !remote.link.answers() {
        // Known unreachable: no round trip, pace in process at once (until Redis answers
        // again: then ask it).
        let (paced, back) = fallback_pace(&remote, &fallback, max_wait, None);
        return match paced {
            Pace::Wait(wait) => Pace::Wait(Box::pin(async move {
                match until_back(wait, back).await {
                    Some(paced) => paced,
                    None => asked(&remote, &fallback, start, max_wait, hurry).await,
                }
            })),
            go_or_too_long => go_or_too_long,
        };
    }
    Pace::Wait(Box::pin(async move {
        asked(&remote, &fallback, start, max_wait, hurry).await
    }))
}

/// The slot of an attempt that began waiting at `start`, asked of Redis; on the fallback
/// pacer while Redis does not answer, and of Redis again once it does.
async fn asked(
    remote: &Arc<Remote>,
    fallback: &OriginPacer,
    start: Instant,
    max_wait: Duration,
    hurry: Option<Duration>,
) -> Paced {
    loop {
        let failed = match in_turn(remote, fallback, start, max_wait, hurry).await {
            Ok(paced) => return paced,
            Err(failed) => failed,
        };
        if let Some(paced) = on_fallback(remote, fallback, start, max_wait, failed).await {
            return paced;
        }
    }
}

/// The slot of an attempt asked of Redis, in turn with the others told to ask again later;
/// `Err`: Redis did not answer in time (why, if it failed).
async fn in_turn(
    remote: &Arc<Remote>,
    fallback: &OriginPacer,
    start: Instant,
    max_wait: Duration,
    hurry: Option<Duration>,
) -> Result<Paced, Option<CallFailed>> {
    let ask = || ask(remote, fallback, start, max_wait, hurry);
    // Attempts told to ask again later wait their turn, first come, first served, and
    // newcomers queue behind them: else an attempt that asks again could find its slot
    // taken each time by newcomers, and wait without end.
    let queue = remote.learned.as_ref().map(|l| Arc::clone(&l.later));
    let mut later = None;
    if queue.as_ref().is_none_or(|q| q.waiting() == 0) {
        match ask().await {
            Step::Done(paced) => return Ok(paced),
            Step::Reserved(held, wait) => return Ok(held.go(wait).await),
            Step::Later(wait) => later = Some(wait),
            Step::Fallback(failed) => return Err(failed),
        }
    }
    let place = queue.as_ref().map(|q| q.join());
    let turn = match &place {
        // As the in-process pacers: at most `max_wait` behind the others in all.
        Some(place) => {
            match tokio::time::timeout(max_wait.saturating_sub(start.elapsed()), place.turn()).await
            {
                Ok(turn) => Some(turn),
                Err(_) => {
                    return Ok(Paced::TooLong(
                        max_wait.saturating_add(Duration::from_nanos(1)),
                    ))
                }
            }
        }
        None => None,
    };
    loop {
        if let Some(wait) = later {
            if start.elapsed() + wait > max_wait {
                return Ok(Paced::TooLong(start.elapsed() + wait));
            }
            tokio::time::sleep(wait.saturating_sub(HORIZON).max(ASK_EVERY)).await;
        }
        // Redis gone: those in line move to the fallback pacer at once, in turn, each
        // giving up its turn before it waits there (not one at a time behind newcomers).
        if !remote.link.answers() {
            return Err(None);
        }
        match ask().await {
            Step::Done(paced) => return Ok(paced),
            Step::Fallback(failed) => return Err(failed),
            Step::Reserved(mut held, wait) => {
                // The turn is kept until the slot has come, one reserved slot at a
                // time: an attempt dropped while it waits for its slot (a `Timeout`
                // above) gives it back, and only then may the next in line ask (and
                // take it); were the next slots reserved already, the dropped one's
                // would be lost.
                held.turn = turn;
                drop(place);
                return Ok(held.go(wait).await);
            }
            Step::Later(wait) => later = Some(wait),
        }
    }
}

/// What one ask of Redis came to.
enum Step {
    /// The attempt goes now, or may not go.
    Done(Paced),
    /// A slot reserved, this far ahead.
    Reserved(Held, Duration),
    /// The slot lies this far ahead, beyond the fleet's horizon: ask again nearer it.
    Later(Duration),
    /// Redis did not answer in time (why, if it failed): the fallback pacer gives the slot.
    Fallback(Option<CallFailed>),
}

/// The slot of an attempt that began waiting at `start`, from the fallback pacer; `None`
/// if Redis answers again while it waits (it then asks Redis: two pacers at once, the
/// fallback's and Redis', would send more than the fleet's rate).
async fn on_fallback(
    remote: &Remote,
    fallback: &OriginPacer,
    start: Instant,
    max_wait: Duration,
    failed: Option<CallFailed>,
) -> Option<Paced> {
    let max_wait = max_wait.saturating_sub(start.elapsed());
    let (paced, back) = fallback_pace(remote, fallback, max_wait, failed);
    match paced {
        Pace::Go => Some(Paced::Go),
        Pace::Wait(wait) => until_back(wait, back).await,
        Pace::TooLong(wait) => Some(Paced::TooLong(wait)),
    }
}

/// Counts the fallback (Redis did not answer; why, if a call `failed`) and asks the
/// fallback pacer, at this replica's share as last counted, for a slot within `max_wait`;
/// with what completes when Redis answers again, taken before the pacer is asked.
fn fallback_pace(
    remote: &Remote,
    fallback: &OriginPacer,
    max_wait: Duration,
    failed: Option<CallFailed>,
) -> (Pace, OwnedNotified) {
    remote.link.fell_back(StoreLimit::Pacing, failed);
    let back = remote.link.back();
    remote.follow_share(fallback);
    (fallback.pace(max_wait), back)
}

/// The fallback's slot, or `None` if Redis answers again first (`back`).
async fn until_back(mut wait: PaceFuture, back: OwnedNotified) -> Option<Paced> {
    let mut back = std::pin::pin!(back);
    std::future::poll_fn(|cx| match wait.as_mut().poll(cx) {
        Poll::Ready(paced) => Poll::Ready(Some(paced)),
        Poll::Pending => back.as_mut().poll(cx).map(|()| None),
    })
    .await
}

/// Asks Redis once for the slot of an attempt that began waiting at `start` (at most
/// `max_wait`).
async fn ask(
    remote: &Arc<Remote>,
    fallback: &OriginPacer,
    start: Instant,
    max_wait: Duration,
    hurry: Option<Duration>,
) -> Step {
    let call_timeout = remote.link.call_timeout;
    let left = max_wait.saturating_sub(start.elapsed());
    let mut call = Call::start(remote, left);
    let answer = match tokio::time::timeout(hurry.unwrap_or(call_timeout), call.answer()).await {
        Ok(answer) => answer,
        Err(_) if hurry.is_some() => Err(None),
        Err(_) => {
            remote.link.unreachable();
            Err(Some(CallFailed::Timeout))
        }
    };
    // A call still running goes on in the background; its slot, if any, is given back.
    drop(call);
    match answer {
        Ok((_, Some(rate))) => learn::saw_rate(remote, fallback, rate),
        Ok(_) => remote.follow_share(fallback),
        Err(_) => {}
    }
    match answer.map(|(slot, _)| slot) {
        // The fleet does not pace the origin.
        Ok(slot) if slot == Reservation::FREE => Step::Done(Paced::Free),
        // The fleet's learned rate reserves no slot beyond its horizon (no debt up front
        // for a rate that may rise).
        Ok(slot) if slot.later => Step::Later(slot.wait),
        Ok(slot) if slot.reserved => {
            // The fallback gives no slot before this one: if Redis goes away, this
            // replica's attempts already given slots in Redis still go at those slots, and
            // the fallback's come after them, not beside them.
            fallback.record(slot.wait);
            Step::Reserved(Held::new(remote, slot), slot.wait)
        }
        Ok(slot) => Step::Done(Paced::TooLong(slot.wait)),
        Err(failed) => Step::Fallback(failed),
    }
}

/// The answer while this replica writes back a rate Redis lost: ask again shortly.
const WRITTEN_BACK: Reservation = Reservation {
    wait: ASK_EVERY,
    reserved: false,
    later: true,
    ..Reservation::FREE
};

/// The least time between two asks of one attempt whose slot lies beyond [`HORIZON`].
const ASK_EVERY: Duration = Duration::from_millis(50);

/// A reservation, and the fleet's rate if it is learned.
type Answer = (Reservation, Option<f64>);

type SlotFuture = Pin<Box<dyn Future<Output = Result<Answer, CallFailed>> + Send>>;

/// The pacing call to Redis. Dropped before it answered, it goes on in a spawned task
/// (bounded by the connection's background bound) and gives back the slot it reserved.
struct Call {
    remote: Arc<Remote>,
    future: Option<SlotFuture>,
}

impl Call {
    fn start(remote: &Arc<Remote>, max_wait: Duration) -> Self {
        let r = Arc::clone(remote);
        let future: SlotFuture = Box::pin(async move {
            let floor = r.floor.load(Ordering::Acquire);
            let keys = (r.pace_key.as_str(), r.freed_key.as_str());
            let (slot, rate) = match &r.learned {
                None => (r.link.pace(keys, max_wait, floor).await?, None),
                Some(learned) => {
                    let key = &learned.rate_key;
                    match r.link.pace_learned(keys, key, max_wait, floor).await? {
                        LearnedSlot::At { slot, rate } => (slot, Some(rate)),
                        // Redis lost the fleet's rate, which this replica writes back: ask
                        // again once it is written, in turn.
                        LearnedSlot::Off if learn::no_rate(&r) => (WRITTEN_BACK, None),
                        LearnedSlot::Off => (Reservation::FREE, None),
                    }
                }
            };
            if slot.reserved {
                r.floor.fetch_max(slot.tat, Ordering::AcqRel);
            }
            Ok((slot, rate))
        });
        Call {
            remote: Arc::clone(remote),
            future: Some(future),
        }
    }

    /// The answer (once: the call is then done).
    async fn answer(&mut self) -> Result<Answer, Option<CallFailed>> {
        let future = self.future.as_mut().expect("a call is answered once");
        let answer = future.await;
        self.future = None;
        answer.map_err(Some)
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        let Some(future) = self.future.take() else {
            return;
        };
        let remote = Arc::clone(&self.remote);
        remote.link.runtime.clone().spawn(async move {
            if let Ok((slot, _)) = future.await {
                if slot.reserved {
                    remote.give_back(slot).await;
                }
            }
        });
    }
}

/// A slot reserved in Redis, given back if dropped before [`go`](Held::go) ends; with the
/// turn of the attempt among those waiting, if it had one, released once the slot is used
/// or given back.
struct Held {
    remote: Option<Arc<Remote>>,
    slot: Reservation,
    turn: Option<OwnedMutexGuard<()>>,
}

impl Held {
    fn new(remote: &Arc<Remote>, slot: Reservation) -> Self {
        Held {
            remote: Some(Arc::clone(remote)),
            slot,
            turn: None,
        }
    }

    /// Waits `wait` for the slot, and goes: the slot is used (given back if dropped
    /// before).
    async fn go(mut self, wait: Duration) -> Paced {
        if wait.is_zero() {
            self.remote = None;
            return Paced::Free;
        }
        tokio::time::sleep(wait).await;
        self.remote = None;
        Paced::Go
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(remote) = self.remote.take() {
            let slot = self.slot;
            let turn = self.turn.take();
            remote.link.runtime.clone().spawn(async move {
                let give_back = remote.give_back(slot);
                match turn {
                    // Those in line wait for the slot to be back, not for a Redis that
                    // does not answer.
                    Some(turn) => {
                        let _ = tokio::time::timeout(remote.link.call_timeout, give_back).await;
                        drop(turn);
                    }
                    None => give_back.await,
                }
            });
        }
    }
}
