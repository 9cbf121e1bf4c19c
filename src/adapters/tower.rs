//! [`RetryService`]: the tower `Service` that [`TelEchoRetry`] produces.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::retry::TelEchoRetry;
use crate::classify::ClassifyError;
use crate::engine::future::{Failure, FromFailure, Output, Retrying};
use crate::engine::{BoxError, RetryError, RetryInfo, RetryRequest, RetryResponse};

// ===== impl Layer =====

impl<S> Layer<S> for TelEchoRetry {
    type Service = RetryService<S>;

    fn layer(&self, inner: S) -> RetryService<S> {
        RetryService::new(inner, self.clone())
    }
}

// ===== RetryService =====

/// Wraps an HTTP client service and retries its requests by a [`RetryPolicy`](crate::RetryPolicy).
///
/// Built by [`TelEchoRetry`] as a layer; see there for an example.
///
/// # Why not `tower::retry::Retry`
///
/// `tower::retry::Retry` with a `Policy` would do for the loop, but it clones the request
/// before every attempt (the last included), cannot tell "could not clone" apart from
/// "do not retry" when it has to explain why it stopped, and its future cannot be driven
/// from the reqwest middleware. This service's [`ResponseFuture`] is the single engine both
/// adapters run: it copies the request only when a retry could follow, attaches
/// [`RetryInfo`](crate::RetryInfo), and is a small named state machine (no boxing).
///
/// # Requirements
///
/// - `S: Clone`: each in-flight request keeps its own clone of the inner service, the one it
///   polled ready, to send its retries (the same pattern as `tower::retry`).
/// - requests are `http::Request<B>` with a body that implements
///   [`TryCloneBody`](crate::body::TryCloneBody), or `reqwest::Request`;
/// - responses are `http::Response<B>` or `reqwest::Response`, errors implement
///   [`ClassifyError`] and `Into<BoxError>`.
///
/// # Errors
///
/// The error type is [`RetryError`]: the inner service's error as its `source()`, or a
/// failure the engine decided itself (attempt timeout, deadline, rate limit), always with
/// the [`RetryInfo`] of what was tried. It converts into a `BoxError`, so layers above
/// (`Timeout`, `Buffer`) take it; [`RetryError::of`] finds it in their boxed errors again.
/// The engine enforces
/// [`attempt_timeout`](crate::RetryPolicyBuilder::attempt_timeout) and
/// [`deadline`](crate::RetryPolicyBuilder::deadline) itself, so they hold over any inner
/// error type (hyper-util's client error included); this is why the layer does not keep
/// the inner error type.
///
/// # Readiness
///
/// `poll_ready` reserves the inner service for the first attempt (so its wait is the
/// caller's, outside the request's deadline, as everywhere in tower). If that attempt is held
/// back by the shared rate-limit cooldown, the reservation is given back at once (the
/// instance polled ready is dropped, a clone waits), and the inner service is polled ready
/// again when the wait is over: a request waiting out a cooldown holds no permit or slot of
/// a `ConcurrencyLimit` or `Buffer` *below* the retry layer. Retries are likewise reserved
/// only when due. (A `ConcurrencyLimit` *above* the retry layer counts the whole logical
/// request, waits included, as one: that is what it limits there.)
///
/// Under [client-side pacing](crate::limits::Pacing) an attempt takes its paced slot once
/// the inner service is ready, and waits for that slot holding what `poll_ready` reserved
/// (a `ConcurrencyLimit` permit, a `Buffer` slot): it is sent the moment its slot comes, so
/// the spacing holds at the moment attempts are sent, even when they queued for readiness
/// first. A cooldown that began during that wait is seen before the slot is taken: the
/// reservation and the place are given back while the cooldown is waited out.
///
/// # Discarded responses
///
/// A response that is retried is dropped with its body unread when the retry is sent (it
/// is kept, boxed, while the retry waits, so that it can be handed back if the retry is not
/// sent after all: refused by the deadline or a rate limit, or its body no longer
/// replayable). For
/// hyper that closes the connection instead of returning it to the pool; error bodies are
/// small, and draining one could wait on a slow server while the retry is due. The
/// response finally handed back is untouched.
///
/// Its `Debug` names the inner service's type, not its value (an inner client's `Debug`
/// may show default headers, `Authorization` included).
#[derive(Clone)]
pub struct RetryService<S> {
    inner: S,
    retry: TelEchoRetry,
}

impl<S> std::fmt::Debug for RetryService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryService")
            .field("inner", &std::any::type_name::<S>())
            .field("retry", &self.retry)
            .finish()
    }
}

impl<S> RetryService<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, retry: TelEchoRetry) -> Self {
        RetryService { inner, retry }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The retry configuration.
    pub fn retry(&self) -> &TelEchoRetry {
        &self.retry
    }
}

impl<S, Req> Service<Req> for RetryService<S>
where
    S: Service<Req> + Clone,
    S::Response: RetryResponse,
    S::Error: ClassifyError + Into<BoxError>,
    Req: RetryRequest,
{
    type Response = <S::Response as RetryResponse>::Output;
    type Error = RetryError;
    type Future = ResponseFuture<S, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|error| RetryError::inner(error.into(), RetryInfo::not_sent()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        // Keep the instance that was polled ready for this call; leave a fresh clone behind.
        let clone = self.inner.clone();
        let service = std::mem::replace(&mut self.inner, clone);
        let state = self.retry.start(&request);
        ResponseFuture::new(Retrying::new(service, state, request))
    }
}

// ===== ResponseFuture =====

pin_project! {
    /// The future of one logical request through [`RetryService`](crate::RetryService).
    ///
    /// Every error it resolves to is a [`RetryError`]: the inner service's error (its
    /// `source()`), an attempt timeout, the deadline, or a refusal because the origin is
    /// rate limited, each with the [`RetryInfo`] of what was tried.
    ///
    /// # Panics
    ///
    /// When polled again after it completed (as an `async fn`'s future does), before it
    /// does anything: no attempt is admitted, paced or sent.
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
        S::Response: RetryResponse,
    {
        #[pin]
        inner: Retrying<S, Req, RetryError>,
    }
}

impl<S, Req> ResponseFuture<S, Req>
where
    S: Service<Req>,
    S::Response: RetryResponse,
{
    pub(crate) fn new(inner: Retrying<S, Req, RetryError>) -> Self {
        ResponseFuture { inner }
    }
}

impl<S, Req> Future for ResponseFuture<S, Req>
where
    S: Service<Req> + Clone,
    S::Response: RetryResponse,
    S::Error: ClassifyError + Into<BoxError>,
    Req: RetryRequest,
{
    type Output = Result<Output<S::Response>, RetryError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}

impl<E: Into<BoxError>> FromFailure<E> for RetryError {
    #[inline]
    fn from_failure(failure: Failure<E>) -> Self {
        match failure {
            Failure::Inner(error, info) => RetryError::inner(error.into(), info),
            Failure::Engine(error) => error,
        }
    }
}

impl<S, Req> fmt::Debug for ResponseFuture<S, Req>
where
    S: Service<Req>,
    S::Response: RetryResponse,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("inner", &self.inner)
            .finish()
    }
}
