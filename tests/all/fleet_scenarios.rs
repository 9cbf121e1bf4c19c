//! What the fleet's limits must do on every Redis deployment (TLS, Cluster), run by
//! `fleet_tls` and `fleet_cluster` against the servers they start: two replicas, one on the
//! reqwest middleware against a loopback mock, the other on the tower layer over a
//! `tower::service_fn`.
#![cfg(all(
    feature = "redis",
    feature = "tower",
    feature = "reqwest",
    any(feature = "redis-tls", feature = "redis-cluster")
))]
#![allow(dead_code)] // each deployment uses its own subset

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use telecho_retry::limits::Limits;
use telecho_retry::{RetryPolicy, TelEchoRetry};
use tokio::time::Instant;
use tower::{service_fn, ServiceBuilder, ServiceExt};

use crate::fleet_redis::eventually;
use crate::support::{Reply, Server};

/// The tower layer with `limits` over a `service_fn` that records when it is called and
/// answers 200 (`n` a 429 with `Retry-After: 1` on a path starting with `/limited`).
fn tower_replica(
    policy: RetryPolicy,
    limits: &Limits,
    calls: Arc<Mutex<Vec<Instant>>>,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<telecho_retry::body::ResponseBody<Full<Bytes>>>,
    Error = telecho_retry::RetryError,
    Future = impl Send,
> + Clone {
    let inner = service_fn(move |req: Request<Full<Bytes>>| {
        calls.lock().unwrap().push(Instant::now());
        let response = if req.uri().path().starts_with("/limited") {
            Response::builder()
                .status(429)
                .header("retry-after", "1")
                .body(Full::new(Bytes::new()))
                .unwrap()
        } else {
            Response::new(Full::new(Bytes::new()))
        };
        async move { Ok::<_, Infallible>(response) }
    });
    ServiceBuilder::new()
        .layer(TelEchoRetry::new(policy).with_limits(limits.clone()))
        .service(inner)
}

fn reqwest_replica(
    policy: RetryPolicy,
    limits: &Limits,
) -> reqwest_middleware::ClientWithMiddleware {
    reqwest_middleware::ClientBuilder::new(reqwest::Client::builder().no_proxy().build().unwrap())
        .with(TelEchoRetry::new(policy).with_limits(limits.clone()))
        .build()
}

fn get(url: &str) -> Request<Full<Bytes>> {
    Request::get(url).body(Full::new(Bytes::new())).unwrap()
}

/// Waits until `limits` is on its store: calls answer and the subscription is up.
pub(crate) async fn on_redis(limits: &Limits, within: Duration) {
    eventually("on Redis", within, || limits.is_reachable()).await;
}

/// A 429 met by `a` (reqwest) holds back `b` (tower): `b` learns it within 500 ms and its
/// next request to that origin waits out the cooldown. Then the other way round, on another
/// origin. Neither falls back.
pub(crate) async fn cooldown_relays(a: &Limits, b: &Limits) {
    let policy = RetryPolicy::builder()
        .max_retries(0)
        .retry_after_spread(Duration::ZERO)
        .build();
    let server = Server::limited("1").await;
    let origin: http::Uri = server.url("/").parse().unwrap();
    let fallbacks = (a.fallbacks(), b.fallbacks());
    let a_client = reqwest_replica(policy.clone(), a);
    let b_calls = Arc::default();
    let b_svc = tower_replica(policy, b, Arc::clone(&b_calls));

    let resp = a_client.get(server.url("/limited-a")).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    let limited = server.seen()[0].at;
    eventually("B learns A's 429", Duration::from_millis(500), || {
        b.cooldown_remaining(&origin).is_some()
    })
    .await;
    eprintln!("B learned A's 429 after {:?}", limited.elapsed());
    let resp = tokio::time::timeout(
        Duration::from_secs(3),
        b_svc.clone().oneshot(get(&server.url("/ok-b"))),
    )
    .await
    .expect("bounded")
    .unwrap();
    assert_eq!(resp.status(), 200);
    let sent = b_calls.lock().unwrap()[0];
    assert!(
        sent.duration_since(limited) >= Duration::from_millis(950),
        "B sent {:?} after A's 429",
        sent.duration_since(limited)
    );

    // The other way round, on another origin.
    let other = "http://other.example/limited";
    let resp = b_svc.oneshot(get(other)).await.unwrap();
    assert_eq!(resp.status(), 429);
    let other: http::Uri = other.parse().unwrap();
    eventually("A learns B's 429", Duration::from_millis(500), || {
        a.cooldown_remaining(&other).is_some()
    })
    .await;
    assert_eq!((a.fallbacks(), b.fallbacks()), fallbacks, "no fallback");
}

/// `a` (reqwest) and `b` (tower), paced at `rate`/s each through the same scope, with 3
/// requests in flight each for 2.5 s, send `rate`/s together (within 5 %), without
/// falling back.
pub(crate) async fn pacing_holds(a: &Limits, b: &Limits, rate: u32) {
    let policy = RetryPolicy::default();
    let server = Server::start(|_| Reply::status(200)).await;
    let fallbacks = (a.fallbacks(), b.fallbacks());
    let a_client = reqwest_replica(policy.clone(), a);
    let b_calls = Arc::default();
    let b_svc = tower_replica(policy, b, Arc::clone(&b_calls));
    let until = Instant::now() + Duration::from_millis(2500);
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let a_client = a_client.clone();
        let url = server.url("/a");
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                let resp = a_client.get(&url).send().await.unwrap();
                assert_eq!(resp.status(), 200);
            }
        }));
        let b_svc = b_svc.clone();
        let url = server.url("/b");
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                let resp = b_svc.clone().oneshot(get(&url)).await.unwrap();
                assert_eq!(resp.status(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut calls: Vec<Instant> = b_calls.lock().unwrap().clone();
    let from_b = calls.len();
    calls.extend(server.seen().iter().map(|s| s.at));
    calls.sort();
    let span = calls.last().unwrap().duration_since(calls[0]).as_secs_f64();
    let measured = (calls.len() - 1) as f64 / span;
    let rate = f64::from(rate);
    assert!(
        from_b > 0 && from_b < calls.len(),
        "both replicas sent: {from_b} of {}",
        calls.len()
    );
    assert!(
        (measured - rate).abs() / rate < 0.05,
        "{measured:.2}/s over {span:.2} s ({} calls)",
        calls.len()
    );
    assert_eq!((a.fallbacks(), b.fallbacks()), fallbacks, "no fallback");
    eprintln!("{} calls, {measured:.2}/s", calls.len());
}
