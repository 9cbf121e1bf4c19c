//! Load protection (retry budget, shared cooldown, deadline, attempt timeout, idempotency
//! keys, attempt numbers): through the tower layer on tokio's paused clock, and through the
//! reqwest middleware against a loopback server (module `middleware`), one implementation.
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

#[tokio::test(start_paused = true)]
async fn one_429_holds_back_100_concurrent_requests() {
    let server = Server::new();
    let limited = hundred_staggered_gets(&server, TelEchoRetry::default()).await;
    assert!(limited <= 3, "the server saw {limited} 429s");
    let seen = server.seen();
    assert_eq!(seen.len() - limited, 100, "every request succeeded once");
    // Nobody came back before the server said, nor long after: adaptive pacing, on since
    // the 429, spreads the 100 over the next 2 s (slow start from the rate it measured).
    let after: Vec<Duration> = seen
        .iter()
        .map(|s| s.at)
        .filter(|at| *at >= Duration::from_secs(5))
        .collect();
    assert!(
        after[10] - after[0] >= Duration::from_millis(500),
        "spread: {after:?}"
    );
    for s in seen.iter().filter(|s| s.at >= Duration::from_secs(5)) {
        assert!(s.at <= Duration::from_secs(7), "{:?}", s.at);
    }
}

#[tokio::test(start_paused = true)]
async fn without_shared_cooldown_every_request_collects_its_own_429() {
    let server = Server::new();
    let limits = Limits::builder()
        .shared_cooldown(false)
        .without_pacing()
        .build();
    let retry = TelEchoRetry::default().with_limits(limits);
    assert_eq!(hundred_staggered_gets(&server, retry).await, 100);
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_503s_stops_at_the_budget_and_resumes_as_it_refills() {
    let server = Server::new();
    let inner = always(&server, 503);
    // No share of traffic, a floor of 1 retry per second over 10 s: 10 retries per window.
    let policy = exact()
        .max_retries(3)
        .base_delay(Duration::from_millis(100))
        .build();
    let svc = tower::ServiceBuilder::new()
        .layer(crate::support::budgeted(
            policy,
            RetryBudget::new(Duration::from_secs(10), 1, 0.0),
        ))
        .service(inner);

    let first = flood(svc.clone()).await;
    let retries: u32 = first.iter().map(|r| r.0).sum();
    assert_eq!(retries, 10, "the budget allows 10 retries in the window");
    assert!(first.iter().any(|r| r.1 == StopReason::Budget));
    assert_eq!(server.seen().len(), 30);

    // Still inside the window: no retries at all.
    let second = flood(svc.clone()).await;
    assert!(
        second.iter().all(|r| r == &(0, StopReason::Budget)),
        "{second:?}"
    );

    // The window slides past: the budget has refilled.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let third = flood(svc).await;
    assert_eq!(third.iter().map(|r| r.0).sum::<u32>(), 10);
}

/// Sends 20 concurrent GETs; returns each one's (retries, stop reason).
async fn flood<S>(svc: S) -> Vec<(u32, StopReason)>
where
    S: Service<Req, Response = Response<ResponseBody<Full<Bytes>>>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug + Send,
{
    let mut tasks = Vec::new();
    for _ in 0..20 {
        tasks.push(tokio::spawn(svc.clone().oneshot(request(Method::GET))));
    }
    let mut reasons = Vec::new();
    for t in tasks {
        let resp = t.await.unwrap().unwrap();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        let info = *resp.extensions().get::<RetryInfo>().unwrap();
        reasons.push((info.retries(), info.stop_reason().unwrap()));
    }
    reasons
}

#[tokio::test(start_paused = true)]
async fn deadline_returns_the_last_outcome_instead_of_a_pointless_sleep() {
    let server = Server::new();
    let inner = always(&server, 503);
    let policy = exact()
        .max_retries(10)
        .deadline(Duration::from_secs(10))
        .build();
    let svc = TelEchoRetry::new(policy).layer_over(inner);
    let start = Instant::now();
    let resp = svc.oneshot(request(Method::GET)).await.unwrap();
    // Attempts at 0, 1, 3, 7 s; the next delay (8 s) would end at 15 s > 10 s.
    assert_eq!(start.elapsed(), Duration::from_secs(7));
    let at: Vec<Duration> = server.seen().iter().map(|s| s.at).collect();
    assert_eq!(at, [0, 1, 3, 7].map(Duration::from_secs));
    let info = resp.extensions().get::<RetryInfo>().unwrap();
    assert_eq!(info.stop_reason(), Some(StopReason::Deadline));
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(start_paused = true)]
async fn deadline_cuts_a_hanging_attempt_to_the_millisecond() {
    let inner = service_fn(|_req: Req| async {
        std::future::pending::<()>().await;
        Ok::<Response<Full<Bytes>>, BoxError>(status(200))
    });
    let policy = exact().deadline(Duration::from_millis(2500)).build();
    let svc = TelEchoRetry::new(policy).layer_over(inner);
    let start = Instant::now();
    let err = svc.oneshot(request(Method::POST)).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(2500));
    assert_eq!(err.kind(), RetryErrorKind::Deadline);
    assert_eq!(err.info().attempts(), 1);
    assert_eq!(err.stop_reason(), Some(StopReason::Deadline));
}

#[tokio::test(start_paused = true)]
async fn attempt_timeout_retries_idempotent_requests_only() {
    let server = Server::new();
    let srv = server.clone();
    let inner = service_fn(move |req: Req| {
        let (_, n) = srv.record(&req);
        async move {
            if n == 1 {
                std::future::pending::<()>().await;
            }
            Ok::<_, BoxError>(status(200))
        }
    });
    let policy = exact().attempt_timeout(Duration::from_secs(2)).build();
    let svc = TelEchoRetry::new(policy.clone()).layer_over(inner.clone());
    let resp = svc.oneshot(request(Method::GET)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let at: Vec<Duration> = server.seen().iter().map(|s| s.at).collect();
    assert_eq!(
        at,
        [0, 3].map(Duration::from_secs),
        "timeout at 2 s + 1 s backoff"
    );

    let server = Server::new();
    let srv = server.clone();
    let hanging_post = service_fn(move |req: Req| {
        srv.record(&req);
        async move {
            std::future::pending::<()>().await;
            Ok::<_, BoxError>(status(200))
        }
    });
    let svc = TelEchoRetry::new(policy).layer_over(hanging_post);
    let err = svc.oneshot(request(Method::POST)).await.unwrap_err();
    assert_eq!(err.kind(), RetryErrorKind::AttemptTimeout);
    assert_eq!(err.info().attempts(), 1);
    assert_eq!(
        server.seen().len(),
        1,
        "a POST that may have arrived is not resent"
    );
}

#[tokio::test(start_paused = true)]
async fn generated_idempotency_key_is_stable_across_attempts_and_absent_from_gets() {
    let server = Server::new();
    let srv = server.clone();
    let inner = service_fn(move |req: Req| {
        let (_, n) = srv.record(&req);
        let s = if n % 3 == 0 { 200 } else { 503 };
        async move { Ok::<_, Infallible>(status(s)) }
    });
    let policy = exact().generate_idempotency_keys(true).build();
    let mut svc = TelEchoRetry::new(policy).layer_over(inner);

    let resp = svc
        .ready()
        .await
        .unwrap()
        .call(request(Method::POST))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = svc
        .ready()
        .await
        .unwrap()
        .call(request(Method::GET))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut keyed = request(Method::POST);
    keyed
        .headers_mut()
        .insert("idempotency-key", "caller-key".parse().unwrap());
    svc.ready().await.unwrap().call(keyed).await.unwrap();

    let seen = server.seen();
    assert_eq!(seen.len(), 9);
    let post_keys: Vec<&str> = seen[..3]
        .iter()
        .map(|s| s.key.as_deref().unwrap())
        .collect();
    assert_eq!(post_keys[0].len(), 36, "a UUID: {}", post_keys[0]);
    assert!(
        post_keys.iter().all(|k| *k == post_keys[0]),
        "{post_keys:?}"
    );
    assert!(seen[3..6]
        .iter()
        .all(|s| s.method == Method::GET && s.key.is_none()));
    assert!(seen[6..]
        .iter()
        .all(|s| s.key.as_deref() == Some("caller-key")));
}

#[tokio::test(start_paused = true)]
async fn a_generated_key_makes_a_post_timeout_retryable() {
    let server = Server::new();
    let srv = server.clone();
    let inner = service_fn(move |req: Req| {
        let (_, n) = srv.record(&req);
        async move {
            if n == 1 {
                return Err::<Response<Full<Bytes>>, BoxError>(Box::new(std::io::Error::from(
                    std::io::ErrorKind::TimedOut,
                )));
            }
            Ok(status(201))
        }
    });
    let policy = exact().generate_idempotency_keys(true).build();
    let svc = TelEchoRetry::new(policy).layer_over(inner);
    let resp = svc.oneshot(request(Method::POST)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn attempt_number_is_visible_downstream() {
    let server = Server::new();
    let srv = server.clone();
    let inner = service_fn(move |req: Req| {
        let (_, n) = srv.record(&req);
        let s = if n < 3 { 502 } else { 200 };
        async move { Ok::<_, Infallible>(status(s)) }
    });
    let policy = exact()
        .attempt_header(http::HeaderName::from_static("x-retry-attempt"))
        .build();
    let svc = TelEchoRetry::new(policy).layer_over(inner);
    svc.oneshot(request(Method::GET)).await.unwrap();
    let seen = server.seen();
    let ext: Vec<Option<u32>> = seen.iter().map(|s| s.attempt_ext).collect();
    // Retries carry their number; the first attempt carries none (it allocates nothing),
    // which `AttemptNumber::of` reads as 1.
    assert_eq!(ext, [None, Some(2), Some(3)]);
    let hdr: Vec<Option<&str>> = seen.iter().map(|s| s.attempt_header.as_deref()).collect();
    assert_eq!(hdr, [Some("1"), Some("2"), Some("3")]);

    // The header is opt-in.
    let server = Server::new();
    let inner = always(&server, 200);
    TelEchoRetry::default()
        .layer_over(inner)
        .oneshot(request(Method::GET))
        .await
        .unwrap();
    assert_eq!(server.seen()[0].attempt_header, None);
    assert_eq!(server.seen()[0].attempt_ext, None);
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

/// The same features through the reqwest middleware, against a real server on loopback,
/// with short real delays.
#[cfg(feature = "reqwest")]
mod middleware {
    use super::support::{Misbehave, RawServer, Reply, Server};
    use super::*;
    use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};

    fn client(retry: TelEchoRetry) -> ClientWithMiddleware {
        let inner = reqwest::Client::builder().no_proxy().build().unwrap();
        ClientBuilder::new(inner).with(retry).build()
    }

    fn fast() -> telecho_retry::RetryPolicyBuilder {
        exact()
            .base_delay(Duration::from_millis(20))
            .max_delay(Duration::from_millis(200))
    }

    fn info(resp: &reqwest::Response) -> RetryInfo {
        *resp.extensions().get::<RetryInfo>().unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_429_holds_back_every_request_of_the_client() {
        let server = Server::start(|seen| {
            if seen.path == "/first" {
                Reply::status(429).header("retry-after", "1")
            } else {
                Reply::status(200)
            }
        })
        .await;
        let client = client(TelEchoRetry::new(fast().max_retries(0).build()));
        let first = client.get(server.url("/first")).send().await.unwrap();
        assert_eq!(first.status(), 429);
        let limited_at = std::time::Instant::now();

        let mut tasks = Vec::new();
        for _ in 0..20 {
            let client = client.clone();
            let url = server.url("/later");
            tasks.push(tokio::spawn(async move { client.get(url).send().await }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().status(), 200);
        }
        let seen = server.seen();
        assert_eq!(
            seen.len(),
            21,
            "one 429, then 20 successes: no request collected its own 429"
        );
        let first_429 = seen[0].at;
        for s in &seen[1..] {
            assert!(
                s.at.duration_since(first_429) >= Duration::from_secs(1),
                "{:?}",
                s.at - first_429
            );
        }
        assert!(limited_at.elapsed() >= Duration::from_millis(900));
    }

    #[tokio::test]
    async fn generated_key_and_attempt_header_through_the_middleware() {
        let server = Server::scripted(vec![
            Reply::status(503),
            Reply::status(503),
            Reply::status(201),
        ])
        .await;
        let policy = fast()
            .generate_idempotency_keys(true)
            .attempt_header(http::HeaderName::from_static("x-retry-attempt"))
            .build();
        let client = client(TelEchoRetry::new(policy));
        let resp = client
            .post(server.url("/v1/calls"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let get = client.get(server.url("/v1/agents")).send().await.unwrap();
        assert_eq!(get.status(), 201);

        let seen = server.seen();
        assert_eq!(seen.len(), 4);
        let keys: Vec<_> = seen[..3]
            .iter()
            .map(|s| s.headers["idempotency-key"].clone())
            .collect();
        assert_eq!(keys[0].len(), 36);
        assert!(keys.iter().all(|k| *k == keys[0]));
        let attempts: Vec<_> = seen[..3]
            .iter()
            .map(|s| s.headers["x-retry-attempt"].clone())
            .collect();
        assert_eq!(attempts, ["1", "2", "3"]);
        assert!(
            !seen[3].headers.contains_key("idempotency-key"),
            "no key on a GET"
        );
        assert_eq!(seen[3].headers["x-retry-attempt"], "1");
    }

    /// Records the `AttemptNumber` each attempt carries, below the retry middleware.
    #[derive(Clone, Default)]
    struct SeesAttempts(Arc<Mutex<Vec<Option<u32>>>>);

    #[async_trait::async_trait]
    impl Middleware for SeesAttempts {
        async fn handle(
            &self,
            req: reqwest::Request,
            extensions: &mut http::Extensions,
            next: Next<'_>,
        ) -> reqwest_middleware::Result<reqwest::Response> {
            self.0
                .lock()
                .unwrap()
                .push(extensions.get::<AttemptNumber>().map(|a| a.0));
            next.run(req, extensions).await
        }
    }

    #[tokio::test]
    async fn attempt_number_extension_reaches_the_next_middleware() {
        let server = Server::scripted(vec![Reply::status(502), Reply::status(200)]).await;
        let sees = SeesAttempts::default();
        let inner = reqwest::Client::builder().no_proxy().build().unwrap();
        let client = ClientBuilder::new(inner)
            .with(TelEchoRetry::new(fast().build()))
            .with(sees.clone())
            .build();
        client.get(server.url("/")).send().await.unwrap();
        assert_eq!(*sees.0.lock().unwrap(), [None, Some(2)]);
    }

    #[tokio::test]
    async fn deadline_through_the_middleware() {
        let server = Server::start(|_| Reply::status(503)).await;
        // Attempts at 0 and 100 ms; the next delay (200 ms) would end past 250 ms.
        let policy = exact()
            .base_delay(Duration::from_millis(100))
            .max_retries(10)
            .deadline(Duration::from_millis(250))
            .build();
        let started = std::time::Instant::now();
        let resp = client(TelEchoRetry::new(policy))
            .get(server.url("/"))
            .send()
            .await
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_millis(250),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(resp.status(), 503);
        assert_eq!(server.seen().len(), 2);
        assert_eq!(info(&resp).stop_reason(), Some(StopReason::Deadline));
    }

    #[tokio::test]
    async fn attempt_timeout_through_the_middleware() {
        let server = RawServer::start(Misbehave::Silent).await;
        let policy = fast()
            .max_retries(2)
            .attempt_timeout(Duration::from_millis(100))
            .build();
        let c = client(TelEchoRetry::new(policy.clone()));
        let started = std::time::Instant::now();
        let err = c.get(server.url()).send().await.unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(300 + 20 + 40));
        let reqwest_middleware::Error::Middleware(e) = &err else {
            panic!("{err:?}");
        };
        let e = e.downcast_ref::<telecho_retry::RetryError>().unwrap();
        assert_eq!(e.kind(), RetryErrorKind::AttemptTimeout, "{err:?}");
        assert_eq!(e.info().attempts(), 3);
        assert_eq!(server.requests(), 3, "a GET that timed out is retried");

        let server = RawServer::start(Misbehave::Silent).await;
        let c = client(TelEchoRetry::new(policy));
        c.post(server.url()).body("{}").send().await.unwrap_err();
        assert_eq!(server.requests(), 1, "a POST that timed out is not");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn budget_through_the_middleware() {
        let server = Server::start(|_| Reply::status(503)).await;
        let policy = fast().max_retries(1).build();
        let client = client(crate::support::budgeted(
            policy,
            RetryBudget::new(Duration::from_secs(10), 1, 0.0),
        ));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let c = client.clone();
            let url = server.url("/");
            tasks.push(tokio::spawn(
                async move { c.get(url).send().await.unwrap() },
            ));
        }
        let mut budget_stops = 0;
        for t in tasks {
            let resp = t.await.unwrap();
            if info(&resp).stop_reason() == Some(StopReason::Budget) {
                budget_stops += 1;
            }
        }
        assert_eq!(
            server.seen().len(),
            30,
            "20 requests + the 10 retries the budget allows"
        );
        assert_eq!(budget_stops, 10);
    }
}
