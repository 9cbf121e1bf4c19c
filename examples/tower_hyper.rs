//! `TelEchoRetry` as a tower layer over a hyper-util client: `cargo run --example tower_hyper`.
//!
//! Runs against a loopback mock of the TelEcho API (`examples/support/mock.rs`):
//!
//! 1. `GET /v1/agents` meets a 503, then a 429 `rate_limit_per_minute` with
//!    `Retry-After: 1`, then succeeds: the caller sees only the 200, and the response's
//!    [`RetryInfo`] says 3 attempts.
//! 2. `GET /v1/agents/tel_agent_missing` gets a 404 `agent_not_found`: not retried, and
//!    turned into a typed [`ResponseError`](telecho_retry::ResponseError) to `match` on.
//!
//! It uses the default policy (the TelEcho contract: 1 s first backoff, `Retry-After`
//! honoured up to 60 s), so it takes 2 to 3 seconds. It checks its results and exits 0.

#[path = "support/mock.rs"]
mod mock;

use std::error::Error;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use telecho_retry::{ErrorCode, HttpResponseExt, RetryInfo, StopReason, TelEchoRetry};
use tower::{ServiceBuilder, ServiceExt};

use mock::{secs, MockApi, Reply, API_KEY};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let api = MockApi::start().await;
    api.script(
        "/v1/agents",
        vec![
            Reply::unavailable(),
            Reply::error(429, "rate_limit_per_minute").retry_after(1),
            Reply::json(
                200,
                r#"{"data":[{"id":"tel_agent_demo","status":"active"}]}"#,
            ),
        ],
    );
    api.script(
        "/v1/agents/tel_agent_missing",
        vec![Reply::error(404, "agent_not_found")],
    );

    // Any tower service of `http::Request<B> -> http::Response<_>` can be wrapped; here the
    // hyper-util legacy client. Its body type must be one the layer can copy for a retry
    // (`Full<Bytes>` here; a `BoxBody` would be sent once).
    let hyper = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let client = ServiceBuilder::new()
        .layer(TelEchoRetry::default())
        .service(hyper);

    // 1. A request that is retried twice before it succeeds.
    let started = Instant::now();
    let request = Request::get(api.url("/v1/agents"))
        .header(AUTHORIZATION, format!("Bearer {API_KEY}"))
        .body(Full::default())?;
    let response = client.clone().oneshot(request).await?;
    let elapsed = started.elapsed();
    let info = RetryInfo::of(response.extensions());
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    println!(
        "GET /v1/agents -> {status} after {} attempts ({} asleep, {} in all): {}",
        info.attempts(),
        secs(info.slept()),
        secs(elapsed),
        String::from_utf8_lossy(&body)
    );
    for (n, hit) in api.hits("/v1/agents").iter().enumerate() {
        println!(
            "  attempt {}: +{} {} {}",
            n + 1,
            secs(hit.at - started),
            hit.status.as_u16(),
            hit.code.unwrap_or("(no TelEcho code)")
        );
    }
    assert_eq!(status, StatusCode::OK);
    assert_eq!(info.attempts(), 3, "503, then 429, then 200");
    assert_eq!(info.stop_reason(), Some(StopReason::Success));
    // The 429 said "Retry-After: 1": the third attempt came no earlier than that.
    let hits = api.hits("/v1/agents");
    assert!(hits[2].at - hits[1].at >= Duration::from_secs(1));
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");

    // 2. A 4xx: never retried; a typed error for the caller.
    let request = Request::get(api.url("/v1/agents/tel_agent_missing"))
        .header(AUTHORIZATION, format!("Bearer {API_KEY}"))
        .body(Full::default())?;
    let response = client.clone().oneshot(request).await?;
    let info = RetryInfo::of(response.extensions());
    // Read the (small) body, then turn the response into `Result<_, ResponseError>`.
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    let err = match Response::from_parts(parts, body).api_error_for_status() {
        Ok(_) => return Err("expected a 404".into()),
        Err(err) => err,
    };
    println!(
        "GET /v1/agents/tel_agent_missing -> {err} (after {} attempt)",
        info.attempts()
    );
    match err.code() {
        Some(ErrorCode::AgentNotFound) => println!("  matched ErrorCode::AgentNotFound"),
        other => return Err(format!("expected agent_not_found, got {other:?}").into()),
    }
    assert_eq!(err.status(), StatusCode::NOT_FOUND);
    assert_eq!(info.attempts(), 1, "a 4xx is never retried");
    assert_eq!(info.stop_reason(), Some(StopReason::Fatal));

    println!("tower_hyper: ok");
    Ok(())
}
