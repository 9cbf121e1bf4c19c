//! A tuned policy, a per-code override and a custom error classifier:
//! `cargo run --example custom_policy`.
//!
//! Runs against a loopback mock of the TelEcho API (`examples/support/mock.rs`):
//!
//! 1. **Builder and per-code override, with the reqwest middleware.** A caller that would
//!    rather not redial after a failed outbound call sets
//!    `on_code(ErrorCode::OutboundCallFailed, CodeRule::Fatal)`. Facing a 503, then a 502
//!    `outbound_call_failed`, then a 201, it retries the 503 (status rule) but hands back
//!    the 502 (code rule); the same script without the override ends in the 201.
//! 2. **A custom error classifier, with the tower layer.** The inner service is a
//!    `tower::service_fn` with its own error type, `AppError`, which implements
//!    [`ClassifyError`] to tell the policy what kind of failure each error is. The layer
//!    hands back every error as a [`RetryError`] with the
//!    [`RetryInfo`] of what was tried and the `AppError` as its source.
//!
//! Delays are short (100 ms base), so it ends in under a second. It checks its
//! results and exits 0.

#[path = "support/mock.rs"]
mod mock;

use std::collections::VecDeque;
use std::error::Error;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use telecho_retry::body::ResponseBody;
use telecho_retry::classify::ClassifyError;
use telecho_retry::classify::{CodeRule, TransportErrorKind};
use telecho_retry::{
    ErrorCode, Jitter, ReqwestResponseExt, RetryInfo, RetryPolicy, StopReason, TelEchoRetry,
};
use tower::{service_fn, ServiceBuilder, ServiceExt};

use mock::{MockApi, Reply, API_KEY};

/// The tuned policy, with or without the override.
fn policy(no_redial: bool) -> RetryPolicy {
    let builder = RetryPolicy::builder()
        .max_retries(3)
        .base_delay(Duration::from_millis(100))
        .max_delay(Duration::from_millis(400))
        .jitter(Jitter::Full)
        .max_retry_after(Duration::from_secs(2))
        .retry_after_spread(Duration::from_millis(50))
        // Reproducible delays (for tests and simulations).
        .seed(42);
    if no_redial {
        // The body of a 502 names the code; the reqwest middleware reads it (at most
        // 64 KiB) because a code rule is set, and hands back the body intact.
        builder
            .on_code(ErrorCode::OutboundCallFailed, CodeRule::Fatal)
            .build()
    } else {
        builder.build()
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let api = MockApi::start().await;
    per_code_override(&api).await?;
    custom_classifier(&api).await?;
    println!("custom_policy: ok");
    Ok(())
}

// ===== 1. builder + per-code override (reqwest middleware) =====

async fn per_code_override(api: &MockApi) -> Result<(), Box<dyn Error>> {
    for no_redial in [true, false] {
        api.script(
            "/v1/calls",
            vec![
                Reply::unavailable(),
                Reply::error(502, "outbound_call_failed"),
                Reply::json(201, r#"{"id":"tel_call_demo42","status":"queued"}"#),
            ],
        );
        let client =
            reqwest_middleware::ClientBuilder::new(reqwest::Client::builder().no_proxy().build()?)
                .with(TelEchoRetry::new(policy(no_redial)))
                .build();
        let response = client
            .post(api.url("/v1/calls"))
            .bearer_auth(API_KEY)
            .header("idempotency-key", "order-77-call")
            .body(r#"{"agent_id":"tel_agent_demo","to":"+15550100"}"#)
            .send()
            .await?;
        let info = RetryInfo::of(response.extensions());
        let status = response.status();
        let label = if no_redial {
            "with on_code(OutboundCallFailed, Fatal)"
        } else {
            "without the override          "
        };
        match response.api_error_for_status().await {
            Ok(r) => println!(
                "{label}: {status} after {} attempts: {}",
                info.attempts(),
                r.text().await?
            ),
            Err(e) => println!("{label}: {e} after {} attempts", info.attempts()),
        }
        let codes: Vec<_> = api
            .hits("/v1/calls")
            .iter()
            .map(|h| format!("{} {}", h.status.as_u16(), h.code.unwrap_or("-")))
            .collect();
        println!("  server answered: {}", codes.join(", "));
        if no_redial {
            assert_eq!(status, StatusCode::BAD_GATEWAY);
            assert_eq!(info.attempts(), 2, "the 503 is retried, the 502 is not");
            assert_eq!(info.stop_reason(), Some(StopReason::Fatal));
        } else {
            assert_eq!(status, StatusCode::CREATED);
            assert_eq!(info.attempts(), 3);
        }
    }
    Ok(())
}

// ===== 2. a custom error classifier (tower layer over a service_fn) =====

/// An application's own client error.
#[derive(Debug)]
struct AppError {
    kind: AppErrorKind,
}

#[derive(Debug)]
enum AppErrorKind {
    /// Our egress gateway refused the connection: nothing was sent.
    GatewayDown,
    /// Sent, but no answer in time: it may have reached the API.
    Timeout,
    /// An error from the HTTP client itself.
    Http(hyper_util::client::legacy::Error),
}

impl ClassifyError for AppError {
    fn transport_error_kind(&self) -> TransportErrorKind {
        match &self.kind {
            // Always safe to resend, even a POST without an idempotency key.
            AppErrorKind::GatewayDown => TransportErrorKind::Connect,
            // Resent only for idempotent requests (or ones with an Idempotency-Key).
            AppErrorKind::Timeout => TransportErrorKind::Timeout,
            // Defer to the crate's own classification of hyper-util errors.
            AppErrorKind::Http(e) => e.transport_error_kind(),
        }
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            AppErrorKind::GatewayDown => f.write_str("egress gateway refused the connection"),
            AppErrorKind::Timeout => f.write_str("no answer in time"),
            AppErrorKind::Http(e) => write!(f, "http client: {e}"),
        }
    }
}

impl Error for AppError {}

impl AppError {
    fn new(kind: AppErrorKind) -> Self {
        AppError { kind }
    }
}

/// Failures to inject before the next requests reach the network (`None`: send it).
type Faults = Arc<Mutex<VecDeque<Option<AppErrorKind>>>>;

async fn custom_classifier(api: &MockApi) -> Result<(), Box<dyn Error>> {
    let faults: Faults = Arc::default();
    let hyper = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    // The application's transport: a service_fn that may fail with an `AppError` before
    // sending, and otherwise forwards to the hyper-util client.
    let inner = {
        let faults = Arc::clone(&faults);
        service_fn(move |req: Request<Full<Bytes>>| {
            let fault = faults.lock().expect("faults").pop_front().flatten();
            let hyper = hyper.clone();
            async move {
                if let Some(kind) = fault {
                    return Err(AppError::new(kind));
                }
                hyper
                    .request(req)
                    .await
                    .map_err(|e| AppError::new(AppErrorKind::Http(e)))
            }
        })
    };
    let client = ServiceBuilder::new()
        .layer(TelEchoRetry::new(policy(false)))
        .service(inner);
    let call = |idempotency_key: Option<&str>| {
        let mut req =
            Request::post(api.url("/v1/calls")).header(AUTHORIZATION, format!("Bearer {API_KEY}"));
        if let Some(key) = idempotency_key {
            req = req.header("idempotency-key", key);
        }
        req.body(Full::new(Bytes::from_static(
            br#"{"agent_id":"tel_agent_demo","to":"+15550100"}"#,
        )))
    };

    // a) Gateway down, then a timeout, then through: a POST with an Idempotency-Key is
    //    retried after both.
    api.script(
        "/v1/calls",
        vec![Reply::json(201, r#"{"id":"tel_call_demo43"}"#)],
    );
    *faults.lock().expect("faults") =
        VecDeque::from([Some(AppErrorKind::GatewayDown), Some(AppErrorKind::Timeout)]);
    let response: Response<ResponseBody<Incoming>> =
        client.clone().oneshot(call(Some("order-78-call"))?).await?;
    let info = RetryInfo::of(response.extensions());
    println!(
        "service_fn, POST with Idempotency-Key: gateway down, timeout, then {} after {} attempts",
        response.status(),
        info.attempts()
    );
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(info.attempts(), 3);
    assert_eq!(
        api.hits("/v1/calls").len(),
        1,
        "only the third reached the API"
    );

    // b) A timeout on a POST without an Idempotency-Key: it may have started a call, so it
    //    is not resent. The caller gets a `RetryError` whose source is the `AppError`.
    api.script(
        "/v1/calls",
        vec![Reply::json(201, r#"{"id":"tel_call_demo44"}"#)],
    );
    *faults.lock().expect("faults") = VecDeque::from([Some(AppErrorKind::Timeout)]);
    let err = match client.clone().oneshot(call(None)?).await {
        Ok(r) => return Err(format!("expected an AppError, got {}", r.status()).into()),
        Err(err) => err,
    };
    let info = err.info();
    let app = err
        .get_inner()
        .and_then(|e| e.downcast_ref::<AppError>())
        .expect("the AppError is its source");
    println!(
        "service_fn, POST without Idempotency-Key: {app}, handed back after {} attempt ({})",
        info.attempts(),
        info.stop_reason().map_or("?", StopReason::as_str)
    );
    assert!(matches!(app.kind, AppErrorKind::Timeout));
    assert_eq!(info.attempts(), 1);
    assert_eq!(info.stop_reason(), Some(StopReason::Fatal));
    assert!(api.hits("/v1/calls").is_empty());
    Ok(())
}
