//! Cancellation: dropping a request's future at each await point sends no further attempt,
//! leaks no task, and leaves the shared budget and cooldown consistent (paused clock).
#![cfg(feature = "tower")]

#[cfg(feature = "reqwest")]
use crate::support;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use telecho_retry::limits::RetryBudget;
use telecho_retry::{Jitter, RetryError, RetryInfo, RetryPolicy, StopReason, TelEchoRetry};
use tokio_test::{assert_pending, task};
use tower::{Layer, Service, ServiceExt};
use tower_test::mock;

type Req = Request<Full<Bytes>>;
type Resp = Response<Full<Bytes>>;

fn get() -> Req {
    Request::builder()
        .uri("http://127.0.0.1/v1/agents")
        .body(Full::new(Bytes::from_static(b"x")))
        .unwrap()
}

fn status(s: u16, retry_after: Option<&str>) -> Resp {
    let mut b = Response::builder().status(s);
    if let Some(ra) = retry_after {
        b = b.header("retry-after", ra);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

fn policy() -> telecho_retry::RetryPolicyBuilder {
    RetryPolicy::builder()
        .jitter(Jitter::None)
        .retry_after_spread(Duration::ZERO)
}

/// Asserts the mock receives no request, even after a long wait.
async fn assert_no_more_requests(handle: &mut mock::Handle<Req, Resp>) {
    tokio::time::sleep(Duration::from_secs(120)).await;
    let mut next = task::spawn(handle.next_request());
    assert_pending!(next.poll());
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[tokio::test(start_paused = true)]
async fn dropped_during_the_call() {
    let (inner, mut handle) = mock::pair::<Req, Resp>();
    let mut svc = TelEchoRetry::new(policy().build()).layer(inner);
    let fut = svc.ready().await.unwrap().call(get());
    let (_req, respond) = handle.next_request().await.unwrap();
    drop(fut);
    // The attempt in flight was dropped with the future: answering it goes nowhere.
    respond.send_response(status(503, None));
    assert_no_more_requests(&mut handle).await;
    assert_eq!(alive_tasks(), 0);
}

#[tokio::test(start_paused = true)]
async fn dropped_during_the_sleep() {
    let (inner, mut handle) = mock::pair::<Req, Resp>();
    let mut svc = TelEchoRetry::new(policy().build()).layer(inner);
    let mut fut = task::spawn(svc.ready().await.unwrap().call(get()));
    assert_pending!(fut.poll());
    let (_req, respond) = handle.next_request().await.unwrap();
    respond.send_response(status(503, None));
    assert_pending!(fut.poll()); // now sleeping 1 s
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_pending!(fut.poll());
    drop(fut);
    assert_no_more_requests(&mut handle).await;
    assert_eq!(alive_tasks(), 0);
}

#[tokio::test(start_paused = true)]
async fn dropped_while_waiting_for_the_inner_service() {
    let (inner, mut handle) = mock::pair::<Req, Resp>();
    let mut svc = TelEchoRetry::new(policy().build()).layer(inner);
    let mut fut = task::spawn(svc.ready().await.unwrap().call(get()));
    assert_pending!(fut.poll());
    let (_req, respond) = handle.next_request().await.unwrap();
    handle.allow(0); // backpressure: the retry cannot be sent
    respond.send_response(status(503, None));
    assert_pending!(fut.poll());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_pending!(fut.poll()); // slept; now waiting for poll_ready
    drop(fut);
    handle.allow(10);
    assert_no_more_requests(&mut handle).await;
}

#[tokio::test(start_paused = true)]
async fn cancelled_retries_are_given_back_to_the_budget() {
    let (inner, mut handle) = mock::pair::<Req, Resp>();
    // 10 retries per window, no share of traffic.
    let layer = crate::support::budgeted(
        policy().build(),
        RetryBudget::new(Duration::from_secs(10), 1, 0.0),
    );
    let mut svc = layer.layer(inner);

    // Ten requests each get a retry granted, then are dropped while they wait for it.
    let mut futs = Vec::new();
    for _ in 0..10 {
        let mut fut = task::spawn(svc.ready().await.unwrap().call(get()));
        assert_pending!(fut.poll());
        let (_req, respond) = handle.next_request().await.unwrap();
        respond.send_response(status(503, None));
        assert_pending!(fut.poll());
        futs.push(fut);
    }
    drop(futs);

    // None of those retries was sent, so the budget still has them: a new request retries.
    let mut fut = task::spawn(svc.ready().await.unwrap().call(get()));
    assert_pending!(fut.poll());
    let (_req, respond) = handle.next_request().await.unwrap();
    respond.send_response(status(503, None));
    assert_pending!(fut.poll());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_pending!(fut.poll());
    let (_req, respond) = handle.next_request().await.unwrap();
    respond.send_response(status(200, None));
    let resp = fut.await.unwrap();
    let info = resp.extensions().get::<RetryInfo>().unwrap();
    assert_eq!(
        (info.attempts(), info.stop_reason()),
        (2, Some(StopReason::Success))
    );
}

type Out = Response<telecho_retry::body::ResponseBody<Full<Bytes>>>;

/// Starts a request and answers its first attempt 503: `Ok` with the request still waiting
/// for the retry the budget granted, `Err` with its response when none was granted.
async fn answer_503(
    svc: &mut telecho_retry::RetryService<mock::Mock<Req, Resp>>,
    handle: &mut mock::Handle<Req, Resp>,
) -> Result<task::Spawn<impl std::future::Future<Output = Result<Out, RetryError>>>, Out> {
    let mut fut = task::spawn(svc.ready().await.unwrap().call(get()));
    assert_pending!(fut.poll());
    let (_req, respond) = handle.next_request().await.unwrap();
    respond.send_response(status(503, None));
    match fut.poll() {
        std::task::Poll::Pending => Ok(fut),
        std::task::Poll::Ready(result) => Err(result.unwrap()),
    }
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_retry_is_given_back_only_while_it_still_counts() {
    let (inner, mut handle) = mock::pair::<Req, Resp>();
    // 10 retries per 10 s window, no share of traffic; a granted retry waits 30 s.
    let layer = crate::support::budgeted(
        policy()
            .base_delay(Duration::from_secs(30))
            .max_delay(Duration::from_secs(30))
            .build(),
        RetryBudget::new(Duration::from_secs(10), 1, 0.0),
    );
    let mut svc = layer.layer(inner);
    let refused = |resp: Out| {
        let info = resp.extensions().get::<RetryInfo>().copied().unwrap();
        assert_eq!(
            (resp.status().as_u16(), info.attempts(), info.stop_reason()),
            (503, 1, Some(StopReason::Budget))
        );
    };

    // At 0 s ten requests are granted their retries: the budget is spent.
    let mut old = Vec::new();
    for n in 0..10 {
        let waiting = answer_503(&mut svc, &mut handle).await;
        old.push(waiting.unwrap_or_else(|_| panic!("retry {n} granted")));
    }
    refused(
        answer_503(&mut svc, &mut handle)
            .await
            .err()
            .expect("spent"),
    );

    // At 15 s those retries no longer count (a retry counts for at most 1.1 × 10 s): ten
    // more are granted.
    tokio::time::advance(Duration::from_secs(15)).await;
    let mut new = Vec::new();
    for n in 0..10 {
        let waiting = answer_503(&mut svc, &mut handle).await;
        new.push(waiting.unwrap_or_else(|_| panic!("retry {n} granted at 15 s")));
    }

    // Cancelling the old ones gives back nothing: what they took counts no more.
    drop(old);
    let late = answer_503(&mut svc, &mut handle).await;
    refused(late.err().expect("a late refund must not buy a retry"));

    // Cancelling two of the new ones, which still count, gives two back.
    new.truncate(8);
    for n in 0..2 {
        let waiting = answer_503(&mut svc, &mut handle).await;
        new.push(waiting.unwrap_or_else(|_| panic!("retry {n} bought back by a refund")));
    }
    refused(
        answer_503(&mut svc, &mut handle)
            .await
            .err()
            .expect("spent again"),
    );
    drop(new);
    assert_no_more_requests(&mut handle).await;
}

#[tokio::test(start_paused = true)]
async fn the_cooldown_outlives_a_cancelled_request() {
    let (inner, mut handle) = mock::pair::<Req, Resp>();
    // No pacing: the 429 would switch the default's adaptive pacing on, and C below would
    // wait for a slot (this test polls by hand).
    let limits = telecho_retry::limits::Limits::builder()
        .without_pacing()
        .build();
    let mut svc = TelEchoRetry::new(policy().build())
        .with_limits(limits)
        .layer(inner);

    // A gets a 429 with Retry-After: 5 and is dropped while it waits.
    let mut a = task::spawn(svc.ready().await.unwrap().call(get()));
    assert_pending!(a.poll());
    let (_req, respond) = handle.next_request().await.unwrap();
    respond.send_response(status(429, Some("5")));
    assert_pending!(a.poll());
    drop(a);

    // B starts at 1 s: the server's instruction still holds, B waits until 5 s.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut b = task::spawn(svc.ready().await.unwrap().call(get()));
    assert_pending!(b.poll());
    tokio::time::sleep(Duration::from_millis(3999)).await;
    assert_pending!(b.poll());
    let mut next = task::spawn(handle.next_request());
    assert_pending!(next.poll(), "nothing before 5 s");
    drop(next);
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_pending!(b.poll());
    let (_req, respond) = handle.next_request().await.unwrap();
    respond.send_response(status(200, None));
    assert_eq!(b.await.unwrap().status(), 200);

    // After the cooldown, requests go at once.
    let mut c = task::spawn(svc.ready().await.unwrap().call(get()));
    assert_pending!(c.poll());
    let (_req, respond) = handle.next_request().await.unwrap();
    respond.send_response(status(200, None));
    assert_eq!(c.await.unwrap().status(), 200);
}

#[tokio::test(start_paused = true)]
async fn dropped_while_held_back_by_the_cooldown_sends_nothing() {
    let (inner, mut handle) = mock::pair::<Req, Resp>();
    let mut svc = TelEchoRetry::new(policy().max_retries(0).build()).layer(inner);
    let resp = {
        let fut = svc.ready().await.unwrap().call(get());
        let (_req, respond) = handle.next_request().await.unwrap();
        respond.send_response(status(429, Some("5")));
        fut.await.unwrap()
    };
    assert_eq!(resp.status(), 429);
    let mut held = task::spawn(svc.ready().await.unwrap().call(get()));
    assert_pending!(held.poll());
    drop(held);
    assert_no_more_requests(&mut handle).await;
}

/// Through the reqwest middleware, dropped while it reads an error body for its code.
#[cfg(feature = "reqwest")]
#[tokio::test]
async fn dropped_during_the_error_body_read_sends_no_further_attempt() {
    use support::{Misbehave, RawServer};
    use telecho_retry::classify::CodeRule;
    use telecho_retry::ErrorCode;

    let server = RawServer::start(Misbehave::StallAfterErrorHead).await;
    let layer = TelEchoRetry::new(
        policy()
            .base_delay(Duration::from_millis(10))
            .on_code(ErrorCode::OutboundCallFailed, CodeRule::Fatal)
            .build(),
    );
    let client = reqwest_middleware::ClientBuilder::new(
        reqwest::Client::builder().no_proxy().build().unwrap(),
    )
    .with(layer.clone())
    .build();
    // The head arrives, the body stalls: the middleware is reading it when we give up.
    let send = client.get(server.url()).send();
    assert!(tokio::time::timeout(Duration::from_millis(300), send)
        .await
        .is_err());
    assert_eq!(server.requests(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.requests(), 1, "no attempt after the drop");
    assert_eq!(layer.limits().longest_cooldown(), None);
}

/// Polled again after it completed, the future panics at once (as an `async fn`'s does),
/// before it admits, paces or sends anything: the inner service saw one call.
#[tokio::test(start_paused = true)]
async fn a_future_polled_after_it_completed_panics_before_it_sends_anything() {
    use std::future::Future;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Waker};

    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let inner = tower::service_fn(move |_req: Req| {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, std::convert::Infallible>(status(200, None)) }
    });
    let mut svc = TelEchoRetry::new(policy().build()).layer(inner);
    let mut fut = Box::pin(svc.ready().await.unwrap().call(get()));
    assert_eq!(fut.as_mut().await.unwrap().status(), 200);
    let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = fut.as_mut().poll(&mut Context::from_waker(Waker::noop()));
    }));
    let panic = again.expect_err("a second poll after completion panics");
    let message = panic.downcast_ref::<&str>().copied().unwrap_or_default();
    assert!(message.contains("polled after it completed"), "{message:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "nothing was sent again");
}
