//! Adaptive pacing (`Pacing::adaptive`) against token-bucket servers: through the tower
//! layer on tokio's paused clock (a limit that steps 50 → 20 → 50 per second), through the
//! reqwest middleware against a loopback server (module `middleware`), and a server that
//! states its quota in `RateLimit` headers.
#![cfg(feature = "tower")]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use telecho_retry::limits::{Limits, Pacing};
use telecho_retry::{RetryPolicy, TelEchoRetry};
use tokio::time::Instant;
use tower::{service_fn, ServiceExt};

type Req = Request<Full<Bytes>>;

/// A token bucket: `rate(t)` tokens per second, holding a tenth of a second's worth.
pub(crate) struct Bucket {
    start: Instant,
    rate: fn(Duration) -> f64,
    tokens: f64,
    last: Duration,
}

impl Bucket {
    pub(crate) fn new(start: Instant, rate: fn(Duration) -> f64) -> Self {
        Bucket {
            start,
            rate,
            tokens: rate(Duration::ZERO) / 10.0,
            last: Duration::ZERO,
        }
    }

    /// Whether a request arriving now is served (a token taken).
    pub(crate) fn admit(&mut self) -> bool {
        let now = self.start.elapsed();
        let rate = (self.rate)(now);
        let dt = (now - self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(rate / 10.0);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Every send the server answered: when (since the start) and whether it was served.
type Log = Arc<Mutex<Vec<(Duration, bool)>>>;

/// Served share of what the limit allows, and share of sends answered 429, in each phase
/// `(from, to, limit)` after its first `settle`.
fn shares(log: &[(Duration, bool)], phases: &[(u64, u64, f64)], settle: u64) -> Vec<(f64, f64)> {
    phases
        .iter()
        .map(|&(from, to, limit)| {
            let window = Duration::from_secs(from + settle)..Duration::from_secs(to);
            let sends: Vec<bool> = log
                .iter()
                .filter(|(at, _)| window.contains(at))
                .map(|(_, ok)| *ok)
                .collect();
            let served = sends.iter().filter(|ok| **ok).count() as f64;
            let limited = (sends.len() as f64 - served) / (sends.len() as f64).max(1.0);
            (served / (limit * (to - from - settle) as f64), limited)
        })
        .collect()
}

// ===== tower, paused clock =====

const STEPS: [(u64, u64, f64); 3] = [(0, 20, 50.0), (20, 40, 20.0), (40, 60, 50.0)];

fn stepping(t: Duration) -> f64 {
    let s = t.as_secs();
    STEPS
        .iter()
        .find(|(from, to, _)| (*from..*to).contains(&s))
        .map_or(50.0, |p| p.2)
}

/// 16 closed-loop callers through `svc` until `end`, each sending `request()` again as soon as
/// the last one ended.
async fn sixteen_closed_loop<S>(svc: S, request: fn() -> Req, end: Instant)
where
    S: tower::Service<Req> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
    S::Error: Send,
{
    let callers: Vec<_> = (0..16)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move {
                while Instant::now() < end {
                    let _ = svc.clone().oneshot(request()).await;
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await.unwrap();
    }
}

fn post_call() -> Req {
    Request::post("http://api.example/v1/calls")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap()
}

fn get_calls() -> Req {
    Request::get("http://api.example/v1/calls")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// A test server's answer: 200, or 429 with `Retry-After: retry_after`; either with, if
/// given, the quota left (`RateLimit: "default";r=<left>;t=<retry_after>`).
pub(crate) fn answer(ok: bool, retry_after: u64, left: Option<u64>) -> Response<Full<Bytes>> {
    let mut resp = Response::builder().status(if ok { 200 } else { 429 });
    if let Some(left) = left {
        resp = resp.header("ratelimit", format!("\"default\";r={left};t={retry_after}"));
    }
    if !ok {
        resp = resp.header("retry-after", retry_after.to_string());
    }
    resp.body(Full::new(Bytes::new())).unwrap()
}

/// 16 closed-loop callers through `limits` for 60 s against a token bucket of `rate(t)`
/// per second (20 ms a round trip, `Retry-After: 1` on a 429): every send, when and
/// whether it was served.
async fn bucket_log(limits: Limits, rate: fn(Duration) -> f64) -> Vec<(Duration, bool)> {
    let start = Instant::now();
    let bucket = Arc::new(Mutex::new(Bucket::new(start, rate)));
    let log = Log::default();
    let server = {
        let log = Arc::clone(&log);
        service_fn(move |_req: Req| {
            let ok = bucket.lock().unwrap().admit();
            log.lock().unwrap().push((start.elapsed(), ok));
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok::<_, Infallible>(answer(ok, 1, None))
            }
        })
    };
    let svc = tower::ServiceBuilder::new()
        .layer(TelEchoRetry::new(RetryPolicy::default()).with_limits(limits))
        .service(server);
    sixteen_closed_loop(svc, post_call, start + Duration::from_secs(60)).await;
    let log = log.lock().unwrap().clone();
    log
}

/// [`bucket_log`] stepping 50 → 20 → 50 per second: each phase's served share and 429
/// share after its first 5 s.
async fn sixteen_callers(limits: Limits) -> Vec<(f64, f64)> {
    shares(&bucket_log(limits, stepping).await, &STEPS, 5)
}

#[tokio::test(start_paused = true)]
async fn adaptive_pacing_follows_a_stepping_limit_and_serves_more_than_no_pacing() {
    let default = sixteen_callers(Limits::builder().without_pacing().build()).await;
    let adaptive = sixteen_callers(Limits::default()).await;
    let alone = sixteen_callers(
        Limits::builder()
            .pacing(Pacing::adaptive())
            .shared_cooldown(false)
            .build(),
    )
    .await;
    eprintln!("(served, 429 share) per phase 50/20/50 after 5 s:");
    eprintln!("  no pacing:                      {default:.3?}");
    eprintln!("  adaptive (the default):         {adaptive:.3?}");
    eprintln!("  adaptive, no shared cooldown:   {alone:.3?}");
    for (phase, ((d, _), (a, a429))) in default.iter().zip(&adaptive).enumerate() {
        assert!(*a429 <= 0.04, "phase {phase}: {a429:.3} of sends met a 429");
        assert!(a > d, "phase {phase}: adaptive {a:.3}, no pacing {d:.3}");
    }
    for (phase, (served, limited)) in alone.iter().enumerate() {
        assert!(*limited <= 0.04, "phase {phase}: {limited:.3} met a 429");
        assert!(
            *served >= 0.9,
            "phase {phase}: served {served:.3} of the limit"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_server_that_states_its_quota_is_paced_without_a_429() {
    // A fixed window of 10 s allowing 200 (20 per second); every answer says what is left.
    let limits = Limits::builder().pacing(Pacing::adaptive()).build();
    let log = fixed_window_log(limits, Window::STATES_QUOTA, 30).await;
    let limited = log.iter().filter(|(_, ok)| !ok).count();
    let [(served, _)] = shares(&log, &[(0, 30, 20.0)], 0)[..] else {
        unreachable!()
    };
    eprintln!("quota: served {served:.3} of the limit, {limited} 429s");
    assert_eq!(limited, 0, "a stated quota is never overrun");
    assert!(served >= 0.6, "served {served:.3} of the limit");
}

// ===== reqwest, loopback =====

/// An hourly quota far from spent (`X-RateLimit-*`, 4999 of 5000 left for an hour).
fn plenty_left() -> Response<Full<Bytes>> {
    Response::builder()
        .header("x-ratelimit-limit", "5000")
        .header("x-ratelimit-remaining", "4999")
        .header("x-ratelimit-reset", "3599")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// The same without its limit (`RateLimit` without a `RateLimit-Policy`).
fn plenty_left_no_limit_stated() -> Response<Full<Bytes>> {
    Response::builder()
        .header("ratelimit", "\"default\";r=4999;t=3599")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_quota_far_from_spent_slows_nothing() {
    for answer in [plenty_left, plenty_left_no_limit_stated] {
        let server = service_fn(move |_req: Req| async move { Ok::<_, Infallible>(answer()) });
        let svc = tower::ServiceBuilder::new()
            .layer(TelEchoRetry::default())
            .service(server);
        let start = Instant::now();
        let all = (0..100).map(|_| svc.clone().oneshot(get_calls()));
        for resp in futures_util::future::join_all(all).await {
            assert_eq!(resp.unwrap().status(), 200);
        }
        for _ in 0..20 {
            svc.clone().oneshot(get_calls()).await.unwrap();
        }
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "paced by a quota that does not bind"
        );
    }
}

#[cfg(feature = "reqwest")]
mod middleware {
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
}

/// A fixed window of 10 s allowing 200, whose 429s say `Retry-After` until the window ends
/// (as TelEcho's per-minute limits do).
#[derive(Clone, Copy)]
struct Window {
    /// How many of window `n` another consumer of the key takes as it opens.
    taken: fn(u64) -> u64,
    /// Whether every answer states the quota left (`RateLimit`).
    states_quota: bool,
}

impl Window {
    const OURS: Window = Window {
        taken: |_| 0,
        states_quota: false,
    };
    const STATES_QUOTA: Window = Window {
        taken: |_| 0,
        states_quota: true,
    };
}

/// 16 closed-loop callers through `limits` for `secs` against `window`: every send, when
/// and whether it was served.
async fn fixed_window_log(limits: Limits, window: Window, secs: u64) -> Vec<(Duration, bool)> {
    let start = Instant::now();
    let count = Arc::new(Mutex::new((0u64, 0u64)));
    let log = Log::default();
    let server = {
        let log = Arc::clone(&log);
        service_fn(move |_req: Req| {
            let now = start.elapsed();
            let n = now.as_secs() / 10;
            let mut w = count.lock().unwrap();
            if w.0 != n {
                *w = (n, (window.taken)(n));
            }
            let ok = w.1 < 200;
            w.1 += u64::from(ok);
            let left = window.states_quota.then(|| 200 - w.1);
            let reset = ((n + 1) * 10).saturating_sub(now.as_secs()).max(1);
            log.lock().unwrap().push((now, ok));
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok::<_, Infallible>(answer(ok, reset, left))
            }
        })
    };
    let svc = tower::ServiceBuilder::new()
        .layer(TelEchoRetry::new(RetryPolicy::default()).with_limits(limits))
        .service(server);
    sixteen_closed_loop(svc, get_calls, start + Duration::from_secs(secs)).await;
    let log = log.lock().unwrap().clone();
    log
}

/// [`fixed_window_log`] with the whole quota ours: (served share of the limit, share of
/// sends answered 429).
async fn fixed_window(limits: Limits) -> (f64, f64) {
    let log = fixed_window_log(limits, Window::OURS, 60).await;
    shares(&log, &[(0, 60, 20.0)], 0)[0]
}

/// Where the shared cooldown is already right (a `Retry-After` that says when the window
/// ends), adaptive pacing costs nothing and halves the 429s.
#[tokio::test(start_paused = true)]
async fn on_a_fixed_window_with_an_exact_retry_after_adaptive_pacing_costs_nothing() {
    let default = fixed_window(Limits::builder().without_pacing().build()).await;
    let adaptive = fixed_window(Limits::default()).await;
    let alone = fixed_window(
        Limits::builder()
            .pacing(Pacing::adaptive())
            .shared_cooldown(false)
            .build(),
    )
    .await;
    eprintln!("(served, 429 share) on a fixed window of 10 s:");
    eprintln!("  no pacing {default:.3?}, adaptive {adaptive:.3?}, without cooldown {alone:.3?}");
    for (served, _) in [default, adaptive, alone] {
        assert!(served >= 0.95, "served {served:.3}");
    }
    assert!(adaptive.1 <= default.1, "{adaptive:?} {default:?}");
}

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

/// After 429s have cut the rate to its floor, a burst of 100 with a 10 s deadline: slow
/// start drains it in seconds, so none is refused up front from the floor's rate.
#[tokio::test(start_paused = true)]
async fn a_burst_after_the_rate_was_cut_to_its_floor_is_not_refused_up_front() {
    let throttling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let server = {
        let throttling = Arc::clone(&throttling);
        service_fn(move |_req: Req| {
            let limited = throttling.load(std::sync::atomic::Ordering::SeqCst);
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok::<_, Infallible>(answer(!limited, 1, None))
            }
        })
    };
    let policy = RetryPolicy::builder()
        .deadline(Duration::from_secs(10))
        .build();
    let svc = tower::ServiceBuilder::new()
        .layer(TelEchoRetry::new(policy))
        .service(server);
    // 429s, seconds apart: each a new event, each a cut.
    for _ in 0..6 {
        let _ = svc.clone().oneshot(get_calls()).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    throttling.store(false, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let start = Instant::now();
    let burst = (0..100).map(|_| svc.clone().oneshot(get_calls()));
    let results = futures_util::future::join_all(burst).await;
    let refused = results.iter().filter(|r| r.is_err()).count();
    eprintln!(
        "burst of 100: {refused} refused, the last done after {:?}",
        start.elapsed()
    );
    assert_eq!(refused, 0, "refused from the floor's rate");
    assert!(start.elapsed() < Duration::from_secs(10));
}
