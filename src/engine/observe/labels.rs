//! The values metric labels take: fixed sets, never a URL, an origin or a key.

use super::*;

/// The `status_class` label.
#[cfg(feature = "metrics")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StatusClass {
    Informational,
    Success,
    Redirection,
    ClientError,
    ServerError,
    /// A transport error, a timeout, or a failure the engine decided.
    Error,
    /// No outcome: the request was cancelled first.
    None,
}

#[cfg(feature = "metrics")]
impl StatusClass {
    pub(crate) const ALL: [StatusClass; 7] = [
        StatusClass::Informational,
        StatusClass::Success,
        StatusClass::Redirection,
        StatusClass::ClientError,
        StatusClass::ServerError,
        StatusClass::Error,
        StatusClass::None,
    ];

    pub(crate) fn of(status: http::StatusCode) -> StatusClass {
        match status.as_u16() {
            100..=199 => StatusClass::Informational,
            200..=299 => StatusClass::Success,
            300..=399 => StatusClass::Redirection,
            400..=499 => StatusClass::ClientError,
            _ => StatusClass::ServerError,
        }
    }

    pub(crate) fn of_outcome(outcome: &Outcome<'_>) -> StatusClass {
        match outcome {
            Outcome::Response { status, .. } => StatusClass::of(*status),
            Outcome::Transport { .. } => StatusClass::Error,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            StatusClass::Informational => "1xx",
            StatusClass::Success => "2xx",
            StatusClass::Redirection => "3xx",
            StatusClass::ClientError => "4xx",
            StatusClass::ServerError => "5xx",
            StatusClass::Error => "error",
            StatusClass::None => "none",
        }
    }
}

/// The `stop_reason` label: a [`StopReason`], or what ended a request without one.
#[cfg(feature = "metrics")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EndLabel {
    Stopped(StopReason),
    Cancelled,
}

#[cfg(feature = "metrics")]
impl EndLabel {
    pub(crate) const ALL: [EndLabel; 9] = [
        EndLabel::Stopped(StopReason::Success),
        EndLabel::Stopped(StopReason::Fatal),
        EndLabel::Stopped(StopReason::RetryAfterTooLong),
        EndLabel::Stopped(StopReason::MaxRetries),
        EndLabel::Stopped(StopReason::NotReplayable),
        EndLabel::Stopped(StopReason::Budget),
        EndLabel::Stopped(StopReason::Deadline),
        EndLabel::Cancelled,
        EndLabel::Stopped(StopReason::ServiceError),
    ];

    /// The position in [`EndLabel::ALL`].
    pub(crate) fn index(self) -> usize {
        match self {
            EndLabel::Stopped(StopReason::Success) => 0,
            EndLabel::Stopped(StopReason::Fatal) => 1,
            EndLabel::Stopped(StopReason::RetryAfterTooLong) => 2,
            EndLabel::Stopped(StopReason::MaxRetries) => 3,
            EndLabel::Stopped(StopReason::NotReplayable) => 4,
            EndLabel::Stopped(StopReason::Budget) => 5,
            EndLabel::Stopped(StopReason::Deadline) => 6,
            EndLabel::Cancelled => 7,
            EndLabel::Stopped(StopReason::ServiceError) => 8,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EndLabel::Stopped(reason) => reason.as_str(),
            EndLabel::Cancelled => "cancelled",
        }
    }
}

/// The `decision` label and span field.
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
pub(crate) fn decision_str(decision: Decision) -> &'static str {
    match decision {
        Decision::Accept => "accept",
        Decision::RetryAfter(_) => "retry_after",
        Decision::Backoff => "backoff",
        Decision::Fatal => "fatal",
    }
}

/// OpenTelemetry's `http.request.method`: the RFC 9110 methods (and `PATCH`) as they are,
/// any other as `_OTHER`, so that a made-up method cannot grow the set of values.
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
pub(crate) fn method_str(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "_OTHER",
    }
}
