//! The `telecho-retry` demo: `cargo run --example demo`.
//!
//! Starts an in-process mock of the TelEcho API on `127.0.0.1:0` (see
//! `examples/support/mock.rs`) and drives it through both adapters of the crate, the
//! `reqwest_middleware` middleware and the tower layer over a hyper-util client. Each
//! scenario prints a timeline of its attempts: when each one reached the server, what the
//! server answered (status, TelEcho code, `Retry-After`), what the crate decided and how
//! long it waited. The crate's decisions are read from its own `tracing` events.
//!
//! Scenarios (`--scenario NAME` runs one):
//!
//! - `rate-limit`: starting a call meets 429 `rate_limit_per_minute` with `Retry-After: 1`,
//!   then a 503, then succeeds with 201;
//! - `bad-key`: a bad API key fails at once, as a typed `invalid_api_key` error;
//! - `long-retry-after`: a `Retry-After` longer than the policy's cap is handed back at once,
//!   and later requests to the same API fail at once until it passes;
//! - `streaming`: a streaming body larger than the replay buffer is sent once; a small one
//!   is replayed.
//!
//! Delays are shortened through the policy builder so that the whole demo ends in under
//! 15 seconds. The demo checks every scenario (attempts, final status, code, timing) and
//! exits non-zero if one does not behave as printed: it doubles as a smoke test.
//!
//! `--verbose` also prints the crate's `tracing` events (target `telecho_retry`, DEBUG).
//!
//! With feature `metrics` (`cargo run --example demo --features metrics`), it ends with a
//! summary of the crate's metrics for the run, read from `metrics-util`'s debugging
//! recorder and checked against the `RetryInfo` of every request.

#[path = "../support/mock.rs"]
mod mock;

mod capture;
mod clients;
mod printing;
mod scenarios;
#[cfg(feature = "metrics")]
mod summary;

use std::cell::Cell;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use reqwest_middleware::ClientWithMiddleware;
use telecho_retry::{
    ErrorCode, HttpResponseExt, ReqwestResponseExt, ResponseError, RetryInfo, RetryPolicy,
    RetryService, StopReason, TelEchoRetry,
};
use tower::ServiceExt;

use mock::{secs, Hit, MockApi, Reply, API_KEY};

// ===== the demo's settings =====

const MAX_RETRIES: u32 = 3;
const BASE_DELAY: Duration = Duration::from_millis(150);
const MAX_DELAY: Duration = Duration::from_secs(1);
const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);
const RETRY_AFTER_SPREAD: Duration = Duration::from_millis(200);
const REPLAY_BUFFER: usize = 16 * 1024;
/// The whole demo must end within this (it is checked).
const TIME_LIMIT: Duration = Duration::from_secs(15);
/// Scheduling and loopback slack allowed on top of a computed delay.
const SLACK: Duration = Duration::from_millis(750);

const SCENARIOS: &[(&str, &str)] = &[
    (
        "rate-limit",
        "start a call: 429 rate_limit_per_minute (Retry-After: 1), then 503, then 201",
    ),
    (
        "bad-key",
        "a bad API key fails at once, as a typed invalid_api_key error",
    ),
    (
        "long-retry-after",
        "a Retry-After above the cap (3600 s > 5 s) is handed back at once; later requests fail fast",
    ),
    (
        "streaming",
        "a streaming body larger than the replay buffer is sent once; a small one is replayed",
    ),
];

const HELP: &str = "\
telecho-retry demo: a mock TelEcho API on 127.0.0.1, driven through the crate's reqwest
middleware and tower layer, one printed timeline per scenario.

USAGE:
    cargo run --example demo [-- OPTIONS]

OPTIONS:
    --scenario NAME   run only this scenario (rate-limit, bad-key, long-retry-after, streaming)
    --verbose, -v     also print the crate's tracing events (target telecho_retry, DEBUG)
    --help, -h        print this help

With --features metrics, the demo ends with a summary of the crate's metrics.

Exits 0 when every scenario behaved as printed, 1 when one did not, 2 on bad arguments.";

// ===== main =====

#[tokio::main]
async fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("error: {msg}\n\n{HELP}");
            return ExitCode::from(2);
        }
    };
    let events = capture::install(args.verbose);
    #[cfg(feature = "metrics")]
    let metrics = summary::install();
    let mut demo = Demo::start(events).await;
    demo.intro();

    let started = Instant::now();
    let mut failures = Vec::new();
    let mut ran = 0;
    for (name, what) in SCENARIOS {
        if args.scenario.as_deref().is_some_and(|s| s != *name) {
            continue;
        }
        ran += 1;
        // Each scenario starts from fresh limits: a 429 in one (its cooldown, and the rate
        // adaptive pacing learns from it) does not pace the next.
        demo.reset_clients();
        println!("\n=== scenario {name}: {what}");
        let problems = match *name {
            "rate-limit" => demo.rate_limit().await,
            "bad-key" => demo.bad_key().await,
            "long-retry-after" => demo.long_retry_after().await,
            "streaming" => demo.streaming().await,
            _ => unreachable!("every scenario has a runner"),
        };
        failures.extend(problems.into_iter().map(|p| format!("{name}: {p}")));
    }

    #[cfg(feature = "metrics")]
    failures.extend(summary::print(&metrics, &demo.tally));

    let total = started.elapsed();
    if total > TIME_LIMIT {
        failures.push(format!(
            "the demo took {}, more than its {} limit",
            secs(total),
            secs(TIME_LIMIT)
        ));
    }
    println!();
    if failures.is_empty() {
        println!(
            "All {ran} scenario(s) behaved as printed, in {} (the demo promises under {} s).",
            secs(total),
            TIME_LIMIT.as_secs()
        );
        ExitCode::SUCCESS
    } else {
        eprintln!("DEMO FAILED: {} check(s) did not hold:", failures.len());
        for f in &failures {
            eprintln!("  - {f}");
        }
        ExitCode::FAILURE
    }
}

struct Args {
    scenario: Option<String>,
    verbose: bool,
}

impl Args {
    /// `Ok(None)` for `--help`.
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
        let mut parsed = Args {
            scenario: None,
            verbose: false,
        };
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--help" | "-h" => return Ok(None),
                "--verbose" | "-v" => parsed.verbose = true,
                "--scenario" => {
                    let name = args.next().ok_or("--scenario needs a NAME")?;
                    parsed.scenario = Some(name);
                }
                other => match other.strip_prefix("--scenario=") {
                    Some(name) => parsed.scenario = Some(name.to_owned()),
                    None => return Err(format!("unknown argument {other:?}")),
                },
            }
        }
        if let Some(name) = &parsed.scenario {
            if !SCENARIOS.iter().any(|(n, _)| n == name) {
                let names: Vec<_> = SCENARIOS.iter().map(|(n, _)| *n).collect();
                return Err(format!(
                    "unknown scenario {name:?}; the scenarios are: {}",
                    names.join(", ")
                ));
            }
        }
        Ok(Some(parsed))
    }
}

// ===== the two clients =====

/// The adapter a run goes through.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    Reqwest,
    Tower,
}

impl Via {
    fn label(self) -> &'static str {
        match self {
            Via::Reqwest => "reqwest_middleware + TelEchoRetry (middleware)",
            Via::Tower => "hyper-util client + TelEchoRetry (tower layer)",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Via::Reqwest => "reqwest",
            Via::Tower => "tower",
        }
    }
}

type TowerClient = RetryService<Client<HttpConnector, Full<Bytes>>>;

struct Demo {
    mock: MockApi,
    events: capture::Events,
    /// What the demo saw, to check the metrics against (feature `metrics`).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    tally: Tally,
    reqwest: ClientWithMiddleware,
    tower: TowerClient,
}

/// One request of a scenario.
struct Call {
    method: Method,
    path: &'static str,
    key: &'static str,
    idempotency_key: Option<String>,
    body: Option<Bytes>,
}

/// What the caller got back.
struct Sent {
    /// When the request was handed to the client.
    started: Instant,
    status: StatusCode,
    info: RetryInfo,
    elapsed: Duration,
    /// The success body, or the response as a typed error.
    result: Result<Bytes, ResponseError>,
}

/// Logical requests the demo made, the retries their `RetryInfo` reported, and the
/// requests the engine refused to send.
#[derive(Default)]
struct Tally {
    requests: Cell<u64>,
    retries: Cell<u64>,
    refused: Cell<u64>,
}

impl Tally {
    fn request(&self, retries: u32) {
        self.requests.set(self.requests.get() + 1);
        self.retries.set(self.retries.get() + u64::from(retries));
    }
}
