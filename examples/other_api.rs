//! The engine for an API that is not TelEcho: `cargo run --example other_api`.
//!
//! "Acme" rate limits with its own headers: a 429 says how long to wait either in
//! milliseconds (`retry-after-ms: 300`) or as the Unix time its window resets
//! (`x-ratelimit-reset: 1764070000`), and its 503s carry no wait at all. Its callers mark
//! requests that must never be repeated with `x-acme-once`. [`AcmeClassifier`] implements
//! [`Classifier`] for that contract; everything else (backoff, budget, cooldown, deadline,
//! both adapters) is the crate's.
//!
//! A loopback Acme mock answers the first request of each path with a 429 (one form each),
//! then 200. The example sends through the reqwest middleware and the tower layer over
//! hyper-util, checks that each retry waited as Acme said, and exits non-zero otherwise.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use telecho_retry::classify::{Classifier, Decision, Outcome, RequestView};
use telecho_retry::{Jitter, RetryInfo, RetryPolicy, TelEchoRetry};
use tokio::net::TcpListener;
use tower::{ServiceBuilder, ServiceExt};

/// Acme's contract as a classifier.
#[derive(Debug)]
struct AcmeClassifier;

impl AcmeClassifier {
    /// How long a 429 asks to wait, from `retry-after-ms` or `x-ratelimit-reset`.
    fn wait(headers: &http::HeaderMap) -> Option<Duration> {
        let number = |name: &str| -> Option<u64> { headers.get(name)?.to_str().ok()?.parse().ok() };
        if let Some(ms) = number("retry-after-ms") {
            return Some(Duration::from_millis(ms));
        }
        let reset = UNIX_EPOCH + Duration::from_secs(number("x-ratelimit-reset")?);
        // A reset in the past: no wait (the backoff floor still applies).
        Some(reset.duration_since(SystemTime::now()).unwrap_or_default())
    }
}

impl Classifier for AcmeClassifier {
    fn classify(&self, request: &RequestView<'_>, outcome: &Outcome<'_>) -> Decision {
        if request
            .headers()
            .is_some_and(|h| h.contains_key("x-acme-once"))
        {
            return Decision::Fatal;
        }
        match *outcome {
            Outcome::Response {
                status, headers, ..
            } if status == StatusCode::TOO_MANY_REQUESTS => {
                Self::wait(headers).map_or(Decision::Backoff, Decision::RetryAfter)
            }
            Outcome::Response { status, .. } if status.is_server_error() => Decision::Backoff,
            Outcome::Response { .. } => Decision::Accept,
            // Acme's writes are idempotent only with a key; the engine says which.
            Outcome::Transport { kind, idempotent } if idempotent || !kind.may_have_been_sent() => {
                Decision::Backoff
            }
            // Any kind of outcome a later version adds: do not retry what is not understood.
            _ => Decision::Fatal,
        }
    }
}

/// The Acme mock: the first request of each path gets `first`, the rest 200.
async fn acme_mock() -> (SocketAddr, Arc<Mutex<Vec<(String, Instant)>>>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let log: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let seen = Arc::clone(&log);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = Arc::clone(&log);
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let path = req.uri().path().to_owned();
                let first = {
                    let mut log = log.lock().expect("log");
                    let first = !log.iter().any(|(p, _)| *p == path);
                    log.push((path.clone(), Instant::now()));
                    first
                };
                async move {
                    let mut resp = Response::builder();
                    if first {
                        resp = resp.status(429);
                        resp = if path.ends_with("/ms") {
                            resp.header("retry-after-ms", "300")
                        } else {
                            let reset = SystemTime::now() + Duration::from_secs(1);
                            let secs = reset.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                            resp.header("x-ratelimit-reset", secs.to_string())
                        };
                    }
                    Ok::<_, Infallible>(
                        resp.body(Full::new(Bytes::from_static(b"{}")))
                            .expect("response"),
                    )
                }
            });
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), svc));
        }
    });
    (addr, seen)
}

/// The time between the first two requests the mock saw on `path`.
fn gap(log: &Mutex<Vec<(String, Instant)>>, path: &str) -> Option<Duration> {
    let log = log.lock().expect("log");
    let mut at = log.iter().filter(|(p, _)| p == path).map(|(_, t)| *t);
    let (first, second) = (at.next()?, at.next()?);
    Some(second - first)
}

#[tokio::main]
async fn main() -> ExitCode {
    let (addr, log) = acme_mock().await;
    let policy = RetryPolicy::builder()
        .classifier(AcmeClassifier)
        .max_retries(2)
        .base_delay(Duration::from_millis(50))
        .jitter(Jitter::None)
        .retry_after_spread(Duration::ZERO)
        .build();
    let retry = TelEchoRetry::new(policy);
    let reqwest = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(retry.clone())
        .build();
    let hyper = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let tower = ServiceBuilder::new().layer(retry).service(hyper);

    let mut failures = Vec::new();
    let mut check = |what: &str, ok: bool| {
        println!("  [{}] {what}", if ok { "ok" } else { "MISMATCH" });
        if !ok {
            failures.push(what.to_owned());
        }
    };

    println!("reqwest middleware, 429 with retry-after-ms: 300");
    let url = format!("http://{addr}/reqwest/ms");
    match reqwest.get(&url).send().await {
        Ok(resp) => {
            let info = RetryInfo::of(resp.extensions());
            let waited = gap(&log, "/reqwest/ms").unwrap_or_default();
            println!(
                "  {} after {} attempts, waited {waited:?}",
                resp.status(),
                info.attempts()
            );
            check(
                "200 after 2 attempts",
                resp.status() == 200 && info.attempts() == 2,
            );
            check(
                "waited at least 300 ms",
                waited >= Duration::from_millis(300),
            );
        }
        Err(e) => check(&format!("request failed: {e}"), false),
    }

    println!("tower layer over hyper-util, 429 with x-ratelimit-reset one second ahead");
    let req = Request::get(format!("http://{addr}/tower/reset"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    match tower.clone().oneshot(req).await {
        Ok(resp) => {
            let info = RetryInfo::of(resp.extensions());
            let waited = gap(&log, "/tower/reset").unwrap_or_default();
            println!(
                "  {} after {} attempts, waited {waited:?}",
                resp.status(),
                info.attempts()
            );
            check(
                "200 after 2 attempts",
                resp.status() == 200 && info.attempts() == 2,
            );
            // The reset is a whole second: at most a second after the 429, never before it.
            check(
                "waited until the reset",
                waited > Duration::ZERO && waited <= Duration::from_millis(1100),
            );
        }
        Err(e) => check(&format!("request failed: {e}"), false),
    }

    println!("tower layer, a request marked x-acme-once is never repeated");
    let req = Request::get(format!("http://{addr}/tower/once/ms"))
        .header("x-acme-once", "1")
        .body(Full::new(Bytes::new()))
        .expect("request");
    match tower.oneshot(req).await {
        Ok(resp) => {
            println!(
                "  {} after {} attempt",
                resp.status(),
                RetryInfo::of(resp.extensions()).attempts()
            );
            check("the 429 handed back", resp.status() == 429);
        }
        Err(e) => check(&format!("request failed: {e}"), false),
    }

    if failures.is_empty() {
        println!("other_api: every check held");
        ExitCode::SUCCESS
    } else {
        eprintln!("other_api FAILED: {failures:?}");
        ExitCode::FAILURE
    }
}
