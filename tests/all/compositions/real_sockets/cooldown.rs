//! Real sockets: a `Retry-After` above the cap is returned at once and starts the cooldown.

use super::*;

// ----- a Retry-After above the cap -----

async fn a_retry_after_above_the_cap_is_returned_at_once_and_starts_the_cooldown<C: Adapter>() {
    let server = Server::start(|seen| match seen.path.as_str() {
        "/limited" => limited_reply("3600"),
        _ => Reply::status(200),
    })
    .await;
    let client = C::over(unbudgeted(fast().max_retries(3).build()));

    let t = std::time::Instant::now();
    let got = client.send(Method::GET, server.url("/limited")).await;
    assert!(t.elapsed() < ms(500), "{:?}", t.elapsed());
    assert_eq!(got.status(), 429);
    let Got::Response { retry_after, .. } = &got else {
        unreachable!()
    };
    assert_eq!(retry_after.as_deref(), Some("3600"), "header intact");
    assert_eq!(got.info().attempts(), 1);
    assert_eq!(
        got.info().stop_reason(),
        Some(StopReason::RetryAfterTooLong)
    );

    for method in [Method::GET, Method::POST] {
        let t = std::time::Instant::now();
        let got = client.send(method, server.url("/other")).await;
        assert!(t.elapsed() < ms(200), "{:?}", t.elapsed());
        let (kind, cooldown) = got.engine();
        assert_eq!(kind, RetryErrorKind::RateLimited);
        let cooldown = cooldown.expect("the cooldown left");
        assert!(
            cooldown > secs(3590) && cooldown <= secs(3600),
            "{cooldown:?}"
        );
        assert_eq!(got.info().attempts(), 0);
        assert_eq!(
            got.info().stop_reason(),
            Some(StopReason::RetryAfterTooLong)
        );
    }
    assert_eq!(server.hits("/other"), 0, "nothing sent");
    assert_eq!(server.hits("/limited"), 1);
}

async fn requests_fail_rate_limited_until_the_cooldown_has_passed_even_once_under_the_cap<
    C: Adapter,
>() {
    let server = Server::start(|seen| match seen.path.as_str() {
        "/limited" => limited_reply("1"),
        _ => Reply::status(200),
    })
    .await;
    // A 500 ms cap: `Retry-After: 1` is above it.
    let policy = fast().max_retries(3).max_retry_after(ms(500)).build();
    let client = C::over(unbudgeted(policy));
    let got = client.send(Method::GET, server.url("/limited")).await;
    assert_eq!(got.status(), 429);
    assert_eq!(
        got.info().stop_reason(),
        Some(StopReason::RetryAfterTooLong)
    );

    // 600 ms on, about 400 ms are left: under the cap, and still a refusal.
    tokio::time::sleep(ms(600)).await;
    let got = tokio::time::timeout(ms(300), client.send(Method::GET, server.url("/other")))
        .await
        .expect("refused at once, not held back behind the cooldown");
    let (kind, cooldown) = got.engine();
    assert_eq!(kind, RetryErrorKind::RateLimited);
    let cooldown = cooldown.expect("the cooldown left");
    assert!(cooldown > ms(100) && cooldown <= ms(400), "{cooldown:?}");
    assert_eq!(server.hits("/other"), 0, "nothing sent");
}

real_socket_tests! {
    a_retry_after_above_the_cap_is_returned_at_once_and_starts_the_cooldown {
        HyperUtil => a_retry_after_above_the_cap_is_returned_at_once_and_starts_the_cooldown_tower_hyper_util;
        ReqwestMiddleware => a_retry_after_above_the_cap_is_returned_at_once_and_starts_the_cooldown_reqwest_middleware;
    }
    requests_fail_rate_limited_until_the_cooldown_has_passed_even_once_under_the_cap {
        HyperUtil =>
            requests_fail_rate_limited_until_the_cooldown_has_passed_even_once_under_the_cap_tower_hyper_util;
        ReqwestMiddleware =>
            requests_fail_rate_limited_until_the_cooldown_has_passed_even_once_under_the_cap_reqwest_middleware;
    }
}
