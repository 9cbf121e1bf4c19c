//! Edges 6-8: background calls have the background bound; relearning after a cut; Redis
//! restarted empty.

use super::*;

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
