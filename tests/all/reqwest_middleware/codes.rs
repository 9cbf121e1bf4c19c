//! Code-aware decisions: code rules over the error body, which reaches the caller intact.

use super::*;

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
