//! The tower adapter (issue 3): `TelEchoRetry` as a `Layer` over an HTTP client service.
//!
//! The unit tests run on tokio's paused clock over `tower_test::mock`, so they can say
//! exactly *when* each attempt reaches the inner service: the mock only sees a request once
//! the response future has been polled past its sleep, and `tokio::time::advance` moves
//! the clock by exact amounts. The mock also panics if `call` is used without a
//! `poll_ready` first, so every retry in these tests also checks that readiness is
//! respected.
//!
//! The one end-to-end test, hyper-util's client through the layer against a hyper server
//! on `127.0.0.1:0` in real time, is in module `end_to_end`.
//!
//! This file holds the helpers; the tests are in one submodule per promise: `statuses`
//! (`Retry-After`, 5xx and 4xx), `requests` (requests that cannot be copied, when copies
//! are made, cancellation), `transport` (transport errors), `services` (backpressure,
//! `service_fn`, `ServiceBuilder`, `Send`) and `end_to_end`.
#![cfg(feature = "tower")]

use std::convert::Infallible;
use std::fmt::Debug;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http::header::RETRY_AFTER;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use telecho_retry::body::ResponseBody;
use telecho_retry::body::TryCloneBody;
use telecho_retry::{
    Jitter, ResponseFuture, RetryError, RetryErrorKind, RetryInfo, RetryPolicy, RetryService,
    StopReason, TelEchoRetry,
};
use tokio::time::{advance, Instant};
use tokio_test::{assert_pending, assert_ready, task};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
use tower_test::mock;

// ===== helpers =====

type Resp = Response<String>;
type Handle<B> = mock::Handle<Request<B>, Resp>;
type Fut<B> = task::Spawn<ResponseFuture<mock::Mock<Request<B>, Resp>, Request<B>>>;

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A policy with no randomness at all: exact ladder, `Retry-After` honoured to the ms.
fn exact(max_retries: u32) -> RetryPolicy {
    RetryPolicy::builder()
        .max_retries(max_retries)
        .jitter(Jitter::None)
        .retry_after_spread(Duration::ZERO)
        .build()
}

fn request(method: Method) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri("http://api.telecho.test/v1/calls")
        .body(Full::new(Bytes::from_static(
            b"{\"agent_id\":\"tel_agent_1\"}",
        )))
        .unwrap()
}

fn get() -> Request<Full<Bytes>> {
    request(Method::GET)
}

fn post() -> Request<Full<Bytes>> {
    request(Method::POST)
}

fn status(code: u16) -> Resp {
    Response::builder()
        .status(code)
        .body(String::new())
        .unwrap()
}

fn with_retry_after(code: u16, value: &'static str) -> Resp {
    Response::builder()
        .status(code)
        .header(RETRY_AFTER, value)
        .body(String::new())
        .unwrap()
}

/// The response's `RetryInfo` (absent, read as "one attempt, success", on a first-try success).
fn info<B>(resp: &Response<B>) -> RetryInfo {
    RetryInfo::of(resp.extensions())
}

/// Wraps a fresh mock in the layer, polls it ready and calls it: the first attempt is on
/// its way to the mock when this returns.
fn start<B>(policy: RetryPolicy, req: Request<B>) -> (Fut<B>, Handle<B>)
where
    B: TryCloneBody,
{
    let (mut svc, handle) = mock::spawn_layer::<Request<B>, Resp, _>(TelEchoRetry::new(policy));
    assert_ready!(svc.poll_ready::<Request<B>>()).expect("the mock is ready");
    let fut = task::spawn(svc.call(req));
    (fut, handle)
}

/// The attempt that must have reached the mock by now.
fn take_attempt<T, U>(handle: &mut mock::Handle<T, U>) -> (T, mock::SendResponse<U>) {
    match handle.poll_request() {
        Poll::Ready(Some(attempt)) => attempt,
        Poll::Ready(None) => panic!("the mock was closed"),
        Poll::Pending => panic!("expected an attempt to have reached the mock by now"),
    }
}

/// No attempt has reached the mock (a closed mock, whose every instance was dropped,
/// counts as none).
fn assert_no_attempt<T, U>(handle: &mut mock::Handle<T, U>, when: &str) {
    if let Poll::Ready(Some(_)) = handle.poll_request() {
        panic!("no attempt expected {when}, got one");
    }
}

/// Advances the clock to 1 ms before `delay` (nothing may arrive), then to `delay` (the
/// retry must arrive), driving `fut` at each step, and returns the retry.
async fn expect_retry_after<F, T, U>(
    fut: &mut task::Spawn<F>,
    handle: &mut mock::Handle<T, U>,
    delay: Duration,
) -> (T, mock::SendResponse<U>)
where
    F: Future,
    F::Output: Debug,
{
    advance(delay - ms(1)).await;
    assert_pending!(fut.poll());
    assert_no_attempt(handle, &format!("1 ms before {delay:?}"));
    advance(ms(1)).await;
    assert_pending!(fut.poll());
    take_attempt(handle)
}

mod end_to_end;
mod requests;
mod services;
mod statuses;
mod transport;
