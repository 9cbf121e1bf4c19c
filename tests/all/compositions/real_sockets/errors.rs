//! Real sockets: a refused connection is retried and ends as an inner `RetryError`.

use super::*;

// ----- a refused connection -----

async fn a_refused_connection_retried_n_times_is_an_inner_retry_error_with_n_plus_1_attempts<
    C: Adapter,
>() {
    for n in 0..=2u32 {
        let client = C::over(unbudgeted(fast().max_retries(n).build()));
        let got = client.send(Method::POST, refused_url()).await;
        assert_eq!(got.inner(), TransportErrorKind::Connect);
        assert_eq!(got.info().attempts(), n + 1);
        assert_eq!(got.info().slept(), ms(20 * ((1 << n) - 1)));
        assert_eq!(got.info().stop_reason(), Some(StopReason::MaxRetries));
    }
}

real_socket_tests! {
    a_refused_connection_retried_n_times_is_an_inner_retry_error_with_n_plus_1_attempts {
        HyperUtil => a_refused_connection_retried_n_times_is_an_inner_retry_error_with_n_plus_1_attempts_tower_hyper_util;
        ReqwestMiddleware => a_refused_connection_retried_n_times_is_an_inner_retry_error_with_n_plus_1_attempts_reqwest_middleware;
    }
}
