//! Limits shared through a real Redis at `REDIS_URL` (default `redis://127.0.0.1:6379`):
//! two `TelEchoRetry` values, each with its own `Limits`, stand in for replicas. Each test
//! has its own key prefix and scope (UUIDs), so tests run in parallel; faults go through a
//! TCP proxy the test controls (`support::Proxy`). Real time: Redis is real.
//!
//! This file holds the helpers the fleet tests share (here and in the other `fleet_*`
//! modules, which import them as `crate::fleet_redis::…`); the tests are in `fleet` (a
//! cooldown and pacing shared by replicas, on either adapter), `faults` (a cut, paused,
//! restarted or flushed Redis, and the fallback) and `secrets` (no password or key in
//! output or errors; building outside a runtime).
#![cfg(all(feature = "redis", feature = "tower"))]

use crate::support::Proxy;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use telecho_retry::limits::{Limits, Pacing, RedisLimitsBuilder};
use telecho_retry::{RetryPolicy, TelEchoRetry};
use tokio::time::Instant;
use tower::{service_fn, ServiceBuilder, ServiceExt};

pub(crate) const URL: &str = "http://api.example/v1/calls";

pub(crate) fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

pub(crate) fn redis_addr() -> SocketAddr {
    let client = redis::Client::open(redis_url()).unwrap();
    let addr = client.get_connection_info().addr().to_string();
    std::net::ToSocketAddrs::to_socket_addrs(&addr)
        .unwrap()
        .next()
        .unwrap()
}

/// Its own prefix and scope for each test.
#[derive(Clone)]
pub(crate) struct Scope {
    pub(crate) prefix: String,
    pub(crate) scope: String,
}

impl Scope {
    pub(crate) fn new() -> Self {
        Scope {
            prefix: format!("test-{}", uuid::Uuid::new_v4().simple()),
            scope: format!("key-{}", uuid::Uuid::new_v4().simple()),
        }
    }

    /// The builder for `url`, this scope, a 50 ms call timeout, no retry budget and
    /// `pacing` (`None`: no pacing).
    pub(crate) fn builder(&self, url: &str, pacing: Option<Pacing>) -> RedisLimitsBuilder {
        let mut limits = Limits::builder().without_retry_budget();
        limits = match pacing {
            Some(pacing) => limits.pacing(pacing),
            None => limits.without_pacing(),
        };
        limits
            .redis(url, &self.scope)
            .key_prefix(&self.prefix)
            .call_timeout(Duration::from_millis(50))
    }

    pub(crate) fn limits(&self, url: &str, pacing: Option<Pacing>) -> Limits {
        self.builder(url, pacing).build().unwrap()
    }

    pub(crate) fn base(&self) -> String {
        format!("{{{}:{}}}:", self.prefix, self.scope)
    }

    /// Waits until `n` subscribers listen on the scope's channel (at most 2 s).
    pub(crate) async fn subscribed(&self, n: i64) {
        let mut conn = direct().await;
        let channel = format!("{}events", self.base());
        let start = Instant::now();
        loop {
            let (_, count): (String, i64) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(&channel)
                .query_async(&mut conn)
                .await
                .unwrap();
            if count >= n {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(2), "no subscription");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Deletes every key of the scope.
    pub(crate) async fn flush(&self) {
        let mut conn = direct().await;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.base()))
            .query_async(&mut conn)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    }
}

pub(crate) async fn direct() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

pub(crate) fn uri() -> http::Uri {
    URL.parse().unwrap()
}

pub(crate) type Calls = Arc<Mutex<Vec<Instant>>>;

/// A replica: `TelEchoRetry` over `policy` with `limits`, over a `service_fn` that records
/// when it is called and answers `reply(n)` to its n-th call.
pub(crate) fn replica(
    policy: RetryPolicy,
    limits: &Limits,
    calls: Calls,
    reply: impl Fn(usize) -> Response<Full<Bytes>> + Send + Sync + 'static,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<telecho_retry::body::ResponseBody<Full<Bytes>>>,
    Error = telecho_retry::RetryError,
    Future = impl Send,
> + Clone {
    let reply = Arc::new(reply);
    let inner = service_fn(move |_req: Request<Full<Bytes>>| {
        let n = {
            let mut calls = calls.lock().unwrap();
            calls.push(Instant::now());
            calls.len() - 1
        };
        let response = reply(n);
        async move { Ok::<_, Infallible>(response) }
    });
    ServiceBuilder::new()
        .layer(TelEchoRetry::new(policy).with_limits(limits.clone()))
        .service(inner)
}

pub(crate) fn ok() -> Response<Full<Bytes>> {
    Response::new(Full::new(Bytes::new()))
}

pub(crate) fn get() -> Request<Full<Bytes>> {
    Request::get(URL).body(Full::new(Bytes::new())).unwrap()
}

pub(crate) fn per_sec(n: u32) -> Option<Pacing> {
    Some(Pacing::new(n, Duration::from_secs(1)))
}

/// Starts a cooldown of `secs` on `url`'s origin in `limits` the way a replica does, with
/// a 429; a refusal with `refuse` (the `Retry-After` is then above the policy's cap).
pub(crate) async fn meet_429(limits: &Limits, url: &str, secs: u64, refuse: bool) {
    let policy = RetryPolicy::builder()
        .max_retries(0)
        .retry_after_spread(Duration::ZERO)
        .max_retry_after(if refuse {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(3600)
        })
        .build();
    let svc = replica(policy, limits, Calls::default(), move |_| {
        Response::builder()
            .status(429)
            .header("retry-after", secs.to_string())
            .body(Full::new(Bytes::new()))
            .unwrap()
    });
    let request = Request::get(url).body(Full::new(Bytes::new())).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(2), svc.oneshot(request))
        .await
        .expect("bounded")
        .unwrap();
    assert_eq!(resp.status(), 429);
}

/// Sends `n` requests one after the other through `svc`; each must succeed within `bound`.
pub(crate) async fn each_within<S>(svc: &S, n: usize, bound: Duration)
where
    S: tower::Service<
            Request<Full<Bytes>>,
            Response = Response<telecho_retry::body::ResponseBody<Full<Bytes>>>,
            Error = telecho_retry::RetryError,
        > + Clone,
{
    for i in 0..n {
        let resp = tokio::time::timeout(bound, svc.clone().oneshot(get()))
            .await
            .unwrap_or_else(|_| panic!("request {i} took longer than {bound:?}"))
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
}

pub(crate) async fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Pacing at 50/s: 20 ms apart through Redis, 80 ms apart in fallback (a share of 0.25).
/// A request's bound: the call timeout (50 ms), one fallback interval, and slack.
pub(crate) const BOUND: Duration = Duration::from_millis(400);

mod faults;
mod fleet;
mod secrets;
