//! Reading the start of a response body without losing it: one bounded reader shared by
//! every place the crate looks into an error body.
//!
//! - [`peek`] reads a body until it ends, until more than `limit` bytes have come, or until
//!   `timeout` runs out, whichever is first, and hands back a [`Peeked`]: the bytes when the
//!   whole body came within both bounds (to find the TelEcho code, the engine parses it),
//!   and [`Peeked::into_body`], a [`ResponseBody`] that replays what was read, then the
//!   error that stopped the read (if one did), then the rest of the body. Nothing is lost:
//!   a timeout or a limit overrun leaves the rest of the body where it was.
//!   The middleware uses it to apply [`CodeRule`](crate::classify::CodeRule)s.
//! - [`collect`] reads at most `limit` bytes for at most `timeout` and keeps only the bytes
//!   (for [`ResponseError`](crate::ResponseError)), saying whether the body was cut.
//!
//! Bodies whose data is not [`Bytes`] are accepted (`Data: Buf`); every frame is turned into
//! [`Bytes`] with [`Buf::copy_to_bytes`], which for [`Bytes`] itself is a cheap slice.
//!
//! The read is polled by hand (no boxing, no task): [`PeekFuture`] is a pin-project-lite
//! future over the body and a [`tokio::time::Sleep`], so it needs a tokio runtime with the
//! time driver, and it follows tokio's paused clock in tests.
//!
//! Memory: empty data frames are dropped, and data frames smaller than 1 KiB are merged as
//! they are read, so a body sent as many tiny frames costs one buffer, not one allocation
//! per frame. At most `limit + 1` frames are read whatever their size (a body of endless
//! empty frames cannot keep the reader spinning); a body cut there is treated as one over
//! the limit.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::Sleep;

/// The longest the crate reads an error body: 10 s.
///
/// It bounds the engine's read of an error body for its TelEcho code (when the classifier
/// wants codes, as with [`CodeRule`](crate::classify::CodeRule)s; the response then still carries its
/// whole body, see [`ResponseBody`]), and the read of the async typed-error helpers (whose
/// [`ResponseError`](crate::ResponseError) then keeps what had arrived). A server that sends an error's
/// head and then stalls costs at most this long, never forever.
pub const ERROR_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Data frames smaller than this are merged into one buffer while peeking.
const MERGE_BELOW: usize = 1024;

fn into_bytes<D: Buf>(mut data: D) -> Bytes {
    let len = data.remaining();
    data.copy_to_bytes(len)
}

// ===== ResponseBody =====

pin_project! {
    /// A response body of which the crate has already read the start: the frames already
    /// read, then the error that stopped that read (if one did), then the rest of the
    /// original body `B`, unread. Reading it gives exactly what reading `B` would have
    /// given.
    ///
    /// The crate reads the start of an error response's body (at most 64 KiB
    /// ([`MAX_ENVELOPE_BYTES`](crate::MAX_ENVELOPE_BYTES)) and for at most 10 s
    /// ([`ERROR_BODY_TIMEOUT`](crate::ERROR_BODY_TIMEOUT))) to find its TelEcho error code
    /// for a [`CodeRule`](crate::classify::CodeRule), and hands the response back with this body.
    /// What was read is put back in front of the rest; a read cut by the time bound or the
    /// size bound leaves the rest of the body to be read as usual; an error the body
    /// returned during that read is returned again, in its place.
    ///
    /// Its data is always [`Bytes`]: frames of a body whose data is another [`Buf`] are
    /// turned into [`Bytes`] ([`Buf::copy_to_bytes`], a cheap slice when the data already
    /// is [`Bytes`]). Frame boundaries of the part already read may differ from the
    /// original's (small data frames are merged, empty ones dropped); the bytes and
    /// trailers are the same. [`Body::is_end_stream`] and [`Body::size_hint`] count the
    /// part already read and the rest.
    ///
    /// It is `Send`, `Sync` and `Unpin` when `B` and `B::Error` are. Its `Debug` shows
    /// sizes, never data.
    pub struct ResponseBody<B: Body> {
        prefix: VecDeque<Frame<Bytes>>,
        prefix_len: u64,
        error: Option<B::Error>,
        // `B` ended or failed while the prefix was read: it is not polled again.
        rest_done: bool,
        #[pin]
        rest: B,
    }
}

impl<B: Body> ResponseBody<B> {
    /// A body that replays nothing and reads `body` (what a response whose body was not
    /// read carries).
    pub(crate) fn new(body: B) -> Self {
        ResponseBody {
            prefix: VecDeque::new(),
            prefix_len: 0,
            error: None,
            rest_done: false,
            rest: body,
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body,
    B::Data: Buf,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        if let Some(frame) = this.prefix.pop_front() {
            if let Some(data) = frame.data_ref() {
                *this.prefix_len -= data.len() as u64;
            }
            return Poll::Ready(Some(Ok(frame)));
        }
        if let Some(error) = this.error.take() {
            return Poll::Ready(Some(Err(error)));
        }
        if *this.rest_done {
            return Poll::Ready(None);
        }
        let frame = ready!(this.rest.poll_frame(cx));
        Poll::Ready(frame.map(|r| r.map(|f| f.map_data(into_bytes))))
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_empty()
            && self.error.is_none()
            && (self.rest_done || self.rest.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let head = self.prefix_len;
        if self.rest_done {
            return SizeHint::with_exact(head);
        }
        let rest = self.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(head));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(head));
        }
        hint
    }
}

impl<B: Body> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("prefix_frames", &self.prefix.len())
            .field("prefix_bytes", &self.prefix_len)
            .field("error", &self.error.is_some())
            .field("rest_done", &self.rest_done)
            .finish_non_exhaustive()
    }
}

// ===== peek =====

/// Reads `body` until it ends, more than `limit` bytes (or frames) have come, or
/// `timeout` runs out; see the [module docs](self).
///
/// The time bound starts now: call it right before awaiting. Needs a tokio runtime with
/// the time driver.
pub(crate) fn peek<B>(body: B, limit: usize, timeout: Duration) -> PeekFuture<B>
where
    B: Body + Unpin,
    B::Data: Buf,
{
    PeekFuture {
        sleep: tokio::time::sleep(timeout),
        peeked: Some(Peeked {
            frames: VecDeque::new(),
            tail: BytesMut::new(),
            len: 0,
            frames_read: 0,
            limit,
            error: None,
            ended: false,
            timed_out: false,
            rest: body,
        }),
    }
}

pin_project! {
    /// The future of [`peek`].
    pub(crate) struct PeekFuture<B: Body> {
        #[pin]
        sleep: Sleep,
        peeked: Option<Peeked<B>>,
    }
}

impl<B> Future for PeekFuture<B>
where
    B: Body + Unpin,
    B::Data: Buf,
{
    type Output = Peeked<B>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Peeked<B>> {
        let mut this = self.project();
        let peeked = this
            .peeked
            .as_mut()
            .expect("PeekFuture polled after completion");
        while peeked.wants_more() {
            match Pin::new(&mut peeked.rest).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => peeked.push(frame),
                Poll::Ready(Some(Err(error))) => peeked.error = Some(error),
                Poll::Ready(None) => peeked.ended = true,
                Poll::Pending => {
                    if this.sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    peeked.timed_out = true;
                }
            }
        }
        let mut peeked = this.peeked.take().expect("checked above");
        peeked.flush_tail();
        Poll::Ready(peeked)
    }
}

impl<B: Body> fmt::Debug for PeekFuture<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeekFuture")
            .field("peeked", &self.peeked)
            .finish_non_exhaustive()
    }
}

/// What [`peek`] read of a body, and the rest of it.
pub(crate) struct Peeked<B: Body> {
    frames: VecDeque<Frame<Bytes>>,
    /// Small data frames being merged (flushed into `frames` before anything else).
    tail: BytesMut,
    /// Data bytes read.
    len: usize,
    /// Frames read, of any kind and size.
    frames_read: usize,
    limit: usize,
    error: Option<B::Error>,
    ended: bool,
    timed_out: bool,
    rest: B,
}

impl<B: Body> Peeked<B>
where
    B::Data: Buf,
{
    fn wants_more(&self) -> bool {
        !self.ended
            && self.error.is_none()
            && !self.timed_out
            && self.len <= self.limit
            && self.frames_read <= self.limit
    }

    fn push(&mut self, frame: Frame<B::Data>) {
        self.frames_read += 1;
        match frame.into_data() {
            Ok(data) => {
                let data = into_bytes(data);
                self.len += data.len();
                if data.is_empty() {
                    // Nothing to replay.
                } else if data.len() < MERGE_BELOW {
                    self.tail.extend_from_slice(&data);
                } else {
                    self.flush_tail();
                    self.frames.push_back(Frame::data(data));
                }
            }
            Err(frame) => {
                self.flush_tail();
                self.frames.push_back(frame.map_data(into_bytes));
            }
        }
    }
}

impl<B: Body> Peeked<B> {
    fn flush_tail(&mut self) {
        if !self.tail.is_empty() {
            let merged = self.tail.split().freeze();
            self.frames.push_back(Frame::data(merged));
        }
    }

    /// `true` when the whole body was read: it ended within the size and time bounds,
    /// without an error.
    pub(crate) fn is_complete(&self) -> bool {
        self.ended && self.len <= self.limit
    }

    /// The whole body, when it was read ([`is_complete`](Self::is_complete)).
    pub(crate) fn bytes(&self) -> Option<Bytes> {
        self.is_complete().then(|| self.data_prefix(self.len))
    }

    /// The first `max` data bytes read.
    fn data_prefix(&self, max: usize) -> Bytes {
        let mut data = self.frames.iter().filter_map(Frame::data_ref);
        match (data.next(), data.next()) {
            (None, _) => Bytes::new(),
            (Some(only), None) if only.len() <= max => only.clone(),
            // A copy, not a slice: a slice would keep the whole frame's buffer alive.
            (Some(only), None) => Bytes::copy_from_slice(&only[..max]),
            (Some(_), Some(_)) => {
                let mut all = BytesMut::with_capacity(self.len.min(max));
                for d in self.frames.iter().filter_map(Frame::data_ref) {
                    let room = max - all.len();
                    all.extend_from_slice(&d[..d.len().min(room)]);
                    if all.len() == max {
                        break;
                    }
                }
                all.freeze()
            }
        }
    }

    /// The body again, whole: what was read, then the error that stopped the read (if
    /// any), then the rest.
    pub(crate) fn into_body(self) -> ResponseBody<B> {
        let prefix_len = self
            .frames
            .iter()
            .filter_map(Frame::data_ref)
            .map(|d| d.len() as u64)
            .sum();
        ResponseBody {
            prefix: self.frames,
            prefix_len,
            rest_done: self.ended || self.error.is_some(),
            error: self.error,
            rest: self.rest,
        }
    }

    /// What a typed error keeps: at most `limit` bytes, and how the read ended.
    pub(crate) fn into_collected(self) -> Collected {
        Collected {
            bytes: self.data_prefix(self.limit),
            truncated: !self.is_complete(),
            timed_out: self.timed_out,
        }
    }
}

impl<B: Body> fmt::Debug for Peeked<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peeked")
            .field("len", &self.len)
            .field("frames_read", &self.frames_read)
            .field("limit", &self.limit)
            .field("error", &self.error.is_some())
            .field("ended", &self.ended)
            .field("timed_out", &self.timed_out)
            .finish_non_exhaustive()
    }
}

// ===== collect =====

/// What [`collect`] kept of a body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Collected {
    /// At most `limit` bytes: the start of the body.
    pub(crate) bytes: Bytes,
    /// `bytes` is not the whole body: it was longer than `limit`, or the read was stopped
    /// by the time bound or by a body error.
    pub(crate) truncated: bool,
    /// The time bound stopped the read.
    pub(crate) timed_out: bool,
}

/// Reads at most `limit` bytes of `body` for at most `timeout`, then drops the body.
pub(crate) async fn collect<B>(body: B, limit: usize, timeout: Duration) -> Collected
where
    B: Body + Unpin,
    B::Data: Buf,
{
    peek(body, limit, timeout).await.into_collected()
}

#[cfg(test)]
mod tests;
