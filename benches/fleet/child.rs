//! The child: one replica, sending its requests and reporting how each ended.

use std::io::{BufRead, Write as _};
use std::net::SocketAddr;
use std::time::Duration;

use reqwest_middleware::ClientWithMiddleware;
use reqwest_retry::policies::ExponentialBackoff;
use reqwest_retry::RetryTransientMiddleware;
use telecho_retry::limits::{Limits, Pacing};
use telecho_retry::{RetryPolicy, TelEchoRetry};
use tokio::time::Instant;

use crate::clock::{instant_of, micros_since};
use crate::spec::{Config, Mode, Workload};
use crate::{API_KEY, MAX_RETRIES, PATH, READY_TIMEOUT};

/// What a child is told on its command line.
#[derive(Debug)]
pub(crate) struct ChildArgs {
    pub(crate) server: SocketAddr,
    pub(crate) mode: Mode,
    pub(crate) workload: Workload,
    pub(crate) redis: String,
    pub(crate) scope: String,
    pub(crate) index: usize,
    pub(crate) cfg: Config,
}

impl ChildArgs {
    pub(crate) fn to_args(&self) -> Vec<String> {
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
    pub(crate) fn parse(args: &[String]) -> Result<ChildArgs, String> {
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
pub(crate) fn base_policy() -> telecho_retry::RetryPolicyBuilder {
    RetryPolicy::builder().max_retries(MAX_RETRIES)
}

/// The fleet modes' `TelEchoRetry`: limits kept in Redis under the run's scope, paced 2 %
/// under the server's limit in `fleet-pacing`; and the store, to read its fallbacks at the end.
pub(crate) fn fleet_retry(args: &ChildArgs) -> Result<(TelEchoRetry, Limits), String> {
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
pub(crate) fn build_client(
    args: &ChildArgs,
) -> Result<(ClientWithMiddleware, Option<Limits>), String> {
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
pub(crate) enum Outcome {
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
    pub(crate) fn word(&self) -> String {
        match self {
            Outcome::Ok => "ok".into(),
            Outcome::Status(s) => format!("status-{s}"),
            Outcome::Error(e) => format!("error-{e}"),
            Outcome::Cap => "cap".into(),
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Outcome> {
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
pub(crate) fn error_word(e: &reqwest_middleware::Error) -> String {
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
pub(crate) struct Report {
    pub(crate) k: usize,
    pub(crate) due_us: i64,
    pub(crate) end_us: i64,
    pub(crate) outcome: Outcome,
}

impl Report {
    pub(crate) fn line(&self) -> String {
        format!(
            "req {} {} {} {}",
            self.k,
            self.due_us,
            self.end_us,
            self.outcome.word()
        )
    }

    pub(crate) fn parse(line: &str) -> Option<Report> {
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

pub(crate) async fn child(args: ChildArgs) -> Result<(), String> {
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
