//! HTTP/2 "not processed" errors are retried for any method, and a `tower::timeout`
//! `TimeoutLayer` under the retry layer is a timeout.
//!
//! The HTTP/2 servers are real, on `127.0.0.1:0`, spoken to in cleartext with prior
//! knowledge (h2c): one resets the first stream with `REFUSED_STREAM` and answers 200 to
//! the next; one answers the first request of its first connection with
//! `GOAWAY(last_stream_id = 0, NO_ERROR)`, so the in-flight request is above the last stream
//! id the server will process, and answers 200 on the next connection. In both, a `POST`
//! without an idempotency key (which a reset or a timeout would never resend) is resent
//! once and succeeds: the server says it did not act on the first one. Both the tower layer
//! (over hyper-util's client) and the reqwest middleware are tested; reqwest's own retries
//! of these errors are switched off (`retry::never()`), so what retries is this crate.
//!
//! The timeout tests use no sockets and tokio's paused clock.
#![cfg(feature = "tower")]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use telecho_retry::{Jitter, RetryInfo, RetryPolicy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tower::timeout::TimeoutLayer;
use tower::{service_fn, BoxError, ServiceBuilder, ServiceExt};

const BODY: &[u8] = b"{\"agent_id\":\"tel_agent_1\",\"to\":\"+15550100\"}";

fn policy() -> RetryPolicy {
    RetryPolicy::builder()
        .base_delay(Duration::from_millis(10))
        .max_delay(Duration::from_millis(50))
        .jitter(Jitter::None)
        .build()
}

// ===== an h2c server that refuses or goes away =====

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NotProcessed {
    /// The first stream (over all connections) is reset with `REFUSED_STREAM`.
    RefusedStream,
    /// The first connection answers the first request's HEADERS with
    /// `GOAWAY(last_stream_id = 0, NO_ERROR)` and processes nothing.
    GoAway,
}

#[derive(Default)]
struct Log {
    connections: AtomicUsize,
    /// Requests the server did not process (refused, or above the GOAWAY's last id).
    not_processed: AtomicUsize,
    /// Requests processed and answered 200: method and body.
    processed: Mutex<Vec<(Method, Bytes)>>,
}

struct H2Server {
    addr: SocketAddr,
    log: Arc<Log>,
    task: JoinHandle<()>,
}

impl H2Server {
    async fn start(how: NotProcessed) -> H2Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Log::default());
        let refuse_next = Arc::new(AtomicBool::new(how == NotProcessed::RefusedStream));
        let server_log = Arc::clone(&log);
        let task = tokio::spawn(async move {
            // Owned here, so aborting the accept loop also ends every connection.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let n = server_log.connections.fetch_add(1, Ordering::SeqCst);
                let log = Arc::clone(&server_log);
                let refuse_next = Arc::clone(&refuse_next);
                connections.spawn(async move {
                    if how == NotProcessed::GoAway && n == 0 {
                        go_away_before_processing(stream, &log).await;
                    } else {
                        serve(stream, log, refuse_next).await;
                    }
                });
                while connections.try_join_next().is_some() {}
            }
        });
        H2Server { addr, log, task }
    }

    fn url(&self) -> String {
        format!("http://{}/v1/calls", self.addr)
    }

    fn connections(&self) -> usize {
        self.log.connections.load(Ordering::SeqCst)
    }

    fn not_processed(&self) -> usize {
        self.log.not_processed.load(Ordering::SeqCst)
    }

    fn processed(&self) -> Vec<(Method, Bytes)> {
        self.log.processed.lock().unwrap().clone()
    }
}

impl Drop for H2Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An h2 server connection (the `h2` crate's): answers each request 200 after reading its
/// body, except that it resets one stream with `REFUSED_STREAM` while `refuse_next` is set.
async fn serve(stream: TcpStream, log: Arc<Log>, refuse_next: Arc<AtomicBool>) {
    let Ok(mut conn) = h2::server::handshake(stream).await else {
        return;
    };
    let mut streams = JoinSet::new();
    while let Some(Ok((req, mut respond))) = conn.accept().await {
        if refuse_next.swap(false, Ordering::SeqCst) {
            log.not_processed.fetch_add(1, Ordering::SeqCst);
            respond.send_reset(h2::Reason::REFUSED_STREAM);
            continue;
        }
        let log = Arc::clone(&log);
        // The connection must keep being polled (by `accept`) while a stream is handled.
        streams.spawn(async move {
            let (parts, mut body) = req.into_parts();
            let mut read = BytesMut::new();
            while let Some(chunk) = body.data().await {
                let Ok(chunk) = chunk else { return };
                let _ = body.flow_control().release_capacity(chunk.len());
                read.extend_from_slice(&chunk);
            }
            log.processed
                .lock()
                .unwrap()
                .push((parts.method, read.freeze()));
            let response = Response::builder().status(200).body(()).unwrap();
            if let Ok(mut send) = respond.send_response(response, false) {
                let _ = send.send_data(Bytes::from_static(b"{\"id\":\"tel_call_1\"}"), true);
            }
        });
    }
    while streams.join_next().await.is_some() {}
}

/// Speaks just enough HTTP/2 by hand to send what the `h2` crate's server cannot be made
/// to send: a `GOAWAY` whose last stream id (0) is below a request it has received. It
/// reads the client preface, sends its SETTINGS, acknowledges the client's, and on the
/// first HEADERS frame sends `GOAWAY(0, NO_ERROR)`; then it reads until the client closes
/// (so that no unread bytes turn the close into a reset).
async fn go_away_before_processing(mut stream: TcpStream, log: &Log) {
    const SETTINGS: u8 = 0x4;
    const HEADERS: u8 = 0x1;
    const GOAWAY: u8 = 0x7;
    const ACK: u8 = 0x1;

    fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = BytesMut::with_capacity(9 + payload.len());
        f.put_uint(payload.len() as u64, 3);
        f.put_u8(kind);
        f.put_u8(flags);
        f.put_u32(stream_id);
        f.put_slice(payload);
        f.to_vec()
    }

    let mut preface = [0u8; 24];
    if stream.read_exact(&mut preface).await.is_err() {
        return;
    }
    assert_eq!(&preface, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    if stream.write_all(&frame(SETTINGS, 0, 0, &[])).await.is_err() {
        return;
    }
    loop {
        let mut head = [0u8; 9];
        if stream.read_exact(&mut head).await.is_err() {
            return;
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let mut payload = vec![0u8; len];
        if stream.read_exact(&mut payload).await.is_err() {
            return;
        }
        if kind == SETTINGS && flags & ACK == 0 {
            let _ = stream.write_all(&frame(SETTINGS, ACK, 0, &[])).await;
        }
        if kind == HEADERS {
            log.not_processed.fetch_add(1, Ordering::SeqCst);
            // last_stream_id = 0, error code = NO_ERROR (0).
            let _ = stream.write_all(&frame(GOAWAY, 0, 0, &[0; 8])).await;
            break;
        }
    }
    let mut sink = [0u8; 1024];
    while let Ok(n) = stream.read(&mut sink).await {
        if n == 0 {
            break;
        }
    }
}

// ===== (a) the tower layer over hyper-util's client, h2c =====

async fn post_through_the_tower_layer(server: &H2Server) {
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let client = ServiceBuilder::new()
        .layer(crate::support::unbudgeted(policy()))
        .service(client);
    let req = Request::builder()
        .method(Method::POST)
        .uri(server.url())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(BODY)))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), client.oneshot(req))
        .await
        .expect("finished in time")
        .expect("a response after one retry");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(RetryInfo::of(resp.extensions()).attempts(), 2);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, Bytes::from_static(b"{\"id\":\"tel_call_1\"}"));
}

#[tokio::test]
async fn tower_post_refused_stream_is_retried_once_and_succeeds() {
    let server = H2Server::start(NotProcessed::RefusedStream).await;
    post_through_the_tower_layer(&server).await;
    assert_eq!(server.not_processed(), 1);
    assert_eq!(
        server.processed(),
        vec![(Method::POST, Bytes::from_static(BODY))],
        "processed once, with its body"
    );
    assert_eq!(server.connections(), 1, "the retry reused the connection");
}

#[tokio::test]
async fn tower_post_above_the_goaway_last_stream_id_is_retried_once_and_succeeds() {
    let server = H2Server::start(NotProcessed::GoAway).await;
    post_through_the_tower_layer(&server).await;
    assert_eq!(server.not_processed(), 1);
    assert_eq!(
        server.processed(),
        vec![(Method::POST, Bytes::from_static(BODY))]
    );
    assert_eq!(
        server.connections(),
        2,
        "the retry went to a new connection"
    );
}

// ===== (b) the reqwest middleware, h2c =====

#[cfg(feature = "reqwest")]
async fn post_through_the_middleware(server: &H2Server) {
    let inner = reqwest::Client::builder()
        .http2_prior_knowledge()
        .no_proxy()
        // reqwest 0.13 retries these two errors itself by default: off, to test ours.
        .retry(reqwest::retry::never())
        .build()
        .unwrap();
    let client = reqwest_middleware::ClientBuilder::new(inner)
        .with(crate::support::unbudgeted(policy()))
        .build();
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        client
            .post(server.url())
            .header("content-type", "application/json")
            .body(BODY)
            .send(),
    )
    .await
    .expect("finished in time")
    .expect("a response after one retry");
    assert_eq!(resp.status(), StatusCode::OK);
    let info = *resp.extensions().get::<RetryInfo>().expect("RetryInfo");
    assert_eq!(info.attempts(), 2);
    assert_eq!(resp.text().await.unwrap(), "{\"id\":\"tel_call_1\"}");
}

#[cfg(feature = "reqwest")]
#[tokio::test]
async fn reqwest_post_refused_stream_is_retried_once_and_succeeds() {
    let server = H2Server::start(NotProcessed::RefusedStream).await;
    post_through_the_middleware(&server).await;
    assert_eq!(server.not_processed(), 1);
    assert_eq!(
        server.processed(),
        vec![(Method::POST, Bytes::from_static(BODY))]
    );
}

#[cfg(feature = "reqwest")]
#[tokio::test]
async fn reqwest_post_above_the_goaway_last_stream_id_is_retried_once_and_succeeds() {
    let server = H2Server::start(NotProcessed::GoAway).await;
    post_through_the_middleware(&server).await;
    assert_eq!(server.not_processed(), 1);
    assert_eq!(
        server.processed(),
        vec![(Method::POST, Bytes::from_static(BODY))]
    );
    assert_eq!(server.connections(), 2);
}

// ===== a tower TimeoutLayer under the retry layer =====

/// The retry layer over a `TimeoutLayer` (1 s) over a service whose first call never
/// answers; the service is called how many times?
async fn first_call_hangs(method: Method) -> (bool, usize) {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let svc = ServiceBuilder::new()
        .layer(crate::support::unbudgeted(policy()))
        .layer(TimeoutLayer::new(Duration::from_secs(1)))
        .service(service_fn(move |_req: Request<Full<Bytes>>| {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    std::future::pending::<()>().await;
                }
                Ok::<_, BoxError>(Response::new(Full::new(Bytes::from_static(b"ok"))))
            }
        }));
    let req = Request::builder()
        .method(method)
        .uri("http://api.telecho.test/v1/calls")
        .body(Full::new(Bytes::from_static(BODY)))
        .unwrap();
    let started = tokio::time::Instant::now();
    let result = svc.oneshot(req).await;
    let ok = match &result {
        Ok(resp) => {
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(RetryInfo::of(resp.extensions()).attempts(), 2);
            // The timeout, then the first backoff delay (10 ms, no jitter).
            assert_eq!(started.elapsed(), Duration::from_millis(1010));
            true
        }
        Err(_) => {
            assert_eq!(started.elapsed(), Duration::from_secs(1));
            false
        }
    };
    (ok, calls.load(Ordering::SeqCst))
}

#[tokio::test(start_paused = true)]
async fn timeout_layer_elapsed_get_is_retried() {
    assert_eq!(first_call_hangs(Method::GET).await, (true, 2));
}

#[tokio::test(start_paused = true)]
async fn timeout_layer_elapsed_post_without_idempotency_key_is_not_retried() {
    assert_eq!(first_call_hangs(Method::POST).await, (false, 1));
}
