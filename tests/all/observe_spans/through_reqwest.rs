//! The attempt spans through the reqwest middleware over a loopback server, with
//! reqwest-tracing's span below it (feature `reqwest-tracing`).

use super::*;
use crate::support::{Reply, Server};
use telecho_retry::RetryPolicy;

fn fast() -> RetryPolicy {
    exact()
        .base_delay(Duration::from_millis(10))
        .max_delay(Duration::from_millis(50))
        .build()
}

fn reqwest_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

#[tokio::test]
async fn each_attempt_runs_in_its_own_span_with_the_resend_count() {
    let capture = Capture::default();
    let _guard = capture.install();
    let server = Server::scripted(vec![
        Reply::status(503),
        Reply::status(502),
        Reply::status(200),
    ])
    .await;
    let client = ::reqwest_middleware::ClientBuilder::new(reqwest_client())
        .with(TelEchoRetry::new(fast()))
        .build();
    let resp = client
        .put(server.url("/v1/agents/tel_agent_1"))
        .body("{}")
        .send()
        .instrument(tracing::info_span!("caller"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let c = capture.get();
    let caller = c.spans.iter().position(|s| s.name == "caller");
    let attempts = c.named(ATTEMPT_SPAN);
    assert_eq!(attempts.len(), 3);
    assert!(attempts.iter().all(|a| a.closed && a.parent == caller));
    assert_eq!(
        column(&attempts, field::RESEND_COUNT),
        [None, Some("1"), Some("2")]
    );
    assert_eq!(column(&attempts, field::REQUEST_METHOD), [Some("PUT"); 3]);
    assert_eq!(
        column(&attempts, field::RESPONSE_STATUS_CODE),
        [Some("503"), Some("502"), Some("200")]
    );
    assert_eq!(
        column(&attempts, field::ERROR_TYPE),
        [Some("503"), Some("502"), None]
    );
    assert_eq!(
        column(&attempts, field::RETRY_DELAY_MS),
        [Some("10"), Some("20"), None]
    );
}

/// reqwest-tracing below the retry middleware, with the crate's span backend: its
/// per-request span (the CLIENT span) carries the resend count too.
#[cfg(feature = "reqwest-tracing")]
#[tokio::test]
async fn reqwest_tracing_spans_below_carry_the_resend_count() {
    use reqwest_tracing::TracingMiddleware;
    use telecho_retry::ResendCountSpanBackend;

    let capture = Capture::default();
    let _guard = capture.install();
    let server = Server::scripted(vec![
        Reply::status(503),
        Reply::status(429),
        Reply::status(201),
    ])
    .await;
    let client = ::reqwest_middleware::ClientBuilder::new(reqwest_client())
        .with(TelEchoRetry::new(fast()))
        .with(TracingMiddleware::<ResendCountSpanBackend>::new())
        .build();
    let resp = client
        .post(server.url("/v1/calls"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);

    let c = capture.get();
    let http = c.named("HTTP request");
    assert_eq!(http.len(), 3, "one reqwest-tracing span per attempt");
    assert_eq!(
        column(&http, "http.request.resend_count"),
        [None, Some("1"), Some("2")]
    );
    assert_eq!(
        column(&http, "http.response.status_code"),
        [Some("503"), Some("429"), Some("201")]
    );
    assert_eq!(
        column(&http, "error.type"),
        [Some("503"), Some("429"), None]
    );
    assert_eq!(
        column(&http, "otel.status_code"),
        [Some("ERROR"), Some("ERROR"), None]
    );
    assert_eq!(column(&http, "otel.kind"), [Some("client"); 3]);
    assert_eq!(column(&http, "http.request.method"), [Some("POST"); 3]);
    assert_eq!(column(&http, "server.address"), [Some("127.0.0.1"); 3]);
    for (i, span) in http.iter().enumerate() {
        assert!(span.closed);
        let parent = &c.spans[span.parent.expect("a child of the attempt span")];
        assert_eq!(parent.name, ATTEMPT_SPAN);
        assert_eq!(
            parent.get(field::RESEND_COUNT),
            span.get("http.request.resend_count"),
            "attempt {} and its HTTP span agree",
            i + 1
        );
    }
}
