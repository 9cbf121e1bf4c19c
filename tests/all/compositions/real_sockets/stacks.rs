//! Real sockets: the tower layer over hyper-util under `ConcurrencyLimit`, `Buffer` and
//! `Timeout`.

use super::*;

// ----- hyper-util stacks -----

/// Like [`held_back_request_leaves_capacity`], over hyper-util in real time: `/limited`
/// answers 429 `Retry-After: 1` once; a request to the same server is held back; one to
/// another server goes through at once.
async fn held_back_request_leaves_capacity_over_hyper_util<S>(
    build: impl FnOnce(TelEchoRetry, HyperClient) -> S,
) where
    S: Service<Req, Response = Response<ResponseBody<hyper::body::Incoming>>, Error = RetryError>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let limiting = Server::start(first_then(
        "/limited",
        limited_reply("1"),
        Reply::status(200),
    ))
    .await;
    let other = Server::start(|_| Reply::status(200)).await;
    let svc = build(unbudgeted(fast().max_retries(1).build()), hyper_client());

    let first = tokio::spawn(svc.clone().oneshot(get(&limiting.url("/limited"))));
    tokio::time::sleep(ms(100)).await;
    let second = tokio::spawn(svc.clone().oneshot(get(&limiting.url("/ok"))));
    tokio::time::sleep(ms(50)).await;

    let t = std::time::Instant::now();
    let third = svc.clone().oneshot(get(&other.url("/ok"))).await.unwrap();
    assert!(
        t.elapsed() < ms(400),
        "the third request waited {:?} for capacity the held-back one kept",
        t.elapsed()
    );
    assert_eq!(third.status(), 200);
    assert_eq!(limiting.hits("/ok"), 0, "the second one still waits");

    assert_eq!(first.await.unwrap().unwrap().status(), 200);
    assert_eq!(second.await.unwrap().unwrap().status(), 200);
    let seen = limiting.seen();
    let limited_at = seen[0].at;
    let ok_at = seen.iter().find(|s| s.path == "/ok").unwrap().at;
    assert!(ok_at.duration_since(limited_at) >= secs(1));
}

#[tokio::test]
async fn a_request_held_back_by_the_cooldown_holds_no_concurrency_limit_permit_tower_hyper_util() {
    bounded(held_back_request_leaves_capacity_over_hyper_util(
        |retry, client| {
            ServiceBuilder::new()
                .layer(retry)
                .layer(ConcurrencyLimitLayer::new(1))
                .service(client)
        },
    ))
    .await;
}

#[tokio::test]
async fn a_request_held_back_by_the_cooldown_holds_no_buffer_slot_tower_hyper_util() {
    bounded(held_back_request_leaves_capacity_over_hyper_util(
        |retry, client| ServiceBuilder::new().layer(retry).buffer(1).service(client),
    ))
    .await;
}

#[tokio::test]
async fn deadline_bounds_the_wait_for_the_inner_service_to_be_ready_tower_hyper_util() {
    bounded(async {
        let limiting = Server::start(first_then(
            "/limited",
            limited_reply("1"),
            Reply::status(200),
        ))
        .await;
        let silent = RawServer::start(Misbehave::Silent).await;
        let limit = ConcurrencyLimit::new(hyper_client(), 1);
        let policy = fast().max_retries(0).deadline(ms(1200)).build();
        let svc = errors_are_retry_errors(unbudgeted(policy).layer(limit.clone()));
        let resp = svc
            .clone()
            .oneshot(get(&limiting.url("/limited")))
            .await
            .unwrap();
        assert_eq!(resp.status(), 429);

        // Held back ~1 s; meanwhile another client of the limit takes its only permit.
        let t = std::time::Instant::now();
        let held = tokio::spawn(svc.oneshot(get(&limiting.url("/ok"))));
        tokio::time::sleep(ms(50)).await;
        let hog = tokio::spawn(limit.oneshot(get(&silent.url())));
        let err = held.await.unwrap().unwrap_err();
        let elapsed = t.elapsed();
        assert_eq!(err.kind(), RetryErrorKind::Deadline);
        assert!(elapsed >= ms(1150) && elapsed < ms(1600), "{elapsed:?}");
        assert_eq!(err.info().attempts(), 0);
        let slept = err.info().slept();
        assert!(slept >= ms(800) && slept <= secs(1), "{slept:?}");
        assert_eq!(silent.requests(), 1, "the permit was taken");
        hog.abort();
        tokio::time::sleep(ms(100)).await;
        assert_eq!(limiting.hits("/ok"), 0, "never sent");
    })
    .await;
}

#[tokio::test]
async fn errors_through_a_buffer_above_are_boxed_retry_errors_tower_hyper_util() {
    bounded(async {
        let limiting = Server::start(|seen| match seen.path.as_str() {
            "/limited" => limited_reply("3600"),
            _ => Reply::status(200),
        })
        .await;
        let short = Server::start(|_| limited_reply("1")).await;
        let silent = RawServer::start(Misbehave::Silent).await;
        let policy = fast()
            .max_retries(1)
            .attempt_timeout(ms(100))
            .deadline(ms(500))
            .build();
        let svc = ServiceBuilder::new()
            .buffer(8)
            .layer(unbudgeted(policy))
            .service(hyper_client());

        let err: BoxError = svc.clone().oneshot(post(&refused_url())).await.unwrap_err();
        let err = retry_error_in(&err);
        assert_eq!(err.kind(), RetryErrorKind::Inner);
        let inner = err.get_inner().unwrap();
        let inner = inner
            .downcast_ref::<hyper_util::client::legacy::Error>()
            .expect("hyper-util's error");
        assert!(inner.is_connect());
        assert_eq!(err.info().attempts(), 2);

        let err = svc.clone().oneshot(get(&silent.url())).await.unwrap_err();
        let err = retry_error_in(&err);
        assert_eq!(err.kind(), RetryErrorKind::AttemptTimeout);
        assert_eq!(err.info().attempts(), 2);

        let resp = svc
            .clone()
            .oneshot(get(&limiting.url("/limited")))
            .await
            .unwrap();
        assert_eq!(resp.status(), 429);
        let err = svc
            .clone()
            .oneshot(get(&limiting.url("/other")))
            .await
            .unwrap_err();
        let err = retry_error_in(&err);
        assert_eq!(err.kind(), RetryErrorKind::RateLimited);
        assert_eq!(err.info().attempts(), 0);

        // 1 s does not fit the 500 ms deadline.
        let resp = svc.clone().oneshot(get(&short.url("/a"))).await.unwrap();
        assert_eq!(resp.status(), 429);
        let t = std::time::Instant::now();
        let err = svc.oneshot(get(&short.url("/b"))).await.unwrap_err();
        assert!(t.elapsed() < ms(300), "refused at once: {:?}", t.elapsed());
        let err = retry_error_in(&err);
        assert_eq!(err.kind(), RetryErrorKind::Deadline);
        assert_eq!(err.info().attempts(), 0);
        assert_eq!(limiting.hits("/other") + short.hits("/b"), 0);
    })
    .await;
}

#[tokio::test]
async fn an_outer_timeout_bounds_retries_and_cooldown_waits_tower_hyper_util() {
    bounded(async {
        let down = Server::start(|_| Reply::status(503)).await;
        let limiting = Server::start(|seen| match seen.path.as_str() {
            "/limited" => limited_reply("1"),
            _ => Reply::status(200),
        })
        .await;
        let svc = ServiceBuilder::new()
            .layer(TimeoutLayer::new(ms(150)))
            .layer(unbudgeted(fast().max_retries(5).build()))
            .service(hyper_client());

        // 20 + 40 + 80 + 100 + 100 ms of backoff would take past 150 ms.
        let t = std::time::Instant::now();
        let err = svc.clone().oneshot(get(&down.url("/"))).await.unwrap_err();
        let elapsed = t.elapsed();
        assert!(err.is::<Elapsed>(), "{err:?}");
        assert!(elapsed >= ms(150) && elapsed < ms(400), "{elapsed:?}");

        // Waiting for `Retry-After: 1`, and held back behind it: both cut at 150 ms.
        for path in ["/limited", "/other"] {
            let t = std::time::Instant::now();
            let err = svc
                .clone()
                .oneshot(get(&limiting.url(path)))
                .await
                .unwrap_err();
            let elapsed = t.elapsed();
            assert!(err.is::<Elapsed>(), "{path}: {err:?}");
            assert!(elapsed >= ms(150) && elapsed < ms(400), "{elapsed:?}");
        }

        // The retry layer's own errors still come through as RetryErrors: a POST whose
        // response was cut short is not resent.
        let cut = RawServer::start(Misbehave::IncompleteHead).await;
        let err = svc.oneshot(post(&cut.url())).await.unwrap_err();
        let err = retry_error_in(&err);
        assert_eq!(err.kind(), RetryErrorKind::Inner);
        assert_eq!(err.info().attempts(), 1);
        assert_eq!(err.stop_reason(), Some(StopReason::Fatal));

        let before = down.seen().len();
        assert!(before <= 4, "{before} attempts within 150 ms");
        tokio::time::sleep(ms(1100)).await;
        assert_eq!(down.seen().len(), before, "nothing sent after the timeout");
        assert_eq!(limiting.hits("/limited"), 1);
        assert_eq!(limiting.hits("/other"), 0);
    })
    .await;
}
