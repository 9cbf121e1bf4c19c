//! The child: one replica, sending its requests and reporting how each ended.
//!
//! It says `store <redis|process|none>` and `ready` once its client is built, waits for
//! `go <unix ns>` on stdin, runs its load, then reports every request (`req …`), the
//! fallbacks of its Redis store, and `done`.

use std::collections::BTreeMap;
use std::io::{BufRead, Write as _};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest_middleware::ClientWithMiddleware;
use reqwest_retry::policies::ExponentialBackoff;
use reqwest_retry::RetryTransientMiddleware;
use telecho_retry::limits::{Limits, LimitsBuilder, Pacing, RedisLimitsBuilder};
use telecho_retry::{RetryPolicy, TelEchoRetry};
use tokio::time::Instant;

use crate::clock::instant_of;
use crate::report::{Outcome, Report};
use crate::spec::{Config, Mode, Schedule};
use crate::{API_KEY, DEFAULT_RETRIES, PATH, READY_TIMEOUT};

/// A closed-loop task whose request failed waits this long before its next one, so that a
/// client that fails without sending cannot spin.
const PAUSE_AFTER_FAILURE: Duration = Duration::from_millis(50);

/// What a child sends.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Load {
    /// The storm workloads: the fleet's `cfg.requests` requests, due on `schedule`; the
    /// child sends every `cfg.children`-th one.
    Open { schedule: Schedule, cfg: Config },
    /// the learning workloads: `tasks` tasks in this child, each sending one request after
    /// the other for `duration`.
    Closed { tasks: usize, duration: Duration },
}

impl Load {
    /// When the child stops sending: after it, no request starts.
    pub(crate) fn end(&self) -> Duration {
        match self {
            Load::Open { cfg, .. } => cfg.cap(),
            Load::Closed { duration, .. } => *duration,
        }
    }

    /// How long after [`end`](Self::end) the requests in flight may still run: a closed
    /// loop's last requests run on for [`DRAIN`], so that one slowed by its retries is not
    /// cut off and counted lost; an open load's stop at its end. Requests not done by then
    /// end as [`Outcome::Cap`].
    pub(crate) fn drain(&self) -> Duration {
        match self {
            Load::Open { .. } => Duration::ZERO,
            Load::Closed { .. } => DRAIN,
        }
    }
}

/// How long a closed loop's last requests may run past its end; one still running then is
/// lost (stuck).
pub(crate) const DRAIN: Duration = Duration::from_secs(10);

/// What a child is told on its command line (`key=value` words after `--child`).
#[derive(Clone, Debug)]
pub(crate) struct ChildArgs {
    pub(crate) server: SocketAddr,
    pub(crate) mode: Mode,
    /// The Redis URL, or a cluster's node URLs separated by commas.
    pub(crate) redis: String,
    /// Whether `redis` is a cluster's.
    pub(crate) cluster: bool,
    pub(crate) scope: String,
    pub(crate) index: usize,
    pub(crate) children: usize,
    /// Retries per request; `None`: the crate's default policy.
    pub(crate) retries: Option<u32>,
    /// A fixed pacing: requests per period, for the modes that pace at a known rate.
    pub(crate) pacing: Option<(u32, Duration)>,
    /// The Redis store's fallback share; `None`: the crate's default.
    pub(crate) fallback_share: Option<f64>,
    pub(crate) load: Load,
}

impl ChildArgs {
    pub(crate) fn to_args(&self) -> Vec<String> {
        let mut a = vec![
            "--child".to_string(),
            format!("server={}", self.server),
            format!("mode={}", self.mode.name()),
            format!("redis={}", self.redis),
            format!("scope={}", self.scope),
            format!("index={}", self.index),
            format!("children={}", self.children),
        ];
        if self.cluster {
            a.push("cluster=yes".to_string());
        }
        if let Some(n) = self.retries {
            a.push(format!("retries={n}"));
        }
        if let Some((n, per)) = self.pacing {
            a.push(format!("pace={n}/{}", per.as_micros()));
        }
        if let Some(s) = self.fallback_share {
            a.push(format!("share={s}"));
        }
        match self.load {
            Load::Open { schedule, cfg } => a.extend([
                format!("load={}", schedule.name()),
                format!("limit={}", cfg.limit),
                format!("window_us={}", cfg.window.as_micros()),
                format!("requests={}", cfg.requests),
            ]),
            Load::Closed { tasks, duration } => a.extend([
                "load=closed".to_string(),
                format!("tasks={tasks}"),
                format!("duration_us={}", duration.as_micros()),
            ]),
        }
        a
    }

    /// Parses what follows `--child`.
    pub(crate) fn parse(args: &[String]) -> Result<ChildArgs, String> {
        let mut map = BTreeMap::new();
        for a in args {
            let (k, v) = a
                .split_once('=')
                .ok_or_else(|| format!("--child: expected key=value, got {a:?}"))?;
            map.insert(k, v);
        }
        let get = |k: &str| map.get(k).copied().ok_or(format!("--child: no {k}"));
        let num = |k: &str| -> Result<u64, String> {
            let v = get(k)?;
            v.parse().map_err(|_| format!("--child: bad {k}: {v:?}"))
        };
        let size = |k: &str| -> Result<usize, String> {
            usize::try_from(num(k)?).map_err(|_| format!("--child: {k} too large"))
        };
        let children = size("children")?;
        let load = match get("load")? {
            "closed" => Load::Closed {
                tasks: size("tasks")?,
                duration: Duration::from_micros(num("duration_us")?),
            },
            name => Load::Open {
                schedule: Schedule::parse(name)
                    .ok_or_else(|| format!("--child: unknown load {name:?}"))?,
                cfg: Config {
                    children,
                    limit: u32::try_from(num("limit")?).map_err(|_| "--child: bad limit")?,
                    window: Duration::from_micros(num("window_us")?),
                    requests: size("requests")?,
                },
            },
        };
        let pacing = match map.get("pace") {
            None => None,
            Some(p) => {
                let (n, us) = p.split_once('/').ok_or("--child: pace is n/µs")?;
                Some((
                    n.parse().map_err(|_| "--child: bad pace")?,
                    Duration::from_micros(us.parse().map_err(|_| "--child: bad pace")?),
                ))
            }
        };
        let mode = get("mode")?;
        let server = get("server")?;
        let args = ChildArgs {
            server: server
                .parse()
                .map_err(|_| format!("--child: bad server address {server:?}"))?,
            mode: Mode::parse(mode).ok_or_else(|| format!("--child: unknown mode {mode:?}"))?,
            redis: get("redis")?.to_string(),
            cluster: map.contains_key("cluster"),
            scope: get("scope")?.to_string(),
            index: size("index")?,
            children,
            retries: map
                .contains_key("retries")
                .then(|| num("retries"))
                .transpose()?
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            pacing,
            fallback_share: match map.get("share") {
                None => None,
                Some(s) => Some(s.parse().map_err(|_| "--child: bad share")?),
            },
            load,
        };
        if args.children == 0 || args.index >= args.children {
            return Err("--child: index must be below children (above 0)".into());
        }
        Ok(args)
    }
}

/// Limits kept in the cluster whose nodes `urls` lists (comma-separated).
#[cfg(feature = "redis-cluster")]
fn on_cluster(
    builder: LimitsBuilder,
    urls: &str,
    scope: &str,
) -> Result<RedisLimitsBuilder, String> {
    Ok(builder.redis_cluster(urls.split(','), scope))
}

#[cfg(not(feature = "redis-cluster"))]
fn on_cluster(_: LimitsBuilder, _: &str, _: &str) -> Result<RedisLimitsBuilder, String> {
    Err("a Redis Cluster needs the feature redis-cluster".into())
}

/// The limits of a mode that uses the crate's: kept in Redis under the run's scope; whether
/// they are in Redis.
fn limits(args: &ChildArgs) -> Result<(Limits, bool), String> {
    let redis = |builder: LimitsBuilder| {
        let mut redis = if args.cluster {
            on_cluster(builder, &args.redis, &args.scope)?
        } else {
            builder.redis(args.redis.as_str(), args.scope.as_str())
        };
        if let Some(share) = args.fallback_share {
            // Alone while Redis is cut, each replica keeps this share of the fleet's rate.
            redis = redis.fallback_share(share);
        }
        redis.build().map_err(|e| format!("Redis limits: {e}"))
    };
    let mut builder = Limits::builder();
    if let Some((n, per)) = args.pacing {
        builder = builder.pacing(Pacing::new(n, per));
    }
    builder = match args.mode {
        Mode::FleetCooldown | Mode::Unpaced => builder.without_pacing(),
        Mode::Adaptive => builder.shared_cooldown(false),
        _ => builder,
    };
    Ok((redis(builder)?, true))
}

/// The child's client, its limits (to read the Redis store's fallbacks at the end) and
/// where they are kept.
pub(crate) fn build_client(
    args: &ChildArgs,
) -> Result<(ClientWithMiddleware, Option<Limits>, &'static str), String> {
    let inner = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| format!("reqwest client: {e}"))?;
    let builder = reqwest_middleware::ClientBuilder::new(inner);
    let retry = || match args.retries {
        Some(n) => TelEchoRetry::new(RetryPolicy::builder().max_retries(n).build()),
        None => TelEchoRetry::default(),
    };
    Ok(match args.mode {
        Mode::PerProcess => (builder.with(retry()).build(), None, "none"),
        Mode::ReqwestRetry => {
            let backoff = ExponentialBackoff::builder()
                .build_with_max_retries(args.retries.unwrap_or(DEFAULT_RETRIES));
            let rr = RetryTransientMiddleware::new_with_policy(backoff);
            (builder.with(rr).build(), None, "none")
        }
        _ => {
            let (limits, in_redis) = limits(args)?;
            let client = builder.with(retry().with_limits(limits.clone())).build();
            let store = if in_redis { "redis" } else { "process" };
            (client, Some(limits), store)
        }
    })
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

/// Sends one request, by `end` at the latest: how it ended.
async fn send(client: &ClientWithMiddleware, url: &str, end: Instant) -> Outcome {
    let send = client.get(url).bearer_auth(API_KEY).send();
    match tokio::time::timeout_at(end, send).await {
        Err(_) => Outcome::Cap,
        Ok(Ok(resp)) if resp.status().is_success() => {
            // Read the body, as a real client would.
            let _ = tokio::time::timeout_at(end, resp.bytes()).await;
            Outcome::Ok
        }
        Ok(Ok(resp)) => Outcome::Status(resp.status().as_u16()),
        Ok(Err(e)) => Outcome::Error(error_word(&e)),
    }
}

/// Starts the child's tasks: one per request of an open load, `tasks` loops of a closed
/// one. Each hands back the reports of its requests.
fn spawn_load(
    args: &ChildArgs,
    client: &ClientWithMiddleware,
    url: &str,
    start: Instant,
) -> tokio::task::JoinSet<Vec<Report>> {
    let end = start + args.load.end();
    let done_by = end + args.load.drain();
    let mut tasks = tokio::task::JoinSet::new();
    match args.load {
        Load::Open { schedule, cfg } => {
            for k in (args.index..cfg.requests).step_by(cfg.children) {
                let due = start + cfg.due(schedule, k);
                let (client, url) = (client.clone(), url.to_string());
                tasks.spawn(async move {
                    tokio::time::sleep_until(due).await;
                    let outcome = send(&client, &url, done_by).await;
                    vec![Report::new(k, start, due, outcome)]
                });
            }
        }
        Load::Closed { tasks: n, .. } => {
            // Request numbers as in an open load: this child's are `index` mod `children`.
            let next = Arc::new(AtomicUsize::new(0));
            let (index, children) = (args.index, args.children);
            for _ in 0..n {
                let (client, url, next) = (client.clone(), url.to_string(), Arc::clone(&next));
                tasks.spawn(async move {
                    let mut reports = Vec::new();
                    tokio::time::sleep_until(start).await;
                    while Instant::now() < end {
                        let due = Instant::now();
                        let outcome = send(&client, &url, done_by).await;
                        let failed = outcome != Outcome::Ok;
                        let k = next.fetch_add(1, Ordering::Relaxed) * children + index;
                        reports.push(Report::new(k, start, due, outcome));
                        if failed {
                            tokio::time::sleep(PAUSE_AFTER_FAILURE).await;
                        }
                    }
                    reports
                });
            }
        }
    }
    tasks
}

pub(crate) async fn child(args: ChildArgs) -> Result<(), String> {
    let (client, store, store_word) = build_client(&args)?;
    let url = format!("http://{}{PATH}", args.server);
    let mut out = std::io::stdout().lock();
    let say = |out: &mut std::io::StdoutLock<'_>, line: &str| {
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(|e| format!("stdout: {e}"))
    };
    say(&mut out, &format!("store {store_word}"))?;
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

    let mut tasks = spawn_load(&args, &client, &url, start);
    let mut reports = Vec::new();
    while let Some(done) = tasks.join_next().await {
        reports.extend(done.map_err(|e| format!("a request task failed: {e}"))?);
    }
    for r in &reports {
        say(&mut out, &r.line())?;
    }
    if let Some(store) = store {
        say(&mut out, &format!("fallbacks {}", store.fallbacks()))?;
    }
    say(&mut out, "done")
}
