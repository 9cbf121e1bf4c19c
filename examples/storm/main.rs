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
//!
//! This file holds the settings, the scenarios and strategies, and `main`; the server is in
//! module `server`, the clients in `clients`, one storm in `simulation`, the measures and
//! the tables in `measures`, and the chart in `chart`.

mod chart;
mod clients;
mod measures;
mod server;
mod simulation;

use std::convert::Infallible;
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

use chart::svg;
use clients::{client_rng, our_client, their_client, Theirs};
use measures::{metrics, print_table, seed_summary};
use server::{request, Server};
use simulation::{simulate, Run};

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
