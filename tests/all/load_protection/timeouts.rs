//! The deadline and the attempt timeout.

use super::*;

#[tokio::test(start_paused = true)]
async fn deadline_returns_the_last_outcome_instead_of_a_pointless_sleep() {
    let server = Server::new();
    let inner = always(&server, 503);
    let policy = exact()
        .max_retries(10)
        .deadline(Duration::from_secs(10))
        .build();
    let svc = TelEchoRetry::new(policy).layer_over(inner);
    let start = Instant::now();
    let resp = svc.oneshot(request(Method::GET)).await.unwrap();
    // Attempts at 0, 1, 3, 7 s; the next delay (8 s) would end at 15 s > 10 s.
    assert_eq!(start.elapsed(), Duration::from_secs(7));
    let at: Vec<Duration> = server.seen().iter().map(|s| s.at).collect();
    assert_eq!(at, [0, 1, 3, 7].map(Duration::from_secs));
    let info = resp.extensions().get::<RetryInfo>().unwrap();
    assert_eq!(info.stop_reason(), Some(StopReason::Deadline));
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(start_paused = true)]
async fn deadline_cuts_a_hanging_attempt_to_the_millisecond() {
    let inner = service_fn(|_req: Req| async {
        std::future::pending::<()>().await;
        Ok::<Response<Full<Bytes>>, BoxError>(status(200))
    });
    let policy = exact().deadline(Duration::from_millis(2500)).build();
    let svc = TelEchoRetry::new(policy).layer_over(inner);
    let start = Instant::now();
    let err = svc.oneshot(request(Method::POST)).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(2500));
    assert_eq!(err.kind(), RetryErrorKind::Deadline);
    assert_eq!(err.info().attempts(), 1);
    assert_eq!(err.stop_reason(), Some(StopReason::Deadline));
}

#[tokio::test(start_paused = true)]
async fn attempt_timeout_retries_idempotent_requests_only() {
    let server = Server::new();
    let srv = server.clone();
    let inner = service_fn(move |req: Req| {
        let (_, n) = srv.record(&req);
        async move {
            if n == 1 {
                std::future::pending::<()>().await;
            }
            Ok::<_, BoxError>(status(200))
        }
    });
    let policy = exact().attempt_timeout(Duration::from_secs(2)).build();
    let svc = TelEchoRetry::new(policy.clone()).layer_over(inner.clone());
    let resp = svc.oneshot(request(Method::GET)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let at: Vec<Duration> = server.seen().iter().map(|s| s.at).collect();
    assert_eq!(
        at,
        [0, 3].map(Duration::from_secs),
        "timeout at 2 s + 1 s backoff"
    );

    let server = Server::new();
    let srv = server.clone();
    let hanging_post = service_fn(move |req: Req| {
        srv.record(&req);
        async move {
            std::future::pending::<()>().await;
            Ok::<_, BoxError>(status(200))
        }
    });
    let svc = TelEchoRetry::new(policy).layer_over(hanging_post);
    let err = svc.oneshot(request(Method::POST)).await.unwrap_err();
    assert_eq!(err.kind(), RetryErrorKind::AttemptTimeout);
    assert_eq!(err.info().attempts(), 1);
    assert_eq!(
        server.seen().len(),
        1,
        "a POST that may have arrived is not resent"
    );
}
