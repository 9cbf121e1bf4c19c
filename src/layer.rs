//! [`TelEchoRetry`]: the one configuration type, used as a tower `Layer` and (feature
//! `reqwest`) as a `reqwest_middleware::Middleware`.

use std::sync::Arc;

use tower_layer::Layer;

use crate::limits::SharedLimits;
use crate::policy::RetryPolicy;
use crate::service::RetryService;

/// Retries by the TelEcho contract. A tower [`Layer`] producing [`RetryService`], and with
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
    pub(crate) limits: Arc<SharedLimits>,
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
    /// Retries with this policy. The retry budget and the rate-limit cooldown (see
    /// [`limits`](crate::limits)) are created here and shared by every clone of the result:
    /// clone one `TelEchoRetry` for all the clients that use one API key.
    pub fn new(policy: RetryPolicy) -> Self {
        TelEchoRetry {
            limits: Arc::new(SharedLimits::new(&policy)),
            policy,
            replay_buffer: ReplayBuffer::default(),
        }
    }

    /// The limits shared by every clone (budget, cooldown).
    pub fn limits(&self) -> &Arc<SharedLimits> {
        &self.limits
    }

    /// The policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// How many bytes of a streaming request body the reqwest middleware records so it can
    /// replay the body on a retry ([`ReplayBody`](crate::ReplayBody)). A body that does not
    /// fit is sent once and its outcome returned. `0` turns recording off. Default: 64 KiB.
    pub fn replay_buffer(mut self, bytes: usize) -> Self {
        self.replay_buffer = ReplayBuffer(bytes);
        self
    }
}

impl<S> Layer<S> for TelEchoRetry {
    type Service = RetryService<S>;

    fn layer(&self, inner: S) -> RetryService<S> {
        RetryService::new(inner, self.clone())
    }
}
