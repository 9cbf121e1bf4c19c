//! `Retry-After` (to the millisecond, with the spread, above the cap), the backoff ladder
//! of 5xx, and 4xx sent exactly once.

use super::*;

// ===== Retry-After =====

#[tokio::test(start_paused = true)]
async fn retry_after_7_is_honoured_to_the_millisecond_without_spread() {
    let (mut fut, mut handle) = start(exact(5), get());
    let t0 = Instant::now();

    let (_, first) = take_attempt(&mut handle);
    first.send_response(with_retry_after(429, "7"));
    assert_pending!(fut.poll());

    // Not at 6.999 s, exactly at 7 s.
    let (_, second) = expect_retry_after(&mut fut, &mut handle, secs(7)).await;
    assert_eq!(t0.elapsed(), secs(7));
    second.send_response(status(200));

    let resp = assert_ready!(fut.poll()).unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let info = info(&resp);
    assert_eq!(info.attempts(), 2);
    assert_eq!(info.slept(), secs(7));
    assert_eq!(info.stop_reason(), Some(StopReason::Success));
}

#[tokio::test(start_paused = true)]
async fn retry_after_7_with_the_default_spread_lands_within_half_a_second_after() {
    // Default `retry_after_spread` (500 ms); seeded so the run is reproducible.
    let policy = RetryPolicy::builder().seed(0x7e1e).build();
    assert_eq!(policy.retry_after_spread(), ms(500));

    let mut arrivals = Vec::new();
    for _ in 0..8 {
        let (mut fut, mut handle) = start(policy.clone(), get());
        let t0 = Instant::now();
        let (_, first) = take_attempt(&mut handle);
        first.send_response(with_retry_after(429, "7"));
        assert_pending!(fut.poll());

        // Never before the header's 7 s.
        advance(secs(7) - ms(1)).await;
        assert_pending!(fut.poll());
        assert_no_attempt(&mut handle, "before 7 s");

        // Then at some millisecond in [7 s, 7.5 s].
        let (second, at) = loop {
            advance(ms(1)).await;
            assert_pending!(fut.poll());
            if let Poll::Ready(Some(attempt)) = handle.poll_request() {
                break (attempt.1, t0.elapsed());
            }
            assert!(t0.elapsed() < secs(7) + ms(500), "no retry by 7.5 s");
        };
        assert!(at >= secs(7) && at <= secs(7) + ms(500), "retry at {at:?}");
        second.send_response(status(200));

        let resp = assert_ready!(fut.poll()).unwrap();
        let info = info(&resp);
        assert_eq!(info.attempts(), 2);
        // The timer fires on the first millisecond at or after the chosen delay.
        assert!(info.slept() >= secs(7) && info.slept() <= at, "{info:?}");
        assert!(at - info.slept() < ms(1), "{info:?} vs {at:?}");
        arrivals.push(at);
    }
    // The spread is really applied, per request.
    assert!(
        arrivals.iter().any(|&at| at > secs(7)),
        "every retry came at exactly 7 s: {arrivals:?}"
    );
    arrivals.dedup();
    assert!(
        arrivals.len() > 1,
        "no spread between requests: {arrivals:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn rate_limit_without_retry_after_follows_the_backoff_ladder() {
    let (mut fut, mut handle) = start(exact(5), get());

    let (_, first) = take_attempt(&mut handle);
    first.send_response(status(429));
    assert_pending!(fut.poll());
    for delay in [secs(1), secs(2), secs(4)] {
        let (_, send) = expect_retry_after(&mut fut, &mut handle, delay).await;
        send.send_response(status(429));
        assert_pending!(fut.poll());
    }
    let (_, last) = expect_retry_after(&mut fut, &mut handle, secs(8)).await;
    last.send_response(status(200));

    let resp = assert_ready!(fut.poll()).unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(info(&resp).attempts(), 5);
    assert_eq!(info(&resp).slept(), secs(1 + 2 + 4 + 8));
}

#[tokio::test(start_paused = true)]
async fn retry_after_above_the_cap_returns_the_429_at_once_header_intact() {
    let policy = RetryPolicy::builder().max_retry_after(secs(60)).build();
    let (mut fut, mut handle) = start(policy, get());

    let (_, first) = take_attempt(&mut handle);
    first.send_response(with_retry_after(429, "3600"));

    let resp = assert_ready!(fut.poll()).unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()[RETRY_AFTER], "3600");
    let info = info(&resp);
    assert_eq!(info.attempts(), 1);
    assert_eq!(info.slept(), Duration::ZERO);
    assert_eq!(info.stop_reason(), Some(StopReason::RetryAfterTooLong));

    advance(secs(7200)).await;
    assert_no_attempt(&mut handle, "after a Retry-After above the cap");
}

// ===== 5xx and 4xx =====

#[tokio::test(start_paused = true)]
async fn server_errors_follow_the_exact_ladder_1_2_4_8_16_30() {
    let (mut fut, mut handle) = start(exact(6), get());
    let t0 = Instant::now();

    let (_, first) = take_attempt(&mut handle);
    first.send_response(status(503));
    assert_pending!(fut.poll());

    let mut gaps = Vec::new();
    let mut last_at = t0.elapsed();
    for (i, delay) in [1, 2, 4, 8, 16, 30].map(secs).into_iter().enumerate() {
        let (_, send) = expect_retry_after(&mut fut, &mut handle, delay).await;
        gaps.push(t0.elapsed() - last_at);
        last_at = t0.elapsed();
        // Vary the 5xx: every one of them is on the same ladder.
        send.send_response(status([500, 502, 503, 504, 500, 503][i]));
        if i < 5 {
            assert_pending!(fut.poll());
        }
    }
    assert_eq!(gaps, [1, 2, 4, 8, 16, 30].map(secs));

    let resp = assert_ready!(fut.poll()).unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(info(&resp).attempts(), 7);
    assert_eq!(info(&resp).slept(), secs(61));
}

#[tokio::test(start_paused = true)]
async fn exhausted_retries_return_the_last_response_with_retry_info() {
    let (mut fut, mut handle) = start(exact(2), get());

    let (_, first) = take_attempt(&mut handle);
    first.send_response(status(500));
    assert_pending!(fut.poll());
    let (_, second) = expect_retry_after(&mut fut, &mut handle, secs(1)).await;
    second.send_response(status(502));
    assert_pending!(fut.poll());
    let (_, third) = expect_retry_after(&mut fut, &mut handle, secs(2)).await;
    third.send_response(
        Response::builder()
            .status(503)
            .header("x-attempt", "3")
            .body("the third".to_owned())
            .unwrap(),
    );

    let resp = assert_ready!(fut.poll()).unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["x-attempt"], "3");
    let info = info(&resp);
    assert_eq!(info.attempts(), 3);
    assert_eq!(info.retries(), 2);
    assert_eq!(
        resp.into_body().collect().await.unwrap().to_bytes(),
        "the third"
    );
    assert_eq!(info.slept(), secs(3));
    assert_eq!(info.stop_reason(), Some(StopReason::MaxRetries));

    advance(secs(3600)).await;
    assert_no_attempt(&mut handle, "after retries are exhausted");
}

#[tokio::test(start_paused = true)]
async fn client_errors_are_sent_exactly_once() {
    for code in [400, 401, 402, 403, 404, 409, 422] {
        let (mut fut, mut handle) = start(exact(5), post());

        let (_, first) = take_attempt(&mut handle);
        first.send_response(status(code));

        let resp = assert_ready!(fut.poll()).unwrap();
        assert_eq!(resp.status().as_u16(), code);
        let info = info(&resp);
        assert_eq!(info.attempts(), 1, "{code}");
        assert_eq!(info.slept(), Duration::ZERO, "{code}");
        assert_eq!(info.stop_reason(), Some(StopReason::Fatal), "{code}");

        advance(secs(3600)).await;
        assert_no_attempt(&mut handle, &format!("after a {code}"));
    }
}
