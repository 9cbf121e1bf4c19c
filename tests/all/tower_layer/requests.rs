//! Requests that cannot be copied, when copies are made, and cancellation mid-sleep.

use super::*;

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
