//! [`RetryPolicyBuilder`]: every setting of a [`RetryPolicy`], with its default.

use super::*;

/// The default [`attempt_timeout`](RetryPolicyBuilder::attempt_timeout): 30 s.
const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

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
            attempt_timeout: Some(DEFAULT_ATTEMPT_TIMEOUT),
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
    /// a hidden long sleep. It also bounds the time one request spends held back by shared
    /// cooldowns in all (cooldowns that other requests' 429s keep renewing): past it the
    /// request fails with [`RetryErrorKind::RateLimited`](crate::RetryErrorKind::RateLimited).
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
    /// use telecho_retry::{ErrorCode, RetryPolicy};
    /// use telecho_retry::classify::{CodeRule, Decision};
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
    /// 30 s: a server that accepts a request and never answers costs at most that per
    /// attempt (the time to the response's head; the body after it is the caller's).
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// No attempt timeout: an attempt may take as long as the inner client lets it (and the
    /// deadline, if set).
    pub fn without_attempt_timeout(mut self) -> Self {
        self.attempt_timeout = None;
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
            inner: Arc::new(PolicySettings {
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
