//! The mock TelEcho server: one API key's limit, and every attempt it saw.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::clock::micros_since;
use crate::spec::Config;
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

/// The fixed-window limit of one API key, and every attempt seen.
pub(crate) struct Limiter {
    pub(crate) limit: u32,
    pub(crate) window: Duration,
    /// Where windows are counted from: the run's start (set when the run starts).
    pub(crate) epoch: Instant,
    pub(crate) current: i64,
    pub(crate) admitted: u32,
    pub(crate) hits: Vec<Hit>,
}

impl Limiter {
    /// Admits or rejects one attempt arriving now; on a rejection, the `Retry-After`
    /// seconds to the window's end, rounded up (at least 1).
    pub(crate) fn arrive(&mut self, now: Instant) -> Result<(), u64> {
        let at_us = micros_since(self.epoch, now);
        let window_us = i64::try_from(self.window.as_micros().max(1)).unwrap_or(i64::MAX);
        let index = at_us.div_euclid(window_us);
        if index != self.current {
            self.current = index;
            self.admitted = 0;
        }
        let result = if self.admitted < self.limit {
            self.admitted += 1;
            Ok(())
        } else {
            let left_us = (index + 1) * window_us - at_us;
            Err(u64::try_from(left_us)
                .unwrap_or(1)
                .div_ceil(1_000_000)
                .max(1))
        };
        self.hits.push(Hit {
            at_us,
            answer: if result.is_ok() {
                Answer::Ok
            } else {
                Answer::TooMany
            },
        });
        result
    }
}

pub(crate) struct MockServer {
    pub(crate) addr: SocketAddr,
    pub(crate) limiter: Arc<Mutex<Limiter>>,
    pub(crate) accept: tokio::task::JoinHandle<()>,
}

impl MockServer {
    pub(crate) async fn start(cfg: &Config) -> Result<MockServer, String> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("mock server: bind 127.0.0.1:0: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("mock server: local address: {e}"))?;
        let limiter = Arc::new(Mutex::new(Limiter {
            limit: cfg.limit,
            window: cfg.window,
            epoch: Instant::now(),
            current: i64::MIN,
            admitted: 0,
            hits: Vec::new(),
        }));
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

    /// Counts windows from `epoch` on, and forgets earlier attempts (there are none).
    pub(crate) fn start_run(&self, epoch: Instant) {
        if let Ok(mut l) = self.limiter.lock() {
            l.epoch = epoch;
            l.current = i64::MIN;
            l.admitted = 0;
            l.hits.clear();
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
            http::HeaderValue::from_static("application/json"),
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
        Err(_) => Err(1),
    };
    Ok(match verdict {
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
    })
}
