//! Limits shared through a real Redis at `REDIS_URL` (default `redis://127.0.0.1:6379`):
//! two `TelEchoRetry` values, each with its own `Limits`, stand in for replicas. Each test
//! has its own key prefix and scope (UUIDs), so tests run in parallel; faults go through a
//! TCP proxy the test controls (`support::Proxy`). Real time: Redis is real.
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

// ===== the fleet =====

#[tokio::test]
async fn a_429_on_one_replica_holds_back_the_other_within_a_few_ms() {
    let scope = Scope::new();
    let policy = RetryPolicy::builder()
        .retry_after_spread(Duration::ZERO)
        .build();
    let (a, b) = (
        scope.limits(&redis_url(), None),
        scope.limits(&redis_url(), None),
    );
    scope.subscribed(2).await;
    let a_calls = Calls::default();
    let limited = Arc::new(Mutex::new(None));
    let at_429 = Arc::clone(&limited);
    let a_svc = replica(policy.clone(), &a, Arc::clone(&a_calls), move |n| {
        if n == 0 {
            *at_429.lock().unwrap() = Some(Instant::now());
            Response::builder()
                .status(429)
                .header("retry-after", "1")
                .body(Full::new(Bytes::new()))
                .unwrap()
        } else {
            ok()
        }
    });
    let a_request = tokio::spawn(a_svc.oneshot(get()));
    // B learns of A's 429 by pub/sub.
    let learned = loop {
        if let Some(left) = b.cooldown_remaining(&uri()) {
            break left;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let at_429 = limited.lock().unwrap().expect("A met its 429");
    let delay = at_429.elapsed();
    assert!(
        delay < Duration::from_millis(50),
        "B learned of A's 429 after {delay:?}"
    );
    assert!(learned > Duration::from_millis(900), "{learned:?}");
    // B's next request waits until the cooldown has passed.
    let b_calls = Calls::default();
    let b_svc = replica(policy, &b, Arc::clone(&b_calls), |_| ok());
    let resp = b_svc.oneshot(get()).await.unwrap();
    assert_eq!(resp.status(), 200);
    let b_sent = b_calls.lock().unwrap()[0];
    assert!(
        b_sent.duration_since(at_429) >= Duration::from_millis(950),
        "B went {:?} after A's 429",
        b_sent.duration_since(at_429)
    );
    assert_eq!(a_request.await.unwrap().unwrap().status(), 200);
    assert_eq!((a.fallbacks(), b.fallbacks()), (0, 0));
    eprintln!("B held back {delay:?} after A's 429");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pacing_holds_one_rate_across_two_replicas() {
    let scope = Scope::new();
    let policy = RetryPolicy::default();
    let (a, b) = (
        scope.limits(&redis_url(), per_sec(20)),
        scope.limits(&redis_url(), per_sec(20)),
    );
    let calls = Calls::default();
    let until = Instant::now() + Duration::from_millis(2500);
    let mut tasks = Vec::new();
    for store in [&a, &b] {
        let svc = replica(policy.clone(), store, Arc::clone(&calls), |_| ok());
        for _ in 0..3 {
            let svc = svc.clone();
            tasks.push(tokio::spawn(async move {
                while Instant::now() < until {
                    let resp = svc.clone().oneshot(get()).await.unwrap();
                    assert_eq!(resp.status(), 200);
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let calls = calls.lock().unwrap().clone();
    let span = calls.last().unwrap().duration_since(calls[0]).as_secs_f64();
    let rate = (calls.len() - 1) as f64 / span;
    assert!(calls.len() >= 45, "{} calls", calls.len());
    assert!(
        (rate - 20.0).abs() / 20.0 < 0.05,
        "{rate:.2}/s over {span:.2} s ({} calls)",
        calls.len()
    );
    assert_eq!((a.fallbacks(), b.fallbacks()), (0, 0));
    eprintln!("{} calls, {rate:.2}/s", calls.len());
}

// ===== faults =====

#[tokio::test]
async fn a_cut_connection_fails_no_request_and_the_link_comes_back() {
    let scope = Scope::new();
    let proxy = Proxy::start(redis_addr()).await;
    let policy = RetryPolicy::default();
    let store = scope.limits(&proxy.url(), per_sec(50));
    let svc = replica(policy.clone(), &store, Calls::default(), |_| ok());
    each_within(&svc, 3, BOUND).await;
    scope.subscribed(1).await;
    proxy.cut();
    each_within(&svc, 10, BOUND).await;
    eventually("reachable", Duration::from_secs(1), || store.is_reachable()).await;
    // The subscription came back too: another replica's cooldown arrives.
    scope.subscribed(1).await;
    let other = scope.limits(&redis_url(), per_sec(50));
    meet_429(&other, URL, 2, false).await;
    eventually("cooldown after the cut", Duration::from_secs(1), || {
        store.cooldown_remaining(&uri()).is_some()
    })
    .await;
}

#[tokio::test]
async fn a_paused_redis_falls_back_within_the_call_timeout_and_counts_it() {
    let scope = Scope::new();
    let proxy = Proxy::start(redis_addr()).await;
    let policy = RetryPolicy::default();
    let store = scope.limits(&proxy.url(), per_sec(50));
    let svc = replica(policy.clone(), &store, Calls::default(), |_| ok());
    each_within(&svc, 3, BOUND).await;
    assert_eq!(store.fallbacks(), 0);
    proxy.pause();
    let start = Instant::now();
    each_within(&svc, 10, BOUND).await;
    // The first waits the call timeout, then the rest are paced in process at once, 80 ms
    // apart.
    let took = start.elapsed();
    assert!(took < Duration::from_millis(50 + 10 * 80 + 200), "{took:?}");
    assert!(!store.is_reachable());
    assert!(store.fallbacks() >= 10, "{}", store.fallbacks());
    proxy.resume();
    eventually("reachable after resume", Duration::from_secs(2), || {
        store.is_reachable()
    })
    .await;
    let counted = store.fallbacks();
    each_within(&svc, 5, BOUND).await;
    assert_eq!(store.fallbacks(), counted, "paced by Redis again");
}

#[tokio::test]
async fn a_restarted_redis_is_re_read_on_reconnect() {
    let scope = Scope::new();
    let proxy = Proxy::start(redis_addr()).await;
    let b = scope.limits(&proxy.url(), None);
    scope.subscribed(1).await;
    proxy.down();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A records a cooldown and a refusal while B is cut off: B misses the announcements.
    let a = scope.limits(&redis_url(), None);
    meet_429(&a, URL, 3, false).await;
    let other: http::Uri = "https://other.example/".parse().unwrap();
    meet_429(&a, "https://other.example/", 3, true).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(b.cooldown_remaining(&uri()), None);
    proxy.up();
    eventually("cooldown re-read", Duration::from_secs(2), || {
        b.cooldown_remaining(&uri())
            .is_some_and(|d| d > Duration::from_secs(1))
            && b.cooldown_remaining(&other).is_some()
    })
    .await;
}

#[tokio::test]
async fn flushed_keys_leave_memory_alone_and_pacing_starts_afresh() {
    let scope = Scope::new();
    let (a, b) = (
        scope.limits(&redis_url(), per_sec(50)),
        scope.limits(&redis_url(), per_sec(50)),
    );
    scope.subscribed(2).await;
    meet_429(&a, URL, 2, false).await;
    eventually("B learns", Duration::from_secs(1), || {
        b.cooldown_remaining(&uri()).is_some()
    })
    .await;
    // A replica without the shared cooldown, pacing only.
    let d = Limits::builder()
        .without_retry_budget()
        .pacing(Pacing::new(50, Duration::from_secs(1)))
        .shared_cooldown(false)
        .redis(redis_url(), &scope.scope)
        .key_prefix(&scope.prefix)
        .build()
        .unwrap();
    let svc = replica(RetryPolicy::default(), &d, Calls::default(), |_| ok());
    each_within(&svc, 3, BOUND).await;
    scope.flush().await;
    // Memory keeps what it learned until it passes; a replica that starts now finds nothing.
    assert!(b.cooldown_remaining(&uri()).is_some());
    let c = scope.limits(&redis_url(), per_sec(50));
    scope.subscribed(4).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(c.cooldown_remaining(&uri()), None);
    // Pacing goes on through Redis (its slots expire within 21 ms: not looked at here).
    each_within(&svc, 3, BOUND).await;
    assert_eq!((c.fallbacks(), d.fallbacks()), (0, 0));
}

#[tokio::test]
async fn an_evicted_script_is_loaded_again() {
    let scope = Scope::new();
    let store = scope.limits(&redis_url(), per_sec(100));
    let svc = replica(RetryPolicy::default(), &store, Calls::default(), |_| ok());
    each_within(&svc, 2, BOUND).await;
    let mut conn = direct().await;
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    each_within(&svc, 3, BOUND).await;
    assert_eq!(store.fallbacks(), 0, "NOSCRIPT is no fallback");
}

#[tokio::test]
async fn no_redis_at_all_is_no_error_and_no_hang() {
    let scope = Scope::new();
    // Nothing listens on port 1.
    let store = scope.limits("redis://127.0.0.1:1", per_sec(50));
    let svc = replica(RetryPolicy::default(), &store, Calls::default(), |_| ok());
    each_within(&svc, 5, BOUND).await;
    assert!(store.fallbacks() >= 5);
    assert!(!store.is_reachable());
}

// ===== secrets =====

#[tokio::test]
async fn neither_the_password_nor_the_key_reaches_debug_output_or_errors() {
    let url = "redis://user:s3cret-pw@127.0.0.1:1/0";
    let builder = Limits::builder()
        .pacing(Pacing::per_minute(600))
        .redis(url, "telecho-key-1");
    assert!(!format!("{builder:?}").contains("s3cret"));
    let limits = builder.build().unwrap();
    let retry = TelEchoRetry::default().with_limits(limits.clone());
    for text in [
        format!("{limits:?}"),
        format!("{limits:#?}"),
        format!("{retry:?}"),
    ] {
        assert!(!text.contains("s3cret"), "{text}");
        assert!(!text.contains("user"), "{text}");
        assert!(text.contains("127.0.0.1:1"), "{text}");
    }
    let err = Limits::builder()
        .redis("rediss://user:s3cret-pw@", "k")
        .build()
        .unwrap_err();
    let mut chain = format!("{err} {err:?}");
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        chain.push_str(&format!(" {s} {s:?}"));
        source = s.source();
    }
    assert!(!chain.contains("s3cret"), "{chain}");
    for scope in [
        "tel_sk_live_123",
        " tel_sk_live_123",
        "TEL_SK_LIVE_123",
        "Bearer tel_sk_live_123",
        "prod/tel_sk_live_123",
    ] {
        let err = Limits::builder()
            .redis(redis_url(), scope)
            .build()
            .unwrap_err();
        let text = format!("{err} {err:?}").to_ascii_lowercase();
        assert!(!text.contains("tel_sk_live_123"), "{scope:?}: {text}");
    }
}

#[tokio::test]
async fn the_fallback_goes_on_from_the_rate_redis_gave_not_with_a_fresh_burst() {
    let scope = Scope::new();
    let proxy = Proxy::start(redis_addr()).await;
    let store = scope
        .builder(&proxy.url(), per_sec(10))
        .fallback_share(1.0)
        .build()
        .unwrap();
    let calls = Calls::default();
    let svc = replica(RetryPolicy::default(), &store, calls.clone(), |_| ok());
    each_within(&svc, 3, BOUND).await; // paced by Redis: 100 ms apart
    proxy.down();
    each_within(&svc, 1, BOUND).await; // paced in process
    assert!(store.fallbacks() >= 1);
    let calls = calls.lock().unwrap();
    let gap = calls[3] - calls[2];
    assert!(
        gap >= Duration::from_millis(90),
        "the first attempt on the fallback waits for the slot after the last one Redis gave: {gap:?}"
    );
    proxy.up();
}

#[tokio::test]
async fn a_deadline_nearer_than_the_call_timeout_is_not_spent_on_a_stalled_redis() {
    let scope = Scope::new();
    let proxy = Proxy::start(redis_addr()).await;
    let policy = RetryPolicy::builder()
        .deadline(Duration::from_millis(20))
        .build();
    let store = scope.limits(&proxy.url(), per_sec(50)); // call timeout 50 ms
    let calls = Calls::default();
    let svc = replica(policy, &store, calls.clone(), |_| ok());
    each_within(&svc, 1, BOUND).await;
    // The fallback's next slot (at a quarter of the rate, 80 ms after that one) is free.
    tokio::time::sleep(Duration::from_millis(100)).await;
    proxy.pause();
    let start = Instant::now();
    let resp = svc.clone().oneshot(get()).await;
    let took = start.elapsed();
    assert!(resp.is_ok(), "sent on the in-process pacing: {resp:?}");
    assert!(took < Duration::from_millis(20), "{took:?}");
    assert_eq!(calls.lock().unwrap().len(), 2);
    assert!(store.fallbacks() >= 1);
    assert!(
        store.is_reachable(),
        "a request's own hurry does not mark Redis unreachable"
    );
    proxy.resume();
}

#[tokio::test]
async fn a_redis_that_lost_its_keys_gets_running_cooldowns_back_on_reconnect() {
    let scope = Scope::new();
    let proxy = Proxy::start(redis_addr()).await;
    let a = scope.limits(&proxy.url(), None);
    scope.subscribed(1).await;
    meet_429(&a, URL, 5, false).await;
    let key = format!("{}cooldown:http://api.example:80", scope.base());
    let conn = direct().await;
    let pttl = || {
        let mut conn = conn.clone();
        let key = key.clone();
        async move {
            redis::cmd("PTTL")
                .arg(&key)
                .query_async::<i64>(&mut conn)
                .await
                .unwrap()
        }
    };
    let start = Instant::now();
    while pttl().await <= 0 {
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "recorded in Redis"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Redis restarts without persistence while A is cut off: the keys are gone.
    proxy.down();
    scope.flush().await;
    assert!(pttl().await < 0);
    proxy.up();
    let start = Instant::now();
    while pttl().await <= 0 {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "A records its running cooldown again when it reconnects"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(pttl().await <= 5000, "not lengthened");
    // A replica that starts now learns of it.
    let late = scope.limits(&redis_url(), None);
    eventually("the late replica learns", Duration::from_secs(2), || {
        late.cooldown_remaining(&uri())
            .is_some_and(|d| d > Duration::from_secs(1))
    })
    .await;
}

#[test]
fn building_outside_a_runtime_is_an_error_not_a_panic() {
    let err = Limits::builder()
        .redis(redis_url(), "k")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("tokio runtime"), "{err}");
}

#[tokio::test]
async fn a_free_slot_is_no_wait_the_round_trip_is_not_counted_as_sleep() {
    let scope = Scope::new();
    let store = scope.limits(
        &redis_url(),
        Some(Pacing::new(1_000_000, Duration::from_secs(1)).burst(1_000)),
    );
    let svc = replica(RetryPolicy::default(), &store, Calls::default(), |_| ok());
    for _ in 0..3 {
        let resp = svc.clone().oneshot(get()).await.unwrap();
        assert_eq!(
            telecho_retry::RetryInfo::of(resp.extensions()).slept(),
            Duration::ZERO
        );
    }
    assert_eq!(store.fallbacks(), 0);
}

/// Replicas behind different adapters share the cooldown: a 429 met through the reqwest
/// middleware holds back a replica using the tower layer over hyper-util's client, and the
/// other way round.
#[cfg(feature = "reqwest")]
#[tokio::test]
async fn replicas_on_the_reqwest_middleware_and_on_hyper_util_share_the_cooldown() {
    use crate::support::Server;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let scope = Scope::new();
    let policy = RetryPolicy::builder().max_retries(0).build();
    let (a, b) = (
        scope.limits(&redis_url(), None),
        scope.limits(&redis_url(), None),
    );
    scope.subscribed(2).await;
    let server = Server::limited("1").await;
    let uri: http::Uri = server.url("/").parse().unwrap();
    let reqwest_replica = reqwest_middleware::ClientBuilder::new(
        reqwest::Client::builder().no_proxy().build().unwrap(),
    )
    .with(TelEchoRetry::new(policy.clone()).with_limits(a.clone()))
    .build();
    let hyper_replica = ServiceBuilder::new()
        .layer(TelEchoRetry::new(policy).with_limits(b.clone()))
        .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
    let hyper_get = |path: &str| {
        hyper_replica.clone().oneshot(
            Request::get(server.url(path))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
    };

    // reqwest meets the 429; the hyper-util replica learns of it and waits.
    let resp = reqwest_replica
        .get(server.url("/limited-a"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    eventually("B learns A's 429", Duration::from_millis(200), || {
        b.cooldown_remaining(&uri).is_some()
    })
    .await;
    let resp = tokio::time::timeout(Duration::from_secs(3), hyper_get("/ok-b"))
        .await
        .expect("bounded")
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = server.seen();
    let limited = seen.iter().find(|s| s.path == "/limited-a").unwrap().at;
    let sent = seen.iter().find(|s| s.path == "/ok-b").unwrap().at;
    assert!(
        sent.duration_since(limited) >= Duration::from_millis(950),
        "the hyper-util replica sent {:?} after the 429",
        sent.duration_since(limited)
    );

    // And the other way round.
    let resp = hyper_get("/limited-b").await.unwrap();
    assert_eq!(resp.status(), 429);
    eventually("A learns B's 429", Duration::from_millis(200), || {
        a.cooldown_remaining(&uri).is_some()
    })
    .await;
    let resp = tokio::time::timeout(
        Duration::from_secs(3),
        reqwest_replica.get(server.url("/ok-a")).send(),
    )
    .await
    .expect("bounded")
    .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = server.seen();
    let limited = seen.iter().find(|s| s.path == "/limited-b").unwrap().at;
    let sent = seen.iter().find(|s| s.path == "/ok-a").unwrap().at;
    assert!(sent.duration_since(limited) >= Duration::from_millis(950));
}
