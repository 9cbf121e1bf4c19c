//! Client-side pacing and the fleet store.

use super::*;

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
