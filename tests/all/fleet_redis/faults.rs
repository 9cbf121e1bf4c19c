//! Faults: a cut connection, a paused, restarted or flushed Redis, an evicted script, no
//! Redis at all; the fallback's rate and a deadline nearer than the call timeout.

use super::*;

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
