//! [`describe_metrics`]: the units and descriptions of every metric.

use super::metric;

/// Gives the installed `metrics` recorder the unit and description of every metric this
/// crate emits (feature `metrics`). Call it once, after installing the recorder.
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        metric::REQUESTS,
        Unit::Count,
        "Logical requests through telecho-retry, once each when they end, by stop reason and status class of the outcome handed back."
    );
    describe_counter!(
        metric::RETRIES,
        Unit::Count,
        "Retries granted, by status class of the outcome retried and decision."
    );
    describe_histogram!(
        metric::RETRY_DELAY,
        Unit::Seconds,
        "Delay before each retry."
    );
    describe_counter!(
        metric::COOLDOWN_HOLDS,
        Unit::Count,
        "Attempts held back by another request's 429 (the shared cooldown)."
    );
    describe_histogram!(
        metric::COOLDOWN_DELAY,
        Unit::Seconds,
        "How long each attempt was held back by the shared cooldown."
    );
    describe_counter!(
        metric::COOLDOWN_REFUSALS,
        Unit::Count,
        "Attempts not sent because of a cooldown, by stop reason."
    );
    describe_counter!(
        metric::BUDGET_REFUSALS,
        Unit::Count,
        "Retries refused by the retry budget, by status class of the outcome handed back."
    );
    describe_counter!(
        metric::PACING_HOLDS,
        Unit::Count,
        "Attempts that waited for their slot under client-side pacing."
    );
    describe_histogram!(
        metric::PACING_DELAY,
        Unit::Seconds,
        "How long each paced attempt waited for its slot."
    );
    describe_counter!(
        metric::STORE_FALLBACKS,
        Unit::Count,
        "Times a fleet limit store could not be reached in time and the in-process limits were used instead, by limit (pacing, cooldown)."
    );
    describe_gauge!(
        metric::PACING_RATE,
        "The rate adaptive pacing estimates, in requests per second, as last changed."
    );
    describe_counter!(
        metric::PACING_ADJUSTMENTS,
        Unit::Count,
        "Changes of adaptive pacing's estimated rate: cut by a 429 (down) or set from a quota header (set)."
    );
}
