//! The shared cooldown: one 429 holds back 100 concurrent requests; without it, each
//! request collects its own.

use super::*;

#[tokio::test(start_paused = true)]
async fn one_429_holds_back_100_concurrent_requests() {
    let server = Server::new();
    let limited = hundred_staggered_gets(&server, TelEchoRetry::default()).await;
    assert!(limited <= 3, "the server saw {limited} 429s");
    let seen = server.seen();
    assert_eq!(seen.len() - limited, 100, "every request succeeded once");
    // Nobody came back before the server said, nor long after: adaptive pacing, on since
    // the 429, spreads the 100 over the next 2 s (slow start from the rate it measured).
    let after: Vec<Duration> = seen
        .iter()
        .map(|s| s.at)
        .filter(|at| *at >= Duration::from_secs(5))
        .collect();
    assert!(
        after[10] - after[0] >= Duration::from_millis(500),
        "spread: {after:?}"
    );
    for s in seen.iter().filter(|s| s.at >= Duration::from_secs(5)) {
        assert!(s.at <= Duration::from_secs(7), "{:?}", s.at);
    }
}

#[tokio::test(start_paused = true)]
async fn without_shared_cooldown_every_request_collects_its_own_429() {
    let server = Server::new();
    let limits = Limits::builder()
        .shared_cooldown(false)
        .without_pacing()
        .build();
    let retry = TelEchoRetry::default().with_limits(limits);
    assert_eq!(hundred_staggered_gets(&server, retry).await, 100);
}
