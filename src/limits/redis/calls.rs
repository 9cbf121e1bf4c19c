//! The calls on the [`Link`] of adaptive pacing across a fleet (`learn`) and of the
//! replicas' heartbeat (`replicas`).

use std::time::Duration;

use super::link::{micros, CallFailed, Link, Reservation};
use crate::limits::adaptive::AdaptiveConfig;

/// How far ahead the fleet's learned rate reserves slots: an attempt whose slot lies
/// further asks again when it is about this near.
pub(crate) const HORIZON: Duration = Duration::from_millis(250);

/// The learned pacing script's answer: the fleet does not pace (yet), or a reservation at
/// the fleet's rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum LearnedSlot {
    Off,
    At { slot: Reservation, rate: f64 },
}

impl Link {
    /// As [`pace`](Self::pace), at the rate the fleet learned (stored at `rate_key`), if it
    /// paces the origin yet.
    pub(crate) async fn pace_learned(
        &self,
        (key, freed): (&str, &str),
        rate_key: &str,
        max_wait: Duration,
        floor: u64,
    ) -> Result<LearnedSlot, CallFailed> {
        let config = AdaptiveConfig::default();
        let mut call = self.scripts.learned_pace.prepare_invoke();
        call.key(key)
            .key(rate_key)
            .key(freed)
            .arg(micros(max_wait))
            .arg(floor)
            .arg(config.beta)
            .arg(config.scale)
            .arg(config.max_rate)
            .arg(config.growth_bound)
            .arg(micros(HORIZON));
        let (wait, status, tat, rate, interval): (i64, i64, i64, String, i64) =
            self.invoke(&call).await?;
        let rate = rate.parse::<f64>().unwrap_or(0.0);
        if status == 2 || !rate.is_finite() || rate <= 0.0 {
            return Ok(LearnedSlot::Off);
        }
        let slot = Reservation {
            wait: Duration::from_micros(wait.max(0).unsigned_abs()),
            reserved: status == 1,
            tat: tat.max(0).unsigned_abs(),
            interval: interval.max(0).unsigned_abs(),
            lead: interval.max(0).unsigned_abs(),
            later: status == 3,
        };
        Ok(LearnedSlot::At { slot, rate })
    }

    /// Cuts the fleet's learned rate at `rate_key` for a 429 to a request sent `age` ago
    /// (its regrowth starting after `hold`, the 429's `Retry-After`),
    /// unless that belongs to a congestion event already answered; `measured`: the fleet's
    /// send rate as this replica estimates it (used when the fleet paced nothing yet).
    /// Returns the new rate if this call cut it.
    pub(crate) async fn cut(
        &self,
        (rate_key, origin): (&str, &str),
        (age, hold): (Duration, Duration),
        measured: f64,
        message: &str,
    ) -> Result<Option<f64>, CallFailed> {
        let config = AdaptiveConfig::default();
        let mut call = self.scripts.cut.prepare_invoke();
        call.key(rate_key)
            .key(&self.names.learned)
            .arg(micros(age))
            .arg(measured)
            .arg(config.beta)
            .arg(config.min_rate)
            .arg(config.max_rate)
            .arg(&self.names.channel)
            .arg(message)
            .arg(origin)
            .arg(micros(hold));
        let (cut, rate): (i64, String) = self.invoke(&call).await?;
        Ok(rate.parse::<f64>().ok().filter(|_| cut == 1))
    }

    /// Sets the fleet's learned rate at `rate_key` (from a quota the server sent, or written
    /// back), regrowing towards `wmax`.
    pub(crate) async fn set_rate(
        &self,
        (rate_key, origin): (&str, &str),
        (rate, wmax): (f64, f64),
        message: &str,
    ) -> Result<(), CallFailed> {
        let mut call = self.scripts.set_rate.prepare_invoke();
        call.key(rate_key)
            .key(&self.names.learned)
            .arg(format!("{rate:.6}"))
            .arg(&self.names.channel)
            .arg(message)
            .arg(origin)
            .arg(format!("{wmax:.6}"));
        let _: i64 = self.invoke(&call).await?;
        Ok(())
    }

    /// The origins the fleet paces at a learned rate (written by `cut` and `set_rate`).
    pub(crate) async fn learned_origins(&self) -> Result<Vec<String>, CallFailed> {
        let mut conn = self.conn();
        let mut members = redis::cmd("SMEMBERS");
        members.arg(&self.names.learned);
        self.bounded(self.background_timeout, members.query_async(&mut conn))
            .await
    }

    /// Counts this replica alive for `ttl`; returns how many of the scope are.
    pub(crate) async fn heartbeat(&self, ttl: Duration) -> Result<u64, CallFailed> {
        let mut call = self.scripts.heartbeat.prepare_invoke();
        call.key(&self.names.replicas)
            .arg(&self.id)
            .arg(micros(ttl) / 1000);
        let alive: i64 = self.invoke(&call).await?;
        Ok(alive.max(1).unsigned_abs())
    }

    /// Counts this replica gone at once (its limits were dropped).
    pub(crate) async fn leave(&self) {
        let mut conn = self.conn();
        let mut remove = redis::cmd("ZREM");
        remove.arg(&self.names.replicas).arg(&self.id);
        let _ = tokio::time::timeout(
            self.background_timeout,
            remove.query_async::<i64>(&mut conn),
        )
        .await;
    }
}
