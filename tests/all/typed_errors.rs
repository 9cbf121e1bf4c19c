//! Typed errors from real responses whose error body stalls: the async helpers
//! (`ReqwestResponseExt`, `HttpBodyResponseExt`) read it for at most `ERROR_BODY_TIMEOUT`,
//! then return what had arrived, marked as cut.
//!
//! The servers are real sockets on `127.0.0.1:0`, but the clock is tokio's paused one: the
//! runtime jumps to the time bound as soon as nothing but the stalled socket is left, so
//! each test takes milliseconds of real time while the client waits 10 virtual seconds.

use crate::support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::{Misbehave, RawServer, Reply, Server};
use telecho_retry::body::ERROR_BODY_TIMEOUT;
use telecho_retry::{ErrorCode, HttpBodyResponseExt};

/// Far above the bound: a helper still reading by then is stuck.
const STUCK: Duration = Duration::from_secs(3600);

#[cfg(feature = "reqwest")]
#[tokio::test(start_paused = true)]
async fn reqwest_typed_error_returns_within_the_bound_when_the_401_body_stalls() {
    let real = std::time::Instant::now();
    let server = RawServer::start(Misbehave::StallAfterPartialBody(401)).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let resp = client.get(server.url()).send().await.unwrap();
    assert_eq!(resp.status(), 401);

    use telecho_retry::ReqwestResponseExt;
    let started = tokio::time::Instant::now();
    let err = tokio::time::timeout(STUCK, resp.api_error_for_status())
        .await
        .expect("returned within the bound, not pending forever")
        .unwrap_err();
    assert_eq!(started.elapsed(), ERROR_BODY_TIMEOUT);
    assert_eq!(err.status(), 401);
    assert_eq!(
        err.body(),
        &Bytes::from_static(b"0123456789"),
        "kept what arrived"
    );
    assert!(err.body_truncated());
    assert!(err.body_timed_out());
    assert!(err.api_error().is_none());
    assert_eq!(
        err.to_string(),
        "401 Unauthorized: response body is not a TelEcho error (10 bytes, timed out)"
    );
    assert!(
        real.elapsed() < Duration::from_secs(2),
        "{:?}",
        real.elapsed()
    );
}

fn hyper_client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

#[tokio::test(start_paused = true)]
async fn http_body_typed_error_returns_within_the_bound_when_the_401_body_stalls() {
    let real = std::time::Instant::now();
    let server = RawServer::start(Misbehave::StallAfterPartialBody(401)).await;
    let resp = hyper_client()
        .get(server.url().parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    let started = tokio::time::Instant::now();
    let err = tokio::time::timeout(STUCK, resp.api_error_for_status())
        .await
        .expect("returned within the bound, not pending forever")
        .unwrap_err();
    assert_eq!(started.elapsed(), ERROR_BODY_TIMEOUT);
    assert_eq!(err.status(), 401);
    assert_eq!(
        err.body(),
        &Bytes::from_static(b"0123456789"),
        "kept what arrived"
    );
    assert!(err.body_truncated());
    assert!(err.body_timed_out());
    assert!(err.code().is_none());
    assert!(
        real.elapsed() < Duration::from_secs(2),
        "{:?}",
        real.elapsed()
    );
}

#[tokio::test]
async fn http_body_typed_error_parses_a_complete_envelope_from_hyper() {
    let envelope = r#"{"error":{"type":"authentication_error","code":"expired_api_key","message":"Key expired."}}"#;
    let server = Server::scripted(vec![Reply::status(401)
        .header("content-type", "application/json")
        .chunked(&Bytes::from_static(envelope.as_bytes()), 9)])
    .await;
    let resp = hyper_client()
        .get(server.url("/v1/agents").parse().unwrap())
        .await
        .unwrap();
    let err = resp.api_error_for_status().await.unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::ExpiredApiKey));
    assert!(!err.body_truncated() && !err.body_timed_out());
    assert_eq!(err.body(), envelope.as_bytes());

    // A success is handed back with its body unread.
    let server = Server::scripted(vec![Reply::status(200).body("{\"ok\":true}")]).await;
    let resp = hyper_client()
        .get(server.url("/").parse().unwrap())
        .await
        .unwrap();
    let resp = resp.api_error_for_status().await.expect("a 200 passes");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "{\"ok\":true}");
}
