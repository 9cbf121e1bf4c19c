//! Edges 9-10: what comes from Redis is bounded, hash tags stay whole; the fallback's
//! burst across replicas.

use super::*;

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
