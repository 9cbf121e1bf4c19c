//! No secrets: no header value, URL query or body in any span or event.

use super::*;

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
