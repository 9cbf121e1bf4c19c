//! Retries for clients of the TelEcho API, and of any API with the same error contract.
//!
//! TelEcho's contract: every error is a JSON envelope `{"error":{"type","code","message"}}`;
//! on 429 wait for `Retry-After`; on 5xx back off exponentially, 1 s, 2 s, 4 s … up to 30 s;
//! never retry any other 4xx. This crate turns that contract into:
//!
//! - [`RetryPolicy`]: classifies each outcome into a [`Decision`], with jittered backoff
//!   ([`Jitter`]) and full RFC 9110 `Retry-After` parsing ([`parse_retry_after`]);
//! - [`RetryState`]: the one per-request engine both adapters drive;
//! - [`ApiError`], [`ErrorCode`], [`ErrorType`]: the envelope as types you can `match` on;
//! - with feature `tower`, [`TelEchoRetry`] as a `tower::Layer`; with feature `reqwest`, the
//!   same [`TelEchoRetry`] as a `reqwest_middleware::Middleware`.
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `tower` | yes | [`TelEchoRetry`] as a `Layer`, [`RetryService`], classification of hyper, HTTP/2 (`h2`) and `tower::timeout` errors |
//! | `reqwest` | yes | [`TelEchoRetry`] as a `Middleware`, typed errors for `reqwest::Response` |
//! | `tracing` | yes | one `tracing` event per retry (target `telecho_retry`) |
//!
//! The core (policy, state, parsing, typed errors) builds with `--no-default-features`.
//!
//! # Minimum supported Rust version
//!
//! 1.85.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// Without an adapter, the engine's future and the errors only adapters build are unused.
#![cfg_attr(not(feature = "tower"), allow(dead_code, unused_imports))]

pub mod api_error;
pub mod backoff;
pub mod error;
pub mod limits;
pub mod policy;
pub mod replay;
pub mod request;
pub mod response_error;
pub mod retry_after;
pub mod state;
pub mod transport;

mod peek;

// The engine's future needs only `tower-service` (a dependency of the core).
mod future;
#[cfg(feature = "tower")]
mod layer;
#[cfg(feature = "reqwest")]
pub mod middleware;
#[cfg(feature = "tower")]
mod service;
mod trace;

#[cfg(feature = "tower")]
pub use future::ResponseFuture;
#[cfg(feature = "tower")]
pub use layer::TelEchoRetry;
#[cfg(feature = "tower")]
pub use service::RetryService;

pub use api_error::{ApiError, ApiErrorParseError, ErrorCode, ErrorType, MAX_ENVELOPE_BYTES};
pub use backoff::Jitter;
pub use error::{RetryError, RetryErrorKind};
pub use limits::{Origin, RetryBudget, SharedLimits};
pub use peek::ResponseBody;
pub use policy::{CodeRule, Decision, RetryPolicy, RetryPolicyBuilder};
pub use replay::ReplayBody;
#[cfg(feature = "reqwest")]
pub use response_error::ReqwestResponseExt;
pub use response_error::{
    HttpBodyResponseExt, HttpResponseExt, ResponseError, ERROR_BODY_TIMEOUT, MAX_ERROR_BODY_BYTES,
};
pub use retry_after::parse_retry_after;
pub use state::{Action, Admission, AttemptNumber, Outcome, RetryInfo, RetryState, StopReason};
pub use transport::{is_idempotent_method, TransportErrorKind};

#[cfg(all(doctest, feature = "tower", feature = "reqwest"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
