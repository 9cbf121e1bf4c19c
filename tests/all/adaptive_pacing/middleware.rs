//! Through the reqwest middleware, against a loopback token bucket.

use super::*;
use crate::support::{Reply, Server};
use reqwest_middleware::ClientBuilder;

/// 16 callers for 3 s through `limits` against a loopback token bucket at 50 per second
/// (`Retry-After: 1` on a 429): (served, 429s in the first 100 ms, 429s after).
async fn three_seconds(limits: Limits) -> (usize, usize, usize) {
    let bucket = Mutex::new(Bucket::new(Instant::now(), |_| 50.0));
    let counts = Arc::new(Mutex::new((0, 0, 0)));
    let tally = Arc::clone(&counts);
    let t0 = Instant::now();
    let server = Server::start(move |_| {
        let ok = bucket.lock().unwrap().admit();
        let mut counts = tally.lock().unwrap();
        if ok {
            counts.0 += 1;
            Reply::status(200)
        } else {
            // The start-up burst, before any 429 came back, is the same for both.
            if t0.elapsed() < Duration::from_millis(100) {
                counts.1 += 1;
            } else {
                counts.2 += 1;
            }
            Reply::status(429).header("retry-after", "1")
        }
    })
    .await;
    let inner = reqwest::Client::builder().no_proxy().build().unwrap();
    let client = ClientBuilder::new(inner)
        .with(TelEchoRetry::new(RetryPolicy::default()).with_limits(limits))
        .build();
    let url = server.url("/v1/calls");
    let end = Instant::now() + Duration::from_secs(3);
    let callers: Vec<_> = (0..16)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                while Instant::now() < end {
                    let _ = client.get(&url).send().await;
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await.unwrap();
    }
    let counts = *counts.lock().unwrap();
    counts
}

#[tokio::test]
async fn a_quota_far_from_spent_slows_nothing_through_the_middleware() {
    let server = Server::start(|_| {
        Reply::status(200)
            .header("x-ratelimit-limit", "5000")
            .header("x-ratelimit-remaining", "4999")
            .header("x-ratelimit-reset", "3599")
    })
    .await;
    let inner = reqwest::Client::builder().no_proxy().build().unwrap();
    let client = ClientBuilder::new(inner)
        .with(TelEchoRetry::default())
        .build();
    let start = Instant::now();
    for _ in 0..20 {
        let resp = client.get(server.url("/v1/agents")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    // Paced at 4999 / 3599 s, twenty would take 14 s.
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_pacing_without_the_cooldown_is_served_more_than_no_pacing() {
    let default = three_seconds(Limits::builder().without_pacing().build()).await;
    let adaptive = three_seconds(
        Limits::builder()
            .pacing(Pacing::adaptive())
            .shared_cooldown(false)
            .build(),
    )
    .await;
    eprintln!(
        "(served, 429s in the first 100 ms, after) in 3 s at 50/s: \
         no pacing {default:?}, adaptive {adaptive:?}"
    );
    // Both meet the start-up burst (no pacing before the first 429). After it, no
    // pacing waits out a cooldown for each 429 it meets; adaptive pacing without the
    // cooldown is served more, and meets a 429 for few of its sends.
    assert!(adaptive.0 > default.0, "{adaptive:?} {default:?}");
    let after = adaptive.2 as f64 / (adaptive.0 + adaptive.2) as f64;
    assert!(
        after <= 0.1,
        "{after:.3} of sends after the burst met a 429"
    );
}
