//! [`RetryOverride`]: per-request changes to the policy, carried in the request's
//! extensions.

use std::time::Duration;

/// Changes the policy for one request: put it in the request's extensions
/// (`http::Request::extensions_mut`, or the extensions passed to
/// `reqwest_middleware::RequestBuilder::with_extension`). Settings it leaves unset keep
/// the policy's value.
///
/// ```
/// use std::time::Duration;
/// use bytes::Bytes;
/// use http::Request;
/// use http_body_util::Full;
/// use telecho_retry::RetryOverride;
///
/// // This upload may take its time, but must not be retried.
/// let mut request = Request::post("http://127.0.0.1:8080/v1/agents/tel_agent_1/files")
///     .body(Full::new(Bytes::from_static(b"...")))
///     .unwrap();
/// request
///     .extensions_mut()
///     .insert(RetryOverride::new().max_retries(0).deadline(Duration::from_secs(120)));
/// ```
///
/// The reqwest middleware reads it from the request's extensions too:
///
/// ```no_run
/// # async fn f(client: reqwest_middleware::ClientWithMiddleware) -> reqwest_middleware::Result<()> {
/// use telecho_retry::RetryOverride;
/// // A GET whose server does not honour idempotency: never resend it after a timeout.
/// client
///     .get("http://127.0.0.1:8080/v1/calls/next")
///     .with_extension(RetryOverride::new().idempotent(false))
///     .send()
///     .await?;
/// # Ok(()) }
/// ```
///
/// `reqwest::Request` has no public extensions, so the tower layer over `reqwest::Client`
/// cannot see one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetryOverride {
    max_retries: Option<u32>,
    deadline: Option<Duration>,
    attempt_timeout: Option<Duration>,
    idempotent: Option<bool>,
}

impl RetryOverride {
    /// Changes nothing until a setter says what.
    pub fn new() -> Self {
        RetryOverride::default()
    }

    /// No retry at all for this request (`max_retries(0)`): it is sent once, its outcome
    /// handed back; nothing is recorded for a replay.
    pub fn disabled() -> Self {
        RetryOverride::new().max_retries(0)
    }

    /// The most retries for this request.
    ///
    /// # Default
    ///
    /// The policy's [`max_retries`](crate::RetryPolicyBuilder::max_retries).
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = Some(n);
        self
    }

    /// The total time this request may take, waits included.
    ///
    /// # Default
    ///
    /// The policy's [`deadline`](crate::RetryPolicyBuilder::deadline).
    pub fn deadline(mut self, total: Duration) -> Self {
        self.deadline = Some(total);
        self
    }

    /// The time each attempt of this request may take.
    ///
    /// # Default
    ///
    /// The policy's [`attempt_timeout`](crate::RetryPolicyBuilder::attempt_timeout).
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// Whether this request is safe to resend after a timeout or reset, whatever its
    /// method and headers say.
    ///
    /// # Default
    ///
    /// Its method or idempotency header decides
    /// ([`RetryPolicy::is_idempotent`](crate::RetryPolicy::is_idempotent)).
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = Some(idempotent);
        self
    }

    pub(crate) fn max_retries_value(&self) -> Option<u32> {
        self.max_retries
    }

    pub(crate) fn deadline_value(&self) -> Option<Duration> {
        self.deadline
    }

    pub(crate) fn attempt_timeout_value(&self) -> Option<Duration> {
        self.attempt_timeout
    }

    pub(crate) fn idempotent_value(&self) -> Option<bool> {
        self.idempotent
    }
}
