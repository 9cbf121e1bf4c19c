//! Retry-storm simulation: N clients start at the same instant against a server that admits
//! at most `C` requests per second, and retry by one strategy or another.
//!
//! ```text
//! cargo run --release --example storm            # N = 10, 100, 1000; writes docs/storm.svg
//! cargo run --example storm -- --quick           # N = 10, 100; no file written (CI)
//! ```
//!
//! Time is simulated: each run is a current-thread tokio runtime started with its clock
//! paused, whose clock jumps to the next timer whenever every task is waiting, so nothing
//! sleeps in real time. Its resolution is tokio's timer's, one millisecond, as for every
//! user of the crate. Each of our clients is the crate's real tower layer,
//! `ServiceBuilder::new().layer(TelEchoRetry::new(policy).with_limits(..)).service(server)`,
//! of a real (seeded) [`RetryPolicy`], so every delay is exactly the one the layer sleeps.
//! Every client is on its own ([`Limits`] of its own, without a retry budget or a shared
//! 429 cooldown), as N separate processes would be. The N clients are N tasks, all started
//! at `t = 0`.
//!
//! The server is a `tower::service_fn` that counts admitted requests in fixed one-second
//! windows (`[k s, k+1 s)`) of the paused clock. A request arriving when the window's `C`
//! slots are taken is rejected at once, in one of two scenarios, both run:
//!
//! - **429**: `429 Too Many Requests` with `Retry-After: <seconds until the next window>`
//!   (delta-seconds, rounded up, so always `1` with one-second windows);
//! - **503**: `503 Service Unavailable` without `Retry-After`.
//!
//! Answers take no time and rejected requests cost the server nothing, so the numbers are
//! about the schedule alone. Strategies (all allow 5 retries, 6 attempts):
//!
//! - `ours/<jitter>`: `RetryPolicy::builder().jitter(..)` with every other setting at its
//!   default (base 1 s, max 30 s, `retry_after_spread` 500 ms). Under **503** the wait is
//!   the jittered backoff delay; under **429** it is `Retry-After` plus up to 500 ms, or this
//!   retry's jittered backoff delay if that is longer (`Retry-After` as a floor under the
//!   backoff schedule). Under 429 only the default jitter is run.
//! - `Retry-After exact (no backoff floor)` (429 only): NOT the crate's schedule. A client
//!   written in this example, against the same server on the same clock, waits the parsed
//!   `Retry-After` plus a uniform share of 500 ms at every retry, with no backoff under it.
//!   It is what the crate did before `Retry-After` became a floor, kept for comparison.
//! - `reqwest-retry`: a client written in this example that does what `reqwest-retry` 0.9's
//!   default middleware (`ExponentialBackoff::builder().build_with_max_retries(5)`,
//!   retry-policies 0.5) does: it ignores `Retry-After`, and waits
//!   `min(1 s * 2^n, 30 min) * U[0, 1)` before retry `n + 1`, on 429 and 5xx alike.
//!
//! Measured: requests sent per success (amplification), clients that gave up, latency to
//! success (median and 99th percentile, over the clients that succeeded), the time until
//! every client succeeded, and the peak of retry arrivals in any one-second span (first
//! attempts excluded: they are the same `N` at `t = 0` for every strategy). The full run
//! repeats N = 1000 over 20 seeds, and draws `docs/storm.svg`.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::RETRY_AFTER;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::Empty;
use telecho_retry::classify::parse_retry_after;
use telecho_retry::limits::Limits;
use telecho_retry::{Jitter, RetryInfo, RetryPolicy, StopReason, TelEchoRetry};
use tokio::time::Instant;
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};

/// Server capacity: admitted requests per one-second window.
const CAPACITY: u32 = 50;
/// The seed of every policy and of the reqwest-retry-like clients.
const SEED: u64 = 0x5707_2026;
/// Retries allowed after the first attempt, for every strategy.
const MAX_RETRIES: u32 = 5;
/// The default `retry_after_spread`, also used by the exact-`Retry-After` comparison.
const SPREAD: Duration = Duration::from_millis(500);
const SECOND: u64 = 1_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    /// 429 with `Retry-After: <seconds to the next window>`.
    TooMany,
    /// 503 without `Retry-After`.
    Unavailable,
}

impl Scenario {
    fn label(self) -> &'static str {
        match self {
            Scenario::TooMany => "429 + Retry-After (seconds to the next window)",
            Scenario::Unavailable => "503, no Retry-After",
        }
    }
}

#[derive(Clone, Debug)]
enum Strategy {
    /// The crate's schedule: the real tower layer, with a policy of this jitter.
    Ours {
        name: &'static str,
        jitter: Jitter,
    },
    /// NOT the crate's schedule: `Retry-After` + a uniform share of [`SPREAD`] at every
    /// retry, no backoff floor, computed in this example (the crate's behaviour before
    /// `Retry-After` became a floor under the backoff schedule).
    ExactRetryAfter,
    ReqwestRetry,
}

impl Strategy {
    fn name(&self) -> &'static str {
        match self {
            Strategy::Ours { name, .. } => name,
            Strategy::ExactRetryAfter => "Retry-After exact (no backoff floor)",
            Strategy::ReqwestRetry => "reqwest-retry",
        }
    }
}

fn ours(name: &'static str, jitter: Jitter) -> Strategy {
    Strategy::Ours { name, jitter }
}

fn strategies(scenario: Scenario) -> Vec<Strategy> {
    match scenario {
        Scenario::TooMany => vec![
            ours("ours (default)", Jitter::Proportional),
            Strategy::ExactRetryAfter,
            Strategy::ReqwestRetry,
        ],
        Scenario::Unavailable => vec![
            ours("ours/Proportional (default)", Jitter::Proportional),
            ours("ours/None", Jitter::None),
            ours("ours/Full", Jitter::Full),
            ours("ours/Equal", Jitter::Equal),
            ours("ours/Decorrelated", Jitter::Decorrelated),
            Strategy::ReqwestRetry,
        ],
    }
}

// ===== the server =====

/// The header that carries the client's index, so that the server tells retries from first
/// attempts (the layer resends the request as it was).
const CLIENT: HeaderName = HeaderName::from_static("x-storm-client");

type Req = Request<Empty<Bytes>>;
type Resp = Response<Empty<Bytes>>;

/// What the server keeps: its fixed window, and what arrived.
struct Log {
    window: u64,
    admitted: u32,
    /// Per client: attempts that arrived.
    attempts: Vec<u32>,
    /// Every arrival: (time ns, is a retry).
    arrivals: Vec<(u64, bool)>,
}

#[derive(Clone)]
struct Server {
    scenario: Scenario,
    start: Instant,
    log: Arc<Mutex<Log>>,
}

impl Server {
    /// A server for `n` clients, its clock starting now.
    fn new(scenario: Scenario, n: usize) -> Self {
        let start = Instant::now();
        let log = Log {
            window: 0,
            admitted: 0,
            attempts: vec![0; n],
            arrivals: Vec::new(),
        };
        Server {
            scenario,
            start,
            log: Arc::new(Mutex::new(log)),
        }
    }

    /// Nanoseconds on the (paused) clock since the storm began.
    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn answer(&self, request: &Req) -> Resp {
        let client: usize = request.headers()[&CLIENT]
            .to_str()
            .ok()
            .and_then(|c| c.parse().ok())
            .expect("every request names its client");
        let t = self.now();
        let mut log = self.log.lock().unwrap();
        let log = &mut *log;
        log.arrivals.push((t, log.attempts[client] > 0));
        log.attempts[client] += 1;
        if t / SECOND != log.window {
            log.window = t / SECOND;
            log.admitted = 0;
        }
        let mut response = Response::new(Empty::new());
        if log.admitted < CAPACITY {
            log.admitted += 1;
            return response;
        }
        match self.scenario {
            Scenario::TooMany => {
                *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
                let to_next = (log.window + 1) * SECOND - t;
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(to_next.div_ceil(SECOND)));
            }
            Scenario::Unavailable => *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE,
        }
        response
    }

    /// The server as the tower service every client sends to.
    fn service(
        &self,
    ) -> tower::util::ServiceFn<
        impl FnMut(Req) -> std::future::Ready<Result<Resp, Infallible>> + Clone + Send + 'static,
    > {
        let server = self.clone();
        service_fn(move |request: Req| std::future::ready(Ok(server.answer(&request))))
    }
}

fn request(client: usize) -> Req {
    Request::get("http://telecho.test/v1/agents")
        .header(CLIENT, client)
        .body(Empty::new())
        .expect("a valid request")
}

// ===== clients =====

/// One client's result: when it succeeded (ns), or `None` if it gave up; and how many
/// attempts it made, by its own count.
type Outcome = (Option<u64>, u32);

/// One of our clients: the crate's tower layer over the server, with limits of its own (no
/// retry budget or 429 cooldown shared with the other clients).
async fn our_client(policy: RetryPolicy, server: Server, i: usize) -> Outcome {
    let limits = Limits::builder()
        .without_retry_budget()
        .shared_cooldown(false)
        .build();
    let client = ServiceBuilder::new()
        .layer(TelEchoRetry::new(policy).with_limits(limits))
        .service(server.service());
    let response = client
        .oneshot(request(i))
        .await
        .expect("nothing here fails but a response's status");
    let info = RetryInfo::of(response.extensions());
    if response.status().is_success() {
        (Some(server.now()), info.attempts())
    } else {
        assert_eq!(info.stop_reason(), Some(StopReason::MaxRetries));
        (None, info.attempts())
    }
}

/// SplitMix64, for the jitter of the clients that are not ours.
struct SplitMix(u64);

impl SplitMix {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The schedule of a client that is not ours, computed in this example.
enum Theirs {
    ExactRetryAfter { past_retries: u32, rng: SplitMix },
    ReqwestRetry { past_retries: u32, rng: SplitMix },
}

impl Theirs {
    /// The wait before the next attempt after a rejection, or `None` to give up.
    fn rejected(&mut self, headers: &HeaderMap) -> Option<Duration> {
        match self {
            // Not the crate's schedule: exactly what the server said, plus the spread.
            Theirs::ExactRetryAfter { past_retries, rng } => {
                if *past_retries >= MAX_RETRIES {
                    return None;
                }
                let told = headers
                    .get(RETRY_AFTER)
                    .and_then(|v| parse_retry_after(v, std::time::SystemTime::UNIX_EPOCH))
                    .expect("the 429 scenario always sends delta-seconds");
                *past_retries += 1;
                Some(told + SPREAD.mul_f64(rng.next_f64()))
            }
            // retry-policies 0.5 `ExponentialBackoff::should_retry` with the builder's
            // defaults (min 1 s, max 30 min, base 2, `Jitter::Full`), max 5 retries.
            Theirs::ReqwestRetry { past_retries, rng } => {
                if *past_retries >= MAX_RETRIES {
                    return None;
                }
                let unjittered =
                    Duration::from_secs(1 << *past_retries).min(Duration::from_secs(30 * 60));
                *past_retries += 1;
                Some(unjittered.mul_f64(rng.next_f64()))
            }
        }
    }
}

/// A client that is not ours: a loop over the same server, sleeping on the same clock.
async fn their_client(mut schedule: Theirs, server: Server, i: usize) -> Outcome {
    let mut service = server.service();
    let mut attempts = 0;
    loop {
        let Ok(ready) = service.ready().await;
        let Ok(response) = ready.call(request(i)).await;
        attempts += 1;
        if response.status().is_success() {
            return (Some(server.now()), attempts);
        }
        match schedule.rejected(response.headers()) {
            Some(wait) => tokio::time::sleep(wait).await,
            None => return (None, attempts),
        }
    }
}

fn client_rng(seed: u64, i: usize) -> SplitMix {
    SplitMix(seed ^ (i as u64 + 1).wrapping_mul(0xa076_1d64_78bd_642f))
}

// ===== the simulation =====

#[derive(Clone, Debug)]
struct Run {
    clients: usize,
    sent: u64,
    /// Per client: when it succeeded (ns), or `None` if it gave up.
    done: Vec<Option<u64>>,
    /// Every arrival: (time ns, is a retry).
    arrivals: Vec<(u64, bool)>,
}

/// One storm, on a runtime of its own whose clock starts paused at `t = 0`.
fn simulate(scenario: Scenario, strategy: &Strategy, n: usize, seed: u64) -> Run {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a tokio runtime")
        .block_on(storm(scenario, strategy, n, seed))
}

async fn storm(scenario: Scenario, strategy: &Strategy, n: usize, seed: u64) -> Run {
    let server = Server::new(scenario, n);
    // One policy for all clients: each request draws its own jitter stream from the seed
    // and its sequence number, as in one process; the limits are what keeps them apart.
    // Spawned in order, and first polled in that order once this task waits.
    let tasks: Vec<_> = match strategy {
        Strategy::Ours { jitter, .. } => {
            // One policy for every client, as the old per-request state shared it: each
            // request draws its own jitter stream from the seed and its sequence number (the
            // order of its first draw). The policy shares nothing else: the budget and the
            // cooldown live in the limits, each client's own.
            let policy = RetryPolicy::builder()
                .max_retries(MAX_RETRIES)
                .jitter(*jitter)
                .retry_after_spread(SPREAD)
                .seed(seed)
                .build();
            (0..n)
                .map(|i| tokio::spawn(our_client(policy.clone(), server.clone(), i)))
                .collect()
        }
        Strategy::ExactRetryAfter => (0..n)
            .map(|i| {
                let schedule = Theirs::ExactRetryAfter {
                    past_retries: 0,
                    rng: client_rng(seed, i),
                };
                tokio::spawn(their_client(schedule, server.clone(), i))
            })
            .collect(),
        Strategy::ReqwestRetry => (0..n)
            .map(|i| {
                let schedule = Theirs::ReqwestRetry {
                    past_retries: 0,
                    rng: client_rng(seed, i),
                };
                tokio::spawn(their_client(schedule, server.clone(), i))
            })
            .collect(),
    };
    let mut done = Vec::with_capacity(n);
    let mut attempts = Vec::with_capacity(n);
    for task in tasks {
        let (at, made) = task.await.expect("a client task");
        done.push(at);
        attempts.push(made);
    }
    let log = &mut *server.log.lock().unwrap();
    // What each client counted (for ours, its RetryInfo) is what reached the server.
    assert_eq!(attempts, log.attempts);
    let arrivals = std::mem::take(&mut log.arrivals);
    debug_assert!(arrivals.is_sorted(), "the clock never goes back");
    Run {
        clients: n,
        sent: arrivals.len() as u64,
        done,
        arrivals,
    }
}

// ===== metrics =====

struct Metrics {
    sent: u64,
    ok: usize,
    gave_up: usize,
    p50: f64,
    p99: f64,
    /// Time of the last success, and whether every client succeeded.
    last_ok: f64,
    all_ok: bool,
    peak: usize,
}

fn secs(ns: u64) -> f64 {
    ns as f64 / SECOND as f64
}

fn metrics(run: &Run) -> Metrics {
    let mut lat: Vec<u64> = run.done.iter().flatten().copied().collect();
    lat.sort_unstable();
    let pct = |p: f64| {
        if lat.is_empty() {
            f64::NAN
        } else {
            let i = ((p * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1;
            secs(lat[i])
        }
    };
    // Peak retry arrivals in any one-second span [t, t + 1 s).
    let retries: Vec<u64> = run
        .arrivals
        .iter()
        .filter(|(_, r)| *r)
        .map(|(t, _)| *t)
        .collect();
    let (mut peak, mut lo) = (0, 0);
    for hi in 0..retries.len() {
        while retries[hi] - retries[lo] >= SECOND {
            lo += 1;
        }
        peak = peak.max(hi - lo + 1);
    }
    Metrics {
        sent: run.sent,
        ok: lat.len(),
        gave_up: run.clients - lat.len(),
        p50: pct(0.50),
        p99: pct(0.99),
        last_ok: lat.last().map_or(f64::NAN, |t| secs(*t)),
        all_ok: lat.len() == run.clients,
        peak,
    }
}

fn print_table(scenario: Scenario, n: usize, rows: &[(String, Metrics)]) {
    println!(
        "\n{} | N = {n} clients | capacity {CAPACITY}/s",
        scenario.label()
    );
    println!(
        "{:<36} {:>6} {:>6} {:>7} {:>8} {:>8} {:>8} {:>11} {:>12}",
        "strategy",
        "sent",
        "ok",
        "gave up",
        "sent/ok",
        "p50 s",
        "p99 s",
        "all ok at s",
        "peak retry/s"
    );
    for (name, m) in rows {
        let all = if m.all_ok {
            format!("{:.1}", m.last_ok)
        } else {
            "never".to_string()
        };
        println!(
            "{:<36} {:>6} {:>6} {:>7} {:>8.2} {:>8.2} {:>8.2} {:>11} {:>12}",
            name,
            m.sent,
            m.ok,
            m.gave_up,
            m.sent as f64 / m.ok.max(1) as f64,
            m.p50,
            m.p99,
            all,
            m.peak
        );
    }
    if scenario == Scenario::TooMany {
        println!("(Retry-After exact: computed in this example, Retry-After + U[0, 500 ms] at every retry; not the crate's schedule)");
    }
}

// ===== the chart =====

/// Arrivals in each one-second server window `[k s, k+1 s)`, for the first `span` seconds.
fn per_window(run: &Run, span: u64) -> Vec<u32> {
    let mut bins = vec![0u32; span as usize];
    for (t, _) in &run.arrivals {
        if let Some(b) = bins.get_mut((t / SECOND) as usize) {
            *b += 1;
        }
    }
    bins
}

/// One scenario's runs for the chart: (scenario, N, [(strategy, run)]).
type Column = (Scenario, usize, Vec<(String, Run)>);

/// Small multiples: one column per scenario, one panel per strategy, each a polyline of
/// arrivals per one-second window on a log scale, with the capacity as a dashed line.
fn svg(columns: &[Column]) -> String {
    let (pw, ph) = (400.0, 100.0); // plot area of one panel
    let (left, col_gap, top, row_gap) = (50.0, 80.0, 86.0, 52.0);
    let span = 48u64;
    let rows = columns.iter().map(|c| c.2.len()).max().unwrap_or(0);
    let w = left + columns.len() as f64 * (pw + col_gap);
    let h = top + rows as f64 * (ph + row_gap);
    // log10 scale from 1 to 1000 arrivals, 1 lifted off the axis so that 0 sits apart.
    let y_of = |y0: f64, v: u32| {
        let l = if v == 0 {
            0.0
        } else {
            f64::from(v).log10().min(3.0) + 0.3
        };
        y0 + ph - l / 3.3 * ph
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let n = columns.first().map_or(0, |c| c.1);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="22" font-size="15" font-weight="bold">Retry storm: {n} clients at t = 0, a server admitting {CAPACITY} per one-second window</text>"#
    );
    let _ = writeln!(
        s,
        r##"<text x="{left}" y="40" fill="#555">Arrivals per window (all attempts; log scale, 0 on the axis); dashed: capacity. Simulated time; seed {SEED:#x}.</text>"##
    );
    let _ = writeln!(
        s,
        r##"<text x="{left}" y="56" fill="#555">Blue: the crate's schedule (its real tower layer); red: Retry-After exact, computed in the example, not the crate's schedule; grey: reqwest-retry-like.</text>"##
    );
    for (ci, (scenario, _, runs)) in columns.iter().enumerate() {
        let x0 = left + ci as f64 * (pw + col_gap);
        let _ = writeln!(
            s,
            r#"<text x="{x0}" y="{}" font-size="13" font-weight="bold">{}</text>"#,
            top - 14.0,
            scenario.label()
        );
        for (ri, (name, run)) in runs.iter().enumerate() {
            let y0 = top + ri as f64 * (ph + row_gap) + 14.0;
            let m = metrics(run);
            let outcome = if m.all_ok {
                format!("all ok at {:.1} s", m.last_ok)
            } else {
                format!("{} gave up", m.gave_up)
            };
            let _ = writeln!(
                s,
                r#"<text x="{x0}" y="{}"><tspan font-weight="bold">{name}</tspan>: {:.2} sent per success, {outcome}</text>"#,
                y0 - 5.0,
                m.sent as f64 / m.ok.max(1) as f64
            );
            let _ = writeln!(
                s,
                r##"<rect x="{x0}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="#bbb"/>"##
            );
            for (v, label) in [(1, "1"), (10, "10"), (100, "100"), (1000, "1000")] {
                let yy = y_of(y0, v);
                let _ = writeln!(
                    s,
                    r##"<line x1="{x0}" y1="{yy}" x2="{}" y2="{yy}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end" fill="#555">{label}</text>"##,
                    x0 + pw,
                    x0 - 4.0,
                    yy + 4.0
                );
            }
            for t in (0..=span).step_by(8) {
                let xx = x0 + t as f64 / span as f64 * pw;
                let _ = writeln!(
                    s,
                    r##"<text x="{xx}" y="{}" text-anchor="middle" fill="#555">{t} s</text>"##,
                    y0 + ph + 13.0
                );
            }
            let cy = y_of(y0, CAPACITY);
            let _ = writeln!(
                s,
                r#"<line x1="{x0}" y1="{cy}" x2="{}" y2="{cy}" stroke="black" stroke-dasharray="5 4"/>"#,
                x0 + pw
            );
            // A step line: each window's count held across the window.
            let mut pts = Vec::new();
            for (k, v) in per_window(run, span).iter().enumerate() {
                let (xa, xb) = (
                    x0 + k as f64 / span as f64 * pw,
                    x0 + (k + 1) as f64 / span as f64 * pw,
                );
                let yy = y_of(y0, *v);
                pts.push(format!("{xa:.1},{yy:.1} {xb:.1},{yy:.1}"));
            }
            let color = if name.starts_with("reqwest") {
                "#7f7f7f"
            } else if name.starts_with("Retry-After exact") {
                "#d62728"
            } else {
                "#1f77b4"
            };
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{color}" stroke-width="1.6" points="{}"/>"#,
                pts.join(" ")
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

/// The same N = `n` storm over `seeds` seeds: how much of the table above is luck.
fn seed_summary(scenario: Scenario, n: usize, seeds: u64) {
    println!(
        "\n{} | N = {n} | over {seeds} seeds (mean, and min..max of clients that gave up)",
        scenario.label()
    );
    println!(
        "{:<36} {:>8} {:>17} {:>10} {:>8} {:>12} {:>12}",
        "strategy", "sent/ok", "gave up", "all ok in", "p99 s", "all ok at s", "peak retry/s"
    );
    for strategy in strategies(scenario) {
        let ms: Vec<Metrics> = (0..seeds)
            .map(|k| {
                let seed = SEED ^ k.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                metrics(&simulate(scenario, &strategy, n, seed))
            })
            .collect();
        let mean = |f: &dyn Fn(&Metrics) -> f64| ms.iter().map(f).sum::<f64>() / ms.len() as f64;
        let all: Vec<f64> = ms.iter().filter(|m| m.all_ok).map(|m| m.last_ok).collect();
        let all_at = if all.is_empty() {
            "-".to_string()
        } else {
            format!("{:.1}", all.iter().sum::<f64>() / all.len() as f64)
        };
        let gave = |m: &Metrics| m.gave_up;
        println!(
            "{:<36} {:>8.2} {:>17} {:>10} {:>8.2} {:>12} {:>12.0}",
            strategy.name(),
            mean(&|m| m.sent as f64 / m.ok.max(1) as f64),
            format!(
                "{:.1} ({}..{})",
                mean(&|m| m.gave_up as f64),
                ms.iter().map(gave).min().unwrap_or(0),
                ms.iter().map(gave).max().unwrap_or(0)
            ),
            format!("{}/{seeds}", all.len()),
            mean(&|m| m.p99),
            all_at,
            mean(&|m| m.peak as f64),
        );
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let sizes: &[usize] = if quick { &[10, 100] } else { &[10, 100, 1000] };
    println!("retry storm: every client starts at t = 0; up to {MAX_RETRIES} retries each; seed {SEED:#x}");
    let mut panels = Vec::new();
    for scenario in [Scenario::TooMany, Scenario::Unavailable] {
        for &n in sizes {
            let mut rows = Vec::new();
            let mut runs = Vec::new();
            for strategy in strategies(scenario) {
                let run = simulate(scenario, &strategy, n, SEED);
                rows.push((strategy.name().to_string(), metrics(&run)));
                runs.push((strategy.name().to_string(), run));
            }
            print_table(scenario, n, &rows);
            if n == 1000 {
                panels.push((scenario, n, runs));
            }
        }
    }
    if !quick {
        for scenario in [Scenario::TooMany, Scenario::Unavailable] {
            seed_summary(scenario, 1000, 20);
        }
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/storm.svg");
        std::fs::create_dir_all(concat!(env!("CARGO_MANIFEST_DIR"), "/docs")).unwrap();
        std::fs::write(path, svg(&panels)).unwrap();
        println!("\nwrote {path}");
    }
}
