//! Adaptive pacing shared by a fleet through a real Redis (`Pacing::adaptive()` with
//! `.redis(..)`): replicas are `Limits` values of one scope; real time, since Redis' clock
//! is real. Through the tower layer over `tower::service_fn` and through the reqwest
//! middleware against a loopback server.
#![cfg(all(
    feature = "redis",
    feature = "tower",
    feature = "reqwest",
    feature = "tracing"
))]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use telecho_retry::limits::{Limits, Pacing};
use telecho_retry::{RetryPolicy, TelEchoRetry};
use tokio::time::Instant;
use tower::{service_fn, ServiceBuilder, ServiceExt};

use crate::adaptive_pacing::{answer, Bucket};
use crate::fleet_redis::{direct, get, redis_addr, redis_url, Scope};
use crate::observe_support::Capture;
use crate::support::{Proxy, Reply, Server};

type Req = Request<Full<Bytes>>;

pub(crate) fn adaptive(scope: &Scope, url: &str) -> Limits {
    scope.limits(url, Some(Pacing::adaptive()))
}

/// The fleet's learned rate for the test origin, as Redis holds it.
pub(crate) async fn fleet_rate(scope: &Scope, origin: &str) -> Option<f64> {
    let key = format!("{}rate:{origin}", scope.base());
    let rate: Option<String> = redis::cmd("HGET")
        .arg(key)
        .arg("r")
        .query_async(&mut direct().await)
        .await
        .unwrap();
    rate.and_then(|r| r.parse().ok())
}

/// A tower replica over a `service_fn` that answers after 20 ms, 200 when `admits()` says
/// so (else 429), and logs each send: when, and whether it was served.
pub(crate) fn replica(
    limits: &Limits,
    policy: RetryPolicy,
    log: &Arc<Mutex<Vec<(Instant, bool)>>>,
    admits: Arc<dyn Fn() -> bool + Send + Sync>,
) -> impl tower::Service<
    Req,
    Response = Response<telecho_retry::body::ResponseBody<Full<Bytes>>>,
    Error = telecho_retry::RetryError,
    Future = impl Send,
> + Clone {
    let log = Arc::clone(log);
    let inner = service_fn(move |_req: Req| {
        let ok = admits();
        log.lock().unwrap().push((Instant::now(), ok));
        async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok::<_, Infallible>(answer(ok, 1, None))
        }
    });
    ServiceBuilder::new()
        .layer(TelEchoRetry::new(policy).with_limits(limits.clone()))
        .service(inner)
}

#[tokio::test]
async fn the_429s_of_one_burst_seen_by_four_replicas_cut_the_fleet_rate_once() {
    let capture = Capture::default();
    let _guard = capture.install();
    let scope = Scope::new();
    let fleet: Vec<Limits> = (0..4).map(|_| adaptive(&scope, &redis_url())).collect();
    scope.subscribed(4).await;
    let log = Arc::default();
    let policy = RetryPolicy::builder().max_retries(0).build();
    let throttled: Arc<dyn Fn() -> bool + Send + Sync> = Arc::new(|| false);
    let replicas: Vec<_> = fleet
        .iter()
        .map(|l| replica(l, policy.clone(), &log, Arc::clone(&throttled)))
        .collect();
    // Eight requests, all sent before the first 429 comes back.
    let burst = replicas
        .iter()
        .flat_map(|r| [r.clone().oneshot(get()), r.clone().oneshot(get())]);
    for resp in futures_util::future::join_all(burst).await {
        assert_eq!(resp.unwrap().status(), 429);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cuts = capture
        .get()
        .events
        .iter()
        .filter(|e| e.fields.get("message").map(String::as_str) == Some("pacing rate cut"))
        .count();
    assert_eq!(cuts, 1, "one congestion event, one cut across the fleet");
    let rate = fleet_rate(&scope, "http://api.example:80")
        .await
        .expect("a rate");
    assert!(rate > 0.0, "{rate}");

    // Every replica now takes its slots from that rate: twelve sends across the fleet are
    // spaced (the rate grows, after a first cut, at most as fast as the fleet sends).
    let served: Arc<dyn Fn() -> bool + Send + Sync> = Arc::new(|| true);
    let log2: Arc<Mutex<Vec<(Instant, bool)>>> = Arc::default();
    let replicas: Vec<_> = fleet
        .iter()
        .map(|l| replica(l, policy.clone(), &log2, Arc::clone(&served)))
        .collect();
    let sends = replicas
        .iter()
        .flat_map(|r| (0..3).map(|_| r.clone().oneshot(get())));
    for resp in futures_util::future::join_all(sends).await {
        assert_eq!(resp.unwrap().status(), 200);
    }
    let log2 = log2.lock().unwrap();
    let span = log2
        .last()
        .unwrap()
        .0
        .duration_since(log2[0].0)
        .as_secs_f64();
    let sent_rate = (log2.len() - 1) as f64 / span;
    // Unpaced, the twelve would go within a few ms (hundreds per second).
    assert!(
        sent_rate < 20.0,
        "{sent_rate:.2}/s across the fleet, learned {rate:.2}/s"
    );
}

/// 4 replicas × 4 closed-loop tasks for `secs` against one token bucket of 40/s (a tenth
/// of a second's worth of burst, `Retry-After: 1`): (served share of the limit, share of
/// sends answered 429), both after the first `settle` seconds.
async fn four_replicas(limits: impl Fn() -> Limits, secs: u64, settle: u64) -> (f64, f64) {
    let start = Instant::now();
    let bucket = Arc::new(Mutex::new(Bucket::new(start, |_| 40.0)));
    let admits: Arc<dyn Fn() -> bool + Send + Sync> =
        Arc::new(move || bucket.lock().unwrap().admit());
    let log: Arc<Mutex<Vec<(Instant, bool)>>> = Arc::default();
    let end = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let svc = replica(&limits(), RetryPolicy::default(), &log, Arc::clone(&admits));
        for _ in 0..4 {
            let svc = svc.clone();
            tasks.push(tokio::spawn(async move {
                while Instant::now() < end {
                    let _ = svc.clone().oneshot(get()).await;
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let from = start + Duration::from_secs(settle);
    let log = log.lock().unwrap();
    let sends: Vec<bool> = log
        .iter()
        .filter(|(at, _)| *at >= from && *at < end)
        .map(|(_, ok)| *ok)
        .collect();
    let served = sends.iter().filter(|ok| **ok).count() as f64;
    let limited = (sends.len() as f64 - served) / (sends.len() as f64).max(1.0);
    (served / (40.0 * (secs - settle) as f64), limited)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_learns_a_token_bucket_it_was_never_told() {
    let (adaptive_scope, unpaced_scope) = (Scope::new(), Scope::new());
    let (learned, unpaced) = tokio::join!(
        four_replicas(|| adaptive(&adaptive_scope, &redis_url()), 8, 3),
        four_replicas(|| unpaced_scope.limits(&redis_url(), None), 8, 3),
    );
    eprintln!("(served share, 429 share) over 5 s: adaptive {learned:?}, unpaced {unpaced:?}");
    assert!(
        learned.1 < 0.05,
        "adaptive pacing met a 429 storm: {learned:?}"
    );
    assert!(learned.0 > unpaced.0, "{learned:?} against {unpaced:?}");
}

#[tokio::test]
async fn a_quota_seen_by_one_replica_paces_the_other_through_the_middleware() {
    let scope = Scope::new();
    let (a, b) = (
        adaptive(&scope, &redis_url()),
        adaptive(&scope, &redis_url()),
    );
    scope.subscribed(2).await;
    // 9 of 100 left for the next 2 s (under a tenth: the quota binds): 4.5/s, less 5 %.
    let server = Server::start(|seen| {
        if seen.path.starts_with("/quota") {
            Reply::status(200)
                .header("ratelimit-policy", "\"default\";q=100;w=10")
                .header("ratelimit", "\"default\";r=9;t=2")
        } else {
            Reply::status(200)
        }
    })
    .await;
    let client = |limits: &Limits| {
        reqwest_middleware::ClientBuilder::new(
            reqwest::Client::builder().no_proxy().build().unwrap(),
        )
        .with(TelEchoRetry::default().with_limits(limits.clone()))
        .build()
    };
    let (a_client, b_client) = (client(&a), client(&b));
    let resp = a_client.get(server.url("/quota")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let origin = format!("http://{}", server.addr);
    let mut rate = None;
    for _ in 0..100 {
        rate = fleet_rate(&scope, &origin).await;
        if rate.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rate = rate.expect("A wrote the quota's rate");
    assert!((4.0..=4.5).contains(&rate), "{rate}");
    // B never saw a header, yet its sends are paced at the fleet's rate.
    tokio::time::sleep(Duration::from_millis(100)).await; // B hears the announcement
    let start = Instant::now();
    for _ in 0..6 {
        let resp = b_client.get(server.url("/plain")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    let took = start.elapsed().as_secs_f64();
    eprintln!("6 sends in {took:.2} s at {rate:.2}/s");
    assert!(took >= 4.0 / rate, "6 sends in {took:.2} s at {rate:.2}/s");
}

#[tokio::test]
async fn without_redis_a_replica_paces_at_its_share_of_the_last_fleet_rate() {
    let proxy = Proxy::start(redis_addr()).await;
    let scope = Scope::new();
    let url = format!("redis://{}", proxy.addr);
    let limits = scope
        .builder(&url, Some(Pacing::adaptive()))
        .fallback_share(0.5)
        .build()
        .unwrap();
    scope.subscribed(1).await;
    // The fleet learned 20/s (another replica's quota, say).
    let key = format!("{}rate:http://api.example:80", scope.base());
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("r")
        .arg("20")
        .arg("wmax")
        .arg("20")
        .arg("from")
        .arg(u64::MAX / 2) // regrowth starts far ahead: the rate holds
        .query_async(&mut direct().await)
        .await
        .unwrap();
    let log: Arc<Mutex<Vec<(Instant, bool)>>> = Arc::default();
    let served: Arc<dyn Fn() -> bool + Send + Sync> = Arc::new(|| true);
    let svc = replica(&limits, RetryPolicy::default(), &log, served);
    // Announced to this replica by pub/sub in production; here its first 429 would do
    // it: send a few at the fleet's rate to learn it.
    let scope_on = format!("{} rate 0 http://api.example:80", "another-replica");
    let _: i64 = redis::cmd("PUBLISH")
        .arg(format!("{}events", scope.base()))
        .arg(scope_on)
        .query_async(&mut direct().await)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    for _ in 0..4 {
        svc.clone().oneshot(get()).await.unwrap();
    }
    proxy.down();
    let before = log.lock().unwrap().len();
    let start = Instant::now();
    for _ in 0..6 {
        svc.clone().oneshot(get()).await.unwrap();
    }
    let took = start.elapsed().as_secs_f64();
    assert!(limits.fallbacks() > 0, "paced in process");
    assert_eq!(log.lock().unwrap().len(), before + 6, "nothing lost");
    // 10/s alone (half of 20/s): six sends take at least five intervals of 0.1 s.
    eprintln!("6 sends in {took:.2} s without Redis");
    assert!((0.45..1.0).contains(&took), "6 sends in {took:.2} s");
}

/// Stores a fleet rate of `rate`/s for `origin` that holds (its regrowth starts far ahead),
/// and announces it as another replica would.
pub(crate) async fn fleet_paces_at(scope: &Scope, origin: &str, rate: f64) {
    let mut conn = direct().await;
    let key = format!("{}rate:{origin}", scope.base());
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("r")
        .arg(rate)
        .arg("wmax")
        .arg(rate)
        .arg("from")
        .arg(u64::MAX / 2)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: i64 = redis::cmd("SADD")
        .arg(format!("{}learned", scope.base()))
        .arg(origin)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: i64 = redis::cmd("PUBLISH")
        .arg(format!("{}events", scope.base()))
        .arg(format!("another-replica rate 0 {origin}"))
        .query_async(&mut conn)
        .await
        .unwrap();
}

/// The mean interval between the last `n` sends in `log`.
pub(crate) fn last_interval(log: &Mutex<Vec<(Instant, bool)>>, n: usize) -> f64 {
    let log = log.lock().unwrap();
    let last = &log[log.len() - n..];
    last[n - 1].0.duration_since(last[0].0).as_secs_f64() / (n - 1) as f64
}

#[tokio::test]
async fn a_replica_that_starts_after_the_announcement_paces_at_the_fleet_rate() {
    let scope = Scope::new();
    fleet_paces_at(&scope, "http://api.example:80", 10.0).await;
    let late = adaptive(&scope, &redis_url());
    scope.subscribed(1).await;
    tokio::time::sleep(Duration::from_millis(50)).await; // its re-read
    let log: Arc<Mutex<Vec<(Instant, bool)>>> = Arc::default();
    let svc = replica(&late, RetryPolicy::default(), &log, Arc::new(|| true));
    for _ in 0..6 {
        assert_eq!(svc.clone().oneshot(get()).await.unwrap().status(), 200);
    }
    let interval = last_interval(&log, 6);
    assert!(
        (0.09..0.15).contains(&interval),
        "one send every {interval:.3} s"
    );
}

#[tokio::test]
async fn a_rate_redis_lost_is_written_back_not_dropped() {
    let (scope, limits) = replica_paced_at("http://api.example:80", 10.0).await;
    let log: Arc<Mutex<Vec<(Instant, bool)>>> = Arc::default();
    let svc = replica(&limits, RetryPolicy::default(), &log, Arc::new(|| true));
    for _ in 0..3 {
        svc.clone().oneshot(get()).await.unwrap();
    }
    // Redis restarts empty.
    scope.flush().await;
    for _ in 0..6 {
        svc.clone().oneshot(get()).await.unwrap();
    }
    // Written back as after a cut: at 7/s, regrowing towards 10/s.
    let interval = last_interval(&log, 5);
    assert!(
        (0.09..0.16).contains(&interval),
        "one send every {interval:.3} s"
    );
    let rate = fleet_rate(&scope, "http://api.example:80").await;
    assert!(rate.is_some_and(|r| (6.9..=10.1).contains(&r)), "{rate:?}");
    // As a cut: a 429 to a request sent before it is the same congestion event.
    let cut: Option<String> = redis::cmd("HGET")
        .arg(format!("{}rate:http://api.example:80", scope.base()))
        .arg("cut")
        .query_async(&mut direct().await)
        .await
        .unwrap();
    assert!(cut.is_some(), "the write-back counts as a cut");
}

/// A replica of a new scope whose fleet paces `origin` at `rate`/s, as another replica
/// announced.
pub(crate) async fn replica_paced_at(origin: &str, rate: f64) -> (Scope, Limits) {
    let scope = Scope::new();
    let limits = adaptive(&scope, &redis_url());
    scope.subscribed(1).await;
    fleet_paces_at(&scope, origin, rate).await;
    tokio::time::sleep(Duration::from_millis(50)).await; // it hears the announcement
    (scope, limits)
}
