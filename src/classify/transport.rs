//! Transport errors: what kind of failure happened, and whether resending is safe.
//!
//! Adapters map their client's error (hyper-util, reqwest, a `BoxError` …) into a
//! [`TransportErrorKind`]; the [`RetryPolicy`](crate::RetryPolicy) decides from the kind and
//! the request whether to retry:
//!
//! | kind | idempotent method, or idempotency key present | otherwise (e.g. a `POST`) |
//! |---|---|---|
//! | [`Connect`](TransportErrorKind::Connect): the request never left | retried | retried |
//! | [`Refused`](TransportErrorKind::Refused): the server did not process it (HTTP/2 `REFUSED_STREAM`, `GOAWAY` with `NO_ERROR`) | retried | retried |
//! | [`Timeout`](TransportErrorKind::Timeout), [`Reset`](TransportErrorKind::Reset), [`IncompleteMessage`](TransportErrorKind::IncompleteMessage) | retried | **fatal**: it may have reached the server |
//! | [`Other`](TransportErrorKind::Other) | fatal | fatal |
//!
//! Idempotent methods are those RFC 9110 §9.2.2 names: `GET`, `HEAD`, `OPTIONS`, `PUT`,
//! `DELETE`, `TRACE`.
//!
//! # What [`TransportErrorKind::of_error`] recognises
//!
//! | error (anywhere in the `source()` chain) | kind |
//! |---|---|
//! | `std::io::Error`: `ConnectionRefused`, `AddrNotAvailable`, `NotConnected`, `HostUnreachable`, `NetworkUnreachable` | `Connect` |
//! | `std::io::Error`: `TimedOut`, `WouldBlock` | `Timeout` |
//! | `std::io::Error`: `ConnectionReset`, `ConnectionAborted`, `BrokenPipe` | `Reset` |
//! | `std::io::Error`: `UnexpectedEof` | `IncompleteMessage` |
//! | `tokio::time::error::Elapsed` | `Timeout` |
//! | `tower::timeout::error::Elapsed` (feature `tower`: a `TimeoutLayer` under the retry layer) | `Timeout` |
//! | hyper-util client error that `is_connect()` (feature `tower`) | `Connect` |
//! | `hyper::Error`: incomplete message / timeout / closed or canceled (feature `tower`) | `IncompleteMessage` / `Timeout` / `Reset` |
//! | `h2::Error` from the server: stream reset with `REFUSED_STREAM`, or `GOAWAY` with `NO_ERROR` (feature `tower`) | `Refused` |
//! | `reqwest::Error` that `is_connect()` / `is_timeout()` (feature `reqwest`) | `Connect` / `Timeout` |
//!
//! The two `h2` cases are the ones RFC 9113 §8.7 says were not processed: a stream the
//! server refused, and a stream above the last stream id of a graceful `GOAWAY`. reqwest's
//! own retry classifier treats the same two as safe to retry. Any other HTTP/2 error (a
//! reset with another reason, a `GOAWAY` with an error code) is not recognised: the rest of
//! the chain decides, else `Other`.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::fmt;
use std::io;

use http::Method;

/// The kind of a transport failure, as far as retrying is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// The connection could not be established (refused, DNS, TLS handshake, connect
    /// timeout): the request never left, so resending is always safe.
    Connect,
    /// The server refused the request before processing it: an HTTP/2 stream reset with
    /// `REFUSED_STREAM`, or a graceful `GOAWAY` (`NO_ERROR`) whose last stream id is below
    /// the request's (RFC 9113 §8.7). The request may have been sent, but was not acted
    /// on, so resending is always safe.
    Refused,
    /// The request or its response timed out after it may have been sent.
    Timeout,
    /// The connection was reset or closed after the request may have been sent.
    Reset,
    /// The response ended before it was complete.
    IncompleteMessage,
    /// Anything else (a bad URL, a body error, a protocol error): never retried.
    Other,
}

impl TransportErrorKind {
    /// `true` when the server may have acted on the request: every kind but `Connect`
    /// (nothing was sent) and `Refused` (the server says it did not process it).
    pub fn may_have_been_sent(self) -> bool {
        !matches!(
            self,
            TransportErrorKind::Connect | TransportErrorKind::Refused
        )
    }

    /// A short lowercase name, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportErrorKind::Connect => "connect",
            TransportErrorKind::Refused => "refused",
            TransportErrorKind::Timeout => "timeout",
            TransportErrorKind::Reset => "reset",
            TransportErrorKind::IncompleteMessage => "incomplete_message",
            TransportErrorKind::Other => "other",
        }
    }

    /// Classifies any error by walking its `source()` chain.
    ///
    /// It downcasts each link to the error types it knows (the table in the
    /// [`TransportErrorKind`] docs): [`std::io::Error`] (by [`io::ErrorKind`]),
    /// `tokio::time::error::Elapsed`, and with the `tower` feature
    /// `tower::timeout::error::Elapsed`, `hyper::Error`, hyper-util's client error and
    /// `h2::Error`, with the `reqwest` feature `reqwest::Error`. A `Connect` anywhere in
    /// the chain wins (a connect timeout is a connect error: nothing was sent), then a
    /// `Refused` anywhere (the server says it did not process the request, whatever an
    /// outer link says); otherwise the first link that says something decides; otherwise
    /// [`TransportErrorKind::Other`].
    ///
    /// An `io::Error` that says "refused" or "unreachable" means `Connect` only when no
    /// outer link says the connection was up: below a hyper error, a hyper-util client
    /// error that is not a connect error, or a reqwest error that is not, it means the
    /// connection broke after the request may have been written (a live TCP connection
    /// whose path is lost fails with `EHOSTUNREACH`), and counts as `Reset`.
    pub fn of_error(err: &(dyn StdError + 'static)) -> Self {
        let mut found = None;
        let mut refused = false;
        let mut established = false;
        let mut link = Some(err);
        let mut depth = 0;
        while let Some(e) = link {
            established |= says_connection_was_up(e);
            match kind_of_link(e, established) {
                Some(TransportErrorKind::Connect) => return TransportErrorKind::Connect,
                Some(TransportErrorKind::Refused) => refused = true,
                Some(kind) => {
                    found.get_or_insert(kind);
                }
                None => {}
            }
            depth += 1;
            if depth > 32 {
                break; // a cyclic or absurd chain: stop, do not spin
            }
            link = e.source();
        }
        if refused {
            return TransportErrorKind::Refused;
        }
        found.unwrap_or(TransportErrorKind::Other)
    }
}

impl fmt::Display for TransportErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `true` for an error that says its connection had been established: what it wraps
/// happened after the request may have been written.
fn says_connection_was_up(e: &(dyn StdError + 'static)) -> bool {
    #[cfg(feature = "tower")]
    {
        if let Some(h) = e.downcast_ref::<hyper_util::client::legacy::Error>() {
            return !h.is_connect();
        }
    }
    #[cfg(any(feature = "tower", feature = "reqwest"))]
    {
        if e.is::<hyper::Error>() {
            return true;
        }
    }
    #[cfg(feature = "reqwest")]
    {
        if let Some(r) = e.downcast_ref::<reqwest::Error>() {
            return !r.is_connect() && r.is_request();
        }
    }
    let _ = e;
    false
}

fn kind_of_link(e: &(dyn StdError + 'static), established: bool) -> Option<TransportErrorKind> {
    use TransportErrorKind::*;
    if let Some(io) = e.downcast_ref::<io::Error>() {
        return match io.kind() {
            io::ErrorKind::ConnectionRefused
            | io::ErrorKind::AddrNotAvailable
            | io::ErrorKind::NotConnected
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable => Some(if established { Reset } else { Connect }),
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Some(Timeout),
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => Some(Reset),
            io::ErrorKind::UnexpectedEof => Some(IncompleteMessage),
            _ => None,
        };
    }
    if e.is::<tokio::time::error::Elapsed>() {
        return Some(Timeout);
    }
    #[cfg(feature = "tower")]
    {
        if e.is::<::tower::timeout::error::Elapsed>() {
            return Some(Timeout);
        }
        if let Some(h) = e.downcast_ref::<hyper_util::client::legacy::Error>() {
            if h.is_connect() {
                return Some(Connect);
            }
        }
    }
    #[cfg(any(feature = "tower", feature = "reqwest"))]
    {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            return h2_not_processed(h2).then_some(Refused);
        }
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() {
                return Some(IncompleteMessage);
            }
            if h.is_timeout() {
                return Some(Timeout);
            }
            if h.is_closed() || h.is_canceled() {
                return Some(Reset);
            }
        }
    }
    #[cfg(feature = "reqwest")]
    {
        if let Some(r) = e.downcast_ref::<reqwest::Error>() {
            if r.is_connect() {
                return Some(Connect);
            }
            if r.is_timeout() {
                return Some(Timeout);
            }
        }
    }
    None
}

/// An HTTP/2 error that says the server did not process the request (RFC 9113 §8.7), as
/// reqwest 0.13's retry classifier reads it: a graceful `GOAWAY` from the server (the
/// stream is above its last stream id), or the server resetting the stream with
/// `REFUSED_STREAM`.
#[cfg(any(feature = "tower", feature = "reqwest"))]
fn h2_not_processed(e: &h2::Error) -> bool {
    e.is_remote()
        && ((e.is_go_away() && e.reason() == Some(h2::Reason::NO_ERROR))
            || (e.is_reset() && e.reason() == Some(h2::Reason::REFUSED_STREAM)))
}

/// `true` for the methods RFC 9110 §9.2.2 defines as idempotent:
/// `GET`, `HEAD`, `OPTIONS`, `PUT`, `DELETE`, `TRACE`.
pub fn is_idempotent_method(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// Maps an inner service's error to a [`TransportErrorKind`].
///
/// ```
/// use telecho_retry::classify::ClassifyError;
/// use telecho_retry::classify::TransportErrorKind;
///
/// #[derive(Debug)]
/// enum MyError { Refused, Other }
///
/// impl ClassifyError for MyError {
///     fn transport_error_kind(&self) -> TransportErrorKind {
///         match self {
///             MyError::Refused => TransportErrorKind::Connect,
///             MyError::Other => TransportErrorKind::Other,
///         }
///     }
/// }
/// assert_eq!(MyError::Refused.transport_error_kind(), TransportErrorKind::Connect);
/// ```
pub trait ClassifyError {
    /// The kind of failure, for the policy's transport rules.
    fn transport_error_kind(&self) -> TransportErrorKind;
}

// ===== impl ClassifyError =====

impl ClassifyError for Infallible {
    fn transport_error_kind(&self) -> TransportErrorKind {
        match *self {}
    }
}

impl ClassifyError for std::io::Error {
    fn transport_error_kind(&self) -> TransportErrorKind {
        TransportErrorKind::of_error(self)
    }
}

impl ClassifyError for Box<dyn StdError + Send + Sync> {
    fn transport_error_kind(&self) -> TransportErrorKind {
        TransportErrorKind::of_error(&**self)
    }
}

#[cfg(any(feature = "tower", feature = "reqwest"))]
impl ClassifyError for hyper::Error {
    fn transport_error_kind(&self) -> TransportErrorKind {
        TransportErrorKind::of_error(self)
    }
}

#[cfg(feature = "tower")]
impl ClassifyError for hyper_util::client::legacy::Error {
    fn transport_error_kind(&self) -> TransportErrorKind {
        TransportErrorKind::of_error(self)
    }
}

#[cfg(feature = "reqwest")]
impl ClassifyError for reqwest::Error {
    fn transport_error_kind(&self) -> TransportErrorKind {
        TransportErrorKind::of_error(self)
    }
}

#[cfg(feature = "reqwest")]
impl ClassifyError for reqwest_middleware::Error {
    fn transport_error_kind(&self) -> TransportErrorKind {
        match self {
            reqwest_middleware::Error::Reqwest(e) => TransportErrorKind::of_error(e),
            reqwest_middleware::Error::Middleware(e) => TransportErrorKind::of_error(e.as_ref()),
        }
    }
}

#[cfg(test)]
mod tests;
