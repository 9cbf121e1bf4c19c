//! `TelEchoRetry` as a `reqwest_middleware` middleware: `cargo run --example reqwest_client`.
//!
//! Runs against a loopback mock of the TelEcho API (`examples/support/mock.rs`):
//!
//! 1. `POST /v1/calls` with an `Idempotency-Key` meets a 429 `rate_limit_per_minute` with
//!    `Retry-After: 1`, then a 201: the middleware waits and resends the same request,
//!    and the caller sees only the 201.
//! 2. `POST /v1/calls` for an account out of minutes gets a 402 `call_blocked`: not
//!    retried, and read as a typed [`ResponseError`](telecho_retry::ResponseError) with
//!    [`ReqwestResponseExt::api_error_for_status`].
//!
//! It uses the default policy (the TelEcho contract), so it takes 1 to 2 seconds. It checks
//! its results and exits 0.

#[path = "support/mock.rs"]
mod mock;

use std::error::Error;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use telecho_retry::{ErrorCode, ReqwestResponseExt, RetryInfo, StopReason, TelEchoRetry};

use mock::{secs, MockApi, Reply, API_KEY};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let api = MockApi::start().await;

    // The whole setup: one `.with(..)`. (`no_proxy` only because the mock is on loopback.)
    let client =
        reqwest_middleware::ClientBuilder::new(reqwest::Client::builder().no_proxy().build()?)
            .with(TelEchoRetry::default())
            .build();

    // 1. Rate limited once, then created.
    api.script(
        "/v1/calls",
        vec![
            Reply::error(429, "rate_limit_per_minute").retry_after(1),
            Reply::json(201, r#"{"id":"tel_call_demo42","status":"queued"}"#),
        ],
    );
    let started = Instant::now();
    let response = client
        .post(api.url("/v1/calls"))
        .bearer_auth(API_KEY)
        .header("idempotency-key", "order-1234-call")
        .header("content-type", "application/json")
        .body(r#"{"agent_id":"tel_agent_demo","to":"+15550100"}"#)
        .send()
        .await?;
    let elapsed = started.elapsed();
    let info = RetryInfo::of(response.extensions());
    let status = response.status();
    let body = response.api_error_for_status().await?.text().await?;
    println!(
        "POST /v1/calls -> {status} after {} attempts ({} asleep, {} in all): {body}",
        info.attempts(),
        secs(info.slept()),
        secs(elapsed)
    );
    let hits = api.hits("/v1/calls");
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(info.attempts(), 2, "429, then 201");
    assert_eq!(hits.len(), 2);
    assert!(
        hits[1].at - hits[0].at >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );
    assert!(
        hits.iter()
            .all(|h| h.idempotency_key.as_deref() == Some("order-1234-call")),
        "the retry resent the same Idempotency-Key"
    );
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");

    // 2. Out of minutes: a 402 is never retried; match on its typed code.
    api.script("/v1/calls", vec![Reply::error(402, "call_blocked")]);
    let response = client
        .post(api.url("/v1/calls"))
        .bearer_auth(API_KEY)
        .header("idempotency-key", "order-1235-call")
        .body(r#"{"agent_id":"tel_agent_demo","to":"+15550101"}"#)
        .send()
        .await?;
    let info = RetryInfo::of(response.extensions());
    match response.api_error_for_status().await {
        Ok(_) => return Err("expected a 402".into()),
        Err(err) => {
            println!(
                "POST /v1/calls -> {err} (after {} attempt)",
                info.attempts()
            );
            match err.code() {
                Some(ErrorCode::CallBlocked) => {
                    println!("  matched ErrorCode::CallBlocked: top up the account, do not retry")
                }
                other => return Err(format!("expected call_blocked, got {other:?}").into()),
            }
            assert_eq!(err.status(), StatusCode::PAYMENT_REQUIRED);
        }
    }
    assert_eq!(info.attempts(), 1);
    assert_eq!(info.stop_reason(), Some(StopReason::Fatal));

    println!("reqwest_client: ok");
    Ok(())
}
