//! The attempt spans (feature `tracing`): one per attempt sent, with OpenTelemetry's
//! `http.request.resend_count` on resends, the method, the status or `error.type`, and the
//! decision; children of the caller's span, parents of the inner service's spans. Through
//! the tower layer over `tower::service_fn` (paused clock) and the reqwest middleware over a
//! loopback server, with reqwest-tracing's span below it (feature `reqwest-tracing`). And no
//! header value, URL query or body in any field.
//!
//! The tests are in `through_tower`, `through_reqwest` and `secrets` (no header value, URL
//! query or body in any span or event); this file holds what they share.
#![cfg(all(feature = "tower", feature = "tracing"))]

use std::io;
use std::time::Duration;

use telecho_retry::observe::{field, ATTEMPT_SPAN};
use telecho_retry::{RetryErrorKind, TelEchoRetry};
use tokio_test::{assert_pending, task};
use tower::{Layer, Service, ServiceExt};
use tracing::Instrument;

use crate::observe_support::*;

/// A field of each span, in order.
fn column<'a>(spans: &[&'a SpanRecord], field: &str) -> Vec<Option<&'a str>> {
    spans.iter().map(|s| s.get(field)).collect()
}

mod secrets;
mod through_tower;

#[cfg(feature = "reqwest")]
mod through_reqwest;
