//! What the hook points emit: `tracing` events and `metrics` counters and histograms.

#[allow(unused_imports)]
use super::*;

// ===== tracing =====

/// The outcome on the span, and one event per retry (`INFO`) and per stop after a retry or
/// for a reason other than success (`DEBUG`).
#[cfg(feature = "tracing")]
#[inline(never)]
pub(crate) fn trace_outcome(
    span: &tracing::Span,
    state: &RetryState,
    outcome: &Outcome<'_>,
    action: Action,
) {
    let attempt = state.attempts();
    let quiet = matches!(action, Action::Stop(StopReason::Success)) && attempt <= 1;
    let decision = state.decision();
    let (status, error_type, code) = match outcome {
        Outcome::Response { status, code, .. } => {
            let failed = status.as_u16() >= 400;
            let code = code.map(|c| if c.is_known() { c.as_str() } else { "_OTHER" });
            (Some(status.as_u16()), failed.then(|| status.as_str()), code)
        }
        Outcome::Transport { kind, .. } => (None, Some(kind.as_str()), None),
    };
    span.record("http.response.status_code", status);
    if let Some(error_type) = error_type {
        span.record("error.type", error_type);
        span.record("otel.status_code", "ERROR");
    }
    span.record("telecho_retry.decision", decision.map(decision_str));
    span.record("telecho_retry.error_code", code);
    let error_kind = match outcome {
        Outcome::Transport { kind, .. } => Some(kind.as_str()),
        Outcome::Response { .. } => None,
    };
    let _entered = span.enter();
    match action {
        Action::Retry(delay) => {
            span.record("telecho_retry.retry_delay_ms", delay.as_millis() as u64);
            tracing::info!(
                target: "telecho_retry",
                attempt,
                status,
                error_kind,
                code,
                decision = decision.map(decision_str),
                delay_ms = delay.as_millis() as u64,
                "retrying"
            )
        }
        Action::Stop(reason) => {
            span.record("telecho_retry.stop_reason", reason.as_str());
            if !quiet {
                tracing::debug!(
                    target: "telecho_retry",
                    attempt,
                    status,
                    error_kind,
                    code,
                    decision = decision.map(decision_str),
                    stop = reason.as_str(),
                    slept_ms = state.info().slept().as_millis() as u64,
                    "not retrying"
                )
            }
        }
    }
}

// ===== metrics =====

#[cfg(feature = "metrics")]
pub(crate) fn count_request(ending: EndLabel, class: StatusClass) {
    keys::counter(&keys::get().requests[ending.index()][class as usize]).increment(1);
}

/// Every key this crate emits, built once per process: a metric call is a table lookup
/// and the recorder's `register_*`, with no allocation and no hashing of labels (the hash is
/// computed with the key).
#[cfg(feature = "metrics")]
pub(crate) mod keys {
    use std::sync::OnceLock;

    use metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata};

    use crate::engine::observe::labels::{EndLabel, StatusClass};
    use crate::engine::observe::{label, metric};

    pub(crate) static METADATA: Metadata<'static> =
        Metadata::new("telecho_retry", Level::INFO, Some(module_path!()));

    pub(crate) const DECISIONS: [&str; 2] = ["retry_after", "backoff"];

    pub(crate) struct Keys {
        /// By limit (`pacing`, `cooldown`).
        #[cfg_attr(not(feature = "redis"), allow(dead_code))]
        pub(crate) store_fallbacks: [Key; 2],
        /// By ending, then status class.
        pub(crate) requests: Vec<Vec<Key>>,
        /// By status class, then decision.
        pub(crate) retries: Vec<[Key; 2]>,
        /// By decision.
        pub(crate) retry_delay: [Key; 2],
        pub(crate) cooldown_holds: Key,
        pub(crate) cooldown_delay: Key,
        pub(crate) pacing_holds: Key,
        pub(crate) pacing_delay: Key,
        pub(crate) pacing_rate: Key,
        /// By direction (`down`, `set`).
        pub(crate) pacing_adjustments: [Key; 2],
        /// By ending.
        pub(crate) cooldown_refusals: Vec<Key>,
        /// By status class.
        pub(crate) budget_refusals: Vec<Key>,
    }

    /// A key whose name and labels are `'static`, so that a recorder that clones it (the
    /// debugging recorder does on every call) copies two pointers and allocates nothing.
    /// The label slices are leaked: fewer than a hundred small ones, once per process.
    pub(crate) fn key(name: &'static str, labels: &[(&'static str, &'static str)]) -> Key {
        let labels: Vec<Label> = labels
            .iter()
            .map(|&(k, v)| Label::from_static_parts(k, v))
            .collect();
        Key::from_static_parts(name, Vec::leak(labels))
    }

    pub(crate) fn get() -> &'static Keys {
        static KEYS: OnceLock<Keys> = OnceLock::new();
        KEYS.get_or_init(|| {
            let classes = StatusClass::ALL.map(StatusClass::as_str);
            let endings = EndLabel::ALL.map(EndLabel::as_str);
            let decision = |name, d| key(name, &[(label::DECISION, d)]);
            Keys {
                store_fallbacks: ["pacing", "cooldown"]
                    .map(|l| key(metric::STORE_FALLBACKS, &[(label::LIMIT, l)])),
                requests: endings
                    .iter()
                    .map(|&e| {
                        classes
                            .iter()
                            .map(|&c| {
                                key(
                                    metric::REQUESTS,
                                    &[(label::STOP_REASON, e), (label::STATUS_CLASS, c)],
                                )
                            })
                            .collect()
                    })
                    .collect(),
                retries: classes
                    .iter()
                    .map(|&c| {
                        DECISIONS.map(|d| {
                            key(
                                metric::RETRIES,
                                &[(label::STATUS_CLASS, c), (label::DECISION, d)],
                            )
                        })
                    })
                    .collect(),
                retry_delay: DECISIONS.map(|d| decision(metric::RETRY_DELAY, d)),
                cooldown_holds: key(metric::COOLDOWN_HOLDS, &[]),
                cooldown_delay: key(metric::COOLDOWN_DELAY, &[]),
                pacing_holds: key(metric::PACING_HOLDS, &[]),
                pacing_delay: key(metric::PACING_DELAY, &[]),
                pacing_rate: key(metric::PACING_RATE, &[]),
                pacing_adjustments: ["down", "set"]
                    .map(|d| key(metric::PACING_ADJUSTMENTS, &[(label::DIRECTION, d)])),
                cooldown_refusals: endings
                    .iter()
                    .map(|&e| key(metric::COOLDOWN_REFUSALS, &[(label::STOP_REASON, e)]))
                    .collect(),
                budget_refusals: classes
                    .iter()
                    .map(|&c| key(metric::BUDGET_REFUSALS, &[(label::STATUS_CLASS, c)]))
                    .collect(),
            }
        })
    }

    #[inline]
    pub(crate) fn counter(key: &Key) -> Counter {
        metrics::with_recorder(|r| r.register_counter(key, &METADATA))
    }

    #[inline]
    pub(crate) fn gauge(key: &Key) -> Gauge {
        metrics::with_recorder(|r| r.register_gauge(key, &METADATA))
    }

    #[inline]
    pub(crate) fn histogram(key: &Key) -> Histogram {
        metrics::with_recorder(|r| r.register_histogram(key, &METADATA))
    }
}
