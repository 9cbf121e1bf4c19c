//! The reqwest success path against a hyper server on loopback: plain `reqwest`, an empty
//! `reqwest-middleware` client, `reqwest-retry`'s default middleware, and `TelEchoRetry`.
//!
//! Run with `cargo bench -p telecho-retry-bench --bench reqwest_path`. The server runs on
//! `127.0.0.1:0`, on the client's current-thread runtime, and answers every request with 200
//! and a small JSON body after reading the request body. Each iteration sends one `POST` with five headers of its own and
//! a 1 KiB body over a kept-alive connection and reads the whole response. Before the
//! timings it prints heap allocations per request (a `stats_alloc` global allocator).

use std::alloc::System;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use criterion::Criterion;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use reqwest_retry::policies::ExponentialBackoff;
use reqwest_retry::RetryTransientMiddleware;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use telecho_retry::TelEchoRetry;

mod common;

use common::{paired_rounds, Paired};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Heap allocations and bytes per request (client and server together: the server's share
/// is the same for every variant), over `n` requests after a warm-up.
fn count<F: Future<Output = ()>>(
    rt: &tokio::runtime::Runtime,
    n: usize,
    mut send: impl FnMut() -> F,
) -> (f64, f64) {
    rt.block_on(async {
        for _ in 0..100 {
            send().await;
        }
        let region = Region::new(GLOBAL);
        for _ in 0..n {
            send().await;
        }
        let s = region.change();
        (
            (s.allocations + s.reallocations) as f64 / n as f64,
            s.bytes_allocated as f64 / n as f64,
        )
    })
}

/// Starts the server as tasks of `rt`; returns its address. It lives as long as `rt`.
///
/// Client and server share one current-thread runtime: no cross-thread wake-ups, so the
/// timings measure the CPU cost of a request (client and server) and vary little between
/// runs on a busy machine.
fn start_server(rt: &tokio::runtime::Runtime) -> SocketAddr {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = service_fn(|req: Request<Incoming>| async move {
                    let body = req.into_body().collect().await?.to_bytes();
                    assert_eq!(body.len(), 1024);
                    let resp = Response::builder()
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from_static(b"{\"id\":\"call_123\"}")))
                        .unwrap();
                    Ok::<_, hyper::Error>(resp)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

fn body() -> Bytes {
    let mut body = Vec::with_capacity(1024);
    body.extend_from_slice(b"{\"to\":\"+15551234567\",\"from\":\"+15557654321\",\"note\":\"");
    while body.len() < 1022 {
        body.push(b'a' + (body.len() % 26) as u8);
    }
    body.extend_from_slice(b"\"}");
    Bytes::from(body)
}

const TOKEN: &str = "Bearer tk_live_5eed5eed5eed5eed5eed5eed5eed5eed";

async fn send_plain(client: &reqwest::Client, url: &str, body: Bytes) {
    let resp = client
        .post(url)
        .header("authorization", TOKEN)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header("user-agent", "telecho-client/0.1.0")
        .header("x-request-id", "7f9c2ba4-e88f-11ee-a506-0242ac120002")
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let _ = resp.bytes().await.unwrap();
}

async fn send_mw(client: &ClientWithMiddleware, url: &str, body: Bytes) {
    let resp = client
        .post(url)
        .header("authorization", TOKEN)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header("user-agent", "telecho-client/0.1.0")
        .header("x-request-id", "7f9c2ba4-e88f-11ee-a506-0242ac120002")
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let _ = resp.bytes().await.unwrap();
}

/// Rounds and requests per variant and round of the paired comparison.
const ROUNDS: usize = 61;
const BATCH: u32 = 200;

/// [`paired_rounds`] of `BATCH` requests through `a` and through `b`: times per request.
fn paired(
    rt: &tokio::runtime::Runtime,
    a: &ClientWithMiddleware,
    b: &ClientWithMiddleware,
    url: &str,
    body: &Bytes,
) -> Paired {
    let batch = |client: &ClientWithMiddleware| {
        rt.block_on(async {
            let start = std::time::Instant::now();
            for _ in 0..BATCH {
                send_mw(client, url, body.clone()).await;
            }
            start.elapsed() / BATCH
        })
    };
    paired_rounds(ROUNDS, || batch(a), || batch(b))
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr = start_server(&rt);
    let url = format!("http://{addr}/v1/calls");
    let body = body();

    let plain = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .build()
        .unwrap();
    let empty = ClientBuilder::new(plain.clone()).build();
    let reqwest_retry = ClientBuilder::new(plain.clone())
        .with(RetryTransientMiddleware::new_with_policy(
            ExponentialBackoff::builder().build_with_max_retries(5),
        ))
        .build();
    let ours = ClientBuilder::new(plain.clone())
        .with(TelEchoRetry::default())
        .build();
    // `REQWEST_PATH_CALLS=N REQWEST_PATH_VARIANT=V` (`V`: `reqwest`, `reqwest-retry` or
    // `telecho-retry`): only `N` requests through `V`, for an instruction count under
    // `valgrind --tool=callgrind`. Per request: the difference between two counts (say
    // `N` = 2000 and 1000) over their difference in `N`, which leaves out the start-up.
    if let Ok(n) = std::env::var("REQWEST_PATH_CALLS") {
        let n: usize = n.parse().expect("REQWEST_PATH_CALLS: a number");
        let variant =
            std::env::var("REQWEST_PATH_VARIANT").unwrap_or_else(|_| "telecho-retry".into());
        rt.block_on(async {
            for _ in 0..n {
                match variant.as_str() {
                    "reqwest" => send_plain(&plain, &url, body.clone()).await,
                    "reqwest-retry" => send_mw(&reqwest_retry, &url, body.clone()).await,
                    "telecho-retry" => send_mw(&ours, &url, body.clone()).await,
                    other => panic!("unknown REQWEST_PATH_VARIANT {other:?}"),
                }
            }
        });
        return;
    }

    const N: usize = 2_000;
    let (u, b) = (url.as_str(), &body);
    let rows = [
        (
            "reqwest",
            count(&rt, N, || send_plain(&plain, u, b.clone())),
        ),
        (
            "reqwest-middleware (empty)",
            count(&rt, N, || send_mw(&empty, u, b.clone())),
        ),
        (
            "reqwest-retry",
            count(&rt, N, || send_mw(&reqwest_retry, u, b.clone())),
        ),
        (
            "telecho-retry",
            count(&rt, N, || send_mw(&ours, u, b.clone())),
        ),
    ];
    println!("\nheap allocations per request (client + server, {N} requests each)");
    println!("{:<34} {:>12} {:>14}", "variant", "allocations", "bytes");
    for (name, (allocs, bytes)) in rows {
        println!("{name:<34} {allocs:>12.2} {bytes:>14.1}");
    }
    println!();

    // Paired rounds: criterion times one variant for seconds, then the next, and on a
    // shared machine the speed drifts between them; here each round sends a batch through
    // both, back to back, in alternating order. The A/A row (reqwest-retry against a second,
    // identical reqwest-retry client) shows how far two equal variants land apart.
    let reqwest_retry_2 = ClientBuilder::new(plain.clone())
        .with(RetryTransientMiddleware::new_with_policy(
            ExponentialBackoff::builder().build_with_max_retries(5),
        ))
        .build();
    println!("paired rounds ({ROUNDS} rounds of {BATCH} requests per variant, order alternating)");
    println!(
        "{:<34} {:>12} {:>12} {:>10}   rounds' B / A: quartiles",
        "pair (A / B)", "A median", "B median", "B / A"
    );
    let pairs = [
        (
            "reqwest-retry / reqwest-retry",
            paired(&rt, &reqwest_retry, &reqwest_retry_2, url.as_str(), &body),
        ),
        (
            "reqwest-retry / telecho-retry",
            paired(&rt, &reqwest_retry, &ours, url.as_str(), &body),
        ),
    ];
    for (name, p) in pairs {
        println!(
            "{name:<34} {:>12} {:>12} {:>10.4}   {:.4} / {:.4}",
            format!("{:.2?}", p.a),
            format!("{:.2?}", p.b),
            p.ratio_at(0.5),
            p.ratio_at(0.25),
            p.ratio_at(0.75)
        );
    }
    println!();

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut g = c.benchmark_group("reqwest success path");
    let (url, body) = (url.as_str(), &body);
    g.bench_function("reqwest", |b| {
        b.to_async(&rt)
            .iter(|| send_plain(&plain, url, body.clone()))
    });
    g.bench_function("reqwest-middleware (empty)", |b| {
        b.to_async(&rt).iter(|| send_mw(&empty, url, body.clone()))
    });
    g.bench_function("reqwest-retry", |b| {
        b.to_async(&rt)
            .iter(|| send_mw(&reqwest_retry, url, body.clone()))
    });
    g.bench_function("telecho-retry", |b| {
        b.to_async(&rt).iter(|| send_mw(&ours, url, body.clone()))
    });
    g.finish();
    c.final_summary();
}
