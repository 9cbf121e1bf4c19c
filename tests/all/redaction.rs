//! Secrets never reach logs: a whole retry sequence with `Authorization: Bearer <secret>`
//! and an API key in the URL query, with every tracing event captured at TRACE and the
//! `Debug` of every crate type in play; the secret appears nowhere.
#![cfg(all(feature = "tower", feature = "tracing"))]

use std::convert::Infallible;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use telecho_retry::body::ReplayBody;
use telecho_retry::body::TryCloneBody;
use telecho_retry::{HttpResponseExt, RetryInfo, RetryPolicy, TelEchoRetry};
use tower::{service_fn, Layer, Service, ServiceExt};

const SECRET: &str = "sk_live_TOPSECRET_4242";

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn no_secret_in_tracing_or_debug() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(capture.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut debug = String::new();
    let mut calls = 0;
    let inner = service_fn(move |req: Request<Full<Bytes>>| {
        calls += 1;
        assert!(req.headers()["authorization"]
            .to_str()
            .unwrap()
            .contains(SECRET));
        let resp = match calls {
            1 => Response::builder()
                .status(429)
                .header("retry-after", "1")
                .header("x-echo-auth", format!("Bearer {SECRET}"))
                .body(Full::new(Bytes::from_static(br#"{"error":{"type":"rate_limit_error","code":"rate_limit_per_minute","message":"slow down"}}"#))),
            2 => Response::builder().status(503).body(Full::new(Bytes::new())),
            _ => Response::builder().status(201).body(Full::new(Bytes::new())),
        }
        .unwrap();
        async move { Ok::<_, Infallible>(resp) }
    });
    let policy = RetryPolicy::builder()
        .attempt_header(http::HeaderName::from_static("x-retry-attempt"))
        .generate_idempotency_keys(true)
        .build();
    let layer = TelEchoRetry::new(policy.clone());
    let mut svc = layer.layer(inner);
    debug += &format!("{policy:?}\n{layer:?}\n");

    let req = Request::builder()
        .method("POST")
        .uri(format!("http://127.0.0.1:9/v1/calls?api_key={SECRET}"))
        .header("authorization", format!("Bearer {SECRET}"))
        .header("x-api-key", SECRET)
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let mut fut = std::pin::pin!(svc.ready().await.unwrap().call(req));
    // Debug of the future while it sleeps between attempts.
    tokio::select! {
        _ = fut.as_mut() => panic!("finished too early"),
        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
    }
    debug += &format!("{fut:?}\n");
    let resp = fut.await.unwrap();
    assert_eq!(resp.status(), 201);
    let info = resp.extensions().get::<RetryInfo>().unwrap();
    assert_eq!(info.attempts(), 3);
    debug += &format!("{info:?}\n{svc:?}\n");

    // A typed error built from a response whose headers carry the secret.
    let err = http::Response::builder()
        .status(401)
        .header("www-authenticate", format!("Bearer {SECRET}"))
        .header("set-cookie", format!("session={SECRET}"))
        .body(Bytes::from_static(br#"{"error":{"type":"authentication_error","code":"invalid_api_key","message":"The API key provided is invalid."}}"#))
        .unwrap()
        .api_error_for_status()
        .unwrap_err();
    debug += &format!("{err:?}\n{err}\n");

    let body = ReplayBody::new(Full::new(Bytes::from(format!("token={SECRET}"))), 1024);
    debug += &format!("{body:?}\n{:?}\n", body.try_clone_body().unwrap());
    debug += &format!("{:?}\n", layer.limits());

    // A service over a client whose own `Debug` shows its default headers.
    #[cfg(feature = "reqwest")]
    {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "authorization",
            http::HeaderValue::from_str(&format!("Bearer {SECRET}")).unwrap(),
        );
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .unwrap();
        assert!(
            format!("{client:?}").contains("TOPSECRET"),
            "the client's own Debug shows it"
        );
        let svc = tower::Layer::layer(&layer, client);
        debug += &format!("{svc:?}\n");
    }

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("retrying"), "the retries were logged: {logs}");
    assert!(logs.matches("retrying").count() >= 2, "{logs}");
    for (name, text) in [("tracing output", &logs), ("Debug output", &debug)] {
        assert!(!text.contains(SECRET), "{name} leaks the secret:\n{text}");
        assert!(
            !text.contains("TOPSECRET"),
            "{name} leaks part of the secret:\n{text}"
        );
    }
}
