//! Paused clock: a request held back by the cooldown holds no readiness reservation; a
//! `Retry-After` above the cap is returned at once and starts the cooldown.

use super::*;

// ----- a request held back holds no readiness reservation -----

/// The first request gets a 429 `Retry-After: 5` from origin A; a second one to A, held
/// back until 5 s, must leave the capacity below the retry layer free: a third one to
/// origin B goes through at once.
async fn held_back_request_leaves_capacity<E, S>(build: impl FnOnce(TelEchoRetry, FakeSvc<E>) -> S)
where
    E: FnError,
    S: Service<Req, Response = Out, Error = RetryError> + Clone + Send + 'static,
    S::Future: Send,
{
    let fake = Fake::new(|uri, n| match (uri.path(), n) {
        ("/limited", 1) => Answer::Limited(5),
        _ => Answer::Status(200),
    });
    let svc = build(unbudgeted(exact().max_retries(1).build()), fake.service());

    let first = tokio::spawn(svc.clone().oneshot(get(&a("/limited"))));
    tokio::time::sleep(secs(1)).await;
    let second = tokio::spawn(svc.clone().oneshot(get(&a("/ok"))));
    // Lets `second` run: it reserves the inner service, then is held back.
    tokio::time::sleep(ms(1)).await;

    let t = Instant::now();
    let third = svc.clone().oneshot(get(&b("/ok"))).await.unwrap();
    assert_eq!(
        t.elapsed(),
        ZERO,
        "the third request waited for capacity the held-back one kept"
    );
    assert_eq!(third.status(), 200);

    assert_eq!(first.await.unwrap().unwrap().status(), 200);
    assert_eq!(second.await.unwrap().unwrap().status(), 200);
    assert_eq!(fake.at(&a("/limited")), [ZERO, secs(5)]);
    assert_eq!(fake.at(&a("/ok")), [secs(5)]);
    assert_eq!(fake.at(&b("/ok")), [secs(1) + ms(1)]);
}

async fn a_request_held_back_by_the_cooldown_holds_no_concurrency_limit_permit<E: FnError>() {
    held_back_request_leaves_capacity(|retry, inner: FakeSvc<E>| {
        ServiceBuilder::new()
            .layer(retry)
            .layer(ConcurrencyLimitLayer::new(1))
            .service(inner)
    })
    .await;
}

async fn a_request_held_back_by_the_cooldown_holds_no_buffer_slot<E: FnError>() {
    held_back_request_leaves_capacity(|retry, inner: FakeSvc<E>| {
        ServiceBuilder::new().layer(retry).buffer(1).service(inner)
    })
    .await;
}

async fn deadline_bounds_the_wait_for_the_inner_service_to_be_ready<E: FnError>() {
    let fake = Fake::new(|uri, n| match (uri.path(), n) {
        ("/limited", 1) => Answer::Limited(1),
        ("/hang", _) => Answer::Hang,
        _ => Answer::Status(200),
    });
    let limit = ConcurrencyLimit::new(fake.service::<E>(), 1);
    let policy = exact().max_retries(0).deadline(secs(2)).build();
    let svc = errors_are_retry_errors(unbudgeted(policy).layer(limit.clone()));
    let resp = svc.clone().oneshot(get(&a("/limited"))).await.unwrap();
    assert_eq!(resp.status(), 429);

    // Held back 1 s; meanwhile another client of the limit takes its only permit.
    let mut held = tokio_test::task::spawn(svc.oneshot(get(&a("/ok"))));
    assert_pending!(held.poll());
    let mut hog = tokio_test::task::spawn(limit.oneshot(get(&b("/hang"))));
    assert_pending!(hog.poll());
    advance(secs(1)).await;
    assert_pending!(held.poll());
    advance(secs(1) - ms(1)).await;
    assert_pending!(held.poll());
    advance(ms(1)).await;
    let err = assert_ready!(held.poll()).unwrap_err();
    assert_eq!(err.kind(), RetryErrorKind::Deadline);
    assert_eq!(err.info().attempts(), 0);
    assert_eq!(err.info().slept(), secs(1));
    assert_eq!(err.stop_reason(), Some(StopReason::Deadline));
    drop(hog);
    tokio::time::sleep(secs(10)).await;
    assert!(fake.at(&a("/ok")).is_empty(), "never sent");
}

service_fn_tests! {
    a_request_held_back_by_the_cooldown_holds_no_concurrency_limit_permit {
        io::Error => a_request_held_back_by_the_cooldown_holds_no_concurrency_limit_permit_tower_service_fn_io;
        BoxError => a_request_held_back_by_the_cooldown_holds_no_concurrency_limit_permit_tower_service_fn_box;
    }
    a_request_held_back_by_the_cooldown_holds_no_buffer_slot {
        io::Error => a_request_held_back_by_the_cooldown_holds_no_buffer_slot_tower_service_fn_io;
        BoxError => a_request_held_back_by_the_cooldown_holds_no_buffer_slot_tower_service_fn_box;
    }
    deadline_bounds_the_wait_for_the_inner_service_to_be_ready {
        io::Error => deadline_bounds_the_wait_for_the_inner_service_to_be_ready_tower_service_fn_io;
        BoxError => deadline_bounds_the_wait_for_the_inner_service_to_be_ready_tower_service_fn_box;
    }
}

// ----- a Retry-After above the cap -----

/// A 429 with `Retry-After: retry_after` (above the 60 s cap) is returned at once;
/// `later` seconds on, requests to that origin fail at once with the cooldown left,
/// nothing sent, until it has passed.
async fn above_the_cap<E: FnError>(retry_after: u64, later: u64) {
    let fake = Fake::new(move |uri, n| match (uri.path(), n) {
        ("/limited", 1) => Answer::Limited(retry_after),
        ("/at-cap", 1) => Answer::Limited(60),
        _ => Answer::Status(200),
    });
    let svc = over_fake::<E>(exact().max_retries(3).build(), &fake);
    assert_eq!(svc.retry().policy().max_retry_after(), secs(60), "default");

    let t = Instant::now();
    let resp = svc.clone().oneshot(get(&a("/limited"))).await.unwrap();
    assert_eq!(t.elapsed(), ZERO);
    assert_eq!(resp.status(), 429);
    assert_eq!(
        resp.headers()[RETRY_AFTER],
        retry_after.to_string().as_str(),
        "header intact"
    );
    assert_eq!(info(&resp).attempts(), 1);
    assert_eq!(info(&resp).slept(), ZERO);
    assert_eq!(
        info(&resp).stop_reason(),
        Some(StopReason::RetryAfterTooLong)
    );

    // Until it passes, requests to that origin fail at once, whatever the method.
    advance(secs(later)).await;
    for req in [get(&a("/other")), post(&a("/other"))] {
        let t = Instant::now();
        let result = svc.clone().oneshot(req).await;
        assert_eq!(t.elapsed(), ZERO, "not held back: refused at once");
        let err = result.unwrap_err();
        assert_eq!(err.kind(), RetryErrorKind::RateLimited);
        assert!(err.is_rate_limited());
        assert!(!err.is_timeout());
        assert!(err.get_inner().is_none());
        assert_eq!(
            err.cooldown(),
            Some(secs(retry_after - later)),
            "the wait left"
        );
        assert_eq!(err.info().attempts(), 0);
        assert_eq!(err.info().slept(), ZERO);
        assert_eq!(err.stop_reason(), Some(StopReason::RetryAfterTooLong));
    }
    assert!(fake.at(&a("/other")).is_empty(), "nothing sent");

    advance(secs(retry_after - later)).await;
    let resp = svc.clone().oneshot(get(&a("/other"))).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(fake.at(&a("/other")), [secs(retry_after)]);

    // At the cap exactly: waited for, not returned.
    let t = Instant::now();
    let resp = svc.oneshot(get(&b("/at-cap"))).await.unwrap();
    assert_eq!(t.elapsed(), secs(60));
    assert_eq!(resp.status(), 200);
    assert_eq!(info(&resp).attempts(), 2);
}

async fn a_retry_after_above_the_cap_is_returned_at_once_and_starts_the_cooldown<E: FnError>() {
    above_the_cap::<E>(3600, 100).await;
}

async fn requests_fail_rate_limited_until_the_cooldown_has_passed_even_once_under_the_cap<
    E: FnError,
>() {
    // 10 s after a `Retry-After: 61`, 51 s are left: less than the cap, still refused.
    above_the_cap::<E>(61, 10).await;
}

service_fn_tests! {
    a_retry_after_above_the_cap_is_returned_at_once_and_starts_the_cooldown {
        io::Error => a_retry_after_above_the_cap_is_returned_at_once_and_starts_the_cooldown_tower_service_fn_io;
        BoxError => a_retry_after_above_the_cap_is_returned_at_once_and_starts_the_cooldown_tower_service_fn_box;
    }
    requests_fail_rate_limited_until_the_cooldown_has_passed_even_once_under_the_cap {
        io::Error =>
            requests_fail_rate_limited_until_the_cooldown_has_passed_even_once_under_the_cap_tower_service_fn_io;
        BoxError =>
            requests_fail_rate_limited_until_the_cooldown_has_passed_even_once_under_the_cap_tower_service_fn_box;
    }
}
