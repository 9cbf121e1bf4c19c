//! The fault matrix's harness (`fleet_faults`): a fleet of 4 replicas (4 `Limits` of one
//! scope) with closed-loop tasks offering twice the limit's load to one in-process server
//! that admits 40 requests per fixed 1 s window and answers the rest 429; a fault injected
//! after a while; and what it cost: requests lost or past their deadline, the worst 1 s
//! windows, and how long the fleet took to be back on Redis.
#![cfg(all(feature = "redis", feature = "tower"))]

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use telecho_retry::limits::{Limits, Pacing, RedisLimitsBuilder};
use telecho_retry::{RetryErrorKind, RetryPolicy, TelEchoRetry};
use tokio::time::Instant;
use tower::{service_fn, ServiceBuilder, ServiceExt};

use crate::fleet_redis::{get, Scope};

/// The server's limit: admitted requests per fixed 1 s window.
pub(crate) const LIMIT: usize = 40;
pub(crate) const REPLICAS: usize = 4;
/// Closed-loop tasks per replica.
const TASKS: usize = 4;
/// Every request's deadline (`RetryPolicy::deadline`).
pub(crate) const DEADLINE: Duration = Duration::from_secs(5);
/// A request that ends later than its deadline plus this is past its deadline.
pub(crate) const TOLERANCE: Duration = Duration::from_millis(100);
/// A request that has not ended this long after its deadline did not end: lost.
const GRACE: Duration = Duration::from_secs(2);
/// Load before the fault, and after it ends.
const BEFORE: Duration = Duration::from_secs(3);
const AFTER: Duration = Duration::from_secs(3);
/// How long the fleet may take to be back on Redis after the fault before it counts as
/// not back.
const BACK_WITHIN: Duration = Duration::from_secs(15);

/// The fleet's limits: fixed pacing 2 % under the server's limit, or the crate's default
/// (adaptive pacing, learned from the 429s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Paced,
    Default,
}

impl Mode {
    /// The builder's settings for this mode on `scope` (the rest is the crate's default:
    /// retry budget, call timeout 50 ms, fallback share).
    pub(crate) fn builder(self, scope: &Scope, url: &str) -> RedisLimitsBuilder {
        self.limits()
            .redis(url, &scope.scope)
            .key_prefix(&scope.prefix)
    }

    pub(crate) fn limits(self) -> telecho_retry::limits::LimitsBuilder {
        match self {
            Mode::Paced => {
                Limits::builder().pacing(Pacing::new(LIMIT as u32, Duration::from_millis(1020)))
            }
            Mode::Default => Limits::builder(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Paced => "paced 40/1.02 s",
            Mode::Default => "default (adaptive)",
        }
    }
}

// ===== the server =====

/// Admits `LIMIT` requests per fixed 1 s window counted from its start; answers the rest
/// `429` with `Retry-After` to the window's end (whole seconds, rounded up). Logs every
/// attempt: when, and whether it was admitted.
struct Server {
    start: Instant,
    state: Mutex<(u64, usize)>,
    log: Mutex<Vec<(Instant, bool)>>,
}

impl Server {
    fn new() -> Self {
        Server {
            start: Instant::now(),
            state: Mutex::new((0, 0)),
            log: Mutex::new(Vec::new()),
        }
    }

    fn answer(&self) -> Response<Full<Bytes>> {
        let now = Instant::now();
        let since = now.duration_since(self.start);
        let window = since.as_secs();
        let admitted = {
            let mut state = self.state.lock().unwrap();
            if state.0 != window {
                *state = (window, 0);
            }
            state.1 += 1;
            state.1 <= LIMIT
        };
        self.log.lock().unwrap().push((now, admitted));
        if admitted {
            return Response::new(Full::new(Bytes::new()));
        }
        let left = Duration::from_secs(window + 1) - since;
        let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        Response::builder()
            .status(429)
            .header("retry-after", secs.to_string())
            .body(Full::new(Bytes::new()))
            .unwrap()
    }
}

/// A replica: the tower layer with `limits` and a 5 s deadline over a `service_fn` that
/// asks `server`, and answers 5 ms later.
fn replica(
    limits: &Limits,
    server: &Arc<Server>,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<telecho_retry::body::ResponseBody<Full<Bytes>>>,
    Error = telecho_retry::RetryError,
    Future = impl Send,
> + Clone {
    let server = Arc::clone(server);
    let inner = service_fn(move |_req: Request<Full<Bytes>>| {
        let response = server.answer();
        async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok::<_, Infallible>(response)
        }
    });
    let policy = RetryPolicy::builder().deadline(DEADLINE).build();
    ServiceBuilder::new()
        .layer(TelEchoRetry::new(policy).with_limits(limits.clone()))
        .service(inner)
}

// ===== the load =====

/// How a request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ending {
    Ok,
    /// The server's 429, handed back (retries spent, or the next wait past the deadline).
    Throttled,
    /// `RetryErrorKind::Deadline` or `RateLimited`: refused by the policy.
    Refused,
    /// Anything else, or not ended `GRACE` after its deadline.
    Lost(String),
}

struct Record {
    start: Instant,
    took: Duration,
    ending: Ending,
    /// Attempts sent and time slept (backoff, cooldown, pacing), when known.
    info: Option<telecho_retry::RetryInfo>,
}

/// One closed-loop task: a request, and the next one no sooner than `period` after the
/// last one started, until `stop`.
async fn task<S>(svc: S, period: Duration, offset: Duration, stop: Arc<AtomicBool>) -> Vec<Record>
where
    S: tower::Service<
            Request<Full<Bytes>>,
            Response = Response<telecho_retry::body::ResponseBody<Full<Bytes>>>,
            Error = telecho_retry::RetryError,
        > + Clone,
{
    let mut records = Vec::new();
    let mut next = Instant::now() + offset;
    loop {
        tokio::time::sleep_until(next).await;
        if stop.load(Ordering::Relaxed) {
            return records;
        }
        let start = Instant::now();
        next = start + period;
        let ended = tokio::time::timeout(DEADLINE + GRACE, svc.clone().oneshot(get())).await;
        let info = match &ended {
            Ok(Ok(resp)) => Some(telecho_retry::RetryInfo::of(resp.extensions())),
            Ok(Err(e)) => Some(e.info()),
            Err(_) => None,
        };
        let ending = match ended {
            Err(_) => Ending::Lost("did not end".to_owned()),
            Ok(Ok(resp)) if resp.status() == 200 => Ending::Ok,
            Ok(Ok(resp)) if resp.status() == 429 => Ending::Throttled,
            Ok(Ok(resp)) => Ending::Lost(format!("status {}", resp.status())),
            Ok(Err(e)) => match e.kind() {
                RetryErrorKind::Deadline | RetryErrorKind::RateLimited => Ending::Refused,
                _ => Ending::Lost(e.to_string()),
            },
        };
        records.push(Record {
            start,
            took: start.elapsed(),
            ending,
            info,
        });
    }
}

// ===== back on Redis =====

/// Numbers the origins of the cooldowns relayed, each one fresh.
static RELAYS: AtomicUsize = AtomicUsize::new(0);

/// Whether a cooldown met by `fleet[0]` on a fresh origin reaches every other replica
/// within 500 ms.
async fn relays(fleet: &[Limits]) -> bool {
    let n = RELAYS.fetch_add(1, Ordering::Relaxed);
    let origin = format!("http://relay-{n}.example/");
    let policy = RetryPolicy::builder()
        .max_retries(0)
        .retry_after_spread(Duration::ZERO)
        .build();
    let limited = service_fn(|_req: Request<Full<Bytes>>| async {
        let resp = Response::builder()
            .status(429)
            .header("retry-after", "2")
            .body(Full::new(Bytes::new()))
            .unwrap();
        Ok::<_, Infallible>(resp)
    });
    let svc = ServiceBuilder::new()
        .layer(TelEchoRetry::new(policy).with_limits(fleet[0].clone()))
        .service(limited);
    let request = Request::get(&origin).body(Full::new(Bytes::new())).unwrap();
    match tokio::time::timeout(Duration::from_secs(1), svc.oneshot(request)).await {
        Ok(Ok(resp)) if resp.status() == 429 => {}
        _ => return false,
    }
    let uri: http::Uri = origin.parse().unwrap();
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until {
        if fleet[1..]
            .iter()
            .all(|l| l.cooldown_remaining(&uri).is_some())
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

/// How long after `from` every replica was reachable (`Limits::is_reachable`) and then a
/// fresh cooldown relayed: `(reachable, back)`, `None` if not within `within`.
async fn back_on_redis(
    fleet: &[Limits],
    from: Instant,
    within: Duration,
) -> (Option<Duration>, Option<Duration>) {
    let mut reachable = None;
    while from.elapsed() < within {
        if fleet.iter().all(Limits::is_reachable) {
            reachable.get_or_insert(from.elapsed());
            if relays(fleet).await {
                return (reachable, Some(from.elapsed()));
            }
        } else {
            reachable = None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (reachable, None)
}

// ===== a run =====

/// One fault's row of the table.
pub(crate) struct Row {
    pub(crate) fault: String,
    pub(crate) mode: Mode,
    requests: usize,
    ok: usize,
    throttled: usize,
    refused: usize,
    pub(crate) lost: usize,
    pub(crate) past_deadline: usize,
    slowest: Duration,
    /// The slowest request (when it started, from the fault's start; its attempts and
    /// time slept), and when the server answered 429 (from the fault's start).
    pub(crate) detail: String,
    /// The most admitted within 1 s, before the fault (from 1 s after the start).
    worst_before: usize,
    /// The same from the fault's start on, and when that window began (from the fault's
    /// start).
    worst_from: usize,
    worst_at: Duration,
    /// The most attempts the server saw within 1 s, from the fault's start on.
    worst_sent: usize,
    served_during: f64,
    server_429s: usize,
    fallbacks: u64,
    during: Duration,
    reachable: Option<Duration>,
    back: Option<Duration>,
    pub(crate) lost_detail: Vec<String>,
}

/// Runs the fleet `fleet` (built by the caller, not yet loaded) under load: `BEFORE`, then
/// `fault` (which injects the fault, and returns when it ends), then `AFTER`. Waits first
/// until the fleet is on Redis (a cooldown relays), within `ready_within`.
pub(crate) async fn run(
    fault: &str,
    mode: Mode,
    fleet: Vec<Limits>,
    ready_within: Duration,
    inject: impl Future<Output = ()>,
) -> Row {
    assert_eq!(fleet.len(), REPLICAS);
    let ready = back_on_redis(&fleet, Instant::now(), ready_within).await;
    assert!(
        ready.1.is_some(),
        "{fault}: the fleet is not on Redis at first"
    );
    let fallbacks_before: u64 = fleet.iter().map(Limits::fallbacks).sum();
    let server = Arc::new(Server::new());
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = REPLICAS * TASKS;
    // Twice the limit's rate, offered by all the tasks together.
    let period = Duration::from_secs_f64(tasks as f64 / (2.0 * LIMIT as f64));
    let mut load = Vec::new();
    for (r, limits) in fleet.iter().enumerate() {
        let svc = replica(limits, &server);
        for t in 0..TASKS {
            let offset = period * (r * TASKS + t) as u32 / tasks as u32;
            let stop = Arc::clone(&stop);
            load.push(tokio::spawn(task(svc.clone(), period, offset, stop)));
        }
    }
    tokio::time::sleep(BEFORE).await;
    let fault_start = Instant::now();
    inject.await;
    let fault_end = Instant::now();
    let stop_load = async {
        tokio::time::sleep(AFTER).await;
        stop.store(true, Ordering::Relaxed);
    };
    let ((reachable, back), ()) =
        tokio::join!(back_on_redis(&fleet, fault_end, BACK_WITHIN), stop_load);
    let mut records = Vec::new();
    for t in load {
        records.extend(t.await.unwrap());
    }
    let log = server.log.lock().unwrap().clone();
    let during = fault_end - fault_start;
    let admitted_during = log
        .iter()
        .filter(|(at, ok)| *ok && *at >= fault_start && *at < fault_end)
        .count();
    let count = |e: &Ending| records.iter().filter(|r| r.ending == *e).count();
    let lost_detail: Vec<String> = records
        .iter()
        .filter_map(|r| match &r.ending {
            Ending::Lost(why) => Some(format!(
                "{:.2} s in: {why}",
                r.start.duration_since(server.start).as_secs_f64()
            )),
            _ => None,
        })
        .collect();
    // From the fault's start, in seconds (negative: before it).
    let since = |at: Instant| {
        at.saturating_duration_since(fault_start).as_secs_f64()
            - fault_start.saturating_duration_since(at).as_secs_f64()
    };
    let warm = server.start + Duration::from_secs(1);
    let times = |from: Instant, to: Instant, admitted_only: bool| -> Vec<Instant> {
        log.iter()
            .filter(|(at, ok)| *at >= from && *at < to && (*ok || !admitted_only))
            .map(|(at, _)| *at)
            .collect()
    };
    let end = Instant::now();
    let before = worst_window(&times(warm, fault_start, true));
    let from = worst_window(&times(fault_start, end, true));
    let sent = worst_window(&times(fault_start, end, false));
    Row {
        fault: fault.to_owned(),
        mode,
        requests: records.len(),
        ok: count(&Ending::Ok),
        throttled: count(&Ending::Throttled),
        refused: count(&Ending::Refused),
        lost: lost_detail.len(),
        past_deadline: records
            .iter()
            .filter(|r| r.took > DEADLINE + TOLERANCE)
            .count(),
        slowest: records.iter().map(|r| r.took).max().unwrap_or_default(),
        detail: records
            .iter()
            .max_by_key(|r| r.took)
            .map(|r| {
                let at = since(r.start);
                let info = r.info.map_or("-".to_owned(), |i| {
                    format!(
                        "{} attempts, slept {:.2} s",
                        i.attempts(),
                        i.slept().as_secs_f64()
                    )
                });
                let throttled: Vec<f64> = log
                    .iter()
                    .filter(|(_, ok)| !ok)
                    .map(|(at, _)| since(*at))
                    .collect();
                format!(
                    "slowest {:.2} s, started at {at:+.2} s, {info}; 429s at {throttled:.2?} s",
                    r.took.as_secs_f64()
                )
            })
            .unwrap_or_default(),
        worst_before: before.0,
        worst_from: from.0,
        worst_at: from.1.map_or(Duration::ZERO, |at| at - fault_start),
        worst_sent: sent.0,
        served_during: admitted_during as f64 / (LIMIT as f64 * during.as_secs_f64()),
        server_429s: log.iter().filter(|(_, ok)| !ok).count(),
        fallbacks: fleet.iter().map(Limits::fallbacks).sum::<u64>() - fallbacks_before,
        during,
        reachable,
        back,
        lost_detail,
    }
}

/// The most of `times` (in order) within any 1 s, and the first of them.
fn worst_window(times: &[Instant]) -> (usize, Option<Instant>) {
    let mut worst = (0, None);
    let mut from = 0;
    for (i, t) in times.iter().enumerate() {
        while t.duration_since(times[from]) >= Duration::from_secs(1) {
            from += 1;
        }
        if i + 1 - from > worst.0 {
            worst = (i + 1 - from, Some(times[from]));
        }
    }
    worst
}

/// The table, in Markdown.
pub(crate) fn table(rows: &[Row]) -> String {
    let secs = |d: Option<Duration>| {
        d.map_or("not back".to_owned(), |d| {
            format!("{:.2} s", d.as_secs_f64())
        })
    };
    let mut out = String::from(
        "| fault | limits | fault lasted | requests | ok / 429 / refused | lost | past deadline | slowest | worst 1 s admitted / quota: before the fault | from the fault on | that window began | worst 1 s sent / quota, from the fault on | 429s at the server | served during the fault / quota | fallbacks | all reachable after | back on Redis after |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {:.2} s | {} | {} / {} / {} | {} | {} | {:.2} s | {:.2} | {:.2} | +{:.2} s | {:.2} | {} | {:.2} | {} | {} | {} |\n",
            r.fault,
            r.mode.name(),
            r.during.as_secs_f64(),
            r.requests,
            r.ok,
            r.throttled,
            r.refused,
            r.lost,
            r.past_deadline,
            r.slowest.as_secs_f64(),
            r.worst_before as f64 / LIMIT as f64,
            r.worst_from as f64 / LIMIT as f64,
            r.worst_at.as_secs_f64(),
            r.worst_sent as f64 / LIMIT as f64,
            r.server_429s,
            r.served_during,
            r.fallbacks,
            secs(r.reachable),
            secs(r.back),
        ));
    }
    out
}
