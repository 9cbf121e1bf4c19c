//! The tower adapter (issue 3): `TelEchoRetry` as a `Layer` over an HTTP client service.
//!
//! The unit tests run on tokio's paused clock over `tower_test::mock`, so they can say
//! exactly *when* each attempt reaches the inner service: the mock only sees a request once
//! the response future has been polled past its sleep, and `tokio::time::advance` moves
//! the clock by exact amounts. The mock also panics if `call` is used without a
//! `poll_ready` first, so every retry below also checks that readiness is respected.
//!
//! The last test is the one end-to-end test: hyper-util's client through the layer against
//! a hyper server on `127.0.0.1:0`, in real time.
#![cfg(feature = "tower")]

use std::convert::Infallible;
use std::fmt::Debug;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http::header::RETRY_AFTER;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use telecho_retry::body::ResponseBody;
use telecho_retry::body::TryCloneBody;
use telecho_retry::{
    Jitter, ResponseFuture, RetryError, RetryErrorKind, RetryInfo, RetryPolicy, RetryService,
    StopReason, TelEchoRetry,
};
use tokio::time::{advance, Instant};
use tokio_test::{assert_pending, assert_ready, task};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
use tower_test::mock;

// ===== helpers =====

type Resp = Response<String>;
type Handle<B> = mock::Handle<Request<B>, Resp>;
type Fut<B> = task::Spawn<ResponseFuture<mock::Mock<Request<B>, Resp>, Request<B>>>;

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A policy with no randomness at all: exact ladder, `Retry-After` honoured to the ms.
fn exact(max_retries: u32) -> RetryPolicy {
    RetryPolicy::builder()
        .max_retries(max_retries)
        .jitter(Jitter::None)
        .retry_after_spread(Duration::ZERO)
        .build()
}

fn request(method: Method) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri("http://api.telecho.test/v1/calls")
        .body(Full::new(Bytes::from_static(
            b"{\"agent_id\":\"tel_agent_1\"}",
        )))
        .unwrap()
}

fn get() -> Request<Full<Bytes>> {
    request(Method::GET)
}

fn post() -> Request<Full<Bytes>> {
    request(Method::POST)
}

fn status(code: u16) -> Resp {
    Response::builder()
        .status(code)
        .body(String::new())
        .unwrap()
}

fn with_retry_after(code: u16, value: &'static str) -> Resp {
    Response::builder()
        .status(code)
        .header(RETRY_AFTER, value)
        .body(String::new())
        .unwrap()
}

/// The response's `RetryInfo` (absent, read as "one attempt, success", on a first-try success).
fn info<B>(resp: &Response<B>) -> RetryInfo {
    RetryInfo::of(resp.extensions())
}

/// Wraps a fresh mock in the layer, polls it ready and calls it: the first attempt is on
/// its way to the mock when this returns.
fn start<B>(policy: RetryPolicy, req: Request<B>) -> (Fut<B>, Handle<B>)
where
    B: TryCloneBody,
{
    let (mut svc, handle) = mock::spawn_layer::<Request<B>, Resp, _>(TelEchoRetry::new(policy));
    assert_ready!(svc.poll_ready::<Request<B>>()).expect("the mock is ready");
    let fut = task::spawn(svc.call(req));
    (fut, handle)
}

/// The attempt that must have reached the mock by now.
fn take_attempt<T, U>(handle: &mut mock::Handle<T, U>) -> (T, mock::SendResponse<U>) {
    match handle.poll_request() {
        Poll::Ready(Some(attempt)) => attempt,
        Poll::Ready(None) => panic!("the mock was closed"),
        Poll::Pending => panic!("expected an attempt to have reached the mock by now"),
    }
}

/// No attempt has reached the mock (a closed mock, whose every instance was dropped,
/// counts as none).
fn assert_no_attempt<T, U>(handle: &mut mock::Handle<T, U>, when: &str) {
    if let Poll::Ready(Some(_)) = handle.poll_request() {
        panic!("no attempt expected {when}, got one");
    }
}

/// Advances the clock to 1 ms before `delay` (nothing may arrive), then to `delay` (the
/// retry must arrive), driving `fut` at each step, and returns the retry.
async fn expect_retry_after<F, T, U>(
    fut: &mut task::Spawn<F>,
    handle: &mut mock::Handle<T, U>,
    delay: Duration,
) -> (T, mock::SendResponse<U>)
where
    F: Future,
    F::Output: Debug,
{
    advance(delay - ms(1)).await;
    assert_pending!(fut.poll());
    assert_no_attempt(handle, &format!("1 ms before {delay:?}"));
    advance(ms(1)).await;
    assert_pending!(fut.poll());
    take_attempt(handle)
}

// ===== Retry-After =====

#[tokio::test(start_paused = true)]
async fn retry_after_7_is_honoured_to_the_millisecond_without_spread() {
    let (mut fut, mut handle) = start(exact(5), get());
    let t0 = Instant::now();

    let (_, first) = take_attempt(&mut handle);
    first.send_response(with_retry_after(429, "7"));
    assert_pending!(fut.poll());

    // Not at 6.999 s, exactly at 7 s.
    let (_, second) = expect_retry_after(&mut fut, &mut handle, secs(7)).await;
    assert_eq!(t0.elapsed(), secs(7));
    second.send_response(status(200));

    let resp = assert_ready!(fut.poll()).unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let info = info(&resp);
    assert_eq!(info.attempts(), 2);
    assert_eq!(info.slept(), secs(7));
    assert_eq!(info.stop_reason(), Some(StopReason::Success));
}

#[tokio::test(start_paused = true)]
async fn retry_after_7_with_the_default_spread_lands_within_half_a_second_after() {
    // Default `retry_after_spread` (500 ms); seeded so the run is reproducible.
    let policy = RetryPolicy::builder().seed(0x7e1e).build();
    assert_eq!(policy.retry_after_spread(), ms(500));

    let mut arrivals = Vec::new();
    for _ in 0..8 {
        let (mut fut, mut handle) = start(policy.clone(), get());
        let t0 = Instant::now();
        let (_, first) = take_attempt(&mut handle);
        first.send_response(with_retry_after(429, "7"));
        assert_pending!(fut.poll());

        // Never before the header's 7 s.
        advance(secs(7) - ms(1)).await;
        assert_pending!(fut.poll());
        assert_no_attempt(&mut handle, "before 7 s");

        // Then at some millisecond in [7 s, 7.5 s].
        let (second, at) = loop {
            advance(ms(1)).await;
            assert_pending!(fut.poll());
            if let Poll::Ready(Some(attempt)) = handle.poll_request() {
                break (attempt.1, t0.elapsed());
            }
            assert!(t0.elapsed() < secs(7) + ms(500), "no retry by 7.5 s");
        };
        assert!(at >= secs(7) && at <= secs(7) + ms(500), "retry at {at:?}");
        second.send_response(status(200));

        let resp = assert_ready!(fut.poll()).unwrap();
        let info = info(&resp);
        assert_eq!(info.attempts(), 2);
        // The timer fires on the first millisecond at or after the chosen delay.
        assert!(info.slept() >= secs(7) && info.slept() <= at, "{info:?}");
        assert!(at - info.slept() < ms(1), "{info:?} vs {at:?}");
        arrivals.push(at);
    }
    // The spread is really applied, per request.
    assert!(
        arrivals.iter().any(|&at| at > secs(7)),
        "every retry came at exactly 7 s: {arrivals:?}"
    );
    arrivals.dedup();
    assert!(
        arrivals.len() > 1,
        "no spread between requests: {arrivals:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn rate_limit_without_retry_after_follows_the_backoff_ladder() {
    let (mut fut, mut handle) = start(exact(5), get());

    let (_, first) = take_attempt(&mut handle);
    first.send_response(status(429));
    assert_pending!(fut.poll());
    for delay in [secs(1), secs(2), secs(4)] {
        let (_, send) = expect_retry_after(&mut fut, &mut handle, delay).await;
        send.send_response(status(429));
        assert_pending!(fut.poll());
    }
    let (_, last) = expect_retry_after(&mut fut, &mut handle, secs(8)).await;
    last.send_response(status(200));

    let resp = assert_ready!(fut.poll()).unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(info(&resp).attempts(), 5);
    assert_eq!(info(&resp).slept(), secs(1 + 2 + 4 + 8));
}

#[tokio::test(start_paused = true)]
async fn retry_after_above_the_cap_returns_the_429_at_once_header_intact() {
    let policy = RetryPolicy::builder().max_retry_after(secs(60)).build();
    let (mut fut, mut handle) = start(policy, get());

    let (_, first) = take_attempt(&mut handle);
    first.send_response(with_retry_after(429, "3600"));

    let resp = assert_ready!(fut.poll()).unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()[RETRY_AFTER], "3600");
    let info = info(&resp);
    assert_eq!(info.attempts(), 1);
    assert_eq!(info.slept(), Duration::ZERO);
    assert_eq!(info.stop_reason(), Some(StopReason::RetryAfterTooLong));

    advance(secs(7200)).await;
    assert_no_attempt(&mut handle, "after a Retry-After above the cap");
}

// ===== 5xx and 4xx =====

#[tokio::test(start_paused = true)]
async fn server_errors_follow_the_exact_ladder_1_2_4_8_16_30() {
    let (mut fut, mut handle) = start(exact(6), get());
    let t0 = Instant::now();

    let (_, first) = take_attempt(&mut handle);
    first.send_response(status(503));
    assert_pending!(fut.poll());

    let mut gaps = Vec::new();
    let mut last_at = t0.elapsed();
    for (i, delay) in [1, 2, 4, 8, 16, 30].map(secs).into_iter().enumerate() {
        let (_, send) = expect_retry_after(&mut fut, &mut handle, delay).await;
        gaps.push(t0.elapsed() - last_at);
        last_at = t0.elapsed();
        // Vary the 5xx: every one of them is on the same ladder.
        send.send_response(status([500, 502, 503, 504, 500, 503][i]));
        if i < 5 {
            assert_pending!(fut.poll());
        }
    }
    assert_eq!(gaps, [1, 2, 4, 8, 16, 30].map(secs));

    let resp = assert_ready!(fut.poll()).unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(info(&resp).attempts(), 7);
    assert_eq!(info(&resp).slept(), secs(61));
}

#[tokio::test(start_paused = true)]
async fn exhausted_retries_return_the_last_response_with_retry_info() {
    let (mut fut, mut handle) = start(exact(2), get());

    let (_, first) = take_attempt(&mut handle);
    first.send_response(status(500));
    assert_pending!(fut.poll());
    let (_, second) = expect_retry_after(&mut fut, &mut handle, secs(1)).await;
    second.send_response(status(502));
    assert_pending!(fut.poll());
    let (_, third) = expect_retry_after(&mut fut, &mut handle, secs(2)).await;
    third.send_response(
        Response::builder()
            .status(503)
            .header("x-attempt", "3")
            .body("the third".to_owned())
            .unwrap(),
    );

    let resp = assert_ready!(fut.poll()).unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["x-attempt"], "3");
    let info = info(&resp);
    assert_eq!(info.attempts(), 3);
    assert_eq!(info.retries(), 2);
    assert_eq!(
        resp.into_body().collect().await.unwrap().to_bytes(),
        "the third"
    );
    assert_eq!(info.slept(), secs(3));
    assert_eq!(info.stop_reason(), Some(StopReason::MaxRetries));

    advance(secs(3600)).await;
    assert_no_attempt(&mut handle, "after retries are exhausted");
}

#[tokio::test(start_paused = true)]
async fn client_errors_are_sent_exactly_once() {
    for code in [400, 401, 402, 403, 404, 409, 422] {
        let (mut fut, mut handle) = start(exact(5), post());

        let (_, first) = take_attempt(&mut handle);
        first.send_response(status(code));

        let resp = assert_ready!(fut.poll()).unwrap();
        assert_eq!(resp.status().as_u16(), code);
        let info = info(&resp);
        assert_eq!(info.attempts(), 1, "{code}");
        assert_eq!(info.slept(), Duration::ZERO, "{code}");
        assert_eq!(info.stop_reason(), Some(StopReason::Fatal), "{code}");

        advance(secs(3600)).await;
        assert_no_attempt(&mut handle, &format!("after a {code}"));
    }
}

// ===== requests that cannot be copied, and when copies are made =====

#[tokio::test(start_paused = true)]
async fn non_clonable_body_is_sent_once_and_its_503_returned() {
    let body: BoxBody<Bytes, Infallible> = Full::new(Bytes::from_static(b"stream")).boxed();
    let req = Request::builder()
        .method(Method::PUT)
        .uri("http://api.telecho.test/v1/agents/tel_agent_1")
        .body(body)
        .unwrap();
    let (mut fut, mut handle) = start(exact(5), req);

    let (sent, first) = take_attempt(&mut handle);
    // The one attempt carried the body untouched.
    let sent = sent.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(sent, Bytes::from_static(b"stream"));
    first.send_response(
        Response::builder()
            .status(503)
            .body("unavailable".to_owned())
            .unwrap(),
    );

    // Never an error just because it could not be retried: the 503 itself comes back.
    let resp = assert_ready!(fut.poll()).unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let info = info(&resp);
    assert_eq!(info.attempts(), 1);
    assert_eq!(
        resp.into_body().collect().await.unwrap().to_bytes(),
        "unavailable"
    );
    assert_eq!(info.stop_reason(), Some(StopReason::NotReplayable));

    advance(secs(3600)).await;
    assert_no_attempt(&mut handle, "for a body that cannot be copied");
}

/// A body that counts how often the engine copies it.
#[derive(Debug)]
struct CountingBody(Arc<AtomicUsize>);

impl TryCloneBody for CountingBody {
    fn try_clone_body(&self) -> Option<Self> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Some(CountingBody(self.0.clone()))
    }
}

fn counting() -> (Request<CountingBody>, Arc<AtomicUsize>) {
    let clones = Arc::new(AtomicUsize::new(0));
    (Request::new(CountingBody(clones.clone())), clones)
}

#[tokio::test(start_paused = true)]
async fn request_is_copied_only_when_a_retry_could_follow() {
    // max_retries(0): the only attempt is the last one, no copy.
    let (req, clones) = counting();
    let (mut fut, mut handle) = start(exact(0), req);
    let (_, first) = take_attempt(&mut handle);
    first.send_response(status(503));
    let resp = assert_ready!(fut.poll()).unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(info(&resp).stop_reason(), Some(StopReason::MaxRetries));
    assert_eq!(clones.load(Ordering::SeqCst), 0);

    // max_retries(2), three 503s: a copy before attempts 1 and 2, none before the last.
    let (req, clones) = counting();
    let (mut fut, mut handle) = start(exact(2), req);
    let (_, first) = take_attempt(&mut handle);
    assert_eq!(clones.load(Ordering::SeqCst), 1);
    first.send_response(status(503));
    assert_pending!(fut.poll());
    let (_, second) = expect_retry_after(&mut fut, &mut handle, secs(1)).await;
    assert_eq!(clones.load(Ordering::SeqCst), 2);
    second.send_response(status(503));
    assert_pending!(fut.poll());
    let (_, third) = expect_retry_after(&mut fut, &mut handle, secs(2)).await;
    third.send_response(status(503));
    let resp = assert_ready!(fut.poll()).unwrap();
    assert_eq!(info(&resp).attempts(), 3);
    assert_eq!(clones.load(Ordering::SeqCst), 2);

    // Success at once: the one duplicate, nothing more.
    let (req, clones) = counting();
    let (mut fut, mut handle) = start(exact(2), req);
    let (_, first) = take_attempt(&mut handle);
    first.send_response(status(200));
    let resp = assert_ready!(fut.poll()).unwrap();
    assert_eq!(info(&resp).stop_reason(), Some(StopReason::Success));
    assert_eq!(clones.load(Ordering::SeqCst), 1);
}

// ===== cancellation =====

#[tokio::test(start_paused = true)]
async fn dropping_the_future_mid_sleep_sends_no_further_attempt() {
    // Keep the service alive, so that the mock's channel stays open.
    let (mut svc, mut handle) =
        mock::spawn_layer::<Request<Full<Bytes>>, Resp, _>(TelEchoRetry::new(exact(5)));
    assert_ready!(svc.poll_ready::<Request<Full<Bytes>>>()).unwrap();
    let mut fut = task::spawn(svc.call(get()));

    let (_, first) = take_attempt(&mut handle);
    first.send_response(status(503));
    assert_pending!(fut.poll());
    advance(ms(500)).await;
    assert_pending!(fut.poll());

    drop(fut);
    advance(secs(3600)).await;
    tokio::task::yield_now().await;
    assert!(
        handle.poll_request().is_pending(),
        "no attempt after the future was dropped"
    );

    // And the dropped future let go of its service instance: once the service is gone too,
    // nothing is left that could send.
    drop(svc);
    assert!(matches!(handle.poll_request(), Poll::Ready(None)));
}

// ===== transport errors =====

fn io_error(kind: io::ErrorKind) -> BoxError {
    Box::new(io::Error::new(kind, "inner call failed"))
}

/// Sends `req`, fails its first attempt with `error`, and answers a retry (if one comes
/// 1 s later) with 200. Returns the outcome and the number of attempts the mock saw.
async fn first_attempt_fails(
    req: Request<Full<Bytes>>,
    error: BoxError,
) -> (Result<Response<ResponseBody<String>>, RetryError>, usize) {
    let (method, headers) = (req.method().clone(), req.headers().clone());
    let (mut fut, mut handle) = start(exact(5), req);
    let (_, first) = take_attempt(&mut handle);
    first.send_error(error);
    if let Poll::Ready(result) = fut.poll() {
        advance(secs(3600)).await;
        assert_no_attempt(&mut handle, "after a fatal transport error");
        return (result, 1);
    }
    let (retry, second) = expect_retry_after(&mut fut, &mut handle, secs(1)).await;
    assert_eq!(*retry.method(), method);
    assert_eq!(*retry.headers(), headers);
    second.send_response(status(200));
    (assert_ready!(fut.poll()), 2)
}

#[tokio::test(start_paused = true)]
async fn post_timeout_is_not_retried() {
    let (result, attempts) = first_attempt_fails(post(), io_error(io::ErrorKind::TimedOut)).await;
    assert_eq!(attempts, 1);
    let err = result.expect_err("the timeout is handed back");
    assert_eq!(err.kind(), RetryErrorKind::Inner);
    assert_eq!(err.info().attempts(), 1);
    assert_eq!(err.stop_reason(), Some(StopReason::Fatal));
    let io = err
        .get_inner()
        .and_then(|e| e.downcast_ref::<io::Error>())
        .expect("the inner error, unchanged");
    assert_eq!(io.kind(), io::ErrorKind::TimedOut);
}

#[tokio::test(start_paused = true)]
async fn get_timeout_is_retried() {
    let (result, attempts) = first_attempt_fails(get(), io_error(io::ErrorKind::TimedOut)).await;
    assert_eq!(attempts, 2);
    let resp = result.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(info(&resp).attempts(), 2);
}

#[tokio::test(start_paused = true)]
async fn post_with_idempotency_key_timeout_is_retried() {
    let mut req = post();
    req.headers_mut()
        .insert("idempotency-key", HeaderValue::from_static("k-42"));
    let (result, attempts) = first_attempt_fails(req, io_error(io::ErrorKind::TimedOut)).await;
    assert_eq!(attempts, 2);
    assert_eq!(result.unwrap().status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn post_connect_refused_is_retried() {
    let refused = io_error(io::ErrorKind::ConnectionRefused);
    let (result, attempts) = first_attempt_fails(post(), refused).await;
    assert_eq!(attempts, 2);
    assert_eq!(result.unwrap().status(), StatusCode::OK);
}

// ===== backpressure =====

#[tokio::test(start_paused = true)]
async fn a_retry_waits_for_the_inner_service_to_be_ready() {
    let (mut svc, mut handle) =
        mock::spawn_layer::<Request<Full<Bytes>>, Resp, _>(TelEchoRetry::new(exact(3)));
    handle.allow(1);
    assert_ready!(svc.poll_ready::<Request<Full<Bytes>>>()).unwrap();
    let mut fut = task::spawn(svc.call(get()));
    let t0 = Instant::now();

    // The first attempt used the only permit.
    let (_, first) = take_attempt(&mut handle);
    first.send_response(status(503));
    assert_pending!(fut.poll());

    // The delay is over, but the inner service is not ready: nothing is sent.
    advance(secs(1)).await;
    assert_pending!(fut.poll());
    assert_no_attempt(&mut handle, "while the inner service is not ready");
    advance(secs(3600)).await;
    assert_pending!(fut.poll());
    assert_no_attempt(&mut handle, "while the inner service is not ready");

    // Ready again: the waiting future is woken and sends the retry.
    handle.allow(1);
    assert!(fut.is_woken(), "poll_ready registered the task for wake-up");
    assert_pending!(fut.poll());
    let (_, second) = take_attempt(&mut handle);
    assert_eq!(t0.elapsed(), secs(3601));
    second.send_response(status(200));

    let resp = assert_ready!(fut.poll()).unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // Only the backoff counts as slept, not the wait for readiness.
    assert_eq!(info(&resp).slept(), secs(1));
}

// ===== service_fn, ServiceBuilder, Send =====

#[tokio::test(start_paused = true)]
async fn service_fn_with_infallible_error_works_through_service_builder() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let inner = tower::service_fn(move |req: Request<Full<Bytes>>| {
        let log = log.clone();
        async move {
            let method = req.method().clone();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let n = {
                let mut log = log.lock().unwrap();
                log.push((method, body));
                log.len()
            };
            let code = if n < 3 { 503 } else { 200 };
            Ok::<_, Infallible>(
                Response::builder()
                    .status(code)
                    .body(String::new())
                    .unwrap(),
            )
        }
    });
    let client = ServiceBuilder::new()
        .layer(TelEchoRetry::default())
        .service(inner);

    let t0 = Instant::now();
    let result: Result<Response<ResponseBody<String>>, RetryError> = client.oneshot(post()).await;
    let resp = result.unwrap();

    assert_eq!(resp.status(), StatusCode::OK);
    let info = info(&resp);
    assert_eq!(info.attempts(), 3);
    assert_eq!(info.stop_reason(), Some(StopReason::Success));
    assert!(t0.elapsed() >= info.slept());
    let body = post().into_body().collect().await.unwrap().to_bytes();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    for (method, b) in seen.iter() {
        assert_eq!(*method, Method::POST);
        assert_eq!(*b, body);
    }
}

fn assert_send<T: Send>(_: &T) {}
fn assert_send_sync_clone<T: Send + Sync + Clone>() {}

#[tokio::test]
async fn response_future_and_layer_are_send() {
    assert_send_sync_clone::<TelEchoRetry>();

    // Over the mock, over service_fn, and over hyper-util's client.
    let (mut svc, _handle) =
        mock::spawn_layer::<Request<Full<Bytes>>, Resp, _>(TelEchoRetry::default());
    assert_ready!(svc.poll_ready::<Request<Full<Bytes>>>()).unwrap();
    let fut: ResponseFuture<mock::Mock<_, Resp>, _> = svc.call(get());
    assert_send(&fut);

    let mut svc = ServiceBuilder::new()
        .layer(TelEchoRetry::default())
        .service(tower::service_fn(|_req: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
    let fut = svc.ready().await.unwrap().call(get());
    assert_send(&fut);
    assert_eq!(info(&fut.await.unwrap()).attempts(), 1);

    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let svc: RetryService<_> = ServiceBuilder::new()
        .layer(TelEchoRetry::default())
        .service(client);
    fn send_future<S: Service<Request<Full<Bytes>>, Future = F>, F: Send>(_: &S) {}
    send_future(&svc);
}

// ===== end to end =====

/// What the test server saw of one request.
#[derive(Debug)]
struct Seen {
    method: Method,
    path: String,
    body: Bytes,
    at: std::time::Instant,
}

#[tokio::test]
async fn hyper_util_client_through_the_layer_against_a_real_server() {
    use hyper::body::Incoming;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));

    let log = seen.clone();
    let server = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let log = log.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let log = log.clone();
                    async move {
                        let at = std::time::Instant::now();
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await?.to_bytes();
                        let n = {
                            let mut log = log.lock().unwrap();
                            log.push(Seen {
                                method: parts.method,
                                path: parts.uri.path().to_owned(),
                                body,
                                at,
                            });
                            log.len()
                        };
                        let resp = match n {
                            1 => Response::builder()
                                .status(503)
                                .body(Full::new(Bytes::from_static(b"{\"error\":{}}"))),
                            2 => Response::builder()
                                .status(429)
                                .header(RETRY_AFTER, "1")
                                .body(Full::new(Bytes::from_static(b"{\"error\":{}}"))),
                            _ => Response::builder()
                                .status(200)
                                .body(Full::new(Bytes::from_static(b"{\"id\":\"tel_call_1\"}"))),
                        };
                        Ok::<_, hyper::Error>(resp.unwrap())
                    }
                });
                // A connection the client gives up on ends with an error: not the test's concern.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });

    let policy = RetryPolicy::builder()
        .base_delay(ms(50))
        .retry_after_spread(ms(100))
        .build();
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let client = ServiceBuilder::new()
        .layer(TelEchoRetry::new(policy))
        .service(client);

    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{addr}/v1/calls"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(
            b"{\"agent_id\":\"tel_agent_1\",\"to\":\"+15550100\"}",
        )))
        .unwrap();
    let resp = tokio::time::timeout(secs(30), client.oneshot(req))
        .await
        .expect("finished in time")
        .expect("a response");

    // What the client got.
    assert_eq!(resp.status(), StatusCode::OK);
    let info = info(&resp);
    assert_eq!(info.attempts(), 3);
    assert_eq!(info.stop_reason(), Some(StopReason::Success));
    assert!(info.slept() >= secs(1) + ms(50), "{info:?}");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, Bytes::from_static(b"{\"id\":\"tel_call_1\"}"));

    // What the server saw.
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "{seen:?}");
    for s in seen.iter() {
        assert_eq!(s.method, Method::POST);
        assert_eq!(s.path, "/v1/calls");
        assert_eq!(
            s.body,
            Bytes::from_static(b"{\"agent_id\":\"tel_agent_1\",\"to\":\"+15550100\"}")
        );
    }
    let gap = seen[2].at - seen[1].at;
    assert!(
        gap >= secs(1),
        "the retry after `Retry-After: 1` came {gap:?} later"
    );
    drop(seen);
    server.abort();
}

#[tokio::test(start_paused = true)]
async fn first_try_success_adds_nothing_to_the_response() {
    let svc = tower::ServiceBuilder::new()
        .layer(TelEchoRetry::default())
        .service(tower::service_fn(|_req: Request<Full<Bytes>>| async {
            Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new())))
        }));
    let resp = svc
        .oneshot(Request::new(Full::new(Bytes::from_static(b"x"))))
        .await
        .unwrap();
    assert!(
        resp.extensions().is_empty(),
        "no allocation on the success path"
    );
    let info = RetryInfo::of(resp.extensions());
    assert_eq!(
        (info.attempts(), info.stop_reason()),
        (1, Some(StopReason::Success))
    );
}
