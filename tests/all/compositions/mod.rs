//! The engine's promises through every adapter and the usual tower stacks.
//!
//! Each promise (errors, attempt timeout and deadline, the deadline behind the cooldown,
//! readiness while held back, the cooldown above the cap, per-origin limits, the budget's
//! ratio, extensions, refused connections, client-side pacing) is written once as a generic function and run
//! through every adapter it applies to:
//!
//! - the tower layer over `tower::service_fn` on tokio's paused clock, with the inner error
//!   type `std::io::Error`, `tower::BoxError` (and, for the timers, an opaque error type
//!   the engine knows nothing about): exact timings (tests named `…_tower_service_fn_io`,
//!   `…_box`, `…_opaque`);
//! - the tower layer over hyper-util's legacy client against a loopback server, in real
//!   time with short delays (`…_tower_hyper_util`);
//! - the reqwest middleware against a loopback server (`…_reqwest_middleware`);
//!
//! and through the stacks `RetryService<ConcurrencyLimit<_>>`, `RetryService<Buffer<_>>`,
//! `Buffer<RetryService<_>>` and `Timeout<RetryService<_>>`.
//!
//! The paused-clock tests live in module `tower_service_fn`, the real-socket ones in
//! `real_sockets`: each a directory whose `mod.rs` holds its fake server or adapters and
//! the macro that stamps out one test per inner error type or adapter, and one file per
//! promise (`errors`, `timeouts`, `cooldown`, `origins`, `budget`, `stacks`, `pacing`;
//! `real_sockets::extensions` for the reqwest middleware). The helpers both use are in
//! this file. Real-socket tests are bounded by a 2 s `tokio::time::timeout`;
//! `Retry-After` is at most `1` on real sockets, or above the cap (never waited for).
#![cfg(all(feature = "tower", feature = "reqwest"))]

use crate::support;

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use http::header::RETRY_AFTER;
use http::{Extensions, Method, Request, Response, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use telecho_retry::body::ResponseBody;
use telecho_retry::classify::ClassifyError;
use telecho_retry::classify::TransportErrorKind;
use telecho_retry::limits::{Limits, Pacing, RetryBudget};
use telecho_retry::{
    Jitter, RetryError, RetryErrorKind, RetryInfo, RetryOverride, RetryPolicy, RetryPolicyBuilder,
    RetryService, StopReason, TelEchoRetry,
};
use tokio::time::{advance, Instant};
use tokio_test::{assert_pending, assert_ready};
use tower::limit::{ConcurrencyLimit, ConcurrencyLimitLayer};
use tower::timeout::error::Elapsed;
use tower::timeout::TimeoutLayer;
use tower::util::BoxCloneService;
use tower::{service_fn, BoxError, Layer, Service, ServiceBuilder, ServiceExt};

use support::{budgeted, paced, unbudgeted, Misbehave, RawServer, Reply, Server};

// ===== shared helpers =====

type Req = Request<Full<Bytes>>;
type Resp = Response<Full<Bytes>>;
/// What the retry layer hands back for an inner `Resp`.
type Out = Response<ResponseBody<Full<Bytes>>>;

const ZERO: Duration = Duration::ZERO;

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// No randomness and no budget: the 1 s, 2 s, 4 s … ladder and `Retry-After` to the ms.
fn exact() -> RetryPolicyBuilder {
    RetryPolicy::builder()
        .jitter(Jitter::None)
        .retry_after_spread(ZERO)
}

/// Like [`exact`], with a 20 ms, 40 ms, 80 ms, 100 ms … ladder for real sockets.
fn fast() -> RetryPolicyBuilder {
    exact().base_delay(ms(20)).max_delay(ms(100))
}

fn request(method: Method, uri: &str) -> Req {
    Request::builder()
        .method(method)
        .uri(uri)
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap()
}

fn get(uri: &str) -> Req {
    request(Method::GET, uri)
}

fn post(uri: &str) -> Req {
    request(Method::POST, uri)
}

/// The `RetryInfo` of a response (none attached reads as "one attempt, success").
fn info<B>(resp: &Response<B>) -> RetryInfo {
    RetryInfo::of(resp.extensions())
}

/// The `io::ErrorKind` of a `RetryError`'s inner error.
#[track_caller]
fn inner_io_kind(err: &RetryError) -> io::ErrorKind {
    err.get_inner()
        .expect("an inner error")
        .downcast_ref::<io::Error>()
        .expect("the inner error is the io::Error the service returned")
        .kind()
}

/// The `RetryError` inside a boxed error from a layer above the retry layer.
#[track_caller]
fn retry_error_in(err: &BoxError) -> &RetryError {
    RetryError::of(&**err).unwrap_or_else(|| panic!("no RetryError in {err:?}"))
}

/// Compiles only if the service's error type is the concrete `RetryError`.
fn errors_are_retry_errors<S, R>(svc: S) -> S
where
    S: Service<R, Error = RetryError>,
{
    svc
}

/// Runs a real-socket test under a 2 s bound.
async fn bounded(test: impl Future<Output = ()>) {
    bounded_for(secs(2), test).await;
}

/// Runs a real-socket test under `bound`.
async fn bounded_for(bound: Duration, test: impl Future<Output = ()>) {
    tokio::time::timeout(bound, test)
        .await
        .unwrap_or_else(|_| panic!("a real-socket test finishes within {bound:?}"));
}

/// `floor(100 · ratio)`: the retries 100 requests buy.
fn share_of_100(ratio: f32) -> i64 {
    (100.0 * f64::from(ratio)).floor() as i64
}

// ===== (a) the tower layer over service_fn, paused clock =====

mod tower_service_fn;

// ===== (b) hyper-util's client and (c) the reqwest middleware, real sockets =====

mod real_sockets;
