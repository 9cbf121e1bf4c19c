//! What kind of outcome is this: the [`Classifier`] trait, the TelEcho contract as its
//! default implementation ([`TelEchoClassifier`]), transport error kinds and `Retry-After`.
//!
//! A classifier turns the outcome of one attempt into a [`Decision`]; the engine
//! (the engine's per-request state) turns the decision into "wait this long, then retry"
//! or "stop", applying the policy's caps, budget, cooldown and deadline. A classifier sees
//! the request ([`RequestView`]: method, headers, extensions, whether it is safe to resend)
//! and the [`Outcome`] (status, headers and the error code read from the body, or the kind
//! of transport error).
//!
//! The default, [`TelEchoClassifier`]:
//!
//! | outcome | [`Decision`] |
//! |---|---|
//! | 1xx, 2xx, 3xx | [`Accept`](Decision::Accept): never retried |
//! | 429 or 5xx with a usable `Retry-After` | [`RetryAfter(d)`](Decision::RetryAfter) (the policy hands it back at once when `d` is above its `max_retry_after`) |
//! | 429 or 5xx without one | [`Backoff`](Decision::Backoff) |
//! | any other 4xx | [`Fatal`](Decision::Fatal) |
//! | status 600–999 (not HTTP) | [`Fatal`](Decision::Fatal) |
//! | a response whose envelope code has a [`CodeRule`] | the rule's decision |
//! | transport errors | see [`TransportErrorKind`] |
//!
//! A "usable" `Retry-After` is the first such header that [`parse_retry_after`] accepts;
//! unparsable ones are ignored.
//!
//! Another API's contract is a classifier of its own, or a closure through
//! [`classify_fn`]:
//!
//! ```
//! use std::time::Duration;
//! use telecho_retry::classify::{classify_fn, Decision, Outcome};
//! use telecho_retry::{RetryPolicy, TelEchoRetry};
//!
//! // An API that says how long to wait in milliseconds, in `retry-after-ms`.
//! let classifier = classify_fn(|_request, outcome| match outcome {
//!     Outcome::Response { status, headers, .. } if status.as_u16() == 429 => headers
//!         .get("retry-after-ms")
//!         .and_then(|v| v.to_str().ok()?.parse().ok())
//!         .map_or(Decision::Backoff, |ms| Decision::RetryAfter(Duration::from_millis(ms))),
//!     Outcome::Response { status, .. } if status.is_server_error() => Decision::Backoff,
//!     Outcome::Response { .. } => Decision::Accept,
//!     Outcome::Transport { kind, idempotent } if *idempotent || !kind.may_have_been_sent() => {
//!         Decision::Backoff
//!     }
//!     _ => Decision::Fatal,
//! });
//! let retry = TelEchoRetry::new(RetryPolicy::builder().classifier(classifier).build());
//! # let _ = retry;
//! ```

mod retry_after;
mod telecho;
mod transport;

use std::fmt;
use std::time::Duration;

use http::header::HeaderName;
use http::{Extensions, HeaderMap, Method, StatusCode};

use crate::envelope::ErrorCode;

pub use retry_after::parse_retry_after;
pub(crate) use retry_after::parse_retry_after_at;
pub use telecho::{CodeRule, TelEchoClassifier};
pub use transport::{is_idempotent_method, ClassifyError, TransportErrorKind};

/// What to do with one outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Decision {
    /// Not a failure (1xx, 2xx, 3xx): hand it to the caller, never retry.
    Accept,
    /// Retry no earlier than this long from now, as the server said
    /// (the engine adds the spread, or waits the backoff delay if
    /// that is longer; above the policy's `max_retry_after` the outcome is handed back).
    RetryAfter(Duration),
    /// Retry after the next delay of the exponential backoff schedule.
    Backoff,
    /// Do not retry: hand the outcome to the caller unchanged.
    Fatal,
}

/// The outcome of one attempt, as the engine and classifiers see it.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Outcome<'a> {
    /// A response arrived.
    Response {
        /// Its status.
        status: StatusCode,
        /// Its headers (for `Retry-After`).
        headers: &'a HeaderMap,
        /// The TelEcho error code from its body, when the engine read it (only when the
        /// classifier [reads error codes](Classifier::reads_error_codes)).
        code: Option<&'a ErrorCode>,
    },
    /// The attempt failed without a response.
    Transport {
        /// What kind of failure.
        kind: TransportErrorKind,
        /// Whether the request is safe to resend (an idempotent method, the policy's
        /// idempotency header, or a per-request override).
        idempotent: bool,
    },
}

/// What a classifier sees of the request whose outcome it classifies.
///
/// The method, headers and extensions are there whenever the engine kept a copy of the
/// request to send again; on the last attempt, or for a body that cannot be copied, no copy
/// is kept and they are `None` (no retry can follow then: the decision only names the
/// stop reason). [`is_idempotent`](Self::is_idempotent) is always known.
#[derive(Clone, Copy, Debug)]
pub struct RequestView<'a> {
    method: Option<&'a Method>,
    headers: Option<&'a HeaderMap>,
    extensions: Option<&'a Extensions>,
    // Known, or read from the method and `idempotency_header` when asked.
    idempotent: Option<bool>,
    idempotency_header: Option<&'a HeaderName>,
}

impl<'a> RequestView<'a> {
    /// A view of a request with this method and headers; idempotent when the method is
    /// ([`is_idempotent_method`]).
    pub fn new(method: &'a Method, headers: &'a HeaderMap) -> Self {
        RequestView {
            method: Some(method),
            headers: Some(headers),
            extensions: None,
            idempotent: None,
            idempotency_header: None,
        }
    }

    /// A view that knows only whether the request is safe to resend.
    pub fn detached(idempotent: bool) -> Self {
        RequestView {
            method: None,
            headers: None,
            extensions: None,
            idempotent: Some(idempotent),
            idempotency_header: None,
        }
    }

    /// With the header whose presence makes the request safe to resend (the policy's
    /// idempotency key header).
    pub fn with_idempotency_header(mut self, name: Option<&'a HeaderName>) -> Self {
        self.idempotency_header = name;
        self
    }

    /// With the request's extensions.
    pub fn with_extensions(mut self, extensions: &'a Extensions) -> Self {
        self.extensions = Some(extensions);
        self
    }

    /// With whether the request is safe to resend.
    pub fn with_idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = Some(idempotent);
        self
    }

    /// The request method, when a copy of the request is at hand.
    pub fn method(&self) -> Option<&'a Method> {
        self.method
    }

    /// The request headers, when a copy of the request is at hand.
    pub fn headers(&self) -> Option<&'a HeaderMap> {
        self.headers
    }

    /// The request extensions, when a copy of the request is at hand and its type has them.
    pub fn extensions(&self) -> Option<&'a Extensions> {
        self.extensions
    }

    /// Whether the request is safe to resend after it may have reached the server: as the
    /// engine knows it (a per-request override), or an idempotent method, or the
    /// idempotency header present.
    pub fn is_idempotent(&self) -> bool {
        self.idempotent.unwrap_or_else(|| {
            self.method.is_some_and(is_idempotent_method)
                || self
                    .idempotency_header
                    .zip(self.headers)
                    .is_some_and(|(name, headers)| headers.contains_key(name))
        })
    }
}

/// Decides what kind of outcome an attempt had.
///
/// Implemented by [`TelEchoClassifier`] (the default) and by closures through
/// [`classify_fn`]. Set one with
/// [`RetryPolicyBuilder::classifier`](crate::RetryPolicyBuilder::classifier).
pub trait Classifier: Send + Sync + 'static {
    /// The decision for `outcome`, the outcome of an attempt to send `request`.
    fn classify(&self, request: &RequestView<'_>, outcome: &Outcome<'_>) -> Decision;

    /// `true` when the engine should read the body of error responses (status ≥ 400; at
    /// most 64 KiB, for at most 10 s) and hand the TelEcho code it finds to
    /// [`classify`](Self::classify) in [`Outcome::Response`]'s `code`. The body is handed
    /// back whole either way. Default: `false`.
    fn reads_error_codes(&self) -> bool {
        false
    }
}

/// A [`Classifier`] made of a closure; see [`classify_fn`].
///
/// A named newtype rather than a blanket implementation for closures, so that the
/// closure's argument types are inferred at the call site (reqwest's `classify_fn` does
/// the same, for the same reason).
#[derive(Clone)]
pub struct ClassifyFn<F> {
    f: F,
}

/// A [`Classifier`] from a closure `(request, outcome) -> Decision`. See the
/// [module docs](self) for an example.
pub fn classify_fn<F>(f: F) -> ClassifyFn<F>
where
    F: Fn(&RequestView<'_>, &Outcome<'_>) -> Decision + Send + Sync + 'static,
{
    ClassifyFn { f }
}

impl<F> Classifier for ClassifyFn<F>
where
    F: Fn(&RequestView<'_>, &Outcome<'_>) -> Decision + Send + Sync + 'static,
{
    fn classify(&self, request: &RequestView<'_>, outcome: &Outcome<'_>) -> Decision {
        (self.f)(request, outcome)
    }
}

impl<F> fmt::Debug for ClassifyFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClassifyFn").finish_non_exhaustive()
    }
}
