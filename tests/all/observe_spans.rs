//! The attempt spans (feature `tracing`): one per attempt sent, with OpenTelemetry's
//! `http.request.resend_count` on resends, the method, the status or `error.type`, and the
//! decision; children of the caller's span, parents of the inner service's spans. Through
//! the tower layer over `tower::service_fn` (paused clock) and the reqwest middleware over a
//! loopback server, with reqwest-tracing's span below it (feature `reqwest-tracing`). And no
//! header value, URL query or body in any field.
#![cfg(all(feature = "tower", feature = "tracing"))]

use std::io;
use std::time::Duration;

use telecho_retry::observe::{field, ATTEMPT_SPAN};
use telecho_retry::{RetryErrorKind, TelEchoRetry};
use tokio_test::{assert_pending, task};
use tower::{Layer, Service, ServiceExt};
use tracing::Instrument;

use crate::observe_support::*;

/// A field of each span, in order.
fn column<'a>(spans: &[&'a SpanRecord], field: &str) -> Vec<Option<&'a str>> {
    spans.iter().map(|s| s.get(field)).collect()
}

#[tokio::test(start_paused = true)]
async fn tower_each_attempt_runs_in_its_own_span_with_the_resend_count() {
    let capture = Capture::default();
    let _guard = capture.install();
    let svc = TelEchoRetry::new(exact().build()).layer(scripted(vec![
        status(503),
        status(503),
        status(200),
    ]));
    let resp = svc
        .oneshot(request("POST", "http://api.telecho.test/v1/calls"))
        .instrument(tracing::info_span!("caller"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let c = capture.get();
    let caller = c.spans.iter().position(|s| s.name == "caller");
    let attempts = c.named(ATTEMPT_SPAN);
    assert_eq!(attempts.len(), 3, "one span per attempt: {attempts:#?}");
    for a in &attempts {
        assert!(a.closed, "every attempt span ends with its attempt");
        assert_eq!(a.parent, caller, "a child of the caller's span");
        assert_eq!(a.get(field::REQUEST_METHOD), Some("POST"));
    }
    assert_eq!(
        column(&attempts, field::RESEND_COUNT),
        [None, Some("1"), Some("2")]
    );
    assert_eq!(
        column(&attempts, field::RESPONSE_STATUS_CODE),
        [Some("503"), Some("503"), Some("200")]
    );
    assert_eq!(
        column(&attempts, field::ERROR_TYPE),
        [Some("503"), Some("503"), None]
    );
    assert_eq!(
        column(&attempts, field::OTEL_STATUS_CODE),
        [Some("ERROR"), Some("ERROR"), None]
    );
    assert_eq!(
        column(&attempts, field::DECISION),
        [Some("backoff"), Some("backoff"), Some("accept")]
    );
    assert_eq!(
        column(&attempts, field::RETRY_DELAY_MS),
        [Some("1000"), Some("2000"), None]
    );
    assert_eq!(
        column(&attempts, field::STOP_REASON),
        [None, None, Some("success")]
    );

    // The inner service's spans, made when it is called and when its future is polled, are
    // children of the attempt they serve.
    for name in ["inner.call", "inner.poll"] {
        let inner = c.named(name);
        assert_eq!(inner.len(), 3, "{name}");
        for (i, span) in inner.iter().enumerate() {
            let parent = &c.spans[span.parent.expect("inner spans have a parent")];
            assert_eq!(parent.name, ATTEMPT_SPAN, "{name} #{i}");
            assert_eq!(
                parent.get(field::RESEND_COUNT),
                [None, Some("1"), Some("2")][i],
                "{name} #{i} belongs to attempt {}",
                i + 1
            );
        }
    }

    // The `retrying` events happen inside the attempt they follow.
    let retrying: Vec<_> = c
        .events
        .iter()
        .filter(|e| e.fields.get("message").map(String::as_str) == Some("retrying"))
        .collect();
    assert_eq!(retrying.len(), 2);
    for (i, e) in retrying.iter().enumerate() {
        let span = &c.spans[e.span.expect("inside a span")];
        assert_eq!(span.name, ATTEMPT_SPAN);
        assert_eq!(span.get(field::RESEND_COUNT), [None, Some("1")][i]);
        assert_eq!(e.fields["attempt"], (i + 1).to_string());
    }
}

#[tokio::test(start_paused = true)]
async fn tower_transport_errors_and_timeouts_are_the_error_type() {
    let capture = Capture::default();
    let _guard = capture.install();
    let policy = exact().attempt_timeout(Duration::from_secs(1)).build();
    let svc = TelEchoRetry::new(policy).layer(scripted(vec![
        Answer::Fail(io::ErrorKind::ConnectionRefused),
        Answer::Hang,
        status(204),
    ]));
    let resp = svc
        .oneshot(request("GET", "http://api.telecho.test/v1/agents"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);

    let c = capture.get();
    let attempts = c.named(ATTEMPT_SPAN);
    assert_eq!(
        column(&attempts, field::ERROR_TYPE),
        [Some("connect"), Some("timeout"), None]
    );
    assert_eq!(
        column(&attempts, field::RESPONSE_STATUS_CODE),
        [None, None, Some("204")]
    );
    assert_eq!(
        column(&attempts, field::RESEND_COUNT),
        [None, Some("1"), Some("2")]
    );
    assert_eq!(column(&attempts, field::REQUEST_METHOD), [Some("GET"); 3]);
}

#[tokio::test(start_paused = true)]
async fn tower_fatal_401_is_one_span_that_says_so() {
    let capture = Capture::default();
    let _guard = capture.install();
    let svc = TelEchoRetry::new(exact().build()).layer(scripted(vec![status(401)]));
    let resp = svc
        .oneshot(request("GET", "http://api.telecho.test/v1/agents"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let c = capture.get();
    let attempts = c.named(ATTEMPT_SPAN);
    assert_eq!(attempts.len(), 1);
    let a = attempts[0];
    assert_eq!(a.get(field::RESEND_COUNT), None);
    assert_eq!(a.get(field::ERROR_TYPE), Some("401"));
    assert_eq!(a.get(field::DECISION), Some("fatal"));
    assert_eq!(a.get(field::STOP_REASON), Some("fatal"));
    assert_eq!(a.get(field::RETRY_DELAY_MS), None);
}

#[tokio::test(start_paused = true)]
async fn tower_an_attempt_cut_by_the_deadline_says_deadline() {
    let capture = Capture::default();
    let _guard = capture.install();
    let policy = exact().deadline(Duration::from_secs(2)).build();
    let svc = TelEchoRetry::new(policy).layer(scripted(vec![Answer::Hang]));
    let err = svc
        .oneshot(request("GET", "http://api.telecho.test/v1/agents"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), RetryErrorKind::Deadline);
    let c = capture.get();
    let attempts = c.named(ATTEMPT_SPAN);
    assert_eq!(attempts.len(), 1);
    assert!(attempts[0].closed);
    assert_eq!(attempts[0].get(field::ERROR_TYPE), Some("deadline"));
    assert_eq!(attempts[0].get(field::STOP_REASON), Some("deadline"));
    assert!(c
        .events
        .iter()
        .any(|e| e.fields.get("message").map(String::as_str) == Some("deadline cut the attempt")));
}

#[tokio::test(start_paused = true)]
async fn tower_a_request_dropped_mid_attempt_closes_its_span_as_cancelled() {
    let capture = Capture::default();
    let _guard = capture.install();
    let mut svc = TelEchoRetry::new(exact().build()).layer(scripted(vec![Answer::Hang]));
    let mut fut = task::spawn(
        svc.ready()
            .await
            .unwrap()
            .call(request("GET", "http://api.telecho.test/v1/agents")),
    );
    assert_pending!(fut.poll());
    assert!(!capture.get().named(ATTEMPT_SPAN)[0].closed);
    drop(fut);
    let c = capture.get();
    let a = c.named(ATTEMPT_SPAN)[0];
    assert!(a.closed);
    assert_eq!(a.get(field::STOP_REASON), Some("cancelled"));
}

#[tokio::test(start_paused = true)]
async fn tower_a_request_held_back_by_the_cooldown_logs_the_wait() {
    let capture = Capture::default();
    let _guard = capture.install();
    let svc = TelEchoRetry::new(exact().build())
        .layer(scripted(vec![Answer::Status(429, Some("2")), status(200)]));
    let first = tokio::spawn(
        svc.clone()
            .oneshot(request("GET", "http://api.telecho.test/v1/agents")),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = svc
        .oneshot(request("GET", "http://api.telecho.test/v1/agents"))
        .await
        .unwrap();
    assert_eq!(second.status(), 200);
    assert_eq!(first.await.unwrap().unwrap().status(), 200);
    let c = capture.get();
    let held: Vec<_> = c
        .events
        .iter()
        .filter(|e| {
            e.fields.get("message").map(String::as_str) == Some("held back by the cooldown")
        })
        .collect();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].fields["wait_ms"], "1500");
    // Held back before it was sent: no attempt span was open.
    assert_eq!(held[0].span, None);
    let attempts = c.named(ATTEMPT_SPAN);
    assert_eq!(
        column(&attempts, field::DECISION),
        [Some("retry_after"), Some("accept"), Some("accept")]
    );
}

#[tokio::test(start_paused = true)]
async fn tower_a_429_that_cuts_adaptive_pacing_logs_the_cut() {
    let capture = Capture::default();
    let _guard = capture.install();
    one_adaptive_cut().await;
    let c = capture.get();
    let cuts: Vec<_> = c
        .events
        .iter()
        .filter(|e| e.fields.get("message").map(String::as_str) == Some("pacing rate cut"))
        .collect();
    assert_eq!(cuts.len(), 1, "{:?}", c.events);
    assert!(!cuts[0].fields.contains_key("from"), "not pacing before");
    let to: f64 = cuts[0].fields["to"].parse().unwrap();
    assert!(to >= 0.5, "{to}");
}

// ===== the reqwest middleware =====

#[cfg(feature = "reqwest")]
mod through_reqwest {
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
}

// ===== no secrets =====

const SECRET: &str = "sk_live_OBSERVE_SECRET_7777";

/// A whole retried request through the tower layer, and through the reqwest middleware (with
/// reqwest-tracing's span backend when the feature is on) including a refused connection,
/// whose error text carries the URL: every span field and event field is captured, and
/// also rendered by `tracing-subscriber`'s `fmt` with span events; the secret, which sits in
/// the URL query, the headers, the user agent and the body, appears nowhere.
#[tokio::test]
async fn no_header_value_url_query_or_body_in_any_span_or_event() {
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::format::FmtSpan;
    use tracing_subscriber::layer::SubscriberExt;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    let capture = Capture::default();
    let buf = Buf::default();
    let writer = buf.clone();
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_span_events(FmtSpan::FULL)
        .with_writer(move || writer.clone());
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::registry()
            .with(capture.clone())
            .with(fmt),
    );

    // The tower layer.
    let policy = exact()
        .base_delay(Duration::from_millis(10))
        .attempt_header(http::HeaderName::from_static("x-retry-attempt"))
        .generate_idempotency_keys(true)
        .build();
    let svc = TelEchoRetry::new(policy.clone()).layer(scripted(vec![
        Answer::Status(503, None),
        Answer::Fail(io::ErrorKind::ConnectionReset),
        status(201),
    ]));
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("http://127.0.0.1:9/v1/calls?api_key={SECRET}"))
        .header("authorization", format!("Bearer {SECRET}"))
        .header("idempotency-key", SECRET)
        .header("user-agent", SECRET)
        .body(http_body_util::Full::new(bytes::Bytes::from(SECRET)))
        .unwrap();
    assert_eq!(svc.oneshot(req).await.unwrap().status(), 201);

    #[cfg(feature = "reqwest")]
    {
        use crate::support::{Reply, Server};
        let server = Server::scripted(vec![
            Reply::status(503).header("x-echo", SECRET).body(SECRET),
            Reply::status(200).body(SECRET),
        ])
        .await;
        let builder = ::reqwest_middleware::ClientBuilder::new(
            reqwest::Client::builder()
                .no_proxy()
                .user_agent(SECRET)
                .build()
                .unwrap(),
        )
        .with(TelEchoRetry::new(policy));
        #[cfg(feature = "reqwest-tracing")]
        let builder = builder.with(reqwest_tracing::TracingMiddleware::<
            telecho_retry::ResendCountSpanBackend,
        >::new());
        let client = builder.build();
        let resp = client
            .post(server.url(&format!("/v1/calls?api_key={SECRET}")))
            .bearer_auth(SECRET)
            .body(SECRET)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        // A refused connection: reqwest's error text would name the URL, query included;
        // the middleware's error leaves it out.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let err = client
            .get(format!("http://{addr}/v1/agents?api_key={SECRET}"))
            .send()
            .await
            .unwrap_err();
        assert!(!err.to_string().contains(SECRET) && !format!("{err:?}").contains(SECRET));
    }

    let c = capture.get();
    assert!(c.named(ATTEMPT_SPAN).len() >= 3);
    let fields = c.all_text();
    let rendered = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(
        rendered.contains("http.request.resend_count=1"),
        "{rendered}"
    );
    for (what, text) in [("captured fields", &fields), ("fmt output", &rendered)] {
        assert!(!text.contains(SECRET), "{what} leak the secret:\n{text}");
        assert!(
            !text.contains("OBSERVE_SECRET"),
            "{what} leak part of it:\n{text}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn tower_every_attempt_stays_under_the_span_current_when_the_request_was_made() {
    let capture = Capture::default();
    let _guard = capture.install();
    let mut svc = TelEchoRetry::new(exact().build()).layer(scripted(vec![
        status(503),
        status(503),
        status(200),
    ]));
    let caller = tracing::info_span!("caller");
    let fut = {
        let _entered = caller.enter();
        std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
        svc.call(request("GET", "http://api.telecho.test/v1/agents"))
    };
    // Awaited elsewhere, outside the caller's span.
    let resp = tokio::spawn(fut).await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    let c = capture.get();
    let caller = c.spans.iter().position(|s| s.name == "caller");
    let attempts = c.named(ATTEMPT_SPAN);
    assert_eq!(attempts.len(), 3);
    for a in &attempts {
        assert_eq!(a.parent, caller, "every attempt, retries included: {a:?}");
    }
    // The events' `decision` takes the span field's values.
    let retrying: Vec<_> = c
        .events
        .iter()
        .filter(|e| e.fields.get("message").map(String::as_str) == Some("retrying"))
        .collect();
    assert_eq!(retrying.len(), 2);
    for e in retrying {
        assert_eq!(
            e.fields.get("decision").map(String::as_str),
            Some("backoff")
        );
    }
}
