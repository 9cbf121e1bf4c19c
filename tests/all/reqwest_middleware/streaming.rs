//! Streaming bodies: sent once over the replay limit, replayed byte for byte under it.

use super::*;

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
