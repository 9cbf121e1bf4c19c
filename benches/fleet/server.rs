//! The mock TelEcho server: one API key's limit, and every attempt it saw.
//!
//! Two shapes of limit: fixed windows counted from the run's start (TelEcho's, answering
//! `Retry-After` to the window's end, optionally with the quota in headers), and a token
//! bucket whose rate steps over time (answering `Retry-After: 1`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::clock::micros_since;
use crate::API_KEY;

/// What the server answered one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    Ok,
    TooMany,
    /// Anything else (a bad key): never expected.
    Other,
}

/// One attempt as the server saw it: microseconds after the run's start, and the answer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hit {
    pub(crate) at_us: i64,
    pub(crate) answer: Answer,
}

/// The limit the server enforces.
#[derive(Clone, Debug)]
pub(crate) enum Shape {
    /// `limit` requests per fixed `window`, windows counted from the run's start; past it,
    /// 429 with `Retry-After` to the window's end (whole seconds, rounded up). With
    /// `quota_headers`, every answer states the quota (IETF `RateLimit-Policy` and
    /// `RateLimit`, and `X-RateLimit-Limit`/`-Remaining`/`-Reset` in seconds).
    FixedWindow {
        limit: u32,
        window: Duration,
        quota_headers: bool,
    },
    /// A token bucket refilled at a rate that steps over time (`(from, requests per
    /// second)`, the first from 0), of capacity a tenth of the current rate (at least 1);
    /// past it, 429 with `Retry-After: 1`.
    TokenBucket { steps: Vec<(Duration, f64)> },
}

impl Shape {
    /// The token bucket's rate at `t` after the start, per second (0 for fixed windows).
    pub(crate) fn rate_at(&self, t: Duration) -> f64 {
        match self {
            Shape::FixedWindow { .. } => 0.0,
            Shape::TokenBucket { steps } => steps
                .iter()
                .take_while(|(from, _)| *from <= t)
                .last()
                .map_or(0.0, |(_, r)| *r),
        }
    }

    /// The requests the token bucket's rate allows from `a` to `b` (its integral).
    pub(crate) fn allowed(&self, a: Duration, b: Duration) -> f64 {
        let Shape::TokenBucket { steps } = self else {
            return 0.0;
        };
        let mut sum = 0.0;
        for (i, (from, rate)) in steps.iter().enumerate() {
            let to = steps.get(i + 1).map_or(Duration::MAX, |s| s.0);
            let (lo, hi) = ((*from).max(a), to.min(b));
            if hi > lo {
                sum += rate * (hi - lo).as_secs_f64();
            }
        }
        sum
    }
}

/// What the limit says to one attempt.
struct Verdict {
    /// `Err(retry_after_secs)` on a 429.
    result: Result<(), u64>,
    /// The quota to state: `(limit, remaining, reset_secs, window_secs)`.
    quota: Option<(u32, u32, u64, u64)>,
}

/// One API key's limit, and every attempt seen.
pub(crate) struct Limiter {
    shape: Shape,
    /// Where time is counted from: the run's start (set when the run starts).
    epoch: Instant,
    /// Fixed windows: the current window and what it admitted.
    current: i64,
    admitted: u32,
    /// Token bucket: tokens, as of `last_us`.
    tokens: f64,
    last_us: i64,
    hits: Vec<Hit>,
}

/// Whole seconds in `us` microseconds, rounded up, at least 1.
fn ceil_secs(us: i64) -> u64 {
    u64::try_from(us).unwrap_or(1).div_ceil(1_000_000).max(1)
}

fn at(us: i64) -> Duration {
    Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

impl Limiter {
    fn new(shape: Shape) -> Limiter {
        let mut l = Limiter {
            shape,
            epoch: Instant::now(),
            current: i64::MIN,
            admitted: 0,
            tokens: 0.0,
            last_us: 0,
            hits: Vec::new(),
        };
        l.reset(Instant::now());
        l
    }

    /// Counts from `epoch` on, with a full bucket and no attempt seen.
    fn reset(&mut self, epoch: Instant) {
        self.epoch = epoch;
        self.current = i64::MIN;
        self.admitted = 0;
        self.tokens = self.capacity(Duration::ZERO);
        self.last_us = 0;
        self.hits.clear();
    }

    fn capacity(&self, t: Duration) -> f64 {
        (self.shape.rate_at(t) / 10.0).max(1.0)
    }

    /// Admits or rejects one attempt arriving now.
    fn arrive(&mut self, now: Instant) -> Verdict {
        let at_us = micros_since(self.epoch, now);
        let verdict = match self.shape {
            Shape::FixedWindow {
                limit,
                window,
                quota_headers,
            } => {
                let window_us = i64::try_from(window.as_micros().max(1)).unwrap_or(i64::MAX);
                let index = at_us.div_euclid(window_us);
                if index != self.current {
                    self.current = index;
                    self.admitted = 0;
                }
                let ok = self.admitted < limit;
                if ok {
                    self.admitted += 1;
                }
                let reset = ceil_secs((index + 1) * window_us - at_us);
                Verdict {
                    result: if ok { Ok(()) } else { Err(reset) },
                    quota: quota_headers
                        .then(|| (limit, limit - self.admitted, reset, ceil_secs(window_us))),
                }
            }
            Shape::TokenBucket { .. } => {
                let now_us = at_us.max(self.last_us);
                let added = self.shape.allowed(at(self.last_us), at(now_us));
                self.tokens = (self.tokens + added).min(self.capacity(at(now_us)));
                self.last_us = now_us;
                let ok = self.tokens >= 1.0;
                if ok {
                    self.tokens -= 1.0;
                }
                Verdict {
                    result: if ok { Ok(()) } else { Err(1) },
                    quota: None,
                }
            }
        };
        self.hits.push(Hit {
            at_us,
            answer: if verdict.result.is_ok() {
                Answer::Ok
            } else {
                Answer::TooMany
            },
        });
        verdict
    }
}

pub(crate) struct MockServer {
    pub(crate) addr: SocketAddr,
    limiter: Arc<Mutex<Limiter>>,
    accept: tokio::task::JoinHandle<()>,
}

impl MockServer {
    pub(crate) async fn start(shape: Shape) -> Result<MockServer, String> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("mock server: bind 127.0.0.1:0: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("mock server: local address: {e}"))?;
        let limiter = Arc::new(Mutex::new(Limiter::new(shape)));
        let shared = Arc::clone(&limiter);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    // Out of descriptors, say: wait a little rather than spin.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let limiter = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(Arc::clone(&limiter), req));
                    // A client closing its connection is not the server's problem.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(MockServer {
            addr,
            limiter,
            accept,
        })
    }

    /// Counts from `epoch` on, and forgets earlier attempts (there are none).
    pub(crate) fn start_run(&self, epoch: Instant) {
        if let Ok(mut l) = self.limiter.lock() {
            l.reset(epoch);
        }
    }

    pub(crate) fn hits(&self) -> Vec<Hit> {
        self.limiter
            .lock()
            .map(|l| l.hits.clone())
            .unwrap_or_default()
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

pub(crate) fn envelope(kind: &str, code: &str, message: &str) -> Full<Bytes> {
    Full::new(Bytes::from(format!(
        r#"{{"error":{{"type":"{kind}","code":"{code}","message":"{message}"}}}}"#
    )))
}

pub(crate) async fn answer(
    limiter: Arc<Mutex<Limiter>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let authorized = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        == Some(API_KEY);
    let json = |status: StatusCode, body: Full<Bytes>| {
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    };
    if !authorized {
        if let Ok(mut l) = limiter.lock() {
            let at_us = micros_since(l.epoch, Instant::now());
            l.hits.push(Hit {
                at_us,
                answer: Answer::Other,
            });
        }
        return Ok(json(
            StatusCode::UNAUTHORIZED,
            envelope(
                "authentication_error",
                "invalid_api_key",
                "The API key provided is invalid.",
            ),
        ));
    }
    let verdict = match limiter.lock() {
        Ok(mut l) => l.arrive(Instant::now()),
        Err(_) => Verdict {
            result: Err(1),
            quota: None,
        },
    };
    let mut resp = match verdict.result {
        Ok(()) => json(
            StatusCode::OK,
            Full::new(Bytes::from_static(br#"{"data":[]}"#)),
        ),
        Err(retry_after) => {
            let mut resp = json(
                StatusCode::TOO_MANY_REQUESTS,
                envelope(
                    "rate_limit_error",
                    "rate_limit_per_minute",
                    "Rate limit exceeded: too many requests this minute.",
                ),
            );
            resp.headers_mut()
                .insert(http::header::RETRY_AFTER, retry_after.into());
            resp
        }
    };
    if let Some((limit, remaining, reset, window)) = verdict.quota {
        let headers = resp.headers_mut();
        let mut put = |name: &'static str, value: String| {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        };
        put(
            "ratelimit-policy",
            format!("\"default\";q={limit};w={window}"),
        );
        put("ratelimit", format!("\"default\";r={remaining};t={reset}"));
        put("x-ratelimit-limit", limit.to_string());
        put("x-ratelimit-remaining", remaining.to_string());
        put("x-ratelimit-reset", reset.to_string());
    }
    Ok(resp)
}
