//! Each attempt starts from the caller's extensions, set directly or through the request
//! builder.

use super::*;

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
