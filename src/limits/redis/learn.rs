//! Adaptive pacing across a fleet ([`Pacing::adaptive`](crate::limits::Pacing::adaptive)
//! with Redis): one rate per origin and scope, kept in Redis and timed by Redis' clock.
//!
//! - The fleet paces nothing until a replica sees a 429 or a quota header. That replica
//!   cuts (or sets) the rate in Redis and announces it on the scope's channel; from then
//!   on every replica asks Redis for each attempt's slot, at the rate Redis holds.
//! - A 429 cuts the rate once per congestion event, however many replicas see the 429s of
//!   that event: Redis keeps when the last cut was, and a 429 to a request sent before it
//!   changes nothing. Each replica sends only the 429s that cut its own estimate (the
//!   first of each event it sees).
//! - The rate regrows along CUBIC's curve in the pacing script itself, bounded by twice
//!   the fleet's paced send rate, so nothing is written per success.
//! - A quota header sets the rate directly (at most once per [`SET_EVERY`] per replica).
//! - Each replica also learns in process from the responses it sees (quietly), and keeps
//!   its fallback pacer at its share of the fleet's last rate (one over the replicas
//!   alive, `replicas`). While Redis cannot be reached it paces there: it cuts on 429s
//!   but does not regrow, since every replica probing alone would add up past the limit.
//! - A rate left unused for ten minutes expires: the origin is learned again. A rate that
//!   vanishes while replicas use it (Redis restarted empty) is written back as after a
//!   cut ([`no_rate`]): at β × the last rate the replica knew (Redis', or the one its
//!   fallback learned while Redis could not be reached), regrowing towards it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, StatusCode};
use tokio::time::Instant;

use super::remote::Remote;
use crate::engine::observe::StoreLimit;
use crate::limits::adaptive::{event_grace, AdaptiveConfig, Change};
use crate::limits::local::{LocalOrigin, OriginPacer};

/// Redis holds no rate for the origin. If this replica paced at the fleet's rate within
/// [`RESEED_WITHIN`], Redis lost it (a restart without persistence, a flush): rather than
/// let every replica go unpaced into the limit, it writes the rate back as after a cut,
/// at β × the rate it last knew (its fallback's over its share, if it cut that while Redis
/// could not be reached), regrowing towards it, and returns `true`: the attempt asks again
/// shortly. Else the rate expired unused: the fleet paces the origin no more (`false`).
pub(crate) fn no_rate(remote: &Arc<Remote>) -> bool {
    let Some(learned) = &remote.learned else {
        return false;
    };
    let seen = *learned.last_seen.lock().unwrap_or_else(|e| e.into_inner());
    let known = f64::from_bits(learned.known.load(Ordering::Relaxed));
    let recent = seen.is_some_and(|at| at.elapsed() < RESEED_WITHIN);
    if !recent || known <= 0.0 {
        learned.set_on(false);
        return false;
    }
    // As after a cut: this replica's rate may be stale (it met no 429 while the others
    // cut theirs), and the fleet regrows to it along the curve.
    let change = Change {
        before: Some(known),
        rate: known * AdaptiveConfig::default().beta,
        cut: false,
        quota: true,
        retry_after: None,
    };
    if learned.may_set(Instant::now()) {
        spawn(remote, Update::Set { wmax: known }, change);
    }
    true
}

/// How recently a replica must have paced at the fleet's rate to write it back into a
/// Redis that lost it.
pub(crate) const RESEED_WITHIN: Duration = Duration::from_secs(60);

/// The message that announces that the fleet paces `origin` at a learned rate.
pub(crate) fn announcement(id: &str, origin: &str) -> String {
    format!("{id} rate 0 {origin}")
}

/// Redis answered a slot at the fleet's `rate`: this replica's fallback follows it, at its
/// share, and the gauge reports it.
pub(crate) fn saw_rate(remote: &Remote, fallback: &OriginPacer, rate: f64) {
    let Some(learned) = &remote.learned else {
        return;
    };
    learned.set_on(true);
    learned.report(rate);
    learned.knows(rate);
    if let OriginPacer::Learned(pacer) = fallback {
        pacer.set_share_of(rate, remote.link.fallback_share());
    }
}

/// The response to an attempt sent at `sent_at` arrived: this replica learns from it, and
/// a 429 that cut its estimate, or a quota, goes to Redis (in the background). While Redis
/// cannot be reached the replica's own estimate is reported instead.
pub(crate) fn observe(
    remote: &Arc<Remote>,
    local: &LocalOrigin,
    sent_at: Instant,
    status: StatusCode,
    headers: &HeaderMap,
) {
    let (Some(learned), Some(OriginPacer::Learned(pacer))) = (&remote.learned, local.pacer())
    else {
        return;
    };
    let Some(change) = pacer.learn(sent_at, status, headers) else {
        return;
    };
    if !remote.link.answers() {
        match change.before {
            // Alone, this replica keeps its share of the fleet's rate and only cuts it: the
            // others probe for more too, and their probes would add up.
            Some(before) if !change.cut && !change.quota => pacer.set_rate(before),
            // A quota is the key's, shared by the fleet: this replica paces at its share.
            _ if change.quota => {
                let share = remote.link.fallback_share();
                let rate = change.rate * share;
                pacer.set_share_of(change.rate, share);
                learned.knows(change.rate);
                Change { rate, ..change }.emit();
            }
            _ => {
                if change.cut {
                    learned.knows(change.rate / remote.link.fallback_share());
                }
                change.emit();
            }
        }
        return;
    }
    let now = Instant::now();
    if change.cut {
        // Sent within the grace after the fleet's last cut: the same event (the script
        // compares the send time, moved back by the grace, with the cut).
        let retry_after = change.retry_after;
        let age = now.saturating_duration_since(sent_at) + event_grace(retry_after);
        // With the shared cooldown (`writes`), regrowth starts after the `Retry-After`.
        let held = retry_after.filter(|_| remote.writes.is_some());
        let hold = held.unwrap_or_default().min(Duration::from_secs(3600));
        // The fleet's send rate, as far as one replica can tell: its own, over its share.
        let measured = pacer.measured() / remote.link.fallback_share();
        spawn(
            remote,
            Update::Cut {
                age,
                hold,
                measured,
            },
            change,
        );
    } else if change.quota && learned.may_set(now) {
        spawn(remote, Update::Set { wmax: change.rate }, change);
    }
}

/// What a replica writes to the fleet's rate.
enum Update {
    /// A 429 to a request sent `age` ago, holding requests back for `hold`, with the
    /// fleet's send rate as measured here.
    Cut {
        age: Duration,
        hold: Duration,
        measured: f64,
    },
    /// The rate of a quota, or one written back ([`Change::rate`]), regrowing towards
    /// `wmax`.
    Set { wmax: f64 },
}

/// Writes `update` in the background; reports the fleet's new rate, or this replica's
/// `change` if Redis could not be reached.
fn spawn(remote: &Arc<Remote>, update: Update, change: Change) {
    let remote = Arc::clone(remote);
    remote.link.runtime.clone().spawn(async move {
        let Some(learned) = &remote.learned else {
            return;
        };
        let (link, key) = (&remote.link, (learned.rate_key.as_str(), &*remote.name));
        let message = announcement(&link.id, &remote.name);
        let written = match update {
            Update::Cut {
                age,
                hold,
                measured,
            } => link.cut(key, (age, hold), measured, &message).await,
            Update::Set { wmax } => link
                .set_rate(key, (change.rate, wmax), &message)
                .await
                .map(|()| None),
        };
        let cut = match written {
            Ok(cut) => cut,
            Err(failed) => {
                link.fell_back(StoreLimit::Pacing, Some(failed));
                change.emit();
                return;
            }
        };
        learned.set_on(true);
        let rate = match update {
            Update::Cut { .. } => match cut {
                Some(rate) => rate,
                None => return, // another replica cut for this event
            },
            Update::Set { .. } => change.rate,
        };
        let was = f64::from_bits(learned.reported.swap(rate.to_bits(), Ordering::Relaxed));
        let before = Some(was).filter(|r| *r > 0.0).or(change.before);
        Change {
            before,
            rate,
            ..change
        }
        .emit();
    });
}
