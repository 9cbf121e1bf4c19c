//! Servers that state their quota: paced without a 429; a quota far from spent slows
//! nothing.

use super::*;

#[tokio::test(start_paused = true)]
async fn a_server_that_states_its_quota_is_paced_without_a_429() {
    // A fixed window of 10 s allowing 200 (20 per second); every answer says what is left.
    let limits = Limits::builder().pacing(Pacing::adaptive()).build();
    let log = fixed_window_log(limits, Window::STATES_QUOTA, 30).await;
    let limited = log.iter().filter(|(_, ok)| !ok).count();
    let [(served, _)] = shares(&log, &[(0, 30, 20.0)], 0)[..] else {
        unreachable!()
    };
    eprintln!("quota: served {served:.3} of the limit, {limited} 429s");
    assert_eq!(limited, 0, "a stated quota is never overrun");
    assert!(served >= 0.6, "served {served:.3} of the limit");
}

/// An hourly quota far from spent (`X-RateLimit-*`, 4999 of 5000 left for an hour).
fn plenty_left() -> Response<Full<Bytes>> {
    Response::builder()
        .header("x-ratelimit-limit", "5000")
        .header("x-ratelimit-remaining", "4999")
        .header("x-ratelimit-reset", "3599")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// The same without its limit (`RateLimit` without a `RateLimit-Policy`).
fn plenty_left_no_limit_stated() -> Response<Full<Bytes>> {
    Response::builder()
        .header("ratelimit", "\"default\";r=4999;t=3599")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_quota_far_from_spent_slows_nothing() {
    for answer in [plenty_left, plenty_left_no_limit_stated] {
        let server = service_fn(move |_req: Req| async move { Ok::<_, Infallible>(answer()) });
        let svc = tower::ServiceBuilder::new()
            .layer(TelEchoRetry::default())
            .service(server);
        let start = Instant::now();
        let all = (0..100).map(|_| svc.clone().oneshot(get_calls()));
        for resp in futures_util::future::join_all(all).await {
            assert_eq!(resp.unwrap().status(), 200);
        }
        for _ in 0..20 {
            svc.clone().oneshot(get_calls()).await.unwrap();
        }
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "paced by a quota that does not bind"
        );
    }
}
