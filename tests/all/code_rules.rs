//! Code rules (`on_code`) decide alike under the tower layer and the reqwest middleware: the
//! engine reads the error body (bounded in bytes and time) through one shared reader and
//! hands the response back with its body whole.
#![cfg(all(feature = "tower", feature = "reqwest"))]

use crate::support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use telecho_retry::classify::CodeRule;
use telecho_retry::{ErrorCode, Jitter, RetryInfo, RetryPolicy, StopReason};
use tokio::time::Instant;
use tower::{service_fn, ServiceBuilder, ServiceExt};

use support::{Reply, Server};

const ENVELOPE: &str = r#"{"error":{"type":"api_error","code":"outbound_call_failed","message":"SIP 503 while dialing"}}"#;

fn policy(rule: bool) -> RetryPolicy {
    let b = RetryPolicy::builder()
        .max_retries(5)
        .base_delay(Duration::from_millis(10))
        .max_delay(Duration::from_millis(20))
        .jitter(Jitter::None);
    if rule {
        b.on_code(ErrorCode::OutboundCallFailed, CodeRule::Fatal)
            .build()
    } else {
        b.build()
    }
}

fn post(url: &str) -> Request<Full<Bytes>> {
    Request::post(url)
        .body(Full::new(Bytes::from_static(b"{\"to\":\"+15550100\"}")))
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn fatal_code_rule_sends_once_under_tower_over_service_fn() {
    for (rule, want_calls) in [(true, 1), (false, 6)] {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let inner = service_fn(move |_req: Request<Full<Bytes>>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async {
                Ok::<_, Infallible>(
                    Response::builder()
                        .status(502)
                        .header("x-request-id", "req_1")
                        .body(Full::new(Bytes::from_static(ENVELOPE.as_bytes())))
                        .unwrap(),
                )
            }
        });
        let svc = ServiceBuilder::new()
            .layer(support::unbudgeted(policy(rule)))
            .service(inner);
        let resp = svc.oneshot(post("/v1/calls")).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), want_calls, "rule: {rule}");
        assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(resp.headers()["x-request-id"], "req_1");
        let info = RetryInfo::of(resp.extensions());
        let want = if rule {
            StopReason::Fatal
        } else {
            StopReason::MaxRetries
        };
        assert_eq!(info.stop_reason(), Some(want));
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            body, ENVELOPE,
            "the body read for the code is handed back whole"
        );
    }
}

#[tokio::test]
async fn fatal_code_rule_sends_once_under_tower_over_hyper_util() {
    let server = Server::start(|_| {
        Reply::status(502)
            .header("content-type", "application/json")
            .body(ENVELOPE)
    })
    .await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let svc = ServiceBuilder::new()
        .layer(support::unbudgeted(policy(true)))
        .service(client.clone());
    let resp = svc.oneshot(post(&server.url("/v1/calls"))).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(server.hits("/v1/calls"), 1, "a fatal code is not redialled");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, ENVELOPE);

    // Without the rule, the 5xx is retried: the rule, not the status, stopped it above.
    let svc = ServiceBuilder::new()
        .layer(support::unbudgeted(policy(false)))
        .service(client);
    let resp = svc.oneshot(post(&server.url("/v1/other"))).await.unwrap();
    assert_eq!(RetryInfo::of(resp.extensions()).attempts(), 6);
    assert_eq!(server.hits("/v1/other"), 6);
}

#[tokio::test]
async fn fatal_code_rule_sends_once_under_the_reqwest_middleware_and_tower_over_reqwest() {
    let server = Server::start(|_| Reply::status(502).body(ENVELOPE)).await;
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(support::unbudgeted(policy(true)))
        .build();
    let resp = client.post(server.url("/mw")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(server.hits("/mw"), 1);
    assert_eq!(resp.text().await.unwrap(), ENVELOPE);

    // `reqwest::Client` as the tower layer's inner service.
    let svc = ServiceBuilder::new()
        .layer(support::unbudgeted(policy(true)))
        .service(reqwest::Client::new());
    let req = reqwest::Request::new(
        reqwest::Method::POST,
        server.url("/tower-reqwest").parse().unwrap(),
    );
    let resp = svc.oneshot(req).await.unwrap();
    assert_eq!(server.hits("/tower-reqwest"), 1);
    assert_eq!(
        resp.url().path(),
        "/tower-reqwest",
        "the URL survives the read"
    );
    assert_eq!(resp.text().await.unwrap(), ENVELOPE);
}

type Stalled = StreamBody<stream::BoxStream<'static, Result<Frame<Bytes>, Infallible>>>;

/// A 502 whose body sends a prefix and then nothing, forever.
fn stalled_502() -> Response<Stalled> {
    use futures_util::StreamExt;
    let prefix = stream::iter([Ok(Frame::data(Bytes::from_static(b"{\"error\":")))]);
    let body = prefix.chain(stream::pending()).boxed();
    Response::builder()
        .status(502)
        .body(StreamBody::new(body))
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_code_read_is_bounded_in_time_under_tower() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let inner = service_fn(move |_req: Request<Full<Bytes>>| {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(stalled_502()) }
    });
    let policy = RetryPolicy::builder()
        .max_retries(1)
        .base_delay(Duration::from_secs(1))
        .jitter(Jitter::None)
        .on_code(ErrorCode::OutboundCallFailed, CodeRule::Fatal)
        .build();
    let svc = ServiceBuilder::new()
        .layer(support::unbudgeted(policy))
        .service(inner);
    let start = Instant::now();
    let resp = svc.oneshot(post("/v1/calls")).await.unwrap();
    // The read gives up after 10 s without a code; the status decides (retry after 1 s).
    // The last attempt's body is not read: its code could only name the stop reason.
    assert_eq!(start.elapsed(), Duration::from_secs(11));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(
        RetryInfo::of(resp.extensions()).stop_reason(),
        Some(StopReason::MaxRetries)
    );
    // What was read is still there, in front of the rest.
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "{\"error\":");
}

#[tokio::test(start_paused = true)]
async fn the_code_read_is_cut_by_the_deadline_under_tower() {
    let inner =
        service_fn(|_req: Request<Full<Bytes>>| async { Ok::<_, Infallible>(stalled_502()) });
    let policy = RetryPolicy::builder()
        .deadline(Duration::from_secs(3))
        .on_code(ErrorCode::OutboundCallFailed, CodeRule::Fatal)
        .build();
    let svc = ServiceBuilder::new()
        .layer(support::unbudgeted(policy))
        .service(inner);
    let start = Instant::now();
    let err = svc.oneshot(post("/v1/calls")).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    assert_eq!(err.kind(), telecho_retry::RetryErrorKind::Deadline);
    assert_eq!(err.info().attempts(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_code_read_stays_within_the_attempt_timeout_under_tower() {
    let inner =
        service_fn(|_req: Request<Full<Bytes>>| async { Ok::<_, Infallible>(stalled_502()) });
    let policy = RetryPolicy::builder()
        .max_retries(1)
        .base_delay(Duration::from_secs(1))
        .jitter(Jitter::None)
        .attempt_timeout(Duration::from_secs(2))
        .on_code(ErrorCode::OutboundCallFailed, CodeRule::Fatal)
        .build();
    let svc = ServiceBuilder::new()
        .layer(support::unbudgeted(policy))
        .service(inner);
    let start = Instant::now();
    let resp = svc.oneshot(post("/v1/calls")).await.unwrap();
    // The read gives up when its attempt's 2 s are over, not after the 10 s read bound;
    // the last attempt's body is not read.
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(RetryInfo::of(resp.extensions()).attempts(), 2);
}
