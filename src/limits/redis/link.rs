//! The link to Redis: one auto-reconnecting multiplexed connection (the redis crate's
//! `ConnectionManager`), every call bounded, and whether Redis answers.
//!
//! While Redis answers, paced attempts ask it. When a call fails or times out the link is
//! marked unreachable: attempts are then paced in process at once, without a round trip,
//! and a background task pings Redis until it answers again (every [`PROBE_EVERY`]). After
//! [`STALE_AFTER`] probes in a row that time out, the connection is replaced by a new one:
//! a connection whose peer went silent (a network partition, a blackholed route) may never
//! see an error.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::names::Names;
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
pub(crate) enum Failed {
    Timeout,
    Error,
}

impl Failed {
    fn as_str(self) -> &'static str {
        match self {
            Failed::Timeout => "timeout",
            Failed::Error => "error",
        }
    }
}

/// The pacing script's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) wait: Duration,
    pub(crate) reserved: bool,
}

pub(crate) struct Link {
    client: Client,
    config: ConnectionManagerConfig,
    conn: ArcSwap<ConnectionManager>,
    pub(crate) names: Names,
    scripts: Scripts,
    /// This store's id in pub/sub messages, to skip its own.
    pub(crate) id: String,
    pub(crate) call_timeout: Duration,
    /// Bound of the calls made in the background (re-reads, cooldown writes): at least
    /// the call timeout, at least 500 ms.
    pub(crate) background_timeout: Duration,
    pacing: Option<Pacing>,
    reachable: AtomicBool,
    /// Wakes the prober when the link becomes unreachable.
    pub(crate) probe: Notify,
    fallbacks: AtomicU64,
    /// Fallbacks counted since the last event, and when it was logged.
    log: Mutex<(u64, Option<Instant>)>,
}

impl Link {
    pub(crate) fn new(
        client: Client,
        names: Names,
        call_timeout: Duration,
        pacing: Option<Pacing>,
    ) -> Result<Self, RedisError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(call_timeout.max(Duration::from_secs(1))))
            .set_response_timeout(Some(call_timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())?;
        Ok(Link {
            client,
            config,
            conn: ArcSwap::from_pointee(conn),
            names,
            scripts: Scripts::new(),
            id: uuid::Uuid::new_v4().simple().to_string(),
            call_timeout,
            background_timeout: call_timeout.max(Duration::from_millis(500)),
            pacing,
            reachable: AtomicBool::new(true),
            probe: Notify::new(),
            fallbacks: AtomicU64::new(0),
            log: Mutex::new((0, None)),
        })
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    fn conn(&self) -> ConnectionManager {
        ConnectionManager::clone(&self.conn.load())
    }

    /// `call`, bounded by `bound`; a failure marks the link unreachable, unless it is a
    /// timeout of a bound shorter than the call timeout (the caller's own hurry says
    /// nothing of Redis).
    async fn bounded<T>(
        &self,
        bound: Duration,
        call: impl std::future::Future<Output = Result<T, RedisError>>,
    ) -> Result<T, Failed> {
        let failed = match tokio::time::timeout(bound, call).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) if e.is_timeout() => Failed::Timeout,
            Ok(Err(_)) => Failed::Error,
            Err(_) if bound < self.call_timeout => return Err(Failed::Timeout),
            Err(_) => Failed::Timeout,
        };
        self.unreachable();
        Err(failed)
    }

    /// Takes the next paced slot of `key`: one round trip, bounded by the call timeout, or
    /// by half of `max_wait` when that is shorter (a request whose deadline is nearer than
    /// the call timeout must have time left to be sent on the fallback).
    pub(crate) async fn pace(&self, key: &str, max_wait: Duration) -> Result<Slot, Failed> {
        let Some(pacing) = self.pacing else {
            return Ok(Slot {
                wait: Duration::ZERO,
                reserved: true,
            });
        };
        let micros = |d: Duration| {
            u64::try_from(d.as_micros())
                .unwrap_or(u64::MAX)
                .min(1 << 50)
        };
        let interval = micros(pacing.interval());
        let tolerance = interval.saturating_mul(u64::from(pacing.burst_size()));
        let mut conn = self.conn();
        let mut call = self.scripts.pace.prepare_invoke();
        call.key(key)
            .arg(interval)
            .arg(tolerance)
            .arg(micros(max_wait));
        let (wait, reserved): (i64, i64) = self
            .bounded(
                self.call_timeout.min(max_wait / 2),
                call.invoke_async(&mut conn),
            )
            .await?;
        Ok(Slot {
            wait: Duration::from_micros(wait.max(0).unsigned_abs()),
            reserved: reserved == 1,
        })
    }

    /// Records a cooldown of `ms` on `key` and announces `message` (bounded by the
    /// background timeout).
    pub(crate) async fn cool_down(
        &self,
        key: &str,
        ms: u64,
        message: &str,
        origin: &str,
    ) -> Result<(), Failed> {
        let mut conn = self.conn();
        let mut call = self.scripts.cooldown.prepare_invoke();
        call.key(key)
            .key(&self.names.index)
            .arg(ms)
            .arg(&self.names.channel)
            .arg(message)
            .arg(origin);
        let _: i64 = self
            .bounded(self.background_timeout, call.invoke_async(&mut conn))
            .await?;
        Ok(())
    }

    /// Every cooldown and refusal of the scope still running: `(origin, cooldown_ms,
    /// refusal_ms)`, negative for none.
    pub(crate) async fn reread(&self) -> Result<Vec<(String, i64, i64)>, Failed> {
        let mut conn = self.conn();
        let mut call = self.scripts.reread.prepare_invoke();
        call.key(&self.names.index).arg(self.names.base());
        self.bounded(self.background_timeout, call.invoke_async(&mut conn))
            .await
    }

    pub(crate) fn is_reachable(&self) -> bool {
        self.reachable.load(Ordering::Acquire)
    }

    pub(crate) fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    /// Marks the link unreachable and wakes the prober.
    fn unreachable(&self) {
        if self.reachable.swap(false, Ordering::AcqRel) {
            self.probe.notify_one();
        }
    }

    /// Counts a fallback on `limit` and logs it, at most once every [`LOG_EVERY`].
    pub(crate) fn fell_back(&self, limit: StoreLimit, failed: Option<Failed>) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        observe::store_fallback(limit);
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.0 += 1;
        let now = Instant::now();
        if log
            .1
            .is_none_or(|at| now.saturating_duration_since(at) >= LOG_EVERY)
        {
            let reason = failed.map_or("unreachable", Failed::as_str);
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
                let ping = redis::cmd("PING");
                let ping = ping.query_async::<String>(&mut conn);
                match tokio::time::timeout(self.background_timeout, ping).await {
                    Ok(Ok(_)) => break,
                    Ok(Err(e)) if !e.is_timeout() => silent = 0,
                    _ => silent += 1,
                }
                if silent >= STALE_AFTER {
                    silent = 0;
                    if let Ok(fresh) = ConnectionManager::new_lazy_with_config(
                        self.client.clone(),
                        self.config.clone(),
                    ) {
                        self.conn.store(Arc::new(fresh));
                    }
                }
            }
            self.reachable.store(true, Ordering::Release);
            observe::store_reachable();
        }
    }
}
