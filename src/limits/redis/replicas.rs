//! How many replicas share the scope, counted through Redis by expiring heartbeats: the
//! share of the fleet's rate a replica paces at alone while Redis cannot be reached is one
//! over that count (unless the builder fixed it with `fallback_share`: such a replica is
//! still counted, by the others).
//!
//! Every [`BEAT`] each replica counts itself alive for [`ALIVE_FOR`] and reads how many
//! are; one that stops (dropped, crashed, cut off) drops out of the count within
//! [`ALIVE_FOR`] (at once when its limits are dropped while the runtime still runs). While Redis cannot be reached
//! the last count holds: replicas that cannot reach Redis cannot count each other.

use std::sync::Arc;
use std::time::Duration;

use super::link::Link;

/// How often a replica counts itself alive.
pub(crate) const BEAT: Duration = Duration::from_secs(1);

/// How long one heartbeat counts: three beats, so a late one does not drop a replica.
pub(crate) const ALIVE_FOR: Duration = Duration::from_secs(3);

/// The heartbeat: every [`BEAT`], counts this replica alive and, if it `follow`s the
/// count (no share fixed by the builder), sets the link's fallback share to one over the
/// replicas alive. Runs until aborted.
pub(crate) async fn heartbeat(link: Arc<Link>, follow: bool) {
    loop {
        if let Ok(alive) = link.heartbeat(ALIVE_FOR).await {
            // `alive` is at least 1 (this replica); as f64 for the share, exact far past
            // any fleet.
            if follow {
                link.set_fallback_share(1.0 / alive as f64);
            }
        }
        tokio::time::sleep(BEAT).await;
    }
}
