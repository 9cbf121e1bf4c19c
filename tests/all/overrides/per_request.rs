//! Per-request overrides: retries, the deadline and attempt timeout, and idempotency for
//! one request only, under tower, through the reqwest middleware and over hyper-util.

use super::*;

#[tokio::test(start_paused = true)]
async fn an_override_changes_retries_for_one_request_only_under_tower() {
    let (inner, seen) = recording(|_| Some(503));
    let svc = ServiceBuilder::new()
        .layer(crate::support::unbudgeted(quick().build()))
        .service(inner);
    let resp = svc
        .clone()
        .oneshot(with_override(Method::GET, Some(RetryOverride::disabled())))
        .await
        .unwrap();
    assert_eq!(attempts(&seen), 1, "retrying turned off for this request");
    assert_eq!(
        RetryInfo::of(resp.extensions()).stop_reason(),
        Some(StopReason::MaxRetries)
    );
    let _ = svc
        .clone()
        .oneshot(with_override(
            Method::GET,
            Some(RetryOverride::new().max_retries(1)),
        ))
        .await
        .unwrap();
    assert_eq!(attempts(&seen), 3, "two attempts for this one");
    let _ = svc.oneshot(with_override(Method::GET, None)).await.unwrap();
    assert_eq!(
        attempts(&seen),
        7,
        "the policy's four for a request without one"
    );
}

#[tokio::test(start_paused = true)]
async fn an_override_sets_the_deadline_and_attempt_timeout_under_tower() {
    let (inner, seen) = recording(|_| None);
    let svc = ServiceBuilder::new()
        .layer(crate::support::unbudgeted(quick().build()))
        .service(inner);
    let start = Instant::now();
    let o = RetryOverride::new().deadline(Duration::from_secs(5));
    let err = svc
        .clone()
        .oneshot(with_override(Method::GET, Some(o)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), RetryErrorKind::Deadline);
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(attempts(&seen), 1);

    let start = Instant::now();
    let o = RetryOverride::new()
        .attempt_timeout(Duration::from_secs(2))
        .max_retries(1);
    let err = svc
        .oneshot(with_override(Method::GET, Some(o)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), RetryErrorKind::AttemptTimeout);
    // 2 s, 1 s backoff, 2 s.
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(err.info().attempts(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_override_decides_idempotency_under_tower() {
    let policy = quick().attempt_timeout(Duration::from_secs(1)).build();
    // A POST marked idempotent is resent after a timeout.
    let (inner, seen) = recording(|n| (n > 1).then_some(200));
    let svc = ServiceBuilder::new()
        .layer(crate::support::unbudgeted(policy.clone()))
        .service(inner);
    let o = RetryOverride::new().idempotent(true);
    let resp = svc
        .oneshot(with_override(Method::POST, Some(o)))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(attempts(&seen), 2);
    // A GET marked not idempotent is not.
    let (inner, seen) = recording(|n| (n > 1).then_some(200));
    let svc = ServiceBuilder::new()
        .layer(crate::support::unbudgeted(policy))
        .service(inner);
    let o = RetryOverride::new().idempotent(false);
    let err = svc
        .oneshot(with_override(Method::GET, Some(o)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), RetryErrorKind::AttemptTimeout);
    assert_eq!(attempts(&seen), 1);
}

#[tokio::test]
async fn an_override_changes_retries_through_the_reqwest_middleware() {
    let server = Server::start(|_| Reply::status(503)).await;
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(crate::support::unbudgeted(fast().build()))
        .build();
    let resp = client
        .get(server.url("/off"))
        .with_extension(RetryOverride::disabled())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(server.hits("/off"), 1);
    client
        .get(server.url("/one"))
        .with_extension(RetryOverride::new().max_retries(1))
        .send()
        .await
        .unwrap();
    assert_eq!(server.hits("/one"), 2);
    client.get(server.url("/policy")).send().await.unwrap();
    assert_eq!(server.hits("/policy"), 4);
}

#[tokio::test]
async fn an_override_changes_retries_under_tower_over_hyper_util() {
    let server = Server::start(|_| Reply::status(503)).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let svc = ServiceBuilder::new()
        .layer(crate::support::unbudgeted(fast().build()))
        .service(client);
    let mut req = Request::get(server.url("/off"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    req.extensions_mut().insert(RetryOverride::disabled());
    let resp = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(server.hits("/off"), 1);
    let req = Request::get(server.url("/policy"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    svc.oneshot(req).await.unwrap();
    assert_eq!(server.hits("/policy"), 4);
}
