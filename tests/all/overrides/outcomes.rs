//! Outcomes are never lost, and nothing is read that cannot matter.

use super::*;

#[tokio::test(start_paused = true)]
async fn no_error_body_is_read_when_no_retry_can_follow() {
    use futures_util::StreamExt;
    use http_body::Frame;
    use http_body_util::StreamBody;
    type Stalled =
        StreamBody<futures_util::stream::BoxStream<'static, Result<Frame<Bytes>, Infallible>>>;
    let inner = service_fn(|_req: Request<Full<Bytes>>| async {
        let body: Stalled = StreamBody::new(futures_util::stream::pending().boxed());
        Ok::<_, Infallible>(Response::builder().status(503).body(body).unwrap())
    });
    let policy = quick()
        .on_code(
            telecho_retry::ErrorCode::OutboundCallFailed,
            telecho_retry::classify::CodeRule::Fatal,
        )
        .build();
    let svc = ServiceBuilder::new()
        .layer(crate::support::unbudgeted(policy))
        .service(inner);
    let start = Instant::now();
    let resp = svc
        .oneshot(with_override(Method::GET, Some(RetryOverride::disabled())))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(start.elapsed(), Duration::ZERO, "handed back at once");
}

#[tokio::test(start_paused = true)]
async fn a_refusal_that_starts_during_the_backoff_hands_back_the_last_response() {
    // Request A gets a 503 and waits 1 s to retry; meanwhile request B gets a 429 whose
    // `Retry-After` is above the cap: A's retry is refused, and A gets its 503 back.
    let calls = Arc::new(Mutex::new(0usize));
    let count = Arc::clone(&calls);
    let inner = service_fn(move |req: Request<Full<Bytes>>| {
        *count.lock().unwrap() += 1;
        let b = req.uri().path() == "/b";
        async move {
            let resp = if b {
                Response::builder()
                    .status(429)
                    .header("retry-after", "3600")
            } else {
                Response::builder().status(503)
            };
            Ok::<_, Infallible>(resp.body(Full::new(Bytes::new())).unwrap())
        }
    });
    let svc = ServiceBuilder::new()
        .layer(crate::support::unbudgeted(quick().build()))
        .service(inner);
    let a = tokio::spawn(svc.clone().oneshot(with_override(Method::GET, None)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let b = Request::get("/b").body(Full::new(Bytes::new())).unwrap();
    let b = svc.oneshot(b).await.unwrap();
    assert_eq!(b.status(), StatusCode::TOO_MANY_REQUESTS);
    let a = a.await.unwrap().expect("A's own 503, not an error");
    assert_eq!(a.status(), StatusCode::SERVICE_UNAVAILABLE);
    let info = RetryInfo::of(a.extensions());
    assert_eq!(info.attempts(), 1);
    assert_eq!(info.stop_reason(), Some(StopReason::RetryAfterTooLong));
    assert_eq!(*calls.lock().unwrap(), 2, "A was not sent again");
}

#[tokio::test(start_paused = true)]
async fn a_classifier_sees_whether_a_get_answered_2xx_is_idempotent() {
    // An API that answers 202 "still working" until the result is ready.
    fn classifier() -> impl Classifier {
        classify_fn(
            |request: &RequestView<'_>, outcome: &Outcome<'_>| match outcome {
                Outcome::Response { status, .. }
                    if status.as_u16() == 202 && request.is_idempotent() =>
                {
                    Decision::Backoff
                }
                Outcome::Response { .. } => Decision::Accept,
                _ => Decision::Fatal,
            },
        )
    }
    let (inner, seen) = recording(|n| Some(if n < 3 { 202 } else { 200 }));
    let svc = ServiceBuilder::new()
        .layer(crate::support::unbudgeted(
            quick().classifier(classifier()).build(),
        ))
        .service(inner);
    let resp = svc.oneshot(with_override(Method::GET, None)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(attempts(&seen), 3, "a GET is retried");
    // A POST is not idempotent: its 202 is final.
    let (inner, seen) = recording(|_| Some(202));
    let svc = ServiceBuilder::new()
        .layer(crate::support::unbudgeted(
            quick().classifier(classifier()).build(),
        ))
        .service(inner);
    let resp = svc
        .oneshot(with_override(Method::POST, None))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(attempts(&seen), 1);
}

#[tokio::test]
async fn reused_extensions_carry_nothing_over_to_the_next_request() {
    let server = Server::scripted(vec![Reply::status(503), Reply::status(200)]).await;
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(crate::support::unbudgeted(fast().build()))
        .build();
    let mut extensions = http::Extensions::new();
    let first = client.get(server.url("/a")).build().unwrap();
    let resp = client
        .execute_with_extensions(first, &mut extensions)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(RetryInfo::of(&extensions).attempts(), 2);
    let second = client.get(server.url("/b")).build().unwrap();
    let resp = client
        .execute_with_extensions(second, &mut extensions)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        RetryInfo::of(&extensions).attempts(),
        1,
        "not the first request's info"
    );
    assert_eq!(telecho_retry::AttemptNumber::of(&extensions), 1);
}
