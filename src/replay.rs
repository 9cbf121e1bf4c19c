//! [`ReplayBody`]: a streaming request body teed into a bounded buffer, so it can be sent
//! again.
//!
//! The first attempt reads the wrapped body as usual and, while it does, records each
//! chunk in a buffer shared with every copy ([`TryCloneBody::try_clone_body`]). A copy sent
//! as a retry replays the recorded chunks, then goes on reading the wrapped body where the
//! earlier attempt stopped (recording as it goes), so a server that answered before reading
//! the whole body does not prevent a retry. Once more than `limit` bytes have been read the
//! buffer is dropped and the body is *capped*: copies report
//! [`is_replayable`](TryCloneBody::is_replayable)` == false`, and the engine hands the
//! attempt's outcome back instead of retrying. The design follows linkerd's `ReplayBody`.
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, StreamBody};
//! use http_body::Frame;
//! use telecho_retry::request::TryCloneBody;
//! use telecho_retry::ReplayBody;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let chunks = vec![Ok::<_, std::io::Error>(Frame::data(Bytes::from("hello "))),
//!                   Ok(Frame::data(Bytes::from("world")))];
//! let body = ReplayBody::new(StreamBody::new(futures_util::stream::iter(chunks)), 64 * 1024);
//! let copy = body.try_clone_body().unwrap();
//!
//! assert_eq!(body.collect().await.unwrap().to_bytes(), "hello world");
//! assert!(copy.is_replayable());
//! assert_eq!(copy.collect().await.unwrap().to_bytes(), "hello world");
//! # }
//! ```

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use crate::request::TryCloneBody;

/// The error type of a [`ReplayBody`]: the wrapped body's error, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A body that records what it sends, up to a limit, so that a copy can send it again.
/// See the [module docs](crate::replay).
pub struct ReplayBody<B> {
    shared: Arc<Mutex<Shared<B>>>,
    /// How many recorded chunks this copy has sent.
    position: usize,
    /// How many bytes this copy has sent.
    sent: usize,
    /// Whether this copy has sent the trailers.
    trailers_sent: bool,
}

struct Shared<B> {
    source: Option<Pin<Box<B>>>,
    chunks: Vec<Bytes>,
    /// Bytes read from the wrapped body so far (by any copy).
    read: usize,
    limit: usize,
    capped: bool,
    trailers: Option<HeaderMap>,
    /// The wrapped body ended (or failed): no more reads.
    done: bool,
    failed: bool,
    size_hint: SizeHint,
}

impl<B: Body> ReplayBody<B> {
    /// Wraps `body`, recording up to `limit` bytes. With `limit == 0` nothing is recorded
    /// and copies of a non-empty body are never replayable.
    pub fn new(body: B, limit: usize) -> Self {
        let size_hint = body.size_hint();
        let capped = size_hint.lower() > limit as u64;
        ReplayBody {
            shared: Arc::new(Mutex::new(Shared {
                source: Some(Box::pin(body)),
                chunks: Vec::new(),
                read: 0,
                limit,
                capped,
                trailers: None,
                done: false,
                failed: false,
                size_hint,
            })),
            position: 0,
            sent: 0,
            trailers_sent: false,
        }
    }
}

impl<B> ReplayBody<B> {
    fn lock(&self) -> MutexGuard<'_, Shared<B>> {
        // A panic in another copy's poll cannot leave the buffer half-written in a way we
        // rely on: recover the guard rather than propagate the poison.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `true` once more than the limit has been read: copies can no longer be replayed.
    pub fn is_capped(&self) -> bool {
        self.lock().capped
    }
}

impl<B> TryCloneBody for ReplayBody<B> {
    fn try_clone_body(&self) -> Option<Self> {
        Some(ReplayBody {
            shared: Arc::clone(&self.shared),
            position: 0,
            sent: 0,
            trailers_sent: false,
        })
    }

    fn is_replayable(&self) -> bool {
        let s = self.lock();
        !s.capped && !s.failed
    }
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.lock();
        f.debug_struct("ReplayBody")
            .field("read", &s.read)
            .field("limit", &s.limit)
            .field("capped", &s.capped)
            .field("sent", &self.sent)
            .finish()
    }
}

/// The error a copy returns when it was polled although the body was capped.
#[derive(Debug)]
pub struct NotReplayable(());

impl fmt::Display for NotReplayable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("request body exceeded the replay buffer and cannot be sent again")
    }
}

impl std::error::Error for NotReplayable {}

impl<B> Body for ReplayBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let shared = Arc::clone(&this.shared);
        let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());

        // 1. Behind the reader: replay what was recorded, unless it was dropped.
        if this.sent < s.read {
            let Some(chunk) = s.chunks.get(this.position).filter(|_| !s.capped).cloned() else {
                return Poll::Ready(Some(Err(Box::new(NotReplayable(())))));
            };
            this.position += 1;
            this.sent += chunk.len();
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        // 2. The wrapped body already ended: trailers, then the end.
        if s.done {
            if !this.trailers_sent {
                this.trailers_sent = true;
                if let Some(t) = s.trailers.clone() {
                    return Poll::Ready(Some(Ok(Frame::trailers(t))));
                }
            }
            return Poll::Ready(None);
        }
        // 3. Read on from the wrapped body, recording as we go.
        let Some(source) = s.source.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = match source.as_mut().poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(f) => f,
        };
        match frame {
            None => {
                s.done = true;
                s.source = None;
                this.trailers_sent = true;
                Poll::Ready(None)
            }
            Some(Err(e)) => {
                s.done = true;
                s.failed = true;
                s.source = None;
                Poll::Ready(Some(Err(e.into())))
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(mut data) => {
                    let bytes = data.copy_to_bytes(data.remaining());
                    s.read = s.read.saturating_add(bytes.len());
                    if !s.capped && s.read <= s.limit {
                        s.chunks.push(bytes.clone());
                        this.position = s.chunks.len();
                    } else if !s.capped {
                        s.capped = true;
                        s.chunks = Vec::new();
                    }
                    this.sent = s.read;
                    Poll::Ready(Some(Ok(Frame::data(bytes))))
                }
                Err(frame) => match frame.into_trailers() {
                    Ok(trailers) => {
                        s.trailers = Some(trailers.clone());
                        this.trailers_sent = true;
                        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
                    }
                    // An unknown frame kind: pass nothing on, ask again.
                    Err(_) => {
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                },
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        let s = self.lock();
        s.done && self.sent >= s.read && (self.trailers_sent || s.trailers.is_none())
    }

    fn size_hint(&self) -> SizeHint {
        self.lock().size_hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn stream(parts: &[&'static str]) -> impl Body<Data = Bytes, Error = std::io::Error> {
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn copy_replays_a_body_that_fit() {
        let body = ReplayBody::new(stream(&["ab", "cd", "ef"]), 6);
        let copy = body.try_clone_body().unwrap();
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abcdef");
        assert!(copy.is_replayable());
        let copy2 = copy.try_clone_body().unwrap();
        assert_eq!(copy.collect().await.unwrap().to_bytes(), "abcdef");
        assert_eq!(copy2.collect().await.unwrap().to_bytes(), "abcdef");
    }

    #[tokio::test]
    async fn body_over_the_limit_is_capped() {
        let body = ReplayBody::new(stream(&["ab", "cd", "ef"]), 5);
        let copy = body.try_clone_body().unwrap();
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abcdef");
        assert!(!copy.is_replayable());
        assert!(
            copy.collect().await.is_err(),
            "a capped copy errors rather than sends a partial body"
        );
    }

    #[tokio::test]
    async fn copy_continues_where_a_partial_read_stopped() {
        let mut body = ReplayBody::new(stream(&["ab", "cd", "ef"]), 64);
        let copy = body.try_clone_body().unwrap();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first, "ab");
        drop(body); // the server answered before reading the rest
        assert!(copy.is_replayable());
        assert_eq!(copy.collect().await.unwrap().to_bytes(), "abcdef");
    }

    #[tokio::test]
    async fn zero_limit_never_replays_data() {
        let body = ReplayBody::new(stream(&["x"]), 0);
        let copy = body.try_clone_body().unwrap();
        assert_eq!(body.collect().await.unwrap().to_bytes(), "x");
        assert!(!copy.is_replayable());
    }

    #[tokio::test]
    async fn known_length_over_limit_is_capped_before_reading() {
        let body = ReplayBody::new(http_body_util::Full::new(Bytes::from(vec![0u8; 100])), 10);
        assert!(body.is_capped());
        assert_eq!(body.size_hint().exact(), Some(100));
    }

    #[tokio::test]
    async fn errors_pass_through_and_stop_replays() {
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
            Ok(Frame::data(Bytes::from_static(b"a"))),
            Err(std::io::Error::other("boom")),
        ];
        let body = ReplayBody::new(StreamBody::new(futures_util::stream::iter(frames)), 64);
        let copy = body.try_clone_body().unwrap();
        assert!(body.collect().await.is_err());
        assert!(!copy.is_replayable());
    }

    #[tokio::test]
    async fn trailers_are_replayed() {
        let mut t = HeaderMap::new();
        t.insert("x-checksum", "1".parse().unwrap());
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
            Ok(Frame::data(Bytes::from_static(b"a"))),
            Ok(Frame::trailers(t.clone())),
        ];
        let body = ReplayBody::new(StreamBody::new(futures_util::stream::iter(frames)), 64);
        let copy = body.try_clone_body().unwrap();
        let first = body.collect().await.unwrap();
        assert_eq!(first.trailers(), Some(&t));
        let again = copy.collect().await.unwrap();
        assert_eq!(again.trailers(), Some(&t));
        assert_eq!(again.to_bytes(), "a");
    }
}
