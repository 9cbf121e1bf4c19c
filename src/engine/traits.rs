//! What the engine needs from a request and a response, as small traits.
//!
//! - [`RetryRequest`]: the method and headers (idempotency), the origin (per-origin
//!   limits), the extensions ([`RetryOverride`](crate::RetryOverride),
//!   [`AttemptNumber`](crate::AttemptNumber)), and a way to duplicate the request for the
//!   next attempt. Implemented for `http::Request<B>` where
//!   `B: `[`TryCloneBody`](crate::body::TryCloneBody), and with feature `reqwest` for
//!   `reqwest::Request`.
//! - [`RetryResponse`] and [`ResponseParts`]: status, headers and extensions (for
//!   [`RetryInfo`](crate::RetryInfo)), and the body, read for an error code when the
//!   classifier wants it. Implemented for `http::Response<B>` (handed back as
//!   `http::Response<`[`ResponseBody<B>`]`>`) and, with feature `reqwest`, for
//!   `reqwest::Response`.
//!
//! What the engine needs from an error is in [`ClassifyError`](crate::classify::ClassifyError).

use http::{Extensions, HeaderMap, Method, StatusCode};
use http_body::Body;

use crate::body::{ResponseBody, TryCloneBody};
use crate::limits::Origin;

/// A request the engine can inspect and duplicate.
// Public (the adapters' public types name them) but unreachable: the engine is private.
#[allow(unreachable_pub)]
pub trait RetryRequest: Sized {
    /// The request method (idempotency).
    fn method(&self) -> &Method;

    /// The request headers (idempotency key).
    fn headers(&self) -> &HeaderMap;

    /// The request headers, to add an idempotency key or the attempt header.
    fn headers_mut(&mut self) -> &mut HeaderMap;

    /// The origin (scheme, host, port) the request goes to: the retry budget and the
    /// rate-limit cooldown are kept per origin.
    fn origin(&self) -> Origin<'_>;

    /// The request extensions, where the engine looks for a
    /// [`RetryOverride`](crate::RetryOverride); `None` where the request type does not
    /// expose them (`reqwest::Request`).
    fn extensions(&self) -> Option<&Extensions>;

    /// The request extensions, for [`AttemptNumber`](crate::AttemptNumber); `None` where the
    /// request type does not expose them (`reqwest::Request`).
    fn extensions_mut(&mut self) -> Option<&mut Extensions>;

    /// A copy to send as the next attempt, or `None` when the request cannot be copied
    /// (then it is sent once). Called before an attempt is sent, only when a retry could
    /// follow it.
    fn try_clone_request(&self) -> Option<Self>;

    /// Whether a copy made by [`try_clone_request`](Self::try_clone_request) can still be
    /// sent, checked after the attempt's outcome. `true` unless the copy replays a body
    /// that overflowed its buffer.
    fn is_replayable(&self) -> bool {
        true
    }
}

/// The parts of a response the engine reads and annotates.
// Public (the adapters' public types name them) but unreachable: the engine is private.
#[allow(unreachable_pub)]
pub trait ResponseParts {
    /// The status.
    fn status(&self) -> StatusCode;

    /// The headers (`Retry-After`).
    fn headers(&self) -> &HeaderMap;

    /// The extensions, where the engine puts a [`RetryInfo`](crate::RetryInfo) before
    /// handing the response back.
    fn extensions_mut(&mut self) -> &mut Extensions;
}

/// A response the engine can classify, annotate, and read the error body of.
///
/// When the policy has [`CodeRule`](crate::classify::CodeRule)s, the engine reads the start of an
/// error response's body (status ≥ 400; at most 64 KiB, for at most 10 s) to find its
/// TelEcho code, and hands the response back with a [`ResponseBody`] that puts what it
/// read back in front of the rest: nothing is lost. So the adapter hands back
/// [`Output`](Self::Output), in which the body can carry that prefix: for
/// `http::Response<B>` that is `http::Response<ResponseBody<B>>` (whether or not the body
/// was read), for `reqwest::Response` a `reqwest::Response` again.
#[diagnostic::on_unimplemented(
    message = "the retry engine cannot read or hand back a response of type `{Self}`",
    note = "`http::Response<B>` works when `B` is an `http_body::Body` that is `Unpin` (box it with `BoxBody` if it is not); `reqwest::Response` works with feature `reqwest`"
)]
// Public (the adapters' public types name them) but unreachable: the engine is private.
#[allow(unreachable_pub)]
pub trait RetryResponse: ResponseParts + Sized {
    /// What the adapter hands the caller.
    type Output: ResponseParts;
    /// The body the engine reads for an error code.
    type Body: Body + Unpin;
    /// Everything but the body.
    type Head;

    /// The response as handed back, its body unread.
    fn into_output(self) -> Self::Output;

    /// Splits the response to read its body.
    fn into_head(self) -> (Self::Head, Self::Body);

    /// Puts a response whose body was read back together.
    fn from_head(head: Self::Head, body: ResponseBody<Self::Body>) -> Self::Output;
}

// ===== impl RetryRequest =====

impl<B: TryCloneBody> RetryRequest for http::Request<B> {
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
        Origin::of_uri(self.uri())
    }

    fn extensions(&self) -> Option<&Extensions> {
        Some(self.extensions())
    }

    fn extensions_mut(&mut self) -> Option<&mut Extensions> {
        Some(self.extensions_mut())
    }

    fn try_clone_request(&self) -> Option<Self> {
        let body = self.body().try_clone_body()?;
        let mut req = http::Request::new(body);
        *req.method_mut() = self.method().clone();
        *req.uri_mut() = self.uri().clone();
        *req.version_mut() = self.version();
        *req.headers_mut() = self.headers().clone();
        *req.extensions_mut() = self.extensions().clone();
        Some(req)
    }

    fn is_replayable(&self) -> bool {
        self.body().is_replayable()
    }
}

// ===== impl RetryResponse =====

impl<B> ResponseParts for http::Response<B> {
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

impl<B> RetryResponse for http::Response<B>
where
    B: Body + Unpin,
{
    type Output = http::Response<ResponseBody<B>>;
    type Body = B;
    type Head = http::response::Parts;

    fn into_output(self) -> Self::Output {
        self.map(ResponseBody::new)
    }

    fn into_head(self) -> (Self::Head, B) {
        self.into_parts()
    }

    fn from_head(head: Self::Head, body: ResponseBody<B>) -> Self::Output {
        http::Response::from_parts(head, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};

    #[test]
    fn http_request_copy_keeps_everything() {
        #[derive(Clone, Debug, PartialEq)]
        struct Tag(u32);
        let mut req = http::Request::builder()
            .method(Method::PUT)
            .uri("http://127.0.0.1:1/v1/calls?x=1")
            .header("authorization", "Bearer s3cr3t")
            .body(Full::new(Bytes::from_static(b"payload")))
            .unwrap();
        req.extensions_mut().insert(Tag(7));
        let copy = req.try_clone_request().unwrap();
        assert_eq!(copy.method(), Method::PUT);
        assert_eq!(copy.uri(), req.uri());
        assert_eq!(copy.headers(), req.headers());
        assert_eq!(copy.extensions().get::<Tag>(), Some(&Tag(7)));
        let body = futures_executor_block_on(copy.into_body().collect()).unwrap();
        assert_eq!(body.to_bytes(), Bytes::from_static(b"payload"));
    }

    #[test]
    fn boxed_bodies_cannot_be_copied() {
        let req = http::Request::new(Full::new(Bytes::new()).boxed());
        assert!(req.try_clone_request().is_none());
    }

    fn futures_executor_block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }
}
