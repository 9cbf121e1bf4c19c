//! [`RedisLimits`]: the [`LimitStore`] of a fleet, and the limits of one origin in it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::link::Link;
use super::names::Kind;
use super::pace;
use crate::engine::limits::{InProcess, OriginTable};
use crate::engine::observe::StoreLimit;
use crate::limits::{LimitStore, LocalPacer, Origin, OriginLimits, Pace};

/// Limits shared by every replica of a service through Redis (feature `redis`): a 429's
/// cooldown, seen by one replica, holds back all of them, and client-side
/// [`Pacing`](crate::limits::Pacing) keeps one rate for the whole fleet.
///
/// ```no_run
/// use std::time::Duration;
/// use telecho_retry::limits::{Pacing, RedisLimits, SharedLimits};
/// use telecho_retry::{RetryPolicy, TelEchoRetry};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// // The key allows 600 requests a minute, for all replicas together.
/// let policy = RetryPolicy::builder().pacing(Pacing::per_minute(600)).build();
/// let limits: SharedLimits = RedisLimits::builder("redis://127.0.0.1:6379", "telecho-key-1")
///     .call_timeout(Duration::from_millis(50)) // the default
///     .fallback_share(0.25) // the default: 4 replicas
///     .build(&policy)?; // within a tokio runtime; Redis may be down
/// let retry = TelEchoRetry::new(policy).with_limits(limits);
/// # let _ = retry; Ok(()) }
/// ```
///
/// # Scope and keys
///
/// Replicas share limits when they use the same Redis, key prefix and *scope*: a name you
/// give, one per API key (TelEcho's limits are per key). Never the key itself: the scope
/// is written into Redis keys (a scope starting `tel_sk_` is refused). Limits are kept per
/// [`Origin`](crate::limits::Origin), as in process. Keys: `{<prefix>:<scope>}:pace:<origin>`,
/// `{<prefix>:<scope>}:cooldown:<origin>`, `{<prefix>:<scope>}:refusal:<origin>`,
/// `{<prefix>:<scope>}:cooldowns` (the origins with one), and the pub/sub channel
/// `{<prefix>:<scope>}:events`; the hash tag keeps a scope in one Redis Cluster slot.
/// `<origin>` is `scheme://host:port`, lowercase, without user info.
///
/// # Cooldown: memory first, Redis behind
///
/// The request path reads the cooldown from memory, as in process. A 429 with a
/// `Retry-After` sets it in memory at once and hands it to a background task (over a
/// bounded channel: never blocking; when full, the cooldown holds in this process only)
/// that records it in Redis (`SET … PX`, keeping the later deadline) and publishes it.
/// Every replica's subscriber applies what others publish, within a pub/sub delivery (well
/// under a millisecond on loopback), and each time it (re)connects it re-reads every
/// running cooldown of the scope, so that a replica that was cut off or started late
/// learns of them. Messages carry the time left, not an instant: replicas' clocks do not
/// matter. A replica's first requests may go before its subscription is up (a few ms
/// after [`build`](super::RedisLimitsBuilder::build)).
///
/// # Pacing: one round trip per attempt
///
/// With [`RetryPolicyBuilder::pacing`](crate::RetryPolicyBuilder::pacing) set, each attempt
/// runs one Lua script: a GCRA with reservation timed by Redis' `TIME` (replicas' clocks
/// do not matter), sent by `EVALSHA` and loaded again on `NOSCRIPT` (a restarted Redis, a
/// `SCRIPT FLUSH`). It answers the attempt's wait: the attempt sleeps it and goes, or,
/// when the wait is longer than the request may wait, nothing is reserved and the request
/// fails at once, as in process. The rate holds for the fleet, whatever the number of
/// replicas.
///
/// # When Redis cannot be reached
///
/// Requests never fail or hang because of Redis. Each call a request waits on is bounded
/// by the [call timeout](super::RedisLimitsBuilder::call_timeout) (default 50 ms); past it,
/// or on an error, the attempt is paced in process at the
/// [fallback share](super::RedisLimitsBuilder::fallback_share) of the rate (default 0.25),
/// and until Redis answers a ping again (tried every 250 ms in the background) attempts
/// are paced in process at once, without a round trip. Cooldowns hold in memory as
/// always; those Redis did not take are sent again while they run. A connection that stays
/// silent through 3 pings is replaced. Each fallback counts in
/// [`fallbacks`](Self::fallbacks) and the metric `telecho_retry.store.fallbacks` (label
/// `limit`: `pacing`, `cooldown`), and is logged as `limit store unreachable` (`WARN`, at
/// most once every 10 s). Background calls (recording a cooldown, re-reading them) are
/// bounded by the call timeout or 500 ms, whichever is longer.
///
/// # The retry budget stays per process
///
/// The [`RetryBudget`](crate::limits::RetryBudget) is a ratio (retries at most a share of
/// requests): kept per replica, each replica's retries are at most that share of its own
/// requests, so the fleet's are at most that share of the fleet's. Sharing it would cost a
/// round trip per request and buy nothing.
///
/// Its `Debug` output shows the Redis address (never the user name or password), the
/// scope and the state of the link.
#[derive(Clone)]
pub struct RedisLimits {
    inner: Arc<Inner>,
}

/// Owns the background tasks: they end with it.
struct Inner {
    shared: Arc<Shared>,
    tasks: Vec<AbortHandle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// What the store and its background tasks share.
pub(crate) struct Shared {
    /// The budget (per process) and the cooldowns as this process knows them.
    local: InProcess,
    origins: OriginTable<FleetOrigin>,
    pub(crate) link: Arc<Link>,
    /// Cooldowns this process has to record in Redis.
    writes: mpsc::Sender<Write>,
    settings: Settings,
}

/// The builder's settings, as the store keeps them.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) scope: String,
    pub(crate) prefix: String,
    pub(crate) fallback_share: f64,
    /// Whether a 429 holds back the other requests (the policy's shared cooldown).
    pub(crate) cooldown: bool,
    /// The policy's pacing at the fallback share.
    pub(crate) fallback_pacing: Option<crate::limits::Pacing>,
}

/// A cooldown or refusal of one origin to record in Redis.
#[derive(Debug)]
pub(crate) struct Write {
    pub(crate) kind: Kind,
    pub(crate) origin: Arc<str>,
    pub(crate) until: Instant,
}

/// How many cooldowns may wait for the writer; past it new ones are dropped (they hold in
/// this process; the writer coalesces what it finds waiting).
pub(crate) const WRITES: usize = 64;

impl Shared {
    pub(crate) fn new(
        local: InProcess,
        link: Arc<Link>,
        writes: mpsc::Sender<Write>,
        settings: Settings,
    ) -> Self {
        Shared {
            local,
            origins: OriginTable::new(),
            link,
            writes,
            settings,
        }
    }

    fn new_origin(&self, origin: &Origin<'_>) -> FleetOrigin {
        let name: Arc<str> = Arc::from(origin.to_string());
        FleetOrigin {
            local: self.local.origin(origin),
            remote: Arc::new(Remote {
                pace_key: self.link.names.pace(&name),
                name,
                fallback: self.settings.fallback_pacing.map(LocalPacer::new),
                link: Arc::clone(&self.link),
                writes: self.settings.cooldown.then(|| self.writes.clone()),
            }),
        }
    }

    /// The limits of `origin`, created on first use (bounded as in process).
    pub(crate) fn origin(&self, origin: &Origin<'_>) -> Arc<FleetOrigin> {
        self.origins.get_or_insert(
            origin.key(),
            |o, now| o.cooldown_remaining(now).is_some() || o.refusal_remaining(now).is_some(),
            || self.new_origin(origin),
        )
    }

    /// Another replica's cooldown (or one re-read from Redis): `remaining` from now, kept
    /// in memory only.
    pub(crate) fn apply(&self, kind: Kind, origin: &Origin<'_>, remaining: Duration) {
        if remaining.is_zero() {
            return;
        }
        let until = Instant::now() + remaining;
        let o = self.origin(origin);
        match kind {
            Kind::Cooldown => o.local.cool_down_until(until),
            Kind::Refusal => o.local.refuse_until(until),
        }
    }
}

// ===== one origin =====

/// One origin's limits: the in-process ones (budget, cooldown as known here), and what
/// talks to Redis.
pub(crate) struct FleetOrigin {
    local: Arc<dyn OriginLimits>,
    remote: Arc<Remote>,
}

/// What a paced attempt's future needs, `'static`.
pub(crate) struct Remote {
    pub(crate) name: Arc<str>,
    pub(crate) pace_key: String,
    /// Paces in process, at the fallback share, while Redis cannot be reached.
    pub(crate) fallback: Option<LocalPacer>,
    pub(crate) link: Arc<Link>,
    /// `None`: the shared cooldown is off.
    writes: Option<mpsc::Sender<Write>>,
}

impl FleetOrigin {
    fn announce(&self, kind: Kind, until: Instant) {
        let Some(writes) = &self.remote.writes else {
            return;
        };
        let write = Write {
            kind,
            origin: Arc::clone(&self.remote.name),
            until,
        };
        // Never blocks: when the writer is behind, this cooldown holds in this process only.
        if writes.try_send(write).is_err() {
            self.remote.link.fell_back(StoreLimit::Cooldown, None);
        }
    }
}

impl OriginLimits for FleetOrigin {
    fn deposit(&self, now: Instant) {
        self.local.deposit(now);
    }

    fn withdraw(&self) -> bool {
        self.local.withdraw()
    }

    fn refund(&self) {
        self.local.refund();
    }

    fn cool_down_until(&self, until: Instant) {
        self.local.cool_down_until(until);
        self.announce(Kind::Cooldown, until);
    }

    fn cooldown_remaining(&self, now: Instant) -> Option<Duration> {
        self.local.cooldown_remaining(now)
    }

    fn refuse_until(&self, until: Instant) {
        self.local.refuse_until(until);
        self.announce(Kind::Refusal, until);
    }

    fn refusal_remaining(&self, now: Instant) -> Option<Duration> {
        self.local.refusal_remaining(now)
    }

    fn pace(&self, max_wait: Duration) -> Pace {
        pace::pace(&self.remote, max_wait)
    }
}

impl fmt::Debug for FleetOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetOrigin")
            .field("origin", &self.remote.name)
            .field("local", &self.local)
            .finish()
    }
}

// ===== the store =====

impl RedisLimits {
    pub(crate) fn from_parts(shared: Arc<Shared>, tasks: Vec<AbortHandle>) -> Self {
        RedisLimits {
            inner: Arc::new(Inner { shared, tasks }),
        }
    }

    /// Whether Redis answered the last call in time. While it does not, attempts are
    /// paced in process at the fallback share and cooldowns are kept in this process.
    pub fn is_reachable(&self) -> bool {
        self.inner.shared.link.is_reachable()
    }

    /// How many times this store fell back on in-process limits because Redis could not
    /// be reached in time (the metric `telecho_retry.store.fallbacks` counts the same).
    pub fn fallbacks(&self) -> u64 {
        self.inner.shared.link.fallbacks()
    }
}

impl LimitStore for RedisLimits {
    fn origin(&self, origin: &Origin<'_>) -> Arc<dyn OriginLimits> {
        self.inner.shared.origin(origin)
    }

    fn cooldown_remaining(&self, origin: &Origin<'_>, now: Instant) -> Option<Duration> {
        self.inner.shared.local.cooldown_remaining(origin, now)
    }

    fn longest_cooldown(&self, now: Instant) -> Option<Duration> {
        self.inner.shared.local.longest_cooldown(now)
    }
}

impl fmt::Debug for RedisLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = &self.inner.shared;
        let link = &shared.link;
        // The address only: never the URL, which may carry a user name and password.
        let addr = link.client().get_connection_info().addr().to_string();
        f.debug_struct("RedisLimits")
            .field("redis", &addr)
            .field("scope", &shared.settings.scope)
            .field("key_prefix", &shared.settings.prefix)
            .field("call_timeout", &link.call_timeout)
            .field("fallback_share", &shared.settings.fallback_share)
            .field("reachable", &link.is_reachable())
            .field("fallbacks", &link.fallbacks())
            .field("local", &shared.local)
            .finish()
    }
}
