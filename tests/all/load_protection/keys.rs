//! Idempotency keys (generated, stable across attempts) and attempt numbers.

use super::*;

#[tokio::test(start_paused = true)]
async fn generated_idempotency_key_is_stable_across_attempts_and_absent_from_gets() {
    let server = Server::new();
    let srv = server.clone();
    let inner = service_fn(move |req: Req| {
        let (_, n) = srv.record(&req);
        let s = if n % 3 == 0 { 200 } else { 503 };
        async move { Ok::<_, Infallible>(status(s)) }
    });
    let policy = exact().generate_idempotency_keys(true).build();
    let mut svc = TelEchoRetry::new(policy).layer_over(inner);

    let resp = svc
        .ready()
        .await
        .unwrap()
        .call(request(Method::POST))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = svc
        .ready()
        .await
        .unwrap()
        .call(request(Method::GET))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut keyed = request(Method::POST);
    keyed
        .headers_mut()
        .insert("idempotency-key", "caller-key".parse().unwrap());
    svc.ready().await.unwrap().call(keyed).await.unwrap();

    let seen = server.seen();
    assert_eq!(seen.len(), 9);
    let post_keys: Vec<&str> = seen[..3]
        .iter()
        .map(|s| s.key.as_deref().unwrap())
        .collect();
    assert_eq!(post_keys[0].len(), 36, "a UUID: {}", post_keys[0]);
    assert!(
        post_keys.iter().all(|k| *k == post_keys[0]),
        "{post_keys:?}"
    );
    assert!(seen[3..6]
        .iter()
        .all(|s| s.method == Method::GET && s.key.is_none()));
    assert!(seen[6..]
        .iter()
        .all(|s| s.key.as_deref() == Some("caller-key")));
}

#[tokio::test(start_paused = true)]
async fn a_generated_key_makes_a_post_timeout_retryable() {
    let server = Server::new();
    let srv = server.clone();
    let inner = service_fn(move |req: Req| {
        let (_, n) = srv.record(&req);
        async move {
            if n == 1 {
                return Err::<Response<Full<Bytes>>, BoxError>(Box::new(std::io::Error::from(
                    std::io::ErrorKind::TimedOut,
                )));
            }
            Ok(status(201))
        }
    });
    let policy = exact().generate_idempotency_keys(true).build();
    let svc = TelEchoRetry::new(policy).layer_over(inner);
    let resp = svc.oneshot(request(Method::POST)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn attempt_number_is_visible_downstream() {
    let server = Server::new();
    let srv = server.clone();
    let inner = service_fn(move |req: Req| {
        let (_, n) = srv.record(&req);
        let s = if n < 3 { 502 } else { 200 };
        async move { Ok::<_, Infallible>(status(s)) }
    });
    let policy = exact()
        .attempt_header(http::HeaderName::from_static("x-retry-attempt"))
        .build();
    let svc = TelEchoRetry::new(policy).layer_over(inner);
    svc.oneshot(request(Method::GET)).await.unwrap();
    let seen = server.seen();
    let ext: Vec<Option<u32>> = seen.iter().map(|s| s.attempt_ext).collect();
    // Retries carry their number; the first attempt carries none (it allocates nothing),
    // which `AttemptNumber::of` reads as 1.
    assert_eq!(ext, [None, Some(2), Some(3)]);
    let hdr: Vec<Option<&str>> = seen.iter().map(|s| s.attempt_header.as_deref()).collect();
    assert_eq!(hdr, [Some("1"), Some("2"), Some("3")]);

    // The header is opt-in.
    let server = Server::new();
    let inner = always(&server, 200);
    TelEchoRetry::default()
        .layer_over(inner)
        .oneshot(request(Method::GET))
        .await
        .unwrap();
    assert_eq!(server.seen()[0].attempt_header, None);
    assert_eq!(server.seen()[0].attempt_ext, None);
}
