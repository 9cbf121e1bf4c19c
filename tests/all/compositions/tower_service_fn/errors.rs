//! Paused clock: inner errors and a failed `poll_ready` reach the caller as `RetryError`s;
//! a refused connection is retried and ends as an inner `RetryError`.

use super::*;

// ----- errors -----

async fn inner_errors_reach_the_caller_as_a_retry_error_with_info_and_source<E: FnError>() {
    let fake = Fake::new(|uri, _| match uri.path() {
        "/denied" => Answer::Fail(io::ErrorKind::PermissionDenied),
        _ => Answer::Fail(io::ErrorKind::ConnectionReset),
    });
    let svc = over_fake::<E>(exact().max_retries(2).build(), &fake);

    // Not a transport failure the policy knows: fatal, one attempt.
    let err: RetryError = svc.clone().oneshot(get(&a("/denied"))).await.unwrap_err();
    assert_eq!(err.kind(), RetryErrorKind::Inner);
    assert_eq!(inner_io_kind(&err), io::ErrorKind::PermissionDenied);
    assert!(err.source().is_some(), "the inner error is the source");
    assert_eq!(err.info().attempts(), 1);
    assert_eq!(err.info().slept(), ZERO);
    assert_eq!(err.stop_reason(), Some(StopReason::Fatal));
    assert!(!err.is_timeout() && !err.is_rate_limited());
    assert_eq!(err.cooldown(), None);

    // A reset on a GET: retried twice, then the last error with what was tried.
    let t = Instant::now();
    let err = svc.oneshot(get(&a("/reset"))).await.unwrap_err();
    assert_eq!(t.elapsed(), secs(3));
    assert_eq!(err.kind(), RetryErrorKind::Inner);
    assert_eq!(inner_io_kind(&err), io::ErrorKind::ConnectionReset);
    assert_eq!(err.info().attempts(), 3);
    assert_eq!(err.info().slept(), secs(3));
    assert_eq!(err.stop_reason(), Some(StopReason::MaxRetries));
    assert_eq!(fake.at(&a("/reset")), [ZERO, secs(1), secs(3)]);
}

/// An inner service whose `poll_ready` fails.
struct BrokenReady<E>(PhantomData<fn() -> E>);

impl<E> Clone for BrokenReady<E> {
    fn clone(&self) -> Self {
        BrokenReady(PhantomData)
    }
}

impl<E: FnError> Service<Req> for BrokenReady<E> {
    type Response = Resp;
    type Error = E;
    type Future = std::future::Ready<Result<Resp, E>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        Poll::Ready(Err(E::io(io::ErrorKind::BrokenPipe)))
    }

    fn call(&mut self, _req: Req) -> Self::Future {
        panic!("called without being ready");
    }
}

async fn a_failed_poll_ready_is_a_retry_error_with_no_attempt_sent<E: FnError>() {
    let svc = errors_are_retry_errors(TelEchoRetry::default().layer(BrokenReady::<E>(PhantomData)));
    let err = svc.oneshot(get(&a("/"))).await.unwrap_err();
    assert_eq!(err.kind(), RetryErrorKind::Inner);
    assert_eq!(inner_io_kind(&err), io::ErrorKind::BrokenPipe);
    assert_eq!(err.info().attempts(), 0);
    assert_eq!(err.info().slept(), ZERO);
}

service_fn_tests! {
    inner_errors_reach_the_caller_as_a_retry_error_with_info_and_source {
        io::Error => inner_errors_reach_the_caller_as_a_retry_error_with_info_and_source_tower_service_fn_io;
        BoxError => inner_errors_reach_the_caller_as_a_retry_error_with_info_and_source_tower_service_fn_box;
    }
    a_failed_poll_ready_is_a_retry_error_with_no_attempt_sent {
        io::Error => a_failed_poll_ready_is_a_retry_error_with_no_attempt_sent_tower_service_fn_io;
        BoxError => a_failed_poll_ready_is_a_retry_error_with_no_attempt_sent_tower_service_fn_box;
    }
}

// ----- a refused connection -----

async fn a_refused_connection_retried_n_times_is_an_inner_retry_error_with_n_plus_1_attempts<
    E: FnError,
>() {
    let fake = Fake::new(|_, _| Answer::Fail(io::ErrorKind::ConnectionRefused));
    for n in 0..=3u32 {
        let svc = over_fake::<E>(exact().max_retries(n).build(), &fake);
        let uri = a(&format!("/{n}"));
        let t = Instant::now();
        // A POST: nothing was sent, so it is retried like any other.
        let err = svc.oneshot(post(&uri)).await.unwrap_err();
        let slept = secs((1 << n) - 1);
        assert_eq!(t.elapsed(), slept);
        assert_eq!(err.kind(), RetryErrorKind::Inner);
        assert_eq!(inner_io_kind(&err), io::ErrorKind::ConnectionRefused);
        assert_eq!(err.info().attempts(), n + 1);
        assert_eq!(err.info().slept(), slept);
        assert_eq!(err.stop_reason(), Some(StopReason::MaxRetries));
        assert_eq!(fake.at(&uri).len(), n as usize + 1);
    }
}

service_fn_tests! {
    a_refused_connection_retried_n_times_is_an_inner_retry_error_with_n_plus_1_attempts {
        io::Error => a_refused_connection_retried_n_times_is_an_inner_retry_error_with_n_plus_1_attempts_tower_service_fn_io;
        BoxError => a_refused_connection_retried_n_times_is_an_inner_retry_error_with_n_plus_1_attempts_tower_service_fn_box;
    }
}
