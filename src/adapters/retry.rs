//! [`TelEchoRetry`]: the one configuration type, used as a tower `Layer` and (feature
//! `reqwest`) as a `reqwest_middleware::Middleware`.

use crate::engine::{RetryOverride, RetryRequest, RetryState};
use crate::limits::Limits;
use crate::policy::RetryPolicy;

/// Retries by the TelEcho contract. A tower `Layer` producing [`RetryService`](crate::RetryService), and with
/// feature `reqwest` a `reqwest_middleware::Middleware`; both run the same engine.
///
/// Cheap to clone (it holds `Arc`s); `Send + Sync`.
///
/// # Example
///
/// ```
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use http::{Request, Response, StatusCode};
/// use http_body_util::Full;
/// use telecho_retry::{RetryInfo, TelEchoRetry};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let mut calls = 0;
/// let inner = service_fn(move |_req: Request<Full<Bytes>>| {
///     calls += 1;
///     let status = if calls < 3 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
///     async move { Ok::<_, Infallible>(Response::builder().status(status).body(String::new()).unwrap()) }
/// });
/// let client = ServiceBuilder::new().layer(TelEchoRetry::default()).service(inner);
///
/// let resp = client.oneshot(Request::new(Full::new(Bytes::from("hi")))).await.unwrap();
/// assert_eq!(resp.status(), StatusCode::OK);
/// assert_eq!(resp.extensions().get::<RetryInfo>().unwrap().attempts(), 3);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct TelEchoRetry {
    pub(crate) policy: RetryPolicy,
    pub(crate) limits: Limits,
    pub(crate) replay_buffer: ReplayBuffer,
}

impl Default for TelEchoRetry {
    fn default() -> Self {
        TelEchoRetry::new(RetryPolicy::default())
    }
}

/// Bytes of a streaming request body kept for a replay (see [`TelEchoRetry::replay_buffer`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ReplayBuffer(pub(crate) usize);

impl Default for ReplayBuffer {
    fn default() -> Self {
        ReplayBuffer(64 * 1024)
    }
}

impl TelEchoRetry {
    /// Retries with this policy, and the default [`Limits`] of its own (a retry budget and
    /// the shared cooldown per origin, no pacing), shared by every clone of the result:
    /// clone one `TelEchoRetry` for all the clients that use one API key.
    pub fn new(policy: RetryPolicy) -> Self {
        TelEchoRetry {
            limits: Limits::default(),
            policy,
            replay_buffer: ReplayBuffer::default(),
        }
    }

    /// Keeps its retry budgets, cooldowns and pacing in `limits`, shared with every other
    /// `TelEchoRetry` that holds a clone of them: the one place limits are configured.
    ///
    /// ```
    /// use telecho_retry::limits::{Limits, Pacing};
    /// use telecho_retry::TelEchoRetry;
    ///
    /// let retry = TelEchoRetry::default()
    ///     .with_limits(Limits::builder().pacing(Pacing::per_minute(600)).build());
    /// # let _ = retry;
    /// ```
    ///
    /// # Default
    ///
    /// `Limits::default()`, of its own.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The limits shared by every clone.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// How many bytes of a streaming request body the reqwest middleware records so it can
    /// replay the body on a retry ([`ReplayBody`](crate::body::ReplayBody)). A body that does not
    /// fit is sent once and its outcome returned. `0` turns recording off.
    ///
    /// # Default
    ///
    /// 64 KiB.
    pub fn replay_buffer(mut self, bytes: usize) -> Self {
        self.replay_buffer = ReplayBuffer(bytes);
        self
    }

    /// The engine's state for one logical request: its origin's limits, and its
    /// [`RetryOverride`] if its extensions carry one.
    pub(crate) fn start<Req: RetryRequest>(&self, request: &Req) -> RetryState {
        let limits = self.limits.origin(&request.origin());
        let mut state = RetryState::with_origin_limits(&self.policy, limits);
        if self.limits.learns() {
            state.learning();
        }
        if let Some(o) = request.extensions().and_then(|e| e.get::<RetryOverride>()) {
            state.apply_override(o);
        }
        state
    }
}
