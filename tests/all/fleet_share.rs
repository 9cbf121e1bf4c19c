//! The share of the fleet's rate a replica paces at alone while Redis cannot be reached:
//! one over the replicas counted alive in Redis, as they come and go, at a learned rate
//! and at a fixed one; through the tower layer and the reqwest middleware. Real time and
//! the real Redis, as in `fleet_adaptive`.
#![cfg(all(
    feature = "redis",
    feature = "tower",
    feature = "reqwest",
    feature = "tracing"
))]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use telecho_retry::limits::{Limits, Pacing};
use telecho_retry::{RetryPolicy, TelEchoRetry};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::fleet_adaptive::{adaptive, fleet_paces_at, last_interval, replica};
use crate::fleet_redis::{direct, get, redis_addr, redis_url, Scope};
use crate::support::{Proxy, Reply, Server};

/// The number of replicas of `scope` counted alive in Redis.
async fn alive(scope: &Scope) -> i64 {
    redis::cmd("ZCARD")
        .arg(format!("{}replicas", scope.base()))
        .query_async(&mut direct().await)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fallback_share_follows_the_replicas_alive_as_they_come_and_go() {
    let scope = Scope::new();
    let proxy = Proxy::start(redis_addr()).await;
    let me = adaptive(&scope, &format!("redis://{}", proxy.addr));
    let mut others: Vec<Limits> = (0..3).map(|_| adaptive(&scope, &redis_url())).collect();
    let log: Arc<Mutex<Vec<(Instant, bool)>>> = Arc::default();
    let svc = replica(&me, RetryPolicy::default(), &log, Arc::new(|| true));
    let send = |n: usize| {
        let svc = svc.clone();
        async move {
            for _ in 0..n {
                assert_eq!(svc.clone().oneshot(get()).await.unwrap().status(), 200);
            }
        }
    };
    scope.subscribed(4).await;
    fleet_paces_at(&scope, "http://api.example:80", 40.0).await;
    let start = Instant::now();
    while alive(&scope).await < 4 || start.elapsed() < Duration::from_millis(1100) {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "replicas not counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(format!("{me:?}").contains("fallback_share: 0.25"), "{me:?}");

    // Four alive: without Redis this one paces at a quarter of 40/s.
    send(3).await;
    proxy.down();
    send(6).await;
    let alone = last_interval(&log, 5);
    assert!(
        (0.085..0.15).contains(&alone),
        "one send every {alone:.3} s"
    );

    // Three stop: within a beat this one counts itself alone, and paces at all of it,
    // though it asked Redis nothing since.
    proxy.up();
    others.clear();
    counted(&me, "1.0").await;
    proxy.down();
    send(6).await;
    let alone = last_interval(&log, 5);
    assert!(alone < 0.05, "one send every {alone:.3} s");
    assert_eq!(log.lock().unwrap().len(), 15, "nothing lost");
}

/// Waits until `limits` counts `share` as its fallback share (at most 3 s).
async fn counted(limits: &Limits, share: &str) {
    let start = Instant::now();
    while !format!("{limits:?}").contains(&format!("fallback_share: {share}")) {
        assert!(start.elapsed() < Duration::from_secs(3), "{limits:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Fixed pacing at 40/s: the mean interval between the fallback's sends of one replica
/// (through `send_of`'s adapter; `sends`: the times its attempts were sent) with two
/// replicas alive, then four. Redis is cut before the replica sends anything: its origin's
/// fallback pacer is made while Redis is away; then more replicas come, counted while it
/// sends nothing, and Redis is cut again.
async fn fixed_rate_fallback_intervals<S, Fut>(
    send_of: impl Fn(&Limits) -> S,
    sends: impl Fn() -> Vec<Instant>,
) -> (f64, f64)
where
    S: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let scope = Scope::new();
    let pacing = Some(Pacing::new(40, Duration::from_secs(1)));
    let proxy = Proxy::start(redis_addr()).await;
    let me = scope.limits(&format!("redis://{}", proxy.addr), pacing);
    let mut others = vec![scope.limits(&redis_url(), pacing)];
    let send = send_of(&me);
    let mut intervals = Vec::new();
    for share in ["0.5", "0.25"] {
        counted(&me, share).await;
        // Debug shows the fleet's pacing, not the fallback's share of it.
        let shown = format!("{me:?}");
        assert!(shown.contains("requests: 40, period: 1s"), "{shown}");
        assert_eq!(shown.matches("Pacing {").count(), 1, "{shown}");
        // Without Redis the fallback paces at its share of 40/s.
        proxy.down();
        for _ in 0..6 {
            send().await;
        }
        let sent = sends();
        let last = &sent[sent.len() - 5..];
        intervals.push(last[4].duration_since(last[0]).as_secs_f64() / 4.0);
        proxy.up();
        others.extend((0..2).map(|_| scope.limits(&redis_url(), pacing)));
    }
    assert!(me.fallbacks() > 0, "paced in process");
    assert_eq!(sends().len(), 12, "nothing lost");
    (intervals[0], intervals[1])
}

/// Half of 40/s with two replicas alive (one send every 50 ms), a quarter with four
/// (100 ms). A fallback fixed at a quarter sends every 100 ms with two.
fn assert_follows_the_count((two, four): (f64, f64)) {
    assert!(
        (0.04..0.075).contains(&two),
        "two alive: one send every {two:.3} s"
    );
    assert!(
        (0.085..0.15).contains(&four),
        "four alive: one send every {four:.3} s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_rate_fallback_follows_the_replicas_alive() {
    let log: Arc<Mutex<Vec<(Instant, bool)>>> = Arc::default();
    let intervals = fixed_rate_fallback_intervals(
        |limits| {
            let svc = replica(limits, RetryPolicy::default(), &log, Arc::new(|| true));
            move || {
                let svc = svc.clone();
                async move {
                    assert_eq!(svc.oneshot(get()).await.unwrap().status(), 200);
                }
            }
        },
        || log.lock().unwrap().iter().map(|(at, _)| *at).collect(),
    )
    .await;
    assert_follows_the_count(intervals);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_rate_fallback_follows_the_replicas_alive_through_the_middleware() {
    let server = Server::start(|_| Reply::status(200)).await;
    let intervals = fixed_rate_fallback_intervals(
        |limits| {
            let client = reqwest_middleware::ClientBuilder::new(
                reqwest::Client::builder().no_proxy().build().unwrap(),
            )
            .with(TelEchoRetry::default().with_limits(limits.clone()))
            .build();
            let url = server.url("/v1/calls");
            move || {
                let (client, url) = (client.clone(), url.clone());
                async move {
                    assert_eq!(client.get(url).send().await.unwrap().status(), 200);
                }
            }
        },
        || server.seen().iter().map(|seen| seen.at).collect(),
    )
    .await;
    assert_follows_the_count(intervals);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_with_a_fixed_share_is_counted_by_the_others() {
    let scope = Scope::new();
    let pacing = Some(Pacing::new(40, Duration::from_secs(1)));
    let counting = scope.limits(&redis_url(), pacing);
    let fixed = scope
        .builder(&redis_url(), pacing)
        .fallback_share(0.1)
        .build()
        .unwrap();
    counted(&counting, "0.5").await;
    assert!(
        format!("{fixed:?}").contains("fallback_share: 0.1"),
        "{fixed:?}"
    );
    drop(fixed);
    counted(&counting, "1.0").await;
}
