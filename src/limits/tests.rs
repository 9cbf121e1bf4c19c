//! Unit tests of the in-process limits: origins, the budget, the cooldown, the table.

use std::time::Duration;

use tokio::time::Instant;

use super::table::MAX_ORIGINS;
use super::*;

fn limits(budget: RetryBudget) -> Arc<dyn OriginLimits> {
    Limits::builder()
        .retry_budget(budget)
        .build()
        .origin(&Origin::default())
}

/// Takes retries until the budget refuses one (at most `max`).
fn take(l: &Arc<dyn OriginLimits>, max: usize) -> usize {
    (0..max)
        .filter(|_| l.withdraw(Instant::now()).is_some())
        .count()
}

fn remaining(scope: &Arc<dyn OriginLimits>) -> Option<Duration> {
    scope.cooldown_remaining(Instant::now())
}

#[tokio::test(start_paused = true)]
async fn floor_allows_min_per_sec_times_ttl() {
    let l = limits(RetryBudget::new(Duration::from_secs(10), 1, 0.0));
    let allowed = take(&l, 100);
    assert_eq!(allowed, 10);
}

#[tokio::test(start_paused = true)]
async fn deposits_buy_a_share_of_retries() {
    let l = limits(RetryBudget::new(Duration::from_secs(10), 0, 0.2));
    for _ in 0..50 {
        l.deposit(Instant::now());
    }
    let allowed = take(&l, 100);
    assert_eq!(allowed, 10, "20 % of 50 requests");
}

#[tokio::test(start_paused = true)]
async fn every_ratio_allows_its_share_of_100_requests() {
    for tenth in 1..=10 {
        for ratio in [tenth as f32 / 10.0, tenth as f32 / 10.0 - 0.05, 1.0 / 3.0] {
            let l = limits(RetryBudget::new(Duration::from_secs(10), 0, ratio));
            for _ in 0..100 {
                l.deposit(Instant::now());
            }
            let allowed = take(&l, 1000) as i64;
            let want = (100.0 * f64::from(ratio)).floor() as i64;
            assert!(
                (allowed - want).abs() <= 1,
                "ratio {ratio}: {allowed} retries for 100 requests, want {want} ± 1"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn spent_budget_refills_as_the_window_slides() {
    let l = limits(RetryBudget::new(Duration::from_secs(10), 1, 0.0));
    assert_eq!(take(&l, 100), 10);
    assert!(l.withdraw(Instant::now()).is_none());
    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(
        l.withdraw(Instant::now()).is_none(),
        "withdrawals still inside the window"
    );
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(take(&l, 100), 10);
}

#[tokio::test(start_paused = true)]
async fn refund_gives_a_retry_back() {
    let l = limits(RetryBudget::new(Duration::from_secs(10), 1, 0.0));
    assert_eq!(take(&l, 9), 9);
    let last = l.withdraw(Instant::now()).expect("the tenth retry");
    assert!(l.withdraw(Instant::now()).is_none());
    l.refund(last);
    assert!(l.withdraw(Instant::now()).is_some());
    assert!(l.withdraw(Instant::now()).is_none());
}

#[tokio::test(start_paused = true)]
async fn a_refund_after_its_slot_left_the_window_credits_nothing() {
    let l = limits(RetryBudget::new(Duration::from_secs(10), 1, 0.0));
    let early = l.withdraw(Instant::now()).expect("a retry");
    assert_eq!(take(&l, 100), 9);
    tokio::time::advance(Duration::from_secs(11)).await;
    // The window slid past `early`: ten retries are allowed again, no more.
    l.refund(early);
    assert_eq!(take(&l, 100), 10, "the stale refund credited nothing");
}

#[tokio::test(start_paused = true)]
async fn the_window_is_aligned_on_the_clock_not_on_traffic() {
    // 1 retry per second floor over 10 s: 10 retries per window. Irregular traffic
    // (a withdrawal every 0.7 s) never sees more than 10 retries within any 10 s.
    let l = limits(RetryBudget::new(Duration::from_secs(10), 1, 0.0));
    let mut granted: Vec<Instant> = Vec::new();
    for _ in 0..200 {
        if l.withdraw(Instant::now()).is_some() {
            granted.push(Instant::now());
        }
        tokio::time::advance(Duration::from_millis(700)).await;
    }
    for (i, at) in granted.iter().enumerate() {
        let within = granted[i..]
            .iter()
            .take_while(|t| t.duration_since(*at) < Duration::from_secs(10))
            .count();
        assert!(within <= 10, "{within} retries within 10 s from {at:?}");
    }
    // And the budget is used: about 10 per 10 s over 140 s.
    assert!(granted.len() >= 120, "{} granted", granted.len());
}

#[tokio::test(start_paused = true)]
async fn over_any_ttl_the_retries_stay_within_their_share_of_the_requests() {
    // 20 %, no floor: steady traffic of 10 requests a second, a retry asked after each.
    let l = limits(RetryBudget::new(Duration::from_secs(10), 0, 0.2));
    let mut requests: Vec<Instant> = Vec::new();
    let mut retries: Vec<Instant> = Vec::new();
    for i in 0..600u64 {
        l.deposit(Instant::now());
        requests.push(Instant::now());
        if l.withdraw(Instant::now()).is_some() {
            retries.push(Instant::now());
        }
        // Irregular gaps: 50, 100 or 150 ms.
        tokio::time::advance(Duration::from_millis(50 * (1 + i % 3))).await;
    }
    let end = *requests.last().unwrap();
    let mut start = requests[0];
    while start + Duration::from_secs(10) <= end {
        let window = |v: &Vec<Instant>| {
            v.iter()
                .filter(|t| **t >= start && **t < start + Duration::from_secs(10))
                .count() as f64
        };
        let (req, ret) = (window(&requests), window(&retries));
        // Requests up to 10 s before the window's last retry count for it: at most one
        // window's worth of requests more than this window's.
        assert!(
            ret <= 0.2 * (req + 100.0) + 1.0,
            "{ret} retries for {req} requests from {start:?}"
        );
        start += Duration::from_millis(250);
    }
    // Over the whole run, the share is what the docs say (±1 per window).
    let share = retries.len() as f64 / requests.len() as f64;
    assert!((0.17..=0.21).contains(&share), "share {share}");
}

#[tokio::test(start_paused = true)]
async fn no_budget_never_refuses() {
    let l = Limits::builder()
        .without_retry_budget()
        .build()
        .origin(&Origin::default());
    assert!((0..10_000).all(|_| l.withdraw(Instant::now()).is_some()));
}

#[test]
fn out_of_range_settings_are_clamped() {
    let b = RetryBudget::new(Duration::ZERO, u32::MAX, f32::NAN);
    assert_eq!(b.ttl(), Duration::from_secs(1));
    assert_eq!(b.retry_ratio(), 0.0);
    let b = RetryBudget::new(Duration::from_secs(3600), 0, 5000.0);
    assert_eq!(b.ttl(), Duration::from_secs(60));
    assert_eq!(b.retry_ratio(), 1000.0);
}

#[tokio::test(start_paused = true)]
async fn cooldown_keeps_the_latest_instant() {
    let l = Limits::default().origin(&Origin::default());
    assert_eq!(remaining(&l), None);
    let now = Instant::now();
    l.cool_down_until(now + Duration::from_secs(5));
    l.cool_down_until(now + Duration::from_secs(2));
    assert_eq!(remaining(&l), Some(Duration::from_secs(5)));
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(remaining(&l), None);
}

#[tokio::test(start_paused = true)]
async fn cooldown_can_be_turned_off() {
    let l = Limits::builder()
        .shared_cooldown(false)
        .build()
        .origin(&Origin::default());
    l.cool_down_until(Instant::now() + Duration::from_secs(5));
    assert_eq!(remaining(&l), None);
}

#[tokio::test(start_paused = true)]
async fn origins_have_their_own_cooldown_and_budget() {
    let shared = Limits::builder()
        .retry_budget(RetryBudget::new(Duration::from_secs(10), 1, 0.0))
        .build();
    let a: http::Uri = "http://api.example:8080/v1/calls".parse().unwrap();
    let a_again: http::Uri = "HTTP://API.EXAMPLE:8080/other".parse().unwrap();
    let b: http::Uri = "http://api.example:8081/v1/calls".parse().unwrap();
    let (a, a_again, b) = (
        Origin::of_uri(&a),
        Origin::of_uri(&a_again),
        Origin::of_uri(&b),
    );
    shared
        .origin(&a)
        .cool_down_until(Instant::now() + Duration::from_secs(30));
    let now = Instant::now();
    assert_eq!(
        shared.store.cooldown_remaining(&a_again, now),
        Some(Duration::from_secs(30))
    );
    assert_eq!(shared.store.cooldown_remaining(&b, now), None);
    assert_eq!(take(&shared.origin(&a), 100), 10);
    assert_eq!(take(&shared.origin(&b), 100), 10);
}

#[test]
fn default_ports_are_filled_in() {
    let explicit: http::Uri = "https://h:443/".parse().unwrap();
    let implicit: http::Uri = "https://h/".parse().unwrap();
    assert_eq!(
        Origin::of_uri(&explicit).key(),
        Origin::of_uri(&implicit).key()
    );
    let relative: http::Uri = "/v1/agents".parse().unwrap();
    assert_eq!(Origin::of_uri(&relative), Origin::default());
}

#[test]
fn origins_compare_display_and_hash_without_case_user_info_or_default_ports() {
    let a: http::Uri = "https://user:secret@API.Example:443/v1?key=k"
        .parse()
        .unwrap();
    let b: http::Uri = "https://api.example/".parse().unwrap();
    let c: http::Uri = "https://api.example:/".parse().unwrap();
    let (a, b, c) = (Origin::of_uri(&a), Origin::of_uri(&b), Origin::of_uri(&c));
    assert_eq!(a, b);
    assert_eq!(b, c, "an empty port is the default port");
    assert_eq!(a.key(), c.key());
    assert_eq!(a.to_string(), "https://api.example:443");
    assert!(!format!("{a} {a:?}").contains("secret"));
    let other: http::Uri = "https://api.example:8443/".parse().unwrap();
    assert_ne!(a, Origin::of_uri(&other));
}

#[test]
fn uri_and_parts_give_the_same_origin() {
    for (uri, scheme, host, port) in [
        ("https://API.example/v1", "https", "api.example", None),
        (
            "http://user:secret@h.example:8080/x",
            "http",
            "h.example",
            Some(8080),
        ),
        ("http://[::1]:9000/", "http", "[::1]", Some(9000)),
        ("http://[::1]/", "http", "[::1]", None),
    ] {
        let parsed: http::Uri = uri.parse().unwrap();
        let of_uri = Origin::of_uri(&parsed);
        let from_parts = Origin::new(Some(scheme), Some(host), port);
        assert_eq!(of_uri.key(), from_parts.key(), "{uri}");
    }
    let a: http::Uri = "http://h.example:8080/".parse().unwrap();
    let b: http::Uri = "http://h.example:8081/".parse().unwrap();
    assert_ne!(Origin::of_uri(&a).key(), Origin::of_uri(&b).key());
}

#[tokio::test(start_paused = true)]
async fn past_the_origin_bound_every_refusal_is_kept() {
    let store = LocalStore::new(None, true, None);
    let far = Instant::now() + Duration::from_secs(3600);
    let hosts: Vec<String> = (0..MAX_ORIGINS + 44).map(|i| format!("h{i}")).collect();
    for h in &hosts {
        store
            .origin(&Origin::new(Some("http"), Some(h), None))
            .refuse_until(far);
    }
    for h in &hosts {
        let o = store.origin(&Origin::new(Some("http"), Some(h), None));
        assert_eq!(
            o.refusal_remaining(Instant::now()),
            Some(Duration::from_secs(3600)),
            "{h}"
        );
    }
    assert!(store.kept() <= MAX_ORIGINS);
}

#[tokio::test(start_paused = true)]
async fn a_paced_origin_keeps_its_pacing_past_the_bound() {
    let store = LocalStore::new(None, true, Some(Pacing::new(1, Duration::from_secs(10))));
    let paced = Origin::new(Some("http"), Some("paced.example"), None);
    assert!(matches!(
        store.origin(&paced).pace(Duration::ZERO, None),
        Pace::Go
    ));
    let hosts: Vec<String> = (0..2 * MAX_ORIGINS).map(|i| format!("h{i}")).collect();
    for h in &hosts {
        let _ = store.origin(&Origin::new(Some("http"), Some(h), None));
    }
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(
        matches!(
            store.origin(&paced).pace(Duration::ZERO, None),
            Pace::TooLong(_)
        ),
        "its next slot is still 9 s ahead"
    );
    assert!(store.kept() <= MAX_ORIGINS);
}

#[tokio::test(start_paused = true)]
async fn past_the_origin_bound_idle_origins_are_forgotten_and_new_ones_kept() {
    let store = LocalStore::new(None, true, None);
    let hosts: Vec<String> = (0..MAX_ORIGINS).map(|i| format!("h{i}")).collect();
    for h in &hosts {
        drop(store.origin(&Origin::new(Some("http"), Some(h), None)));
    }
    let late = Origin::new(Some("http"), Some("late.example"), None);
    store
        .origin(&late)
        .cool_down_until(Instant::now() + Duration::from_secs(5));
    assert_eq!(
        store.origin(&late).cooldown_remaining(Instant::now()),
        Some(Duration::from_secs(5)),
        "the late origin's limits are kept, not made anew for each request"
    );
    assert!(store.kept() <= MAX_ORIGINS);
}

#[tokio::test(start_paused = true)]
async fn many_origins_stay_bounded() {
    let shared = Limits::default();
    let store = LocalStore::new(None, true, None);
    let hosts: Vec<String> = (0..2 * MAX_ORIGINS).map(|i| format!("h{i}")).collect();
    for h in &hosts {
        let _ = store.origin(&Origin::new(Some("http"), Some(h), None));
    }
    assert!(store.kept() <= MAX_ORIGINS);
    drop(shared);
}
