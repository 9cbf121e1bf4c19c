//! The reqwest middleware end to end, against real HTTP servers on `127.0.0.1:0`.
//!
//! Two servers from `crate::support` answer: [`Server`], a hyper 1 server that records every
//! request (arrival time, method, path, headers, full body) and answers from a handler or a
//! script; and [`RawServer`], a bare `TcpListener` that misbehaves on purpose (resets, cuts
//! a response short, never answers) for the transport-error cases.
//!
//! Delays are set through the policy builder (10-50 ms, no jitter, no `Retry-After`
//! spread), so the module runs in a few seconds; only the two `Retry-After` tests wait real
//! seconds, because that is what they measure.
//!
//! This file holds the clients, policies and helpers the tests share, and the `Recorder`
//! middleware; the tests are in one submodule per promise: `statuses` (the status matrix,
//! `Retry-After`), `streaming` (streaming bodies), `transport` (transport errors, a refused
//! connection), `extensions` (the caller's extensions on every attempt), `codes`
//! (code-aware decisions) and `typed` (typed errors from real responses).
#![cfg(feature = "reqwest")]

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Extensions, Method, StatusCode};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};
use telecho_retry::classify::{CodeRule, TransportErrorKind};
use telecho_retry::RetryError;
use telecho_retry::{
    ApiError, ErrorCode, ErrorType, Jitter, ReqwestResponseExt, RetryInfo, RetryPolicy,
    RetryPolicyBuilder, StopReason, TelEchoRetry,
};
use tokio::time::Instant;

use crate::support;
use support::*;

// ===== clients and policies =====

/// No jitter, no `Retry-After` spread, 10 ms base delay: exact and fast.
fn fast(max_retries: u32) -> RetryPolicyBuilder {
    RetryPolicy::builder()
        .max_retries(max_retries)
        .base_delay(Duration::from_millis(10))
        .max_delay(Duration::from_millis(100))
        .jitter(Jitter::None)
        .retry_after_spread(Duration::ZERO)
}

fn reqwest_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}

fn client(retry: TelEchoRetry) -> ClientWithMiddleware {
    ClientBuilder::new(reqwest_client()).with(retry).build()
}

/// The response's `RetryInfo` (absent, read as "one attempt, success", on a first-try success).
fn info(resp: &reqwest::Response) -> RetryInfo {
    RetryInfo::of(resp.extensions())
}

fn kind(err: &reqwest_middleware::Error) -> TransportErrorKind {
    let retry = RetryError::of(err).expect("every failure is a RetryError");
    match retry.get_inner() {
        Some(inner) => TransportErrorKind::of_error(inner),
        None => TransportErrorKind::of_error(retry),
    }
}

/// The last attempt's own `reqwest::Error`, inside the `RetryError` the middleware returns.
fn reqwest_error(err: &reqwest_middleware::Error) -> &reqwest::Error {
    RetryError::of(err)
        .and_then(RetryError::get_inner)
        .and_then(|e| e.downcast_ref::<reqwest::Error>())
        .expect("the last attempt's reqwest::Error")
}

/// A streaming body (no length known up front, so `try_clone` cannot copy it).
fn stream_body(chunks: &[Bytes]) -> reqwest::Body {
    let chunks: Vec<Result<Bytes, std::io::Error>> = chunks.iter().cloned().map(Ok).collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
}

/// `n` chunks of `size` bytes each, all different.
fn chunks(n: usize, size: usize) -> Vec<Bytes> {
    (0..n)
        .map(|i| Bytes::from(vec![b'a' + (i % 26) as u8; size]))
        .collect()
}

fn concat(chunks: &[Bytes]) -> Bytes {
    chunks.concat().into()
}

fn envelope(code: &ErrorCode, message: &str) -> String {
    let error_type = match code {
        ErrorCode::MissingApiKey
        | ErrorCode::InvalidApiKey
        | ErrorCode::RevokedApiKey
        | ErrorCode::ExpiredApiKey => ErrorType::AuthenticationError,
        _ => ErrorType::Other("invalid_request_error".into()),
    };
    ApiError::new(error_type, code.clone(), message).to_json()
}

// ===== a middleware that records each attempt =====

/// Counts attempts on the client side and records the extensions each attempt saw.
#[derive(Clone, Default)]
struct Recorder {
    attempts: Arc<AtomicU32>,
    saw: Arc<Mutex<Vec<Snapshot>>>,
}

#[derive(Clone, Debug, PartialEq)]
struct CallerTag(&'static str);

/// The caller starts it at some value; each attempt increments it.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Counter(u32);

/// Left behind by attempt n.
#[derive(Clone, Copy, Debug, PartialEq)]
struct LeftBy(u32);

#[derive(Clone, Debug, PartialEq)]
struct Snapshot {
    tag: Option<CallerTag>,
    counter: Option<Counter>,
    left_by: Option<LeftBy>,
    retry_info: bool,
}

#[async_trait::async_trait]
impl Middleware for Recorder {
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let n = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
        self.saw.lock().unwrap().push(Snapshot {
            tag: extensions.get::<CallerTag>().cloned(),
            counter: extensions.get::<Counter>().copied(),
            left_by: extensions.get::<LeftBy>().copied(),
            retry_info: extensions.get::<RetryInfo>().is_some(),
        });
        let counter = extensions.get::<Counter>().map_or(0, |c| c.0);
        extensions.insert(Counter(counter + 1));
        extensions.insert(LeftBy(n));
        next.run(req, extensions).await
    }
}

mod codes;
mod extensions;
mod statuses;
mod streaming;
mod transport;
mod typed;
