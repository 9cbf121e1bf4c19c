//! Real sockets: client-side pacing spreads bursts and keeps sends spaced.

use super::*;

// ----- client-side pacing -----

/// A server that lets at most `limit` requests in through any 150 ms (a sliding window,
/// a little shorter than the client's 200 ms period, so that loopback jitter does not
/// count as a burst) and answers 429 `Retry-After: 1` past that.
fn sliding_window(limit: usize) -> impl Fn(&support::Seen) -> Reply {
    let recent: Mutex<Vec<Instant>> = Mutex::default();
    move |seen| {
        let mut recent = recent.lock().unwrap();
        recent.retain(|at| seen.at.duration_since(*at) < ms(150));
        recent.push(seen.at);
        if recent.len() > limit {
            limited_reply("1")
        } else {
            Reply::status(200)
        }
    }
}

async fn pacing_spreads_a_burst_so_that_it_meets_no_429<C: Adapter>() {
    let server = Server::start(sliding_window(5)).await;
    let client = C::over(paced(fast().build(), Pacing::new(5, ms(200))));
    let t = std::time::Instant::now();
    let got = join_all((0..20).map(|_| client.send(Method::GET, server.url("/v1/calls")))).await;
    let elapsed = t.elapsed();
    for (i, got) in got.iter().enumerate() {
        assert_eq!(got.status(), 200, "request {i}: {got:?}");
        assert_eq!(got.info().attempts(), 1, "request {i}");
    }
    assert_eq!(server.hits("/v1/calls"), 20, "no 429, no retry");
    // 19 intervals of 40 ms.
    assert!(elapsed >= ms(760) && elapsed < ms(1900), "{elapsed:?}");
    let slept = got.iter().map(|g| g.info().slept()).max().unwrap();
    assert!(slept >= ms(700), "the waits are in slept: {slept:?}");
}

async fn a_paced_slot_beyond_the_cap_fails_at_once_with_nothing_sent<C: Adapter>() {
    let server = Server::start(|_| Reply::status(200)).await;
    let client = C::over(paced(fast().build(), Pacing::new(1, secs(120))));
    assert_eq!(
        client.send(Method::GET, server.url("/1")).await.status(),
        200
    );
    let t = std::time::Instant::now();
    let got = client.send(Method::POST, server.url("/2")).await;
    assert!(t.elapsed() < ms(200), "{:?}", t.elapsed());
    let (kind, wait) = got.engine();
    assert_eq!(kind, RetryErrorKind::RateLimited);
    let wait = wait.expect("the wait it would have had");
    assert!(wait > secs(119) && wait <= secs(120), "{wait:?}");
    assert_eq!(got.info().attempts(), 0);
    assert_eq!(
        got.info().stop_reason(),
        Some(StopReason::RetryAfterTooLong)
    );
    assert_eq!(server.hits("/2"), 0);
    // The client's own pacing said no, not the API.
    let message = got.message();
    assert!(
        message.starts_with("rate limited by client-side pacing: not sent, the next slot is in"),
        "{message}"
    );
    assert!(!message.contains("API"), "{message}");
}

/// Pacing 10/s (100 ms apart): `/slow` is held 300 ms by the server while four more
/// requests go: at the server they arrive 100 ms apart all the same.
async fn paced_requests_arrive_spaced_behind_a_slow_one<C: Adapter>() {
    let server = Server::start(|seen| match seen.path.as_str() {
        "/slow" => Reply::status(200).after(ms(300)),
        _ => Reply::status(200),
    })
    .await;
    let client = C::over(paced(fast().build(), Pacing::new(10, secs(1))));
    let paths = ["/slow", "/q", "/q", "/q", "/q"];
    let got = join_all(paths.map(|p| client.send(Method::GET, server.url(p)))).await;
    for got in &got {
        assert_eq!(got.status(), 200, "{got:?}");
    }
    assert_spaced(&server.seen(), ms(80));
}

/// Consecutive arrivals at the server are at least `gap` apart (an interval less some
/// loopback jitter).
#[track_caller]
fn assert_spaced(seen: &[support::Seen], gap: Duration) {
    let mut at: Vec<_> = seen.iter().map(|s| (s.at, s.path.clone())).collect();
    at.sort();
    for pair in at.windows(2) {
        let apart = pair[1].0 - pair[0].0;
        assert!(
            apart >= gap,
            "{} arrived {apart:?} after {}: {at:?}",
            pair[1].1,
            pair[0].1
        );
    }
}

/// Pacing 10/s over a `ConcurrencyLimit(1)` below the retry layer: `/0` goes at once,
/// `/slow` on its slot at 100 ms holds the only permit ~300 ms, four more requests queue
/// for it. They take their slots once the permit is theirs, so they arrive 100 ms apart,
/// not together when it frees.
#[tokio::test]
async fn paced_sends_stay_spaced_behind_a_busy_concurrency_limit_tower_hyper_util() {
    bounded(async {
        let server = Server::start(|seen| match seen.path.as_str() {
            "/slow" => Reply::status(200).after(ms(300)),
            _ => Reply::status(200),
        })
        .await;
        let svc = ServiceBuilder::new()
            .layer(paced(fast().build(), Pacing::new(10, secs(1))))
            .layer(ConcurrencyLimitLayer::new(1))
            .service(hyper_client());
        let paths = ["/0", "/slow", "/q", "/q", "/q", "/q"];
        let results = join_all(paths.map(|p| svc.clone().oneshot(get(&server.url(p))))).await;
        for (path, result) in paths.iter().zip(results) {
            assert_eq!(result.unwrap().status(), 200, "{path}");
        }
        let seen = server.seen();
        let slow = seen.iter().find(|s| s.path == "/slow").unwrap().at;
        let first_q = seen.iter().find(|s| s.path == "/q").unwrap().at;
        assert!(first_q - slow >= ms(250), "the queue waited for the permit");
        assert_spaced(&seen, ms(80));
    })
    .await;
}

real_socket_tests! {
    pacing_spreads_a_burst_so_that_it_meets_no_429 {
        HyperUtil => pacing_spreads_a_burst_so_that_it_meets_no_429_tower_hyper_util;
        ReqwestMiddleware => pacing_spreads_a_burst_so_that_it_meets_no_429_reqwest_middleware;
    }
    a_paced_slot_beyond_the_cap_fails_at_once_with_nothing_sent {
        HyperUtil => a_paced_slot_beyond_the_cap_fails_at_once_with_nothing_sent_tower_hyper_util;
        ReqwestMiddleware => a_paced_slot_beyond_the_cap_fails_at_once_with_nothing_sent_reqwest_middleware;
    }
    paced_requests_arrive_spaced_behind_a_slow_one {
        HyperUtil => paced_requests_arrive_spaced_behind_a_slow_one_tower_hyper_util;
        ReqwestMiddleware => paced_requests_arrive_spaced_behind_a_slow_one_reqwest_middleware;
    }
}
