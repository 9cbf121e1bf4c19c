//! The cooldown across the fleet, in two background tasks: the writer records this
//! process's cooldowns in Redis and announces them; the subscriber applies other replicas'
//! announcements to memory, and re-reads every running cooldown of the scope each time it
//! (re)connects, then records again those this process holds (a Redis restarted without
//! persistence lost them). The request path never waits on either.
//!
//! A message is `<store id> <kind> <remaining ms> <origin>`: the time left, not an
//! instant, so that replicas' clocks never matter (the time in transit, under a
//! millisecond on a LAN, is lost). Kind `rate` (with 0 ms) says that the fleet now paces
//! the origin at a learned rate (`learn`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::link::{CallFailed, PROBE_EVERY};
use super::names::{parse_origin, Kind, Write};
use super::store::FleetState;
use crate::engine::observe::StoreLimit;

/// How long the subscription may stay quiet before it is pinged (a connection whose peer
/// went silent shows no error by itself).
const KEEPALIVE: Duration = Duration::from_secs(1);

/// The longest wait between two attempts to subscribe: the probe period, so that a replica
/// relearns the fleet's cooldowns within it once Redis answers again.
const MAX_BACKOFF: Duration = PROBE_EVERY;

// ===== the writer =====

/// Records each cooldown handed over on `writes` and announces it; coalesces what waits
/// (the latest deadline per origin and kind wins) and keeps what Redis did not take, to
/// send it again (every [`PROBE_EVERY`]) while it still runs. Runs until its channel closes
/// or it is aborted.
pub(crate) async fn writer(shared: Arc<FleetState>, mut writes: mpsc::Receiver<Write>) {
    let mut pending: HashMap<(Kind, Arc<str>), Instant> = HashMap::new();
    loop {
        // Waits for a cooldown, or, with some still to send, at most until the next try.
        let next = if pending.is_empty() {
            writes.recv().await.map(Some)
        } else {
            match tokio::time::timeout(PROBE_EVERY, writes.recv()).await {
                Ok(next) => next.map(Some),
                Err(_) => Some(None),
            }
        };
        let Some(next) = next else {
            return; // every sender is gone
        };
        if let Some(first) = next {
            merge(&mut pending, first);
        }
        while let Ok(more) = writes.try_recv() {
            merge(&mut pending, more);
        }
        let now = Instant::now();
        pending.retain(|_, until| *until > now);
        let link = &shared.link;
        let mut kept = HashMap::new();
        for ((kind, origin), until) in pending.drain() {
            let ms = until.saturating_duration_since(Instant::now()).as_millis();
            let ms = u64::try_from(ms).unwrap_or(u64::MAX);
            if ms == 0 {
                continue;
            }
            let message = format!("{} {} {ms} {origin}", link.id, kind.as_str());
            let key = link.names.cooldown(kind, &origin);
            if let Err(failed) = link.cool_down(&key, ms, &message, &origin).await {
                link.fell_back(StoreLimit::Cooldown, Some(failed));
                kept.insert((kind, origin), until);
            }
        }
        pending = kept;
    }
}

fn merge(pending: &mut HashMap<(Kind, Arc<str>), Instant>, write: Write) {
    let until = pending
        .entry((write.kind, write.origin))
        .or_insert(write.until);
    *until = (*until).max(write.until);
}

// ===== the subscriber =====

/// Subscribes to the scope's channel, re-reads the running cooldowns, then applies each
/// announcement. On any failure the store counts as unreachable until the subscription is
/// back, and it starts over after a backoff (50 ms, doubling, at most [`MAX_BACKOFF`]), or
/// at once when the prober sees Redis answer again. Runs until aborted.
pub(crate) async fn subscriber(shared: Arc<FleetState>) {
    let link = &shared.link;
    let mut backoff = Duration::from_millis(50);
    loop {
        let started = Instant::now();
        let _ = session(&shared).await;
        link.listening(false);
        if started.elapsed() > MAX_BACKOFF {
            backoff = Duration::from_millis(50);
        }
        // The backoff, or until the prober sees Redis again.
        let _ = tokio::time::timeout(backoff, link.resubscribe.notified()).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One subscription, from connecting to losing it.
async fn session(shared: &FleetState) -> Result<(), CallFailed> {
    let link = &shared.link;
    let bound = link.background_timeout;
    let pubsub = timed(tokio::time::timeout(bound, link.pubsub()).await)?;
    let (mut sink, mut stream) = pubsub.split();
    timed(tokio::time::timeout(bound, sink.subscribe(&link.names.channel)).await)?;
    // Subscribed first, then read: a cooldown recorded in between is seen twice, never
    // missed.
    for (origin, cooldown, refusal) in link.reread().await? {
        let Some(origin) = parse_origin(&origin) else {
            continue;
        };
        for (kind, ms) in [(Kind::Cooldown, cooldown), (Kind::Refusal, refusal)] {
            if let Ok(ms) = u64::try_from(ms) {
                shared.apply(kind, &origin, Duration::from_millis(ms));
            }
        }
    }
    // The origins the fleet paces at a learned rate (announced while this one was away).
    for origin in link.learned_origins().await? {
        if let Some(origin) = parse_origin(&origin) {
            shared.pace_learned(&origin);
        }
    }
    // And what this process holds goes back to Redis, which may have lost it.
    shared.republish();
    link.listening(true);
    loop {
        match tokio::time::timeout(KEEPALIVE, stream.next()).await {
            Ok(Some(message)) => {
                if let Ok(payload) = message.get_payload::<String>() {
                    receive(shared, &payload);
                }
            }
            Ok(None) => return Err(CallFailed::Error),
            Err(_) => {
                timed(tokio::time::timeout(bound, sink.ping::<redis::Value>()).await)?;
            }
        }
    }
}

/// A background call's result, bounded.
fn timed<T>(
    result: Result<Result<T, redis::RedisError>, tokio::time::error::Elapsed>,
) -> Result<T, CallFailed> {
    match result {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(_)) => Err(CallFailed::Error),
        Err(_) => Err(CallFailed::Timeout),
    }
}

/// Applies one announcement, unless it is this store's own or malformed.
fn receive(shared: &FleetState, payload: &str) {
    let mut parts = payload.splitn(4, ' ');
    let (Some(id), Some(kind), Some(ms), Some(origin)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    if id == shared.link.id {
        return;
    }
    if kind == "rate" {
        if let Some(origin) = parse_origin(origin) {
            shared.pace_learned(&origin);
        }
        return;
    }
    let (Some(kind), Ok(ms), Some(origin)) =
        (Kind::parse(kind), ms.parse::<u64>(), parse_origin(origin))
    else {
        return;
    };
    shared.apply(kind, &origin, Duration::from_millis(ms));
}
