//! What happened to one logical request ([`RetryInfo`], [`StopReason`]) and which attempt
//! a request is ([`AttemptNumber`]).

use std::fmt;
use std::time::Duration;

/// Why retrying stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StopReason {
    /// The outcome was not a failure ([`Decision::Accept`](crate::classify::Decision::Accept)).
    Success,
    /// The outcome is not retryable ([`Decision::Fatal`](crate::classify::Decision::Fatal)).
    Fatal,
    /// The server asked for a wait longer than
    /// [`max_retry_after`](crate::RetryPolicyBuilder::max_retry_after).
    RetryAfterTooLong,
    /// Retryable, but [`max_retries`](crate::RetryPolicyBuilder::max_retries) were made.
    MaxRetries,
    /// Retryable, but the request could not be duplicated (a streaming body that did not
    /// fit the replay buffer, a body type that cannot be cloned).
    NotReplayable,
    /// Retryable, but the shared [retry budget](crate::limits) is spent.
    Budget,
    /// Retryable, but the next delay would cross the
    /// [deadline](crate::RetryPolicyBuilder::deadline).
    Deadline,
    /// The inner service failed to become ready (`poll_ready` returned an error): its
    /// error ends the request.
    ServiceError,
}

impl StopReason {
    /// A short lowercase name, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Success => "success",
            StopReason::Fatal => "fatal",
            StopReason::RetryAfterTooLong => "retry_after_too_long",
            StopReason::MaxRetries => "max_retries",
            StopReason::NotReplayable => "not_replayable",
            StopReason::Budget => "budget",
            StopReason::Deadline => "deadline",
            StopReason::ServiceError => "service_error",
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to one logical request; adapters attach it to the response they hand back
/// (as an `http::Extensions` entry) whenever a retry was made or retrying stopped for a
/// reason other than success. Read it with [`RetryInfo::of`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryInfo {
    pub(super) attempts: u32,
    pub(super) slept: Duration,
    pub(super) stop: Option<StopReason>,
}

impl RetryInfo {
    /// Attempts sent, the first included.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Retries made (`attempts - 1`).
    pub fn retries(&self) -> u32 {
        self.attempts.saturating_sub(1)
    }

    /// Total time spent sleeping between attempts.
    pub fn slept(&self) -> Duration {
        self.slept
    }

    /// Why retrying stopped (`None` while still going).
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.stop
    }

    /// `true` for one attempt that succeeded without waiting (no cooldown hold-back): the
    /// case in which adapters attach no `RetryInfo` to the response (see
    /// [`RetryInfo::of`]).
    #[inline]
    pub fn is_first_try_success(&self) -> bool {
        self.attempts <= 1 && self.slept.is_zero() && self.stop == Some(StopReason::Success)
    }

    /// The info of a request whose first attempt was never sent.
    #[cfg_attr(not(feature = "tower"), allow(dead_code))] // the tower adapter's
    pub(crate) fn not_sent() -> RetryInfo {
        RetryInfo {
            attempts: 0,
            slept: Duration::ZERO,
            stop: Some(StopReason::ServiceError),
        }
    }

    /// The `RetryInfo` of a response that went through a retry adapter.
    ///
    /// Adapters attach one whenever a retry was made or retrying stopped for a reason other
    /// than success; a first attempt that succeeded carries none, so that the success path
    /// allocates nothing. This returns the attached one, or "one attempt, success" when
    /// there is none (which is also what a response that did not go through an adapter
    /// gets).
    ///
    /// ```
    /// use telecho_retry::{RetryInfo, StopReason};
    /// let info = RetryInfo::of(&http::Extensions::new());
    /// assert_eq!((info.attempts(), info.stop_reason()), (1, Some(StopReason::Success)));
    /// ```
    pub fn of(extensions: &http::Extensions) -> RetryInfo {
        extensions.get::<RetryInfo>().copied().unwrap_or(RetryInfo {
            attempts: 1,
            slept: Duration::ZERO,
            stop: Some(StopReason::Success),
        })
    }
}

/// The attempt number, put in the request extensions of every retry (2, 3, …) by the
/// engine so that services below the retry layer can tell retries apart. The first attempt
/// carries none, so that it allocates nothing: read it with [`AttemptNumber::of`], which
/// gives 1 then.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttemptNumber(pub u32);

impl AttemptNumber {
    /// The attempt number of a request: its `AttemptNumber`, or 1 when it has none.
    ///
    /// ```
    /// use telecho_retry::AttemptNumber;
    /// let mut ext = http::Extensions::new();
    /// assert_eq!(AttemptNumber::of(&ext), 1);
    /// ext.insert(AttemptNumber(3));
    /// assert_eq!(AttemptNumber::of(&ext), 3);
    /// ```
    pub fn of(extensions: &http::Extensions) -> u32 {
        extensions.get::<AttemptNumber>().map_or(1, |a| a.0)
    }

    /// OpenTelemetry's `http.request.resend_count` of a request: 1 for the second attempt,
    /// 2 for the third …, `None` for the first (the convention sets it on resends only).
    /// What an HTTP client span below the retry layer records (see
    /// [`observe`](crate::observe)).
    ///
    /// ```
    /// use telecho_retry::AttemptNumber;
    /// let mut ext = http::Extensions::new();
    /// assert_eq!(AttemptNumber::resend_count(&ext), None);
    /// ext.insert(AttemptNumber(3));
    /// assert_eq!(AttemptNumber::resend_count(&ext), Some(2));
    /// ```
    pub fn resend_count(extensions: &http::Extensions) -> Option<u32> {
        resend_count(AttemptNumber::of(extensions))
    }
}

/// The resend count of attempt `number` (1 for the first): `None` for the first.
pub(crate) fn resend_count(number: u32) -> Option<u32> {
    number.checked_sub(1).filter(|&n| n > 0)
}
