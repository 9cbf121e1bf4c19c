//! The link to Redis: one auto-reconnecting multiplexed connection (the redis crate's
//! `ConnectionManager`, or its `ClusterConnection` for a cluster: `conn`), every call
//! bounded, and whether Redis answers.
//!
//! Every call on the connection is bounded by the background bound (the call timeout, at
//! least 500 ms); a paced attempt waits on its round trip for the call timeout only (in
//! `pace`), and the call goes on in the background past it, so that a slot reserved by a
//! late reply can be given back.
//!
//! While Redis answers, paced attempts ask it. When a call fails or times out the link is
//! marked unreachable: attempts are then paced in process at once, without a round trip,
//! and a background task pings Redis until it answers again (every [`PROBE_EVERY`]). After
//! [`STALE_AFTER`] probes in a row that time out, the connection is replaced by a new one:
//! a connection whose peer went silent (a network partition, a blackholed route) may never
//! see an error. The store counts as reachable only while the calls answer and the
//! subscription to the fleet's cooldowns is up.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use redis::aio::PubSub;
use redis::{Client, RedisError};
use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::conn::{Conn, Connector};
use super::names::{Kind, Names};
use super::scripts::Scripts;
use crate::engine::observe::{self, StoreLimit};
use crate::limits::Pacing;

/// How often an unreachable Redis is probed.
pub(crate) const PROBE_EVERY: Duration = Duration::from_millis(250);

/// Probes in a row that time out before the connection is replaced.
pub(crate) const STALE_AFTER: u32 = 3;

/// The least time between two `limit store unreachable` events of one store.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Why a call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CallFailed {
    Timeout,
    /// Redis refused the credentials (a wrong password or user).
    Auth,
    Error,
}

impl CallFailed {
    fn as_str(self) -> &'static str {
        match self {
            CallFailed::Timeout => "timeout",
            CallFailed::Auth => "authentication failed",
            CallFailed::Error => "error",
        }
    }
}

/// The pacing script's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reservation {
    pub(crate) wait: Duration,
    pub(crate) reserved: bool,
    /// The theoretical arrival time the script stored (µs of Redis time), when `reserved`.
    pub(crate) tat: u64,
    /// The interval it was reserved at (µs), to give it back.
    pub(crate) interval: u64,
    /// How far the stored time lies past the slot's own (µs): the burst tolerance, or
    /// the interval at a learned rate.
    pub(crate) lead: u64,
    /// Not reserved: the slot lies beyond the learned rate's horizon; ask again later.
    pub(crate) later: bool,
}

impl Reservation {
    /// Nothing reserved, nothing to wait for: the attempt goes (no pacing).
    pub(crate) const FREE: Reservation = Reservation {
        wait: Duration::ZERO,
        reserved: true,
        tat: 0,
        interval: 0,
        lead: 0,
        later: false,
    };
}

/// `d` in whole µs, bounded so that every GCRA quantity stays exact in Lua's doubles.
pub(super) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .min(1 << 50)
}

pub(crate) struct Link {
    connector: Connector,
    conn: ArcSwap<Conn>,
    pub(crate) names: Names,
    pub(super) scripts: Scripts,
    /// This store's id in pub/sub messages, to skip its own.
    pub(crate) id: String,
    pub(crate) call_timeout: Duration,
    /// Bound of the calls made in the background (re-reads, cooldown writes): at least
    /// the call timeout, at least 500 ms.
    pub(crate) background_timeout: Duration,
    pacing: Option<Pacing>,
    /// The share of the fleet's rate this replica paces at alone (`f64` bits).
    share: AtomicU64,
    /// Where the give-backs of dropped reservations are spawned (a `Drop` may run outside
    /// the runtime's context).
    pub(crate) runtime: tokio::runtime::Handle,
    /// Whether the last call answered in time.
    reachable: AtomicBool,
    /// Whether the subscription to the fleet's cooldowns is up (and its re-read done).
    listening: AtomicBool,
    /// Wakes the prober when the link becomes unreachable.
    pub(crate) probe: Notify,
    /// Wakes the subscriber when the prober sees Redis again.
    pub(crate) resubscribe: Notify,
    /// Wakes the attempts waiting on the fallback pacers when Redis answers again.
    back: Arc<Notify>,
    fallbacks: AtomicU64,
    /// Fallbacks counted since the last event, and when it was logged.
    log: Mutex<(u64, Option<Instant>)>,
}

impl Link {
    /// The bound of the calls made in the background for `call_timeout`: at least 500 ms.
    /// It is also the connection's own bound on each answer: a request bounds its wait on
    /// a call by the call timeout itself, and a cooldown write may take longer.
    pub(crate) fn background_timeout(call_timeout: Duration) -> Duration {
        call_timeout.max(Duration::from_millis(500))
    }

    /// The bound of a connection attempt for `call_timeout`: at least 1 s.
    pub(crate) fn connect_timeout(call_timeout: Duration) -> Duration {
        call_timeout.max(Duration::from_secs(1))
    }

    pub(crate) fn new(
        connector: Connector,
        names: Names,
        call_timeout: Duration,
        pacing: Option<Pacing>,
        runtime: tokio::runtime::Handle,
    ) -> Result<Self, RedisError> {
        let background_timeout = Self::background_timeout(call_timeout);
        let conn = connector.connect_lazy()?;
        Ok(Link {
            connector,
            conn: ArcSwap::from_pointee(conn),
            names,
            scripts: Scripts::new(),
            id: uuid::Uuid::new_v4().simple().to_string(),
            call_timeout,
            background_timeout,
            pacing,
            share: AtomicU64::new(1.0f64.to_bits()),
            runtime,
            reachable: AtomicBool::new(true),
            listening: AtomicBool::new(true),
            probe: Notify::new(),
            resubscribe: Notify::new(),
            back: Arc::new(Notify::new()),
            fallbacks: AtomicU64::new(0),
            log: Mutex::new((0, None)),
        })
    }

    /// The share of the fleet's rate this replica paces at alone while Redis cannot be
    /// reached.
    pub(crate) fn fallback_share(&self) -> f64 {
        f64::from_bits(self.share.load(Ordering::Relaxed))
    }

    pub(crate) fn set_fallback_share(&self, share: f64) {
        self.share.store(share.to_bits(), Ordering::Relaxed);
    }

    /// The client of the URL, or of a cluster's first node given.
    pub(crate) fn client(&self) -> &Client {
        self.connector.first()
    }

    pub(super) fn conn(&self) -> Conn {
        Conn::clone(&self.conn.load())
    }

    /// A connection for the subscription (unbounded: the caller bounds it). For a cluster,
    /// on the next node, after learning which nodes are up.
    pub(crate) async fn pubsub(&self) -> Result<PubSub, RedisError> {
        #[cfg(feature = "redis-cluster")]
        if self.connector.is_cluster() {
            let mut conn = self.conn();
            let mut cmd = redis::cmd("CLUSTER");
            cmd.arg("NODES");
            let nodes = cmd.query_async::<String>(&mut conn);
            if let Ok(Ok(nodes)) = tokio::time::timeout(self.background_timeout, nodes).await {
                self.connector.learn_nodes(&nodes);
            }
        }
        self.connector.pubsub().await
    }

    /// Runs a script on the connection, bounded by the background bound; a failure marks
    /// the link unreachable.
    pub(super) async fn invoke<T: redis::FromRedisValue>(
        &self,
        call: &redis::ScriptInvocation<'_>,
    ) -> Result<T, CallFailed> {
        let mut conn = self.conn();
        self.bounded(self.background_timeout, call.invoke_async(&mut conn))
            .await
    }

    /// `call`, bounded by `bound`; a failure marks the link unreachable.
    pub(super) async fn bounded<T>(
        &self,
        bound: Duration,
        call: impl std::future::Future<Output = Result<T, RedisError>>,
    ) -> Result<T, CallFailed> {
        let failed = match tokio::time::timeout(bound, call).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) if e.is_timeout() => CallFailed::Timeout,
            Ok(Err(e)) if e.kind() == redis::ErrorKind::AuthenticationFailed => CallFailed::Auth,
            Ok(Err(_)) => CallFailed::Error,
            Err(_) => CallFailed::Timeout,
        };
        self.unreachable();
        Err(failed)
    }

    /// Whether the fleet's pacing rate is learned ([`Pacing::adaptive`]).
    pub(crate) fn learns(&self) -> bool {
        self.pacing.is_some_and(|p| p.is_adaptive())
    }

    /// The fleet's pacing, if on.
    pub(crate) fn pacing(&self) -> Option<Pacing> {
        self.pacing
    }

    /// The fixed pacing at this replica's fallback share, if the fleet paces at a fixed
    /// rate.
    pub(crate) fn fallback_pacing(&self) -> Option<Pacing> {
        let pacing = self.pacing.filter(|p| !p.is_adaptive())?;
        Some(pacing.scaled(self.fallback_share()))
    }

    /// The fixed pacing, if on, and its interval and burst tolerance in µs.
    fn gcra(&self) -> Option<(u64, u64)> {
        let pacing = self.pacing.filter(|p| !p.is_adaptive())?;
        let interval = micros(pacing.interval());
        Some((
            interval,
            interval.saturating_mul(u64::from(pacing.burst_size())),
        ))
    }

    /// Takes the next paced slot of `key`, one round trip bounded by the background bound
    /// (the caller bounds its own wait by the call timeout). `floor`: the latest
    /// theoretical arrival time this process stored (0: none); the script starts from it
    /// if Redis holds an earlier one (it lost its state), so that new slots never overlap
    /// the ones this process still has to use.
    pub(crate) async fn pace(
        &self,
        (key, freed): (&str, &str),
        max_wait: Duration,
        floor: u64,
    ) -> Result<Reservation, CallFailed> {
        let Some((interval, tolerance)) = self.gcra() else {
            return Ok(Reservation::FREE);
        };
        let mut call = self.scripts.pace.prepare_invoke();
        call.key(key)
            .key(freed)
            .arg(interval)
            .arg(tolerance)
            .arg(micros(max_wait))
            .arg(floor);
        let (wait, reserved, tat): (i64, i64, i64) = self.invoke(&call).await?;
        Ok(Reservation {
            wait: Duration::from_micros(wait.max(0).unsigned_abs()),
            reserved: reserved == 1,
            tat: tat.max(0).unsigned_abs(),
            interval,
            lead: tolerance,
            later: false,
        })
    }

    /// Gives back the slot whose reservation stored `tat` on `key`, if no later one was
    /// taken since: the stored time moves back one `interval` (µs). Returns the time now
    /// stored (0: none), or `None` when a later reservation kept the slot taken.
    pub(crate) async fn give_back(
        &self,
        (key, freed): (&str, &str),
        slot: Reservation,
    ) -> Result<Option<u64>, CallFailed> {
        if slot.interval == 0 {
            return Ok(None);
        }
        let mut call = self.scripts.give_back.prepare_invoke();
        call.key(key)
            .key(freed)
            .arg(slot.tat)
            .arg(slot.interval)
            .arg(slot.lead);
        let stored: i64 = self.invoke(&call).await?;
        Ok(u64::try_from(stored).ok())
    }

    /// Records a cooldown of `ms` on `key` and announces `message` (bounded by the
    /// background timeout).
    pub(crate) async fn cool_down(
        &self,
        key: &str,
        ms: u64,
        message: &str,
        origin: &str,
    ) -> Result<(), CallFailed> {
        let mut call = self.scripts.cooldown.prepare_invoke();
        call.key(key)
            .key(&self.names.index)
            .arg(ms)
            .arg(&self.names.channel)
            .arg(message)
            .arg(origin);
        let _: i64 = self.invoke(&call).await?;
        Ok(())
    }

    /// Every cooldown and refusal of the scope still running: `(origin, cooldown_ms,
    /// refusal_ms)`, negative for none.
    /// Two round trips: the index's members, then one script that declares every key it
    /// reads (so that Redis Cluster finds them all in the scope's slot).
    pub(crate) async fn reread(&self) -> Result<Vec<(String, i64, i64)>, CallFailed> {
        let mut conn = self.conn();
        let mut members = redis::cmd("SMEMBERS");
        members.arg(&self.names.index);
        // The first call after a cut may meet the connection that broke (it then
        // reconnects): one more try before Redis counts as unreachable.
        let first = tokio::time::timeout(
            self.background_timeout,
            members.query_async::<Vec<String>>(&mut conn),
        )
        .await;
        let origins = match first {
            Ok(Ok(origins)) => origins,
            Ok(Err(e)) if !e.is_timeout() => {
                self.bounded(self.background_timeout, members.query_async(&mut conn))
                    .await?
            }
            _ => {
                self.unreachable();
                return Err(CallFailed::Timeout);
            }
        };
        if origins.is_empty() {
            return Ok(Vec::new());
        }
        let mut call = self.scripts.reread.prepare_invoke();
        call.key(&self.names.index);
        for origin in &origins {
            call.key(self.names.cooldown(Kind::Cooldown, origin))
                .key(self.names.cooldown(Kind::Refusal, origin))
                .arg(origin);
        }
        self.invoke(&call).await
    }

    /// Whether Redis answered the last call in time and the subscription is up.
    pub(crate) fn is_reachable(&self) -> bool {
        self.answers() && self.listening.load(Ordering::Acquire)
    }

    /// Whether Redis answered the last call in time: paced attempts ask it only then.
    pub(crate) fn answers(&self) -> bool {
        self.reachable.load(Ordering::Acquire)
    }

    /// The subscription is up (`true`, once its re-read is done) or lost (`false`).
    pub(crate) fn listening(&self, up: bool) {
        self.listening.store(up, Ordering::Release);
    }

    pub(crate) fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    /// Completes when Redis answers again (from the prober), counting from this call.
    pub(crate) fn back(&self) -> OwnedNotified {
        Arc::clone(&self.back).notified_owned()
    }

    /// Marks the link unreachable and wakes the prober.
    pub(crate) fn unreachable(&self) {
        if self.reachable.swap(false, Ordering::AcqRel) {
            self.probe.notify_one();
        }
    }

    /// Counts a fallback on `limit` and logs it, at most once every [`LOG_EVERY`].
    pub(crate) fn fell_back(&self, limit: StoreLimit, failed: Option<CallFailed>) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        observe::store_fallback(limit);
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.0 += 1;
        let now = Instant::now();
        if log
            .1
            .is_none_or(|at| now.saturating_duration_since(at) >= LOG_EVERY)
        {
            let reason = failed.map_or("unreachable", CallFailed::as_str);
            observe::store_unreachable(limit, reason, log.0);
            *log = (0, Some(now));
        }
    }

    /// The prober: while the link is unreachable, pings Redis every [`PROBE_EVERY`] until it
    /// answers; replaces a connection that stays silent. Runs until aborted.
    pub(crate) async fn probe(self: Arc<Self>) {
        loop {
            if self.is_reachable() {
                self.probe.notified().await;
                continue;
            }
            let mut silent = 0;
            loop {
                tokio::time::sleep(PROBE_EVERY).await;
                let mut conn = self.conn();
                // In a cluster, the node that owns the scope's slot must answer.
                let ping = if self.connector.is_cluster() {
                    redis::cmd("EXISTS").arg(&self.names.index).clone()
                } else {
                    redis::cmd("PING")
                };
                let ping = ping.query_async::<redis::Value>(&mut conn);
                match tokio::time::timeout(self.background_timeout, ping).await {
                    Ok(Ok(_)) => break,
                    Ok(Err(e)) if !e.is_timeout() => silent = 0,
                    _ => silent += 1,
                }
                if silent >= STALE_AFTER {
                    silent = 0;
                    if let Ok(fresh) = self.connector.connect_lazy() {
                        self.conn.store(Arc::new(fresh));
                    }
                }
            }
            self.reachable.store(true, Ordering::Release);
            self.back.notify_waiters();
            self.resubscribe.notify_one();
            observe::store_reachable();
        }
    }
}
