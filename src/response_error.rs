//! Typed errors for responses: turn a non-success response into a [`ResponseError`] that
//! carries the status, the parsed [`ApiError`] (or the raw body when it does not parse) and
//! the parsed `Retry-After`.
//!
//! ```
//! use bytes::Bytes;
//! use http::{Response, StatusCode};
//! use telecho_retry::{ErrorCode, HttpResponseExt};
//!
//! let resp = Response::builder()
//!     .status(401)
//!     .header("authorization", "Bearer never-shown")
//!     .body(Bytes::from_static(br#"{"error":{"type":"authentication_error","code":"invalid_api_key","message":"The API key provided is invalid."}}"#))
//!     .unwrap();
//! let err = resp.api_error_for_status().unwrap_err();
//! assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(err.code(), Some(&ErrorCode::InvalidApiKey));
//! assert_eq!(err.to_string(), "401 Unauthorized: invalid_api_key: The API key provided is invalid.");
//! assert!(!format!("{err:?}").contains("never-shown"));
//! ```
//!
//! | response type | trait | how the body is read |
//! |---|---|---|
//! | `http::Response<Bytes>` | [`HttpResponseExt`] (sync) | already in memory: at most [`MAX_ERROR_BODY_BYTES`] kept |
//! | `http::Response<B>`, `B: http_body::Body` (hyper's `Incoming`, a tower client's body) | [`HttpBodyResponseExt`] (async) | at most [`MAX_ERROR_BODY_BYTES`], for at most [`ERROR_BODY_TIMEOUT`] |
//! | `reqwest::Response` (feature `reqwest`) | [`ReqwestResponseExt`] (async) | at most [`MAX_ERROR_BODY_BYTES`], for at most [`ERROR_BODY_TIMEOUT`] |
//!
//! The async helpers never wait for an error body forever: a server that sends an error's
//! head and then stalls costs at most [`ERROR_BODY_TIMEOUT`]. The [`ResponseError`] then
//! keeps what had arrived, with [`body_truncated`](ResponseError::body_truncated) and
//! [`body_timed_out`](ResponseError::body_timed_out) set, and is not parsed as an envelope.

use std::fmt;
use std::time::{Duration, SystemTime};

use bytes::{Buf, Bytes};
use http::header::RETRY_AFTER;
use http::{HeaderMap, StatusCode};
use http_body::Body;

use crate::body::peek::collect;
use crate::body::ERROR_BODY_TIMEOUT;
use crate::classify::parse_retry_after;
use crate::envelope::{ApiError, ErrorCode, MAX_ENVELOPE_BYTES};

/// The most bytes of an error body kept in a [`ResponseError`]: 64 KiB
/// ([`MAX_ENVELOPE_BYTES`]); the rest is not read.
pub const MAX_ERROR_BODY_BYTES: usize = MAX_ENVELOPE_BYTES;

/// A non-success (4xx or 5xx) response, as an error value.
///
/// Its `Debug` shows no header values and none of an unparsed body, only its length: a
/// body may echo what the request sent (a phone number, a message), and `Debug` output ends
/// up in logs. [`body`](Self::body) has the bytes.
#[derive(Clone)]
pub struct ResponseError {
    status: StatusCode,
    api_error: Option<ApiError>,
    body: Bytes,
    body_truncated: bool,
    body_timed_out: bool,
    retry_after: Option<Duration>,
}

impl ResponseError {
    /// Builds the error from a response's status, headers and (possibly truncated) body.
    /// `body_truncated` says the body was longer than what is passed; the body is then not
    /// parsed as an envelope.
    pub fn from_parts(
        status: StatusCode,
        headers: &HeaderMap,
        body: Bytes,
        body_truncated: bool,
    ) -> Self {
        let api_error = if body_truncated {
            None
        } else {
            ApiError::from_json(&body).ok()
        };
        let now = SystemTime::now();
        let retry_after = headers
            .get_all(RETRY_AFTER)
            .iter()
            .find_map(|v| parse_retry_after(v, now));
        ResponseError {
            status,
            api_error,
            body,
            body_truncated,
            body_timed_out: false,
            retry_after,
        }
    }

    /// Reads at most [`MAX_ERROR_BODY_BYTES`] of `body` for at most `timeout` and builds
    /// the error from what came.
    async fn read<B>(
        status: StatusCode,
        headers: &HeaderMap,
        body: B,
        timeout: Duration,
    ) -> ResponseError
    where
        B: Body + Unpin,
        B::Data: Buf,
    {
        let read = collect(body, MAX_ERROR_BODY_BYTES, timeout).await;
        let mut error = ResponseError::from_parts(status, headers, read.bytes, read.truncated);
        error.body_timed_out = read.timed_out;
        error
    }

    /// The response status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The TelEcho envelope, when the body was one.
    pub fn api_error(&self) -> Option<&ApiError> {
        self.api_error.as_ref()
    }

    /// The envelope's code, when the body was one.
    pub fn code(&self) -> Option<&ErrorCode> {
        self.api_error.as_ref().map(ApiError::code)
    }

    /// The raw body (at most [`MAX_ERROR_BODY_BYTES`]), whether or not it parsed.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// `true` when [`body`](Self::body) is not the whole body, which is then not parsed as
    /// an envelope: the body was longer than [`MAX_ERROR_BODY_BYTES`], or (async helpers)
    /// its read was stopped early, by [`ERROR_BODY_TIMEOUT`]
    /// ([`body_timed_out`](Self::body_timed_out)) or by an error of the body.
    pub fn body_truncated(&self) -> bool {
        self.body_truncated
    }

    /// `true` when the async helpers stopped reading the body after
    /// [`ERROR_BODY_TIMEOUT`]: [`body`](Self::body) holds what had arrived by then, and
    /// [`body_truncated`](Self::body_truncated) is `true` too.
    pub fn body_timed_out(&self) -> bool {
        self.body_timed_out
    }

    /// The parsed `Retry-After`, measured when the error was built.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.api_error {
            Some(e) => write!(f, "{}: {}", self.status, e),
            None => write!(
                f,
                "{}: response body is not a TelEcho error ({} bytes{})",
                self.status,
                self.body.len(),
                if self.body_timed_out {
                    ", timed out"
                } else if self.body_truncated {
                    ", truncated"
                } else {
                    ""
                }
            ),
        }
    }
}

impl fmt::Debug for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseError")
            .field("status", &self.status)
            .field("api_error", &self.api_error)
            .field("retry_after", &self.retry_after)
            .field("body_len", &self.body.len())
            .field("body_truncated", &self.body_truncated)
            .field("body_timed_out", &self.body_timed_out)
            .finish()
    }
}

impl std::error::Error for ResponseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.api_error
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

fn is_error_status(status: StatusCode) -> bool {
    status.is_client_error() || status.is_server_error()
}

/// Typed errors for `http::Response<Bytes>`.
pub trait HttpResponseExt: Sized {
    /// `Ok(self)` for a status below 400; otherwise the response as a [`ResponseError`].
    fn api_error_for_status(self) -> Result<Self, ResponseError>;
}

impl HttpResponseExt for http::Response<Bytes> {
    fn api_error_for_status(self) -> Result<Self, ResponseError> {
        if !is_error_status(self.status()) {
            return Ok(self);
        }
        let body = self.body();
        let truncated = body.len() > MAX_ERROR_BODY_BYTES;
        // A copy, not a slice: a slice would keep the whole body's buffer alive.
        let kept = if truncated {
            Bytes::copy_from_slice(&body[..MAX_ERROR_BODY_BYTES])
        } else {
            body.clone()
        };
        Err(ResponseError::from_parts(
            self.status(),
            self.headers(),
            kept,
            truncated,
        ))
    }
}

/// Typed errors for `http::Response<B>` whose body `B` is an [`http_body::Body`] still to
/// be read: hyper's `Incoming`, the response of a tower HTTP client, a
/// [`ResponseBody`](crate::body::ResponseBody).
///
/// The body must be `Unpin` (hyper's `Incoming`, `BoxBody` and `Full` are); wrap one that
/// is not in `Box::pin`.
///
/// ```
/// use bytes::Bytes;
/// use http::StatusCode;
/// use http_body_util::Full;
/// use telecho_retry::{ErrorCode, HttpBodyResponseExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let body = Full::new(Bytes::from_static(
///     br#"{"error":{"type":"authentication_error","code":"revoked_api_key","message":"Key revoked."}}"#,
/// ));
/// let resp = http::Response::builder().status(401).body(body).unwrap();
/// let err = resp.api_error_for_status().await.unwrap_err();
/// assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
/// assert_eq!(err.code(), Some(&ErrorCode::RevokedApiKey));
/// assert!(!err.body_truncated());
///
/// let ok = http::Response::new(Full::new(Bytes::from_static(b"{}")));
/// assert!(ok.api_error_for_status().await.is_ok());
/// # }
/// ```
pub trait HttpBodyResponseExt: Sized {
    /// `Ok(self)` for a status below 400, without touching the body; otherwise reads at
    /// most [`MAX_ERROR_BODY_BYTES`] of the body for at most [`ERROR_BODY_TIMEOUT`] and
    /// returns a [`ResponseError`] holding what came (see
    /// [`body_truncated`](ResponseError::body_truncated) and
    /// [`body_timed_out`](ResponseError::body_timed_out)). The rest of the body is not
    /// read: it is dropped with the response.
    ///
    /// Needs a tokio runtime with the time driver (for the time bound).
    fn api_error_for_status(
        self,
    ) -> impl std::future::Future<Output = Result<Self, ResponseError>> + Send;
}

impl<B> HttpBodyResponseExt for http::Response<B>
where
    B: Body + Unpin + Send,
    B::Data: Buf,
    B::Error: Send,
{
    async fn api_error_for_status(self) -> Result<Self, ResponseError> {
        if !is_error_status(self.status()) {
            return Ok(self);
        }
        let (parts, body) = self.into_parts();
        Err(ResponseError::read(parts.status, &parts.headers, body, ERROR_BODY_TIMEOUT).await)
    }
}

/// Typed errors for `reqwest::Response` (feature `reqwest`).
///
/// ```no_run
/// use telecho_retry::{ErrorCode, ReqwestResponseExt};
/// # async fn f(client: reqwest_middleware::ClientWithMiddleware) -> Result<(), Box<dyn std::error::Error>> {
/// let resp = client.get("http://127.0.0.1:8080/v1/agents").send().await?;
/// match resp.api_error_for_status().await {
///     Ok(resp) => println!("{}", resp.text().await?),
///     Err(e) if e.code() == Some(&ErrorCode::InvalidApiKey) => eprintln!("check your key"),
///     Err(e) => return Err(e.into()),
/// }
/// # Ok(()) }
/// ```
#[cfg(feature = "reqwest")]
pub trait ReqwestResponseExt: Sized {
    /// `Ok(self)` for a status below 400; otherwise reads at most
    /// [`MAX_ERROR_BODY_BYTES`] of the body for at most [`ERROR_BODY_TIMEOUT`] and returns
    /// a [`ResponseError`] holding what came. A body read error or the time bound ends the
    /// read early: the error then holds what was read, with
    /// [`body_truncated`](ResponseError::body_truncated) set (and
    /// [`body_timed_out`](ResponseError::body_timed_out) for the time bound).
    fn api_error_for_status(
        self,
    ) -> impl std::future::Future<Output = Result<Self, ResponseError>> + Send;
}

#[cfg(feature = "reqwest")]
impl ReqwestResponseExt for reqwest::Response {
    async fn api_error_for_status(self) -> Result<Self, ResponseError> {
        if !is_error_status(self.status()) {
            return Ok(self);
        }
        let (parts, body) = http::Response::<reqwest::Body>::from(self).into_parts();
        Err(ResponseError::read(parts.status, &parts.headers, body, ERROR_BODY_TIMEOUT).await)
    }
}

#[cfg(test)]
mod tests;
