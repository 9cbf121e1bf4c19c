//! Transport errors (resets, cut-off responses, client timeouts) retried by method and
//! idempotency key, bodies cut short, and a refused connection retried with backoff.

use super::*;

/// Sends one request to a misbehaving server; returns the outcome and the caller's
/// extensions afterwards.
async fn send_to(
    server: &RawServer,
    method: Method,
    idempotency_key: bool,
    timeout: Option<Duration>,
) -> (reqwest_middleware::Result<reqwest::Response>, Extensions) {
    let client = client(TelEchoRetry::new(fast(2).build()));
    let mut builder = client.request(method.clone(), server.url());
    if method == Method::POST {
        builder = builder.body("payload");
    }
    if idempotency_key {
        builder = builder.header("idempotency-key", "key-1");
    }
    if let Some(t) = timeout {
        builder = builder.timeout(t);
    }
    let mut extensions = Extensions::new();
    let result = client
        .execute_with_extensions(builder.build().unwrap(), &mut extensions)
        .await;
    (result, extensions)
}

/// Asserts the attempt count at the server and in the caller's `RetryInfo`, and the error
/// kind the middleware saw.
async fn transport_case(
    how: Misbehave,
    method: Method,
    idempotency_key: bool,
    timeout: Option<Duration>,
    want_kind: TransportErrorKind,
    want_attempts: usize,
) {
    let server = RawServer::start(how).await;
    let (result, extensions) = send_to(&server, method.clone(), idempotency_key, timeout).await;

    let err = result.expect_err("every attempt fails");
    assert_eq!(kind(&err), want_kind, "{how:?} {method}: {err:?}");
    assert_eq!(
        server.requests(),
        want_attempts,
        "{how:?} {method} (key: {idempotency_key}): requests at the server"
    );
    assert_eq!(server.connections(), want_attempts);
    let info = extensions
        .get::<RetryInfo>()
        .expect("RetryInfo in the caller's extensions on the error path");
    assert_eq!(info.attempts() as usize, want_attempts);
    let stop = if want_attempts > 1 {
        StopReason::MaxRetries
    } else {
        StopReason::Fatal
    };
    assert_eq!(info.stop_reason(), Some(stop));
}

#[tokio::test]
async fn connection_reset_is_retried_for_get() {
    let kind = TransportErrorKind::Reset;
    transport_case(Misbehave::Reset, Method::GET, false, None, kind, 3).await;
}

#[tokio::test]
async fn connection_reset_is_not_retried_for_post() {
    let kind = TransportErrorKind::Reset;
    transport_case(Misbehave::Reset, Method::POST, false, None, kind, 1).await;
}

#[tokio::test]
async fn connection_reset_is_retried_for_post_with_idempotency_key() {
    let kind = TransportErrorKind::Reset;
    transport_case(Misbehave::Reset, Method::POST, true, None, kind, 3).await;
}

#[tokio::test]
async fn incomplete_response_is_retried_for_get() {
    let kind = TransportErrorKind::IncompleteMessage;
    transport_case(Misbehave::IncompleteHead, Method::GET, false, None, kind, 3).await;
}

#[tokio::test]
async fn incomplete_response_is_not_retried_for_post() {
    let kind = TransportErrorKind::IncompleteMessage;
    transport_case(
        Misbehave::IncompleteHead,
        Method::POST,
        false,
        None,
        kind,
        1,
    )
    .await;
}

#[tokio::test]
async fn incomplete_response_is_retried_for_post_with_idempotency_key() {
    let kind = TransportErrorKind::IncompleteMessage;
    transport_case(Misbehave::IncompleteHead, Method::POST, true, None, kind, 3).await;
}

const CLIENT_TIMEOUT: Duration = Duration::from_millis(150);

#[tokio::test]
async fn client_timeout_is_retried_for_get() {
    let t = Some(CLIENT_TIMEOUT);
    let kind = TransportErrorKind::Timeout;
    transport_case(Misbehave::Silent, Method::GET, false, t, kind, 3).await;
}

#[tokio::test]
async fn client_timeout_is_not_retried_for_post() {
    let t = Some(CLIENT_TIMEOUT);
    let kind = TransportErrorKind::Timeout;
    transport_case(Misbehave::Silent, Method::POST, false, t, kind, 1).await;
}

#[tokio::test]
async fn client_timeout_is_retried_for_post_with_idempotency_key() {
    let t = Some(CLIENT_TIMEOUT);
    let kind = TransportErrorKind::Timeout;
    transport_case(Misbehave::Silent, Method::POST, true, t, kind, 3).await;
}

/// A body cut short after a complete `200` head is the caller's to see: the middleware
/// hands a response back as soon as its head arrives (it reads bodies only of error
/// responses, and only for code rules), so there is nothing to retry; the caller's body
/// read fails instead.
#[tokio::test]
async fn body_cut_short_after_a_success_head_reaches_the_caller_once() {
    let server = RawServer::start(Misbehave::TruncatedBody).await;
    let (result, _) = send_to(&server, Method::GET, false, None).await;

    let resp = result.expect("the head was complete");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(info(&resp).attempts(), 1);
    let err = resp
        .bytes()
        .await
        .expect_err("the cut-off body is an error");
    // reqwest reports a body that breaks off while being read as a decode error.
    assert!(err.is_decode(), "{err:?}");
    assert_eq!(server.requests(), 1);
}

/// With code rules the middleware reads error bodies; one that breaks off is still a 503
/// (retried by its status), and the caller reads what arrived, then the error.
#[tokio::test]
async fn error_body_cut_short_while_peeked_is_retried_and_handed_back_as_it_came() {
    let server = RawServer::start(Misbehave::TruncatedErrorBody).await;
    let policy = fast(1)
        .on_code(ErrorCode::OutboundCallFailed, CodeRule::Fatal)
        .build();
    let client = client(TelEchoRetry::new(policy));

    let mut resp = client.get(server.url()).send().await.unwrap();

    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(info(&resp).attempts(), 2);
    assert_eq!(server.requests(), 2);
    let mut read = Vec::new();
    let err = loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => read.extend_from_slice(&chunk),
            Ok(None) => panic!("the body ended cleanly after {read:?}"),
            Err(e) => break e,
        }
    };
    assert_eq!(read, b"0123456789", "what arrived before the break");
    // The same kind of error the caller gets without the middleware (see
    // `body_cut_short_after_a_success_head_reaches_the_caller_once`).
    assert!(err.is_decode(), "{err:?}");
}
#[tokio::test]
async fn refused_connection_is_retried_for_post_with_backoff() {
    // A port nobody listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let recorder = Recorder::default();
    let policy = fast(2).base_delay(Duration::from_millis(50)).build();
    let client = ClientBuilder::new(reqwest_client())
        .with(TelEchoRetry::new(policy))
        .with(recorder.clone())
        .build();
    let request = client
        .post(format!("http://127.0.0.1:{port}/v1/calls"))
        .body("payload")
        .build()
        .unwrap();
    let mut extensions = Extensions::new();
    let started = Instant::now();

    let err = client
        .execute_with_extensions(request, &mut extensions)
        .await
        .expect_err("nobody listens");

    let elapsed = started.elapsed();
    assert!(reqwest_error(&err).is_connect(), "{err:?}");
    assert_eq!(kind(&err), TransportErrorKind::Connect);
    // A POST without an idempotency key, retried all the same: nothing was sent.
    assert_eq!(recorder.attempts.load(Ordering::SeqCst), 3);
    assert!(
        elapsed >= Duration::from_millis(150),
        "50 ms + 100 ms of backoff, took {elapsed:?}"
    );
    let info = extensions.get::<RetryInfo>().expect("RetryInfo on error");
    assert_eq!(info.attempts(), 3);
    assert_eq!(info.slept(), Duration::from_millis(150));
    assert_eq!(info.stop_reason(), Some(StopReason::MaxRetries));
    // The caller ends with the last attempt's extensions.
    assert_eq!(extensions.get::<LeftBy>(), Some(&LeftBy(3)));
}
