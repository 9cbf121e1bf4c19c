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

mod chart;
mod child;
mod clock;
mod proxy;
mod report;
mod run;
mod server;
mod spec;

use std::process::ExitCode;
use std::time::Duration;

use crate::child::{child, ChildArgs};
use crate::clock::unix_ns;
use crate::proxy::RedisUrl;
use crate::report::{machine_line, print_table, Stats};
use crate::run::run;
use crate::spec::{plan, Config, Spec};

/// The API key every child sends (the mock checks it). It never reaches Redis: the scope
/// names the fleet's limits there.
pub(crate) const API_KEY: &str = "tel_sk_fleet_0123456789";
/// The path every request asks for.
pub(crate) const PATH: &str = "/v1/agents";
/// Retries per request, the same for every mode.
pub(crate) const MAX_RETRIES: u32 = 10;
/// A run ends this many floors after it starts: requests not done by then are lost.
pub(crate) const CAP_FLOORS: u32 = 3;
/// How long children may take to start and build their clients.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the parent waits for results past the run's cap.
pub(crate) const REPORT_GRACE: Duration = Duration::from_secs(5);

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
        std::fs::write(&path, chart::svg(&results)).map_err(|e| format!("writing {path}: {e}"))?;
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
