//! The metrics (feature `metrics`): exact values after known scenarios, read from
//! `metrics-util`'s debugging recorder, installed for one test at a time with
//! `metrics::with_local_recorder` (the tests run in parallel, each on its own current-thread
//! runtime inside the recorder's scope). Each scenario runs through the tower layer over
//! `tower::service_fn` on a paused clock, and through the reqwest middleware against a
//! loopback server.
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

// ===== 503, 503, 200 =====

#[test]
fn tower_503_503_200() {
    let m = record(true, || async {
        tower_run(exact(), vec![status(503), status(503), status(200)]).await;
    });
    assert_eq!(
        m,
        expect(&[
            (
                "telecho_retry.requests{status_class=2xx,stop_reason=success}",
                V::C(1)
            ),
            (
                "telecho_retry.retries{decision=backoff,status_class=5xx}",
                V::C(2)
            ),
            (
                "telecho_retry.retry_delay{decision=backoff}",
                V::H(vec![1.0, 2.0])
            ),
        ])
    );
}

#[test]
fn tower_first_try_success_is_one_counter() {
    let m = record(true, || async {
        tower_run(exact(), vec![status(200)]).await;
    });
    assert_eq!(
        m,
        expect(&[(
            "telecho_retry.requests{status_class=2xx,stop_reason=success}",
            V::C(1)
        )])
    );
}

// ===== a 429 with Retry-After holds back a second request =====

#[test]
fn tower_429_retry_after_holds_back_a_second_request() {
    let m = record(true, || async {
        let retry = unpaced(exact().build());
        let svc = retry.layer(scripted(vec![Answer::Status(429, Some("2")), status(200)]));
        let first = tokio::spawn(
            svc.clone()
                .oneshot(request("GET", "http://api.telecho.test/v1/agents")),
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let second = svc
            .oneshot(request("GET", "http://api.telecho.test/v1/agents"))
            .await
            .unwrap();
        assert_eq!(second.status(), 200);
        assert_eq!(first.await.unwrap().unwrap().status(), 200);
    });
    assert_eq!(
        m,
        expect(&[
            (
                "telecho_retry.requests{status_class=2xx,stop_reason=success}",
                V::C(2)
            ),
            (
                "telecho_retry.retries{decision=retry_after,status_class=4xx}",
                V::C(1)
            ),
            (
                "telecho_retry.retry_delay{decision=retry_after}",
                V::H(vec![2.0])
            ),
            ("telecho_retry.cooldown.holds", V::C(1)),
            ("telecho_retry.cooldown.delay", V::H(vec![1.5])),
        ])
    );
}

#[test]
fn tower_429_above_the_cap_refuses_the_next_request() {
    let m = record(true, || async {
        let retry = tower_run(exact(), vec![Answer::Status(429, Some("3600"))]).await;
        let svc = retry.layer(scripted(vec![status(200)]));
        let err = svc
            .oneshot(request("GET", "http://api.telecho.test/v1/agents"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), RetryErrorKind::RateLimited);
    });
    assert_eq!(
        m,
        expect(&[
            (
                "telecho_retry.requests{status_class=4xx,stop_reason=retry_after_too_long}",
                V::C(1)
            ),
            (
                "telecho_retry.requests{status_class=error,stop_reason=retry_after_too_long}",
                V::C(1)
            ),
            (
                "telecho_retry.cooldown.refusals{stop_reason=retry_after_too_long}",
                V::C(1)
            ),
        ])
    );
}

// ===== budget refusal =====

/// A budget that allows no retry at all.
fn no_budget() -> TelEchoRetry {
    TelEchoRetry::new(exact().build()).with_limits(
        Limits::builder()
            .retry_budget(RetryBudget::new(Duration::from_secs(10), 0, 0.0))
            .build(),
    )
}

#[test]
fn tower_budget_refusal() {
    let m = record(true, || async {
        tower_run(no_budget(), vec![status(503)]).await;
    });
    assert_eq!(
        m,
        expect(&[
            (
                "telecho_retry.requests{status_class=5xx,stop_reason=budget}",
                V::C(1)
            ),
            ("telecho_retry.budget.refusals{status_class=5xx}", V::C(1)),
        ])
    );
}

// ===== fatal 401 =====

#[test]
fn tower_fatal_401() {
    let m = record(true, || async {
        tower_run(exact(), vec![status(401)]).await;
    });
    assert_eq!(
        m,
        expect(&[(
            "telecho_retry.requests{status_class=4xx,stop_reason=fatal}",
            V::C(1)
        )])
    );
}

// ===== transport errors, cancellation, descriptions =====

#[test]
fn tower_transport_error_then_max_retries() {
    let m = record(true, || async {
        tower_run(
            exact().max_retries(1),
            vec![Answer::Fail(std::io::ErrorKind::ConnectionRefused)],
        )
        .await;
    });
    assert_eq!(
        m,
        expect(&[
            (
                "telecho_retry.requests{status_class=error,stop_reason=max_retries}",
                V::C(1)
            ),
            (
                "telecho_retry.retries{decision=backoff,status_class=error}",
                V::C(1)
            ),
            (
                "telecho_retry.retry_delay{decision=backoff}",
                V::H(vec![1.0])
            ),
        ])
    );
}

#[test]
fn tower_a_request_dropped_while_it_waits_counts_as_cancelled() {
    let m = record(true, || async {
        let mut svc = TelEchoRetry::new(exact().build()).layer(scripted(vec![status(503)]));
        let mut fut = task::spawn(
            svc.ready()
                .await
                .unwrap()
                .call(request("GET", "http://api.telecho.test/v1/agents")),
        );
        assert_pending!(fut.poll()); // the 503 came, the retry waits 1 s
        drop(fut);
    });
    assert_eq!(
        m,
        expect(&[
            (
                "telecho_retry.requests{status_class=none,stop_reason=cancelled}",
                V::C(1)
            ),
            (
                "telecho_retry.retries{decision=backoff,status_class=5xx}",
                V::C(1)
            ),
            (
                "telecho_retry.retry_delay{decision=backoff}",
                V::H(vec![1.0])
            ),
        ])
    );
}

#[test]
fn described_units_reach_the_recorder() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        describe_metrics();
        runtime.block_on(tower_run(exact(), vec![status(503), status(200)]));
    });
    let units: BTreeMap<(MetricKind, String), Option<Unit>> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, unit, description, _)| {
            assert!(description.is_some_and(|d| !d.is_empty()));
            let (kind, key) = key.into_parts();
            ((kind, key.name().to_owned()), unit)
        })
        .collect();
    assert_eq!(
        units,
        BTreeMap::from([
            (
                (MetricKind::Counter, metric::REQUESTS.to_owned()),
                Some(Unit::Count)
            ),
            (
                (MetricKind::Counter, metric::RETRIES.to_owned()),
                Some(Unit::Count)
            ),
            (
                (MetricKind::Histogram, metric::RETRY_DELAY.to_owned()),
                Some(Unit::Seconds)
            ),
        ])
    );
}

// ===== the same scenarios through the reqwest middleware =====

#[cfg(feature = "reqwest")]
mod through_reqwest {
    use super::*;
    use crate::support::{Reply, Server};

    fn fast() -> RetryPolicyBuilder {
        exact()
            .base_delay(Duration::from_millis(10))
            .max_delay(Duration::from_millis(100))
    }

    fn client(retry: TelEchoRetry) -> ::reqwest_middleware::ClientWithMiddleware {
        ::reqwest_middleware::ClientBuilder::new(
            reqwest::Client::builder().no_proxy().build().unwrap(),
        )
        .with(retry)
        .build()
    }

    #[test]
    fn reqwest_503_503_200() {
        let m = record(false, || async {
            let server = Server::scripted(vec![
                Reply::status(503),
                Reply::status(503),
                Reply::status(200),
            ])
            .await;
            let resp = client(TelEchoRetry::new(fast().build()))
                .get(server.url("/v1/agents"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
        });
        assert_eq!(
            m,
            expect(&[
                (
                    "telecho_retry.requests{status_class=2xx,stop_reason=success}",
                    V::C(1)
                ),
                (
                    "telecho_retry.retries{decision=backoff,status_class=5xx}",
                    V::C(2)
                ),
                (
                    "telecho_retry.retry_delay{decision=backoff}",
                    V::H(vec![0.01, 0.02])
                ),
            ])
        );
    }

    #[test]
    fn reqwest_429_retry_after_holds_back_a_second_request() {
        let m = record(false, || async {
            let server = Server::scripted(vec![
                Reply::status(429).header("retry-after", "1"),
                Reply::status(200),
            ])
            .await;
            let client = client(unpaced(fast().build()));
            let first = tokio::spawn({
                let request = client.get(server.url("/v1/agents"));
                async move { request.send().await.unwrap().status() }
            });
            // The second request starts once the first has met its 429.
            while server.hits("/v1/agents") == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            let second = client.get(server.url("/v1/agents")).send().await.unwrap();
            assert_eq!(second.status(), 200);
            assert_eq!(first.await.unwrap(), 200);
        });
        let wait = rounded(&m, "telecho_retry.cooldown.delay");
        assert_eq!(wait.len(), 1);
        assert!(wait[0] > 0.5 && wait[0] < 1.0, "held back for {wait:?}");
        let mut without_wait = m.clone();
        without_wait.remove("telecho_retry.cooldown.delay");
        assert_eq!(
            without_wait,
            expect(&[
                (
                    "telecho_retry.requests{status_class=2xx,stop_reason=success}",
                    V::C(2)
                ),
                (
                    "telecho_retry.retries{decision=retry_after,status_class=4xx}",
                    V::C(1)
                ),
                (
                    "telecho_retry.retry_delay{decision=retry_after}",
                    V::H(vec![1.0])
                ),
                ("telecho_retry.cooldown.holds", V::C(1)),
            ])
        );
    }

    #[test]
    fn reqwest_budget_refusal() {
        let m = record(false, || async {
            let server = Server::scripted(vec![Reply::status(503)]).await;
            let resp = client(no_budget())
                .get(server.url("/v1/agents"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 503);
        });
        assert_eq!(
            m,
            expect(&[
                (
                    "telecho_retry.requests{status_class=5xx,stop_reason=budget}",
                    V::C(1)
                ),
                ("telecho_retry.budget.refusals{status_class=5xx}", V::C(1)),
            ])
        );
    }

    #[test]
    fn reqwest_fatal_401() {
        let m = record(false, || async {
            let server = Server::scripted(vec![Reply::status(401)]).await;
            let resp = client(TelEchoRetry::new(fast().build()))
                .get(server.url("/v1/agents"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 401);
        });
        assert_eq!(
            m,
            expect(&[(
                "telecho_retry.requests{status_class=4xx,stop_reason=fatal}",
                V::C(1)
            )])
        );
    }
}

// ===== client-side pacing and the fleet store =====

#[test]
fn paced_attempts_count_as_holds_with_their_delays() {
    let m = record(true, || async {
        let limits = Limits::builder().pacing(Pacing::new(10, Duration::from_secs(1)));
        let svc = TelEchoRetry::new(exact().build())
            .with_limits(limits.build())
            .layer(scripted(vec![status(200)]));
        let calls = (0..3).map(|_| {
            svc.clone()
                .oneshot(request("GET", "http://api.telecho.test/v1/agents"))
        });
        for result in futures_util::future::join_all(calls).await {
            assert_eq!(result.unwrap().status(), 200);
        }
    });
    assert_eq!(m.get(metric::PACING_HOLDS), Some(&V::C(2)), "{m:#?}");
    assert_eq!(rounded(&m, metric::PACING_DELAY), [0.1, 0.2]);
    assert_eq!(
        m.get("telecho_retry.requests{status_class=2xx,stop_reason=success}"),
        Some(&V::C(3))
    );
}

#[cfg(feature = "redis")]
#[test]
fn fleet_store_fallbacks_are_counted_by_limit() {
    let m = record(false, || async {
        // Nothing listens on port 1: every pacing call falls back at once.
        let limits = Limits::builder()
            .pacing(Pacing::new(100, Duration::from_secs(1)))
            .redis("redis://127.0.0.1:1", "metrics")
            .build()
            .unwrap();
        let svc = TelEchoRetry::new(exact().build())
            .with_limits(limits)
            .layer(scripted(vec![status(200)]));
        for _ in 0..2 {
            let resp = tokio::time::timeout(
                Duration::from_secs(2),
                svc.clone()
                    .oneshot(request("GET", "http://api.telecho.test/v1/agents")),
            )
            .await
            .expect("no hang")
            .unwrap();
            assert_eq!(resp.status(), 200);
        }
    });
    match m.get("telecho_retry.store.fallbacks{limit=pacing}") {
        Some(V::C(n)) => assert!(*n >= 2, "{m:#?}"),
        other => panic!("no pacing fallbacks counted: {other:?} in {m:#?}"),
    }
}

#[test]
fn adaptive_pacing_counts_its_cut_and_shows_its_rate() {
    let m = record(true, one_adaptive_cut);
    assert_eq!(
        m.get("telecho_retry.pacing.adjustments{direction=down}"),
        Some(&V::C(1)),
        "{m:#?}"
    );
    match m.get(metric::PACING_RATE) {
        Some(V::G(rate)) => assert!(*rate >= 0.5, "{rate}"),
        other => panic!("no rate gauge: {other:?} in {m:#?}"),
    }
}
