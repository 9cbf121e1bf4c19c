//! Load protection (retry budget, shared cooldown, deadline, attempt timeout, idempotency
//! keys, attempt numbers): through the tower layer on tokio's paused clock, and through the
//! reqwest middleware against a loopback server (module `middleware`), one implementation.
//!
//! This file holds the mock server and the helpers; the paused-clock tests are in one
//! submodule per promise: `cooldown` (the shared cooldown), `budget` (the retry budget),
//! `timeouts` (the deadline, the attempt timeout) and `keys` (idempotency keys, attempt
//! numbers).
#![cfg(feature = "tower")]

#[cfg(feature = "reqwest")]
use crate::support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use telecho_retry::body::ResponseBody;
use telecho_retry::limits::{Limits, RetryBudget};
use telecho_retry::{
    AttemptNumber, Jitter, RetryErrorKind, RetryInfo, RetryPolicy, StopReason, TelEchoRetry,
};
use tokio::time::Instant;
use tower::{service_fn, BoxError, Service, ServiceExt};

type Req = Request<Full<Bytes>>;

/// What the mock server saw of one attempt.
#[derive(Clone, Debug)]
struct Seen {
    at: Duration,
    method: Method,
    key: Option<String>,
    attempt_ext: Option<u32>,
    attempt_header: Option<String>,
}

#[derive(Clone)]
struct Server {
    start: Instant,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    fn new() -> Self {
        Server {
            start: Instant::now(),
            seen: Arc::default(),
        }
    }

    fn record(&self, req: &Req) -> (Duration, usize) {
        let seen = Seen {
            at: self.start.elapsed(),
            method: req.method().clone(),
            key: header(req, "idempotency-key"),
            attempt_ext: req.extensions().get::<AttemptNumber>().map(|a| a.0),
            attempt_header: header(req, "x-retry-attempt"),
        };
        let at = seen.at;
        let mut all = self.seen.lock().unwrap();
        all.push(seen);
        (at, all.len())
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn header(req: &Req, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

fn status(s: u16) -> Response<Full<Bytes>> {
    Response::builder()
        .status(s)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn request(method: Method) -> Req {
    Request::builder()
        .method(method)
        .uri("http://127.0.0.1/v1/calls")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap()
}

fn exact() -> telecho_retry::RetryPolicyBuilder {
    RetryPolicy::builder()
        .jitter(Jitter::None)
        .retry_after_spread(Duration::ZERO)
}

/// A server that records every request and always answers `code`.
fn always(
    server: &Server,
    code: u16,
) -> impl Service<Req, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send>
       + Clone
       + Send
       + 'static {
    let srv = server.clone();
    service_fn(move |req: Req| {
        srv.record(&req);
        async move { Ok::<_, Infallible>(status(code)) }
    })
}

/// A server that answers 429 with `Retry-After: 5` until 5 s, then 200.
fn limited_for_5s(
    server: &Server,
) -> impl Service<Req, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send>
       + Clone
       + Send
       + 'static {
    let srv = server.clone();
    service_fn(move |req: Req| {
        let (at, _) = srv.record(&req);
        let resp = if at < Duration::from_secs(5) {
            Response::builder()
                .status(429)
                .header("retry-after", "5")
                .body(Full::new(Bytes::new()))
                .unwrap()
        } else {
            status(200)
        };
        async move { Ok::<_, Infallible>(resp) }
    })
}

/// Starts 100 GETs, one every 10 ms, through `policy`; waits for all, asserts 200s; returns
/// how many 429s the server sent.
async fn hundred_staggered_gets(server: &Server, retry: TelEchoRetry) -> usize {
    let svc = tower::ServiceBuilder::new()
        .layer(retry)
        .service(limited_for_5s(server));
    let mut tasks = Vec::new();
    for _ in 0..100 {
        tasks.push(tokio::spawn(svc.clone().oneshot(request(Method::GET))));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().status(), StatusCode::OK);
    }
    server
        .seen()
        .iter()
        .filter(|s| s.at < Duration::from_secs(5))
        .count()
}

/// `Layer::layer` without importing the trait at every call site.
trait LayerOver {
    fn layer_over<S>(&self, inner: S) -> telecho_retry::RetryService<S>;
}

impl LayerOver for TelEchoRetry {
    fn layer_over<S>(&self, inner: S) -> telecho_retry::RetryService<S> {
        tower::Layer::layer(self, inner)
    }
}

mod budget;
mod cooldown;
mod keys;
mod timeouts;

#[cfg(feature = "reqwest")]
mod middleware;
