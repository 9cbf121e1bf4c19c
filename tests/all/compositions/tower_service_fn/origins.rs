//! Paused clock: per-origin limits (cooldown, budget), past the limits' bound of 1024
//! origins too.

use super::*;

// ----- per-origin limits -----

async fn a_429_from_one_origin_does_not_hold_back_another<E: FnError>() {
    let fake = Fake::new(|uri, n| match (uri.path(), n) {
        ("/limited", 1) => Answer::Limited(5),
        ("/long", 1) => Answer::Limited(3600),
        _ => Answer::Status(200),
    });
    let svc = over_fake::<E>(exact().max_retries(0).build(), &fake);

    let resp = svc.clone().oneshot(get(&a("/limited"))).await.unwrap();
    assert_eq!(resp.status(), 429);
    let t = Instant::now();
    let resp = svc.clone().oneshot(get(&b("/ok"))).await.unwrap();
    assert_eq!(
        (resp.status().as_u16(), t.elapsed()),
        (200, ZERO),
        "B is not held back"
    );
    let resp = svc.clone().oneshot(get(&a("/ok"))).await.unwrap();
    assert_eq!(
        (resp.status().as_u16(), t.elapsed()),
        (200, secs(5)),
        "A is"
    );

    // Above the cap: A refuses, B does not.
    let resp = svc.clone().oneshot(get(&a("/long"))).await.unwrap();
    assert_eq!(resp.status(), 429);
    let resp = svc.clone().oneshot(get(&b("/ok"))).await.unwrap();
    assert_eq!(resp.status(), 200);
    let err = svc.oneshot(get(&a("/ok"))).await.unwrap_err();
    assert!(err.is_rate_limited());
    assert_eq!(fake.at(&b("/ok")), [ZERO, secs(5)]);
}

/// The same through one service, not clones: the service keeps the last origin's limits
/// between calls, and they are that origin's, never another's.
async fn one_service_keeps_each_origins_limits_apart<E: FnError>() {
    let fake = Fake::new(|uri, n| match (uri.path(), n) {
        ("/limited", 1) => Answer::Limited(5),
        _ => Answer::Status(200),
    });
    let mut svc = over_fake::<E>(exact().max_retries(0).build(), &fake);
    let t = Instant::now();
    let resp = svc
        .ready()
        .await
        .unwrap()
        .call(get(&a("/limited")))
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let resp = svc
        .ready()
        .await
        .unwrap()
        .call(get(&a("/ok")))
        .await
        .unwrap();
    assert_eq!(
        (resp.status().as_u16(), t.elapsed()),
        (200, secs(5)),
        "A is held back"
    );
    let t = Instant::now();
    let resp = svc
        .ready()
        .await
        .unwrap()
        .call(get(&b("/ok")))
        .await
        .unwrap();
    assert_eq!(
        (resp.status().as_u16(), t.elapsed()),
        (200, ZERO),
        "B is not"
    );
}

async fn the_retry_budget_is_kept_per_origin<E: FnError>() {
    let fake = Fake::new(|_, _| Answer::Status(503));
    // No share of traffic; a floor of 1 retry a second over 10 s: 10 retries per origin.
    let policy = exact().max_retries(1).base_delay(ms(100)).build();
    let mut svc = over_fake::<E>(budgeted(policy, RetryBudget::new(secs(10), 1, 0.0)), &fake);
    for uri in [a("/"), b("/")] {
        let results = at_once(&mut svc, &uri, 20).await;
        assert_eq!(fake.at(&uri).len(), 30, "{uri}: 20 requests + 10 retries");
        let budget = results
            .iter()
            .filter(|r| info(r.as_ref().unwrap()).stop_reason() == Some(StopReason::Budget))
            .count();
        assert_eq!(budget, 10, "{uri}");
    }
}

service_fn_tests! {
    a_429_from_one_origin_does_not_hold_back_another {
        io::Error => a_429_from_one_origin_does_not_hold_back_another_tower_service_fn_io;
        BoxError => a_429_from_one_origin_does_not_hold_back_another_tower_service_fn_box;
    }
    one_service_keeps_each_origins_limits_apart {
        io::Error => one_service_keeps_each_origins_limits_apart_tower_service_fn_io;
        BoxError => one_service_keeps_each_origins_limits_apart_tower_service_fn_box;
    }
    the_retry_budget_is_kept_per_origin {
        io::Error => the_retry_budget_is_kept_per_origin_tower_service_fn_io;
        BoxError => the_retry_budget_is_kept_per_origin_tower_service_fn_box;
    }
}

// ----- more origins than the limits keep apart (1024) -----

/// Origin `i` of many, each its own host.
fn host(i: usize, path: &str) -> String {
    format!("http://h{i}.test{path}")
}

/// 300 origins each answer 429 `Retry-After: 3600`. Under a cap of 2 h that is a
/// cooldown: later requests to the origin wait it out; under the default 60 s cap a
/// refusal: they fail at once. Either way no request to an origin is sent during its
/// cooldown, past the limits' bound of 1024 origins too. (Past the bound, origins share
/// 16 overflow limits, so a first request may be held back or refused by another
/// origin's cooldown: documented, and never a request sent too early.)
async fn no_origin_is_sent_to_during_its_cooldown_past_the_origin_bound<E: FnError>() {
    const ORIGINS: usize = 1100;
    for (cap, refused) in [(secs(7200), false), (secs(60), true)] {
        let fake = Fake::new(|uri, _| match uri.path() {
            "/limited" => Answer::Limited(3600),
            _ => Answer::Status(200),
        });
        let policy = exact().max_retries(0).max_retry_after(cap).build();
        let svc = over_fake::<E>(policy, &fake);
        // All at 0 s: the second requests go while the first ones held back by a shared
        // overflow limit still wait.
        let first = (0..ORIGINS).map(|i| svc.clone().oneshot(get(&host(i, "/limited"))));
        let first = tokio::spawn(join_all(first));
        tokio::task::yield_now().await;
        let again = (0..ORIGINS).map(|i| svc.clone().oneshot(get(&host(i, "/again"))));
        let again = tokio::spawn(join_all(again));
        for (i, result) in first.await.unwrap().into_iter().enumerate() {
            match result {
                Ok(resp) => assert_eq!(resp.status(), 429, "origin {i}"),
                // Past the bound: refused (under the 60 s cap), or held back by the
                // cooldowns of the origins sharing its overflow limit for longer than
                // the cap in all (under the 2 h cap).
                Err(err) => {
                    assert!(i >= 1024, "origin {i}: {err:?}");
                    assert_eq!(err.kind(), RetryErrorKind::RateLimited, "origin {i}");
                }
            }
        }
        let mut held_too_long = Vec::new();
        for (i, result) in again.await.unwrap().into_iter().enumerate() {
            if refused {
                let err = result.unwrap_err();
                assert_eq!(err.kind(), RetryErrorKind::RateLimited, "origin {i}");
                assert_eq!(err.info().attempts(), 0, "origin {i}");
            } else {
                match result {
                    Ok(resp) => assert_eq!(resp.status(), 200, "origin {i}"),
                    Err(err) => {
                        assert!(i >= 1024, "origin {i}: {err:?}");
                        assert_eq!(err.kind(), RetryErrorKind::RateLimited, "origin {i}");
                        held_too_long.push(i);
                    }
                }
            }
        }
        for i in 0..ORIGINS {
            let mut sent = fake.at(&host(i, "/limited"));
            sent.extend(fake.at(&host(i, "/again")));
            sent.sort();
            if refused {
                assert!(sent.len() <= 1, "origin {i}: {sent:?}");
            } else if !held_too_long.contains(&i) {
                assert!(sent.len() <= 2, "origin {i}: {sent:?}");
                if i < 1024 {
                    assert_eq!(sent.len(), 2, "origin {i}: both sent in the end");
                }
            }
            for pair in sent.windows(2) {
                assert!(
                    pair[1] - pair[0] >= secs(3600),
                    "origin {i}: sent during its cooldown: {sent:?}"
                );
            }
        }
        if !refused {
            let kept: Vec<_> = (0..1024).map(|i| fake.at(&host(i, "/again"))).collect();
            assert!(
                kept.iter().all(|at| at == &[secs(3600)]),
                "the 1024 kept apart wait exactly their own hour: {kept:?}"
            );
        }
    }
}

/// Pacing 1 per 10 s: origin `a` takes its slot, then 1025 other origins take theirs
/// (past the limits' bound of 1024) through a client of the same limits that refuses a
/// slot more than 5 s ahead (two origins sharing an overflow limit must not advance the
/// paused clock): `a`'s next request still waits for its slot at 10 s.
async fn an_origins_pacing_holds_past_the_origin_bound<E: FnError>() {
    let fake = Fake::new(|_, _| Answer::Status(200));
    let limits = Limits::builder()
        .without_retry_budget()
        .pacing(Pacing::new(1, secs(10)))
        .build();
    let svc = over_fake::<E>(
        TelEchoRetry::new(exact().build()).with_limits(limits.clone()),
        &fake,
    );
    let others = over_fake::<E>(
        TelEchoRetry::new(exact().max_retry_after(secs(5)).build()).with_limits(limits),
        &fake,
    );
    svc.clone().oneshot(get(&a("/1"))).await.unwrap();
    for i in 0..1025 {
        let _ = others.clone().oneshot(get(&host(i, "/"))).await;
    }
    assert!(fake.total() >= 1024, "the others took slots of their own");
    let t = Instant::now();
    let resp = svc.oneshot(get(&a("/2"))).await.unwrap();
    assert_eq!(
        t.elapsed(),
        secs(10),
        "a's slot is still 10 s after its last"
    );
    assert_eq!(info(&resp).slept(), secs(10));
    assert_eq!(fake.at(&a("/2")), [secs(10)]);
}

service_fn_tests! {
    no_origin_is_sent_to_during_its_cooldown_past_the_origin_bound {
        io::Error => no_origin_is_sent_to_during_its_cooldown_past_the_origin_bound_tower_service_fn_io;
    }
    an_origins_pacing_holds_past_the_origin_bound {
        io::Error => an_origins_pacing_holds_past_the_origin_bound_tower_service_fn_io;
    }
}
