//! [`TelEchoRetry`] as a `reqwest_middleware::Middleware` (feature `reqwest`).
//!
//! ```no_run
//! use telecho_retry::TelEchoRetry;
//!
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(TelEchoRetry::default())
//!     .build();
//! ```
//!
//! The middleware runs the same engine as the tower layer: the rest of the middleware
//! chain (`Next`) is wrapped as a tower `Service` and driven by the engine's future. What it
//! adds on top:
//!
//! - **Streaming bodies.** A body `reqwest::Request::try_clone` cannot copy is wrapped in a
//!   [`ReplayBody`] that records up to [`TelEchoRetry::replay_buffer`] bytes (64 KiB by
//!   default) while it is sent. If the body fit, a retry replays it; if not, the request is
//!   sent once and its outcome returned. Such requests are never refused up front.
//! - **Extensions.** Each attempt gets its own copy of the caller's `Extensions`; the caller
//!   ends up with the final attempt's extensions plus a [`RetryInfo`].
//! - **Code-aware decisions.** When the policy has [`CodeRule`](crate::classify::CodeRule)s, the body
//!   of an error response (status ≥ 400) is read, at most 64 KiB and for at most 10 s, to
//!   find the TelEcho error code. The response handed back still carries its full,
//!   unchanged body and headers: what was read is put back in front of the rest.
//!
//! # Errors
//!
//! Every failure comes back as `reqwest_middleware::Error::Middleware` holding a
//! [`RetryError`](crate::RetryError), which says what was tried ([`RetryInfo`]) and why it
//! stopped: the last attempt's own error ([`RetryErrorKind::Inner`](crate::RetryErrorKind::Inner),
//! the `reqwest::Error`, its URL removed (or another middleware's error), as its `source()` and
//! [`get_inner`](crate::RetryError::get_inner)), or what the engine decided itself (an
//! attempt timeout, the deadline, a rate limit that refuses the request). The caller's
//! extensions get the final attempt's extensions and the [`RetryInfo`] too.
//! [`RetryError::of`](crate::RetryError::of) finds it in the error `.send()` returns:
//!
//! ```
//! use telecho_retry::RetryError;
//!
//! fn describe(err: &reqwest_middleware::Error) -> String {
//!     match RetryError::of(err) {
//!         Some(e) => format!("{e} (timeout: {})", e.is_timeout()),
//!         None => err.to_string(), // an error from another middleware
//!     }
//! }
//! # let _ = describe;
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};

use http::{Extensions, HeaderMap, Method, StatusCode};
use reqwest_middleware::{Middleware, Next};
use tower_service::Service;

use super::retry::TelEchoRetry;
use crate::body::{ReplayBody, ResponseBody, TryCloneBody};
use crate::classify::{ClassifyError, TransportErrorKind};
use crate::engine::future::{Failure, Retrying};
use crate::engine::RetryError;
use crate::engine::{ResponseParts, RetryInfo, RetryRequest, RetryResponse};
use crate::limits::Origin;

#[async_trait::async_trait]
impl Middleware for TelEchoRetry {
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let mut attempt = Attempt::new(req, extensions.clone());
        let state = self.start(&attempt);
        // Nothing is recorded for a replay that can never happen.
        if state.max_retries() > 0 {
            attempt.record_streaming_body(self.replay_buffer.0);
        }
        // The first attempt's extensions live here, in this call's frame, for the whole
        // call: `Next::run` borrows them for as long as the rest of the chain runs, so the
        // first attempt's future is the chain's own (no box of ours around it). Retries,
        // which allocate a copy of the request anyway, box theirs with their extensions.
        let mut first = Extensions::new();
        let result = {
            let slot = Mutex::new(Some(&mut first));
            let service = NextService { next, first: &slot };
            Retrying::new(service, state, attempt).await
        };
        match result {
            Ok(done) => {
                *extensions = done.extensions.unwrap_or(first);
                match done.response.extensions().get::<RetryInfo>() {
                    Some(info) => extensions.insert(*info),
                    // A first-try success: no info, and none left from an earlier request
                    // whose extensions the caller reused.
                    None => extensions.remove::<RetryInfo>(),
                };
                Ok(done.response)
            }
            // The last attempt's own error, inside a `RetryError` that says what was tried.
            Err(Failure::Inner(failed, info)) => {
                *extensions = failed.extensions.unwrap_or(first);
                extensions.insert(info);
                let inner: crate::engine::BoxError = match failed.error {
                    // Its URL may carry a secret in the query: never shown.
                    reqwest_middleware::Error::Reqwest(e) => Box::new(e.without_url()),
                    reqwest_middleware::Error::Middleware(e) => e.into(),
                };
                let error = RetryError::inner(inner, info);
                Err(reqwest_middleware::Error::middleware(error))
            }
            // Decided by the engine (a timeout, the deadline, a rate limit): the caller's
            // extensions stay as they were, plus the `RetryInfo`.
            Err(Failure::Engine(error)) => {
                extensions.insert(error.info());
                Err(reqwest_middleware::Error::middleware(error))
            }
        }
    }
}

// ===== the request side =====

/// One attempt's request: a `reqwest::Request` whose body, if it is a stream, is held
/// apart as a [`ReplayBody`], and the attempt's own copy of the caller's extensions.
struct Attempt {
    request: reqwest::Request,
    replay: Option<ReplayBody<reqwest::Body>>,
    extensions: Extensions,
}

impl Attempt {
    fn new(request: reqwest::Request, extensions: Extensions) -> Self {
        Attempt {
            request,
            replay: None,
            extensions,
        }
    }

    /// Records a streaming body (one `reqwest::Request::try_clone` cannot copy) for a
    /// replay, up to `limit` bytes; `0` records nothing.
    fn record_streaming_body(&mut self, limit: usize) {
        let streaming = self.request.body().is_some_and(|b| b.as_bytes().is_none());
        if streaming && limit > 0 {
            self.replay = self
                .request
                .body_mut()
                .take()
                .map(|b| ReplayBody::new(b, limit));
        }
    }

    fn into_parts(self) -> (reqwest::Request, Extensions) {
        let mut request = self.request;
        if let Some(body) = self.replay {
            *request.body_mut() = Some(reqwest::Body::wrap(body));
        }
        (request, self.extensions)
    }
}

impl RetryRequest for Attempt {
    fn method(&self) -> &Method {
        self.request.method()
    }

    fn headers(&self) -> &HeaderMap {
        self.request.headers()
    }

    fn headers_mut(&mut self) -> &mut HeaderMap {
        self.request.headers_mut()
    }

    fn origin(&self) -> Origin<'_> {
        url_origin(self.request.url())
    }

    fn extensions(&self) -> Option<&Extensions> {
        Some(&self.extensions)
    }

    fn extensions_mut(&mut self) -> Option<&mut Extensions> {
        Some(&mut self.extensions)
    }

    fn try_clone_request(&self) -> Option<Self> {
        let replay = match &self.replay {
            Some(body) => Some(body.try_clone_body()?),
            None => None,
        };
        Some(Attempt {
            request: self.request.try_clone()?,
            replay,
            extensions: self.extensions.clone(),
        })
    }

    fn is_replayable(&self) -> bool {
        self.replay.as_ref().is_none_or(TryCloneBody::is_replayable)
    }
}

// ===== the rest of the chain as a tower Service =====

/// The rest of the chain, and the slot where the first attempt's extensions live while it
/// runs (taken by the first call; a `Mutex` only because the engine may clone the service
/// before that call, and the future must stay `Send`).
#[derive(Clone)]
struct NextService<'s, 'a> {
    next: Next<'a>,
    first: &'s Mutex<Option<&'a mut Extensions>>,
}

/// What an attempt came to, with its extensions (`None`: the first attempt's, which are
/// in the middleware's slot).
struct AttemptDone {
    response: reqwest::Response,
    extensions: Option<Extensions>,
}

struct FailedAttempt {
    error: reqwest_middleware::Error,
    extensions: Option<Extensions>,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One attempt through the rest of the chain: the first attempt runs the chain's future as
/// it is, a retry a boxed future that owns its extensions.
enum AttemptFuture<'a> {
    First(BoxFuture<'a, reqwest_middleware::Result<reqwest::Response>>),
    Retry(BoxFuture<'a, Result<AttemptDone, FailedAttempt>>),
}

impl Future for AttemptFuture<'_> {
    type Output = Result<AttemptDone, FailedAttempt>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            AttemptFuture::First(future) => future.as_mut().poll(cx).map(|result| match result {
                Ok(response) => Ok(AttemptDone {
                    response,
                    extensions: None,
                }),
                Err(error) => Err(FailedAttempt {
                    error,
                    extensions: None,
                }),
            }),
            AttemptFuture::Retry(future) => future.as_mut().poll(cx),
        }
    }
}

impl<'a> Service<Attempt> for NextService<'_, 'a> {
    type Response = AttemptDone;
    type Error = FailedAttempt;
    type Future = AttemptFuture<'a>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), FailedAttempt>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, attempt: Attempt) -> Self::Future {
        let next = self.next.clone();
        let (request, extensions) = attempt.into_parts();
        let first = self
            .first
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match first {
            Some(slot) => {
                *slot = extensions;
                AttemptFuture::First(next.run(request, slot))
            }
            None => AttemptFuture::Retry(Box::pin(async move {
                let mut extensions = extensions;
                match next.run(request, &mut extensions).await {
                    Ok(response) => Ok(AttemptDone {
                        response,
                        extensions: Some(extensions),
                    }),
                    Err(error) => Err(FailedAttempt {
                        error,
                        extensions: Some(extensions),
                    }),
                }
            })),
        }
    }
}

impl ResponseParts for AttemptDone {
    fn status(&self) -> StatusCode {
        self.response.status()
    }

    fn headers(&self) -> &HeaderMap {
        self.response.headers()
    }

    fn extensions_mut(&mut self) -> &mut Extensions {
        self.response.extensions_mut()
    }
}

impl RetryResponse for AttemptDone {
    type Output = AttemptDone;
    type Body = reqwest::Body;
    type Head = (ReqwestHead, Option<Extensions>);

    fn into_output(self) -> AttemptDone {
        self
    }

    fn into_head(self) -> (Self::Head, reqwest::Body) {
        let (head, body) = self.response.into_head();
        ((head, self.extensions), body)
    }

    fn from_head((head, extensions): Self::Head, body: ResponseBody<reqwest::Body>) -> AttemptDone {
        AttemptDone {
            response: reqwest::Response::from_head(head, body),
            extensions,
        }
    }
}

impl ClassifyError for FailedAttempt {
    fn transport_error_kind(&self) -> TransportErrorKind {
        self.error.transport_error_kind()
    }
}

/// The origin of a URL, for the per-origin limits.
fn url_origin(url: &reqwest::Url) -> Origin<'_> {
    Origin::new(
        Some(url.scheme()),
        url.host_str(),
        url.port_or_known_default(),
    )
}

// ===== reqwest types for the tower layer =====

impl RetryRequest for reqwest::Request {
    fn method(&self) -> &Method {
        self.method()
    }

    fn headers(&self) -> &HeaderMap {
        self.headers()
    }

    fn headers_mut(&mut self) -> &mut HeaderMap {
        self.headers_mut()
    }

    fn origin(&self) -> Origin<'_> {
        url_origin(self.url())
    }

    fn extensions(&self) -> Option<&Extensions> {
        None // not public in reqwest 0.13
    }

    fn extensions_mut(&mut self) -> Option<&mut Extensions> {
        None // not public in reqwest 0.13
    }

    fn try_clone_request(&self) -> Option<Self> {
        self.try_clone()
    }
}

impl ResponseParts for reqwest::Response {
    fn status(&self) -> StatusCode {
        self.status()
    }

    fn headers(&self) -> &HeaderMap {
        self.headers()
    }

    fn extensions_mut(&mut self) -> &mut Extensions {
        self.extensions_mut()
    }
}

/// A `reqwest::Response` without its body: the `http` parts and the URL (which the
/// conversion to `http::Response` does not carry).
type ReqwestHead = (http::response::Parts, reqwest::Url);

impl RetryResponse for reqwest::Response {
    type Output = reqwest::Response;
    type Body = reqwest::Body;
    type Head = ReqwestHead;

    fn into_output(self) -> reqwest::Response {
        self
    }

    fn into_head(self) -> (ReqwestHead, reqwest::Body) {
        let url = self.url().clone();
        let (parts, body) = http::Response::<reqwest::Body>::from(self).into_parts();
        ((parts, url), body)
    }

    fn from_head((mut parts, url): ReqwestHead, body: ResponseBody<reqwest::Body>) -> Self {
        use reqwest::ResponseBuilderExt;

        // Put back the response URL, which the `http::Response` conversion does not carry.
        if let Ok(with_url) = http::Response::builder().url(url).body(()) {
            parts.extensions.extend(with_url.into_parts().0.extensions);
        }
        let body = reqwest::Body::wrap(body);
        reqwest::Response::from(http::Response::from_parts(parts, body))
    }
}
