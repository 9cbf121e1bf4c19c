//! [`RetryPolicy`]: the settings of the engine: how many retries, the backoff schedule and
//! its jitter, the `Retry-After` cap and spread, the deadline and attempt timeout, the
//! request changes (idempotency keys, attempt header), and which
//! [`Classifier`] decides what kind each outcome is (the TelEcho contract by default).

pub(crate) mod backoff;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::header::HeaderName;
use http::{HeaderMap, Method, StatusCode};

use crate::classify::{
    is_idempotent_method, Classifier, CodeRule, Decision, Outcome, RequestView, TelEchoClassifier,
    TransportErrorKind,
};
use crate::envelope::ErrorCode;
use backoff::{nominal_delay, Rng};

pub use backoff::Jitter;

/// The retry policy: the TelEcho contract by default, tunable through
/// [`RetryPolicy::builder`].
///
/// Cheap to clone (one `Arc`).
///
/// The classifier is *what kind of outcome*; the policy and the engine
/// are *what to do about it*: a [`Decision::RetryAfter`] above `max_retry_after` is handed
/// back at once; otherwise the wait is `d` plus a random spread in
/// `[0, retry_after_spread]`, or this retry's backoff delay if that is longer (so never
/// earlier than the server said, and a server that keeps answering 429 gets exponential
/// backoff on top of its instruction: the retry-storm simulation shows why, see
/// `examples/storm/`); a [`Decision::Backoff`] waits the jittered backoff delay.
///
/// ```
/// use std::time::Duration;
/// use http::{HeaderMap, HeaderValue, StatusCode};
/// use telecho_retry::RetryPolicy;
/// use telecho_retry::classify::Decision;
///
/// let policy = RetryPolicy::default();
/// let mut headers = HeaderMap::new();
/// assert_eq!(policy.classify(StatusCode::SERVICE_UNAVAILABLE, &headers), Decision::Backoff);
/// assert_eq!(policy.classify(StatusCode::UNAUTHORIZED, &headers), Decision::Fatal);
/// assert_eq!(policy.classify(StatusCode::CREATED, &headers), Decision::Accept);
///
/// headers.insert("retry-after", HeaderValue::from_static("7"));
/// assert_eq!(
///     policy.classify(StatusCode::TOO_MANY_REQUESTS, &headers),
///     Decision::RetryAfter(Duration::from_secs(7))
/// );
/// headers.insert("retry-after", HeaderValue::from_static("3600")); // above the 60 s cap
/// assert_eq!(policy.classify(StatusCode::TOO_MANY_REQUESTS, &headers), Decision::Fatal);
/// ```
///
/// # Defaults
///
/// | setting | default | why |
/// |---|---|---|
/// | `max_retries` | 5 | 1+2+4+8+16 s ≈ 31 s of backoff: one outage of the length the contract's ladder describes |
/// | `base_delay` / `max_delay` | 1 s / 30 s | the contract's 1 s, 2 s, 4 s … up to 30 s |
/// | `jitter` | [`Jitter::Proportional`] | see [`Jitter`] |
/// | `max_retry_after` | 60 s | covers `rate_limit_per_minute`; a `rate_limit_per_hour` wait is handed back at once |
/// | `retry_after_spread` | 500 ms | clients told the same instant do not all return at once |
/// | idempotency header | `Idempotency-Key` | a `POST` carrying one may be resent after a timeout |
/// | `attempt_timeout` | 30 s | a server that accepts and never answers costs at most that per attempt |
/// | `deadline` | none | set it to bound a request's total time, waits included |
/// | `generate_idempotency_keys`, `attempt_header` | off | opt-in request changes |
///
/// ```
/// use std::time::Duration;
/// use telecho_retry::{Jitter, RetryPolicy};
///
/// let policy = RetryPolicy::builder()
///     .max_retries(3)
///     .base_delay(Duration::from_millis(100))
///     .max_delay(Duration::from_secs(2))
///     .jitter(Jitter::None)
///     .build();
/// assert_eq!(policy.max_retries(), 3);
/// assert_eq!(policy.nominal_delay(5), Duration::from_secs(1) + Duration::from_millis(600));
/// ```
#[derive(Clone)]
pub struct RetryPolicy {
    pub(super) inner: Arc<PolicySettings>,
}

pub(super) struct PolicySettings {
    pub(super) max_retries: u32,
    pub(super) base_delay: Duration,
    pub(super) max_delay: Duration,
    pub(super) jitter: Jitter,
    pub(super) max_retry_after: Duration,
    pub(super) retry_after_spread: Duration,
    pub(super) idempotency_header: Option<HeaderName>,
    pub(super) classifier: Arc<dyn Classifier>,
    pub(super) reads_error_codes: bool,
    pub(super) classifier_name: &'static str,
    pub(super) seed: Option<u64>,
    pub(super) requests: AtomicU64,
    pub(super) deadline: Option<Duration>,
    pub(super) attempt_timeout: Option<Duration>,
    pub(super) generate_idempotency_keys: bool,
    pub(super) attempt_header: Option<HeaderName>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::builder().build()
    }
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &*self.inner;
        f.debug_struct("RetryPolicy")
            .field("max_retries", &i.max_retries)
            .field("base_delay", &i.base_delay)
            .field("max_delay", &i.max_delay)
            .field("jitter", &i.jitter)
            .field("max_retry_after", &i.max_retry_after)
            .field("retry_after_spread", &i.retry_after_spread)
            .field("idempotency_header", &i.idempotency_header)
            .field("classifier", &i.classifier_name)
            .field("reads_error_codes", &i.reads_error_codes)
            .field("seeded", &i.seed.is_some())
            .field("deadline", &i.deadline)
            .field("attempt_timeout", &i.attempt_timeout)
            .field("generate_idempotency_keys", &i.generate_idempotency_keys)
            .field("attempt_header", &i.attempt_header)
            .finish()
    }
}

impl RetryPolicy {
    /// A builder starting from the defaults.
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicyBuilder::default()
    }

    /// Classifies a response by status and headers with the policy's classifier, then
    /// applies the `Retry-After` cap (a wait above `max_retry_after` is
    /// [`Decision::Fatal`]: handed back at once).
    pub fn classify(&self, status: StatusCode, headers: &HeaderMap) -> Decision {
        self.classify_with_code(status, headers, None)
    }

    /// Like [`classify`](Self::classify), with the response's TelEcho error code (when its
    /// body was read and parsed), so that [`CodeRule`]s apply.
    pub fn classify_with_code(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        code: Option<&ErrorCode>,
    ) -> Decision {
        let outcome = Outcome::Response {
            status,
            headers,
            code,
        };
        self.capped(self.decide(&RequestView::detached(false), &outcome))
    }

    /// Classifies a transport error for a request with this method and headers: `Backoff`
    /// or `Fatal`, by the rules of [`TransportErrorKind`] for the TelEcho classifier.
    pub fn classify_transport(
        &self,
        kind: TransportErrorKind,
        method: &Method,
        headers: &HeaderMap,
    ) -> Decision {
        let idempotent = self.is_idempotent(method, headers);
        let request = RequestView::new(method, headers).with_idempotent(idempotent);
        let outcome = Outcome::Transport { kind, idempotent };
        self.capped(self.decide(&request, &outcome))
    }

    /// `true` when resending this request cannot do harm twice: an idempotent method, or the
    /// policy's idempotency header is present.
    pub fn is_idempotent(&self, method: &Method, headers: &HeaderMap) -> bool {
        is_idempotent_method(method)
            || self
                .inner
                .idempotency_header
                .as_ref()
                .is_some_and(|h| headers.contains_key(h))
    }

    /// The request header whose presence makes a request safe to resend (`None`: only the
    /// method decides).
    #[inline]
    pub fn idempotency_header(&self) -> Option<&HeaderName> {
        self.inner.idempotency_header.as_ref()
    }

    /// The nominal (un-jittered) delay before retry `n`: `min(base * 2^(n-1), max)`.
    pub fn nominal_delay(&self, n: u32) -> Duration {
        nominal_delay(self.inner.base_delay, self.inner.max_delay, n)
    }

    /// The most retries after the first attempt.
    #[inline]
    pub fn max_retries(&self) -> u32 {
        self.inner.max_retries
    }

    /// The first backoff delay.
    #[inline]
    pub fn base_delay(&self) -> Duration {
        self.inner.base_delay
    }

    /// The largest backoff delay.
    pub fn max_delay(&self) -> Duration {
        self.inner.max_delay
    }

    /// The jitter applied to backoff delays.
    pub fn jitter(&self) -> Jitter {
        self.inner.jitter
    }

    /// The longest `Retry-After` the policy will wait for.
    #[inline]
    pub fn max_retry_after(&self) -> Duration {
        self.inner.max_retry_after
    }

    /// The most extra time added after a `Retry-After` instant.
    #[inline]
    pub fn retry_after_spread(&self) -> Duration {
        self.inner.retry_after_spread
    }

    /// The total time allowed for one logical request, sleeps included.
    #[inline]
    pub fn deadline(&self) -> Option<Duration> {
        self.inner.deadline
    }

    /// The time allowed for one attempt.
    #[inline]
    pub fn attempt_timeout(&self) -> Option<Duration> {
        self.inner.attempt_timeout
    }

    /// The header the engine puts a fresh idempotency key in, when key generation is on.
    #[inline]
    pub fn generated_idempotency_header(&self) -> Option<&HeaderName> {
        if self.inner.generate_idempotency_keys {
            self.inner.idempotency_header.as_ref()
        } else {
            None
        }
    }

    /// The header that carries the attempt number, when on.
    #[inline]
    pub fn attempt_header(&self) -> Option<&HeaderName> {
        self.inner.attempt_header.as_ref()
    }

    /// `true` when the classifier wants the error code of error responses, so the engine
    /// reads their bodies ([`Classifier::reads_error_codes`]): with the TelEcho classifier,
    /// when some [`CodeRule`] is set.
    #[inline]
    pub fn has_code_rules(&self) -> bool {
        self.inner.reads_error_codes
    }

    /// The classifier that decides what kind each outcome is.
    #[inline]
    pub fn classifier(&self) -> &dyn Classifier {
        &*self.inner.classifier
    }

    // ===== crate internals =====

    pub(crate) fn new_rng(&self) -> Rng {
        match self.inner.seed {
            Some(seed) => {
                let n = self.inner.requests.fetch_add(1, Ordering::Relaxed);
                let mut mix = Rng::new(seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
                Rng::new(mix.next_u64())
            }
            None => Rng::new(Rng::random_seed()),
        }
    }

    pub(crate) fn backoff_delay(&self, n: u32, previous: Duration, rng: &mut Rng) -> Duration {
        let i = &*self.inner;
        i.jitter.delay(i.base_delay, i.max_delay, n, previous, rng)
    }

    /// `decision`, with a `Retry-After` above the cap made `Fatal` (it is handed back).
    fn capped(&self, decision: Decision) -> Decision {
        match decision {
            Decision::RetryAfter(d) if d > self.inner.max_retry_after => Decision::Fatal,
            other => other,
        }
    }

    /// The classifier's decision for `outcome`.
    #[inline]
    pub(crate) fn decide(&self, request: &RequestView<'_>, outcome: &Outcome<'_>) -> Decision {
        self.inner.classifier.classify(request, outcome)
    }
}

mod builder;
pub use builder::RetryPolicyBuilder;

#[cfg(test)]
mod tests;
