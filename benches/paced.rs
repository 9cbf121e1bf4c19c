//! The cost a paced request adds on loopback Redis: a `GET` through `TelEchoRetry` over a
//! `tower::service_fn` answering 200, with no limits store (in-process limits, no pacing)
//! and with `Limits` pacing at a rate no request waits for (1,000,000 per second),
//! so that what is timed is the engine plus one round trip of the pacing script.
//!
//! Run with `cargo bench -p telecho-retry-bench --features redis --bench paced` with a
//! Redis at `REDIS_URL` (default `redis://127.0.0.1:6379`). Keys go under a prefix of their
//! own and are left to expire.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use criterion::Criterion;
use http::{Request, Response};
use http_body_util::Full;
use telecho_retry::limits::{Limits, Pacing};
use telecho_retry::TelEchoRetry;
use tower::{service_fn, Layer, ServiceExt};

fn request() -> Request<Full<Bytes>> {
    Request::get("http://api.example/v1/agents")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn paced(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let inner = service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    });
    let pacing = Pacing::new(1_000_000, Duration::from_secs(1)).burst(1_000);
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let scope = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let limits = rt.block_on(async {
        Limits::builder()
            .pacing(pacing)
            .redis(url, scope)
            .key_prefix("telecho-retry-bench")
            .build()
            .expect("Redis limits")
    });
    let plain = TelEchoRetry::default().layer(inner);
    // The same pacing kept in process (governor): what pacing costs without a round trip.
    let local = TelEchoRetry::default()
        .with_limits(Limits::builder().pacing(pacing).build())
        .layer(inner);
    let redis = TelEchoRetry::default().with_limits(limits).layer(inner);
    // One request first, so that the script is loaded and the connection is up.
    rt.block_on(redis.clone().oneshot(request())).unwrap();

    let mut group = c.benchmark_group("paced");
    group.bench_function("no store", |b| {
        b.to_async(&rt).iter(|| plain.clone().oneshot(request()))
    });
    group.bench_function("in-process pacing", |b| {
        b.to_async(&rt).iter(|| local.clone().oneshot(request()))
    });
    group.bench_function("redis pacing (loopback)", |b| {
        b.to_async(&rt).iter(|| redis.clone().oneshot(request()))
    });
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    paced(&mut c);
    c.final_summary();
}
