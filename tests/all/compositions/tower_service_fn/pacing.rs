//! Paused clock: client-side pacing, alone and with the tower layers around it.

use super::*;

// ----- client-side pacing -----

/// A fake that lets `limit` requests per fixed window of `window` through (windows
/// counted from the fake's start) and answers a 429 with `Retry-After` to the window's
/// end past that; the paced client must never meet one.
fn fixed_window(limit: usize, window: Duration) -> Fake {
    let start = Instant::now();
    let counts: Mutex<Vec<usize>> = Mutex::default();
    Fake::new(move |_, _| {
        let index = (start.elapsed().as_nanos() / window.as_nanos()) as usize;
        let mut counts = counts.lock().unwrap();
        if counts.len() <= index {
            counts.resize(index + 1, 0);
        }
        counts[index] += 1;
        if counts[index] > limit {
            Answer::Limited(window.as_secs().max(1))
        } else {
            Answer::Status(200)
        }
    })
}

async fn pacing_at_the_servers_limit_lets_100_concurrent_requests_meet_no_429<E: FnError>() {
    let fake = fixed_window(10, secs(1));
    let svc = over_fake::<E>(paced(exact().build(), Pacing::new(10, secs(1))), &fake);
    let t = Instant::now();
    let responses = join_all((0..100).map(|_| svc.clone().oneshot(get(&a("/v1/calls"))))).await;
    assert_eq!(t.elapsed(), ms(9900), "one every 100 ms");
    for (i, resp) in responses.into_iter().enumerate() {
        let resp = resp.unwrap();
        assert_eq!(resp.status(), 200, "request {i}");
        assert_eq!(info(&resp).attempts(), 1, "request {i}");
        assert_eq!(
            info(&resp).slept(),
            ms(100) * i as u32,
            "its wait is in slept"
        );
    }
    let at = fake.at(&a("/v1/calls"));
    assert_eq!(at.len(), 100, "no 429, no retry");
    assert!(at.windows(2).all(|w| w[1] - w[0] == ms(100)), "{at:?}");
}

async fn retries_are_paced_like_first_attempts<E: FnError>() {
    let fake = Fake::new(|_, n| match n {
        1 => Answer::Status(503),
        _ => Answer::Status(200),
    });
    let policy = exact().max_retries(2).build();
    let svc = over_fake::<E>(paced(policy, Pacing::new(1, secs(5))), &fake);
    let resp = svc.oneshot(get(&a("/flaky"))).await.unwrap();
    assert_eq!(resp.status(), 200);
    // The backoff says 1 s; the retry's slot is at 5 s.
    assert_eq!(fake.at(&a("/flaky")), [ZERO, secs(5)]);
    assert_eq!(info(&resp).attempts(), 2);
    assert_eq!(
        info(&resp).slept(),
        secs(5),
        "1 s of backoff and 4 s for the slot"
    );
}

async fn a_paced_slot_beyond_the_cap_or_the_deadline_fails_at_once<E: FnError>() {
    let fake = Fake::new(|_, _| Answer::Status(200));
    let policy = exact().max_retry_after(secs(60)).build();
    let svc = over_fake::<E>(paced(policy, Pacing::new(1, secs(120))), &fake);
    assert_eq!(
        svc.clone().oneshot(get(&a("/1"))).await.unwrap().status(),
        200
    );
    let t = Instant::now();
    let err = svc.oneshot(get(&a("/2"))).await.unwrap_err();
    assert_eq!(t.elapsed(), ZERO, "refused at once");
    assert_eq!(err.kind(), RetryErrorKind::RateLimited);
    assert!(err.is_rate_limited());
    assert_eq!(
        err.cooldown(),
        Some(secs(120)),
        "the wait it would have had"
    );
    assert_eq!(err.stop_reason(), Some(StopReason::RetryAfterTooLong));
    assert_eq!(err.info().attempts(), 0);

    // Under the cap, over the deadline.
    let policy = exact().deadline(secs(5)).build();
    let svc = over_fake::<E>(paced(policy, Pacing::new(1, secs(10))), &fake);
    assert_eq!(
        svc.clone().oneshot(get(&b("/1"))).await.unwrap().status(),
        200
    );
    let err = svc.oneshot(get(&b("/2"))).await.unwrap_err();
    assert_eq!(t.elapsed(), ZERO);
    assert_eq!(err.kind(), RetryErrorKind::Deadline);
    assert_eq!(err.cooldown(), Some(secs(10)));
    assert_eq!(err.stop_reason(), Some(StopReason::Deadline));
    tokio::time::sleep(secs(200)).await;
    assert!(
        fake.at(&a("/2")).is_empty() && fake.at(&b("/2")).is_empty(),
        "never sent"
    );
    // Refused slots were not taken: the next request goes at its own slot.
    assert_eq!(fake.total(), 2);
}

async fn a_slot_exactly_at_the_deadline_is_refused_at_once_and_not_taken<E: FnError>() {
    let fake = Fake::new(|_, _| Answer::Status(200));
    let svc = over_fake::<E>(paced(exact().build(), Pacing::new(1, secs(1))), &fake);
    svc.clone().oneshot(get(&a("/0"))).await.unwrap();
    let mut req = get(&a("/1"));
    req.extensions_mut()
        .insert(RetryOverride::new().deadline(secs(1)));
    let t = Instant::now();
    let err = svc.clone().oneshot(req).await.unwrap_err();
    assert_eq!(t.elapsed(), ZERO, "refused at once");
    assert_eq!(err.kind(), RetryErrorKind::Deadline);
    assert_eq!(err.cooldown(), Some(secs(1)));
    assert_eq!(err.info().slept(), ZERO);
    svc.oneshot(get(&a("/2"))).await.unwrap();
    assert_eq!(
        fake.at(&a("/2")),
        [secs(1)],
        "the slot at 1 s was not taken"
    );
    assert!(fake.at(&a("/1")).is_empty());
}

async fn a_request_cancelled_while_waiting_for_its_slot_gives_its_place_back<E: FnError>() {
    let fake = Fake::new(|_, _| Answer::Status(200));
    let svc = over_fake::<E>(paced(exact().build(), Pacing::new(1, secs(1))), &fake);
    svc.clone().oneshot(get(&a("/1"))).await.unwrap();
    let mut cancelled = tokio_test::task::spawn(svc.clone().oneshot(get(&a("/2"))));
    assert_pending!(cancelled.poll());
    advance(ms(500)).await;
    assert_pending!(cancelled.poll());
    drop(cancelled);
    let t = Instant::now();
    let third = svc.oneshot(get(&a("/3"))).await.unwrap();
    assert_eq!(t.elapsed(), ms(500), "the slot at 1 s, not 2 s");
    assert_eq!(info(&third).slept(), ms(500));
    assert!(fake.at(&a("/2")).is_empty());
}

/// `/1` takes the only slot of the next 5 s at origin `a`; a second request to `a`
/// waits for its slot holding what `poll_ready` reserved, so that it is sent the moment
/// its slot comes: a third to origin `b` waits for that capacity until then.
async fn paced_request_keeps_capacity<E, S>(build: impl Fn(TelEchoRetry, FakeSvc<E>) -> S)
where
    E: FnError,
    S: Service<Req, Response = Out> + Clone + Send + 'static,
    S::Error: fmt::Debug + Send,
    S::Future: Send,
{
    let fake = Fake::new(|_, _| Answer::Status(200));
    let retry = paced(exact().build(), Pacing::new(1, secs(5)));
    let svc = build(retry, fake.service());
    assert_eq!(
        svc.clone().oneshot(get(&a("/1"))).await.unwrap().status(),
        200
    );
    let second = tokio::spawn(svc.clone().oneshot(get(&a("/2"))));
    tokio::time::sleep(ms(1)).await;
    let t = Instant::now();
    let third = svc.clone().oneshot(get(&b("/3"))).await.unwrap();
    assert_eq!(
        t.elapsed(),
        secs(5) - ms(1),
        "the third waits for the capacity the paced one holds until its slot"
    );
    assert_eq!(third.status(), 200);
    assert_eq!(second.await.unwrap().unwrap().status(), 200);
    assert_eq!(fake.at(&a("/2")), [secs(5)]);
    assert_eq!(fake.at(&b("/3")), [secs(5)]);
}

async fn a_request_waiting_for_its_slot_keeps_its_concurrency_limit_permit<E: FnError>() {
    paced_request_keeps_capacity(|retry, inner: FakeSvc<E>| {
        ServiceBuilder::new()
            .layer(retry)
            .layer(ConcurrencyLimitLayer::new(1))
            .service(inner)
    })
    .await;
}

async fn a_request_waiting_for_its_slot_keeps_its_buffer_slot<E: FnError>() {
    paced_request_keeps_capacity(|retry, inner: FakeSvc<E>| {
        ServiceBuilder::new().layer(retry).buffer(1).service(inner)
    })
    .await;
}

/// Pacing 2/s over a `ConcurrencyLimit(1)` below the retry layer (`stack` puts layers
/// above the retry layer). `/0` goes at once; `/slow` waits for its slot at 0.5 s and
/// then holds the only permit for 5 s; four more requests queue for the permit. Each
/// takes its slot once the permit is its own, so they go out one interval apart from
/// 5.5 s, as the inner service is called: not all at 5.5 s on slots taken while they
/// queued.
async fn paced_sends_stay_spaced_behind_a_busy_concurrency_limit<E, S>(
    stack: impl FnOnce(RetryService<ConcurrencyLimit<FakeSvc<E>>>) -> S,
) where
    E: FnError,
    S: Service<Req, Response = Out> + Clone + Send + 'static,
    S::Error: fmt::Debug + Send,
    S::Future: Send,
{
    let fake = Fake::new(|uri, _| match uri.path() {
        "/slow" => Answer::OkAfter(secs(5)),
        _ => Answer::Status(200),
    });
    let retry = paced(exact().build(), Pacing::new(2, secs(1)));
    let svc = stack(retry.layer(ConcurrencyLimit::new(fake.service::<E>(), 1)));
    let paths = ["/0", "/slow", "/q", "/q", "/q", "/q"];
    let results = join_all(paths.map(|p| svc.clone().oneshot(get(&a(p))))).await;
    for (path, result) in paths.iter().zip(results) {
        assert_eq!(result.unwrap().status(), 200, "{path}");
    }
    assert_eq!(fake.at(&a("/0")), [ZERO]);
    assert_eq!(fake.at(&a("/slow")), [ms(500)]);
    assert_eq!(
        fake.at(&a("/q")),
        [ms(5500), secs(6), ms(6500), secs(7)],
        "spaced when sent"
    );
}

async fn paced_sends_stay_spaced_behind_a_busy_concurrency_limit_below<E: FnError>() {
    paced_sends_stay_spaced_behind_a_busy_concurrency_limit::<E, _>(|svc| svc).await;
}

async fn paced_sends_stay_spaced_behind_a_busy_limit_with_a_timeout_above<E: FnError>() {
    paced_sends_stay_spaced_behind_a_busy_concurrency_limit::<E, _>(|svc| {
        tower::timeout::Timeout::new(svc, secs(60))
    })
    .await;
}

async fn paced_sends_stay_spaced_behind_a_busy_limit_with_a_buffer_above<E: FnError>() {
    paced_sends_stay_spaced_behind_a_busy_concurrency_limit::<E, _>(|svc| {
        tower::buffer::Buffer::new(svc, 8)
    })
    .await;
}

/// Pacing 1/s: `/limited` takes the slot at 0 and answers 429 `Retry-After: 1` at
/// 0.5 s, while `/ok` waits for its slot at 1 s. At 1 s `/ok` sees the cooldown (to
/// 1.5 s) before it takes the slot, so the slot is not wasted: it goes at 1.5 s, on
/// the slot it waited for, not at 2 s on the next one.
async fn a_cooldown_that_begins_during_a_wait_for_a_slot_wastes_no_slot<E: FnError>() {
    let fake = Fake::new(|uri, _| match uri.path() {
        "/limited" => Answer::LimitedAfter(ms(500), 1),
        _ => Answer::Status(200),
    });
    let policy = exact().max_retries(0).build();
    let svc = over_fake::<E>(paced(policy, Pacing::new(1, secs(1))), &fake);
    let limited = tokio::spawn(svc.clone().oneshot(get(&a("/limited"))));
    tokio::task::yield_now().await;
    let t = Instant::now();
    let resp = svc.clone().oneshot(get(&a("/ok"))).await.unwrap();
    assert_eq!(
        t.elapsed(),
        ms(1500),
        "at the cooldown's end, not a slot later"
    );
    assert_eq!(resp.status(), 200);
    assert_eq!(info(&resp).attempts(), 1);
    assert_eq!(
        info(&resp).slept(),
        ms(1500),
        "1 s for the slot, 0.5 s behind the cooldown"
    );
    assert_eq!(limited.await.unwrap().unwrap().status(), 429);
    assert_eq!(fake.at(&a("/ok")), [ms(1500)]);
    // The slot at 1.5 s is taken: the next is at 2.5 s.
    let t = Instant::now();
    svc.oneshot(get(&a("/next"))).await.unwrap();
    assert_eq!(t.elapsed(), secs(1));
}

async fn an_outer_timeout_cuts_a_wait_for_a_slot_and_frees_it<E: FnError>() {
    let fake = Fake::new(|_, _| Answer::Status(200));
    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::new(secs(2)))
        .layer(paced(exact().build(), Pacing::new(1, secs(5))))
        .service(fake.service::<E>());
    svc.clone().oneshot(get(&a("/1"))).await.unwrap();
    let err = svc.clone().oneshot(get(&a("/2"))).await.unwrap_err();
    assert!(err.is::<Elapsed>(), "{err:?}");
    tokio::time::sleep(secs(2)).await;
    // Had /2 kept its slot (at 5 s), this one's would be at 10 s, past its timeout.
    let t = Instant::now();
    svc.oneshot(get(&a("/3"))).await.unwrap();
    assert_eq!(t.elapsed(), secs(1), "the slot at 5 s, which /2 never took");
    assert!(fake.at(&a("/2")).is_empty());
}

service_fn_tests! {
    pacing_at_the_servers_limit_lets_100_concurrent_requests_meet_no_429 {
        io::Error => pacing_at_the_servers_limit_lets_100_concurrent_requests_meet_no_429_tower_service_fn_io;
        BoxError => pacing_at_the_servers_limit_lets_100_concurrent_requests_meet_no_429_tower_service_fn_box;
    }
    retries_are_paced_like_first_attempts {
        io::Error => retries_are_paced_like_first_attempts_tower_service_fn_io;
        BoxError => retries_are_paced_like_first_attempts_tower_service_fn_box;
    }
    a_paced_slot_beyond_the_cap_or_the_deadline_fails_at_once {
        io::Error => a_paced_slot_beyond_the_cap_or_the_deadline_fails_at_once_tower_service_fn_io;
        BoxError => a_paced_slot_beyond_the_cap_or_the_deadline_fails_at_once_tower_service_fn_box;
    }
    a_slot_exactly_at_the_deadline_is_refused_at_once_and_not_taken {
        io::Error => a_slot_exactly_at_the_deadline_is_refused_at_once_and_not_taken_tower_service_fn_io;
    }
    a_request_cancelled_while_waiting_for_its_slot_gives_its_place_back {
        io::Error => a_request_cancelled_while_waiting_for_its_slot_gives_its_place_back_tower_service_fn_io;
    }
    a_request_waiting_for_its_slot_keeps_its_concurrency_limit_permit {
        io::Error => a_request_waiting_for_its_slot_keeps_its_concurrency_limit_permit_tower_service_fn_io;
        BoxError => a_request_waiting_for_its_slot_keeps_its_concurrency_limit_permit_tower_service_fn_box;
    }
    a_request_waiting_for_its_slot_keeps_its_buffer_slot {
        io::Error => a_request_waiting_for_its_slot_keeps_its_buffer_slot_tower_service_fn_io;
        BoxError => a_request_waiting_for_its_slot_keeps_its_buffer_slot_tower_service_fn_box;
    }
    paced_sends_stay_spaced_behind_a_busy_concurrency_limit_below {
        io::Error => paced_sends_stay_spaced_behind_a_busy_concurrency_limit_below_tower_service_fn_io;
        BoxError => paced_sends_stay_spaced_behind_a_busy_concurrency_limit_below_tower_service_fn_box;
    }
    paced_sends_stay_spaced_behind_a_busy_limit_with_a_timeout_above {
        io::Error => paced_sends_stay_spaced_behind_a_busy_limit_with_a_timeout_above_tower_service_fn_io;
    }
    paced_sends_stay_spaced_behind_a_busy_limit_with_a_buffer_above {
        io::Error => paced_sends_stay_spaced_behind_a_busy_limit_with_a_buffer_above_tower_service_fn_io;
    }
    a_cooldown_that_begins_during_a_wait_for_a_slot_wastes_no_slot {
        io::Error => a_cooldown_that_begins_during_a_wait_for_a_slot_wastes_no_slot_tower_service_fn_io;
        BoxError => a_cooldown_that_begins_during_a_wait_for_a_slot_wastes_no_slot_tower_service_fn_box;
    }
    an_outer_timeout_cuts_a_wait_for_a_slot_and_frees_it {
        io::Error => an_outer_timeout_cuts_a_wait_for_a_slot_and_frees_it_tower_service_fn_io;
        BoxError => an_outer_timeout_cuts_a_wait_for_a_slot_and_frees_it_tower_service_fn_box;
    }
}
