//! Paused clock: `Buffer` and `Timeout` above the retry layer.

use super::*;

// ----- stacks: Buffer and Timeout above the retry layer -----

async fn errors_through_a_buffer_above_are_boxed_retry_errors<E: FnError>() {
    let fake = Fake::new(|uri, _| match uri.path() {
        "/refused" => Answer::Fail(io::ErrorKind::ConnectionRefused),
        "/hang" => Answer::Hang,
        "/limited" => Answer::Limited(3600),
        "/limited-50" => Answer::Limited(50),
        _ => Answer::Status(200),
    });
    let policy = exact()
        .max_retries(1)
        .attempt_timeout(secs(2))
        .deadline(secs(10))
        .build();
    let svc = ServiceBuilder::new()
        .buffer(8)
        .layer(unbudgeted(policy))
        .service(fake.service::<E>());

    let err: BoxError = svc.clone().oneshot(post(&a("/refused"))).await.unwrap_err();
    let err = retry_error_in(&err);
    assert_eq!(err.kind(), RetryErrorKind::Inner);
    assert_eq!(inner_io_kind(err), io::ErrorKind::ConnectionRefused);
    assert_eq!(err.info().attempts(), 2);
    assert_eq!(err.info().slept(), secs(1));

    let err = svc.clone().oneshot(get(&a("/hang"))).await.unwrap_err();
    let err = retry_error_in(&err);
    assert_eq!(err.kind(), RetryErrorKind::AttemptTimeout);
    assert_eq!(err.info().attempts(), 2);
    assert_eq!(err.stop_reason(), Some(StopReason::MaxRetries));

    let resp = svc.clone().oneshot(get(&b("/limited"))).await.unwrap();
    assert_eq!(resp.status(), 429);
    let err = svc.clone().oneshot(get(&b("/other"))).await.unwrap_err();
    let err = retry_error_in(&err);
    assert_eq!(err.kind(), RetryErrorKind::RateLimited);
    assert_eq!(err.cooldown(), Some(secs(3600)));
    assert_eq!(err.info().attempts(), 0);

    // 50 s fits under the cap but not under the 10 s deadline.
    let resp = svc.clone().oneshot(get(&c("/limited-50"))).await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(info(&resp).stop_reason(), Some(StopReason::Deadline));
    let err = svc.oneshot(get(&c("/other"))).await.unwrap_err();
    let err = retry_error_in(&err);
    assert_eq!(err.kind(), RetryErrorKind::Deadline);
    assert_eq!(err.cooldown(), Some(secs(50)));
    assert_eq!(err.info().attempts(), 0);
    assert!(fake.at(&b("/other")).is_empty() && fake.at(&c("/other")).is_empty());
}

async fn an_outer_timeout_bounds_retries_and_cooldown_waits<E: FnError>() {
    let fake = Fake::new(|uri, _| match uri.path() {
        "/down" => Answer::Status(503),
        "/limited" => Answer::Limited(10),
        "/denied" => Answer::Fail(io::ErrorKind::PermissionDenied),
        _ => Answer::Status(200),
    });
    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::new(ms(2500)))
        .layer(unbudgeted(exact().max_retries(5).build()))
        .service(fake.service::<E>());

    // Attempts at 0 and 1 s; the one due at 3 s is never sent.
    let t = Instant::now();
    let err = svc.clone().oneshot(get(&a("/down"))).await.unwrap_err();
    assert_eq!(t.elapsed(), ms(2500));
    assert!(err.is::<Elapsed>(), "{err:?}");

    // A 429 `Retry-After: 10` at 2.5 s: the request waits, and is cut at 5 s.
    let err = svc.clone().oneshot(get(&b("/limited"))).await.unwrap_err();
    assert!(err.is::<Elapsed>(), "{err:?}");
    // Held back until 12.5 s: cut at 7.5 s, never sent.
    let t = Instant::now();
    let err = svc.clone().oneshot(get(&b("/other"))).await.unwrap_err();
    assert_eq!(t.elapsed(), ms(2500));
    assert!(err.is::<Elapsed>(), "{err:?}");

    // The retry layer's own errors still come through as RetryErrors.
    let err = svc.oneshot(get(&a("/denied"))).await.unwrap_err();
    let err = retry_error_in(&err);
    assert_eq!(err.kind(), RetryErrorKind::Inner);
    assert_eq!(inner_io_kind(err), io::ErrorKind::PermissionDenied);

    tokio::time::sleep(secs(100)).await;
    assert_eq!(fake.at(&a("/down")), [ZERO, secs(1)]);
    assert_eq!(fake.at(&b("/limited")), [ms(2500)]);
    assert!(fake.at(&b("/other")).is_empty());
}

service_fn_tests! {
    errors_through_a_buffer_above_are_boxed_retry_errors {
        io::Error => errors_through_a_buffer_above_are_boxed_retry_errors_tower_service_fn_io;
        BoxError => errors_through_a_buffer_above_are_boxed_retry_errors_tower_service_fn_box;
    }
    an_outer_timeout_bounds_retries_and_cooldown_waits {
        io::Error => an_outer_timeout_bounds_retries_and_cooldown_waits_tower_service_fn_io;
        BoxError => an_outer_timeout_bounds_retries_and_cooldown_waits_tower_service_fn_box;
    }
}
