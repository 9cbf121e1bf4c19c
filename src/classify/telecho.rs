//! [`TelEchoClassifier`]: the TelEcho error contract as a [`Classifier`].

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::header::RETRY_AFTER;
use http::HeaderMap;

use super::{parse_retry_after_at, Classifier, Decision, Outcome, RequestView, TransportErrorKind};
use crate::envelope::ErrorCode;

/// A per-[`ErrorCode`] override of the status-based decision (see
/// [`TelEchoClassifier::on_code`] and
/// [`RetryPolicyBuilder::on_code`](crate::RetryPolicyBuilder::on_code)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CodeRule {
    /// Never retry a response carrying this code.
    Fatal,
    /// Retry a response carrying this code even when its status alone would be fatal:
    /// after its `Retry-After` if it has a usable one, else on the backoff schedule.
    Retry,
}

type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The TelEcho contract as a [`Classifier`]: the table in the [module docs](super), per-code
/// overrides ([`CodeRule`]), and an injectable wall clock for HTTP-date `Retry-After`
/// values. The default classifier of [`RetryPolicy`](crate::RetryPolicy).
///
/// ```
/// use http::{HeaderMap, Method, StatusCode};
/// use telecho_retry::classify::{Classifier, Decision, Outcome, RequestView, TelEchoClassifier};
/// use telecho_retry::ErrorCode;
/// use telecho_retry::classify::CodeRule;
///
/// let classifier = TelEchoClassifier::new().on_code(ErrorCode::OutboundCallFailed, CodeRule::Fatal);
/// let (method, headers) = (Method::POST, HeaderMap::new());
/// let request = RequestView::new(&method, &headers);
/// let code = ErrorCode::OutboundCallFailed;
/// let bad_gateway = |code| Outcome::Response { status: StatusCode::BAD_GATEWAY, headers: &headers, code };
/// assert_eq!(classifier.classify(&request, &bad_gateway(Some(&code))), Decision::Fatal);
/// assert_eq!(classifier.classify(&request, &bad_gateway(None)), Decision::Backoff);
/// assert!(classifier.reads_error_codes());
/// ```
#[derive(Clone, Default)]
pub struct TelEchoClassifier {
    code_rules: Vec<(ErrorCode, CodeRule)>,
    clock: Option<Clock>,
}

impl TelEchoClassifier {
    /// The contract as published: no code rules, the system clock.
    pub fn new() -> Self {
        TelEchoClassifier::default()
    }

    /// Overrides the status-based decision for responses whose envelope carries `code`.
    /// A later rule for the same code replaces an earlier one. With a rule set, the engine
    /// reads error bodies for their code ([`Classifier::reads_error_codes`]).
    ///
    /// # Default
    ///
    /// No rules: the status decides.
    pub fn on_code(mut self, code: ErrorCode, rule: CodeRule) -> Self {
        self.code_rules.retain(|(c, _)| *c != code);
        self.code_rules.push((code, rule));
        self
    }

    /// The wall clock used to turn an HTTP-date `Retry-After` into a wait.
    ///
    /// # Default
    ///
    /// `SystemTime::now`.
    pub fn wall_clock(mut self, now: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Some(Arc::new(now));
        self
    }

    /// The rule for `code`, if one is set.
    pub fn code_rule(&self, code: &ErrorCode) -> Option<CodeRule> {
        self.code_rules
            .iter()
            .find(|(c, _)| c == code)
            .map(|(_, rule)| *rule)
    }

    fn now(&self) -> SystemTime {
        match &self.clock {
            Some(c) => c(),
            None => SystemTime::now(),
        }
    }

    /// The first `Retry-After` header that parses (the clock is read only if one is there).
    pub(crate) fn retry_after(&self, headers: &HeaderMap) -> Option<Duration> {
        headers
            .get_all(RETRY_AFTER)
            .iter()
            .find_map(|v| parse_retry_after_at(v, || self.now()))
    }
}

impl Classifier for TelEchoClassifier {
    fn classify(&self, request: &RequestView<'_>, outcome: &Outcome<'_>) -> Decision {
        let (status, headers, code) = match *outcome {
            Outcome::Response {
                status,
                headers,
                code,
            } => (status, headers, code),
            Outcome::Transport { kind, idempotent } => {
                return transport_decision(kind, idempotent || request.is_idempotent())
            }
        };
        let s = status.as_u16();
        if s < 400 {
            return Decision::Accept;
        }
        let retryable = match code.and_then(|c| self.code_rule(c)) {
            Some(CodeRule::Fatal) => return Decision::Fatal,
            Some(CodeRule::Retry) => true,
            None => s == 429 || (500..=599).contains(&s),
        };
        if !retryable {
            return Decision::Fatal;
        }
        match self.retry_after(headers) {
            Some(d) => Decision::RetryAfter(d),
            None => Decision::Backoff,
        }
    }

    fn reads_error_codes(&self) -> bool {
        !self.code_rules.is_empty()
    }
}

/// The transport rules of the [`TransportErrorKind`] table.
fn transport_decision(kind: TransportErrorKind, idempotent: bool) -> Decision {
    match kind {
        TransportErrorKind::Connect | TransportErrorKind::Refused => Decision::Backoff,
        TransportErrorKind::Timeout
        | TransportErrorKind::Reset
        | TransportErrorKind::IncompleteMessage
            if idempotent =>
        {
            Decision::Backoff
        }
        _ => Decision::Fatal,
    }
}

impl fmt::Debug for TelEchoClassifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelEchoClassifier")
            .field("code_rules", &self.code_rules)
            .field("wall_clock", &self.clock.as_ref().map(|_| "custom"))
            .finish()
    }
}
