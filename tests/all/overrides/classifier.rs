//! A classifier of another API's contract, under tower and through the reqwest middleware.

use super::*;

/// An API that says how long to wait in milliseconds (`retry-after-ms`), and whose callers
/// mark requests that must never be retried with `x-no-retry`.
fn acme() -> impl Classifier {
    classify_fn(|request: &RequestView<'_>, outcome: &Outcome<'_>| {
        if request
            .headers()
            .is_some_and(|h| h.contains_key("x-no-retry"))
        {
            return Decision::Fatal;
        }
        match outcome {
            Outcome::Response {
                status, headers, ..
            } if status.as_u16() == 429 => headers
                .get("retry-after-ms")
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .map_or(Decision::Backoff, |ms| {
                    Decision::RetryAfter(Duration::from_millis(ms))
                }),
            Outcome::Response { status, .. } if status.is_server_error() => Decision::Backoff,
            Outcome::Response { .. } => Decision::Accept,
            _ => Decision::Fatal,
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_custom_classifier_decides_under_tower() {
    let times: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let log = Arc::clone(&times);
    let start = Instant::now();
    let inner = service_fn(move |_req: Request<Full<Bytes>>| {
        let n = {
            let mut log = log.lock().unwrap();
            log.push(start.elapsed());
            log.len()
        };
        async move {
            let resp = if n == 1 {
                Response::builder()
                    .status(429)
                    .header("retry-after-ms", "250")
                    .body(Full::new(Bytes::new()))
            } else {
                Response::builder()
                    .status(200)
                    .body(Full::new(Bytes::new()))
            };
            Ok::<_, Infallible>(resp.unwrap())
        }
    });
    let policy = quick().classifier(acme()).build();
    let svc = ServiceBuilder::new()
        .layer(crate::support::unbudgeted(policy))
        .service(inner);
    let resp = svc
        .clone()
        .oneshot(with_override(Method::GET, None))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // `retry-after-ms: 250` is a floor under the 1 s backoff: the retry waits the longer.
    assert_eq!(
        *times.lock().unwrap(),
        [Duration::ZERO, Duration::from_secs(1)]
    );

    // The classifier sees the request's headers: `x-no-retry` is never retried.
    let mut req = with_override(Method::GET, None);
    req.headers_mut()
        .insert("x-no-retry", http::HeaderValue::from_static("1"));
    times.lock().unwrap().clear();
    let resp = svc.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(times.lock().unwrap().len(), 1);
    assert_eq!(
        RetryInfo::of(resp.extensions()).stop_reason(),
        Some(StopReason::Fatal)
    );
}

#[tokio::test]
async fn a_custom_classifier_decides_through_the_reqwest_middleware() {
    let server = Server::scripted(vec![
        Reply::status(429).header("retry-after-ms", "30"),
        Reply::status(200),
    ])
    .await;
    let policy = fast()
        .base_delay(Duration::from_millis(1))
        .classifier(acme())
        .build();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(crate::support::unbudgeted(policy))
        .build();
    let resp = client.get(server.url("/a")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen[1].at - seen[0].at >= Duration::from_millis(30));

    let resp = client
        .get(server.url("/b"))
        .header("x-no-retry", "1")
        .send()
        .await
        .unwrap();
    // The script's last reply repeats: 200 at once, whatever the header.
    assert_eq!(resp.status(), 200);
    let server = Server::start(|_| Reply::status(503)).await;
    let resp = client
        .get(server.url("/c"))
        .header("x-no-retry", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(
        server.hits("/c"),
        1,
        "the classifier saw the request header"
    );
}
