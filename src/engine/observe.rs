//! What the engine shows of itself: one `tracing` span per attempt (feature `tracing`),
//! events for retries, stops, cooldown waits and refusals, and counters and histograms
//! through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`).
//!
//! Nothing here ever carries a header value, a URL or a body: only the method, the status,
//! the kind of transport error, the decision, delays, stop reasons and known TelEcho error
//! codes. Every metric label takes one of a few fixed values (no URL, no origin, no key).
//!
//! # Spans
//!
//! Every attempt sent runs inside a span named [`ATTEMPT_SPAN`] (target `telecho_retry`,
//! level `INFO`), a child of whatever span is current when the request is made. It is
//! entered while the inner service is called and while the attempt's future is polled, so
//! the spans of the services below (reqwest-tracing's, tower-http's) are its children. Its
//! fields follow OpenTelemetry's HTTP conventions, so `tracing-opentelemetry` exports them
//! as they are:
//!
//! | field | when | value |
//! |---|---|---|
//! | `http.request.method` | always | `GET`, `POST` … (`_OTHER` for a method outside RFC 9110) |
//! | `http.request.resend_count` | retries only | 1 on the second attempt, 2 on the third … |
//! | `http.response.status_code` | a response arrived | the status, as an integer |
//! | `error.type` | the attempt failed | the status code as a string for a status ≥ 400; the [`TransportErrorKind`](crate::classify::TransportErrorKind) (`connect`, `timeout`, `reset` …); `deadline` when the deadline cut it |
//! | `otel.status_code` | the attempt failed | `ERROR` |
//! | `telecho_retry.decision` | an outcome was classified | `accept`, `retry_after`, `backoff`, `fatal` |
//! | `telecho_retry.retry_delay_ms` | a retry follows | the delay before it, in milliseconds |
//! | `telecho_retry.stop_reason` | retrying stopped | a [`StopReason`] (`success`, `max_retries` …), or `cancelled` |
//! | `telecho_retry.error_code` | the body's TelEcho code was read | the code if this crate knows it, else `_OTHER` |
//!
//! The span has no `otel.kind`, so it is exported as an `INTERNAL` span: the `CLIENT` span of
//! the attempt is the HTTP client's (for reqwest, reqwest-tracing's with
//! `ResendCountSpanBackend` (feature `reqwest-tracing`), which sets
//! `http.request.resend_count` too).
//!
//! Events (target `telecho_retry`): `retrying` (`INFO`) for each retry, `not retrying`
//! (`DEBUG`) when retrying stops after a retry or for a reason other than success,
//! `held back by the cooldown` and `refused` (`DEBUG`) before an attempt,
//! `deadline cut the attempt` and `cancelled` (`DEBUG`), `pacing rate cut` (`INFO`, with
//! `from` and `to` per second) when a 429 cuts adaptive pacing's estimate.
//!
//! # Metrics
//!
//! | name | type | unit | labels | what it counts |
//! |---|---|---|---|---|
//! | [`telecho_retry.requests`](metric::REQUESTS) | counter | requests | `stop_reason`, `status_class` | logical requests, once each when they end |
//! | [`telecho_retry.retries`](metric::RETRIES) | counter | retries | `status_class`, `decision` | retries granted, by the outcome retried |
//! | [`telecho_retry.retry_delay`](metric::RETRY_DELAY) | histogram | seconds | `decision` | the delay before each retry |
//! | [`telecho_retry.cooldown.holds`](metric::COOLDOWN_HOLDS) | counter | requests | — | attempts held back by another request's 429 |
//! | [`telecho_retry.cooldown.delay`](metric::COOLDOWN_DELAY) | histogram | seconds | — | how long each was held back |
//! | [`telecho_retry.cooldown.refusals`](metric::COOLDOWN_REFUSALS) | counter | requests | `stop_reason` | attempts not sent because of a cooldown (`retry_after_too_long`: the origin is refused, or the wait is above the cap; `deadline`: the wait would cross the deadline) |
//! | [`telecho_retry.budget.refusals`](metric::BUDGET_REFUSALS) | counter | retries | `status_class` | retries the budget refused (the outcome is handed back) |
//! | [`telecho_retry.pacing.holds`](metric::PACING_HOLDS) | counter | attempts | — | attempts that waited for their slot under client-side pacing |
//! | [`telecho_retry.pacing.delay`](metric::PACING_DELAY) | histogram | seconds | — | how long each waited |
//! | [`telecho_retry.pacing.rate`](metric::PACING_RATE) | gauge | requests per second | — | the rate adaptive pacing ([`Pacing::adaptive`](crate::limits::Pacing::adaptive)) estimates, set each time an origin's estimate changes (with several origins: the last one that changed) |
//! | [`telecho_retry.pacing.adjustments`](metric::PACING_ADJUSTMENTS) | counter | events | `direction` | adaptive pacing's estimate was cut by a 429 (`down`, once per congestion event) or set from a quota header (`set`) |
//! | [`telecho_retry.store.fallbacks`](metric::STORE_FALLBACKS) | counter | events | `limit` | a fleet store (`RedisLimits`, feature `redis`) could not be reached in time: `pacing`: an attempt paced in process instead; `cooldown`: a 429's cooldown kept in this process only (it is sent again once the store answers) |
//!
//! Label values: `status_class` is `1xx` … `5xx` for a response, `error` for a transport
//! error, a timeout or a request the engine refused, `none` for a request cancelled before
//! it had an outcome; `stop_reason` is a [`StopReason`] (`success`, `fatal`,
//! `retry_after_too_long`, `max_retries`, `not_replayable`, `budget`, `deadline`), or
//! `cancelled` (the caller dropped the request), or `service_error` (the inner service
//! failed to become ready); `decision` is `retry_after` or `backoff`; `limit` is `pacing` or
//! `cooldown`; `direction` is `down` or `set`.
//!
//! A pacing wait longer than the request may wait is counted in
//! `telecho_retry.cooldown.refusals` (its `stop_reason` says which bound it crossed).
//!
//! A fleet store also logs (target `telecho_retry`) `limit store unreachable` (`WARN`, at
//! most once every 10 s per store, with the fallbacks counted since the last such event)
//! and `limit store reachable again` (`INFO`).
//!
//! Call `describe_metrics` (feature `metrics`) once after installing a recorder to give it the units and
//! descriptions.
//!
//! # Cost
//!
//! Without the features, none of this is compiled. With them, a first-try success creates
//! one span (nothing but tracing's callsite check when no subscriber wants it) and
//! increments one counter (a handle looked up from a table built once per process, no
//! allocation, a no-op when no recorder is installed).

use std::time::Duration;

use http::Method;

use super::info::StopReason;
use super::state::{Action, RetryState};
use super::traits::ResponseParts;
use crate::classify::{Decision, Outcome};

/// The name of the span each attempt runs in.
pub const ATTEMPT_SPAN: &str = "telecho_retry.attempt";

/// The fields of the [attempt span](ATTEMPT_SPAN) (see the [module docs](self)).
pub mod field {
    /// The method: OpenTelemetry's `http.request.method`.
    pub const REQUEST_METHOD: &str = "http.request.method";
    /// The ordinal of the resend, on retries only: OpenTelemetry's
    /// `http.request.resend_count`.
    pub const RESEND_COUNT: &str = "http.request.resend_count";
    /// The response status: OpenTelemetry's `http.response.status_code`.
    pub const RESPONSE_STATUS_CODE: &str = "http.response.status_code";
    /// Why the attempt failed: OpenTelemetry's `error.type`.
    pub const ERROR_TYPE: &str = "error.type";
    /// `ERROR` on a failed attempt: the span status for `tracing-opentelemetry`.
    pub const OTEL_STATUS_CODE: &str = "otel.status_code";
    /// The classifier's decision: `accept`, `retry_after`, `backoff`, `fatal`.
    pub const DECISION: &str = "telecho_retry.decision";
    /// The delay before the retry that follows, in milliseconds.
    pub const RETRY_DELAY_MS: &str = "telecho_retry.retry_delay_ms";
    /// Why retrying stopped after this attempt.
    pub const STOP_REASON: &str = "telecho_retry.stop_reason";
    /// The TelEcho error code read from the body, when the crate knows it (else `_OTHER`).
    pub const ERROR_CODE: &str = "telecho_retry.error_code";
}

/// Metric names (feature `metrics`; see the [module docs](self) for types, units and labels).
pub mod metric {
    /// Counter: logical requests, once each when they end; labels `stop_reason`,
    /// `status_class`.
    pub const REQUESTS: &str = "telecho_retry.requests";
    /// Counter: retries granted; labels `status_class` (of the outcome retried), `decision`.
    pub const RETRIES: &str = "telecho_retry.retries";
    /// Histogram, seconds: the delay before each retry; label `decision`.
    pub const RETRY_DELAY: &str = "telecho_retry.retry_delay";
    /// Counter: attempts held back by the shared cooldown.
    pub const COOLDOWN_HOLDS: &str = "telecho_retry.cooldown.holds";
    /// Histogram, seconds: how long each hold-back lasted.
    pub const COOLDOWN_DELAY: &str = "telecho_retry.cooldown.delay";
    /// Counter: attempts not sent because of a cooldown; label `stop_reason`.
    pub const COOLDOWN_REFUSALS: &str = "telecho_retry.cooldown.refusals";
    /// Counter: retries the budget refused; label `status_class`.
    pub const BUDGET_REFUSALS: &str = "telecho_retry.budget.refusals";
    /// Counter: attempts that waited for their slot under client-side pacing.
    pub const PACING_HOLDS: &str = "telecho_retry.pacing.holds";
    /// Histogram, seconds: how long pacing delayed each attempt that waited.
    pub const PACING_DELAY: &str = "telecho_retry.pacing.delay";
    /// Gauge, requests per second: adaptive pacing's estimated rate, as last changed.
    pub const PACING_RATE: &str = "telecho_retry.pacing.rate";
    /// Counter: changes of adaptive pacing's estimate; label `direction` (`down`, `set`).
    pub const PACING_ADJUSTMENTS: &str = "telecho_retry.pacing.adjustments";
    /// Counter: times a fleet limit store could not be reached in time and the in-process
    /// limits were used instead; label `limit` (`pacing`, `cooldown`).
    pub const STORE_FALLBACKS: &str = "telecho_retry.store.fallbacks";
}

/// Metric label names.
pub mod label {
    /// Why a request stopped: a [`StopReason`](crate::StopReason), `cancelled` or
    /// `service_error`.
    pub const STOP_REASON: &str = "stop_reason";
    /// `1xx` … `5xx`, `error` or `none`.
    pub const STATUS_CLASS: &str = "status_class";
    /// `retry_after` or `backoff`.
    pub const DECISION: &str = "decision";
    /// Which limit a fleet store fell back on: `pacing` or `cooldown`.
    pub const LIMIT: &str = "limit";
    /// Which way adaptive pacing's estimate moved: `down` (a 429) or `set` (a quota).
    pub const DIRECTION: &str = "direction";
}

#[cfg(feature = "metrics")]
pub use describe::describe_metrics;

mod adapt;
#[cfg(feature = "metrics")]
mod describe;
mod emit;
mod labels;
mod span;

pub(crate) use adapt::{pacing_cut, pacing_rate, pacing_set};
#[cfg(feature = "metrics")]
use emit::keys;
#[allow(unused_imports)]
use emit::*;
#[allow(unused_imports)]
pub(crate) use labels::*;
pub(crate) use span::AttemptSpan;

// ===== hook points =====

/// Attempt `number` (1 for the first) of a request with `method` is about to be sent: opens
/// its span in `span`, a child of the request's.
#[inline]
pub(crate) fn attempt_started(method: &Method, number: u32, span: &mut AttemptSpan) {
    #[cfg(feature = "tracing")]
    {
        use tracing::field::Empty;
        // The field values are computed only when the span is enabled.
        let attempt = tracing::info_span!(
            target: "telecho_retry",
            parent: span.parent(),
            "telecho_retry.attempt",
            http.request.method = method_str(method),
            http.request.resend_count = super::info::resend_count(number),
            http.response.status_code = Empty,
            "error.type" = Empty,
            otel.status_code = Empty,
            telecho_retry.decision = Empty,
            telecho_retry.retry_delay_ms = Empty,
            telecho_retry.stop_reason = Empty,
            telecho_retry.error_code = Empty,
        );
        span.set_attempt(attempt);
    }
    #[cfg(not(feature = "tracing"))]
    let _ = (method, number, span);
}

/// The outcome of an attempt was classified and `action` decided: records it on the span,
/// logs it, counts it, and closes the span.
#[inline]
pub(crate) fn attempt_ended(
    span: &mut AttemptSpan,
    state: &RetryState,
    outcome: &Outcome<'_>,
    action: Action,
) {
    // A first-try success logs nothing: with no span to record it on, nothing to do.
    #[cfg(feature = "tracing")]
    if !span.attempt().is_disabled()
        || state.attempts() > 1
        || action != Action::Stop(StopReason::Success)
    {
        trace_outcome(span.attempt(), state, outcome, action);
    }
    #[cfg(feature = "metrics")]
    {
        match action {
            Action::Retry(delay) => {
                let class = StatusClass::of_outcome(outcome);
                let decision = match state.decision() {
                    Some(Decision::RetryAfter(_)) => 0,
                    _ => 1,
                };
                let keys = keys::get();
                keys::counter(&keys.retries[class as usize][decision]).increment(1);
                keys::histogram(&keys.retry_delay[decision]).record(delay.as_secs_f64());
            }
            Action::Stop(StopReason::Budget) => {
                let class = StatusClass::of_outcome(outcome);
                keys::counter(&keys::get().budget_refusals[class as usize]).increment(1);
            }
            Action::Stop(_) => {}
        }
    }
    #[cfg(not(any(feature = "tracing", feature = "metrics")))]
    let _ = (state, outcome, action);
    span.close();
}

/// The deadline cut the attempt in flight.
pub(crate) fn attempt_cut(span: &mut AttemptSpan, state: &RetryState) {
    #[cfg(feature = "tracing")]
    {
        let attempt = span.attempt();
        attempt.record("error.type", "deadline");
        attempt.record("otel.status_code", "ERROR");
        attempt.record("telecho_retry.stop_reason", "deadline");
        span.in_scope(|| {
            tracing::debug!(
                target: "telecho_retry",
                attempt = state.attempts(),
                stop = "deadline",
                "deadline cut the attempt"
            )
        });
    }
    #[cfg(not(feature = "tracing"))]
    let _ = state;
    span.close();
}

/// The next attempt is held back by the shared cooldown for `wait`.
pub(crate) fn held_back(wait: Duration) {
    #[cfg(feature = "tracing")]
    tracing::debug!(
        target: "telecho_retry",
        wait_ms = wait.as_millis() as u64,
        "held back by the cooldown"
    );
    #[cfg(feature = "metrics")]
    {
        let keys = keys::get();
        keys::counter(&keys.cooldown_holds).increment(1);
        keys::histogram(&keys.cooldown_delay).record(wait.as_secs_f64());
    }
    #[cfg(not(any(feature = "tracing", feature = "metrics")))]
    let _ = wait;
}

/// An attempt waited `waited` for its slot under client-side pacing.
pub(crate) fn paced(waited: Duration) {
    #[cfg(feature = "tracing")]
    tracing::debug!(
        target: "telecho_retry",
        wait_ms = waited.as_millis() as u64,
        "paced"
    );
    #[cfg(feature = "metrics")]
    {
        let keys = keys::get();
        keys::counter(&keys.pacing_holds).increment(1);
        keys::histogram(&keys.pacing_delay).record(waited.as_secs_f64());
    }
    #[cfg(not(any(feature = "tracing", feature = "metrics")))]
    let _ = waited;
}

/// Which limit a fleet store fell back on.
#[cfg(feature = "redis")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StoreLimit {
    /// An attempt paced in process.
    Pacing = 0,
    /// A cooldown kept in this process only.
    Cooldown = 1,
}

#[cfg(feature = "redis")]
impl StoreLimit {
    #[cfg(feature = "tracing")]
    fn as_str(self) -> &'static str {
        match self {
            StoreLimit::Pacing => "pacing",
            StoreLimit::Cooldown => "cooldown",
        }
    }
}

/// A fleet store could not be reached in time: `limit` fell back on the in-process limits.
#[cfg(feature = "redis")]
pub(crate) fn store_fallback(limit: StoreLimit) {
    #[cfg(feature = "metrics")]
    keys::counter(&keys::get().store_fallbacks[limit as usize]).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = limit;
}

/// A fleet store is unreachable (`reason`: `timeout` or `error`); `fallbacks` counted since
/// the last such event. The caller rate-limits it.
#[cfg(feature = "redis")]
pub(crate) fn store_unreachable(limit: StoreLimit, reason: &'static str, fallbacks: u64) {
    #[cfg(feature = "tracing")]
    tracing::warn!(
        target: "telecho_retry",
        limit = limit.as_str(),
        reason,
        fallbacks,
        "limit store unreachable: limits kept in process"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = (limit, reason, fallbacks);
}

/// A fleet store answers again.
#[cfg(feature = "redis")]
pub(crate) fn store_reachable() {
    #[cfg(feature = "tracing")]
    tracing::info!(target: "telecho_retry", "limit store reachable again");
}

/// The next attempt is not sent: `reason`, with the cooldown left if one is the cause.
pub(crate) fn refused(reason: StopReason, cooldown: Option<Duration>) {
    #[cfg(feature = "tracing")]
    tracing::debug!(
        target: "telecho_retry",
        stop = reason.as_str(),
        cooldown_ms = cooldown.map(|c| c.as_millis() as u64),
        "refused"
    );
    #[cfg(feature = "metrics")]
    if cooldown.is_some() {
        let index = EndLabel::Stopped(reason).index();
        keys::counter(&keys::get().cooldown_refusals[index]).increment(1);
    }
    #[cfg(not(any(feature = "tracing", feature = "metrics")))]
    let _ = (reason, cooldown);
}

/// The request ended with `result`. `stop` is `None` only when the inner service failed to
/// become ready.
#[inline]
pub(crate) fn finished<R: ResponseParts, E>(stop: Option<StopReason>, result: &Result<R, E>) {
    #[cfg(feature = "metrics")]
    {
        let class = match result {
            Ok(response) => StatusClass::of(response.status()),
            Err(_) => StatusClass::Error,
        };
        let stop = stop.unwrap_or(StopReason::ServiceError);
        count_request(EndLabel::Stopped(stop), class);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (stop, result);
}

/// Retrying stopped between attempts: the retry decided was not sent (refused, the
/// deadline, the inner service broken, the body no longer replayable). Logs why, as
/// `not retrying` does after an attempt.
pub(crate) fn stopped_between(state: &RetryState) {
    #[cfg(feature = "tracing")]
    if let Some(reason) = state.stop_reason() {
        tracing::debug!(
            target: "telecho_retry",
            attempt = state.attempts(),
            stop = reason.as_str(),
            slept_ms = state.info().slept().as_millis() as u64,
            "not retrying"
        );
    }
    #[cfg(not(feature = "tracing"))]
    let _ = state;
}

/// The request was dropped before it ended (an attempt may be in flight).
pub(crate) fn cancelled(span: &mut AttemptSpan, state: &RetryState) {
    #[cfg(feature = "tracing")]
    {
        span.attempt()
            .record("telecho_retry.stop_reason", "cancelled");
        span.in_scope(|| {
            tracing::debug!(
                target: "telecho_retry",
                attempts = state.attempts(),
                "cancelled"
            )
        });
    }
    #[cfg(not(feature = "tracing"))]
    let _ = state;
    #[cfg(feature = "metrics")]
    count_request(EndLabel::Cancelled, StatusClass::None);
    span.close();
}

#[cfg(test)]
mod tests;
