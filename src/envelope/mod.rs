//! Typed TelEcho errors: the JSON envelope `{"error":{"type","code","message"}}`.
//!
//! Every error the TelEcho API returns carries a stable, machine-readable `code`. This module
//! turns the envelope into an [`ApiError`] whose [`ErrorCode`] and [`ErrorType`] client code
//! can `match` on. Both enums keep codes they do not know (`Other`), so a code the API adds
//! tomorrow still parses and round-trips to the same wire string.
//!
//! # Example
//!
//! ```
//! use telecho_retry::{ApiError, ErrorCode, ErrorType};
//!
//! let body = br#"{"error":{"type":"authentication_error","code":"invalid_api_key",
//!                 "message":"The API key provided is invalid."}}"#;
//! let err = ApiError::from_json(body).unwrap();
//! assert_eq!(err.code(), &ErrorCode::InvalidApiKey);
//! assert_eq!(err.error_type(), &ErrorType::AuthenticationError);
//! assert_eq!(err.message(), "The API key provided is invalid.");
//!
//! // A code this version of the crate does not know is kept, not lost.
//! let new = ApiError::from_json(br#"{"error":{"type":"x","code":"quota_frozen","message":""}}"#).unwrap();
//! assert_eq!(new.code().as_str(), "quota_frozen");
//! ```
//!
//! # Bad input
//!
//! [`ApiError::from_json`] never panics. Its outcome for bad bodies:
//!
//! | body | result |
//! |---|---|
//! | empty | `Err(ApiErrorParseError::Empty)` |
//! | larger than [`MAX_ENVELOPE_BYTES`] | `Err(ApiErrorParseError::TooLarge)`, not parsed at all |
//! | not JSON, or not UTF-8 | `Err(ApiErrorParseError::Json)` |
//! | JSON without an `error` object | `Err(ApiErrorParseError::Json)` |
//! | `type`, `code` or `message` missing or not a string | `Err(ApiErrorParseError::Json)` |
//! | extra fields anywhere | ignored |

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;

/// The largest body [`ApiError::from_json`] will parse: 64 KiB.
///
/// A real envelope is a few hundred bytes; anything past this is not an envelope, and is
/// rejected before any parsing work is done.
pub const MAX_ENVELOPE_BYTES: usize = 64 * 1024;

macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $wire:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// A value this version of the crate does not know, kept as sent.
            Other(Box<str>),
        }

        impl $name {
            /// Every value this version of the crate knows, in reference order.
            pub const KNOWN: &'static [$name] = &[ $( $name::$variant, )* ];

            /// The wire string, exactly as the API sends it.
            pub fn as_str(&self) -> &str {
                match self {
                    $( $name::$variant => $wire, )*
                    $name::Other(s) => s,
                }
            }

            /// Parses a wire string. Never fails: unknown strings become `Other`.
            pub fn parse(s: &str) -> Self {
                match s {
                    $( $wire => $name::$variant, )*
                    other => $name::Other(other.into()),
                }
            }

            /// `true` for a value this version of the crate knows.
            pub fn is_known(&self) -> bool {
                !matches!(self, $name::Other(_))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::convert::Infallible;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Ok($name::parse(s))
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name::parse(s)
            }
        }
    };
}

wire_enum! {
    /// A TelEcho error code (`error.code`), one variant per code in the reference.
    ///
    /// Unknown codes are kept in [`ErrorCode::Other`]; match with a wildcard arm.
    ///
    /// ```
    /// use telecho_retry::ErrorCode;
    /// for code in ErrorCode::KNOWN {
    ///     assert_eq!(&ErrorCode::parse(code.as_str()), code);
    /// }
    /// assert_eq!(ErrorCode::KNOWN.len(), 21);
    /// assert_eq!(ErrorCode::RateLimitPerMinute.to_string(), "rate_limit_per_minute");
    /// ```
    pub enum ErrorCode {
        /// No Authorization header sent.
        MissingApiKey => "missing_api_key",
        /// Key has wrong format, doesn't exist, or was deleted.
        InvalidApiKey => "invalid_api_key",
        /// Key was revoked from the dashboard.
        RevokedApiKey => "revoked_api_key",
        /// Key's `expires_at` is in the past.
        ExpiredApiKey => "expired_api_key",
        /// A `tel_*_*` ID couldn't be parsed.
        InvalidId => "invalid_id",
        /// Both or neither of `agent_id`/`workflow_id` were provided.
        InvalidTarget => "invalid_target",
        /// The cursor parameter is malformed or stale.
        InvalidCursor => "invalid_cursor",
        /// A date filter isn't valid ISO 8601.
        InvalidDate => "invalid_date",
        /// A filter value isn't in the allowed enum.
        InvalidFilter => "invalid_filter",
        /// Agent doesn't exist or belongs to another org.
        AgentNotFound => "agent_not_found",
        /// Workflow doesn't exist or belongs to another org.
        WorkflowNotFound => "workflow_not_found",
        /// Phone number doesn't exist or belongs to another org.
        PhoneNumberNotFound => "phone_number_not_found",
        /// Agent exists but is not active.
        AgentInactive => "agent_inactive",
        /// Workflow exists but is not active.
        WorkflowInactive => "workflow_inactive",
        /// Phone number exists but is not active.
        PhoneNumberInactive => "phone_number_inactive",
        /// The phone number isn't configured for outbound calling.
        NoOutboundTrunk => "no_outbound_trunk",
        /// No agent or workflow attached to the phone number, and none provided.
        NoRoutingTarget => "no_routing_target",
        /// Subscription expired, cancelled, or out of minutes (402).
        CallBlocked => "call_blocked",
        /// LiveKit / SIP error during outbound dial (502).
        OutboundCallFailed => "outbound_call_failed",
        /// Exceeded the key's per-minute rate limit (429).
        RateLimitPerMinute => "rate_limit_per_minute",
        /// Exceeded the key's per-hour rate limit (429).
        RateLimitPerHour => "rate_limit_per_hour",
    }
}

wire_enum! {
    /// A TelEcho error type (`error.type`).
    ///
    /// The reference names `authentication_error`; every other type is kept in
    /// [`ErrorType::Other`].
    ///
    /// ```
    /// use telecho_retry::ErrorType;
    /// assert_eq!(ErrorType::parse("authentication_error"), ErrorType::AuthenticationError);
    /// assert_eq!(ErrorType::parse("invalid_request_error").as_str(), "invalid_request_error");
    /// ```
    pub enum ErrorType {
        /// Missing, malformed, revoked, or expired API key.
        AuthenticationError => "authentication_error",
    }
}

/// A parsed TelEcho error envelope.
///
/// See [`ApiError::from_json`] for the outcome of bad input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    error_type: ErrorType,
    code: ErrorCode,
    message: Box<str>,
}

/// Why a body is not a TelEcho error envelope.
#[derive(Debug)]
#[non_exhaustive]
pub enum ApiErrorParseError {
    /// The body was empty.
    Empty,
    /// The body was larger than [`MAX_ENVELOPE_BYTES`]; it was not parsed.
    TooLarge {
        /// The body's length in bytes.
        len: usize,
    },
    /// The body is not JSON of the envelope's shape.
    Json(serde_json::Error),
}

impl fmt::Display for ApiErrorParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiErrorParseError::Empty => f.write_str("empty body is not a TelEcho error envelope"),
            ApiErrorParseError::TooLarge { len } => write!(
                f,
                "body of {len} bytes is larger than any TelEcho error envelope (limit {MAX_ENVELOPE_BYTES})"
            ),
            ApiErrorParseError::Json(e) => write!(f, "not a TelEcho error envelope: {e}"),
        }
    }
}

impl std::error::Error for ApiErrorParseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ApiErrorParseError::Json(e) => Some(e),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    error: ErrorFields<'a>,
}

#[derive(Deserialize)]
struct ErrorFields<'a> {
    #[serde(rename = "type", borrow)]
    error_type: Cow<'a, str>,
    #[serde(borrow)]
    code: Cow<'a, str>,
    #[serde(borrow)]
    message: Cow<'a, str>,
}

impl ApiError {
    /// Builds an error from its parts (for mock servers and tests).
    pub fn new(error_type: ErrorType, code: ErrorCode, message: impl Into<Box<str>>) -> Self {
        ApiError {
            error_type,
            code,
            message: message.into(),
        }
    }

    /// Parses the envelope `{"error":{"type","code","message"}}`.
    ///
    /// Extra fields are ignored. See [`ApiError`] for the outcome
    /// of each kind of bad input; this function never panics.
    pub fn from_json(body: &[u8]) -> Result<ApiError, ApiErrorParseError> {
        if body.is_empty() {
            return Err(ApiErrorParseError::Empty);
        }
        if body.len() > MAX_ENVELOPE_BYTES {
            return Err(ApiErrorParseError::TooLarge { len: body.len() });
        }
        let env: Envelope<'_> = serde_json::from_slice(body).map_err(ApiErrorParseError::Json)?;
        Ok(ApiError {
            error_type: ErrorType::parse(&env.error.error_type),
            code: ErrorCode::parse(&env.error.code),
            message: env.error.message.into(),
        })
    }

    /// Serializes the envelope back to JSON (what a TelEcho server sends).
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "error": {
                "type": self.error_type.as_str(),
                "code": self.code.as_str(),
                "message": &*self.message,
            }
        })
        .to_string()
    }

    /// The machine-readable code, e.g. [`ErrorCode::InvalidApiKey`].
    pub fn code(&self) -> &ErrorCode {
        &self.code
    }

    /// The error type, e.g. [`ErrorType::AuthenticationError`].
    pub fn error_type(&self) -> &ErrorType {
        &self.error_type
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(t: &str, c: &str, m: &str) -> Vec<u8> {
        format!(r#"{{"error":{{"type":"{t}","code":"{c}","message":"{m}"}}}}"#).into_bytes()
    }

    #[test]
    fn every_known_code_round_trips_through_json() {
        for code in ErrorCode::KNOWN {
            let e = ApiError::from_json(&env("x", code.as_str(), "m")).unwrap();
            assert_eq!(e.code(), code);
            assert!(e.code().is_known());
            let again = ApiError::from_json(e.to_json().as_bytes()).unwrap();
            assert_eq!(again, e);
        }
    }

    #[test]
    fn the_reference_has_21_distinct_codes() {
        let mut wires: Vec<&str> = ErrorCode::KNOWN.iter().map(ErrorCode::as_str).collect();
        wires.sort_unstable();
        wires.dedup();
        assert_eq!(wires.len(), 21);
    }

    #[test]
    fn unknown_code_and_type_are_kept() {
        let e = ApiError::from_json(&env("billing_error", "quota_frozen", "m")).unwrap();
        assert_eq!(e.code(), &ErrorCode::Other("quota_frozen".into()));
        assert_eq!(e.error_type(), &ErrorType::Other("billing_error".into()));
        assert!(!e.code().is_known());
        assert_eq!(e.code().to_string(), "quota_frozen");
        assert_eq!(e.error_type().to_string(), "billing_error");
    }

    #[test]
    fn extra_fields_are_ignored() {
        let body = br#"{"request_id":"r1","error":{"type":"authentication_error","code":"missing_api_key","message":"no key","doc_url":"x","param":null}}"#;
        let e = ApiError::from_json(body).unwrap();
        assert_eq!(e.code(), &ErrorCode::MissingApiKey);
        assert_eq!(e.message(), "no key");
    }

    #[test]
    fn escaped_strings_are_unescaped() {
        let body =
            br#"{"error":{"type":"a","code":"invalid_id","message":"bad \"tel_x\" \u00e9"}}"#;
        let e = ApiError::from_json(body).unwrap();
        assert_eq!(e.message(), "bad \"tel_x\" é");
    }

    #[test]
    fn bad_bodies_have_defined_errors() {
        assert!(matches!(
            ApiError::from_json(b""),
            Err(ApiErrorParseError::Empty)
        ));
        for bad in [
            &b"not json"[..],
            b"<html>502 Bad Gateway</html>",
            b"{}",
            b"[]",
            b"null",
            br#"{"error":"invalid_api_key"}"#,
            br#"{"error":{"type":"a","code":"b"}}"#,
            br#"{"error":{"type":"a","code":7,"message":"m"}}"#,
            br#"{"error":{"type":null,"code":"b","message":"m"}}"#,
            br#"{"error":{"type":"a","code":"b","message":"m"}"#,
            b"\xff\xfe{}",
        ] {
            let r = ApiError::from_json(bad);
            assert!(
                matches!(r, Err(ApiErrorParseError::Json(_))),
                "{bad:?} gave {r:?}"
            );
        }
    }

    #[test]
    fn huge_body_is_rejected_without_parsing() {
        let mut body = env("a", "invalid_id", "m");
        body.resize(MAX_ENVELOPE_BYTES + 1, b' ');
        match ApiError::from_json(&body) {
            Err(ApiErrorParseError::TooLarge { len }) => assert_eq!(len, MAX_ENVELOPE_BYTES + 1),
            other => panic!("{other:?}"),
        }
        // Exactly at the limit is still parsed (trailing whitespace is valid JSON).
        body.truncate(MAX_ENVELOPE_BYTES);
        assert!(ApiError::from_json(&body).is_ok());
    }

    #[test]
    fn display_shows_code_and_message() {
        let e = ApiError::new(
            ErrorType::AuthenticationError,
            ErrorCode::InvalidApiKey,
            "The API key provided is invalid.",
        );
        assert_eq!(
            e.to_string(),
            "invalid_api_key: The API key provided is invalid."
        );
    }
}
