//! The fleet storm, measured with real processes: R replicas of one service share one
//! TelEcho API key, and so one rate limit.
//!
//! ```text
//! cargo run --release --example fleet --features redis                        # full run, < 1 min
//! cargo run --release --example fleet --features redis -- --svg docs/fleet.svg # and the chart
//! cargo run --example fleet --features redis -- --quick                       # CI: fewer requests and runs
//! ```
//!
//! The parent process starts a mock TelEcho server per run on `127.0.0.1:0` that enforces
//! one API key's limit: `L` requests per fixed window of `W` (windows counted from the
//! run's start); past it, `429` with the TelEcho envelope (`rate_limit_error`,
//! `rate_limit_per_minute`) and `Retry-After: <whole seconds to the window's end, rounded
//! up>`. It then starts `R` child processes (this same binary, re-run with `--child`), each
//! sending its share of the run's requests through a `reqwest_middleware` client over
//! loopback, and reporting every request's outcome to the parent on stdout, one line each.
//! The server counts every attempt it sees; the children say when each request ended and
//! how.
//!
//! Workloads: `burst` (every request at `t = 0`) and `steady` (requests at twice the limit's
//! rate, evenly spaced across the fleet, for several windows). Modes:
//!
//! - `per-process`: what a fleet gets today, a `TelEchoRetry` of its own in each child
//!   (retry budget and 429 cooldown per process);
//! - `fleet-cooldown`: the limits kept in Redis (`Limits::builder().redis(..)`): a 429 seen by one child
//!   holds back all of them; no pacing;
//! - `fleet-pacing`: the same, plus client-side pacing 2 % under the server's limit (`L`
//!   per `1.02 W`), kept in Redis so that the fleet as a whole stays under it;
//! - `reqwest-retry`: `reqwest-retry` 0.9's `RetryTransientMiddleware` with its default
//!   `ExponentialBackoff` (it ignores `Retry-After`).
//!
//! Every mode gets the same number of retries ([`MAX_RETRIES`], above the crate's default
//! of 5, so that a client that waits where it should loses nothing); every other setting
//! is its default. `steady-redis-cut` is `fleet-pacing` under the steady workload with
//! Redis cut for about one window mid-run: the children reach Redis through a TCP proxy in
//! the parent, which drops every connection and refuses new ones for that window.
//!
//! Runs go side by side in three groups (each run with its own server, key limit, children
//! and Redis scope), so that the whole example takes under a minute: the storms of the
//! other modes under `burst`, then under `steady`, then the three `fleet-pacing` runs. A request is *lost*
//! when it did not end in a 2xx by the run's cap ([`CAP_FLOORS`] floors). The example exits
//! non-zero when a fleet mode (`fleet-cooldown`, `fleet-pacing`) loses a request, or on an
//! internal error; the other numbers are printed as measured.
//!
//! Redis: `REDIS_URL`, by default `redis://127.0.0.1:6379`. Each run uses a scope of its
//! own (`fleet-<pid>-<time>-<run>`); nothing is flushed.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use reqwest_middleware::ClientWithMiddleware;
use reqwest_retry::policies::ExponentialBackoff;
use reqwest_retry::RetryTransientMiddleware;
use telecho_retry::limits::{Limits, Pacing};
use telecho_retry::{RetryPolicy, TelEchoRetry};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// The API key every child sends (the mock checks it). It never reaches Redis: the scope
/// names the fleet's limits there.
const API_KEY: &str = "tel_sk_fleet_0123456789";
/// The path every request asks for.
const PATH: &str = "/v1/agents";
/// Retries per request, the same for every mode.
const MAX_RETRIES: u32 = 10;
/// A run ends this many floors after it starts: requests not done by then are lost.
const CAP_FLOORS: u32 = 3;
/// How long children may take to start and build their clients.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the parent waits for results past the run's cap.
const REPORT_GRACE: Duration = Duration::from_secs(5);

// ===== what is run =====

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Mode {
    PerProcess,
    FleetCooldown,
    FleetPacing,
    ReqwestRetry,
}

impl Mode {
    const ALL: [Mode; 4] = [
        Mode::PerProcess,
        Mode::FleetCooldown,
        Mode::FleetPacing,
        Mode::ReqwestRetry,
    ];

    fn name(self) -> &'static str {
        match self {
            Mode::PerProcess => "per-process",
            Mode::FleetCooldown => "fleet-cooldown",
            Mode::FleetPacing => "fleet-pacing",
            Mode::ReqwestRetry => "reqwest-retry",
        }
    }

    fn parse(s: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.name() == s)
    }

    /// Whether the mode keeps its limits in Redis.
    fn fleet(self) -> bool {
        matches!(self, Mode::FleetCooldown | Mode::FleetPacing)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Workload {
    Burst,
    Steady,
    /// `Steady`, with Redis cut for about one window mid-run.
    SteadyRedisCut,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Burst => "burst",
            Workload::Steady => "steady",
            Workload::SteadyRedisCut => "steady-redis-cut",
        }
    }

    /// What the children do (the cut is the parent's doing).
    fn child_name(self) -> &'static str {
        match self {
            Workload::Burst => "burst",
            Workload::Steady | Workload::SteadyRedisCut => "steady",
        }
    }

    fn parse_child(s: &str) -> Option<Workload> {
        match s {
            "burst" => Some(Workload::Burst),
            "steady" => Some(Workload::Steady),
            _ => None,
        }
    }
}

/// The sizes of every run.
#[derive(Clone, Copy, Debug)]
struct Config {
    /// R: child processes per run.
    children: usize,
    /// L: requests the server admits per window.
    limit: u32,
    /// W: the server's fixed window.
    window: Duration,
    /// Requests per run, split evenly across the children.
    requests: usize,
}

impl Config {
    const FULL: Config = Config {
        children: 4,
        limit: 50,
        window: Duration::from_secs(1),
        requests: 400,
    };
    const QUICK: Config = Config {
        children: 2,
        limit: 20,
        window: Duration::from_secs(1),
        requests: 40,
    };

    /// The least time the server needs to admit every request: `requests / L × W`.
    fn floor(&self) -> Duration {
        self.window
            .mul_f64(self.requests as f64 / f64::from(self.limit.max(1)))
    }

    /// When the run ends: requests not done by then are lost.
    fn cap(&self) -> Duration {
        self.floor() * CAP_FLOORS
    }

    /// When request `k` (of the whole fleet) is due, after the run's start.
    fn due(&self, workload: Workload, k: usize) -> Duration {
        match workload {
            Workload::Burst => Duration::ZERO,
            // Twice the limit's rate: L × 2 requests per window.
            Workload::Steady | Workload::SteadyRedisCut => self
                .window
                .mul_f64(k as f64 / (2.0 * f64::from(self.limit.max(1)))),
        }
    }

    /// The Redis cut of a `steady-redis-cut` run: one window around the middle of the
    /// floor, as offsets from the run's start.
    fn cut(&self) -> (Duration, Duration) {
        let from = (self.floor() / 2).saturating_sub(self.window / 2);
        (from, from + self.window)
    }
}

/// One run: a mode under a workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Spec {
    mode: Mode,
    workload: Workload,
}

impl Spec {
    fn label(&self) -> String {
        format!("{} {}", self.mode.name(), self.workload.name())
    }
}

/// The runs, in groups run side by side. In the full run the paced runs go together, apart
/// from the storms of the other modes: on a small machine, a storm's bursts of retries
/// delay a paced attempt past a window's end now and then (see the README).
fn plan(quick: bool) -> Vec<Vec<Spec>> {
    let spec = |mode, workload| Spec { mode, workload };
    let paced = vec![
        spec(Mode::FleetPacing, Workload::Burst),
        spec(Mode::FleetPacing, Workload::Steady),
        spec(Mode::FleetPacing, Workload::SteadyRedisCut),
    ];
    if quick {
        return vec![vec![
            spec(Mode::PerProcess, Workload::Burst),
            spec(Mode::FleetCooldown, Workload::Burst),
            spec(Mode::FleetPacing, Workload::Burst),
            spec(Mode::FleetPacing, Workload::SteadyRedisCut),
        ]];
    }
    let storms = |workload| {
        Mode::ALL
            .into_iter()
            .filter(|m| *m != Mode::FleetPacing)
            .map(|m| spec(m, workload))
            .collect::<Vec<Spec>>()
    };
    vec![storms(Workload::Burst), storms(Workload::Steady), paced]
}

// ===== time =====

/// Nanoseconds since the Unix epoch: the one clock parent and children share.
fn unix_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// The tokio instant of a Unix time in nanoseconds (on this machine's clock).
fn instant_of(unix: u128) -> Instant {
    let (now_i, now_u) = (Instant::now(), unix_ns());
    if unix >= now_u {
        now_i + Duration::from_nanos(u64::try_from(unix - now_u).unwrap_or(u64::MAX))
    } else {
        let back = Duration::from_nanos(u64::try_from(now_u - unix).unwrap_or(u64::MAX));
        now_i.checked_sub(back).unwrap_or(now_i)
    }
}

/// Microseconds from `start` to `t`, negative when `t` is earlier.
fn micros_since(start: Instant, t: Instant) -> i64 {
    if t >= start {
        i64::try_from((t - start).as_micros()).unwrap_or(i64::MAX)
    } else {
        -i64::try_from((start - t).as_micros()).unwrap_or(i64::MAX)
    }
}

// ===== the mock TelEcho server =====

/// What the server answered one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    Ok,
    TooMany,
    /// Anything else (a bad key): never expected.
    Other,
}

/// One attempt as the server saw it: microseconds after the run's start, and the answer.
#[derive(Clone, Copy, Debug)]
struct Hit {
    at_us: i64,
    answer: Answer,
}

/// The fixed-window limit of one API key, and every attempt seen.
struct Limiter {
    limit: u32,
    window: Duration,
    /// Where windows are counted from: the run's start (set when the run starts).
    epoch: Instant,
    current: i64,
    admitted: u32,
    hits: Vec<Hit>,
}

impl Limiter {
    /// Admits or rejects one attempt arriving now; on a rejection, the `Retry-After`
    /// seconds to the window's end, rounded up (at least 1).
    fn arrive(&mut self, now: Instant) -> Result<(), u64> {
        let at_us = micros_since(self.epoch, now);
        let window_us = i64::try_from(self.window.as_micros().max(1)).unwrap_or(i64::MAX);
        let index = at_us.div_euclid(window_us);
        if index != self.current {
            self.current = index;
            self.admitted = 0;
        }
        let result = if self.admitted < self.limit {
            self.admitted += 1;
            Ok(())
        } else {
            let left_us = (index + 1) * window_us - at_us;
            Err(u64::try_from(left_us)
                .unwrap_or(1)
                .div_ceil(1_000_000)
                .max(1))
        };
        self.hits.push(Hit {
            at_us,
            answer: if result.is_ok() {
                Answer::Ok
            } else {
                Answer::TooMany
            },
        });
        result
    }
}

struct MockServer {
    addr: SocketAddr,
    limiter: Arc<Mutex<Limiter>>,
    accept: tokio::task::JoinHandle<()>,
}

impl MockServer {
    async fn start(cfg: &Config) -> Result<MockServer, String> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("mock server: bind 127.0.0.1:0: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("mock server: local address: {e}"))?;
        let limiter = Arc::new(Mutex::new(Limiter {
            limit: cfg.limit,
            window: cfg.window,
            epoch: Instant::now(),
            current: i64::MIN,
            admitted: 0,
            hits: Vec::new(),
        }));
        let shared = Arc::clone(&limiter);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    // Out of descriptors, say: wait a little rather than spin.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let limiter = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(Arc::clone(&limiter), req));
                    // A client closing its connection is not the server's problem.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(MockServer {
            addr,
            limiter,
            accept,
        })
    }

    /// Counts windows from `epoch` on, and forgets earlier attempts (there are none).
    fn start_run(&self, epoch: Instant) {
        if let Ok(mut l) = self.limiter.lock() {
            l.epoch = epoch;
            l.current = i64::MIN;
            l.admitted = 0;
            l.hits.clear();
        }
    }

    fn hits(&self) -> Vec<Hit> {
        self.limiter
            .lock()
            .map(|l| l.hits.clone())
            .unwrap_or_default()
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

fn envelope(kind: &str, code: &str, message: &str) -> Full<Bytes> {
    Full::new(Bytes::from(format!(
        r#"{{"error":{{"type":"{kind}","code":"{code}","message":"{message}"}}}}"#
    )))
}

async fn answer(
    limiter: Arc<Mutex<Limiter>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let authorized = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        == Some(API_KEY);
    let json = |status: StatusCode, body: Full<Bytes>| {
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        resp
    };
    if !authorized {
        if let Ok(mut l) = limiter.lock() {
            let at_us = micros_since(l.epoch, Instant::now());
            l.hits.push(Hit {
                at_us,
                answer: Answer::Other,
            });
        }
        return Ok(json(
            StatusCode::UNAUTHORIZED,
            envelope(
                "authentication_error",
                "invalid_api_key",
                "The API key provided is invalid.",
            ),
        ));
    }
    let verdict = match limiter.lock() {
        Ok(mut l) => l.arrive(Instant::now()),
        Err(_) => Err(1),
    };
    Ok(match verdict {
        Ok(()) => json(
            StatusCode::OK,
            Full::new(Bytes::from_static(br#"{"data":[]}"#)),
        ),
        Err(retry_after) => {
            let mut resp = json(
                StatusCode::TOO_MANY_REQUESTS,
                envelope(
                    "rate_limit_error",
                    "rate_limit_per_minute",
                    "Rate limit exceeded: too many requests this minute.",
                ),
            );
            resp.headers_mut()
                .insert(http::header::RETRY_AFTER, retry_after.into());
            resp
        }
    })
}

// ===== Redis, and the proxy that cuts it =====

/// A Redis URL taken apart around its `host:port`, so that a proxy can stand in for it and
/// so that its password never gets printed.
#[derive(Clone, Debug)]
struct RedisUrl {
    /// `redis://`.
    scheme: String,
    /// `user:password@`, or empty.
    userinfo: String,
    /// `host:port`.
    host_port: String,
    /// `/0`, `?…`, or empty.
    rest: String,
}

impl RedisUrl {
    fn parse(url: &str) -> Result<RedisUrl, String> {
        let Some((scheme, after)) = url.split_once("://") else {
            return Err("REDIS_URL: expected redis://host:port".into());
        };
        if scheme != "redis" {
            return Err(format!(
                "REDIS_URL: the example (and its proxy) need a plain redis:// URL, not {scheme}://"
            ));
        }
        let end = after.find(['/', '?']).unwrap_or(after.len());
        let (authority, rest) = after.split_at(end);
        let (userinfo, host_port) = match authority.rfind('@') {
            Some(at) => authority.split_at(at + 1),
            None => ("", authority),
        };
        if host_port.is_empty() {
            return Err("REDIS_URL: no host".into());
        }
        let host_port = if host_port.contains(':') {
            host_port.to_string()
        } else {
            format!("{host_port}:6379")
        };
        Ok(RedisUrl {
            scheme: format!("{scheme}://"),
            userinfo: userinfo.to_string(),
            host_port,
            rest: rest.to_string(),
        })
    }

    fn url(&self) -> String {
        format!(
            "{}{}{}{}",
            self.scheme, self.userinfo, self.host_port, self.rest
        )
    }

    /// The same URL, reaching Redis through `proxy`.
    fn via(&self, proxy: SocketAddr) -> RedisUrl {
        RedisUrl {
            host_port: proxy.to_string(),
            ..self.clone()
        }
    }

    /// For printing: the password (any userinfo) hidden.
    fn redacted(&self) -> String {
        let userinfo = if self.userinfo.is_empty() { "" } else { "***@" };
        format!("{}{userinfo}{}{}", self.scheme, self.host_port, self.rest)
    }

    /// Whether something answers `PING` there within a second (any reply will do: a
    /// Redis that wants a password says so, and is there).
    async fn answers(&self) -> bool {
        let probe = async {
            let mut s = TcpStream::connect(&self.host_port).await.ok()?;
            tokio::io::AsyncWriteExt::write_all(&mut s, b"PING\r\n")
                .await
                .ok()?;
            let mut buf = [0u8; 64];
            let n = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await.ok()?;
            (n > 0).then_some(())
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(1), probe).await,
            Ok(Some(()))
        )
    }
}

/// A TCP proxy between the children and Redis that the parent can cut: while cut, every
/// connection through it is dropped and new ones are closed as soon as they are accepted.
struct RedisProxy {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

impl RedisProxy {
    async fn start(upstream: String) -> Result<RedisProxy, String> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("Redis proxy: bind 127.0.0.1:0: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("Redis proxy: local address: {e}"))?;
        let (cut, cut_rx) = watch::channel(false);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                if *cut_rx.borrow() {
                    drop(client);
                    continue;
                }
                let mut cut_rx = cut_rx.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let connect = TcpStream::connect(upstream);
                    let Ok(Ok(mut server)) =
                        tokio::time::timeout(Duration::from_secs(1), connect).await
                    else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut_rx.wait_for(|cut| *cut) => {}
                    }
                    // Both ends dropped here: a cut looks like a reset to the child.
                });
            }
        });
        Ok(RedisProxy { addr, cut, accept })
    }

    fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

impl Drop for RedisProxy {
    fn drop(&mut self) {
        self.set_cut(true);
        self.accept.abort();
    }
}

// ===== the child: one replica =====

/// What a child is told on its command line.
#[derive(Debug)]
struct ChildArgs {
    server: SocketAddr,
    mode: Mode,
    workload: Workload,
    redis: String,
    scope: String,
    index: usize,
    cfg: Config,
}

impl ChildArgs {
    fn to_args(&self) -> Vec<String> {
        vec![
            "--child".into(),
            self.server.to_string(),
            self.mode.name().into(),
            self.workload.child_name().into(),
            self.redis.clone(),
            self.scope.clone(),
            self.index.to_string(),
            self.cfg.children.to_string(),
            self.cfg.limit.to_string(),
            self.cfg.window.as_millis().to_string(),
            self.cfg.requests.to_string(),
        ]
    }

    /// Parses what follows `--child`.
    fn parse(args: &[String]) -> Result<ChildArgs, String> {
        let [server, mode, workload, redis, scope, index, children, limit, window_ms, requests] =
            args
        else {
            return Err(format!("--child takes 10 arguments, got {}", args.len()));
        };
        let num = |what: &str, s: &str| -> Result<u64, String> {
            s.parse::<u64>()
                .map_err(|_| format!("--child: bad {what}: {s:?}"))
        };
        let cfg = Config {
            children: usize::try_from(num("children", children)?)
                .map_err(|_| "--child: too many children".to_string())?,
            limit: u32::try_from(num("limit", limit)?)
                .map_err(|_| "--child: limit too large".to_string())?,
            window: Duration::from_millis(num("window", window_ms)?),
            requests: usize::try_from(num("requests", requests)?)
                .map_err(|_| "--child: too many requests".to_string())?,
        };
        if cfg.children == 0 || cfg.limit == 0 || cfg.window.is_zero() {
            return Err("--child: children, limit and window must be above 0".into());
        }
        Ok(ChildArgs {
            server: server
                .parse()
                .map_err(|_| format!("--child: bad server address {server:?}"))?,
            mode: Mode::parse(mode).ok_or_else(|| format!("--child: unknown mode {mode:?}"))?,
            workload: Workload::parse_child(workload)
                .ok_or_else(|| format!("--child: unknown workload {workload:?}"))?,
            redis: redis.clone(),
            scope: scope.clone(),
            index: usize::try_from(num("index", index)?)
                .map_err(|_| "--child: bad index".to_string())?,
            cfg,
        })
    }
}

/// The policy of every `TelEchoRetry` mode: the defaults, with [`MAX_RETRIES`].
fn base_policy() -> telecho_retry::RetryPolicyBuilder {
    RetryPolicy::builder().max_retries(MAX_RETRIES)
}

/// The fleet modes' `TelEchoRetry`: limits kept in Redis under the run's scope, paced 2 %
/// under the server's limit in `fleet-pacing`; and the store, to read its fallbacks at the end.
fn fleet_retry(args: &ChildArgs) -> Result<(TelEchoRetry, Limits), String> {
    let mut limits = Limits::builder();
    if args.mode == Mode::FleetPacing {
        // 2 % under the key's limit: at exactly the limit, an attempt that reaches the
        // server a moment late, past a window's end, is one too many in the next window.
        limits = limits.pacing(Pacing::new(args.cfg.limit, args.cfg.window.mul_f64(1.02)));
    }
    let limits = limits
        .redis(args.redis.as_str(), args.scope.as_str())
        // Alone while Redis is cut, each replica keeps its share of the fleet's rate.
        .fallback_share(1.0 / args.cfg.children as f64)
        .build()
        .map_err(|e| format!("Redis limits: {e}"))?;
    let retry = TelEchoRetry::new(base_policy().build()).with_limits(limits.clone());
    Ok((retry, limits))
}

/// The child's client, and its Redis store in the fleet modes.
fn build_client(args: &ChildArgs) -> Result<(ClientWithMiddleware, Option<Limits>), String> {
    let inner = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| format!("reqwest client: {e}"))?;
    let builder = reqwest_middleware::ClientBuilder::new(inner);
    Ok(match args.mode {
        Mode::PerProcess => (
            builder
                .with(TelEchoRetry::new(base_policy().build()))
                .build(),
            None,
        ),
        Mode::FleetCooldown | Mode::FleetPacing => {
            let (retry, store) = fleet_retry(args)?;
            (builder.with(retry).build(), Some(store))
        }
        Mode::ReqwestRetry => (
            builder
                .with(RetryTransientMiddleware::new_with_policy(
                    ExponentialBackoff::builder().build_with_max_retries(MAX_RETRIES),
                ))
                .build(),
            None,
        ),
    })
}

/// How one request ended, as a child reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    /// A 2xx.
    Ok,
    /// Another status handed back.
    Status(u16),
    /// An error instead of a response (its kind, one word).
    Error(String),
    /// Not done by the run's cap.
    Cap,
}

impl Outcome {
    fn word(&self) -> String {
        match self {
            Outcome::Ok => "ok".into(),
            Outcome::Status(s) => format!("status-{s}"),
            Outcome::Error(e) => format!("error-{e}"),
            Outcome::Cap => "cap".into(),
        }
    }

    fn parse(s: &str) -> Option<Outcome> {
        match s {
            "ok" => Some(Outcome::Ok),
            "cap" => Some(Outcome::Cap),
            _ => {
                if let Some(code) = s.strip_prefix("status-") {
                    code.parse().ok().map(Outcome::Status)
                } else {
                    s.strip_prefix("error-")
                        .map(|e| Outcome::Error(e.to_string()))
                }
            }
        }
    }
}

/// One word for what kind of error ended a request.
fn error_word(e: &reqwest_middleware::Error) -> String {
    match e {
        reqwest_middleware::Error::Reqwest(e) if e.is_timeout() => "timeout".into(),
        reqwest_middleware::Error::Reqwest(e) if e.is_connect() => "connect".into(),
        reqwest_middleware::Error::Reqwest(_) => "transport".into(),
        reqwest_middleware::Error::Middleware(e) => {
            match e.downcast_ref::<telecho_retry::RetryError>() {
                Some(r) => format!("{:?}", r.kind()).to_lowercase(),
                None => "middleware".into(),
            }
        }
    }
}

/// A child's report of one request: `req <k> <due µs> <end µs> <outcome>`.
#[derive(Clone, Debug)]
struct Report {
    k: usize,
    due_us: i64,
    end_us: i64,
    outcome: Outcome,
}

impl Report {
    fn line(&self) -> String {
        format!(
            "req {} {} {} {}",
            self.k,
            self.due_us,
            self.end_us,
            self.outcome.word()
        )
    }

    fn parse(line: &str) -> Option<Report> {
        let mut it = line.split(' ');
        if it.next()? != "req" {
            return None;
        }
        let report = Report {
            k: it.next()?.parse().ok()?,
            due_us: it.next()?.parse().ok()?,
            end_us: it.next()?.parse().ok()?,
            outcome: Outcome::parse(it.next()?)?,
        };
        it.next().is_none().then_some(report)
    }
}

async fn child(args: ChildArgs) -> Result<(), String> {
    let (client, store) = build_client(&args)?;
    let url = format!("http://{}{PATH}", args.server);
    let mut out = std::io::stdout().lock();
    let say = |out: &mut std::io::StdoutLock<'_>, line: &str| {
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(|e| format!("stdout: {e}"))
    };
    say(&mut out, "ready")?;

    // The start time comes on stdin; a closed stdin (the parent is gone) ends the child.
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<Option<u128>>();
    std::thread::spawn(move || {
        let mut lines = std::io::stdin().lock().lines();
        let go = match lines.next() {
            Some(Ok(line)) => line
                .strip_prefix("go ")
                .and_then(|t| t.trim().parse::<u128>().ok()),
            _ => None,
        };
        let _ = go_tx.send(go);
        // Wait for the parent to go away, and follow it.
        for line in lines {
            if line.is_err() {
                break;
            }
        }
        std::process::exit(3);
    });
    let go = tokio::time::timeout(READY_TIMEOUT, go_rx)
        .await
        .map_err(|_| "no start time from the parent".to_string())?
        .ok()
        .flatten()
        .ok_or_else(|| "the parent sent no start time".to_string())?;
    let start = instant_of(go);
    let end = start + args.cfg.cap();

    let mine: Vec<usize> = (args.index..args.cfg.requests)
        .step_by(args.cfg.children)
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for k in mine {
        let due = start + args.cfg.due(args.workload, k);
        let (client, url) = (client.clone(), url.clone());
        tasks.spawn(async move {
            tokio::time::sleep_until(due).await;
            let send = client.get(url).bearer_auth(API_KEY).send();
            let outcome = match tokio::time::timeout_at(end, send).await {
                Err(_) => Outcome::Cap,
                Ok(Ok(resp)) if resp.status().is_success() => {
                    // Read the body, as a real client would.
                    let _ = tokio::time::timeout_at(end, resp.bytes()).await;
                    Outcome::Ok
                }
                Ok(Ok(resp)) => Outcome::Status(resp.status().as_u16()),
                Ok(Err(e)) => Outcome::Error(error_word(&e)),
            };
            Report {
                k,
                due_us: micros_since(start, due),
                end_us: micros_since(start, Instant::now()),
                outcome,
            }
        });
    }
    let mut reports = Vec::new();
    while let Some(done) = tasks.join_next().await {
        reports.push(done.map_err(|e| format!("a request task failed: {e}"))?);
    }
    for r in &reports {
        say(&mut out, &r.line())?;
    }
    if let Some(store) = store {
        say(&mut out, &format!("fallbacks {}", store.fallbacks()))?;
    }
    say(&mut out, "done")
}

// ===== the parent: one run =====

/// What a child said, or that it is gone.
enum Heard {
    Line(usize, String),
    Gone(usize),
}

/// The children of one run; killed (if still running) when dropped, whatever happened.
struct Children {
    procs: Vec<Child>,
    stdins: Vec<Option<ChildStdin>>,
}

impl Children {
    fn spawn(list: &[ChildArgs], heard: &mpsc::UnboundedSender<Heard>) -> Result<Children, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut children = Children {
            procs: Vec::new(),
            stdins: Vec::new(),
        };
        for (i, args) in list.iter().enumerate() {
            let mut proc = Command::new(&exe)
                .args(args.to_args())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| format!("starting child {i}: {e}"))?;
            let stdout = proc.stdout.take();
            children.stdins.push(proc.stdin.take());
            children.procs.push(proc);
            let heard = heard.clone();
            std::thread::spawn(move || {
                if let Some(stdout) = stdout {
                    for line in BufReader::new(stdout).lines() {
                        let Ok(line) = line else { break };
                        if heard.send(Heard::Line(i, line)).is_err() {
                            return;
                        }
                    }
                }
                let _ = heard.send(Heard::Gone(i));
            });
        }
        Ok(children)
    }

    /// Tells every child when the run starts.
    fn go(&mut self, start_unix_ns: u128) -> Result<(), String> {
        for (i, stdin) in self.stdins.iter_mut().enumerate() {
            let stdin = stdin
                .as_mut()
                .ok_or_else(|| format!("child {i}: no stdin"))?;
            writeln!(stdin, "go {start_unix_ns}")
                .and_then(|()| stdin.flush())
                .map_err(|e| format!("child {i}: {e}"))?;
        }
        Ok(())
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        // Closing stdin ends a child that is still waiting; kill the rest.
        self.stdins.clear();
        for p in &mut self.procs {
            if !matches!(p.try_wait(), Ok(Some(_))) {
                let _ = p.kill();
            }
            let _ = p.wait();
        }
    }
}

/// A run's raw results.
struct RunResult {
    spec: Spec,
    cfg: Config,
    /// Per request `k`: what its child reported (`None`: nothing, so lost).
    reports: Vec<Option<Report>>,
    hits: Vec<Hit>,
    /// Children that failed, and how.
    failures: Vec<String>,
    /// The Redis cut, as offsets from the start, for a `steady-redis-cut` run.
    cut: Option<(Duration, Duration)>,
    /// Times the children's Redis stores fell back on in-process limits.
    fallbacks: u64,
}

async fn run(spec: Spec, cfg: Config, redis: RedisUrl, scope: String) -> Result<RunResult, String> {
    let server = MockServer::start(&cfg).await?;
    let proxy = if spec.workload == Workload::SteadyRedisCut {
        Some(RedisProxy::start(redis.host_port.clone()).await?)
    } else {
        None
    };
    let redis_for_children = match &proxy {
        Some(p) => redis.via(p.addr),
        None => redis.clone(),
    };
    let list: Vec<ChildArgs> = (0..cfg.children)
        .map(|index| ChildArgs {
            server: server.addr,
            mode: spec.mode,
            workload: spec.workload,
            redis: redis_for_children.url(),
            scope: scope.clone(),
            index,
            cfg,
        })
        .collect();
    let (heard_tx, mut heard) = mpsc::unbounded_channel();
    let mut children = Children::spawn(&list, &heard_tx)?;
    drop(heard_tx);

    // Every child ready, or the run fails.
    let mut ready = 0;
    let ready_by = Instant::now() + READY_TIMEOUT;
    while ready < cfg.children {
        match tokio::time::timeout_at(ready_by, heard.recv()).await {
            Ok(Some(Heard::Line(_, l))) if l == "ready" => ready += 1,
            Ok(Some(Heard::Line(i, l))) => {
                return Err(format!(
                    "{}: child {i} said {l:?} before the start",
                    spec.label()
                ))
            }
            Ok(Some(Heard::Gone(i))) => {
                return Err(format!(
                    "{}: child {i} exited before the start",
                    spec.label()
                ))
            }
            Ok(None) | Err(_) => {
                return Err(format!("{}: children not ready in time", spec.label()))
            }
        }
    }

    let start_unix = unix_ns() + 200_000_000;
    let start = instant_of(start_unix);
    server.start_run(start);
    children.go(start_unix)?;
    let cut = (spec.workload == Workload::SteadyRedisCut).then(|| cfg.cut());
    let cutter = match (&proxy, cut) {
        (Some(p), Some((from, to))) => {
            let switch = p.cut.clone();
            Some(tokio::spawn(async move {
                tokio::time::sleep_until(start + from).await;
                switch.send_replace(true);
                tokio::time::sleep_until(start + to).await;
                switch.send_replace(false);
            }))
        }
        _ => None,
    };

    let mut reports: Vec<Option<Report>> = vec![None; cfg.requests];
    let mut failures = Vec::new();
    let mut finished = vec![false; cfg.children];
    let mut fallbacks = 0;
    let report_by = start + cfg.cap() + REPORT_GRACE;
    while finished.iter().any(|f| !f) {
        match tokio::time::timeout_at(report_by, heard.recv()).await {
            Ok(Some(Heard::Line(i, l))) => {
                if l == "done" {
                    finished[i] = true;
                } else if let Some(n) = l.strip_prefix("fallbacks ") {
                    fallbacks += n.parse::<u64>().unwrap_or(0);
                } else if let Some(r) = Report::parse(&l) {
                    let slot = reports.get_mut(r.k);
                    match slot {
                        Some(s) if r.k % cfg.children == i => *s = Some(r),
                        _ => failures.push(format!("child {i}: report of another's request")),
                    }
                } else {
                    failures.push(format!("child {i}: unexpected line {l:?}"));
                }
            }
            Ok(Some(Heard::Gone(i))) => {
                if !finished[i] {
                    failures.push(format!("child {i} exited without its results"));
                    finished[i] = true;
                }
            }
            Ok(None) => break,
            Err(_) => {
                failures.push("children did not report in time (killed)".into());
                break;
            }
        }
    }
    if let Some(c) = cutter {
        c.abort();
    }
    drop(children);
    Ok(RunResult {
        spec,
        cfg,
        reports,
        hits: server.hits(),
        failures,
        cut,
        fallbacks,
    })
}

// ===== numbers =====

#[derive(Clone, Debug)]
struct Stats {
    sent: usize,
    too_many: usize,
    ok: usize,
    lost: usize,
    /// Why requests were lost: outcome word → count.
    lost_by: BTreeMap<String, usize>,
    /// The last success after the start, in seconds.
    completion: f64,
    p50: f64,
    p99: f64,
}

impl Stats {
    fn of(r: &RunResult) -> Stats {
        let sent = r.hits.len();
        let too_many = r
            .hits
            .iter()
            .filter(|h| h.answer == Answer::TooMany)
            .count();
        let mut lat = Vec::new();
        let mut completion: f64 = 0.0;
        let mut lost_by = BTreeMap::new();
        for rep in &r.reports {
            match rep {
                Some(rep) if rep.outcome == Outcome::Ok => {
                    lat.push((rep.end_us - rep.due_us) as f64 / 1e6);
                    completion = completion.max(rep.end_us as f64 / 1e6);
                }
                Some(rep) => *lost_by.entry(rep.outcome.word()).or_insert(0) += 1,
                None => *lost_by.entry("unreported".to_string()).or_insert(0) += 1,
            }
        }
        lat.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            if lat.is_empty() {
                f64::NAN
            } else {
                let i = ((p * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1;
                lat[i]
            }
        };
        let ok = lat.len();
        Stats {
            sent,
            too_many,
            ok,
            lost: r.reports.len() - ok,
            lost_by,
            completion,
            p50: pct(0.50),
            p99: pct(0.99),
        }
    }

    fn per_success(&self) -> f64 {
        if self.ok == 0 {
            f64::INFINITY
        } else {
            self.sent as f64 / self.ok as f64
        }
    }
}

fn print_table(results: &[(RunResult, Stats)]) {
    println!(
        "\n{:<16} {:<17} {:>6} {:>6} {:>5} {:>5} {:>7} {:>8} {:>7} {:>7}",
        "mode", "workload", "sent", "429s", "ok", "lost", "sent/ok", "done/fl", "p50 s", "p99 s"
    );
    for (r, s) in results {
        println!(
            "{:<16} {:<17} {:>6} {:>6} {:>5} {:>5} {:>7.2} {:>8.2} {:>7.2} {:>7.2}",
            r.spec.mode.name(),
            r.spec.workload.name(),
            s.sent,
            s.too_many,
            s.ok,
            s.lost,
            s.per_success(),
            s.completion / r.cfg.floor().as_secs_f64(),
            s.p50,
            s.p99,
        );
    }
    for (r, s) in results {
        if s.lost > 0 {
            let why: Vec<String> = s.lost_by.iter().map(|(w, n)| format!("{n} {w}")).collect();
            println!("  {}: lost {} ({})", r.spec.label(), s.lost, why.join(", "));
        }
        let rejected: Vec<String> = r
            .hits
            .iter()
            .filter(|h| h.answer == Answer::TooMany)
            .map(|h| format!("{:.3} s", h.at_us as f64 / 1e6))
            .collect();
        if (1..=8).contains(&rejected.len()) {
            println!("  {}: 429s at {}", r.spec.label(), rejected.join(", "));
        }
        if r.fallbacks > 0 {
            println!(
                "  {}: the children fell back on in-process limits {} times (Redis not reached in time)",
                r.spec.label(),
                r.fallbacks
            );
        }
        for f in &r.failures {
            println!("  {}: {f}", r.spec.label());
        }
    }
}

fn machine_line(r: &RunResult, s: &Stats) -> String {
    format!(
        "{} {} requests_per_success={:.2} completion_vs_floor={:.2} p50_s={:.2} p99_s={:.2} sent={} too_many={} lost={}",
        r.spec.mode.name(),
        r.spec.workload.name(),
        s.per_success(),
        s.completion / r.cfg.floor().as_secs_f64(),
        s.p50,
        s.p99,
        s.sent,
        s.too_many,
        s.lost
    )
}

// ===== the chart =====

/// Attempts per server window: (admitted, 429) for windows `0..n`.
fn per_window(r: &RunResult, n: usize) -> Vec<(u32, u32)> {
    let w = i64::try_from(r.cfg.window.as_micros().max(1)).unwrap_or(i64::MAX);
    let mut bins = vec![(0u32, 0u32); n];
    for h in &r.hits {
        let i = usize::try_from(h.at_us.div_euclid(w).max(0)).unwrap_or(usize::MAX);
        if let Some(b) = bins.get_mut(i) {
            match h.answer {
                Answer::Ok => b.0 += 1,
                _ => b.1 += 1,
            }
        }
    }
    bins
}

/// Small multiples: a column per workload, a row per mode; in each panel, stacked bars of
/// attempts per window (admitted, 429), the limit dashed, the floor marked.
fn svg(results: &[(RunResult, Stats)]) -> String {
    let Some((first, _)) = results.first() else {
        return String::new();
    };
    let cfg = first.cfg;
    let columns = [Workload::Burst, Workload::Steady];
    let rows: Vec<Mode> = Mode::ALL
        .into_iter()
        .filter(|m| results.iter().any(|(r, _)| r.spec.mode == *m))
        .collect();
    let cut_row = results
        .iter()
        .any(|(r, _)| r.spec.workload == Workload::SteadyRedisCut);
    let n_rows = rows.len() + usize::from(cut_row);
    let (pw, ph, left, top, col_gap, row_gap) = (520.0, 110.0, 60.0, 92.0, 70.0, 58.0);
    let windows = (cfg.cap().as_secs_f64() / cfg.window.as_secs_f64()).ceil() as usize;
    let y_max = f64::from(cfg.limit) * 3.0;
    let w = left + columns.len() as f64 * (pw + col_gap);
    let h = top + n_rows as f64 * (ph + row_gap);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="22" font-size="15" font-weight="bold">Fleet storm: {} processes, {} requests, one key limited to {} per {} s window</text>"#,
        cfg.children,
        cfg.requests,
        cfg.limit,
        cfg.window.as_secs_f64()
    );
    let _ = writeln!(
        s,
        r##"<text x="{left}" y="40" fill="#555">Attempts the server saw per window: blue admitted, red 429 (bars above {y_max} clipped, count printed); dashed: the limit; grey line: the floor.</text>"##
    );
    let _ = writeln!(
        s,
        r##"<text x="{left}" y="56" fill="#555">Measured with real processes over loopback; one run, timings noisy. Shaded: Redis cut.</text>"##
    );
    let panel = |s: &mut String, x0: f64, y0: f64, r: &RunResult, st: &Stats| {
        let _ = writeln!(
            s,
            r#"<text x="{x0}" y="{}"><tspan font-weight="bold">{}</tspan>: {:.2} sent/ok, done at {:.2} x floor, p99 {:.1} s, lost {}</text>"#,
            y0 - 6.0,
            r.spec.label(),
            st.per_success(),
            st.completion / cfg.floor().as_secs_f64(),
            st.p99,
            st.lost
        );
        let _ = writeln!(
            s,
            r##"<rect x="{x0}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="#bbb"/>"##
        );
        let bw = pw / windows as f64;
        if let Some((from, to)) = r.cut {
            let (a, b) = (
                from.as_secs_f64() / cfg.window.as_secs_f64() * bw,
                to.as_secs_f64() / cfg.window.as_secs_f64() * bw,
            );
            let _ = writeln!(
                s,
                r##"<rect x="{:.1}" y="{y0}" width="{:.1}" height="{ph}" fill="#f3e3a0" opacity="0.6"/>"##,
                x0 + a,
                b - a
            );
        }
        let y_of = |v: f64| y0 + ph - v.min(y_max) / y_max * ph;
        // Counts of clipped bars, on two alternating lines so that neighbours do not overlap.
        let mut line = 0;
        for (i, (ok, rejected)) in per_window(r, windows).into_iter().enumerate() {
            let x = x0 + i as f64 * bw + 1.0;
            let (ok, rejected) = (f64::from(ok), f64::from(rejected));
            let _ = writeln!(
                s,
                r##"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#1f77b4"/>"##,
                y_of(ok),
                bw - 2.0,
                y0 + ph - y_of(ok)
            );
            if rejected > 0.0 {
                let _ = writeln!(
                    s,
                    r##"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#d62728"/>"##,
                    y_of(ok + rejected),
                    bw - 2.0,
                    y_of(ok) - y_of(ok + rejected)
                );
            }
            if ok + rejected > y_max {
                let _ = writeln!(
                    s,
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="9" fill="white">{}</text>"#,
                    x + bw / 2.0 - 1.0,
                    y0 + 10.0 + f64::from(line) * 10.0,
                    ok + rejected
                );
                line = 1 - line;
            } else {
                line = 0;
            }
        }
        let ly = y_of(f64::from(cfg.limit));
        let _ = writeln!(
            s,
            r#"<line x1="{x0}" y1="{ly:.1}" x2="{}" y2="{ly:.1}" stroke="black" stroke-dasharray="5 4"/>"#,
            x0 + pw
        );
        let fx = x0 + cfg.floor().as_secs_f64() / cfg.window.as_secs_f64() * bw;
        let _ = writeln!(
            s,
            r##"<line x1="{fx:.1}" y1="{y0}" x2="{fx:.1}" y2="{}" stroke="#888" stroke-width="1.5"/>"##,
            y0 + ph
        );
        for (v, label) in [
            (0.0, "0".to_string()),
            (f64::from(cfg.limit), cfg.limit.to_string()),
            (y_max, format!("{y_max}")),
        ] {
            let _ = writeln!(
                s,
                r##"<text x="{}" y="{:.1}" text-anchor="end" fill="#555">{label}</text>"##,
                x0 - 4.0,
                y_of(v) + 4.0
            );
        }
        let step = (windows / 6).max(1);
        for i in (0..=windows).step_by(step) {
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{}" text-anchor="middle" fill="#555">{} s</text>"##,
                x0 + i as f64 * bw,
                y0 + ph + 13.0,
                i as f64 * cfg.window.as_secs_f64()
            );
        }
    };
    for (ci, wl) in columns.iter().enumerate() {
        let x0 = left + ci as f64 * (pw + col_gap);
        let _ = writeln!(
            s,
            r#"<text x="{x0}" y="{}" font-size="13" font-weight="bold">{}</text>"#,
            top - 16.0,
            match wl {
                Workload::Burst => "burst: every request at t = 0",
                _ => "steady: twice the limit's rate",
            }
        );
        for (ri, mode) in rows.iter().enumerate() {
            let y0 = top + ri as f64 * (ph + row_gap) + 12.0;
            if let Some((r, st)) = results
                .iter()
                .find(|(r, _)| r.spec.mode == *mode && r.spec.workload == *wl)
            {
                panel(&mut s, x0, y0, r, st);
            }
        }
    }
    if let Some((r, st)) = results
        .iter()
        .find(|(r, _)| r.spec.workload == Workload::SteadyRedisCut)
    {
        let y0 = top + rows.len() as f64 * (ph + row_gap) + 12.0;
        panel(&mut s, left + pw + col_gap, y0, r, st);
    }
    s.push_str("</svg>\n");
    s
}

// ===== main =====

const USAGE: &str = "usage: fleet [--quick] [--svg PATH] [--only NAME]
  --quick      fewer requests and runs (CI)
  --svg PATH   also draw the chart into PATH
  --only NAME  only the runs of this mode or workload (repeatable)
Redis: REDIS_URL (default redis://127.0.0.1:6379).";

async fn parent(quick: bool, svg_path: Option<String>, only: &[String]) -> Result<bool, String> {
    let cfg = if quick { Config::QUICK } else { Config::FULL };
    let redis = RedisUrl::parse(
        &std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
    )?;
    if !redis.answers().await {
        return Err(format!(
            "no Redis answers at {} (start redis-server, or set REDIS_URL)",
            redis.redacted()
        ));
    }
    println!(
        "fleet storm: R = {} processes, L = {} requests per {} s window, {} requests per run \
         (floor {:.1} s), cap {} floors; up to {MAX_RETRIES} retries per request in every mode; Redis {}",
        cfg.children,
        cfg.limit,
        cfg.window.as_secs_f64(),
        cfg.requests,
        cfg.floor().as_secs_f64(),
        CAP_FLOORS,
        redis.redacted()
    );
    let run_id = format!("fleet-{}-{}", std::process::id(), unix_ns() / 1_000_000);
    let mut results = Vec::new();
    for mut group in plan(quick) {
        if !only.is_empty() {
            group.retain(|s| {
                only.iter()
                    .any(|o| o == s.mode.name() || o == s.workload.name())
            });
        }
        if group.is_empty() {
            continue;
        }
        let names: Vec<String> = group.iter().map(Spec::label).collect();
        println!("running side by side: {}", names.join(", "));
        let runs = group.iter().map(|spec| {
            let scope = format!("{run_id}-{}-{}", spec.mode.name(), spec.workload.name());
            run(*spec, cfg, redis.clone(), scope)
        });
        for r in futures_util::future::join_all(runs).await {
            let r = r?;
            let s = Stats::of(&r);
            results.push((r, s));
        }
    }
    if results.is_empty() {
        return Err(format!("no run matches --only {}", only.join(" --only ")));
    }
    results.sort_by_key(|(r, _)| (r.spec.workload, r.spec.mode));
    print_table(&results);
    let mut ok = true;
    for (r, s) in &results {
        if !r.failures.is_empty() || (r.spec.mode.fleet() && s.lost > 0) {
            ok = false;
        }
    }
    if let Some(path) = svg_path {
        std::fs::write(&path, svg(&results)).map_err(|e| format!("writing {path}: {e}"))?;
        println!("\nwrote {path}");
    }
    println!();
    for (r, s) in &results {
        println!("{}", machine_line(r, s));
    }
    Ok(ok)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        let parsed = match ChildArgs::parse(&args[1..]) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("fleet child: {e}");
                return ExitCode::from(2);
            }
        };
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("fleet child: runtime: {e}");
                return ExitCode::from(2);
            }
        };
        let result = rt.block_on(child(parsed));
        // Do not wait for background tasks (Redis connections) to wind down.
        std::process::exit(match result {
            Ok(()) => 0,
            Err(e) => {
                eprintln!(
                    "fleet child {}: {e}",
                    args.get(6).map_or("?", String::as_str)
                );
                1
            }
        });
    }
    let (mut quick, mut svg_path, mut only) = (false, None, Vec::new());
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--svg" => match it.next() {
                Some(p) => svg_path = Some(p),
                None => {
                    eprintln!("--svg needs a path\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "--only" => match it.next() {
                Some(name) => only.push(name),
                None => {
                    eprintln!("--only needs a mode or workload\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument {other:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fleet: runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(parent(quick, svg_path, &only)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("fleet: a fleet mode lost requests, or a child failed (see above)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("fleet: {e}");
            ExitCode::FAILURE
        }
    }
}
