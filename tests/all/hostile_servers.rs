//! Hostile servers, each with a defined outcome (the README's bad-input table):
//! absurd `Retry-After` values, huge and endless error bodies, resets after the headers.
#![cfg(feature = "reqwest")]

use crate::support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use support::{Misbehave, RawServer, Reply, Server};
use telecho_retry::classify::CodeRule;
use telecho_retry::{
    ErrorCode, Jitter, ReqwestResponseExt, RetryInfo, RetryPolicy, RetryPolicyBuilder, StopReason,
    TelEchoRetry, MAX_ENVELOPE_BYTES,
};

fn fast() -> RetryPolicyBuilder {
    RetryPolicy::builder()
        .max_retries(1)
        .base_delay(Duration::from_millis(10))
        .jitter(Jitter::None)
        .retry_after_spread(Duration::ZERO)
}

/// A policy with a code rule, so that the middleware reads error bodies.
fn reads_bodies() -> RetryPolicyBuilder {
    fast().on_code(ErrorCode::OutboundCallFailed, CodeRule::Fatal)
}

fn client(policy: RetryPolicy) -> ClientWithMiddleware {
    let inner = reqwest::Client::builder().no_proxy().build().unwrap();
    ClientBuilder::new(inner)
        .with(TelEchoRetry::new(policy))
        .build()
}

fn info(resp: &reqwest::Response) -> RetryInfo {
    *resp.extensions().get::<RetryInfo>().unwrap()
}

#[tokio::test]
async fn retry_after_of_twenty_nines_is_handed_back_at_once() {
    let server =
        Server::start(|_| Reply::status(429).header("retry-after", "99999999999999999999")).await;
    let started = Instant::now();
    let resp = client(fast().build())
        .get(server.url("/"))
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "99999999999999999999");
    assert_eq!(
        info(&resp).stop_reason(),
        Some(StopReason::RetryAfterTooLong)
    );
    assert_eq!(server.seen().len(), 1);
    // The typed error saturates rather than overflows.
    let err = resp.api_error_for_status().await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(u64::MAX)));
}

#[tokio::test]
async fn retry_after_in_the_year_9999_is_handed_back_at_once() {
    let server = Server::start(|_| {
        Reply::status(503).header("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT")
    })
    .await;
    let started = Instant::now();
    let resp = client(fast().build())
        .get(server.url("/"))
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(resp.status(), 503);
    assert_eq!(
        info(&resp).stop_reason(),
        Some(StopReason::RetryAfterTooLong)
    );
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn ten_mib_error_body_is_peeked_at_64_kib_and_handed_back_whole() {
    let big = Bytes::from(vec![b'x'; 10 * 1024 * 1024]);
    let body = big.clone();
    let server = Server::start(move |_| Reply::status(502).chunked(&body, 256 * 1024)).await;
    let resp = client(reads_bodies().build())
        .get(server.url("/"))
        .send()
        .await
        .unwrap();
    // Not an envelope within 64 KiB: the 5xx rule applies (retried once).
    assert_eq!(server.seen().len(), 2);
    assert_eq!(info(&resp).stop_reason(), Some(StopReason::MaxRetries));
    assert_eq!(
        resp.bytes().await.unwrap(),
        big,
        "the caller reads all 10 MiB intact"
    );

    // The typed-error helper reads at most 64 KiB of it.
    let resp = client(fast().max_retries(0).build())
        .get(server.url("/"))
        .send()
        .await
        .unwrap();
    let err = resp.api_error_for_status().await.unwrap_err();
    assert!(err.body_truncated());
    assert_eq!(err.body().len(), MAX_ENVELOPE_BYTES);
    assert!(err.api_error().is_none());
}

#[tokio::test]
async fn endless_error_body_is_peeked_at_64_kib_and_the_status_decides() {
    let server = RawServer::start(Misbehave::EndlessErrorBody).await;
    let started = Instant::now();
    let resp = client(reads_bodies().build())
        .get(server.url())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(server.requests(), 2, "503 retried once by status");
    assert_eq!(info(&resp).stop_reason(), Some(StopReason::MaxRetries));
    // The caller's typed error stops reading at 64 KiB, too.
    let err = resp.api_error_for_status().await.unwrap_err();
    assert!(err.body_truncated());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn reset_after_an_error_head_is_decided_by_the_status() {
    for policy in [fast().build(), reads_bodies().build()] {
        let server = RawServer::start(Misbehave::ResetAfterHead(503)).await;
        let resp = client(policy).get(server.url()).send().await.unwrap();
        assert_eq!(resp.status(), 503);
        assert_eq!(server.requests(), 2, "the 503 head is retried like any 503");
        // The body the server never finished fails for the caller, as without retries.
        assert!(resp.bytes().await.is_err());
    }
}

#[tokio::test]
async fn reset_after_a_success_head_is_returned_once() {
    let server = RawServer::start(Misbehave::ResetAfterHead(200)).await;
    let resp = client(fast().build())
        .request(Method::POST, server.url())
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(server.requests(), 1, "a 200 head is never retried");
    assert!(resp.bytes().await.is_err());
}
