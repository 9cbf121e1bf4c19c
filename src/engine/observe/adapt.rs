//! What adaptive pacing shows of itself: its estimated rate, its cuts and the rates it
//! was told.

#[cfg(feature = "metrics")]
use super::keys;

/// A 429 cut an origin's estimated rate from `from` (none: it was not pacing yet) to `to`,
/// per second.
pub(crate) fn pacing_cut(from: Option<f64>, to: f64) {
    #[cfg(feature = "tracing")]
    tracing::info!(target: "telecho_retry", from, to, "pacing rate cut");
    #[cfg(feature = "metrics")]
    {
        let keys = keys::get();
        keys::counter(&keys.pacing_adjustments[0]).increment(1);
        keys::gauge(&keys.pacing_rate).set(to);
    }
    #[cfg(not(feature = "tracing"))]
    let _ = (from, to);
}

/// A quota header set an origin's estimated rate to `rate` per second.
pub(crate) fn pacing_set(rate: f64) {
    #[cfg(feature = "metrics")]
    {
        let keys = keys::get();
        keys::counter(&keys.pacing_adjustments[1]).increment(1);
        keys::gauge(&keys.pacing_rate).set(rate);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = rate;
}

/// An origin's estimated rate regrew to `rate` per second.
pub(crate) fn pacing_rate(rate: f64) {
    #[cfg(feature = "metrics")]
    keys::gauge(&keys::get().pacing_rate).set(rate);
    #[cfg(not(feature = "metrics"))]
    let _ = rate;
}
