//! The scenarios through the tower layer over `tower::service_fn` on a paused clock, and
//! the described units.

use super::*;

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
