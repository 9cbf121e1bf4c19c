//! `ReplayBody` end to end: streaming uploads that the server answers before reading them,
//! through the reqwest middleware and through the tower layer over hyper-util's client.
//!
//! These are about sockets, so they run in real time against [`EarlyRejectServer`], which
//! answers the first request `503` as soon as its head is read and keeps that connection
//! open until the client closes it. Every test is bounded by `tokio::time::timeout`.
#![cfg(feature = "reqwest")]
// The tests through the tower layer need feature `tower` too; their helpers stay.
#![cfg_attr(not(feature = "tower"), allow(unused_imports, dead_code))]

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::{Extensions, Method, Request, StatusCode};
use http_body::Frame;
use http_body_util::StreamBody;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};
use telecho_retry::body::ReplayBody;
use telecho_retry::body::ReplayError;
use telecho_retry::{Jitter, RetryPolicy};
use tokio::sync::{mpsc, Notify};
use tower::{ServiceBuilder, ServiceExt};

use crate::support;
use support::*;

// ===== helpers =====

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Short, exact delays and no budget: the first retry comes 10 ms after the `503`.
fn policy() -> RetryPolicy {
    RetryPolicy::builder()
        .base_delay(ms(10))
        .max_delay(ms(50))
        .jitter(Jitter::None)
        .build()
}

fn client(policy: RetryPolicy) -> ClientWithMiddleware {
    let inner = reqwest::Client::builder().no_proxy().build().unwrap();
    ClientBuilder::new(inner)
        .with(support::unbudgeted(policy))
        .build()
}

/// A 60 KiB upload in 60 chunks of 1 KiB, each after a 4 ms pause (about 250 ms in all),
/// and the bytes it adds up to.
fn slow_upload() -> (
    impl Stream<Item = Result<Bytes, io::Error>> + Send + 'static,
    Bytes,
) {
    let chunks: Vec<Bytes> = (0..60)
        .map(|i| Bytes::from(vec![b'a' + (i % 26) as u8; 1024]))
        .collect();
    let all = Bytes::from(chunks.concat());
    let stream = futures_util::stream::iter(chunks).then(|chunk| async move {
        tokio::time::sleep(ms(4)).await;
        Ok(chunk)
    });
    (stream, all)
}

/// Whether an `E` is somewhere in the `source()` chain of `err`.
fn caused_by(err: &(dyn std::error::Error + 'static), want: ReplayError) -> bool {
    let mut link = Some(err);
    while let Some(e) = link {
        if e.downcast_ref::<ReplayError>() == Some(&want) {
            return true;
        }
        link = e.source();
    }
    false
}

/// Asserts that the client closed the connection of the first, rejected attempt: its
/// upload was abandoned, not left hanging with the connection open.
async fn assert_first_connection_closed(server: &EarlyRejectServer) {
    assert!(
        server.wait_for(ms(1500), |l| l.first_closed).await,
        "the first attempt's connection is still open: {:?}",
        server.log()
    );
}

// ===== reqwest middleware =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_early_503_on_a_slow_upload_retries_it_whole_and_closes_the_first_connection() {
    let server = EarlyRejectServer::start().await;
    let client = client(policy());
    let (upload, all) = slow_upload();

    let resp = tokio::time::timeout(
        ms(2000),
        client
            .post(server.url())
            .body(reqwest::Body::wrap_stream(upload))
            .send(),
    )
    .await
    .expect("the retried upload finished in time")
    .expect("a response");

    assert_eq!(resp.status(), StatusCode::OK);
    let log = server.log();
    assert!(log.rejected);
    assert_eq!(
        log.uploads,
        vec![Upload::Complete(all)],
        "the retry sent the whole body"
    );
    assert_first_connection_closed(&server).await;
}

/// Fails the source of the first attempt's body while the engine waits to send the retry:
/// on attempt 2, before the request goes on, it makes the source fail and waits until the
/// first attempt's copy (still being sent on its connection) has read that failure.
struct FailSourceBeforeRetry {
    attempts: AtomicUsize,
    source: Mutex<Option<mpsc::Sender<Result<Bytes, io::Error>>>>,
    failed: Arc<Notify>,
}

#[async_trait::async_trait]
impl Middleware for FailSourceBeforeRetry {
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        if self.attempts.fetch_add(1, Ordering::SeqCst) == 1 {
            let source = self.source.lock().unwrap().take();
            if let Some(source) = source {
                let _ = source.send(Err(io::Error::other("source broke"))).await;
                tokio::time::timeout(ms(1000), self.failed.notified())
                    .await
                    .expect("the first attempt's body read the failure");
            }
        }
        next.run(req, extensions).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_source_failing_after_an_early_503_never_sends_a_truncated_body_as_complete() {
    let server = EarlyRejectServer::start().await;
    let (tx, rx) = mpsc::channel::<Result<Bytes, io::Error>>(16);
    let failed = Arc::new(Notify::new());
    // The source: whatever the test sends, telling `failed` when it hands out an error.
    let signal = Arc::clone(&failed);
    let source = futures_util::stream::unfold(rx, move |mut rx| {
        let signal = Arc::clone(&signal);
        async move {
            let item = rx.recv().await?;
            if item.is_err() {
                signal.notify_one();
            }
            Some((item, rx))
        }
    });
    for i in 0..8u8 {
        tx.send(Ok(Bytes::from(vec![b'a' + i; 1024])))
            .await
            .unwrap();
    }
    let hook = FailSourceBeforeRetry {
        attempts: AtomicUsize::new(0),
        source: Mutex::new(Some(tx)),
        failed,
    };
    let inner = reqwest::Client::builder().no_proxy().build().unwrap();
    let client = ClientBuilder::new(inner)
        .with(support::unbudgeted(policy()))
        .with(hook)
        .build();

    let result = tokio::time::timeout(
        ms(2000),
        client
            .post(server.url())
            .body(reqwest::Body::wrap_stream(source))
            .send(),
    )
    .await
    .expect("finished in time");

    // The retry's copy, behind the failed source, ends with an error rather than a clean
    // end after the prefix; the retry fails with it, and nothing is retried after that.
    match &result {
        Ok(resp) => panic!(
            "a {} for a body whose source failed (a 200: the server took the prefix as \
             the whole body)",
            resp.status()
        ),
        Err(e) => assert!(
            caused_by(e, ReplayError::SourceFailed),
            "the error names the failed source: {e:?}"
        ),
    }
    // Let the server see the end of every connection the client opened.
    server
        .wait_for(ms(1000), |l| l.ended == l.accepted && l.first_closed)
        .await;
    let log = server.log();
    assert!(log.rejected);
    for upload in &log.uploads {
        assert!(
            matches!(upload, Upload::Cut(_)),
            "the server saw a complete request from a failed source: {upload:?}"
        );
    }
}

// ===== tower layer over hyper-util's client =====

type UploadStream = Pin<Box<dyn Stream<Item = Result<Frame<Bytes>, io::Error>> + Send>>;
type UploadBody = ReplayBody<StreamBody<UploadStream>>;

#[cfg(feature = "tower")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tower_early_503_on_a_slow_upload_retries_it_whole_and_closes_the_first_connection() {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let server = EarlyRejectServer::start().await;
    let client = Client::builder(TokioExecutor::new()).build_http::<UploadBody>();
    let client = ServiceBuilder::new()
        .layer(support::unbudgeted(policy()))
        .service(client);
    let (upload, all) = slow_upload();
    let upload: UploadStream = Box::pin(upload.map(|chunk| chunk.map(Frame::data)));
    let req = Request::builder()
        .method(Method::POST)
        .uri(server.url())
        .body(ReplayBody::new(StreamBody::new(upload), 64 * 1024))
        .unwrap();

    let resp = tokio::time::timeout(ms(2000), client.oneshot(req))
        .await
        .expect("the retried upload finished in time")
        .expect("a response");

    assert_eq!(resp.status(), StatusCode::OK);
    let log = server.log();
    assert!(log.rejected);
    assert_eq!(
        log.uploads,
        vec![Upload::Complete(all)],
        "the retry sent the whole body"
    );
    assert_first_connection_closed(&server).await;
}

// ===== a body that outgrows its recording while the retry waits =====

/// 256 KiB in 16 KiB chunks, one every 10 ms: less than the 64 KiB recording has gone when
/// the early 503 arrives, all of it 160 ms later, while the retry waits.
fn large_upload() -> impl Stream<Item = Result<Bytes, io::Error>> + Send + 'static {
    futures_util::stream::iter(0..16).then(|_| async {
        tokio::time::sleep(ms(10)).await;
        Ok(Bytes::from(vec![b'x'; 16 * 1024]))
    })
}

/// The retry waits long enough for the abandoned first attempt to send more than the
/// 64 KiB recording holds.
fn patient() -> RetryPolicy {
    RetryPolicy::builder()
        .base_delay(ms(300))
        .max_delay(ms(300))
        .jitter(Jitter::None)
        .build()
}

/// What the caller must get: the early 503 itself, not an error from a retry that could
/// not send its body.
fn assert_the_503_came_back(status: StatusCode, info: telecho_retry::RetryInfo) {
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(info.attempts(), 1);
    assert_eq!(
        info.stop_reason(),
        Some(telecho_retry::StopReason::NotReplayable)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_an_early_503_is_returned_when_the_body_outgrows_the_recording_during_the_wait() {
    let server = EarlyRejectServer::start().await;
    let client = client(patient());
    let resp = tokio::time::timeout(
        ms(2000),
        client
            .post(server.url())
            .body(reqwest::Body::wrap_stream(large_upload()))
            .send(),
    )
    .await
    .expect("in time")
    .expect("the 503, not an error");
    let info = telecho_retry::RetryInfo::of(resp.extensions());
    assert_the_503_came_back(resp.status(), info);
    assert!(server.log().uploads.is_empty(), "no retry was sent");
}

#[cfg(feature = "tower")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tower_an_early_503_is_returned_when_the_body_outgrows_the_recording_during_the_wait() {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let server = EarlyRejectServer::start().await;
    let client = Client::builder(TokioExecutor::new()).build_http::<UploadBody>();
    let client = ServiceBuilder::new()
        .layer(support::unbudgeted(patient()))
        .service(client);
    let upload: UploadStream = Box::pin(large_upload().map(|chunk| chunk.map(Frame::data)));
    let req = Request::builder()
        .method(Method::POST)
        .uri(server.url())
        .body(ReplayBody::new(StreamBody::new(upload), 64 * 1024))
        .unwrap();
    let resp = tokio::time::timeout(ms(2000), client.oneshot(req))
        .await
        .expect("in time")
        .expect("the 503, not an error");
    let info = telecho_retry::RetryInfo::of(resp.extensions());
    assert_the_503_came_back(resp.status(), info);
    assert!(server.log().uploads.is_empty(), "no retry was sent");
}
