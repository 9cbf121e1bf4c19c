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

use std::fmt;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::RETRY_AFTER;
use http::{HeaderMap, StatusCode};

use crate::api_error::{ApiError, ErrorCode, MAX_ENVELOPE_BYTES};
use crate::retry_after::parse_retry_after;

/// The most bytes of an error body kept in a [`ResponseError`]: 64 KiB
/// ([`MAX_ENVELOPE_BYTES`]); the rest is not read.
pub const MAX_ERROR_BODY_BYTES: usize = MAX_ENVELOPE_BYTES;

/// The longest the crate reads an error body: 10 s.
///
/// It bounds the middleware's read of an error body for its TelEcho code (when the policy
/// has [`CodeRule`](crate::CodeRule)s; the response then still carries its whole body, see
/// [`PrefixedBody`](crate::PrefixedBody)), and the read of the async typed-error helpers
/// (whose [`ResponseError`] then keeps what had arrived). A server that sends an error's
/// head and then stalls costs at most this long, never forever.
pub const ERROR_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// A non-success (4xx or 5xx) response, as an error value.
///
/// Its `Debug` shows no header values and at most a short prefix of an unparsed body.
#[derive(Clone)]
pub struct ResponseError {
    status: StatusCode,
    api_error: Option<ApiError>,
    body: Bytes,
    body_truncated: bool,
    retry_after: Option<Duration>,
}

impl ResponseError {
    /// Builds the error from a response's status, headers and (possibly truncated) body.
    /// `body_truncated` says the body was longer than what is passed.
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
            retry_after,
        }
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

    /// `true` when the body was longer than [`MAX_ERROR_BODY_BYTES`] and was cut.
    pub fn body_truncated(&self) -> bool {
        self.body_truncated
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
                if self.body_truncated {
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
        let mut d = f.debug_struct("ResponseError");
        d.field("status", &self.status)
            .field("api_error", &self.api_error)
            .field("retry_after", &self.retry_after);
        if self.api_error.is_none() {
            let head = &self.body[..self.body.len().min(64)];
            d.field("body_prefix", &String::from_utf8_lossy(head));
        }
        d.field("body_len", &self.body.len()).finish()
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
        let kept = body.slice(..body.len().min(MAX_ERROR_BODY_BYTES));
        Err(ResponseError::from_parts(
            self.status(),
            self.headers(),
            kept,
            truncated,
        ))
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
    /// [`MAX_ERROR_BODY_BYTES`] of the body and returns a [`ResponseError`]. A body read
    /// error ends the read early: the error then holds what was read.
    fn api_error_for_status(
        self,
    ) -> impl std::future::Future<Output = Result<Self, ResponseError>> + Send;
}

#[cfg(feature = "reqwest")]
impl ReqwestResponseExt for reqwest::Response {
    async fn api_error_for_status(mut self) -> Result<Self, ResponseError> {
        let status = self.status();
        if !is_error_status(status) {
            return Ok(self);
        }
        let headers = std::mem::take(self.headers_mut());
        let mut body = bytes::BytesMut::new();
        let mut truncated = false;
        while let Ok(Some(chunk)) = self.chunk().await {
            let room = MAX_ERROR_BODY_BYTES - body.len();
            if chunk.len() > room {
                body.extend_from_slice(&chunk[..room]);
                truncated = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        Err(ResponseError::from_parts(
            status,
            &headers,
            body.freeze(),
            truncated,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, body: &'static [u8]) -> http::Response<Bytes> {
        http::Response::builder()
            .status(status)
            .header("retry-after", "12")
            .body(Bytes::from_static(body))
            .unwrap()
    }

    #[test]
    fn success_and_redirects_pass() {
        for s in [200, 201, 204, 301, 304] {
            assert!(resp(s, b"").api_error_for_status().is_ok(), "{s}");
        }
    }

    #[test]
    fn envelope_is_parsed_with_retry_after() {
        let e = resp(
            429,
            br#"{"error":{"type":"rate_limit_error","code":"rate_limit_per_minute","message":"slow down"}}"#,
        )
        .api_error_for_status()
        .unwrap_err();
        assert_eq!(e.code(), Some(&ErrorCode::RateLimitPerMinute));
        assert_eq!(e.retry_after(), Some(Duration::from_secs(12)));
        assert_eq!(
            e.to_string(),
            "429 Too Many Requests: rate_limit_per_minute: slow down"
        );
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn non_envelope_keeps_raw_body() {
        let e = resp(502, b"<html>bad gateway</html>")
            .api_error_for_status()
            .unwrap_err();
        assert!(e.api_error().is_none());
        assert_eq!(e.body(), &Bytes::from_static(b"<html>bad gateway</html>"));
        assert_eq!(
            e.to_string(),
            "502 Bad Gateway: response body is not a TelEcho error (24 bytes)"
        );
    }

    #[test]
    fn huge_body_is_truncated_and_not_parsed() {
        let big = Bytes::from(vec![b'x'; MAX_ERROR_BODY_BYTES + 10]);
        let r = http::Response::builder().status(500).body(big).unwrap();
        let e = r.api_error_for_status().unwrap_err();
        assert!(e.body_truncated());
        assert_eq!(e.body().len(), MAX_ERROR_BODY_BYTES);
        assert!(format!("{e:?}").len() < 400, "Debug stays short");
    }
}
