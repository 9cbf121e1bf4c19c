//! What a user who configures nothing gets when a server accepts a request and never answers:
//! each attempt is cut by the default attempt timeout (30 s), through the tower layer and the
//! reqwest middleware.
#![cfg(all(feature = "tower", feature = "reqwest"))]

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::Full;
use telecho_retry::{RetryError, RetryErrorKind, TelEchoRetry};
use tokio::time::Instant;
use tower::{service_fn, ServiceBuilder, ServiceExt};

#[tokio::test(start_paused = true)]
async fn a_post_to_a_server_that_never_answers_ends_after_the_default_attempt_timeout() {
    let never = service_fn(|_req: Request<Full<Bytes>>| async {
        std::future::pending::<Result<Response<Full<Bytes>>, std::io::Error>>().await
    });
    let svc = ServiceBuilder::new()
        .layer(TelEchoRetry::default())
        .service(never);
    let request = Request::builder()
        .method(Method::POST)
        .uri("http://api.telecho.test/v1/calls")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let started = Instant::now();
    let err: RetryError = tokio::time::timeout(Duration::from_secs(3600), svc.oneshot(request))
        .await
        .expect("bounded by default")
        .unwrap_err();
    assert_eq!(err.kind(), RetryErrorKind::AttemptTimeout);
    assert_eq!(
        err.info().attempts(),
        1,
        "a POST without a key is not resent"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn through_the_middleware_a_silent_server_is_cut_by_the_default_attempt_timeout() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            open.push(conn);
        }
    });
    let client = reqwest_middleware::ClientBuilder::new(
        reqwest::Client::builder().no_proxy().build().unwrap(),
    )
    .with(TelEchoRetry::default())
    .build();
    let started = Instant::now();
    let err = tokio::time::timeout(
        Duration::from_secs(3600),
        client
            .post(format!("http://{addr}/v1/calls"))
            .body("{}")
            .send(),
    )
    .await
    .expect("bounded by default")
    .unwrap_err();
    let err = RetryError::of(&err).expect("a RetryError");
    assert_eq!(err.kind(), RetryErrorKind::AttemptTimeout);
    assert_eq!(err.info().attempts(), 1);
    assert_eq!(started.elapsed(), Duration::from_secs(30));
    held.abort();
}
