//! Backpressure (a retry waits for readiness), `service_fn` through `ServiceBuilder`, and
//! `Send` futures and layers.

use super::*;

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
