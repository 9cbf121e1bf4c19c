//! Transport errors: what kind of failure happened, and whether resending is safe.
//!
//! Adapters map their client's error (hyper-util, reqwest, a `BoxError` …) into a
//! [`TransportErrorKind`]; the [`RetryPolicy`](crate::RetryPolicy) decides from the kind and
//! the request whether to retry:
//!
//! | kind | idempotent method, or idempotency key present | otherwise (e.g. a `POST`) |
//! |---|---|---|
//! | [`Connect`](TransportErrorKind::Connect): the request never left | retried | retried |
//! | [`Timeout`](TransportErrorKind::Timeout), [`Reset`](TransportErrorKind::Reset), [`IncompleteMessage`](TransportErrorKind::IncompleteMessage) | retried | **fatal**: it may have reached the server |
//! | [`Other`](TransportErrorKind::Other) | fatal | fatal |
//!
//! Idempotent methods are those RFC 9110 §9.2.2 names: `GET`, `HEAD`, `OPTIONS`, `PUT`,
//! `DELETE`, `TRACE`.

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
    /// `true` when the request may have reached the server (every kind but `Connect`).
    pub fn may_have_been_sent(self) -> bool {
        !matches!(self, TransportErrorKind::Connect)
    }

    /// A short lowercase name, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportErrorKind::Connect => "connect",
            TransportErrorKind::Timeout => "timeout",
            TransportErrorKind::Reset => "reset",
            TransportErrorKind::IncompleteMessage => "incomplete_message",
            TransportErrorKind::Other => "other",
        }
    }

    /// Classifies any error by walking its `source()` chain.
    ///
    /// It downcasts each link to the error types it knows: [`std::io::Error`] (by
    /// [`io::ErrorKind`]), `tokio::time::error::Elapsed`, and with the `tower` feature
    /// `hyper::Error` and hyper-util's client error, with the `reqwest` feature
    /// `reqwest::Error`. A `Connect` anywhere in the chain wins (a connect timeout is a
    /// connect error: nothing was sent); otherwise the first link that says something
    /// decides; otherwise [`TransportErrorKind::Other`].
    pub fn of_error(err: &(dyn StdError + 'static)) -> Self {
        let mut found = None;
        let mut link = Some(err);
        let mut depth = 0;
        while let Some(e) = link {
            if let Some(kind) = kind_of_link(e) {
                if kind == TransportErrorKind::Connect {
                    return kind;
                }
                found.get_or_insert(kind);
            }
            depth += 1;
            if depth > 32 {
                break; // a cyclic or absurd chain: stop, do not spin
            }
            link = e.source();
        }
        found.unwrap_or(TransportErrorKind::Other)
    }
}

impl fmt::Display for TransportErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn kind_of_link(e: &(dyn StdError + 'static)) -> Option<TransportErrorKind> {
    use TransportErrorKind::*;
    if let Some(io) = e.downcast_ref::<io::Error>() {
        return match io.kind() {
            io::ErrorKind::ConnectionRefused
            | io::ErrorKind::AddrNotAvailable
            | io::ErrorKind::NotConnected
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable => Some(Connect),
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
    if let Some(r) = e.downcast_ref::<crate::RetryError>() {
        if r.is_timeout() {
            return Some(Timeout);
        }
    }
    #[cfg(feature = "tower")]
    {
        if let Some(h) = e.downcast_ref::<hyper_util::client::legacy::Error>() {
            if h.is_connect() {
                return Some(Connect);
            }
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

/// `true` for the methods RFC 9110 §9.2.2 defines as idempotent:
/// `GET`, `HEAD`, `OPTIONS`, `PUT`, `DELETE`, `TRACE`.
pub fn is_idempotent_method(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrap(Box<dyn StdError + 'static>);
    impl fmt::Display for Wrap {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("wrapped")
        }
    }
    impl StdError for Wrap {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&*self.0)
        }
    }

    fn io(kind: io::ErrorKind) -> io::Error {
        io::Error::new(kind, "x")
    }

    #[test]
    fn io_kinds_map() {
        use TransportErrorKind::*;
        for (k, want) in [
            (io::ErrorKind::ConnectionRefused, Connect),
            (io::ErrorKind::TimedOut, Timeout),
            (io::ErrorKind::ConnectionReset, Reset),
            (io::ErrorKind::BrokenPipe, Reset),
            (io::ErrorKind::UnexpectedEof, IncompleteMessage),
            (io::ErrorKind::InvalidData, Other),
            (io::ErrorKind::PermissionDenied, Other),
        ] {
            assert_eq!(TransportErrorKind::of_error(&io(k)), want, "{k:?}");
        }
    }

    #[test]
    fn source_chain_is_walked_and_connect_wins() {
        let reset_in_chain = Wrap(Box::new(Wrap(Box::new(io(io::ErrorKind::ConnectionReset)))));
        assert_eq!(
            TransportErrorKind::of_error(&reset_in_chain),
            TransportErrorKind::Reset
        );
        // A timeout wrapping a refused connection: nothing was sent.
        #[derive(Debug)]
        struct TimeoutOver(io::Error);
        impl fmt::Display for TimeoutOver {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("t")
            }
        }
        impl StdError for TimeoutOver {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let e = Wrap(Box::new(io(io::ErrorKind::TimedOut)));
        assert_eq!(
            TransportErrorKind::of_error(&e),
            TransportErrorKind::Timeout
        );
        let e = Wrap(Box::new(TimeoutOver(io(io::ErrorKind::ConnectionRefused))));
        assert_eq!(
            TransportErrorKind::of_error(&e),
            TransportErrorKind::Connect
        );
    }

    #[test]
    fn unknown_errors_are_other() {
        let e: Box<dyn StdError> = "plain string error".into();
        assert_eq!(TransportErrorKind::of_error(&*e), TransportErrorKind::Other);
    }

    #[test]
    fn idempotent_methods() {
        for m in ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"] {
            assert!(is_idempotent_method(&m.parse().unwrap()), "{m}");
        }
        for m in ["POST", "PATCH", "CONNECT", "PURGE"] {
            assert!(!is_idempotent_method(&m.parse().unwrap()), "{m}");
        }
    }
}
