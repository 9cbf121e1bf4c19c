//! The fleet, measured with real processes: R replicas of one service share one TelEcho
//! API key, and so one rate limit.
//!
//! ```text
//! cargo run --release -p telecho-retry-bench --features redis --example fleet       # full run, < 5 min
//! cargo run --release -p telecho-retry-bench --features redis --example fleet -- \
//!     --svg docs/fleet.svg --rate-svg docs/fleet-adaptive.svg                         # and the charts
//! cargo run -p telecho-retry-bench --features redis --example fleet -- --quick       # CI, < 90 s
//! ```
//!
//! The parent process starts a mock TelEcho server per run on `127.0.0.1:0` that enforces
//! one API key's limit and answers the excess `429` with the TelEcho envelope
//! (`rate_limit_error`, `rate_limit_per_minute`) and a `Retry-After`. It then starts the
//! run's child processes (this same binary, re-run with `--child`), each sending through a
//! `reqwest_middleware` client over loopback and reporting every request's outcome to the
//! parent on stdout, one line each. The server counts every attempt it sees; the children
//! say when each request ended and how.
//!
//! **Storm workloads** (an open loop of requests): `L` requests per fixed window of `W`
//! (windows counted from the run's start), `Retry-After` to the window's end (whole
//! seconds, rounded up); `burst` (every request at `t = 0`) and `steady` (twice the limit's
//! rate, evenly spaced across the fleet, for several windows). Modes:
//!
//! - `per-process`: a `TelEchoRetry` of its own in each child (retry budget and 429
//!   cooldown per process);
//! - `fleet-cooldown`: the limits kept in Redis (`Limits::builder().redis(..)`): a 429 seen
//!   by one child holds back all of them; no pacing;
//! - `fleet-pacing`: the same, plus client-side pacing 2 % under the server's limit (`L`
//!   per `1.02 W`), kept in Redis so that the fleet as a whole stays under it;
//! - `reqwest-retry`: `reqwest-retry` 0.9's `RetryTransientMiddleware` with its default
//!   `ExponentialBackoff` (it ignores `Retry-After`).
//!
//! Every mode gets the same number of retries ([`MAX_RETRIES`], above the crate's default
//! of 5, so that a client that waits where it should loses nothing); every other setting
//! is its default. `steady-redis-cut` is `fleet-pacing` under the steady workload with
//! Redis cut for about one window mid-run: the children reach Redis through a TCP proxy in
//! the parent, which drops every connection and refuses new ones for that window. A
//! request is *lost* when it did not end in a 2xx by the run's cap ([`CAP_FLOORS`] floors).
//!
//! **the learning workloads** (closed loops: each task sends its next request when the last
//! one ended, for the run's length), where the clients are not told the limit:
//! `limit-step` (a token bucket stepping L → 0.4 L → L), `fixed-window` (a window of
//! several seconds), `quota-headers` (the same, stating the quota in `RateLimit` and
//! `X-RateLimit-*` headers) and `redis-cut-fallback` (Redis cut, then back empty, with 8
//! and with 2 processes); see [`workloads`] for the sizes and [`learn`] for the fields.
//! Modes: `default` (`TelEchoRetry::default()`, limits in Redis), `adaptive`
//! (`Pacing::adaptive()`, in Redis if the crate's build accepts it, else per process:
//! `store=` says which), `fixed` (`Pacing` at the true limit, in Redis) and
//! `reqwest-retry` (the crate's default of 5 retries). Each run prints one line: mode,
//! workload, `key=value` fields and `goal_met=yes/no` against their goals.
//!
//! Runs go side by side in groups (each run with its own server, key limit, children and
//! Redis scope), so that the whole example stays under five minutes (see
//! [`Sizes::plan`](workloads::Sizes::plan)). The example exits non-zero when a fleet mode
//! of a storm workload (`fleet-cooldown`, `fleet-pacing`) loses a request, when a child
//! fails, or on an internal error; everything else, missed goals included, is printed as
//! measured.
//!
//! Redis: `REDIS_URL`, by default `redis://127.0.0.1:6379`; `rediss://` with the feature
//! `redis-tls` (a private CA: `SSL_CERT_FILE`), a cluster's node URLs separated by commas
//! (or one node's URL) with `redis-cluster`. The parent checks it with a client of its own
//! before any run. Each run uses a scope of its own (`fleet-<pid>-<time>-<mode>-<workload>`);
//! nothing is flushed, but for the scope of a `redis-cut-fallback` run, whose keys are
//! deleted (`SCAN` and `DEL`) as its cut ends. The runs that cut Redis (through the proxy,
//! which stands in for one address on 127.0.0.1) are skipped, in one printed line, on a
//! cluster and over TLS to a host other than `127.0.0.1` or `localhost` (the certificate
//! must name the host the children dial).

mod chart;
mod child;
mod clock;
mod deployment;
mod learn;
mod proxy;
mod rate;
mod report;
mod run;
mod server;
mod spec;
mod storm;
mod workloads;

use std::process::ExitCode;
use std::time::Duration;

use crate::child::{child, ChildArgs};
use crate::clock::unix_ns;
use crate::deployment::Deployment;
use crate::run::{run, RunResult};
use crate::spec::Spec;
use crate::storm::{machine_line, print_table, Stats};
use crate::workloads::Sizes;

/// The API key every child sends (the mock checks it). It never reaches Redis: the scope
/// names the fleet's limits there.
pub(crate) const API_KEY: &str = "tel_sk_fleet_0123456789";
/// The path every request asks for.
pub(crate) const PATH: &str = "/v1/agents";
/// Retries per request in the storm workloads, the same for every mode.
pub(crate) const MAX_RETRIES: u32 = 10;
/// The crate's default retries (`RetryPolicy::default()`), given to reqwest-retry in issue
/// 23's workloads, where the crate's modes keep their defaults.
pub(crate) const DEFAULT_RETRIES: u32 = 5;
/// A storm run ends this many floors after it starts: requests not done by then are lost.
pub(crate) const CAP_FLOORS: u32 = 3;
/// How long children may take to start and build their clients.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the parent waits for results past the run's end.
pub(crate) const REPORT_GRACE: Duration = Duration::from_secs(5);

const USAGE: &str =
    "usage: fleet [--quick] [--svg PATH] [--rate-svg PATH] [--rate-csv PATH] [--only NAME]
  --quick          smaller and shorter runs (CI)
  --svg PATH       also draw the storm chart into PATH
  --rate-svg PATH  also draw the adaptive limit-step runs' rate against the limit into PATH
  --rate-csv PATH  and write its numbers (0.5 s bins) into PATH
  --only NAME      only the runs of this mode or workload (repeatable)
Redis: REDIS_URL (default redis://127.0.0.1:6379): a redis:// or rediss:// URL (feature
redis-tls; a private CA: SSL_CERT_FILE=ca.pem), or a cluster's node URLs separated by commas
(feature redis-cluster).";

/// What the command line asks for.
#[derive(Default)]
struct Options {
    quick: bool,
    svg: Option<String>,
    rate_svg: Option<String>,
    rate_csv: Option<String>,
    only: Vec<String>,
}

impl Options {
    fn parse(args: Vec<String>) -> Result<Options, String> {
        let mut o = Options::default();
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            let mut value = |what: &str| it.next().ok_or(format!("{a} needs {what}"));
            match a.as_str() {
                "--quick" => o.quick = true,
                "--svg" => o.svg = Some(value("a path")?),
                "--rate-svg" => o.rate_svg = Some(value("a path")?),
                "--rate-csv" => o.rate_csv = Some(value("a path")?),
                "--only" => o.only.push(value("a mode or workload")?),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(o)
    }
}

/// Whether a lost request fails the example: in the storm workloads' fleet modes, as
/// before. In the learning workloads `lost=0` is one of the goals, printed, not enforced.
fn loss_fails(spec: &Spec) -> bool {
    spec.storm() && spec.mode.fleet()
}

fn write(path: &str, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("writing {path}: {e}"))?;
    println!("wrote {path}");
    Ok(())
}

/// The groups of runs that `--only` asks for (all if it is not given) and that can run on
/// this Redis; says in one line which it leaves out, and why.
fn runs_here(plan: Vec<Vec<Spec>>, only: &[String], redis: &Deployment) -> Vec<Vec<Spec>> {
    let why_no_cut = redis.why_no_cut();
    let mut skipped: Vec<String> = Vec::new();
    let mut runs = 0;
    let plan = plan
        .into_iter()
        .map(|mut group| {
            group.retain(|s| {
                only.is_empty()
                    || only
                        .iter()
                        .any(|n| n == s.mode.name() || n == s.workload.name())
            });
            group.retain(|s| {
                if why_no_cut.is_none() || !s.workload.cuts_redis() {
                    return true;
                }
                runs += 1;
                let slug = s.workload.slug();
                if !skipped.contains(&slug) {
                    skipped.push(slug);
                }
                false
            });
            group
        })
        .filter(|group| !group.is_empty())
        .collect();
    if let Some(why) = why_no_cut.filter(|_| runs > 0) {
        let s = if runs == 1 { "" } else { "s" };
        println!("skipped {runs} run{s} ({}): {why}", skipped.join(", "));
    }
    plan
}

async fn parent(o: Options) -> Result<bool, String> {
    let sizes = Sizes::of(o.quick);
    let cfg = sizes.storm;
    let mut redis = Deployment::parse(
        &std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
    )?;
    redis.check().await?;
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
    println!(
        "limit-step: L = {}/s, phases of {} s (L, 0.4 L, L), {} processes; fixed-window and \
         quota-headers: {} per {} s window, {} windows, {} tasks in {} processes; \
         redis-cut-fallback: {}/s, Redis cut from {} s to {} s and back empty; the crate's \
         defaults (reqwest-retry: {DEFAULT_RETRIES} retries)",
        sizes.step_limit,
        sizes.step_phase.as_secs_f64(),
        sizes.step_children,
        sizes.window_limit,
        sizes.window.as_secs_f64(),
        sizes.windows,
        sizes.window_tasks,
        sizes.window_children,
        sizes.cut_quota,
        sizes.cut_before.as_secs_f64(),
        (sizes.cut_before + sizes.cut_len).as_secs_f64(),
    );
    let run_id = format!("fleet-{}-{}", std::process::id(), unix_ns() / 1_000_000);
    let plan = runs_here(sizes.plan(o.quick), &o.only, &redis);
    let mut results: Vec<RunResult> = Vec::new();
    for group in plan {
        let names: Vec<String> = group.iter().map(Spec::label).collect();
        println!("running side by side: {}", names.join(", "));
        let runs = group.iter().map(|spec| {
            let scope = format!("{run_id}-{}-{}", spec.mode.name(), spec.workload.slug());
            run(*spec, sizes.setup(*spec), redis.clone(), scope)
        });
        for r in futures_util::future::join_all(runs).await {
            results.push(r?);
        }
    }
    if results.is_empty() {
        return Err(format!(
            "no run to do: none matches --only {}, or this Redis takes none that does",
            o.only.join(" --only ")
        ));
    }
    results.sort_by_key(|r| (r.spec.workload, r.spec.mode));
    let (storms, learned): (Vec<RunResult>, Vec<RunResult>) =
        results.into_iter().partition(|r| r.spec.storm());
    let storms: Vec<(RunResult, Stats)> = storms
        .into_iter()
        .map(|r| {
            let s = Stats::of(&r);
            (r, s)
        })
        .collect();
    let mut ok = true;
    let mut lines = Vec::new();
    if !storms.is_empty() {
        print_table(&storms);
    }
    for (r, s) in &storms {
        ok &= r.failures.is_empty() && !(loss_fails(&r.spec) && s.lost > 0);
        lines.push(machine_line(r, s));
    }
    if !learned.is_empty() {
        println!();
    }
    for r in &learned {
        let lost = learn::lost(r);
        ok &= r.failures.is_empty() && !(loss_fails(&r.spec) && lost > 0);
        for f in &r.failures {
            println!("  {}: {f}", r.spec.label());
        }
        if lost > 0 {
            println!("  {}: lost {lost} ({})", r.spec.label(), learn::lost_by(r));
        }
        let (line, met) = learn::line(r, &sizes);
        if !met {
            println!("  {}: goal not met", r.spec.label());
        }
        lines.push(line);
    }
    if let Some(path) = &o.svg {
        write(path, &chart::svg(&storms))?;
    }
    let learned: Vec<&RunResult> = learned.iter().collect();
    if let Some(path) = &o.rate_csv {
        write(path, &rate::csv(&learned))?;
    }
    if let Some(path) = &o.rate_svg {
        write(path, &rate::svg(&learned))?;
    }
    println!();
    for l in &lines {
        println!("{l}");
    }
    Ok(ok)
}

fn runtime(worker_threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = worker_threads {
        b.worker_threads(n);
    }
    b.enable_all().build()
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
        let rt = match runtime(Some(2)) {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("fleet child: runtime: {e}");
                return ExitCode::from(2);
            }
        };
        let index = parsed.index;
        let result = rt.block_on(child(parsed));
        // Do not wait for background tasks (Redis connections) to wind down.
        std::process::exit(match result {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("fleet child {index}: {e}");
                1
            }
        });
    }
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let options = match Options::parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let rt = match runtime(None) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fleet: runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(parent(options)) {
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
