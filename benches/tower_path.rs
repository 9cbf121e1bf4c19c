//! The tower success path: one `service_fn` answering 200, called bare, through
//! `tower::retry::Retry` with a minimal policy that clones the request, through the same
//! with tower's retry budget (`TpsBudget::default()`, the budget our default has too), and
//! through `TelEchoRetry::default()`. Each is called in two patterns: one instance reused
//! for every call (`poll_ready` + `call`), and one service built once and cloned per call,
//! `svc.clone().oneshot(request)`, as handlers that share a client do.
//!
//! Run with `cargo bench -p telecho-retry-bench --bench tower_path`. Before the timings it
//! prints heap allocations and bytes allocated per call for each, counted by a global
//! allocator wrapper (`stats_alloc`; it adds one relaxed atomic update per allocation to
//! every variant).
//!
//! The request is what a TelEcho client sends: `POST` with a URI, eight headers (one of them
//! `Authorization`) and a 1 KiB JSON body, built fresh for every call the way a client
//! builds it (the body a `Vec` turned into `Bytes`, header values from `String`s), outside
//! the timed region.
//!
//! Group `observability` times our first-try success with nothing installed, with a
//! `tracing` subscriber (the registry and a `fmt` layer at `INFO` writing to a sink), with a
//! `metrics` recorder (`metrics-util`'s debugging recorder, installed for this thread), and
//! with both. Run it with `--features metrics`, or the recorder has nothing to record.
//!
//! Instruction counts: `TOWER_PATH_CALLS=N TOWER_PATH_VARIANT=V` (`V` one of `bare`,
//! `ours`, `ours+subscriber`, `ours+recorder`, `ours+both`) makes the binary send `N`
//! requests through that variant and exit; run it under
//! `valgrind --tool=callgrind` for two values of `N` and divide the difference of the totals
//! by the difference of the `N`s.

use std::alloc::System;
use std::fmt::Debug;
use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BatchSize, BenchmarkGroup, Criterion};
use http::{Response, StatusCode};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use telecho_retry::{RetryPolicy, TelEchoRetry};
use tower::retry::Retry;
use tower::{Layer, Service, ServiceExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer as _;

mod common;

use common::{
    call_now, copy_request, inner, paired_rounds, request, BudgetPolicy, MinimalPolicy, Req,
};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// How a benchmark calls a service.
#[derive(Clone, Copy, PartialEq)]
enum Pattern {
    /// One instance for every call: `poll_ready`, then `call`.
    Reused,
    /// Built once, cloned for every call: `svc.clone().oneshot(request)`.
    CloneOneshot,
}

/// Sends `req` through `svc` in `pattern`.
async fn send<S>(svc: &mut S, pattern: Pattern, req: Req) -> S::Response
where
    S: Service<Req> + Clone,
    S::Error: Debug,
{
    match pattern {
        Pattern::Reused => call_now(svc, req).await.unwrap(),
        Pattern::CloneOneshot => svc.clone().oneshot(req).await.unwrap(),
    }
}

/// Allocations and bytes per call, over `n` calls in `pattern` (requests built before
/// counting starts, responses dropped inside the counted region).
fn count<S, B>(rt: &tokio::runtime::Runtime, mut svc: S, pattern: Pattern, n: usize) -> (f64, f64)
where
    S: Service<Req, Response = Response<B>> + Clone,
    S::Error: Debug,
{
    let requests: Vec<Req> = (0..n).map(request).collect();
    rt.block_on(async {
        // Warm up: lazily initialized thread locals and the like are not per-call costs.
        let resp = send(&mut svc, pattern, request(0)).await;
        drop(resp);
        let region = Region::new(GLOBAL);
        for req in requests {
            let resp = send(&mut svc, pattern, req).await;
            assert_eq!(resp.status(), StatusCode::OK);
            drop(resp);
        }
        let s = region.change();
        (
            (s.allocations + s.reallocations) as f64 / n as f64,
            s.bytes_allocated as f64 / n as f64,
        )
    })
}

/// Allocations and bytes of `f`, per call, over `n` calls.
fn count_fn(n: usize, mut f: impl FnMut(&Req)) -> (f64, f64) {
    let requests: Vec<Req> = (0..n).map(request).collect();
    let region = Region::new(GLOBAL);
    for req in &requests {
        f(req);
    }
    let s = region.change();
    (
        (s.allocations + s.reallocations) as f64 / n as f64,
        s.bytes_allocated as f64 / n as f64,
    )
}

/// A `tracing` subscriber as a service would run one: the registry with a `fmt` layer at
/// `INFO` (to a sink: the cost of formatting, not of writing).
fn subscriber() -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::registry().with(
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::sink)
            .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
    )
}

/// Runs `f` with what `variant` installs: a subscriber, a recorder, both or neither.
fn with_installed<T>(variant: &str, f: impl FnOnce() -> T) -> T {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let _subscriber = variant
        .contains("subscriber")
        .then(|| tracing::subscriber::set_default(subscriber()));
    if variant.contains("recorder") {
        metrics::with_local_recorder(&recorder, f)
    } else {
        f()
    }
}

/// `TOWER_PATH_CALLS=N TOWER_PATH_VARIANT=V`: `N` calls through `V`, for an instruction
/// count under valgrind (see the module docs).
fn calls_only(rt: &tokio::runtime::Runtime, n: usize, variant: &str) {
    let requests: Vec<Req> = (0..n).map(request).collect();
    let (installed, variant) = match variant {
        "ours+both" => ("subscriber recorder", "ours"),
        "ours+subscriber" => ("subscriber", "ours"),
        "ours+recorder" => ("recorder", "ours"),
        other => ("", other),
    };
    with_installed(installed, || {
        rt.block_on(async {
            match variant {
                "bare" => {
                    let mut svc = inner();
                    for req in requests {
                        drop(call_now(&mut svc, req).await.unwrap());
                    }
                }
                "ours" => {
                    let mut svc = TelEchoRetry::default().layer(inner());
                    for req in requests {
                        drop(call_now(&mut svc, req).await.unwrap());
                    }
                }
                other => panic!("unknown TOWER_PATH_VARIANT {other:?}"),
            }
        })
    });
}

fn allocation_table(rt: &tokio::runtime::Runtime) {
    const N: usize = 10_000;
    let ours = || TelEchoRetry::default().layer(inner());
    let mut rows = Vec::new();
    for (pattern, suffix) in [
        (Pattern::Reused, ""),
        (Pattern::CloneOneshot, ", clone + oneshot"),
    ] {
        rows.extend([
            (format!("bare{suffix}"), count(rt, inner(), pattern, N)),
            (
                format!("tower::retry{suffix}"),
                count(
                    rt,
                    Retry::new(MinimalPolicy { left: 5 }, inner()),
                    pattern,
                    N,
                ),
            ),
            (
                format!("tower::retry + TpsBudget{suffix}"),
                count(rt, Retry::new(BudgetPolicy::new(), inner()), pattern, N),
            ),
            (
                format!("telecho-retry{suffix}"),
                count(rt, ours(), pattern, N),
            ),
        ]);
    }
    let reused = Pattern::Reused;
    rows.extend([
        (
            "telecho-retry, subscriber".to_string(),
            with_installed("subscriber", || count(rt, ours(), reused, N)),
        ),
        (
            "telecho-retry, recorder".to_string(),
            with_installed("recorder", || count(rt, ours(), reused, N)),
        ),
        (
            "telecho-retry, subscriber + recorder".to_string(),
            with_installed("subscriber recorder", || count(rt, ours(), reused, N)),
        ),
    ]);
    println!("\nheap allocations per call (tower success path, {N} calls each)");
    println!("{:<40} {:>12} {:>14}", "variant", "allocations", "bytes");
    for (name, (allocs, bytes)) in rows {
        println!("{name:<40} {allocs:>12.2} {bytes:>14.1}");
    }
    // For scale: what a request copy costs, and what attaching a `RetryInfo` costs (done
    // only after a retry or a failure, not on a first-try success).
    let copy = count_fn(N, |req| drop(black_box(copy_request(req))));
    println!(
        "{:<40} {:>12.2} {:>14.1}",
        "  for scale: one request copy", copy.0, copy.1
    );
    let info = count_fn(N, |_| {
        let mut ext = http::Extensions::new();
        ext.insert(black_box(7u64));
        drop(black_box(ext));
    });
    println!(
        "{:<40} {:>12.2} {:>14.1}",
        "  for scale: one Extensions::insert", info.0, info.1
    );
    println!();
}

fn success_path(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let mut g = c.benchmark_group("tower success path");
    let mut idx = 0usize;
    let mut next_request = move || {
        idx = idx.wrapping_add(1);
        request(idx)
    };
    let next = &mut next_request;
    both_patterns(&mut g, rt, "bare", inner(), next);
    let tower_retry = Retry::new(MinimalPolicy { left: 5 }, inner());
    both_patterns(&mut g, rt, "tower::retry", tower_retry, next);
    let budgeted = Retry::new(BudgetPolicy::new(), inner());
    both_patterns(&mut g, rt, "tower::retry + TpsBudget", budgeted, next);
    let ours = TelEchoRetry::default().layer(inner());
    both_patterns(&mut g, rt, "telecho-retry", ours, next);
    g.finish();
}

/// Times `svc` as `name` reused for every call, and as `"{name}, clone + oneshot"` cloned
/// for every call.
fn both_patterns<S>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    rt: &tokio::runtime::Runtime,
    name: &str,
    mut svc: S,
    next_request: &mut impl FnMut() -> Req,
) where
    S: Service<Req> + Clone,
    S::Error: Debug,
{
    g.bench_function(name, |b| {
        b.to_async(rt).iter_batched(
            &mut *next_request,
            |req| call_now(&mut svc, req),
            BatchSize::SmallInput,
        )
    });
    g.bench_function(format!("{name}, clone + oneshot"), |b| {
        b.to_async(rt).iter_batched(
            &mut *next_request,
            |req| svc.clone().oneshot(req),
            BatchSize::SmallInput,
        )
    });
}

/// Tasks and calls per task of the two-thread benchmarks.
const TASKS: usize = 8;
const CALLS: usize = 250;

/// A runtime with two worker threads.
fn two_worker_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// `iters` times: `TASKS` tasks (each with its own clone of `svc`, as a server's handlers
/// would) make `CALLS` calls each on the two-thread runtime `rt`; the time for all of them,
/// requests built outside it.
fn run_two_threads<S>(rt: &tokio::runtime::Runtime, svc: &S, iters: u64) -> Duration
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Debug,
{
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let requests: Vec<Vec<Req>> = (0..TASKS)
            .map(|t| (0..CALLS).map(|i| request(t * CALLS + i)).collect())
            .collect();
        let start = std::time::Instant::now();
        rt.block_on(async {
            let tasks: Vec<_> = requests
                .into_iter()
                .map(|reqs| {
                    let mut svc = svc.clone();
                    tokio::spawn(async move {
                        for req in reqs {
                            black_box(call_now(&mut svc, req).await.unwrap());
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        });
        total += start.elapsed();
    }
    total
}

/// Two worker threads calling one shared service, `TASKS` tasks of `CALLS` calls each: the
/// time for all of them. Shared state that threads fight over (reference counts, the
/// budget's counter) shows here.
fn two_threads(c: &mut Criterion) {
    let rt = two_worker_runtime();
    let mut g = c.benchmark_group("tower success path, 2 threads, 2000 calls");
    g.throughput(criterion::Throughput::Elements((TASKS * CALLS) as u64));
    let retry = Retry::new(MinimalPolicy { left: 5 }, inner());
    g.bench_function("tower::retry", |b| {
        b.iter_custom(|iters| run_two_threads(&rt, &retry, iters))
    });
    let budgeted = Retry::new(BudgetPolicy::new(), inner());
    g.bench_function("tower::retry + TpsBudget", |b| {
        b.iter_custom(|iters| run_two_threads(&rt, &budgeted, iters))
    });
    let ours = TelEchoRetry::default().layer(inner());
    g.bench_function("telecho-retry", |b| {
        b.iter_custom(|iters| run_two_threads(&rt, &ours, iters))
    });
    g.finish();
}

/// The two-thread comparison in paired rounds, against `tower::retry` without and with
/// `TpsBudget`: each round times a batch of both variants, one right after the other (their
/// order alternating), so that both see the same machine; the medians over the rounds, and
/// the median of the rounds' throughput ratios. On a shared machine whose speed drifts
/// within seconds this is steadier than criterion's groups, which time one variant for
/// seconds and then the other.
fn two_threads_paired() {
    let rt = two_worker_runtime();
    let ours = TelEchoRetry::default().layer(inner());
    let retry = Retry::new(MinimalPolicy { left: 5 }, inner());
    paired_against(&rt, "tower::retry", &retry, &ours);
    let budgeted = Retry::new(BudgetPolicy::new(), inner());
    paired_against(&rt, "tower::retry + TpsBudget", &budgeted, &ours);
}

/// [`two_threads_paired`] for one peer, `theirs` (named `name`).
fn paired_against<S, T>(rt: &tokio::runtime::Runtime, name: &str, theirs: &S, ours: &T)
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Debug,
    T: Service<Req> + Clone + Send + 'static,
    T::Future: Send,
    T::Error: Debug,
{
    const ROUNDS: usize = 41;
    const BATCH: u64 = 20;
    let p = paired_rounds(
        ROUNDS,
        || run_two_threads(rt, theirs, BATCH) / BATCH as u32,
        || run_two_threads(rt, ours, BATCH) / BATCH as u32,
    );
    // Throughput ours / theirs is time theirs / time ours: the ratios' reciprocals.
    let throughput = |q: f64| 1.0 / p.ratio_at(1.0 - q);
    println!(
        "two worker threads, {TASKS} tasks x {CALLS} calls, {ROUNDS} paired rounds of {BATCH}"
    );
    println!(
        "{:<34} {:>12}",
        format!("{name} (median)"),
        format!("{:.3?}", p.a)
    );
    println!(
        "{:<34} {:>12}",
        "telecho-retry (median)",
        format!("{:.3?}", p.b)
    );
    println!(
        "{:<34} {:>12.3}   (rounds: min {:.3}, quartiles {:.3} / {:.3}, max {:.3})",
        "throughput ratio, median",
        throughput(0.5),
        throughput(0.0),
        throughput(0.25),
        throughput(0.75),
        throughput(1.0),
    );
    println!();
}

/// Our first-try success with a subscriber, a recorder, both or neither installed.
fn observability(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    if !cfg!(feature = "metrics") {
        eprintln!("note: built without feature `metrics`: the recorder records nothing");
    }
    let mut g = c.benchmark_group("observability, first-try success");
    let mut idx = 0usize;
    let mut next_request = move || {
        idx = idx.wrapping_add(1);
        request(idx)
    };
    for variant in [
        "nothing installed",
        "subscriber",
        "recorder",
        "subscriber + recorder",
    ] {
        let mut ours = TelEchoRetry::default().layer(inner());
        with_installed(variant, || {
            g.bench_function(variant, |b| {
                b.to_async(rt).iter_batched(
                    &mut next_request,
                    |req| call_now(&mut ours, req),
                    BatchSize::SmallInput,
                )
            });
        });
    }
    g.finish();
}

/// Pieces of our call path that `tower::retry` does not have, timed one by one (the
/// `RetryInfo` insert happens only when a request was retried or failed).
fn parts(c: &mut Criterion) {
    let policy = RetryPolicy::default();
    let mut g = c.benchmark_group("telecho-retry success path, by part");
    let ok = Response::new(());
    g.bench_function("classify(200)", |b| {
        b.iter(|| policy.classify(black_box(ok.status()), black_box(ok.headers())))
    });
    let req = request(1);
    g.bench_function("is_idempotent(POST)", |b| {
        b.iter(|| policy.is_idempotent(black_box(req.method()), black_box(req.headers())))
    });
    g.finish();
}

/// The size of each variant's response future: what every in-flight call moves around.
fn future_sizes() {
    fn size_of_future<S: Service<Req>>(_: &S) -> usize {
        std::mem::size_of::<S::Future>()
    }
    /// What `svc.clone().oneshot(request)` returns: the clone, then its future.
    fn size_of_oneshot<S: Service<Req>>(_: &S) -> usize {
        std::mem::size_of::<tower::util::Oneshot<S, Req>>()
    }
    println!("response future size (bytes)");
    println!("{:<34} {:>6}", "bare", size_of_future(&inner()));
    println!(
        "{:<34} {:>6}",
        "tower::retry",
        size_of_future(&Retry::new(MinimalPolicy { left: 5 }, inner()))
    );
    println!(
        "{:<34} {:>6}",
        "tower::retry + TpsBudget",
        size_of_future(&Retry::new(BudgetPolicy::new(), inner()))
    );
    println!(
        "{:<34} {:>6}",
        "telecho-retry",
        size_of_future(&TelEchoRetry::default().layer(inner()))
    );
    println!(
        "{:<34} {:>6}",
        "telecho-retry, clone + oneshot",
        size_of_oneshot(&TelEchoRetry::default().layer(inner()))
    );
    println!(
        "{:<34} {:>6}",
        "  for scale: the request",
        std::mem::size_of::<Req>()
    );
    println!();
}

fn main() {
    let rt = runtime();
    if let Ok(n) = std::env::var("TOWER_PATH_CALLS") {
        let n = n.parse().expect("TOWER_PATH_CALLS: a number");
        let variant = std::env::var("TOWER_PATH_VARIANT").unwrap_or_else(|_| "ours".into());
        calls_only(&rt, n, &variant);
        return;
    }
    future_sizes();
    if std::env::var_os("TOWER_PATH_SIZES_ONLY").is_some() {
        return;
    }
    two_threads_paired();
    if std::env::var_os("TOWER_PATH_PAIRED_ONLY").is_some() {
        return;
    }
    allocation_table(&rt);
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    success_path(&mut c, &rt);
    two_threads(&mut c);
    observability(&mut c, &rt);
    parts(&mut c);
    c.final_summary();
}
