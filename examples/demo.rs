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

#[path = "support/mock.rs"]
mod mock;

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

impl Demo {
    async fn start(events: capture::Events) -> Demo {
        let (reqwest, tower) = Demo::clients();
        Demo {
            mock: MockApi::start().await,
            events,
            tally: Tally::default(),
            reqwest,
            tower,
        }
    }

    /// Both clients, sharing one `TelEchoRetry` (and so its budget and cooldown).
    fn clients() -> (ClientWithMiddleware, TowerClient) {
        // One policy for both adapters: the TelEcho contract, with delays shortened so that
        // the demo is quick. The defaults are base 1 s, cap 30 s, Retry-After cap 60 s.
        let policy = RetryPolicy::builder()
            .max_retries(MAX_RETRIES)
            .base_delay(BASE_DELAY)
            .max_delay(MAX_DELAY)
            .max_retry_after(MAX_RETRY_AFTER)
            .retry_after_spread(RETRY_AFTER_SPREAD)
            .build();
        let retry = TelEchoRetry::new(policy).replay_buffer(REPLAY_BUFFER);

        let reqwest = reqwest_middleware::ClientBuilder::new(
            reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("a reqwest client"),
        )
        .with(retry.clone())
        .build();

        let hyper = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let tower = tower::ServiceBuilder::new().layer(retry).service(hyper);
        (reqwest, tower)
    }

    fn reset_clients(&mut self) {
        (self.reqwest, self.tower) = Demo::clients();
    }

    fn intro(&self) {
        println!("telecho-retry demo");
        println!(
            "A mock TelEcho API listens on {} (in this process). Each scenario sends real HTTP",
            self.mock.url("")
        );
        println!("requests through the crate's reqwest middleware and/or its tower layer.");
        println!();
        println!(
            "Policy, shortened so that the whole demo ends in under {} s (defaults in brackets):",
            TIME_LIMIT.as_secs()
        );
        println!(
            "  max_retries {MAX_RETRIES} [5]; backoff base {} ms, doubling, jittered, capped at {} s [1 s .. 30 s];",
            BASE_DELAY.as_millis(),
            MAX_DELAY.as_secs()
        );
        println!(
            "  Retry-After honoured up to {} s [60 s], plus 0..{} ms of spread [500 ms]; replay buffer {} KiB [64 KiB].",
            MAX_RETRY_AFTER.as_secs(),
            RETRY_AFTER_SPREAD.as_millis(),
            REPLAY_BUFFER / 1024
        );
        println!();
        println!("Timeline columns: time since the request was sent | attempt | what the server");
        println!(
            "answered | what the crate decided (from its tracing events) | how long it waited."
        );
    }

    // ===== scenarios =====

    async fn rate_limit(&self) -> Vec<String> {
        let path = "/v1/calls";
        let mut problems = Vec::new();
        for via in [Via::Reqwest, Via::Tower] {
            self.mock.script(
                path,
                vec![
                    Reply::error(429, "rate_limit_per_minute").retry_after(1),
                    Reply::unavailable(),
                    Reply::json(201, r#"{"id":"tel_call_demo42","status":"queued"}"#),
                ],
            );
            let call = Call {
                method: Method::POST,
                path,
                key: API_KEY,
                idempotency_key: Some(format!("demo-call-{}", via.short())),
                body: Some(Bytes::from_static(
                    br#"{"agent_id":"tel_agent_demo","to":"+15550100"}"#,
                )),
            };
            println!(
                "\n  POST {path} with Idempotency-Key: demo-call-{}, via {}",
                via.short(),
                via.label()
            );
            let mut c = Checks::default();
            match self.send(via, call).await {
                Ok(sent) => {
                    let hits = self.report(&sent, path);
                    c.expect(sent.status == StatusCode::CREATED, "final status is 201");
                    c.expect(sent.info.attempts() == 3, "3 attempts");
                    c.expect(hits.len() == 3, "the server saw 3 requests");
                    if let [h1, h2, h3] = &hits[..] {
                        let gap1 = h2.at - h1.at;
                        let gap2 = h3.at - h2.at;
                        c.expect(
                            gap1 >= Duration::from_secs(1),
                            format!("attempt 2 waited out Retry-After: 1 (gap {})", secs(gap1)),
                        );
                        c.expect(
                            gap1 <= Duration::from_secs(1) + RETRY_AFTER_SPREAD + SLACK,
                            format!(
                                "attempt 2 came no later than 1 s + spread (gap {})",
                                secs(gap1)
                            ),
                        );
                        // Retry 2 on the backoff ladder: nominal 2 x base, jittered to [base, 3 x base].
                        c.expect(
                            gap2 >= BASE_DELAY && gap2 <= BASE_DELAY * 3 + SLACK,
                            format!(
                                "attempt 3 came after a backoff in [{}, {}] (gap {})",
                                secs(BASE_DELAY),
                                secs(BASE_DELAY * 3),
                                secs(gap2)
                            ),
                        );
                    }
                    let key = format!("demo-call-{}", via.short());
                    c.expect(
                        hits.iter()
                            .all(|h| h.idempotency_key.as_deref() == Some(&key)),
                        "every attempt carried the same Idempotency-Key",
                    );
                    c.expect(
                        sent.info.stop_reason() == Some(StopReason::Success),
                        "stop reason is success",
                    );
                    c.expect(
                        sent.result
                            .as_ref()
                            .is_ok_and(|b| b.starts_with(br#"{"id":"tel_call_demo42""#)),
                        "the caller got the created call",
                    );
                    println!("  The 429 and the 503 were absorbed: the caller only sees the 201.");
                }
                Err(e) => c.fail(e),
            }
            problems.extend(c.finish(via));
        }
        problems
    }

    async fn bad_key(&self) -> Vec<String> {
        let path = "/v1/agents";
        let mut problems = Vec::new();
        for via in [Via::Reqwest, Via::Tower] {
            self.mock
                .script(path, vec![Reply::json(200, r#"{"data":[]}"#)]);
            let call = Call {
                method: Method::GET,
                path,
                key: "tel_sk_not_a_real_key",
                idempotency_key: None,
                body: None,
            };
            println!(
                "\n  GET {path} with Authorization: Bearer tel_sk_not_a_real_key, via {}",
                via.label()
            );
            let mut c = Checks::default();
            match self.send(via, call).await {
                Ok(sent) => {
                    self.report(&sent, path);
                    c.expect(
                        sent.status == StatusCode::UNAUTHORIZED,
                        "final status is 401",
                    );
                    c.expect(
                        sent.info.attempts() == 1,
                        "1 attempt: a 4xx is never retried",
                    );
                    c.expect(
                        sent.info.stop_reason() == Some(StopReason::Fatal),
                        "stop reason is fatal",
                    );
                    c.expect(
                        sent.elapsed < Duration::from_millis(500),
                        format!("handed back at once (took {})", secs(sent.elapsed)),
                    );
                    match &sent.result {
                        Err(err) => {
                            println!("  Typed error: {err}");
                            match err.code() {
                                Some(ErrorCode::InvalidApiKey) => println!(
                                    "  `match err.code()` hits ErrorCode::InvalidApiKey: fix the key, retrying cannot help."
                                ),
                                other => c.fail(format!(
                                    "expected ErrorCode::InvalidApiKey, got {other:?}"
                                )),
                            }
                        }
                        Ok(_) => c.fail("expected a typed ResponseError, got a success"),
                    }
                }
                Err(e) => c.fail(e),
            }
            problems.extend(c.finish(via));
        }
        problems
    }

    async fn long_retry_after(&mut self) -> Vec<String> {
        let path = "/v1/phone-numbers";
        let mut problems = Vec::new();
        self.mock.script(
            path,
            vec![
                Reply::error(429, "rate_limit_per_hour").retry_after(3600),
                Reply::json(200, r#"{"data":[]}"#),
            ],
        );
        let call = Call {
            method: Method::GET,
            path,
            key: API_KEY,
            idempotency_key: None,
            body: None,
        };
        println!("\n  GET {path}, via {}", Via::Reqwest.label());
        let mut c = Checks::default();
        match self.send(Via::Reqwest, call).await {
            Ok(sent) => {
                self.report(&sent, path);
                c.expect(
                    sent.status == StatusCode::TOO_MANY_REQUESTS,
                    "final status is 429",
                );
                c.expect(sent.info.attempts() == 1, "1 attempt");
                c.expect(
                    sent.info.stop_reason() == Some(StopReason::RetryAfterTooLong),
                    "stop reason is retry_after_too_long",
                );
                c.expect(
                    sent.elapsed < Duration::from_millis(500),
                    format!("handed back at once (took {})", secs(sent.elapsed)),
                );
                match &sent.result {
                    Err(err) => {
                        println!("  Typed error: {err}");
                        println!(
                            "  err.retry_after() is {:?}: the caller decides what to do (queue the job, tell the user).",
                            err.retry_after().unwrap_or_default()
                        );
                        c.expect(
                            err.code() == Some(&ErrorCode::RateLimitPerHour),
                            "code is rate_limit_per_hour",
                        );
                        c.expect(
                            err.retry_after() == Some(Duration::from_secs(3600)),
                            "the Retry-After header reached the caller intact",
                        );
                    }
                    Ok(_) => c.fail("expected a typed ResponseError, got a success"),
                }
            }
            Err(e) => c.fail(e),
        }
        problems.extend(c.finish(Via::Reqwest));

        // The same `TelEchoRetry` serves the tower client: until the hour passes, it does
        // not send what would meet the same 429, and fails at once instead.
        println!("\n  GET {path} again, via {}", Via::Tower.label());
        let mut c = Checks::default();
        let hits_before = self.mock.hits(path).len();
        let req = http::Request::get(self.mock.url(path))
            .header(AUTHORIZATION, format!("Bearer {API_KEY}"))
            .body(Full::new(Bytes::new()))
            .expect("a request");
        let start = Instant::now();
        self.tally.request(0);
        self.tally.refused.set(self.tally.refused.get() + 1);
        match self.tower.clone().oneshot(req).await {
            Ok(resp) => c.fail(format!(
                "expected a rate-limited error, got {}",
                resp.status()
            )),
            Err(err) => {
                println!(
                    "  Not sent: {err} (RetryError, kind {:?}, {} attempts)",
                    err.kind(),
                    err.info().attempts()
                );
                c.expect(err.is_rate_limited(), "the error says rate limited");
                c.expect(
                    err.cooldown()
                        .is_some_and(|c| c > Duration::from_secs(3500)),
                    "it carries the remaining wait",
                );
                c.expect(err.info().attempts() == 0, "0 attempts");
            }
        }
        c.expect(
            start.elapsed() < Duration::from_millis(500),
            "failed at once",
        );
        c.expect(
            self.mock.hits(path).len() == hits_before,
            "nothing reached the server",
        );
        problems.extend(c.finish(Via::Tower));
        problems
    }

    async fn streaming(&self) -> Vec<String> {
        let path = "/v1/agents/tel_agent_demo/files";
        let mut problems = Vec::new();
        println!(
            "\n  (Streaming bodies are the reqwest middleware's job: it records up to the replay buffer,"
        );
        println!(
            "  {} KiB here, while sending. Under the tower layer, the request's body type decides.)",
            REPLAY_BUFFER / 1024
        );
        for (size, replies) in [
            (
                32 * 1024,
                vec![Reply::unavailable(), Reply::json(201, "{}")],
            ),
            (
                4 * 1024,
                vec![
                    Reply::unavailable(),
                    Reply::json(201, r#"{"id":"tel_file_demo7"}"#),
                ],
            ),
        ] {
            let fits = size <= REPLAY_BUFFER;
            self.mock.script(path, replies);
            println!(
                "\n  POST {path} with a {} KiB streaming body (reqwest::Body::wrap_stream), {} the {} KiB buffer",
                size / 1024,
                if fits { "within" } else { "larger than" },
                REPLAY_BUFFER / 1024
            );
            let mut c = Checks::default();
            match self.send_stream(path, size).await {
                Ok(sent) => {
                    let hits = self.report(&sent, path);
                    c.expect(
                        hits.iter().all(|h| h.body_len == size),
                        format!("every attempt delivered all {size} bytes"),
                    );
                    if fits {
                        c.expect(sent.status == StatusCode::CREATED, "final status is 201");
                        c.expect(
                            sent.info.attempts() == 2,
                            "2 attempts: the body was replayed",
                        );
                        println!("  The body fit the buffer, so the retry replayed it.");
                    } else {
                        c.expect(
                            sent.status == StatusCode::SERVICE_UNAVAILABLE,
                            "final status is the 503",
                        );
                        c.expect(sent.info.attempts() == 1, "1 attempt: sent once");
                        c.expect(
                            sent.info.stop_reason() == Some(StopReason::NotReplayable),
                            "stop reason is not_replayable",
                        );
                        c.expect(
                            sent.elapsed < Duration::from_millis(500),
                            format!("handed back at once (took {})", secs(sent.elapsed)),
                        );
                        println!(
                            "  The body outgrew the buffer, so it could not be sent again: the 503 is handed back."
                        );
                    }
                }
                Err(e) => c.fail(e),
            }
            problems.extend(c.finish(Via::Reqwest));
        }
        problems
    }

    // ===== sending =====

    async fn send(&self, via: Via, call: Call) -> Result<Sent, String> {
        self.events.clear();
        let sent = self.send_once(via, call).await;
        self.tally
            .request(sent.as_ref().map_or(0, |s| s.info.retries()));
        sent
    }

    async fn send_once(&self, via: Via, call: Call) -> Result<Sent, String> {
        let start = Instant::now();
        let url = self.mock.url(call.path);
        let auth = format!("Bearer {}", call.key);
        let (status, info, result) = match via {
            Via::Reqwest => {
                let mut req = self
                    .reqwest
                    .request(call.method, url)
                    .header(AUTHORIZATION, auth);
                if let Some(key) = call.idempotency_key {
                    req = req.header("idempotency-key", key);
                }
                if let Some(body) = call.body {
                    req = req.header(CONTENT_TYPE, "application/json").body(body);
                }
                let resp = req
                    .send()
                    .await
                    .map_err(|e| format!("request failed: {e}"))?;
                let status = resp.status();
                let info = retry_info(resp.extensions())?;
                // `api_error_for_status` turns a 4xx/5xx into a typed `ResponseError`.
                let result = match resp.api_error_for_status().await {
                    Ok(resp) => Ok(resp
                        .bytes()
                        .await
                        .map_err(|e| format!("reading the body failed: {e}"))?),
                    Err(err) => Err(err),
                };
                (status, info, result)
            }
            Via::Tower => {
                let mut req = http::Request::builder()
                    .method(call.method)
                    .uri(url)
                    .header(AUTHORIZATION, auth);
                if let Some(key) = call.idempotency_key {
                    req = req.header("idempotency-key", key);
                }
                if call.body.is_some() {
                    req = req.header(CONTENT_TYPE, "application/json");
                }
                let req = req
                    .body(Full::new(call.body.unwrap_or_default()))
                    .map_err(|e| format!("bad request: {e}"))?;
                let resp = self
                    .tower
                    .clone()
                    .oneshot(req)
                    .await
                    .map_err(|e| format!("request failed: {e}"))?;
                let status = resp.status();
                let info = retry_info(resp.extensions())?;
                let (parts, body) = resp.into_parts();
                let body = body
                    .collect()
                    .await
                    .map_err(|e| format!("reading the body failed: {e}"))?
                    .to_bytes();
                // The same typed error, for an `http::Response<Bytes>`.
                let result = http::Response::from_parts(parts, body)
                    .api_error_for_status()
                    .map(http::Response::into_body);
                (status, info, result)
            }
        };
        Ok(Sent {
            started: start,
            status,
            info,
            elapsed: start.elapsed(),
            result,
        })
    }

    /// POSTs `size` bytes as a stream of 1 KiB chunks through the reqwest middleware.
    async fn send_stream(&self, path: &str, size: usize) -> Result<Sent, String> {
        self.events.clear();
        let sent = self.send_stream_once(path, size).await;
        self.tally
            .request(sent.as_ref().map_or(0, |s| s.info.retries()));
        sent
    }

    async fn send_stream_once(&self, path: &str, size: usize) -> Result<Sent, String> {
        let start = Instant::now();
        let chunks =
            (0..size / 1024).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 1024])));
        let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
        let resp = self
            .reqwest
            .post(self.mock.url(path))
            .header(AUTHORIZATION, format!("Bearer {API_KEY}"))
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = resp.status();
        let info = retry_info(resp.extensions())?;
        let result = match resp.api_error_for_status().await {
            Ok(resp) => Ok(resp
                .bytes()
                .await
                .map_err(|e| format!("reading the body failed: {e}"))?),
            Err(err) => Err(err),
        };
        Ok(Sent {
            started: start,
            status,
            info,
            elapsed: start.elapsed(),
            result,
        })
    }

    // ===== printing =====

    /// Prints the timeline of the run just made and what the caller got; returns the
    /// server's record of it.
    fn report(&self, sent: &Sent, path: &str) -> Vec<Hit> {
        let hits = self.mock.hits(path);
        let events = self.events.take();
        println!(
            "    {:<8} {:<4} {:<46} {:<40} then waited",
            "time", "try", "server answered", "client decided"
        );
        for (i, hit) in hits.iter().enumerate() {
            let attempt = i as u64 + 1;
            let mut answer = format!(
                "{} {}",
                hit.status.as_u16(),
                hit.code
                    .unwrap_or(hit.status.canonical_reason().unwrap_or(""))
            );
            if let Some(ra) = &hit.retry_after {
                answer.push_str(&format!(", Retry-After: {ra}"));
            }
            if hit.body_len >= 1024 {
                answer.push_str(&format!(" ({} B in)", hit.body_len));
            }
            let retry = events
                .iter()
                .find(|e| e.attempt == Some(attempt) && e.delay_ms.is_some());
            let (decision, wait) = match retry {
                Some(e) => {
                    let how = if e.decision.contains("RetryAfter") {
                        "retry: Retry-After + spread"
                    } else if e.decision.contains("Backoff") {
                        "retry: exponential backoff"
                    } else {
                        "retry"
                    };
                    let wait = Duration::from_millis(e.delay_ms.unwrap_or(0));
                    (how.to_owned(), secs(wait))
                }
                None if i + 1 == hits.len() => (stop_text(sent.info.stop_reason()), "-".into()),
                None => ("(no tracing event seen)".into(), "?".into()),
            };
            println!(
                "    +{:<7} #{:<3} {:<46} {:<40} {}",
                secs(hit.at.saturating_duration_since(sent.started)),
                attempt,
                answer,
                decision,
                wait
            );
        }
        let what = match &sent.result {
            Ok(body) => format!("Ok, body {}", String::from_utf8_lossy(body)),
            Err(err) => format!("Err(ResponseError: {err})"),
        };
        println!(
            "  Caller got {} after {} attempt(s), {} asleep, {} in all: {what}",
            sent.status,
            sent.info.attempts(),
            secs(sent.info.slept()),
            secs(sent.elapsed)
        );
        hits
    }
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

fn retry_info(extensions: &http::Extensions) -> Result<RetryInfo, String> {
    // No RetryInfo means one attempt that succeeded; `RetryInfo::of` reads it that way.
    Ok(RetryInfo::of(extensions))
}

fn stop_text(reason: Option<StopReason>) -> String {
    match reason {
        Some(StopReason::Success) => "accept: hand it to the caller".into(),
        Some(StopReason::Fatal) => "fatal (4xx): hand it back now".into(),
        Some(StopReason::RetryAfterTooLong) => format!(
            "Retry-After > {} s cap: hand it back now",
            MAX_RETRY_AFTER.as_secs()
        ),
        Some(StopReason::NotReplayable) => "body not replayable: hand it back".into(),
        Some(StopReason::MaxRetries) => "out of retries: hand it back".into(),
        Some(other) => format!("stop: {other}"),
        None => "?".into(),
    }
}

/// The checks of one run.
#[derive(Default)]
struct Checks {
    failed: Vec<String>,
}

impl Checks {
    fn expect(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            self.failed.push(format!("expected: {}", what.into()));
        }
    }

    fn fail(&mut self, what: impl Into<String>) {
        self.failed.push(what.into());
    }

    fn finish(self, via: Via) -> Vec<String> {
        if self.failed.is_empty() {
            println!("  [ok] behaved as described");
        } else {
            for f in &self.failed {
                println!("  [MISMATCH] {f}");
            }
        }
        self.failed
            .into_iter()
            .map(|f| format!("via {}: {f}", via.short()))
            .collect()
    }
}

// ===== capturing the crate's tracing events =====

mod capture {
    //! A `tracing` layer that keeps the crate's events (target `telecho_retry`) so the demo
    //! can show the decision and delay the crate chose for each attempt.

    use super::*;
    use tracing::field::{Field, Visit};
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::{Context, SubscriberExt};
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    /// One captured event.
    #[derive(Clone, Debug, Default)]
    pub(super) struct Event {
        pub(super) attempt: Option<u64>,
        /// The `Debug` of the crate's `Option<Decision>`, e.g. `Some(RetryAfter(1s))`.
        pub(super) decision: String,
        pub(super) delay_ms: Option<u64>,
    }

    impl Visit for Event {
        fn record_u64(&mut self, field: &Field, value: u64) {
            match field.name() {
                "attempt" => self.attempt = Some(value),
                "delay_ms" => self.delay_ms = Some(value),
                _ => {}
            }
        }

        fn record_i64(&mut self, field: &Field, value: i64) {
            if let Ok(v) = u64::try_from(value) {
                self.record_u64(field, v);
            }
        }

        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if field.name() == "decision" {
                self.decision = format!("{value:?}");
            }
        }
    }

    /// The events seen so far (shared with the layer).
    #[derive(Clone, Default)]
    pub(super) struct Events(Arc<Mutex<Vec<Event>>>);

    impl Events {
        pub(super) fn clear(&self) {
            self.0.lock().expect("events").clear();
        }

        pub(super) fn take(&self) -> Vec<Event> {
            std::mem::take(&mut *self.0.lock().expect("events"))
        }
    }

    struct Capture(Events);

    impl<S: tracing::Subscriber> Layer<S> for Capture {
        fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
            if event.metadata().target() == "telecho_retry" {
                let mut e = Event::default();
                event.record(&mut e);
                self.0 .0.lock().expect("events").push(e);
            }
        }
    }

    /// Installs the capture layer, and with `verbose` a `fmt` layer on stderr showing the
    /// crate's events at DEBUG.
    pub(super) fn install(verbose: bool) -> Events {
        let events = Events::default();
        let fmt = verbose.then(|| {
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_filter(
                    Targets::new()
                        .with_default(LevelFilter::OFF)
                        .with_target("telecho_retry", LevelFilter::DEBUG),
                )
        });
        tracing_subscriber::registry()
            .with(Capture(events.clone()))
            .with(fmt)
            .init();
        events
    }
}

// ===== the metrics summary (feature `metrics`) =====

#[cfg(feature = "metrics")]
mod summary {
    //! With feature `metrics`, the demo installs `metrics-util`'s debugging recorder, and
    //! ends with what the crate's metrics say about the run, checked against what the
    //! demo saw. (A service would install a Prometheus or OpenTelemetry exporter instead.)

    use std::collections::BTreeMap;

    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
    use telecho_retry::observe::{describe_metrics, metric};

    use super::Tally;

    pub(super) fn install() -> Snapshotter {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder.install().expect("no other metrics recorder");
        describe_metrics();
        snapshotter
    }

    /// Counters by name, then by their labels (`a=b, c=d`); histograms as their samples.
    #[derive(Default)]
    struct Seen {
        counters: BTreeMap<String, BTreeMap<String, u64>>,
        histograms: BTreeMap<String, Vec<f64>>,
    }

    impl Seen {
        fn total(&self, name: &str) -> u64 {
            self.counters.get(name).map_or(0, |by| by.values().sum())
        }

        fn line(&self, name: &str) -> String {
            let mut out = format!("{name:<32} {:>3}", self.total(name));
            for (labels, n) in self.counters.get(name).into_iter().flatten() {
                if !labels.is_empty() {
                    out.push_str(&format!("\n    {n:>3}  {labels}"));
                }
            }
            out
        }

        fn histogram(&self, name: &str) -> String {
            let samples = self.histograms.get(name).map_or(&[][..], Vec::as_slice);
            if samples.is_empty() {
                return format!("{name:<32}   0 samples");
            }
            let sum: f64 = samples.iter().sum();
            let max = samples.iter().copied().fold(0.0, f64::max);
            format!(
                "{name:<32} {:>3} samples, {sum:.2} s in all, longest {max:.2} s",
                samples.len()
            )
        }
    }

    /// Prints the summary; returns what does not agree with what the demo saw.
    pub(super) fn print(snapshotter: &Snapshotter, tally: &Tally) -> Vec<String> {
        let mut seen = Seen::default();
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let (_, key) = key.into_parts();
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            match value {
                DebugValue::Counter(n) => {
                    *seen
                        .counters
                        .entry(key.name().to_owned())
                        .or_default()
                        .entry(labels.join(", "))
                        .or_default() += n;
                }
                DebugValue::Histogram(xs) => seen
                    .histograms
                    .entry(key.name().to_owned())
                    .or_default()
                    .extend(xs.into_iter().map(|x| x.0)),
                DebugValue::Gauge(_) => {}
            }
        }

        println!("\n=== metrics (feature `metrics`): what a dashboard would show of this run");
        for name in [
            metric::REQUESTS,
            metric::RETRIES,
            metric::COOLDOWN_HOLDS,
            metric::COOLDOWN_REFUSALS,
            metric::BUDGET_REFUSALS,
        ] {
            println!("  {}", seen.line(name));
        }
        for name in [metric::RETRY_DELAY, metric::COOLDOWN_DELAY] {
            println!("  {}", seen.histogram(name));
        }

        let mut problems = Vec::new();
        let mut agree = |what: &str, metric: u64, demo: u64| {
            if metric != demo {
                problems.push(format!(
                    "metrics: {what} is {metric}, but the demo counted {demo}"
                ));
            }
        };
        agree(
            metric::REQUESTS,
            seen.total(metric::REQUESTS),
            tally.requests.get(),
        );
        agree(
            metric::RETRIES,
            seen.total(metric::RETRIES),
            tally.retries.get(),
        );
        agree(
            "the number of retry delays",
            seen.histograms
                .get(metric::RETRY_DELAY)
                .map_or(0, |h| h.len() as u64),
            tally.retries.get(),
        );
        agree(
            metric::COOLDOWN_REFUSALS,
            seen.total(metric::COOLDOWN_REFUSALS),
            tally.refused.get(),
        );
        if problems.is_empty() {
            println!(
                "  [ok] {} requests and {} retries, as the demo counted them from each RetryInfo",
                tally.requests.get(),
                tally.retries.get()
            );
        }
        problems
    }
}
