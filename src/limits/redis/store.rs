//! [`RedisStore`]: the [`LimitStore`] of a fleet, and the limits of one origin in it.

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::learn;
use super::link::Link;
use super::names::{Kind, Write};
use super::pace;
use super::remote::{Learned, Remote};
use crate::engine::observe::StoreLimit;
use crate::limits::local::LocalOrigin;
use crate::limits::table::{OriginTable, WhenFull};
use crate::limits::{LimitStore, LocalStore, Origin, OriginLimits, Pace, Withdrawal, MAX_COOLDOWN};

/// The [`LimitStore`] of a fleet: cooldowns in memory first and relayed through Redis
/// (pub/sub, re-read on every (re)connect), pacing by a GCRA in Redis with an in-process
/// fallback at a share of the rate, the budget per process. The design, and what happens
/// when Redis cannot be reached, is in `docs/fleet.md`.
///
/// Its `Debug` output shows the Redis address (never the user name or password), the
/// scope and the state of the link.
pub(crate) struct RedisStore {
    inner: Arc<StoreTasks>,
}

/// Owns the background tasks: they end with it.
struct StoreTasks {
    shared: Arc<FleetState>,
    tasks: Vec<AbortHandle>,
}

impl Drop for StoreTasks {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        // Counted alive by heartbeats: counted gone now, not when the last one expires (if
        // the runtime still runs the spawned task).
        let link = Arc::clone(&self.shared.link);
        link.runtime
            .clone()
            .spawn(async move { link.leave().await });
    }
}

/// What the store and its background tasks share.
pub(crate) struct FleetState {
    /// The budget (per process), the cooldowns as this process knows them, and the
    /// fallback pacers.
    local: LocalStore,
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
    /// Whether a 429 holds back the other requests (the shared cooldown).
    pub(crate) cooldown: bool,
}

/// How many cooldowns may wait for the writer; past it new ones are dropped (they hold in
/// this process; the writer coalesces what it finds waiting).
pub(crate) const WRITES: usize = 64;

impl FleetState {
    pub(crate) fn new(
        local: LocalStore,
        link: Arc<Link>,
        writes: mpsc::Sender<Write>,
        settings: Settings,
    ) -> Self {
        FleetState {
            local,
            // What is kept per origin here holds no state of its own (the state is in
            // `local`, or Redis): past the bound it is made afresh for each request.
            origins: OriginTable::new(WhenFull::Fresh),
            link,
            writes,
            settings,
        }
    }

    fn new_origin(&self, origin: &Origin<'_>) -> FleetOrigin {
        let name: Arc<str> = Arc::from(origin.to_string());
        FleetOrigin {
            local: self.local.local(origin),
            remote: Arc::new(Remote {
                pace_key: self.link.names.pace(&name),
                freed_key: self.link.names.freed(&name),
                learned: self
                    .link
                    .learns()
                    .then(|| Learned::new(self.link.names.rate(&name))),
                floor: AtomicU64::new(0),
                name,
                link: Arc::clone(&self.link),
                writes: self.settings.cooldown.then(|| self.writes.clone()),
            }),
        }
    }

    /// The limits of `origin`, created on first use (bounded as in process).
    pub(crate) fn origin(&self, origin: &Origin<'_>) -> Arc<FleetOrigin> {
        self.origins
            .get_or_insert(origin.key(), |_, _| false, || self.new_origin(origin))
    }

    /// Hands every cooldown and refusal still running here to the writer again, for after
    /// a (re)connect: Redis may have lost them (restarted without persistence), and a
    /// replica that starts later must still learn of them. The writer keeps the later
    /// deadline, so nothing is lengthened.
    pub(crate) fn republish(&self) {
        let now = Instant::now();
        for o in self.origins.all() {
            if let Some(left) = o.local.cooldown_remaining(now) {
                o.announce(Kind::Cooldown, now + left);
            }
            if let Some(left) = o.local.refusal_remaining(now) {
                o.announce(Kind::Refusal, now + left);
            }
        }
    }

    /// Another replica announced that the fleet paces `origin` at a learned rate.
    pub(crate) fn pace_learned(&self, origin: &Origin<'_>) {
        if let Some(learned) = &self.origin(origin).remote.learned {
            learned.set_on(true);
        }
    }

    /// Another replica's cooldown (or one re-read from Redis): `remaining` from now, at
    /// most [`MAX_COOLDOWN`], kept in memory only.
    pub(crate) fn apply(&self, kind: Kind, origin: &Origin<'_>, remaining: Duration) {
        if remaining.is_zero() {
            return;
        }
        // What Redis or another replica says is bounded as a local 429 is.
        let until = Instant::now() + remaining.min(MAX_COOLDOWN);
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
    pub(crate) local: Arc<LocalOrigin>,
    remote: Arc<Remote>,
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

    fn withdraw(&self, now: Instant) -> Option<Withdrawal> {
        self.local.withdraw(now)
    }

    fn refund(&self, taken: Withdrawal) {
        self.local.refund(taken);
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

    fn pace(&self, max_wait: Duration, deadline_left: Option<Duration>) -> Pace {
        pace::pace(&self.remote, &self.local, max_wait, deadline_left)
    }

    fn observe(&self, sent_at: Instant, status: http::StatusCode, headers: &http::HeaderMap) {
        learn::observe(&self.remote, &self.local, sent_at, status, headers);
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

impl RedisStore {
    pub(crate) fn from_parts(shared: Arc<FleetState>, tasks: Vec<AbortHandle>) -> Self {
        RedisStore {
            inner: Arc::new(StoreTasks { shared, tasks }),
        }
    }
}

impl LimitStore for RedisStore {
    fn is_reachable(&self) -> bool {
        self.inner.shared.link.is_reachable()
    }

    fn fallbacks(&self) -> u64 {
        self.inner.shared.link.fallbacks()
    }

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

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = &self.inner.shared;
        let link = &shared.link;
        // The address only: never the URL, which may carry a user name and password.
        let addr = link.client().get_connection_info().addr().to_string();
        let mut d = f.debug_struct("RedisStore");
        d.field("redis", &addr)
            .field("scope", &shared.settings.scope)
            .field("key_prefix", &shared.settings.prefix)
            .field("call_timeout", &link.call_timeout)
            .field("pacing", &link.pacing())
            .field("fallback_share", &link.fallback_share())
            .field("reachable", &link.is_reachable())
            .field("fallbacks", &link.fallbacks());
        shared.local.debug_fields(&mut d);
        d.finish()
    }
}
