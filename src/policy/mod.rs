//! [`RetryPolicy`]: the settings of the engine: how many retries, the backoff schedule and
//! its jitter, the `Retry-After` cap and spread, the deadline and attempt timeout, the
//! default limits, the request changes (idempotency keys, attempt header), and which
//! [`Classifier`] decides what kind each outcome is (the TelEcho contract by default).
//!
//! The classifier is *what kind of outcome*; the policy and [`RetryState`](crate::RetryState)
//! are *what to do about it*: a [`Decision::RetryAfter`] above `max_retry_after` is handed
//! back at once; otherwise the wait is `d` plus a random spread in
//! `[0, retry_after_spread]`, or this retry's backoff delay if that is longer (so never
//! earlier than the server said, and a server that keeps answering 429 gets exponential
//! backoff on top of its instruction: the retry-storm simulation shows why, see
//! `examples/storm.rs`); a [`Decision::Backoff`] waits the jittered backoff delay.
//!
//! ```
//! use std::time::Duration;
//! use http::{HeaderMap, HeaderValue, StatusCode};
//! use telecho_retry::{Decision, RetryPolicy};
//!
//! let policy = RetryPolicy::default();
//! let mut headers = HeaderMap::new();
//! assert_eq!(policy.classify(StatusCode::SERVICE_UNAVAILABLE, &headers), Decision::Backoff);
//! assert_eq!(policy.classify(StatusCode::UNAUTHORIZED, &headers), Decision::Fatal);
//! assert_eq!(policy.classify(StatusCode::CREATED, &headers), Decision::Accept);
//!
//! headers.insert("retry-after", HeaderValue::from_static("7"));
//! assert_eq!(
//!     policy.classify(StatusCode::TOO_MANY_REQUESTS, &headers),
//!     Decision::RetryAfter(Duration::from_secs(7))
//! );
//! headers.insert("retry-after", HeaderValue::from_static("3600")); // above the 60 s cap
//! assert_eq!(policy.classify(StatusCode::TOO_MANY_REQUESTS, &headers), Decision::Fatal);
//! ```

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

/// The detailed verdict behind a [`Decision`], once the policy applied its cap: used by
/// [`RetryState`](crate::RetryState) to say why it stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Accept,
    RetryAfter(Duration),
    Backoff,
    Fatal,
    /// A `Retry-After` above the cap.
    TooLong(Duration),
}

impl From<Verdict> for Decision {
    fn from(v: Verdict) -> Decision {
        match v {
            Verdict::Accept => Decision::Accept,
            Verdict::RetryAfter(d) => Decision::RetryAfter(d),
            Verdict::Backoff => Decision::Backoff,
            Verdict::Fatal | Verdict::TooLong(_) => Decision::Fatal,
        }
    }
}

/// The retry policy: the TelEcho contract by default, tunable through
/// [`RetryPolicy::builder`].
///
/// Cheap to clone (one `Arc`). See the [module docs](crate::policy) for the decision table.
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
/// | `deadline`, `attempt_timeout` | none | set them to bound a request's total time |
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
    inner: Arc<Inner>,
}

struct Inner {
    max_retries: u32,
    base_delay: Duration,
    max_delay: Duration,
    jitter: Jitter,
    max_retry_after: Duration,
    retry_after_spread: Duration,
    idempotency_header: Option<HeaderName>,
    classifier: Arc<dyn Classifier>,
    reads_error_codes: bool,
    classifier_name: &'static str,
    seed: Option<u64>,
    requests: AtomicU64,
    deadline: Option<Duration>,
    attempt_timeout: Option<Duration>,
    generate_idempotency_keys: bool,
    attempt_header: Option<HeaderName>,
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
    /// [`Decision::Fatal`]: handed back at once). See the [module docs](crate::policy).
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
        self.verdict(&RequestView::detached(false), &outcome).into()
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
        self.verdict(&request, &outcome).into()
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

    /// The classifier's decision, with the `Retry-After` cap applied.
    #[inline]
    pub(crate) fn verdict(&self, request: &RequestView<'_>, outcome: &Outcome<'_>) -> Verdict {
        match self.inner.classifier.classify(request, outcome) {
            Decision::Accept => Verdict::Accept,
            Decision::RetryAfter(d) if d > self.inner.max_retry_after => Verdict::TooLong(d),
            Decision::RetryAfter(d) => Verdict::RetryAfter(d),
            Decision::Backoff => Verdict::Backoff,
            Decision::Fatal => Verdict::Fatal,
        }
    }
}

/// Builds a [`RetryPolicy`]. Every setting has a default (see [`RetryPolicy`]); no
/// combination panics: inconsistent values are normalized as each method says.
#[derive(Clone)]
pub struct RetryPolicyBuilder {
    max_retries: u32,
    base_delay: Duration,
    max_delay: Duration,
    jitter: Jitter,
    max_retry_after: Duration,
    retry_after_spread: Duration,
    idempotency_header: Option<HeaderName>,
    telecho: TelEchoClassifier,
    classifier: Option<(Arc<dyn Classifier>, &'static str)>,
    seed: Option<u64>,
    deadline: Option<Duration>,
    attempt_timeout: Option<Duration>,
    generate_idempotency_keys: bool,
    attempt_header: Option<HeaderName>,
}

impl Default for RetryPolicyBuilder {
    fn default() -> Self {
        RetryPolicyBuilder {
            max_retries: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            jitter: Jitter::default(),
            max_retry_after: Duration::from_secs(60),
            retry_after_spread: Duration::from_millis(500),
            idempotency_header: Some(HeaderName::from_static("idempotency-key")),
            telecho: TelEchoClassifier::new(),
            classifier: None,
            seed: None,
            deadline: None,
            attempt_timeout: None,
            generate_idempotency_keys: false,
            attempt_header: None,
        }
    }
}

impl fmt::Debug for RetryPolicyBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicyBuilder")
            .field("max_retries", &self.max_retries)
            .field("base_delay", &self.base_delay)
            .field("max_delay", &self.max_delay)
            .field("jitter", &self.jitter)
            .field("max_retry_after", &self.max_retry_after)
            .finish_non_exhaustive()
    }
}

impl RetryPolicyBuilder {
    /// The most retries after the first attempt (so at most `n + 1` attempts).
    /// `0` disables retrying.
    ///
    /// # Default
    ///
    /// 5.
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// The first backoff delay. A zero delay is raised to 1 ms, so that the schedule stays
    /// exponential and never spins.
    ///
    /// # Default
    ///
    /// 1 s.
    pub fn base_delay(mut self, d: Duration) -> Self {
        self.base_delay = d;
        self
    }

    /// The largest backoff delay. A value below `base_delay` is raised to `base_delay`.
    ///
    /// # Default
    ///
    /// 30 s.
    pub fn max_delay(mut self, d: Duration) -> Self {
        self.max_delay = d;
        self
    }

    /// The jitter applied to backoff delays.
    ///
    /// # Default
    ///
    /// [`Jitter::Proportional`].
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The longest `Retry-After` worth waiting for. A longer one makes the outcome
    /// [`Decision::Fatal`]: the caller gets the response at once, header intact, instead of
    /// a hidden long sleep.
    ///
    /// # Default
    ///
    /// 60 s.
    pub fn max_retry_after(mut self, d: Duration) -> Self {
        self.max_retry_after = d;
        self
    }

    /// After a `Retry-After` instant, wait a further uniformly random time in
    /// `[0, spread]`, so that clients told the same instant do not all return at once.
    /// Never earlier than the header says. `Duration::ZERO` turns it off.
    ///
    /// # Default
    ///
    /// 500 ms.
    pub fn retry_after_spread(mut self, spread: Duration) -> Self {
        self.retry_after_spread = spread;
        self
    }

    /// The request header whose presence makes a non-idempotent request safe to resend
    /// after a timeout or reset.
    ///
    /// # Default
    ///
    /// `Idempotency-Key`.
    pub fn idempotency_header(mut self, name: HeaderName) -> Self {
        self.idempotency_header = Some(name);
        self
    }

    /// Treat no header as an idempotency key: only the method decides.
    ///
    /// # Default
    ///
    /// Off: `Idempotency-Key` counts (see [`idempotency_header`](Self::idempotency_header)).
    pub fn without_idempotency_header(mut self) -> Self {
        self.idempotency_header = None;
        self
    }

    /// Overrides the status-based decision of the TelEcho classifier for responses whose
    /// envelope carries `code` (with a rule set, the engine reads error bodies for their
    /// code, in both adapters, and hands them back whole). A later rule for the same code
    /// replaces an earlier one.
    ///
    /// # Default
    ///
    /// No rules: the status decides.
    ///
    /// ```
    /// use http::{HeaderMap, StatusCode};
    /// use telecho_retry::{CodeRule, Decision, ErrorCode, RetryPolicy};
    ///
    /// // A caller that would rather not redial after a failed outbound call.
    /// let policy = RetryPolicy::builder()
    ///     .on_code(ErrorCode::OutboundCallFailed, CodeRule::Fatal)
    ///     .build();
    /// let h = HeaderMap::new();
    /// let code = ErrorCode::OutboundCallFailed;
    /// assert_eq!(policy.classify_with_code(StatusCode::BAD_GATEWAY, &h, Some(&code)), Decision::Fatal);
    /// assert_eq!(policy.classify_with_code(StatusCode::BAD_GATEWAY, &h, None), Decision::Backoff);
    /// ```
    pub fn on_code(mut self, code: ErrorCode, rule: CodeRule) -> Self {
        self.telecho = self.telecho.on_code(code, rule);
        self
    }

    /// Decides what kind each outcome is with `classifier` instead of the TelEcho contract
    /// (a type implementing [`Classifier`], or a closure through
    /// [`classify_fn`](crate::classify::classify_fn)). [`on_code`](Self::on_code) and
    /// [`wall_clock`](Self::wall_clock) configure the TelEcho classifier and have no effect
    /// once another is set; every other setting applies whatever the classifier.
    ///
    /// # Default
    ///
    /// [`TelEchoClassifier`], configured by `on_code` and `wall_clock`.
    pub fn classifier<C: Classifier>(mut self, classifier: C) -> Self {
        self.classifier = Some((Arc::new(classifier), std::any::type_name::<C>()));
        self
    }

    /// Seeds the jitter source, so that a run's delays are reproducible (tests,
    /// simulations). Each request still gets its own stream, derived from the seed and the
    /// request's sequence number.
    ///
    /// # Default
    ///
    /// random per process and request.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The wall clock used to turn an HTTP-date `Retry-After` into a wait.
    ///
    /// # Default
    ///
    /// `SystemTime::now`.
    pub fn wall_clock(mut self, now: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.telecho = self.telecho.wall_clock(now);
        self
    }

    /// The total time one logical request may take: attempts, backoff sleeps and the wait
    /// behind the shared rate-limit cooldown included. No attempt is ever sent after it.
    /// Enforced by the engine, whatever the inner service's error type:
    ///
    /// - when the next delay would reach it, the last outcome is handed back at once
    ///   (rather than after a pointless sleep) with [`StopReason::Deadline`](crate::StopReason::Deadline):
    ///   the response, or the inner error;
    /// - when an attempt in flight reaches it, the attempt is cut, and when the wait behind
    ///   the cooldown (or for the inner service to be ready for a retry) would cross it, the
    ///   request is not sent: the adapters report a
    ///   [`RetryErrorKind::Deadline`](crate::RetryErrorKind::Deadline) error.
    ///
    /// Under the tower layer, the wait in the layer's own `poll_ready` before the first
    /// attempt is the caller's, as everywhere in tower: put a `TimeoutLayer` above the retry
    /// layer to bound it.
    ///
    /// # Default
    ///
    /// None.
    pub fn deadline(mut self, total: Duration) -> Self {
        self.deadline = Some(total);
        self
    }

    /// The time one attempt may take. An attempt that takes longer is abandoned (its
    /// future dropped) and counts as a [`TransportErrorKind::Timeout`]: retried for
    /// idempotent requests (or with an idempotency key); otherwise the adapters report a
    /// [`RetryErrorKind::AttemptTimeout`](crate::RetryErrorKind::AttemptTimeout) error.
    /// Enforced by the engine, whatever the inner service's error type.
    ///
    /// # Default
    ///
    /// None.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// Gives every non-idempotent request that lacks the idempotency header (see
    /// [`idempotency_header`](Self::idempotency_header)) a random UUID v4 key on its first
    /// attempt, the same key on every retry. A request that already has one keeps it; `GET`
    /// and the other idempotent methods never get one. With a key, timeouts and resets on a
    /// `POST` are retried.
    ///
    /// # Default
    ///
    /// off.
    pub fn generate_idempotency_keys(mut self, on: bool) -> Self {
        self.generate_idempotency_keys = on;
        self
    }

    /// Sends the attempt number (`1`, `2`, …) in this request header on every attempt, so
    /// that servers and logs can tell retries apart (e.g. `x-retry-attempt`).
    ///
    /// # Default
    ///
    /// off.
    /// (The number is always available downstream as an
    /// [`AttemptNumber`](crate::AttemptNumber) request extension.)
    pub fn attempt_header(mut self, name: HeaderName) -> Self {
        self.attempt_header = Some(name);
        self
    }

    /// Builds the policy, normalizing `base_delay` (≥ 1 ms) and `max_delay` (≥ base).
    pub fn build(self) -> RetryPolicy {
        let base_delay = self.base_delay.max(Duration::from_millis(1));
        let max_delay = self.max_delay.max(base_delay);
        let (classifier, classifier_name) = match self.classifier {
            Some(custom) => custom,
            None => (
                Arc::new(self.telecho) as Arc<dyn Classifier>,
                "TelEchoClassifier",
            ),
        };
        RetryPolicy {
            inner: Arc::new(Inner {
                max_retries: self.max_retries,
                base_delay,
                max_delay,
                jitter: self.jitter,
                max_retry_after: self.max_retry_after,
                retry_after_spread: self.retry_after_spread,
                idempotency_header: self.idempotency_header,
                reads_error_codes: classifier.reads_error_codes(),
                classifier,
                classifier_name,
                seed: self.seed,
                requests: AtomicU64::new(0),
                deadline: self.deadline,
                attempt_timeout: self.attempt_timeout,
                generate_idempotency_keys: self.generate_idempotency_keys,
                attempt_header: self.attempt_header,
            }),
        }
    }
}

#[cfg(test)]
mod tests;
