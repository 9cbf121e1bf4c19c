use std::time::Duration;

use http::{HeaderMap, HeaderValue, StatusCode};
use tokio::time::Instant;

use super::*;

fn go(pace: Pace) -> Option<crate::limits::pacer::PaceFuture> {
    match pace {
        Pace::Go => None,
        Pace::Wait(f) => Some(f),
        Pace::TooLong(d) => panic!("too long: {d:?}"),
    }
}

fn throttle(pacer: &AdaptivePacer, sent_at: Instant) {
    let mut headers = HeaderMap::new();
    headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
    pacer.observe(sent_at, StatusCode::TOO_MANY_REQUESTS, &headers);
}

#[tokio::test(start_paused = true)]
async fn it_does_not_pace_until_the_first_429() {
    let pacer = AdaptivePacer::new(true);
    for _ in 0..100 {
        assert!(go(pacer.pace(Duration::ZERO)).is_none());
        pacer.observe(Instant::now(), StatusCode::OK, &HeaderMap::new());
    }
    assert_eq!(pacer.rate(), None);
    // A 500 says nothing about the rate.
    pacer.observe(
        Instant::now(),
        StatusCode::INTERNAL_SERVER_ERROR,
        &HeaderMap::new(),
    );
    assert_eq!(pacer.rate(), None);
}

#[tokio::test(start_paused = true)]
async fn a_429_cuts_once_per_congestion_event() {
    let pacer = AdaptivePacer::new(true);
    // 100 sends in one second, answered OK, then the 429s of one burst.
    for _ in 0..100 {
        pacer.observe(Instant::now(), StatusCode::OK, &HeaderMap::new());
        tokio::time::advance(Duration::from_millis(10)).await;
    }
    let sent = Instant::now();
    tokio::time::advance(Duration::from_millis(10)).await;
    throttle(&pacer, sent);
    let first = pacer.rate().expect("pacing after a 429");
    assert!(first > 30.0 && first < 100.0, "{first}");
    throttle(&pacer, sent);
    throttle(&pacer, sent);
    assert_eq!(pacer.rate(), Some(first), "sent before the cut: same event");
    // Sent within the grace (the Retry-After, 1 s, at most 250 ms) after the cut: what the
    // burst left.
    tokio::time::advance(Duration::from_millis(240)).await;
    throttle(&pacer, Instant::now());
    assert_eq!(
        pacer.rate(),
        Some(first),
        "sent within the grace: same event"
    );
    // Past the grace, though within the Retry-After: a rate still too high.
    tokio::time::advance(Duration::from_millis(20)).await;
    let sent = Instant::now();
    tokio::time::advance(Duration::from_millis(10)).await;
    throttle(&pacer, sent);
    assert!(pacer.rate().unwrap() < first, "a new event cuts again");
}

#[tokio::test(start_paused = true)]
async fn slots_follow_the_rate_as_it_changes_without_debt() {
    let pacer = AdaptivePacer::new(true);
    let mut headers = HeaderMap::new();
    // 20 left of 200 over 1 s, less 5 %: 19 per second.
    headers.insert(
        "ratelimit-policy",
        HeaderValue::from_static("\"default\";q=200;w=1"),
    );
    headers.insert(
        "ratelimit",
        HeaderValue::from_static("\"default\";r=20;t=1"),
    );
    pacer.observe(Instant::now(), StatusCode::OK, &headers);
    let rate = pacer.rate().unwrap();
    assert!((rate - 19.0).abs() < 0.01, "{rate}");
    assert!(
        go(pacer.pace(Duration::ZERO)).is_none(),
        "the first slot is now"
    );
    // Three waiters queue; then the rate is cut to a tenth: only the next slot moves.
    let start = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..3 {
        let wait = go(pacer.pace(Duration::from_secs(60))).expect("waits");
        let tx = tx.clone();
        tokio::spawn(async move {
            wait.await;
            tx.send(start.elapsed()).unwrap();
        });
    }
    drop(tx);
    let first = rx.recv().await.unwrap();
    assert_eq!(first, Duration::from_secs_f64(1.0 / 19.0).max(first));
    assert!(first < Duration::from_millis(60), "{first:?}");
    headers.insert("ratelimit", HeaderValue::from_static("\"default\";r=2;t=1"));
    pacer.observe(Instant::now(), StatusCode::OK, &headers);
    let second = rx.recv().await.unwrap();
    let gap = second - first;
    // 2 left until the reset the first response stated (1 s after it, not 1 s after this
    // one), less 5 %: one slot per 0.947 / 1.9 s.
    assert!(
        gap >= Duration::from_millis(490) && gap < Duration::from_millis(510),
        "the cut applies from the next slot: {gap:?}"
    );
    // And a rise wakes the waiter whose turn it is.
    headers.insert(
        "ratelimit",
        HeaderValue::from_static("\"default\";r=200;t=1"),
    );
    pacer.observe(Instant::now(), StatusCode::OK, &headers);
    let third = rx.recv().await.unwrap();
    assert!(
        third - second < Duration::from_millis(10),
        "{:?}",
        third - second
    );
}

#[tokio::test(start_paused = true)]
async fn nothing_left_until_a_reset_a_day_away_waits_a_day_and_a_second() {
    let pacer = AdaptivePacer::new(true);
    let mut headers = HeaderMap::new();
    headers.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
    headers.insert("x-ratelimit-reset", HeaderValue::from_static("86400"));
    pacer.observe(Instant::now(), StatusCode::OK, &headers);
    let Pace::TooLong(wait) = pacer.pace(Duration::from_secs(60)) else {
        panic!("nothing left: no slot within a minute");
    };
    let (low, high) = (Duration::from_secs(86_400), Duration::from_secs(86_402));
    assert!(wait > low && wait < high, "{wait:?}");
}

#[tokio::test(start_paused = true)]
async fn a_slot_beyond_the_longest_wait_is_refused() {
    let pacer = AdaptivePacer::new(true);
    let mut headers = HeaderMap::new();
    headers.insert(
        "ratelimit",
        HeaderValue::from_static("\"default\";r=1;t=10"),
    );
    pacer.observe(Instant::now(), StatusCode::OK, &headers);
    assert!(go(pacer.pace(Duration::ZERO)).is_none());
    assert!(matches!(
        pacer.pace(Duration::from_secs(1)),
        Pace::TooLong(_)
    ));
    assert!(pacer.is_busy(Instant::now()));
}

#[cfg(feature = "redis")]
#[tokio::test(start_paused = true)]
async fn slots_recorded_elsewhere_do_not_starve_a_waiter() {
    let pacer = AdaptivePacer::new(true);
    pacer.set_rate(10.0);
    assert!(matches!(pacer.pace(Duration::from_secs(60)), Pace::Go));
    let Pace::Wait(wait) = pacer.pace(Duration::from_secs(60)) else {
        panic!("the second slot waits");
    };
    let waiter = tokio::spawn(wait);
    tokio::task::yield_now().await;
    // The fleet store gives other attempts a slot every 50 ms meanwhile.
    let start = Instant::now();
    while !waiter.is_finished() {
        assert!(start.elapsed() < Duration::from_secs(1), "starved");
        pacer.record(Duration::ZERO);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        start.elapsed() <= Duration::from_millis(150),
        "{:?}",
        start.elapsed()
    );
}

#[cfg(feature = "redis")]
#[tokio::test(start_paused = true)]
async fn a_rate_set_at_a_share_follows_the_share_and_keeps_its_cuts() {
    let pacer = AdaptivePacer::new(true);
    pacer.set_share_of(40.0, 0.25);
    assert_eq!(pacer.rate(), Some(10.0));
    // The same share again (an origin made afresh elsewhere): nothing changes.
    pacer.follow_share(0.25);
    assert_eq!(pacer.rate(), Some(10.0));
    pacer.follow_share(0.5);
    assert_eq!(pacer.rate(), Some(20.0));
    // A rate restored by its keeper (a cut of its own, say) stays at the share it was set at.
    pacer.set_rate(14.0);
    pacer.follow_share(1.0);
    assert_eq!(pacer.rate(), Some(28.0));
}

#[cfg(feature = "redis")]
#[tokio::test(start_paused = true)]
async fn a_rate_of_its_own_does_not_follow_a_share() {
    let pacer = AdaptivePacer::new(true);
    pacer.set_rate(10.0);
    pacer.follow_share(0.5);
    assert_eq!(pacer.rate(), Some(10.0));
}
