//! The metrics (feature `metrics`): exact values after known scenarios, read from
//! `metrics-util`'s debugging recorder, installed for one test at a time with
//! `metrics::with_local_recorder` (the tests run in parallel, each on its own current-thread
//! runtime inside the recorder's scope). Each scenario runs through the tower layer over
//! `tower::service_fn` on a paused clock, and through the reqwest middleware against a
//! loopback server.
//!
//! This file holds the recorder and the helpers; the scenarios are in `through_tower` and
//! `through_reqwest`, the metrics of client-side pacing and the fleet store in `pacing`.
#![cfg(all(feature = "tower", feature = "metrics"))]

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use metrics::Unit;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;
use telecho_retry::limits::{Limits, Pacing, RetryBudget};
use telecho_retry::observe::{describe_metrics, metric};
use telecho_retry::{RetryErrorKind, RetryPolicyBuilder, TelEchoRetry};
use tokio_test::{assert_pending, task};
use tower::{Layer, Service, ServiceExt};

use crate::observe_support::*;

/// A metric's value: a counter's count, a histogram's samples, or a gauge's value.
#[derive(Clone, Debug, PartialEq)]
enum V {
    C(u64),
    H(Vec<f64>),
    G(f64),
}

type Metrics = BTreeMap<String, V>;

/// Runs `test` on a current-thread runtime (paused clock if `paused`) with a fresh
/// debugging recorder as this thread's recorder, and returns every metric it recorded,
/// keyed `name{label=value,…}` with the labels sorted.
fn record<F: Future<Output = ()>>(paused: bool, test: impl FnOnce() -> F) -> Metrics {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_all().start_paused(paused);
    let runtime = builder.build().unwrap();
    metrics::with_local_recorder(&recorder, || runtime.block_on(test()));
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let (_, key) = key.into_parts();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let name = if labels.is_empty() {
                key.name().to_owned()
            } else {
                format!("{}{{{}}}", key.name(), labels.join(","))
            };
            let value = match value {
                DebugValue::Counter(n) => V::C(n),
                DebugValue::Histogram(xs) => V::H(xs.into_iter().map(|x| x.0).collect()),
                DebugValue::Gauge(g) => V::G(g.0),
            };
            (name, value)
        })
        .collect()
}

fn expect(pairs: &[(&str, V)]) -> Metrics {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// Histogram samples rounded to the millisecond (the reqwest runs take real time).
fn rounded(m: &Metrics, key: &str) -> Vec<f64> {
    match m.get(key) {
        Some(V::H(xs)) => xs.iter().map(|x| (x * 1000.0).round() / 1000.0).collect(),
        other => panic!("{key}: not a histogram: {other:?}"),
    }
}

/// What a run is set up with: a policy (its limits the defaults but pacing, whose metrics
/// have tests of their own), or a whole `TelEchoRetry`.
struct Setup(TelEchoRetry);

impl From<RetryPolicyBuilder> for Setup {
    fn from(policy: RetryPolicyBuilder) -> Self {
        Setup(unpaced(policy.build()))
    }
}

impl From<TelEchoRetry> for Setup {
    fn from(retry: TelEchoRetry) -> Self {
        Setup(retry)
    }
}

/// `TelEchoRetry` over `policy` with the default limits but pacing.
fn unpaced(policy: telecho_retry::RetryPolicy) -> TelEchoRetry {
    TelEchoRetry::new(policy).with_limits(Limits::builder().without_pacing().build())
}

async fn tower_run(retry: impl Into<Setup>, script: Vec<Answer>) -> TelEchoRetry {
    let retry = retry.into().0;
    let svc = retry.clone().layer(scripted(script));
    let _ = svc
        .oneshot(request("GET", "http://api.telecho.test/v1/agents"))
        .await;
    retry
}

/// A budget that allows no retry at all.
fn no_budget() -> TelEchoRetry {
    TelEchoRetry::new(exact().build()).with_limits(
        Limits::builder()
            .retry_budget(RetryBudget::new(Duration::from_secs(10), 0, 0.0))
            .build(),
    )
}

mod pacing;
mod through_tower;

#[cfg(feature = "reqwest")]
mod through_reqwest;
