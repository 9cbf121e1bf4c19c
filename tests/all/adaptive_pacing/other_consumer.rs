//! Another consumer of the key taking half the quota midway brings no 429 storm.

use super::*;

/// [`fixed_window_log`] with `Pacing::adaptive()` and nothing else, where from 30 s another
/// consumer of the key takes 100 of each window as it opens: (share of what was left for us
/// that we were served, 429s per window) over the windows from 40 s.
async fn another_consumer_takes_half_of_a_window() -> (f64, f64) {
    let limits = Limits::builder().pacing(Pacing::adaptive()).build();
    let window = Window {
        taken: |n| if n >= 3 { 100 } else { 0 },
        states_quota: false,
    };
    let log = fixed_window_log(limits, window, 60).await;
    let late: Vec<bool> = log
        .iter()
        .filter(|(at, _)| (Duration::from_secs(40)..Duration::from_secs(60)).contains(at))
        .map(|(_, ok)| *ok)
        .collect();
    let served = late.iter().filter(|ok| **ok).count() as f64;
    let limited = late.len() as f64 - served;
    (served / (100.0 * 2.0), limited / 2.0)
}

/// [`bucket_log`] at 50/s, whose refill another consumer halves from 30 s, with
/// `Pacing::adaptive()` and nothing else: (served share of the 25/s left, share of sends
/// answered 429) from 35 s.
async fn another_consumer_takes_half_of_a_bucket() -> (f64, f64) {
    let limits = Limits::builder().pacing(Pacing::adaptive()).build();
    let rate = |t| {
        if t < Duration::from_secs(30) {
            50.0
        } else {
            25.0
        }
    };
    shares(&bucket_log(limits, rate).await, &[(30, 60, 25.0)], 5)[0]
}

#[tokio::test(start_paused = true)]
async fn another_consumer_taking_half_the_quota_midway_brings_no_429_storm() {
    let (window_served, per_window) = another_consumer_takes_half_of_a_window().await;
    let (bucket_served, bucket_429s) = another_consumer_takes_half_of_a_bucket().await;
    eprintln!(
        "another consumer takes half from 30 s: fixed window: served {window_served:.3} of \
         what was left, {per_window:.1} 429s per window; token bucket: served \
         {bucket_served:.3} of what was left, {bucket_429s:.3} of sends answered 429"
    );
    // TelEcho's shape: nothing wasted; the 429 that ends each window's quota and the
    // one or two already in flight beside it (without pacing: dozens).
    assert!(window_served >= 0.95, "{window_served:.3}");
    assert!(per_window <= 4.0, "{per_window:.1} 429s per window");
    // A token bucket: no storm; what the shared cooldown costs is in limits.md.
    assert!(bucket_429s <= 0.04, "{bucket_429s:.3}");
}
