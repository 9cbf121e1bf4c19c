//! Adaptive pacing (`Pacing::adaptive`) against token-bucket servers: through the tower
//! layer on tokio's paused clock (a limit that steps 50 → 20 → 50 per second), through the
//! reqwest middleware against a loopback server (module `middleware`), and a server that
//! states its quota in `RateLimit` headers.
//!
//! This file holds the servers and the closed-loop callers the tests share (`Bucket` and
//! `answer` serve `fleet_adaptive` too); the tests are in `stepping` (the stepping limit),
//! `quota` (servers that state their quota), `middleware`, `fixed_window` (a fixed window
//! with an exact `Retry-After`), `other_consumer` (another consumer taking half the quota
//! midway) and `burst` (a burst after the rate was cut to its floor).
#![cfg(feature = "tower")]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use telecho_retry::limits::{Limits, Pacing};
use telecho_retry::{RetryPolicy, TelEchoRetry};
use tokio::time::Instant;
use tower::{service_fn, ServiceExt};

type Req = Request<Full<Bytes>>;

/// A token bucket: `rate(t)` tokens per second, holding a tenth of a second's worth.
pub(crate) struct Bucket {
    start: Instant,
    rate: fn(Duration) -> f64,
    tokens: f64,
    last: Duration,
}

impl Bucket {
    pub(crate) fn new(start: Instant, rate: fn(Duration) -> f64) -> Self {
        Bucket {
            start,
            rate,
            tokens: rate(Duration::ZERO) / 10.0,
            last: Duration::ZERO,
        }
    }

    /// Whether a request arriving now is served (a token taken).
    pub(crate) fn admit(&mut self) -> bool {
        let now = self.start.elapsed();
        let rate = (self.rate)(now);
        let dt = (now - self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(rate / 10.0);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Every send the server answered: when (since the start) and whether it was served.
type Log = Arc<Mutex<Vec<(Duration, bool)>>>;

/// Served share of what the limit allows, and share of sends answered 429, in each phase
/// `(from, to, limit)` after its first `settle`.
fn shares(log: &[(Duration, bool)], phases: &[(u64, u64, f64)], settle: u64) -> Vec<(f64, f64)> {
    phases
        .iter()
        .map(|&(from, to, limit)| {
            let window = Duration::from_secs(from + settle)..Duration::from_secs(to);
            let sends: Vec<bool> = log
                .iter()
                .filter(|(at, _)| window.contains(at))
                .map(|(_, ok)| *ok)
                .collect();
            let served = sends.iter().filter(|ok| **ok).count() as f64;
            let limited = (sends.len() as f64 - served) / (sends.len() as f64).max(1.0);
            (served / (limit * (to - from - settle) as f64), limited)
        })
        .collect()
}

/// 16 closed-loop callers through `svc` until `end`, each sending `request()` again as soon as
/// the last one ended.
async fn sixteen_closed_loop<S>(svc: S, request: fn() -> Req, end: Instant)
where
    S: tower::Service<Req> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
    S::Error: Send,
{
    let callers: Vec<_> = (0..16)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move {
                while Instant::now() < end {
                    let _ = svc.clone().oneshot(request()).await;
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await.unwrap();
    }
}

fn post_call() -> Req {
    Request::post("http://api.example/v1/calls")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap()
}

fn get_calls() -> Req {
    Request::get("http://api.example/v1/calls")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// A test server's answer: 200, or 429 with `Retry-After: retry_after`; either with, if
/// given, the quota left (`RateLimit: "default";r=<left>;t=<retry_after>`).
pub(crate) fn answer(ok: bool, retry_after: u64, left: Option<u64>) -> Response<Full<Bytes>> {
    let mut resp = Response::builder().status(if ok { 200 } else { 429 });
    if let Some(left) = left {
        resp = resp.header("ratelimit", format!("\"default\";r={left};t={retry_after}"));
    }
    if !ok {
        resp = resp.header("retry-after", retry_after.to_string());
    }
    resp.body(Full::new(Bytes::new())).unwrap()
}

/// 16 closed-loop callers through `limits` for 60 s against a token bucket of `rate(t)`
/// per second (20 ms a round trip, `Retry-After: 1` on a 429): every send, when and
/// whether it was served.
async fn bucket_log(limits: Limits, rate: fn(Duration) -> f64) -> Vec<(Duration, bool)> {
    let start = Instant::now();
    let bucket = Arc::new(Mutex::new(Bucket::new(start, rate)));
    let log = Log::default();
    let server = {
        let log = Arc::clone(&log);
        service_fn(move |_req: Req| {
            let ok = bucket.lock().unwrap().admit();
            log.lock().unwrap().push((start.elapsed(), ok));
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok::<_, Infallible>(answer(ok, 1, None))
            }
        })
    };
    let svc = tower::ServiceBuilder::new()
        .layer(TelEchoRetry::new(RetryPolicy::default()).with_limits(limits))
        .service(server);
    sixteen_closed_loop(svc, post_call, start + Duration::from_secs(60)).await;
    let log = log.lock().unwrap().clone();
    log
}

/// A fixed window of 10 s allowing 200, whose 429s say `Retry-After` until the window ends
/// (as TelEcho's per-minute limits do).
#[derive(Clone, Copy)]
struct Window {
    /// How many of window `n` another consumer of the key takes as it opens.
    taken: fn(u64) -> u64,
    /// Whether every answer states the quota left (`RateLimit`).
    states_quota: bool,
}

impl Window {
    const OURS: Window = Window {
        taken: |_| 0,
        states_quota: false,
    };
    const STATES_QUOTA: Window = Window {
        taken: |_| 0,
        states_quota: true,
    };
}

/// 16 closed-loop callers through `limits` for `secs` against `window`: every send, when
/// and whether it was served.
async fn fixed_window_log(limits: Limits, window: Window, secs: u64) -> Vec<(Duration, bool)> {
    let start = Instant::now();
    let count = Arc::new(Mutex::new((0u64, 0u64)));
    let log = Log::default();
    let server = {
        let log = Arc::clone(&log);
        service_fn(move |_req: Req| {
            let now = start.elapsed();
            let n = now.as_secs() / 10;
            let mut w = count.lock().unwrap();
            if w.0 != n {
                *w = (n, (window.taken)(n));
            }
            let ok = w.1 < 200;
            w.1 += u64::from(ok);
            let left = window.states_quota.then(|| 200 - w.1);
            let reset = ((n + 1) * 10).saturating_sub(now.as_secs()).max(1);
            log.lock().unwrap().push((now, ok));
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok::<_, Infallible>(answer(ok, reset, left))
            }
        })
    };
    let svc = tower::ServiceBuilder::new()
        .layer(TelEchoRetry::new(RetryPolicy::default()).with_limits(limits))
        .service(server);
    sixteen_closed_loop(svc, get_calls, start + Duration::from_secs(secs)).await;
    let log = log.lock().unwrap().clone();
    log
}

mod burst;
mod fixed_window;
mod other_consumer;
mod quota;
mod stepping;

#[cfg(feature = "reqwest")]
mod middleware;
