//! [`TelEchoRetry`]: the one configuration type, used as a tower `Layer` and (feature
//! `reqwest`) as a `reqwest_middleware::Middleware`.

use std::sync::Arc;

use crate::engine::limits::{OriginLimits, SharedLimits};
use crate::engine::{RetryOverride, RetryRequest, RetryState};
use crate::policy::RetryPolicy;

/// Retries by the TelEcho contract. A tower `Layer` producing [`RetryService`](crate::RetryService), and with
/// feature `reqwest` a `reqwest_middleware::Middleware`; both run the same engine
/// ([`RetryState`](crate::RetryState) driven by one future).
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
    pub(crate) limits: SharedLimits,
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
    /// Retries with this policy. The retry budget, the rate-limit cooldown and the pacing
    /// (see [`limits`](crate::limits)) are created here, as the policy configures them, and
    /// shared by every clone of the result: clone one `TelEchoRetry` for all the clients
    /// that use one API key, or give several the same limits with
    /// [`with_limits`](Self::with_limits).
    pub fn new(policy: RetryPolicy) -> Self {
        TelEchoRetry {
            limits: SharedLimits::new(&policy),
            policy,
            replay_buffer: ReplayBuffer::default(),
        }
    }

    /// Keeps its budgets, cooldowns and pacing in `limits`, shared with every other
    /// `TelEchoRetry` that holds the same handle (whatever their policies).
    ///
    /// The limits are what they were made with: this policy's
    /// [`retry_budget`](crate::RetryPolicyBuilder::retry_budget),
    /// [`shared_cooldown`](crate::RetryPolicyBuilder::shared_cooldown) and
    /// [`pacing`](crate::RetryPolicyBuilder::pacing) no longer apply. Make them from the
    /// policy that configures them ([`SharedLimits::new`]) to keep its pacing;
    /// [`SharedLimits::in_process`] makes limits without pacing.
    ///
    /// # Default
    ///
    /// Limits of its own, created by [`new`](Self::new) from the policy.
    pub fn with_limits(mut self, limits: SharedLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The limits shared by every clone (budget, cooldown).
    pub fn limits(&self) -> &SharedLimits {
        &self.limits
    }

    /// The policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// How many bytes of a streaming request body the reqwest middleware records so it can
    /// replay the body on a retry ([`ReplayBody`](crate::ReplayBody)). A body that does not
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
    #[cfg(feature = "reqwest")]
    pub(crate) fn start<Req: RetryRequest>(&self, request: &Req) -> RetryState {
        self.start_with(request, self.limits.origin(&request.origin()))
    }

    /// [`start`](Self::start) with the origin's limits already found.
    pub(crate) fn start_with<Req: RetryRequest>(
        &self,
        request: &Req,
        limits: Arc<dyn OriginLimits>,
    ) -> RetryState {
        let mut state = RetryState::with_origin_limits(&self.policy, limits);
        if let Some(o) = request.extensions().and_then(|e| e.get::<RetryOverride>()) {
            state.apply_override(o);
        }
        state
    }
}
