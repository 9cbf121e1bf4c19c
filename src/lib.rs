//! Retries for clients of the TelEcho API, and of any API with the same error contract.
//!
//! TelEcho's contract: every error is a JSON envelope `{"error":{"type","code","message"}}`;
//! on 429 wait for `Retry-After`; on 5xx back off exponentially, 1 s, 2 s, 4 s … up to 30 s;
//! never retry any other 4xx. [`TelEchoRetry`] turns it into a tower `Layer` and a
//! `reqwest_middleware::Middleware`, both driving one engine.
//!
//! # Quick start: tower
//!
//! ```no_run
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use telecho_retry::{RetryInfo, TelEchoRetry};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
//! let client = ServiceBuilder::new().layer(TelEchoRetry::default()).service(client);
//! let request = http::Request::get("http://127.0.0.1:8080/v1/agents")
//!     .header("authorization", "Bearer tel_sk_...")
//!     .body(Full::new(Bytes::new()))?;
//! let response = client.oneshot(request).await?; // Err: a `RetryError`
//! println!("{} after {} attempt(s)", response.status(), RetryInfo::of(response.extensions()).attempts());
//! # Ok(()) }
//! ```
//!
//! # Quick start: reqwest
//!
//! ```no_run
//! use telecho_retry::{ReqwestResponseExt, TelEchoRetry};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(TelEchoRetry::default())
//!     .build();
//! let response = client.get("http://127.0.0.1:8080/v1/agents").bearer_auth("tel_sk_...").send().await?;
//! let agents = response.api_error_for_status().await?.text().await?; // typed errors
//! # let _ = agents; Ok(()) }
//! ```
//!
//! # The main types
//!
//! - [`TelEchoRetry`]: the configuration, a `Layer` ([`RetryService`], [`ResponseFuture`])
//!   and a `Middleware`; [`RetryPolicy`] / [`RetryPolicyBuilder`]: its settings;
//!   [`RetryOverride`]: per-request changes, in the request's extensions.
//! - [`RetryInfo`], [`StopReason`]: what happened to a request; [`RetryError`]: how it
//!   failed (the tower layer's error type).
//! - [`ApiError`], [`ErrorCode`], [`ErrorType`], [`ResponseError`]: the envelope as types
//!   you can `match` on.
//! - [`classify`]: the [`Classifier`](classify::Classifier) trait, for another API's
//!   contract; [`limits`]: the retry budget, the shared cooldown and pacing, in one process
//!   or a fleet; [`body`]: what the engine copies and hands back; [`observe`]: the span
//!   fields and metric names.
//!
//! # Architecture
//!
//! Dependencies run one way: envelope (the error contract's types, [`ApiError`]) →
//! [`classify`] (what kind of outcome) → the policy (what to do about it) and [`limits`]
//! (what every request shares) → the engine (per-request state, the future) → adapters
//! (tower, reqwest) and typed response errors ([`ResponseError`]), with [`body`] (replay,
//! bounded reads) a leaf beside them.
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `tower` | yes | [`TelEchoRetry`] as a `Layer`, [`RetryService`], classification of hyper-util, HTTP/2 (`h2`) and `tower::timeout` errors |
//! | `reqwest` | yes | [`TelEchoRetry`] as a `Middleware`, typed errors for `reqwest::Response`, `reqwest::Client` under the tower layer (with `tower`) |
//! | `tracing` | yes | a `tracing` span per attempt with OpenTelemetry's HTTP fields (`http.request.resend_count` …) and events for retries, stops, cooldown waits (target `telecho_retry`); see [`observe`] |
//! | `metrics` | no | counters and histograms through the `metrics` facade: retries, requests by stop reason, retry delays, cooldown and budget refusals; see [`observe`] |
//! | `reqwest-tracing` | no | `ResendCountSpanBackend`: reqwest-tracing's per-request span with `http.request.resend_count` |
//! | `redis` | no | [`LimitsBuilder::redis`](limits::LimitsBuilder::redis): the cooldown and pacing shared by a fleet of processes through Redis |
//!
//! The core (classification, policy, engine state, parsing, typed errors) builds with
//! `--no-default-features`.
//!
//! # Minimum supported Rust version
//!
//! 1.85.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// Without an adapter, the engine's future and the errors only adapters build are unused.
#![cfg_attr(
    not(any(feature = "tower", feature = "reqwest")),
    allow(dead_code, unused_imports, unreachable_pub)
)]

mod adapters;
pub mod body;
pub mod classify;
mod engine;
mod envelope;
pub mod limits;
mod policy;
mod response_error;
mod sync;

#[cfg(feature = "reqwest")]
pub use adapters::reqwest as middleware;
#[cfg(feature = "reqwest-tracing")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest-tracing")))]
pub use adapters::reqwest_tracing::ResendCountSpanBackend;
#[cfg(any(feature = "tower", feature = "reqwest"))]
pub use adapters::retry::TelEchoRetry;
#[cfg(feature = "tower")]
pub use adapters::tower::{ResponseFuture, RetryService};

pub use policy::{Jitter, RetryPolicy, RetryPolicyBuilder};

pub use engine::{AttemptNumber, RetryError, RetryErrorKind, RetryInfo, RetryOverride, StopReason};

pub use envelope::{ApiError, ApiErrorParseError, ErrorCode, ErrorType, MAX_ENVELOPE_BYTES};
#[cfg(feature = "reqwest")]
pub use response_error::ReqwestResponseExt;
pub use response_error::{
    HttpBodyResponseExt, HttpResponseExt, ResponseError, MAX_ERROR_BODY_BYTES,
};

pub use engine::observe;

#[cfg(all(doctest, feature = "tower", feature = "reqwest"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
