//! Tracing events (feature `tracing`), target `telecho_retry`. Never a header value, a URL
//! or a body: only the attempt number, status or error kind, decision, delay and stop reason.

use super::state::{Action, RetryState};
use crate::classify::Outcome;

/// One event per outcome that leads to a retry (level `INFO`), and one when retrying stops
/// after at least one retry (level `DEBUG`).
#[cfg(feature = "tracing")]
pub(crate) fn outcome(state: &RetryState, outcome: &Outcome<'_>, action: Action) {
    let attempt = state.attempts();
    let decision = state.decision();
    let (status, error_kind, code) = match outcome {
        Outcome::Response { status, code, .. } => {
            // A code the crate does not know is the server's text: only a short, plain one is
            // logged, never a body's worth.
            let code = code.map(|c| c.as_str()).map(|c| {
                let plain =
                    c.len() <= 64 && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if plain {
                    c
                } else {
                    "<unrecognised>"
                }
            });
            (Some(status.as_u16()), None, code)
        }
        Outcome::Transport { kind, .. } => (None, Some(kind.as_str()), None),
    };
    match action {
        Action::Retry(delay) => tracing::info!(
            target: "telecho_retry",
            attempt,
            status,
            error_kind,
            code,
            decision = ?decision,
            delay_ms = delay.as_millis() as u64,
            "retrying"
        ),
        Action::Stop(reason) if attempt > 1 || reason != super::info::StopReason::Success => {
            tracing::debug!(
                target: "telecho_retry",
                attempt,
                status,
                error_kind,
                code,
                decision = ?decision,
                stop = reason.as_str(),
                slept_ms = state.info().slept().as_millis() as u64,
                "not retrying"
            )
        }
        Action::Stop(_) => {}
    }
}

#[cfg(not(feature = "tracing"))]
pub(crate) fn outcome(_state: &RetryState, _outcome: &Outcome<'_>, _action: Action) {}
