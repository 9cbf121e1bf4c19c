//! [`ResendCountSpanBackend`]: reqwest-tracing's per-request span with OpenTelemetry's
//! `http.request.resend_count` (feature `reqwest-tracing`).

use http::Extensions;
use reqwest::{Request, Response};
use reqwest_tracing::{default_on_request_success, ReqwestOtelSpanBackend};
use tracing::field::Empty;
use tracing::Span;

use crate::classify::ClassifyError;
use crate::engine::{observe, AttemptNumber};

/// A [`ReqwestOtelSpanBackend`] for `reqwest_tracing::TracingMiddleware` that records
/// OpenTelemetry's `http.request.resend_count` on the span of every resend, read from the
/// [`AttemptNumber`] that [`TelEchoRetry`](crate::TelEchoRetry) puts in the extensions of
/// each retry. Put the tracing middleware *below* the retry middleware (after it in the
/// builder), so that it sees every attempt:
///
/// ```no_run
/// use reqwest_tracing::TracingMiddleware;
/// use telecho_retry::{ResendCountSpanBackend, TelEchoRetry};
///
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(TelEchoRetry::default())
///     .with(TracingMiddleware::<ResendCountSpanBackend>::new())
///     .build();
/// # let _ = client;
/// ```
///
/// The span (name `HTTP request`, level `INFO`, `otel.kind = "client"`) is the one
/// reqwest-tracing's `DefaultSpanBackend` makes (`http.request.method`, `url.scheme`,
/// `server.address`, `server.port`, `otel.name`, `otel.status_code`,
/// `http.response.status_code`; the name from `OtelName` or `OtelPathNames` if set), with
/// these differences:
///
/// - `http.request.resend_count`: 1 on the second attempt, 2 on the third …, absent on the
///   first;
/// - `error.type`: the status code for a status ≥ 400, or the kind of transport error
///   ([`TransportErrorKind`](crate::classify::TransportErrorKind): `connect`, `timeout` …);
/// - no `user_agent.original` (a header value), and no `error.message` or
///   `error.cause_chain`: reqwest's error text carries the URL, query string included.
///
/// Each of these spans is a child of the crate's own attempt span (see
/// [`observe`](crate::observe)).
#[derive(Clone, Copy, Debug, Default)]
pub struct ResendCountSpanBackend;

impl ReqwestOtelSpanBackend for ResendCountSpanBackend {
    fn on_request_start(req: &Request, extensions: &mut Extensions) -> Span {
        // The method as OpenTelemetry names it (`_OTHER` for a made-up one), not as sent:
        // the span's name must not grow with every method a caller invents.
        let name = observe::method_str(req.method());
        let _ = extensions;
        let url = req.url();
        tracing::info_span!(
            target: "telecho_retry",
            "HTTP request",
            http.request.method = observe::method_str(req.method()),
            url.scheme = url.scheme(),
            server.address = url.host_str().unwrap_or(""),
            server.port = url.port_or_known_default().map(i64::from),
            otel.kind = "client",
            otel.name = name,
            otel.status_code = Empty,
            http.response.status_code = Empty,
            http.request.resend_count = AttemptNumber::resend_count(extensions),
            "error.type" = Empty,
        )
    }

    fn on_request_end(
        span: &Span,
        outcome: &reqwest_middleware::Result<Response>,
        _extensions: &mut Extensions,
    ) {
        match outcome {
            Ok(response) => {
                default_on_request_success(span, response);
                if response.status().as_u16() >= 400 {
                    span.record("error.type", response.status().as_str());
                }
            }
            Err(error) => {
                span.record("otel.status_code", "ERROR");
                span.record("error.type", error.transport_error_kind().as_str());
                if let reqwest_middleware::Error::Reqwest(e) = error {
                    if let Some(status) = e.status() {
                        span.record("http.response.status_code", status.as_u16());
                    }
                }
            }
        }
    }
}
