//! A paced attempt's slot: asked of Redis (one round trip, bounded by the call timeout),
//! or of the in-process fallback pacer while Redis cannot be reached.

use std::time::Duration;

use tokio::time::Instant;

use super::store::Remote;
use crate::engine::observe::StoreLimit;
use crate::limits::local::LocalOrigin;
use crate::limits::{Pace, Paced};
use std::sync::Arc;

/// The slot of the next attempt to `remote`'s origin, waiting at most `max_wait`; `local`
/// holds the fallback pacer.
pub(crate) fn pace(remote: &Arc<Remote>, local: &Arc<LocalOrigin>, max_wait: Duration) -> Pace {
    let Some(fallback) = local.pacer() else {
        return Pace::Go; // no pacing
    };
    if !remote.link.is_reachable() {
        // Known unreachable: no round trip, pace in process at once.
        remote.link.fell_back(StoreLimit::Pacing, None);
        return fallback.pace(max_wait);
    }
    let (remote, fallback) = (Arc::clone(remote), fallback.clone());
    Pace::Wait(Box::pin(async move {
        let start = Instant::now();
        match remote.link.pace(&remote.pace_key, max_wait).await {
            Ok(slot) if slot.reserved => {
                // The fallback gives no slot before this one: if Redis goes away, this
                // replica's attempts already given slots in Redis still go at those slots,
                // and the fallback's come after them, not beside them.
                fallback.record(slot.wait);
                if slot.wait.is_zero() {
                    return Paced::Free;
                }
                tokio::time::sleep(slot.wait).await;
                Paced::Go
            }
            Ok(slot) => Paced::TooLong(slot.wait),
            Err(failed) => {
                remote.link.fell_back(StoreLimit::Pacing, Some(failed));
                match fallback.pace(max_wait.saturating_sub(start.elapsed())) {
                    Pace::Go => Paced::Go,
                    Pace::Wait(wait) => wait.await,
                    Pace::TooLong(wait) => Paced::TooLong(wait),
                }
            }
        }
    }))
}
