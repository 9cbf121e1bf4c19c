//! A failure reads as what happened: the attempts, the last cause, and nothing secret, through
//! the tower layer over hyper-util's client and through the reqwest middleware's `.send()`.
#![cfg(all(feature = "tower", feature = "reqwest"))]

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use telecho_retry::{Jitter, RetryError, RetryErrorKind, RetryPolicy, StopReason, TelEchoRetry};
use tower::{ServiceBuilder, ServiceExt};

const SECRET: &str = "tel_sk_readable_errors_secret";

/// Two retries 10 ms apart, no randomness.
fn quick() -> TelEchoRetry {
    TelEchoRetry::new(
        RetryPolicy::builder()
            .max_retries(2)
            .base_delay(Duration::from_millis(10))
            .jitter(Jitter::None)
            .build(),
    )
}

/// A loopback URL nobody listens on, with a secret in its query.
fn closed_url() -> String {
    let addr = crate::support::closed_addr();
    format!("http://{addr}/v1/agents?api_key={SECRET}")
}

fn check(err: &RetryError) {
    assert_eq!(err.kind(), RetryErrorKind::Inner);
    assert_eq!(err.info().attempts(), 3);
    assert_eq!(err.stop_reason(), Some(StopReason::MaxRetries));
    let shown = err.to_string();
    assert_eq!(
        shown, "request failed after 3 attempts: connect error (connection refused)",
        "{shown}"
    );
    let debug = format!("{err:?}");
    for text in [&shown, &debug] {
        assert!(
            !text.contains(SECRET) && !text.contains("127.0.0.1"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn a_refused_connection_names_its_cause_through_the_tower_layer() {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let svc = ServiceBuilder::new().layer(quick()).service(client);
    let request = http::Request::get(closed_url())
        .header("authorization", format!("Bearer {SECRET}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let err = svc.oneshot(request).await.unwrap_err();
    check(&err);
    assert!(err.is_connect());
}

#[tokio::test]
async fn send_through_the_middleware_returns_a_retry_error_with_its_info() {
    let client = reqwest_middleware::ClientBuilder::new(
        reqwest::Client::builder().no_proxy().build().unwrap(),
    )
    .with(quick())
    .build();
    let err = client
        .get(closed_url())
        .bearer_auth(SECRET)
        .send()
        .await
        .unwrap_err();
    let retry = RetryError::of(&err).expect("the RetryError inside .send()'s error");
    check(retry);
    assert!(retry.is_connect());
    // Debug of what `.send()` returns walks the whole chain: the URL's query (a secret
    // here) is not in it.
    let debug = format!("{err:?} {err}");
    assert!(!debug.contains(SECRET), "{debug}");
    let inner = retry.get_inner().expect("the last attempt's error");
    let reqwest = inner
        .downcast_ref::<reqwest::Error>()
        .expect("a reqwest::Error");
    assert!(reqwest.is_connect());
}
