//! Edges 3-5: the round trip's bound is the call timeout; a request dropped while it waits,
//! and a reply that comes after the call timeout, give their slot back.

use super::*;

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
