//! The edges of the Redis limits (issue 20), against the real Redis at `REDIS_URL`, each
//! request behaviour through both adapters: the tower layer over hyper-util's client and
//! the reqwest middleware. Real time (Redis is real); every wait is bounded.
#![cfg(all(feature = "redis", feature = "tower", feature = "reqwest"))]

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use telecho_retry::limits::{Limits, Pacing, MAX_COOLDOWN};
use telecho_retry::{RetryPolicy, TelEchoRetry};
use tokio::time::Instant;
use tower::{ServiceBuilder, ServiceExt};

use crate::fleet_redis::{direct, eventually, redis_addr, redis_url, Scope};
use crate::support::{Proxy, Server};

/// The adapter a request goes through.
#[derive(Clone, Copy, Debug)]
enum Via {
    Hyper,
    Reqwest,
}

const BOTH: [Via; 2] = [Via::Hyper, Via::Reqwest];

impl Via {
    /// Sends `GET url` with `limits` and `policy` (bounded by 10 s); the status, or the
    /// error as text.
    async fn send(self, limits: &Limits, policy: RetryPolicy, url: &str) -> Result<u16, String> {
        let retry = TelEchoRetry::new(policy).with_limits(limits.clone());
        let sent = async {
            match self {
                Via::Hyper => {
                    let svc = ServiceBuilder::new()
                        .layer(retry)
                        .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
                    let request = Request::get(url).body(Full::new(Bytes::new())).unwrap();
                    svc.oneshot(request)
                        .await
                        .map(|r| r.status().as_u16())
                        .map_err(|e| e.to_string())
                }
                Via::Reqwest => {
                    let client = reqwest_middleware::ClientBuilder::new(
                        reqwest::Client::builder().no_proxy().build().unwrap(),
                    )
                    .with(retry)
                    .build();
                    client
                        .get(url)
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .map_err(|e| e.to_string())
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), sent)
            .await
            .unwrap_or_else(|_| panic!("{self:?}: a request took more than 10 s"))
    }
}

/// A server that answers 429 with `Retry-After: 4` on paths starting with `/limited`, 200
/// elsewhere.
async fn server() -> Server {
    Server::limited("4").await
}

/// When the server saw `path`.
fn seen_at(server: &Server, path: &str) -> Instant {
    server
        .seen()
        .iter()
        .find(|s| s.path == path)
        .unwrap_or_else(|| panic!("{path} not seen"))
        .at
}

fn no_retries() -> RetryPolicy {
    RetryPolicy::builder()
        .max_retries(0)
        .retry_after_spread(Duration::ZERO)
        .build()
}

async fn get_tat(key: &str) -> Option<u64> {
    let mut conn = direct().await;
    redis::cmd("GET")
        .arg(key)
        .query_async::<Option<u64>>(&mut conn)
        .await
        .unwrap()
}

/// The pace key of `server`'s origin in `scope`.
fn pace_key(scope: &Scope, server: &Server) -> String {
    format!("{}pace:http://{}", scope.base(), server.addr)
}

// ===== 3: the round trip's bound is the call timeout, whatever a request may wait =====

#[tokio::test]
async fn a_request_that_may_not_wait_still_asks_redis() {
    for via in BOTH {
        let scope = Scope::new();
        let server = server().await;
        let pacing = Some(Pacing::new(5, Duration::from_secs(1)));
        let (a, b) = (
            scope.limits(&redis_url(), pacing),
            scope.limits(&redis_url(), pacing),
        );
        let policy = RetryPolicy::builder()
            .max_retry_after(Duration::ZERO)
            .build();
        assert_eq!(
            via.send(&a, policy.clone(), &server.url("/a")).await,
            Ok(200)
        );
        // The fleet's next slot is 200 ms away: B, which may not wait, is refused rather
        // than paced alone.
        let refused = via.send(&b, policy, &server.url("/b")).await;
        assert!(refused.is_err(), "{via:?}: {refused:?}");
        assert_eq!((a.fallbacks(), b.fallbacks()), (0, 0), "{via:?}");
        assert!(a.is_reachable() && b.is_reachable(), "{via:?}");
    }
}

// ===== 4: a request dropped while it waits gives its slot back =====

#[tokio::test]
async fn a_request_dropped_while_it_waits_gives_its_slot_back_in_redis() {
    for via in BOTH {
        let scope = Scope::new();
        let server = server().await;
        let limits = scope.limits(&redis_url(), Some(Pacing::new(2, Duration::from_secs(1))));
        let key = pace_key(&scope, &server);
        let policy = RetryPolicy::default;
        assert_eq!(
            via.send(&limits, policy(), &server.url("/first")).await,
            Ok(200)
        );
        let after_first = get_tat(&key).await.expect("a slot taken");
        // The next slot is 500 ms away; this request is dropped after 100 ms of waiting.
        let dropped = tokio::time::timeout(
            Duration::from_millis(100),
            via.send(&limits, policy(), &server.url("/dropped")),
        )
        .await;
        assert!(dropped.is_err(), "{via:?}: it waited");
        let start = Instant::now();
        while get_tat(&key).await != Some(after_first) {
            assert!(
                start.elapsed() < Duration::from_secs(1),
                "{via:?}: the slot was not given back"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            via.send(&limits, policy(), &server.url("/third")).await,
            Ok(200)
        );
        let gap = seen_at(&server, "/third") - seen_at(&server, "/first");
        assert!(
            gap >= Duration::from_millis(450) && gap < Duration::from_millis(750),
            "{via:?}: the third went {gap:?} after the first (its slot is the dropped one's)"
        );
        assert!(server.seen().iter().all(|s| s.path != "/dropped"));
        assert_eq!(limits.fallbacks(), 0, "{via:?}");
    }
}

// ===== 5: a late reply's slot is given back =====

#[tokio::test]
async fn a_reply_that_comes_after_the_call_timeout_gives_its_slot_back() {
    for via in BOTH {
        let scope = Scope::new();
        let server = server().await;
        let proxy = Proxy::start(redis_addr()).await;
        // One slot every 2 s; alone on the fallback at the full rate. A call timeout of
        // 100 ms (the machine may be loaded); the bound of a call is 500 ms.
        let limits = scope
            .builder(&proxy.url(), Some(Pacing::new(1, Duration::from_secs(2))))
            .call_timeout(Duration::from_millis(100))
            .fallback_share(1.0)
            .build()
            .unwrap();
        // Connected and the scripts loaded (a give-back too), through another origin.
        let other = format!("http://localhost:{}/warm", server.addr.port());
        assert_eq!(
            via.send(&limits, RetryPolicy::default(), &other).await,
            Ok(200)
        );
        let dropped = tokio::time::timeout(
            Duration::from_millis(50),
            via.send(&limits, RetryPolicy::default(), &other),
        )
        .await;
        assert!(dropped.is_err(), "{via:?}: it waited");
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Redis answers 300 ms late: past the call timeout, within the bound of the call.
        // The request goes on the fallback.
        proxy.delay(Duration::from_millis(300));
        let start = Instant::now();
        assert_eq!(
            via.send(&limits, RetryPolicy::default(), &server.url("/late"))
                .await,
            Ok(200)
        );
        assert!(start.elapsed() < Duration::from_millis(300), "{via:?}");
        assert!(limits.fallbacks() >= 1, "{via:?}");
        // The late reply reserves a slot (kept at least the give-back's round trip)...
        let key = pace_key(&scope, &server);
        let start = Instant::now();
        while get_tat(&key).await.is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(1),
                "{via:?}: the late reply reserved nothing"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // ...and gives it back.
        while get_tat(&key).await.is_some() {
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "{via:?}: the late reply's slot is still taken"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Redis answers in time again: the next attempt takes the free slot at once.
        proxy.delay(Duration::ZERO);
        eventually("reachable again", Duration::from_secs(2), || {
            limits.is_reachable()
        })
        .await;
        let start = Instant::now();
        assert_eq!(
            via.send(&limits, RetryPolicy::default(), &server.url("/next"))
                .await,
            Ok(200)
        );
        assert!(
            start.elapsed() < Duration::from_millis(300),
            "{via:?}: waited {:?}",
            start.elapsed()
        );
    }
}

// ===== 6: background calls have the background bound =====

#[tokio::test]
async fn a_cooldown_write_that_takes_200_ms_is_recorded_and_redis_stays_reachable() {
    for via in BOTH {
        let scope = Scope::new();
        let server = server().await;
        let proxy = Proxy::start(redis_addr()).await;
        let limits = scope.limits(&proxy.url(), None); // call timeout 50 ms
        scope.subscribed(1).await;
        // Connected, and the cooldown script loaded, through another origin.
        let other = format!("http://localhost:{}/limited-warm", server.addr.port());
        assert_eq!(via.send(&limits, no_retries(), &other).await, Ok(429));
        let conn = direct().await;
        let pttl = |key: String| {
            let mut conn = conn.clone();
            async move {
                redis::cmd("PTTL")
                    .arg(key)
                    .query_async::<i64>(&mut conn)
                    .await
                    .unwrap()
            }
        };
        let warm = format!(
            "{}cooldown:http://localhost:{}",
            scope.base(),
            server.addr.port()
        );
        let start = Instant::now();
        while pttl(warm.clone()).await <= 0 {
            assert!(start.elapsed() < Duration::from_secs(1), "{via:?}: warm-up");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        proxy.delay(Duration::from_millis(200));
        assert_eq!(
            via.send(&limits, no_retries(), &server.url("/limited"))
                .await,
            Ok(429)
        );
        let key = format!("{}cooldown:http://{}", scope.base(), server.addr);
        let start = Instant::now();
        while pttl(key.clone()).await <= 0 {
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "{via:?}: the slow cooldown write was not recorded"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Redis ran the write at once; its reply comes 200 ms later, and counts.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(limits.is_reachable(), "{via:?}");
        assert_eq!(limits.fallbacks(), 0, "{via:?}");
    }
}

// ===== 7: relearning after a cut =====

async fn relearns_after_a_cut(via: Via) {
    let scope = Scope::new();
    let server = server().await;
    let proxy = Proxy::start(redis_addr()).await;
    let b = scope.limits(&proxy.url(), None);
    scope.subscribed(1).await;
    proxy.down();
    // Losing the subscription is losing the store, requests or not.
    eventually("unreachable once cut", Duration::from_secs(1), || {
        !b.is_reachable()
    })
    .await;
    // A meets a 429 (4 s) while B is cut off.
    let a = scope.limits(&redis_url(), None);
    assert_eq!(
        via.send(&a, no_retries(), &server.url("/limited")).await,
        Ok(429)
    );
    let limited = seen_at(&server, "/limited");
    // Long enough for a doubling backoff to have grown past a second.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        b.cooldown_remaining(&server.url("/").parse().unwrap()),
        None
    );
    proxy.up();
    let up = Instant::now();
    eventually("relearned", Duration::from_millis(400), || {
        b.cooldown_remaining(&server.url("/").parse().unwrap())
            .is_some()
    })
    .await;
    let relearned = up.elapsed();
    eventually("reachable", Duration::from_millis(400), || b.is_reachable()).await;
    // B's request waits for the fleet's cooldown.
    assert_eq!(
        via.send(&b, RetryPolicy::default(), &server.url("/after"))
            .await,
        Ok(200)
    );
    let after = seen_at(&server, "/after") - limited;
    assert!(
        after >= Duration::from_millis(3900),
        "{via:?}: B sent {after:?} after the 429"
    );
    eprintln!("{via:?}: relearned {relearned:?} after the link came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_relearns_a_running_cooldown_within_the_probe_period_after_a_cut() {
    tokio::join!(
        relearns_after_a_cut(Via::Hyper),
        relearns_after_a_cut(Via::Reqwest)
    );
}

// ===== 8: Redis restarted empty =====

#[tokio::test]
async fn slots_reserved_before_redis_lost_them_are_not_overlapped() {
    let scope = Scope::new();
    let server = server().await;
    // One process, both adapters, one `Limits`: a slot every 100 ms.
    let limits = scope.limits(&redis_url(), Some(Pacing::new(10, Duration::from_secs(1))));
    let key = pace_key(&scope, &server);
    let mut old = Vec::new();
    for i in 0..4 {
        let (limits, url) = (limits.clone(), server.url(&format!("/old-{i}")));
        old.push(tokio::spawn(async move {
            Via::Hyper.send(&limits, RetryPolicy::default(), &url).await
        }));
    }
    // All four are given slots (the last one 300 ms ahead).
    let mut conn = direct().await;
    let start = Instant::now();
    loop {
        let pttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        if pttl >= 300 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(1), "slots reserved");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Redis loses every key of the scope (as a restart without persistence would).
    scope.flush().await;
    let mut new = Vec::new();
    for i in 0..3 {
        let (limits, url) = (limits.clone(), server.url(&format!("/new-{i}")));
        new.push(tokio::spawn(async move {
            Via::Reqwest
                .send(&limits, RetryPolicy::default(), &url)
                .await
        }));
    }
    for task in old.into_iter().chain(new) {
        assert_eq!(task.await.unwrap(), Ok(200));
    }
    let mut seen: Vec<_> = server.seen().into_iter().map(|s| (s.at, s.path)).collect();
    seen.sort();
    for pair in seen.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            gap >= Duration::from_millis(85),
            "{} went {gap:?} after {}: {seen:?}",
            pair[1].1,
            pair[0].1
        );
    }
    assert_eq!(limits.fallbacks(), 0);
}

// ===== 9: what comes from Redis is bounded; hash tags stay whole =====

#[tokio::test]
async fn cooldowns_read_from_redis_are_clamped_to_a_day() {
    let scope = Scope::new();
    let limits = scope.limits(&redis_url(), None);
    scope.subscribed(1).await;
    let mut conn = direct().await;
    // An announcement of a refusal for 585 years.
    let _: i64 = redis::cmd("PUBLISH")
        .arg(format!("{}events", scope.base()))
        .arg("another-replica refusal 18446744073709551615 http://api.example:80")
        .query_async(&mut conn)
        .await
        .unwrap();
    let uri: http::Uri = "http://api.example/".parse().unwrap();
    eventually("announcement applied", Duration::from_secs(1), || {
        limits.cooldown_remaining(&uri).is_some()
    })
    .await;
    let left = limits.cooldown_remaining(&uri).unwrap();
    assert!(left <= MAX_COOLDOWN, "{left:?}");
    // A cooldown of 300 years found by the re-read of a replica that starts.
    let _: () = redis::cmd("SET")
        .arg(format!(
            "{}cooldown:https://other.example:443",
            scope.base()
        ))
        .arg("1")
        .arg("PX")
        .arg(300_u64 * 365 * 86_400_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: i64 = redis::cmd("SADD")
        .arg(format!("{}cooldowns", scope.base()))
        .arg("https://other.example:443")
        .query_async(&mut conn)
        .await
        .unwrap();
    let late = scope.limits(&redis_url(), None);
    let other: http::Uri = "https://other.example/".parse().unwrap();
    eventually("re-read", Duration::from_secs(1), || {
        late.cooldown_remaining(&other).is_some()
    })
    .await;
    let left = late.cooldown_remaining(&other).unwrap();
    assert!(left <= MAX_COOLDOWN, "{left:?}");
    assert!(late.longest_cooldown().unwrap() <= MAX_COOLDOWN);
}

#[tokio::test]
async fn a_brace_in_the_scope_or_prefix_is_an_error() {
    for (prefix, scope) in [("p", "key{1}"), ("p", "k}"), ("{p", "key"), ("p}", "key")] {
        let err = Limits::builder()
            .redis(redis_url(), scope)
            .key_prefix(prefix)
            .build()
            .unwrap_err();
        assert!(err.to_string().contains('{'), "{prefix:?} {scope:?}: {err}");
    }
}

// ===== 10: the fallback's burst, across replicas =====

#[tokio::test]
async fn two_replicas_without_redis_let_at_most_the_burst_through_together() {
    let scope = Scope::new();
    let server = server().await;
    // Nothing listens on port 1. The fleet: 10/s, a burst of 4; each replica alone: half.
    let pacing = Some(Pacing::new(10, Duration::from_secs(1)).burst(4));
    let replica = || {
        scope
            .builder("redis://127.0.0.1:1", pacing)
            .fallback_share(0.5)
            .build()
            .unwrap()
    };
    let (a, b) = (replica(), replica());
    let mut tasks = Vec::new();
    for (via, limits) in [(Via::Hyper, &a), (Via::Reqwest, &b)] {
        for i in 0..4 {
            let (limits, url) = (limits.clone(), server.url(&format!("/{via:?}-{i}")));
            tasks.push(tokio::spawn(async move {
                via.send(&limits, RetryPolicy::default(), &url).await
            }));
        }
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), Ok(200));
    }
    let mut at: Vec<_> = server.seen().iter().map(|s| s.at).collect();
    at.sort();
    assert_eq!(at.len(), 8);
    // Each replica lets 2 through at once, then one every 200 ms.
    for (i, t) in at.iter().enumerate() {
        let together = at[i..]
            .iter()
            .take_while(|u| **u - *t < Duration::from_millis(150))
            .count();
        assert!(together <= 4, "{together} attempts within 150 ms: {at:?}");
    }
    assert!(a.fallbacks() >= 4 && b.fallbacks() >= 4);
}
