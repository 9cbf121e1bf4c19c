//! The reqwest middleware end to end, against real HTTP servers on `127.0.0.1:0`.
//!
//! Two servers live in this file: [`Server`], a hyper 1 server that records every request
//! (arrival time, method, path, headers, full body) and answers from a handler or a script;
//! and [`RawServer`], a bare `TcpListener` that misbehaves on purpose (resets, cuts a
//! response short, never answers) for the transport-error cases.
//!
//! Delays are set through the policy builder (10-50 ms, no jitter, no `Retry-After`
//! spread), so the file runs in a few seconds; only the two `Retry-After` tests wait real
//! seconds, because that is what they measure.
#![cfg(feature = "reqwest")]

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Extensions, Method, StatusCode};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};
use telecho_retry::classify::{CodeRule, TransportErrorKind};
use telecho_retry::RetryError;
use telecho_retry::{
    ApiError, ErrorCode, ErrorType, Jitter, ReqwestResponseExt, RetryInfo, RetryPolicy,
    RetryPolicyBuilder, StopReason, TelEchoRetry,
};
use tokio::time::Instant;

use crate::support;
use support::*;

// ===== clients and policies =====

/// No jitter, no `Retry-After` spread, 10 ms base delay: exact and fast.
fn fast(max_retries: u32) -> RetryPolicyBuilder {
    RetryPolicy::builder()
        .max_retries(max_retries)
        .base_delay(Duration::from_millis(10))
        .max_delay(Duration::from_millis(100))
        .jitter(Jitter::None)
        .retry_after_spread(Duration::ZERO)
}

fn reqwest_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}

fn client(retry: TelEchoRetry) -> ClientWithMiddleware {
    ClientBuilder::new(reqwest_client()).with(retry).build()
}

/// The response's `RetryInfo` (absent, read as "one attempt, success", on a first-try success).
fn info(resp: &reqwest::Response) -> RetryInfo {
    RetryInfo::of(resp.extensions())
}

fn kind(err: &reqwest_middleware::Error) -> TransportErrorKind {
    let retry = RetryError::of(err).expect("every failure is a RetryError");
    match retry.get_inner() {
        Some(inner) => TransportErrorKind::of_error(inner),
        None => TransportErrorKind::of_error(retry),
    }
}

/// The last attempt's own `reqwest::Error`, inside the `RetryError` the middleware returns.
fn reqwest_error(err: &reqwest_middleware::Error) -> &reqwest::Error {
    RetryError::of(err)
        .and_then(RetryError::get_inner)
        .and_then(|e| e.downcast_ref::<reqwest::Error>())
        .expect("the last attempt's reqwest::Error")
}

/// A streaming body (no length known up front, so `try_clone` cannot copy it).
fn stream_body(chunks: &[Bytes]) -> reqwest::Body {
    let chunks: Vec<Result<Bytes, std::io::Error>> = chunks.iter().cloned().map(Ok).collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
}

/// `n` chunks of `size` bytes each, all different.
fn chunks(n: usize, size: usize) -> Vec<Bytes> {
    (0..n)
        .map(|i| Bytes::from(vec![b'a' + (i % 26) as u8; size]))
        .collect()
}

fn concat(chunks: &[Bytes]) -> Bytes {
    chunks.concat().into()
}

fn envelope(code: &ErrorCode, message: &str) -> String {
    let error_type = match code {
        ErrorCode::MissingApiKey
        | ErrorCode::InvalidApiKey
        | ErrorCode::RevokedApiKey
        | ErrorCode::ExpiredApiKey => ErrorType::AuthenticationError,
        _ => ErrorType::Other("invalid_request_error".into()),
    };
    ApiError::new(error_type, code.clone(), message).to_json()
}

// ===== the status matrix =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_matrix_retries_exactly_429_and_5xx() {
    let server = Server::start(|seen| {
        let status: u16 = seen.path.trim_start_matches("/status/").parse().unwrap();
        Reply::status(status).body(format!("status {status}"))
    })
    .await;
    // 400 requests at once: this test is about the status rule, not the retry budget
    // (which would rightly stop some of these 202 retries; see tests/load_protection.rs).
    let client = client(crate::support::unbudgeted(fast(2).build()));
    let started = Instant::now();

    // Every status from 200 to 599 (1xx are not final responses: hyper cannot send them
    // as one). Redirects are not followed: the client has `redirect::Policy::none()`.
    let results: Vec<(u16, reqwest_middleware::Result<reqwest::Response>)> =
        futures_util::stream::iter(200u16..=599)
            .map(|status| {
                let client = client.clone();
                let url = server.url(&format!("/status/{status}"));
                async move { (status, client.get(url).send().await) }
            })
            .buffer_unordered(50)
            .collect()
            .await;
    let elapsed = started.elapsed();

    assert_eq!(results.len(), 400);
    let mut wrong = Vec::new();
    for (status, result) in results {
        let want = if status == 429 || (500..=599).contains(&status) {
            3
        } else {
            1
        };
        let hits = server.hits(&format!("/status/{status}"));
        match result {
            Ok(resp) => {
                let got = (
                    resp.status().as_u16(),
                    hits,
                    info(&resp).attempts() as usize,
                );
                if got != (status, want, want) {
                    wrong.push(format!(
                        "{status}: want {want} hits, got (status, hits, attempts) = {got:?}"
                    ));
                }
            }
            Err(e) => wrong.push(format!("{status}: error {e}")),
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert!(
        elapsed < Duration::from_secs(10),
        "the matrix took {elapsed:?}"
    );
}

// ===== Retry-After =====

#[tokio::test]
async fn retry_after_seconds_is_waited_out_at_the_server() {
    let server = Server::scripted(vec![
        Reply::status(429).header("retry-after", "1"),
        Reply::status(200).body("ok"),
    ])
    .await;
    let client = client(TelEchoRetry::new(fast(2).build()));

    let resp = client.get(server.url("/v1/agents")).send().await.unwrap();

    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(info(&resp).attempts(), 2);
    assert_eq!(info(&resp).slept(), Duration::from_secs(1));
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    let gap = seen[1].at - seen[0].at;
    assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");
    assert!(gap < Duration::from_millis(1900), "retried after {gap:?}");
}

#[tokio::test]
async fn retry_after_http_date_is_waited_out_at_the_server() {
    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(2));
    // The header has whole seconds: the instant the server names is this one.
    let told = httpdate::parse_http_date(&date).unwrap();
    let server = Server::scripted(vec![
        Reply::status(503).header("retry-after", date.clone()),
        Reply::status(200).body("ok"),
    ])
    .await;
    let client = client(TelEchoRetry::new(fast(2).build()));

    let resp = client.get(server.url("/v1/agents")).send().await.unwrap();

    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(info(&resp).attempts(), 2);
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert!(
        seen[1].wall >= told,
        "retry arrived {:?} before the Retry-After date {date}",
        told.duration_since(seen[1].wall).unwrap_or_default()
    );
    let gap = seen[1].at - seen[0].at;
    // The date is 1-2 s ahead of the first request; a 10 ms backoff would be far shorter.
    assert!(gap > Duration::from_millis(900), "retried after {gap:?}");
    assert!(gap < Duration::from_millis(2900), "retried after {gap:?}");
}

// ===== streaming bodies =====

#[tokio::test]
async fn streaming_body_over_the_replay_limit_is_sent_once() {
    let server = Server::scripted(vec![Reply::status(503).body("busy")]).await;
    let client = client(TelEchoRetry::new(fast(2).build()).replay_buffer(16));
    let body = chunks(10, 10); // 100 bytes, over the 16-byte buffer

    let resp = client
        .post(server.url("/v1/calls"))
        .body(stream_body(&body))
        .send()
        .await
        .expect("a body that cannot be replayed is sent, not refused");

    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let info = info(&resp);
    assert_eq!(info.attempts(), 1);
    assert_eq!(info.stop_reason(), Some(StopReason::NotReplayable));
    assert_eq!(resp.text().await.unwrap(), "busy");
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "exactly one request reaches the server");
    assert_eq!(seen[0].method, Method::POST);
    assert_eq!(seen[0].body, concat(&body), "the one attempt sent it whole");
}

#[tokio::test]
async fn streaming_body_under_the_replay_limit_is_replayed_byte_for_byte() {
    let body = chunks(4, 10); // 40 bytes in 4 chunks
    let expected = concat(&body);
    let want = expected.clone();
    let n = AtomicUsize::new(0);
    // The server checks the bytes: 503 first, then 200 only for the very same body.
    let server = Server::start(move |seen| match n.fetch_add(1, Ordering::SeqCst) {
        0 => Reply::status(503),
        _ if seen.body == want => Reply::status(200).body("same bytes"),
        _ => Reply::status(400).body("different bytes"),
    })
    .await;
    let client = client(TelEchoRetry::new(fast(2).build()).replay_buffer(64));

    let resp = client
        .post(server.url("/v1/calls"))
        .body(stream_body(&body))
        .send()
        .await
        .unwrap();

    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(info(&resp).attempts(), 2);
    assert_eq!(resp.text().await.unwrap(), "same bytes");
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert_eq!(s.body, expected);
        // It really was a stream on the wire, both times: chunked, no length.
        assert!(s.headers.get("content-length").is_none(), "{:?}", s.headers);
        assert_eq!(s.headers["transfer-encoding"], "chunked");
    }
}

// ===== transport errors =====

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

/// Counts attempts on the client side and records the extensions each attempt saw.
#[derive(Clone, Default)]
struct Recorder {
    attempts: Arc<AtomicU32>,
    saw: Arc<Mutex<Vec<Snapshot>>>,
}

#[derive(Clone, Debug, PartialEq)]
struct CallerTag(&'static str);

/// The caller starts it at some value; each attempt increments it.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Counter(u32);

/// Left behind by attempt n.
#[derive(Clone, Copy, Debug, PartialEq)]
struct LeftBy(u32);

#[derive(Clone, Debug, PartialEq)]
struct Snapshot {
    tag: Option<CallerTag>,
    counter: Option<Counter>,
    left_by: Option<LeftBy>,
    retry_info: bool,
}

#[async_trait::async_trait]
impl Middleware for Recorder {
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let n = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
        self.saw.lock().unwrap().push(Snapshot {
            tag: extensions.get::<CallerTag>().cloned(),
            counter: extensions.get::<Counter>().copied(),
            left_by: extensions.get::<LeftBy>().copied(),
            retry_info: extensions.get::<RetryInfo>().is_some(),
        });
        let counter = extensions.get::<Counter>().map_or(0, |c| c.0);
        extensions.insert(Counter(counter + 1));
        extensions.insert(LeftBy(n));
        next.run(req, extensions).await
    }
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

// ===== extensions =====

#[tokio::test]
async fn each_attempt_starts_from_the_callers_extensions() {
    let server = Server::scripted(vec![
        Reply::status(503),
        Reply::status(500),
        Reply::status(200).body("ok"),
    ])
    .await;
    let recorder = Recorder::default();
    let client = ClientBuilder::new(reqwest_client())
        .with(TelEchoRetry::new(fast(3).build()))
        .with(recorder.clone())
        .build();
    let mut extensions = Extensions::new();
    extensions.insert(CallerTag("caller"));
    extensions.insert(Counter(10));
    let request = client.get(server.url("/v1/agents")).build().unwrap();

    let resp = client
        .execute_with_extensions(request, &mut extensions)
        .await
        .unwrap();

    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(server.seen().len(), 3);
    // Every attempt saw exactly what the caller passed: the failed attempts before it
    // left no Counter increment and no LeftBy behind.
    let first = Snapshot {
        tag: Some(CallerTag("caller")),
        counter: Some(Counter(10)),
        left_by: None,
        retry_info: false,
    };
    assert_eq!(*recorder.saw.lock().unwrap(), vec![first; 3]);
    // The caller ends with the final attempt's extensions plus RetryInfo.
    assert_eq!(extensions.get::<CallerTag>(), Some(&CallerTag("caller")));
    assert_eq!(extensions.get::<Counter>(), Some(&Counter(11)));
    assert_eq!(extensions.get::<LeftBy>(), Some(&LeftBy(3)));
    let info = extensions
        .get::<RetryInfo>()
        .expect("RetryInfo for the caller");
    assert_eq!(info.attempts(), 3);
    assert_eq!(info.stop_reason(), Some(StopReason::Success));
}

#[tokio::test]
async fn extensions_set_through_the_request_builder_reach_every_attempt() {
    let server = Server::scripted(vec![Reply::status(502), Reply::status(204)]).await;
    let recorder = Recorder::default();
    let client = ClientBuilder::new(reqwest_client())
        .with(TelEchoRetry::new(fast(2).build()))
        .with(recorder.clone())
        .build();

    let resp = client
        .delete(server.url("/v1/agents/tel_agent_1"))
        .with_extension(CallerTag("builder"))
        .send()
        .await
        .unwrap();

    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let saw = recorder.saw.lock().unwrap().clone();
    assert_eq!(saw.len(), 2);
    assert!(server.seen().iter().all(|s| s.method == Method::DELETE));
    for s in saw {
        assert_eq!(s.tag, Some(CallerTag("builder")));
        assert_eq!(s.counter, None);
        assert_eq!(s.left_by, None);
    }
}

// ===== code-aware decisions =====

#[tokio::test]
async fn fatal_code_rule_stops_at_once_and_the_body_is_intact() {
    let body = envelope(
        &ErrorCode::OutboundCallFailed,
        "SIP 503 from the carrier while dialing +15550100",
    );
    let sent = body.clone();
    let server = Server::start(move |_| {
        Reply::status(502)
            .header("content-type", "application/json")
            .header("x-request-id", "req_123")
            .body(sent.clone())
    })
    .await;

    // Control: without the rule, the default 5xx rule retries.
    let plain = client(TelEchoRetry::new(fast(2).build()));
    let resp = plain.post(server.url("/v1/calls")).send().await.unwrap();
    assert_eq!(info(&resp).attempts(), 3);
    assert_eq!(server.hits("/v1/calls"), 3);

    let policy = fast(2)
        .on_code(ErrorCode::OutboundCallFailed, CodeRule::Fatal)
        .build();
    let coded = client(TelEchoRetry::new(policy));
    let resp = coded
        .post(server.url("/v1/calls/fatal"))
        .send()
        .await
        .unwrap();

    assert_eq!(server.hits("/v1/calls/fatal"), 1);
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(info(&resp).stop_reason(), Some(StopReason::Fatal));
    assert_eq!(resp.headers()["x-request-id"], "req_123");
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(resp.url().path(), "/v1/calls/fatal");
    let read = resp.bytes().await.unwrap();
    assert_eq!(
        read,
        Bytes::from(body),
        "the peeked body is handed back whole"
    );
}

#[tokio::test]
async fn peeked_body_still_parses_into_a_typed_error() {
    let body = envelope(&ErrorCode::OutboundCallFailed, "no answer");
    let server = Server::scripted(vec![Reply::status(502).body(body)]).await;
    let policy = fast(2)
        .on_code(ErrorCode::OutboundCallFailed, CodeRule::Fatal)
        .build();
    let client = client(TelEchoRetry::new(policy));

    let resp = client.post(server.url("/v1/calls")).send().await.unwrap();
    let err = resp.api_error_for_status().await.unwrap_err();

    assert_eq!(server.seen().len(), 1);
    assert_eq!(err.code(), Some(&ErrorCode::OutboundCallFailed));
    assert_eq!(
        err.to_string(),
        "502 Bad Gateway: outbound_call_failed: no answer"
    );
}

#[tokio::test]
async fn retry_code_rule_retries_a_status_that_alone_is_fatal() {
    let body = envelope(&ErrorCode::CallBlocked, "out of minutes");
    let server = Server::scripted(vec![Reply::status(402).body(body.clone())]).await;
    let policy = fast(2)
        .on_code(ErrorCode::CallBlocked, CodeRule::Retry)
        .build();
    let client = client(TelEchoRetry::new(policy));

    let resp = client.post(server.url("/v1/calls")).send().await.unwrap();

    assert_eq!(resp.status(), StatusCode::PAYMENT_REQUIRED);
    assert_eq!(info(&resp).attempts(), 3);
    assert_eq!(server.seen().len(), 3);
    assert_eq!(resp.text().await.unwrap(), body);
}

#[tokio::test]
async fn body_over_64_kib_is_not_parsed_and_reaches_the_caller_whole() {
    // A valid envelope with the fatal code, but larger than the 64 KiB the middleware
    // reads: it is not parsed, so the status rule (5xx: retry) applies.
    let message: String = (0..14_000).map(|i| format!("{i:05}")).collect();
    let body = Bytes::from(envelope(&ErrorCode::OutboundCallFailed, &message));
    assert!(body.len() > 64 * 1024 + 1000, "{}", body.len());
    let sent = body.clone();
    // Sent chunked in 7000-byte pieces, so the 64 KiB mark falls inside a chunk.
    let server = Server::start(move |_| Reply::status(502).chunked(&sent, 7000)).await;
    let policy = fast(2)
        .on_code(ErrorCode::OutboundCallFailed, CodeRule::Fatal)
        .build();
    let client = client(TelEchoRetry::new(policy));

    let resp = client.get(server.url("/v1/calls/1")).send().await.unwrap();

    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(server.seen().len(), 3, "the default 5xx rule applied");
    assert_eq!(info(&resp).stop_reason(), Some(StopReason::MaxRetries));
    let read = resp.bytes().await.unwrap();
    assert_eq!(read.len(), body.len());
    assert!(read == body, "the large body arrives intact");
}

// ===== typed errors from real responses =====

fn status_of(code: &ErrorCode) -> u16 {
    match code {
        ErrorCode::MissingApiKey
        | ErrorCode::InvalidApiKey
        | ErrorCode::RevokedApiKey
        | ErrorCode::ExpiredApiKey => 401,
        ErrorCode::AgentNotFound | ErrorCode::WorkflowNotFound | ErrorCode::PhoneNumberNotFound => {
            404
        }
        ErrorCode::CallBlocked => 402,
        ErrorCode::OutboundCallFailed => 502,
        ErrorCode::RateLimitPerMinute | ErrorCode::RateLimitPerHour => 429,
        // Validation errors, and resource-state errors the reference gives no status for.
        _ => 400,
    }
}

#[tokio::test]
async fn every_known_code_parses_from_a_real_response() {
    let server = Server::start(|seen| {
        let wire = seen.path.trim_start_matches("/code/");
        let code = ErrorCode::parse(wire);
        let echo = seen
            .headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let mut reply = Reply::status(status_of(&code))
            .header("content-type", "application/json")
            .header("x-echo-authorization", echo)
            .header("set-cookie", "session=resp-s3cr3t-cookie")
            .body(envelope(&code, &format!("message for {wire}")));
        if status_of(&code) == 429 {
            reply = reply.header("retry-after", "30");
        }
        reply
    })
    .await;
    // The 429s carry `Retry-After: 30`: without this, the shared cooldown would rightly
    // hold every later request back for 30 s (see tests/load_protection.rs).
    let client = client(
        TelEchoRetry::new(fast(0).build()).with_limits(
            telecho_retry::limits::Limits::builder()
                .shared_cooldown(false)
                .build(),
        ),
    );

    assert_eq!(ErrorCode::KNOWN.len(), 21);
    for code in ErrorCode::KNOWN {
        let wire = code.as_str();
        let status = StatusCode::from_u16(status_of(code)).unwrap();
        let resp = client
            .get(server.url(&format!("/code/{wire}")))
            .bearer_auth("s3cr3t")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{wire}");
        // The secrets really are in the response headers.
        assert_eq!(resp.headers()["x-echo-authorization"], "Bearer s3cr3t");

        let err = resp.api_error_for_status().await.unwrap_err();

        assert_eq!(err.status(), status, "{wire}");
        assert_eq!(err.code(), Some(code), "{wire}");
        let api = err.api_error().expect("the envelope parses");
        assert_eq!(api.message(), format!("message for {wire}"));
        assert_eq!(
            err.to_string(),
            format!("{status}: {wire}: message for {wire}")
        );
        let debug = format!("{err:?}");
        assert!(!debug.contains("s3cr3t"), "{wire}: {debug}");
        assert!(!debug.contains("Bearer"), "{wire}: {debug}");
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(err.retry_after(), Some(Duration::from_secs(30)), "{wire}");
        } else {
            assert_eq!(err.retry_after(), None, "{wire}");
        }
    }
    assert_eq!(server.seen().len(), 21, "max_retries(0): one hit per code");
}

#[tokio::test]
async fn non_envelope_error_keeps_the_raw_body_and_success_passes() {
    let server = Server::start(|seen| match seen.path.as_str() {
        "/ok" => Reply::status(200).body("fine"),
        _ => Reply::status(404)
            .header("x-api-key", "s3cr3t")
            .body("<html>not here</html>"),
    })
    .await;
    let client = client(TelEchoRetry::new(fast(0).build()));

    let ok = client.get(server.url("/ok")).send().await.unwrap();
    let ok = ok
        .api_error_for_status()
        .await
        .expect("200 is not an error");
    assert_eq!(ok.text().await.unwrap(), "fine");

    let resp = client.get(server.url("/missing")).send().await.unwrap();
    let err = resp.api_error_for_status().await.unwrap_err();
    assert_eq!(err.status(), StatusCode::NOT_FOUND);
    assert_eq!(err.code(), None);
    assert_eq!(err.body(), &Bytes::from_static(b"<html>not here</html>"));
    assert!(!format!("{err:?}").contains("s3cr3t"));
}
