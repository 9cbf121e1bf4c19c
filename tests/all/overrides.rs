//! Per-request overrides (`RetryOverride` in the request's extensions), a classifier of
//! another API's contract, and limits shared between two policies: through the tower layer
//! over `service_fn` (paused clock), over hyper-util's client, and the reqwest middleware.
#![cfg(all(feature = "tower", feature = "reqwest"))]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use telecho_retry::classify::{classify_fn, Classifier, Decision, Outcome, RequestView};
use telecho_retry::limits::Limits;
use telecho_retry::{
    Jitter, RetryErrorKind, RetryInfo, RetryOverride, RetryPolicy, RetryPolicyBuilder, StopReason,
};
use tokio::time::Instant;
use tower::util::BoxCloneService;
use tower::{service_fn, ServiceBuilder, ServiceExt};

use crate::support::{Reply, Server};

fn quick() -> RetryPolicyBuilder {
    RetryPolicy::builder()
        .max_retries(3)
        .base_delay(Duration::from_secs(1))
        .jitter(Jitter::None)
        .retry_after_spread(Duration::ZERO)
}

type Seen = Arc<Mutex<Vec<(Duration, Method)>>>;
type Svc<E> = BoxCloneService<Request<Full<Bytes>>, Response<Full<Bytes>>, E>;

/// A `service_fn` that records each attempt's time and method and answers from `answer`
/// (given the attempt number, 1-based): `None` hangs.
fn recording(
    answer: impl Fn(usize) -> Option<u16> + Send + Sync + 'static,
) -> (Svc<std::io::Error>, Seen) {
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    let start = Instant::now();
    let answer = Arc::new(answer);
    let svc = service_fn(move |req: Request<Full<Bytes>>| {
        let n = {
            let mut log = log.lock().unwrap();
            log.push((start.elapsed(), req.method().clone()));
            log.len()
        };
        let status = answer(n);
        async move {
            match status {
                Some(s) => Ok(Response::builder()
                    .status(s)
                    .body(Full::new(Bytes::new()))
                    .unwrap()),
                None => std::future::pending().await,
            }
        }
    });
    (BoxCloneService::new(svc), seen)
}

fn with_override(method: Method, o: Option<RetryOverride>) -> Request<Full<Bytes>> {
    let mut req = Request::builder()
        .method(method)
        .uri("/v1/calls")
        .body(Full::new(Bytes::new()))
        .unwrap();
    if let Some(o) = o {
        req.extensions_mut().insert(o);
    }
    req
}

fn attempts(seen: &Seen) -> usize {
    seen.lock().unwrap().len()
}

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

fn fast() -> RetryPolicyBuilder {
    RetryPolicy::builder()
        .max_retries(3)
        .base_delay(Duration::from_millis(10))
        .max_delay(Duration::from_millis(20))
        .jitter(Jitter::None)
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

// ===== a classifier for another API =====

/// An API that says how long to wait in milliseconds (`retry-after-ms`), and whose callers
/// mark requests that must never be retried with `x-no-retry`.
fn acme() -> impl Classifier {
    classify_fn(|request: &RequestView<'_>, outcome: &Outcome<'_>| {
        if request
            .headers()
            .is_some_and(|h| h.contains_key("x-no-retry"))
        {
            return Decision::Fatal;
        }
        match outcome {
            Outcome::Response {
                status, headers, ..
            } if status.as_u16() == 429 => headers
                .get("retry-after-ms")
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .map_or(Decision::Backoff, |ms| {
                    Decision::RetryAfter(Duration::from_millis(ms))
                }),
            Outcome::Response { status, .. } if status.is_server_error() => Decision::Backoff,
            Outcome::Response { .. } => Decision::Accept,
            _ => Decision::Fatal,
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_custom_classifier_decides_under_tower() {
    let times: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let log = Arc::clone(&times);
    let start = Instant::now();
    let inner = service_fn(move |_req: Request<Full<Bytes>>| {
        let n = {
            let mut log = log.lock().unwrap();
            log.push(start.elapsed());
            log.len()
        };
        async move {
            let resp = if n == 1 {
                Response::builder()
                    .status(429)
                    .header("retry-after-ms", "250")
                    .body(Full::new(Bytes::new()))
            } else {
                Response::builder()
                    .status(200)
                    .body(Full::new(Bytes::new()))
            };
            Ok::<_, Infallible>(resp.unwrap())
        }
    });
    let policy = quick().classifier(acme()).build();
    let svc = ServiceBuilder::new()
        .layer(crate::support::unbudgeted(policy))
        .service(inner);
    let resp = svc
        .clone()
        .oneshot(with_override(Method::GET, None))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // `retry-after-ms: 250` is a floor under the 1 s backoff: the retry waits the longer.
    assert_eq!(
        *times.lock().unwrap(),
        [Duration::ZERO, Duration::from_secs(1)]
    );

    // The classifier sees the request's headers: `x-no-retry` is never retried.
    let mut req = with_override(Method::GET, None);
    req.headers_mut()
        .insert("x-no-retry", http::HeaderValue::from_static("1"));
    times.lock().unwrap().clear();
    let resp = svc.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(times.lock().unwrap().len(), 1);
    assert_eq!(
        RetryInfo::of(resp.extensions()).stop_reason(),
        Some(StopReason::Fatal)
    );
}

#[tokio::test]
async fn a_custom_classifier_decides_through_the_reqwest_middleware() {
    let server = Server::scripted(vec![
        Reply::status(429).header("retry-after-ms", "30"),
        Reply::status(200),
    ])
    .await;
    let policy = fast()
        .base_delay(Duration::from_millis(1))
        .classifier(acme())
        .build();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(crate::support::unbudgeted(policy))
        .build();
    let resp = client.get(server.url("/a")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen[1].at - seen[0].at >= Duration::from_millis(30));

    let resp = client
        .get(server.url("/b"))
        .header("x-no-retry", "1")
        .send()
        .await
        .unwrap();
    // The script's last reply repeats: 200 at once, whatever the header.
    assert_eq!(resp.status(), 200);
    let server = Server::start(|_| Reply::status(503)).await;
    let resp = client
        .get(server.url("/c"))
        .header("x-no-retry", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(
        server.hits("/c"),
        1,
        "the classifier saw the request header"
    );
}

// ===== limits shared between policies =====

/// A `service_fn` whose first answer is a 429 with `Retry-After: 5`, then 200; it records
/// when each attempt arrived.
fn limited_once() -> (Svc<Infallible>, Arc<Mutex<Vec<Duration>>>) {
    let times: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let log = Arc::clone(&times);
    let start = Instant::now();
    let svc = service_fn(move |_req: Request<Full<Bytes>>| {
        let n = {
            let mut log = log.lock().unwrap();
            log.push(start.elapsed());
            log.len()
        };
        async move {
            let resp = if n == 1 {
                Response::builder().status(429).header("retry-after", "5")
            } else {
                Response::builder().status(200)
            };
            Ok::<_, Infallible>(resp.body(Full::new(Bytes::new())).unwrap())
        }
    });
    (BoxCloneService::new(svc), times)
}

#[tokio::test(start_paused = true)]
async fn one_limits_handle_holds_back_two_policies() {
    for shared in [true, false] {
        let (inner, times) = limited_once();
        let limits = Limits::builder().without_retry_budget().build();
        let patient = crate::support::unbudgeted(quick().max_retries(8).build());
        let other = crate::support::unbudgeted(quick().max_retries(0).build());
        let (patient, other) = if shared {
            (
                patient.with_limits(limits.clone()),
                other.with_limits(limits),
            )
        } else {
            (patient, other)
        };
        let a = ServiceBuilder::new().layer(patient).service(inner.clone());
        let b = ServiceBuilder::new().layer(other).service(inner);
        let first = tokio::spawn(a.oneshot(with_override(Method::GET, None)));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let resp = b.oneshot(with_override(Method::GET, None)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
        let times = times.lock().unwrap().clone();
        let b_sent = times[1];
        if shared {
            // The other policy's request waited out the first one's 429.
            assert_eq!(b_sent, Duration::from_secs(5), "{times:?}");
        } else {
            assert_eq!(b_sent, Duration::from_secs(1), "{times:?}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_deadline_too_far_to_represent_is_no_deadline() {
    let (inner, seen) = recording(|n| Some(if n < 2 { 503 } else { 200 }));
    for policy_deadline in [Duration::MAX, Duration::from_secs(u64::MAX / 2)] {
        let svc = ServiceBuilder::new()
            .layer(crate::support::unbudgeted(
                quick().deadline(policy_deadline).build(),
            ))
            .service(inner.clone());
        let resp = svc
            .oneshot(with_override(
                Method::GET,
                Some(RetryOverride::new().deadline(Duration::MAX)),
            ))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    assert_eq!(attempts(&seen), 3);
}

#[tokio::test(start_paused = true)]
async fn an_either_body_is_copied_for_a_retry_under_tower() {
    use http_body_util::{BodyExt, Either, Empty};
    let bodies: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let log = Arc::clone(&bodies);
    let inner = service_fn(move |req: Request<Either<Full<Bytes>, Empty<Bytes>>>| {
        let log = Arc::clone(&log);
        async move {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let n = {
                let mut log = log.lock().unwrap();
                log.push(body);
                log.len()
            };
            let status = if n == 1 { 503 } else { 200 };
            Ok::<_, Infallible>(
                Response::builder()
                    .status(status)
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
        }
    });
    let svc = ServiceBuilder::new()
        .layer(crate::support::unbudgeted(quick().build()))
        .service(inner);
    let req = Request::post("/v1/calls")
        .body(Either::Left(Full::new(Bytes::from_static(b"payload"))))
        .unwrap();
    let resp = svc.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(*bodies.lock().unwrap(), [&b"payload"[..], &b"payload"[..]]);
}

// ===== outcomes are never lost, and nothing is read that cannot matter =====

#[tokio::test(start_paused = true)]
async fn no_error_body_is_read_when_no_retry_can_follow() {
    use futures_util::StreamExt;
    use http_body::Frame;
    use http_body_util::StreamBody;
    type Stalled =
        StreamBody<futures_util::stream::BoxStream<'static, Result<Frame<Bytes>, Infallible>>>;
    let inner = service_fn(|_req: Request<Full<Bytes>>| async {
        let body: Stalled = StreamBody::new(futures_util::stream::pending().boxed());
        Ok::<_, Infallible>(Response::builder().status(503).body(body).unwrap())
    });
    let policy = quick()
        .on_code(
            telecho_retry::ErrorCode::OutboundCallFailed,
            telecho_retry::classify::CodeRule::Fatal,
        )
        .build();
    let svc = ServiceBuilder::new()
        .layer(crate::support::unbudgeted(policy))
        .service(inner);
    let start = Instant::now();
    let resp = svc
        .oneshot(with_override(Method::GET, Some(RetryOverride::disabled())))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(start.elapsed(), Duration::ZERO, "handed back at once");
}

#[tokio::test(start_paused = true)]
async fn a_refusal_that_starts_during_the_backoff_hands_back_the_last_response() {
    // Request A gets a 503 and waits 1 s to retry; meanwhile request B gets a 429 whose
    // `Retry-After` is above the cap: A's retry is refused, and A gets its 503 back.
    let calls = Arc::new(Mutex::new(0usize));
    let count = Arc::clone(&calls);
    let inner = service_fn(move |req: Request<Full<Bytes>>| {
        *count.lock().unwrap() += 1;
        let b = req.uri().path() == "/b";
        async move {
            let resp = if b {
                Response::builder()
                    .status(429)
                    .header("retry-after", "3600")
            } else {
                Response::builder().status(503)
            };
            Ok::<_, Infallible>(resp.body(Full::new(Bytes::new())).unwrap())
        }
    });
    let svc = ServiceBuilder::new()
        .layer(crate::support::unbudgeted(quick().build()))
        .service(inner);
    let a = tokio::spawn(svc.clone().oneshot(with_override(Method::GET, None)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let b = Request::get("/b").body(Full::new(Bytes::new())).unwrap();
    let b = svc.oneshot(b).await.unwrap();
    assert_eq!(b.status(), StatusCode::TOO_MANY_REQUESTS);
    let a = a.await.unwrap().expect("A's own 503, not an error");
    assert_eq!(a.status(), StatusCode::SERVICE_UNAVAILABLE);
    let info = RetryInfo::of(a.extensions());
    assert_eq!(info.attempts(), 1);
    assert_eq!(info.stop_reason(), Some(StopReason::RetryAfterTooLong));
    assert_eq!(*calls.lock().unwrap(), 2, "A was not sent again");
}

#[tokio::test(start_paused = true)]
async fn a_classifier_sees_whether_a_get_answered_2xx_is_idempotent() {
    // An API that answers 202 "still working" until the result is ready.
    fn classifier() -> impl Classifier {
        classify_fn(
            |request: &RequestView<'_>, outcome: &Outcome<'_>| match outcome {
                Outcome::Response { status, .. }
                    if status.as_u16() == 202 && request.is_idempotent() =>
                {
                    Decision::Backoff
                }
                Outcome::Response { .. } => Decision::Accept,
                _ => Decision::Fatal,
            },
        )
    }
    let (inner, seen) = recording(|n| Some(if n < 3 { 202 } else { 200 }));
    let svc = ServiceBuilder::new()
        .layer(crate::support::unbudgeted(
            quick().classifier(classifier()).build(),
        ))
        .service(inner);
    let resp = svc.oneshot(with_override(Method::GET, None)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(attempts(&seen), 3, "a GET is retried");
    // A POST is not idempotent: its 202 is final.
    let (inner, seen) = recording(|_| Some(202));
    let svc = ServiceBuilder::new()
        .layer(crate::support::unbudgeted(
            quick().classifier(classifier()).build(),
        ))
        .service(inner);
    let resp = svc
        .oneshot(with_override(Method::POST, None))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(attempts(&seen), 1);
}

#[tokio::test]
async fn reused_extensions_carry_nothing_over_to_the_next_request() {
    let server = Server::scripted(vec![Reply::status(503), Reply::status(200)]).await;
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(crate::support::unbudgeted(fast().build()))
        .build();
    let mut extensions = http::Extensions::new();
    let first = client.get(server.url("/a")).build().unwrap();
    let resp = client
        .execute_with_extensions(first, &mut extensions)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(RetryInfo::of(&extensions).attempts(), 2);
    let second = client.get(server.url("/b")).build().unwrap();
    let resp = client
        .execute_with_extensions(second, &mut extensions)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        RetryInfo::of(&extensions).attempts(),
        1,
        "not the first request's info"
    );
    assert_eq!(telecho_retry::AttemptNumber::of(&extensions), 1);
}
