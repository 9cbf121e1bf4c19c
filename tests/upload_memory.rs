//! The streaming-replay memory target: a 10 MiB streaming upload through the middleware,
//! with the default replay buffer (64 KiB), holds at most 128 KiB more heap at its peak than
//! the same upload through plain reqwest.
//!
//! Heap bytes are counted by a counting global allocator (`stats_alloc`), which keeps
//! totals, not a peak: the peak is sampled at every chunk the upload's stream hands out and
//! at every frame the server receives, which is where a recording grows or is dropped.
//! Client and server share one current-thread runtime, so every allocation counted is the
//! upload's (the server's included, the same for both variants).
#![cfg(feature = "reqwest")]

use std::alloc::System;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};
use telecho_retry::TelEchoRetry;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The variants share the process-wide counters: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const UPLOAD: usize = 10 * 1024 * 1024;
const CHUNK: usize = 16 * 1024;
const ALLOWED_ABOVE_PLAIN: isize = 128 * 1024;

/// Bytes held at the start of the measured upload, and the most held since.
static BASE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

/// Heap bytes allocated and not yet freed, process-wide.
fn held() -> isize {
    let s = GLOBAL.stats();
    s.bytes_allocated as isize - s.bytes_deallocated as isize
}

fn sample() {
    PEAK.fetch_max(held() - BASE.load(Ordering::SeqCst), Ordering::SeqCst);
}

/// A server that reads each request's body frame by frame (sampling the heap at every
/// frame) and answers 200 with the number of bytes it got.
async fn start_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = service_fn(|req: Request<Incoming>| async move {
                    let mut body = req.into_body();
                    let mut got = 0;
                    while let Some(frame) = body.frame().await {
                        if let Ok(data) = frame?.into_data() {
                            got += data.len();
                        }
                        sample();
                    }
                    Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from(got.to_string()))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// A 10 MiB body as a stream of 16 KiB chunks, each allocated when it is asked for.
fn streaming_body() -> reqwest::Body {
    let chunks = futures_util::stream::iter((0..UPLOAD / CHUNK).map(|i| {
        sample();
        Ok::<_, Infallible>(Bytes::from(vec![b'a' + (i % 26) as u8; CHUNK]))
    }));
    reqwest::Body::wrap_stream(chunks)
}

/// The peak heap above the start of one 10 MiB upload, sent by `send` (after a small
/// request on the same connection, so that pools and buffers exist before the count).
async fn peak_of<F, Fut>(send: F) -> isize
where
    F: Fn(reqwest::Body) -> Fut,
    Fut: std::future::Future<Output = String>,
{
    assert_eq!(send(reqwest::Body::from("warm")).await, "4");
    BASE.store(held(), Ordering::SeqCst);
    PEAK.store(0, Ordering::SeqCst);
    assert_eq!(send(streaming_body()).await, UPLOAD.to_string());
    PEAK.load(Ordering::SeqCst)
}

#[test]
fn a_10_mib_streaming_upload_through_the_middleware_peaks_near_plain_reqwest() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let addr = start_server().await;
        let url = format!("http://{addr}/v1/uploads");

        let plain = reqwest::Client::new();
        let plain_peak = peak_of(|body| {
            let req = plain.post(&url).body(body);
            async move { req.send().await.unwrap().text().await.unwrap() }
        })
        .await;

        let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(TelEchoRetry::default())
            .build();
        let ours_peak = peak_of(|body| {
            let req = client.post(&url).body(body);
            async move { req.send().await.unwrap().text().await.unwrap() }
        })
        .await;

        let above = ours_peak - plain_peak;
        println!(
            "10 MiB streaming upload, peak heap above the start: plain reqwest {plain_peak} B, \
             through the middleware {ours_peak} B, {above} B above"
        );
        assert!(
            above <= ALLOWED_ABOVE_PLAIN,
            "the middleware's upload peaked {above} bytes above plain reqwest's \
             ({ours_peak} against {plain_peak})"
        );
    });
}
