//! Real sockets: the attempt timeout and the deadline, and the deadline bounding the
//! wait behind the cooldown.

use super::*;

// ----- attempt timeout and deadline -----

async fn attempt_timeout_cuts_a_silent_server_and_retries_only_a_get<C: Adapter>() {
    let policy = fast().max_retries(1).attempt_timeout(ms(100)).build();

    let server = RawServer::start(Misbehave::Silent).await;
    let client = C::over(unbudgeted(policy.clone()));
    let t = std::time::Instant::now();
    let got = client.send(Method::GET, server.url()).await;
    let elapsed = t.elapsed();
    assert_eq!(got.engine().0, RetryErrorKind::AttemptTimeout);
    assert_eq!(got.info().attempts(), 2);
    assert_eq!(got.info().slept(), ms(20));
    assert_eq!(got.info().stop_reason(), Some(StopReason::MaxRetries));
    assert!(elapsed >= ms(220) && elapsed < ms(1000), "{elapsed:?}");
    assert_eq!(server.requests(), 2);

    let server = RawServer::start(Misbehave::Silent).await;
    let client = C::over(unbudgeted(policy));
    let got = client.send(Method::POST, server.url()).await;
    assert_eq!(got.engine().0, RetryErrorKind::AttemptTimeout);
    assert_eq!(got.info().attempts(), 1);
    assert_eq!(got.info().stop_reason(), Some(StopReason::Fatal));
    assert_eq!(server.requests(), 1);
}

async fn deadline_cuts_the_attempt_in_flight_and_sends_none_after_it<C: Adapter>() {
    let server = RawServer::start(Misbehave::Silent).await;
    let client = C::over(unbudgeted(fast().max_retries(3).deadline(ms(150)).build()));
    let t = std::time::Instant::now();
    let got = client.send(Method::GET, server.url()).await;
    let elapsed = t.elapsed();
    assert_eq!(got.engine().0, RetryErrorKind::Deadline);
    assert_eq!(got.info().attempts(), 1);
    assert_eq!(got.info().stop_reason(), Some(StopReason::Deadline));
    assert!(elapsed >= ms(150) && elapsed < ms(600), "{elapsed:?}");
    tokio::time::sleep(ms(200)).await;
    assert_eq!(server.requests(), 1, "no attempt after the deadline");
}

real_socket_tests! {
    attempt_timeout_cuts_a_silent_server_and_retries_only_a_get {
        HyperUtil => attempt_timeout_cuts_a_silent_server_and_retries_only_a_get_tower_hyper_util;
        ReqwestMiddleware => attempt_timeout_cuts_a_silent_server_and_retries_only_a_get_reqwest_middleware;
    }
    deadline_cuts_the_attempt_in_flight_and_sends_none_after_it {
        HyperUtil => deadline_cuts_the_attempt_in_flight_and_sends_none_after_it_tower_hyper_util;
        ReqwestMiddleware => deadline_cuts_the_attempt_in_flight_and_sends_none_after_it_reqwest_middleware;
    }
}

// ----- the deadline bounds the wait behind the cooldown -----

async fn deadline_refuses_a_wait_behind_the_cooldown<C: Adapter>() {
    let server = Server::start(|seen| match seen.path.as_str() {
        "/limited" => limited_reply("1"),
        _ => Reply::status(200),
    })
    .await;
    let client = C::over(unbudgeted(fast().max_retries(3).deadline(ms(500)).build()));

    let got = client.send(Method::GET, server.url("/limited")).await;
    assert_eq!(got.status(), 429);
    assert_eq!(got.info().stop_reason(), Some(StopReason::Deadline));

    let t = std::time::Instant::now();
    let got = client.send(Method::GET, server.url("/other")).await;
    assert!(t.elapsed() < ms(200), "refused at once: {:?}", t.elapsed());
    let (kind, cooldown) = got.engine();
    assert_eq!(kind, RetryErrorKind::Deadline);
    let cooldown = cooldown.expect("the cooldown left");
    assert!(cooldown > ms(500) && cooldown <= secs(1), "{cooldown:?}");
    assert_eq!(got.info().attempts(), 0);
    assert_eq!(got.info().slept(), ZERO);
    assert_eq!(got.info().stop_reason(), Some(StopReason::Deadline));
    assert_eq!(server.hits("/other"), 0, "nothing sent");
}

/// `/limited` answers 429 `Retry-After: 1` once; a request to `path` sent 100 ms later
/// waits behind the cooldown, under a 1.5 s deadline. Returns its outcome, how long it
/// took, and the server.
async fn behind_a_1s_cooldown<C: Adapter>(path: &'static str) -> (Got, Duration, Server) {
    let flaky = AtomicUsize::new(0);
    let limited = first_then("/limited", limited_reply("1"), Reply::status(200));
    let server = Server::start(move |seen| {
        if seen.path == "/flaky" && flaky.fetch_add(1, Ordering::SeqCst) == 0 {
            Reply::status(503)
        } else {
            limited(seen)
        }
    })
    .await;
    let client = C::over(unbudgeted(fast().max_retries(3).deadline(ms(1500)).build()));
    let first = tokio::spawn({
        let (client, url) = (client.clone(), server.url("/limited"));
        async move { client.send(Method::GET, url).await }
    });
    tokio::time::sleep(ms(100)).await;
    let t = std::time::Instant::now();
    let got = client.send(Method::GET, server.url(path)).await;
    let elapsed = t.elapsed();
    assert_eq!(first.await.unwrap().status(), 200);

    let seen = server.seen();
    let limited_at = seen.iter().find(|s| s.path == "/limited").unwrap().at;
    let sent_at = seen.iter().find(|s| s.path == path).unwrap().at;
    assert!(
        sent_at.duration_since(limited_at) >= secs(1),
        "sent {:?} after the 429",
        sent_at.duration_since(limited_at)
    );
    (got, elapsed, server)
}

async fn a_wait_behind_the_cooldown_that_fits_the_deadline_is_counted_in_slept<C: Adapter>() {
    let (got, elapsed, server) = behind_a_1s_cooldown::<C>("/flaky").await;
    assert_eq!(got.status(), 200);
    assert!(elapsed >= ms(800), "{elapsed:?}");
    assert_eq!(got.info().attempts(), 2);
    assert_eq!(server.hits("/flaky"), 2);
    // ~900 ms behind the cooldown, then 20 ms of backoff.
    let slept = got.info().slept();
    assert!(slept >= ms(820) && slept <= ms(1020), "{slept:?}");
}

async fn a_first_try_success_after_a_cooldown_wait_reports_the_wait<C: Adapter>() {
    let (got, elapsed, _server) = behind_a_1s_cooldown::<C>("/ok").await;
    assert_eq!(got.status(), 200);
    assert!(elapsed >= ms(800), "{elapsed:?}");
    assert_eq!(got.info().attempts(), 1);
    let slept = got.info().slept();
    assert!(
        slept >= ms(800) && slept <= secs(1),
        "the wait behind the cooldown is counted in RetryInfo::slept: {slept:?}"
    );
}

real_socket_tests! {
    deadline_refuses_a_wait_behind_the_cooldown {
        HyperUtil => deadline_refuses_a_wait_behind_the_cooldown_tower_hyper_util;
        ReqwestMiddleware => deadline_refuses_a_wait_behind_the_cooldown_reqwest_middleware;
    }
    a_wait_behind_the_cooldown_that_fits_the_deadline_is_counted_in_slept {
        HyperUtil => a_wait_behind_the_cooldown_that_fits_the_deadline_is_counted_in_slept_tower_hyper_util;
        ReqwestMiddleware => a_wait_behind_the_cooldown_that_fits_the_deadline_is_counted_in_slept_reqwest_middleware;
    }
    a_first_try_success_after_a_cooldown_wait_reports_the_wait {
        HyperUtil =>
            a_first_try_success_after_a_cooldown_wait_reports_the_wait_tower_hyper_util;
        ReqwestMiddleware =>
            a_first_try_success_after_a_cooldown_wait_reports_the_wait_reqwest_middleware;
    }
}
