//! Paused clock: the attempt timeout and the deadline over any inner error type, and the
//! deadline bounding the wait behind the cooldown.

use super::*;

// ----- attempt timeout and deadline over any inner error type -----

async fn attempt_timeout_is_enforced_over_any_inner_error_type<E: FnError>() {
    let fake = Fake::new(|_, _| Answer::Hang);
    let policy = exact().max_retries(2).attempt_timeout(secs(2)).build();
    let svc = over_fake::<E>(policy, &fake);

    // A GET: 2 s, 1 s backoff, 2 s, 2 s backoff, 2 s.
    let t = Instant::now();
    let err = svc.clone().oneshot(get(&a("/get"))).await.unwrap_err();
    assert_eq!(t.elapsed(), secs(9));
    assert_eq!(err.kind(), RetryErrorKind::AttemptTimeout);
    assert!(err.is_timeout());
    assert!(err.get_inner().is_none());
    assert_eq!(err.info().attempts(), 3);
    assert_eq!(err.info().slept(), secs(3));
    assert_eq!(err.stop_reason(), Some(StopReason::MaxRetries));
    assert_eq!(fake.at(&a("/get")), [ZERO, secs(3), secs(7)]);

    // A POST that may have arrived is not resent.
    let t = Instant::now();
    let err = svc.oneshot(post(&a("/post"))).await.unwrap_err();
    assert_eq!(t.elapsed(), secs(2));
    assert_eq!(err.kind(), RetryErrorKind::AttemptTimeout);
    assert_eq!(err.info().attempts(), 1);
    assert_eq!(err.stop_reason(), Some(StopReason::Fatal));
    assert_eq!(fake.at(&a("/post")).len(), 1);
}

async fn deadline_cuts_the_attempt_in_flight_and_sends_none_after_it<E: FnError>() {
    let fake = Fake::new(|_, _| Answer::Hang);
    let policy = exact()
        .max_retries(5)
        .attempt_timeout(secs(2))
        .deadline(ms(4500))
        .build();
    let svc = over_fake::<E>(policy, &fake);

    // Attempt 1 times out at 2 s, attempt 2 starts at 3 s and is cut at 4.5 s.
    let t = Instant::now();
    let err = svc.oneshot(get(&a("/"))).await.unwrap_err();
    assert_eq!(t.elapsed(), ms(4500));
    assert_eq!(err.kind(), RetryErrorKind::Deadline);
    assert!(err.is_timeout());
    assert!(err.get_inner().is_none());
    assert_eq!(err.info().attempts(), 2);
    assert_eq!(err.stop_reason(), Some(StopReason::Deadline));
    tokio::time::sleep(secs(60)).await;
    assert_eq!(
        fake.at(&a("/")),
        [ZERO, secs(3)],
        "no attempt after the deadline"
    );
}

service_fn_tests! {
    attempt_timeout_is_enforced_over_any_inner_error_type {
        io::Error => attempt_timeout_is_enforced_over_any_inner_error_type_tower_service_fn_io;
        BoxError => attempt_timeout_is_enforced_over_any_inner_error_type_tower_service_fn_box;
        Opaque => attempt_timeout_is_enforced_over_any_inner_error_type_tower_service_fn_opaque;
    }
    deadline_cuts_the_attempt_in_flight_and_sends_none_after_it {
        io::Error => deadline_cuts_the_attempt_in_flight_and_sends_none_after_it_tower_service_fn_io;
        BoxError => deadline_cuts_the_attempt_in_flight_and_sends_none_after_it_tower_service_fn_box;
        Opaque => deadline_cuts_the_attempt_in_flight_and_sends_none_after_it_tower_service_fn_opaque;
    }
}

// ----- the deadline bounds the wait behind the cooldown -----

async fn deadline_refuses_a_wait_behind_the_cooldown<E: FnError>() {
    let fake = Fake::new(|uri, _| match uri.path() {
        "/limited" => Answer::Limited(5),
        _ => Answer::Status(200),
    });
    let svc = over_fake::<E>(exact().max_retries(3).deadline(secs(3)).build(), &fake);

    // 5 s does not fit a 3 s deadline: the 429 at once.
    let t = Instant::now();
    let resp = svc.clone().oneshot(get(&a("/limited"))).await.unwrap();
    assert_eq!(t.elapsed(), ZERO);
    assert_eq!(resp.status(), 429);
    assert_eq!(info(&resp).stop_reason(), Some(StopReason::Deadline));

    // 1 s later, another request would wait 4 s behind the cooldown: refused at once.
    advance(secs(1)).await;
    let t = Instant::now();
    let err = svc.clone().oneshot(get(&a("/other"))).await.unwrap_err();
    assert_eq!(t.elapsed(), ZERO, "refused at once, not after a wait");
    assert_eq!(err.kind(), RetryErrorKind::Deadline);
    assert!(err.is_timeout());
    assert!(err.get_inner().is_none());
    assert_eq!(err.cooldown(), Some(secs(4)));
    assert_eq!(err.info().attempts(), 0);
    assert_eq!(err.info().slept(), ZERO);
    assert_eq!(err.stop_reason(), Some(StopReason::Deadline));
    assert!(fake.at(&a("/other")).is_empty(), "nothing sent");

    // Once the cooldown has passed, the same request goes through.
    advance(secs(4)).await;
    let resp = svc.oneshot(get(&a("/other"))).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(fake.at(&a("/other")), [secs(5)]);
}

/// A server: 429 `Retry-After: 5` for the first `/limited`, 503 for the first `/flaky`,
/// 200 for everything else.
fn limited_then_flaky() -> Fake {
    Fake::new(|uri, n| match (uri.path(), n) {
        ("/limited", 1) => Answer::Limited(5),
        ("/flaky", 1) => Answer::Status(503),
        _ => Answer::Status(200),
    })
}

async fn a_wait_behind_the_cooldown_that_fits_the_deadline_is_counted_in_slept<E: FnError>() {
    let fake = limited_then_flaky();
    let svc = over_fake::<E>(exact().max_retries(3).deadline(secs(10)).build(), &fake);
    let first = tokio::spawn(svc.clone().oneshot(get(&a("/limited"))));
    tokio::time::sleep(secs(1)).await;

    // Held back 4 s, then a 503, 1 s of backoff, a 200.
    let t = Instant::now();
    let resp = svc.oneshot(get(&a("/flaky"))).await.unwrap();
    assert_eq!(t.elapsed(), secs(5));
    assert_eq!(resp.status(), 200);
    assert_eq!(info(&resp).attempts(), 2);
    assert_eq!(
        info(&resp).slept(),
        secs(5),
        "4 s behind the cooldown + 1 s"
    );
    assert_eq!(fake.at(&a("/flaky")), [secs(5), secs(6)]);
    assert_eq!(first.await.unwrap().unwrap().status(), 200);
}

async fn a_first_try_success_after_a_cooldown_wait_reports_the_wait<E: FnError>() {
    let fake = limited_then_flaky();
    let svc = over_fake::<E>(exact().max_retries(3).deadline(secs(10)).build(), &fake);
    let first = tokio::spawn(svc.clone().oneshot(get(&a("/limited"))));
    tokio::time::sleep(secs(1)).await;

    let t = Instant::now();
    let resp = svc.oneshot(get(&a("/ok"))).await.unwrap();
    assert_eq!(t.elapsed(), secs(4));
    assert_eq!(resp.status(), 200);
    assert_eq!(fake.at(&a("/ok")), [secs(5)]);
    assert_eq!(first.await.unwrap().unwrap().status(), 200);
    let info = info(&resp);
    assert_eq!(info.attempts(), 1);
    assert_eq!(
        info.slept(),
        secs(4),
        "the 4 s behind the cooldown are counted in RetryInfo::slept"
    );
}

async fn a_cooldown_extended_past_the_deadline_during_the_wait_fails_when_it_wakes<E: FnError>() {
    let fake = Fake::new(|uri, _| match uri.path() {
        "/slow" => Answer::LimitedAfter(secs(3), 9),
        "/limited" => Answer::Limited(4),
        _ => Answer::Status(200),
    });
    let svc = over_fake::<E>(exact().max_retries(0).deadline(secs(10)).build(), &fake);

    // In flight before the cooldown: answers 429 `Retry-After: 9` at 3 s (until 12 s).
    let slow = tokio::spawn(svc.clone().oneshot(get(&a("/slow"))));
    tokio::task::yield_now().await;
    // Cooldown until 4 s.
    let resp = svc.clone().oneshot(get(&a("/limited"))).await.unwrap();
    assert_eq!(resp.status(), 429);

    // Fits at first (4 s < 10 s); at 4 s the cooldown runs to 12 s, past the deadline.
    let t = Instant::now();
    let err = svc.oneshot(get(&a("/ok"))).await.unwrap_err();
    assert_eq!(t.elapsed(), secs(4));
    assert_eq!(err.kind(), RetryErrorKind::Deadline);
    assert_eq!(err.cooldown(), Some(secs(8)));
    assert_eq!(err.info().attempts(), 0);
    assert_eq!(err.info().slept(), secs(4));
    assert_eq!(err.stop_reason(), Some(StopReason::Deadline));
    assert_eq!(slow.await.unwrap().unwrap().status(), 429);
    tokio::time::sleep(secs(60)).await;
    assert!(fake.at(&a("/ok")).is_empty(), "never sent");
}

async fn a_retry_due_exactly_at_the_deadline_is_not_slept_for<E: FnError>() {
    let fake = Fake::new(|_, _| Answer::Status(503));
    let svc = over_fake::<E>(exact().max_retries(5).deadline(secs(3)).build(), &fake);

    // Attempts at 0 and 1 s; the next would be due at 3 s, the deadline itself, where no
    // attempt may be sent: the 503 is returned at 1 s rather than after a pointless 2 s.
    let t = Instant::now();
    let result = svc.oneshot(get(&a("/"))).await;
    let elapsed = t.elapsed();
    assert_eq!(fake.at(&a("/")), [ZERO, secs(1)]);
    let resp = result.expect("the last outcome, not an error after a pointless sleep");
    assert_eq!(resp.status(), 503);
    assert_eq!(elapsed, secs(1));
    assert_eq!(info(&resp).attempts(), 2);
    assert_eq!(info(&resp).slept(), secs(1));
    assert_eq!(info(&resp).stop_reason(), Some(StopReason::Deadline));
}

service_fn_tests! {
    deadline_refuses_a_wait_behind_the_cooldown {
        io::Error => deadline_refuses_a_wait_behind_the_cooldown_tower_service_fn_io;
        BoxError => deadline_refuses_a_wait_behind_the_cooldown_tower_service_fn_box;
    }
    a_wait_behind_the_cooldown_that_fits_the_deadline_is_counted_in_slept {
        io::Error => a_wait_behind_the_cooldown_that_fits_the_deadline_is_counted_in_slept_tower_service_fn_io;
        BoxError => a_wait_behind_the_cooldown_that_fits_the_deadline_is_counted_in_slept_tower_service_fn_box;
    }
    a_first_try_success_after_a_cooldown_wait_reports_the_wait {
        io::Error =>
            a_first_try_success_after_a_cooldown_wait_reports_the_wait_tower_service_fn_io;
        BoxError =>
            a_first_try_success_after_a_cooldown_wait_reports_the_wait_tower_service_fn_box;
    }
    a_cooldown_extended_past_the_deadline_during_the_wait_fails_when_it_wakes {
        io::Error => a_cooldown_extended_past_the_deadline_during_the_wait_fails_when_it_wakes_tower_service_fn_io;
        BoxError => a_cooldown_extended_past_the_deadline_during_the_wait_fails_when_it_wakes_tower_service_fn_box;
    }
    a_retry_due_exactly_at_the_deadline_is_not_slept_for {
        io::Error =>
            a_retry_due_exactly_at_the_deadline_is_not_slept_for_tower_service_fn_io;
        BoxError =>
            a_retry_due_exactly_at_the_deadline_is_not_slept_for_tower_service_fn_box;
    }
}
