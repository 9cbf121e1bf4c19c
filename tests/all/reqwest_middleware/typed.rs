//! Typed errors from real responses: every known code, and a body that is no envelope.

use super::*;

fn status_of(code: &ErrorCode) -> u16 {
    match code {
        ErrorCode::MissingApiKey
        | ErrorCode::InvalidApiKey
        | ErrorCode::RevokedApiKey
        | ErrorCode::ExpiredApiKey => 401,
        ErrorCode::AgentNotFound | ErrorCode::WorkflowNotFound | ErrorCode::PhoneNumberNotFound => {
            404
        }
        ErrorCode::CallBlocked => 402,
        ErrorCode::OutboundCallFailed => 502,
        ErrorCode::RateLimitPerMinute | ErrorCode::RateLimitPerHour => 429,
        // Validation errors, and resource-state errors the reference gives no status for.
        _ => 400,
    }
}

#[tokio::test]
async fn every_known_code_parses_from_a_real_response() {
    let server = Server::start(|seen| {
        let wire = seen.path.trim_start_matches("/code/");
        let code = ErrorCode::parse(wire);
        let echo = seen
            .headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let mut reply = Reply::status(status_of(&code))
            .header("content-type", "application/json")
            .header("x-echo-authorization", echo)
            .header("set-cookie", "session=resp-s3cr3t-cookie")
            .body(envelope(&code, &format!("message for {wire}")));
        if status_of(&code) == 429 {
            reply = reply.header("retry-after", "30");
        }
        reply
    })
    .await;
    // The 429s carry `Retry-After: 30`: without this, the shared cooldown would rightly
    // hold every later request back for 30 s (see tests/all/load_protection/).
    let client = client(
        TelEchoRetry::new(fast(0).build()).with_limits(
            telecho_retry::limits::Limits::builder()
                .shared_cooldown(false)
                .build(),
        ),
    );

    assert_eq!(ErrorCode::KNOWN.len(), 21);
    for code in ErrorCode::KNOWN {
        let wire = code.as_str();
        let status = StatusCode::from_u16(status_of(code)).unwrap();
        let resp = client
            .get(server.url(&format!("/code/{wire}")))
            .bearer_auth("s3cr3t")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{wire}");
        // The secrets really are in the response headers.
        assert_eq!(resp.headers()["x-echo-authorization"], "Bearer s3cr3t");

        let err = resp.api_error_for_status().await.unwrap_err();

        assert_eq!(err.status(), status, "{wire}");
        assert_eq!(err.code(), Some(code), "{wire}");
        let api = err.api_error().expect("the envelope parses");
        assert_eq!(api.message(), format!("message for {wire}"));
        assert_eq!(
            err.to_string(),
            format!("{status}: {wire}: message for {wire}")
        );
        let debug = format!("{err:?}");
        assert!(!debug.contains("s3cr3t"), "{wire}: {debug}");
        assert!(!debug.contains("Bearer"), "{wire}: {debug}");
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(err.retry_after(), Some(Duration::from_secs(30)), "{wire}");
        } else {
            assert_eq!(err.retry_after(), None, "{wire}");
        }
    }
    assert_eq!(server.seen().len(), 21, "max_retries(0): one hit per code");
}

#[tokio::test]
async fn non_envelope_error_keeps_the_raw_body_and_success_passes() {
    let server = Server::start(|seen| match seen.path.as_str() {
        "/ok" => Reply::status(200).body("fine"),
        _ => Reply::status(404)
            .header("x-api-key", "s3cr3t")
            .body("<html>not here</html>"),
    })
    .await;
    let client = client(TelEchoRetry::new(fast(0).build()));

    let ok = client.get(server.url("/ok")).send().await.unwrap();
    let ok = ok
        .api_error_for_status()
        .await
        .expect("200 is not an error");
    assert_eq!(ok.text().await.unwrap(), "fine");

    let resp = client.get(server.url("/missing")).send().await.unwrap();
    let err = resp.api_error_for_status().await.unwrap_err();
    assert_eq!(err.status(), StatusCode::NOT_FOUND);
    assert_eq!(err.code(), None);
    assert_eq!(err.body(), &Bytes::from_static(b"<html>not here</html>"));
    assert!(!format!("{err:?}").contains("s3cr3t"));
}
