//! Per-request overrides (`RetryOverride` in the request's extensions), a classifier of
//! another API's contract, and limits shared between two policies: through the tower layer
//! over `service_fn` (paused clock), over hyper-util's client, and the reqwest middleware.
//!
//! This file holds the policies and the recording inner service the tests share; the tests
//! are in `per_request` (overrides for one request), `classifier` (a classifier for another
//! API), `shared_limits` (one `Limits` for two policies, and two edge cases) and `outcomes`
//! (outcomes are never lost, and nothing is read that cannot matter).
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

fn fast() -> RetryPolicyBuilder {
    RetryPolicy::builder()
        .max_retries(3)
        .base_delay(Duration::from_millis(10))
        .max_delay(Duration::from_millis(20))
        .jitter(Jitter::None)
}

mod classifier;
mod outcomes;
mod per_request;
mod shared_limits;
