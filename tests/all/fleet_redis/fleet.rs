//! The fleet: a 429 on one replica holds back the other, pacing holds one rate across
//! replicas, and replicas on different adapters share the cooldown.

use super::*;

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
