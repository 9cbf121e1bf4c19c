//! [`RetryError`]: how a logical request failed, with the [`RetryInfo`] of what was tried.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use super::info::{RetryInfo, StopReason};
use crate::classify::TransportErrorKind;

/// A boxed error, `Send + Sync` (what `tower::BoxError` is).
pub(crate) type BoxError = Box<dyn StdError + Send + Sync>;

/// What kind of failure a [`RetryError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RetryErrorKind {
    /// The last attempt failed with the inner service's error ([`RetryError::get_inner`]).
    Inner,
    /// The last attempt was cut by the policy's
    /// [`attempt_timeout`](crate::RetryPolicyBuilder::attempt_timeout) and not retried (a
    /// request that is not safe to resend, or no retries left).
    AttemptTimeout,
    /// The policy's [`deadline`](crate::RetryPolicyBuilder::deadline) was reached: an
    /// attempt in flight was cut, or the next one was not sent because it would have
    /// started after the deadline (also when the wait behind the rate-limit cooldown would
    /// cross it).
    Deadline,
    /// Not sent: the origin is rate limited for longer than the policy's
    /// [`max_retry_after`](crate::RetryPolicyBuilder::max_retry_after) (a 429 with a longer
    /// `Retry-After` was seen), or this client's own [pacing](crate::limits::Pacing) has no
    /// slot for it within that time; [`RetryError::cooldown`] says for how long. Its
    /// `Display` says which.
    RateLimited,
}

/// How a logical request failed, with the [`RetryInfo`] of what was tried.
///
/// The tower adapter's error type is `RetryError`, whatever the inner service's error type
/// (which becomes its `source()`): so that the engine can enforce the attempt timeout, the
/// deadline and the rate-limit cooldown over any inner service, and so that every failure
/// says how many attempts were made. Layers stacked above box it; [`RetryError::of`] finds
/// it in a `BoxError`. The
/// reqwest middleware returns the inner `reqwest_middleware::Error` for a failed attempt
/// (with the `RetryInfo` in the caller's extensions) and a
/// `reqwest_middleware::Error::Middleware` holding a `RetryError` for what the engine
/// decided itself (a timeout, the deadline, a rate limit).
///
/// ```
/// use std::time::Duration;
/// use bytes::Bytes;
/// use http::Request;
/// use http_body_util::Full;
/// use telecho_retry::{RetryError, RetryErrorKind, RetryPolicy, TelEchoRetry};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let hangs = service_fn(|_req: Request<Full<Bytes>>| async {
///     std::future::pending::<Result<http::Response<Full<Bytes>>, std::io::Error>>().await
/// });
/// let policy = RetryPolicy::builder()
///     .max_retries(1)
///     .attempt_timeout(Duration::from_secs(2))
///     .build();
/// let client = ServiceBuilder::new().layer(TelEchoRetry::new(policy)).service(hangs);
///
/// let err: RetryError = client.oneshot(Request::new(Full::new(Bytes::new()))).await.unwrap_err();
/// assert_eq!(err.kind(), RetryErrorKind::AttemptTimeout);
/// assert_eq!(err.info().attempts(), 2); // a GET is retried after a timeout
/// # }
/// ```
///
/// Its `source()` is the inner error (for [`RetryErrorKind::Inner`]), or an `io::Error` of
/// kind `TimedOut` for an attempt timeout or the deadline (so that a retry layer stacked
/// above this one classifies it as a timeout). Its `Display` names the kind, the attempts
/// made and the last cause (`request failed after 6 attempts: connect error (connection
/// refused)`); it and `Debug` show the inner error's [`TransportErrorKind`] and the
/// operating system's error kind only: never a header, URL or body.
pub struct RetryError {
    kind: RetryErrorKind,
    inner: Option<BoxError>,
    info: RetryInfo,
    cooldown: Option<Duration>,
    // The wait in `cooldown` is for a slot of this client's own pacing, not the API's.
    by_pacing: bool,
    timeout: Option<Duration>,
    // For a timeout or the deadline, an `io::ErrorKind::TimedOut` source, so that
    // `TransportErrorKind::of_error` (a retry layer above this one) sees a timeout.
    timed_out: Option<std::io::Error>,
}

impl RetryError {
    #[cfg_attr(not(feature = "tower"), allow(dead_code))] // the tower adapter's
    pub(crate) fn inner(error: BoxError, info: RetryInfo) -> Self {
        RetryError {
            kind: RetryErrorKind::Inner,
            inner: Some(error),
            info,
            cooldown: None,
            by_pacing: false,
            timeout: None,
            timed_out: None,
        }
    }

    pub(crate) fn new(kind: RetryErrorKind, info: RetryInfo) -> Self {
        let timed_out = matches!(
            kind,
            RetryErrorKind::AttemptTimeout | RetryErrorKind::Deadline
        )
        .then(|| std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"));
        RetryError {
            kind,
            inner: None,
            info,
            cooldown: None,
            by_pacing: false,
            timeout: None,
            timed_out,
        }
    }

    pub(crate) fn with_cooldown(mut self, cooldown: Option<Duration>) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// The wait in [`cooldown`](Self::cooldown) is for this client's own paced slot.
    pub(crate) fn by_pacing(mut self) -> Self {
        self.by_pacing = true;
        self
    }

    pub(crate) fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The `RetryError` inside a boxed error (what layers above the retry layer, such as
    /// `Timeout` or `Buffer`, return), if it is one.
    ///
    /// It walks the error's `source()` chain (`Buffer` wraps an inner service's failure in
    /// an error of its own).
    pub fn of<'a>(error: &'a (dyn StdError + Send + Sync + 'static)) -> Option<&'a RetryError> {
        let mut link: Option<&'a (dyn StdError + 'static)> = Some(error);
        let mut depth = 0;
        while let Some(e) = link {
            if let Some(found) = e.downcast_ref::<RetryError>() {
                return Some(found);
            }
            // reqwest-middleware's error is transparent: its `source()` skips what it holds.
            #[cfg(feature = "reqwest")]
            if let Some(reqwest_middleware::Error::Middleware(held)) =
                e.downcast_ref::<reqwest_middleware::Error>()
            {
                if let Some(found) = held.downcast_ref::<RetryError>() {
                    return Some(found);
                }
            }
            depth += 1;
            if depth > 32 {
                return None; // a cyclic or absurd chain
            }
            link = e.source();
        }
        None
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> RetryErrorKind {
        self.kind
    }

    /// What was tried: attempts sent (0 when none was), time slept, why retrying stopped.
    pub fn info(&self) -> RetryInfo {
        self.info
    }

    /// Why retrying stopped (shortcut for `info().stop_reason()`).
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.info.stop_reason()
    }

    /// `true` for an attempt timeout or the deadline, and for an inner error that is a
    /// timeout (a `TimeoutLayer` under the retry layer, a client's own timeout).
    pub fn is_timeout(&self) -> bool {
        match self.kind {
            RetryErrorKind::AttemptTimeout | RetryErrorKind::Deadline => true,
            _ => self
                .inner
                .as_deref()
                .is_some_and(|e| TransportErrorKind::of_error(e) == TransportErrorKind::Timeout),
        }
    }

    /// `true` when the last attempt's error says the connection could not be established
    /// (refused, DNS, TLS handshake): nothing was sent.
    pub fn is_connect(&self) -> bool {
        self.inner
            .as_deref()
            .is_some_and(|e| TransportErrorKind::of_error(e) == TransportErrorKind::Connect)
    }

    /// `true` when the request was not sent because its origin is rate limited.
    pub fn is_rate_limited(&self) -> bool {
        self.kind == RetryErrorKind::RateLimited
    }

    /// The rate-limit cooldown that was left when the request was refused, if one was (for
    /// a refusal by this client's own pacing, how far ahead its slot was).
    pub fn cooldown(&self) -> Option<Duration> {
        self.cooldown
    }

    /// The inner service's error, for [`RetryErrorKind::Inner`].
    pub fn get_inner(&self) -> Option<&(dyn StdError + Send + Sync + 'static)> {
        self.inner.as_deref()
    }

    /// The inner service's error, owned.
    pub fn into_inner(self) -> Option<BoxError> {
        self.inner
    }
}

impl fmt::Display for RetryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.info.attempts();
        let plural = if n == 1 { "" } else { "s" };
        match self.kind {
            RetryErrorKind::Inner => {
                write!(f, "request failed after {n} attempt{plural}")?;
                match self.inner.as_deref() {
                    Some(inner) => write_cause(f, inner),
                    None => Ok(()),
                }
            }
            RetryErrorKind::AttemptTimeout => match self.timeout {
                Some(t) => write!(
                    f,
                    "attempt timed out after {t:?} ({n} attempt{plural} made)"
                ),
                None => write!(f, "attempt timed out ({n} attempt{plural} made)"),
            },
            RetryErrorKind::Deadline => {
                write!(f, "deadline exceeded ({n} attempt{plural} made)")
            }
            RetryErrorKind::RateLimited => match (self.cooldown, self.by_pacing) {
                (Some(c), false) => write!(
                    f,
                    "rate limited: not sent, the API accepts requests again in {c:?}"
                ),
                (Some(c), true) => write!(
                    f,
                    "rate limited by client-side pacing: not sent, the next slot is in {c:?}"
                ),
                (None, false) => write!(f, "rate limited: not sent"),
                (None, true) => write!(f, "rate limited by client-side pacing: not sent"),
            },
        }
    }
}

/// `: <kind> (<what the operating system said>)` for the inner error: the transport kind
/// and the `io::ErrorKind` found in its `source()` chain. Never the error's own message,
/// which may carry a URL and its query.
fn write_cause(
    f: &mut fmt::Formatter<'_>,
    inner: &(dyn StdError + Send + Sync + 'static),
) -> fmt::Result {
    let kind = TransportErrorKind::of_error(inner);
    let mut link: Option<&(dyn StdError + 'static)> = Some(inner);
    let mut io = None;
    for _ in 0..32 {
        let Some(e) = link else { break };
        if let Some(e) = e.downcast_ref::<std::io::Error>() {
            io = Some(e.kind());
            break;
        }
        link = e.source();
    }
    match (kind, io) {
        (_, Some(io)) => write!(f, ": {kind} error ({io})"),
        (TransportErrorKind::Other, None) => f.write_str(": the inner service's error"),
        (_, None) => write!(f, ": {kind} error"),
    }
}

impl fmt::Debug for RetryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryError")
            .field("kind", &self.kind)
            .field("info", &self.info)
            .field("cooldown", &self.cooldown)
            .field("by_pacing", &self.by_pacing)
            // The inner error's kind only: some errors' `Debug` show the URL, query included.
            .field(
                "inner",
                &self
                    .inner
                    .as_deref()
                    .map(|e| TransportErrorKind::of_error(e)),
            )
            .finish()
    }
}

impl StdError for RetryError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match (&self.inner, &self.timed_out) {
            (Some(inner), _) => Some(&**inner as &(dyn StdError + 'static)),
            (None, Some(timed_out)) => Some(timed_out),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_classify_as_timeouts_through_their_source() {
        let info = RetryInfo::not_sent();
        for kind in [RetryErrorKind::AttemptTimeout, RetryErrorKind::Deadline] {
            let e = RetryError::new(kind, info);
            assert_eq!(
                TransportErrorKind::of_error(&e),
                TransportErrorKind::Timeout
            );
        }
        let limited = RetryError::new(RetryErrorKind::RateLimited, info);
        assert_eq!(
            TransportErrorKind::of_error(&limited),
            TransportErrorKind::Other
        );
    }

    #[test]
    fn a_refusal_by_pacing_says_it_is_the_clients_own() {
        let info = RetryInfo::not_sent();
        let wait = Some(Duration::from_secs(90));
        let api = RetryError::new(RetryErrorKind::RateLimited, info).with_cooldown(wait);
        assert_eq!(
            api.to_string(),
            "rate limited: not sent, the API accepts requests again in 90s"
        );
        let paced = RetryError::new(RetryErrorKind::RateLimited, info)
            .with_cooldown(wait)
            .by_pacing();
        assert_eq!(
            paced.to_string(),
            "rate limited by client-side pacing: not sent, the next slot is in 90s"
        );
        assert!(!paced.to_string().contains("API"));
        assert!(format!("{paced:?}").contains("by_pacing: true"));
    }

    #[test]
    fn of_finds_it_below_a_wrapping_error() {
        #[derive(Debug)]
        struct Wrapper(RetryError);
        impl fmt::Display for Wrapper {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("buffered service failed")
            }
        }
        impl StdError for Wrapper {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let info = RetryInfo::not_sent();
        let boxed: BoxError = Box::new(Wrapper(RetryError::new(RetryErrorKind::RateLimited, info)));
        let found = RetryError::of(&*boxed).expect("found through source()");
        assert!(found.is_rate_limited());
        let plain: BoxError = "not ours".into();
        assert!(RetryError::of(&*plain).is_none());
    }
}
