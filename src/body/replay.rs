//! [`ReplayBody`]: a streaming request body teed into a bounded buffer.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use super::TryCloneBody;
use crate::sync::{Arc, Mutex, MutexGuard};

/// The error type of a [`ReplayBody`]: the wrapped body's error, boxed (what
/// `tower::BoxError` is).
type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// The most a replayed frame carries: the recording is copied out in pieces this size.
const REPLAY_FRAME: usize = 16 * 1024;

/// The smallest allocation for the recording, so tiny chunks do not regrow it every time.
const MIN_RECORDING: usize = 1024;

/// A body that records what it sends, up to a limit, so that a copy can send it again: a
/// streaming request body teed into a bounded buffer.
///
/// The first attempt reads the wrapped body (the *source*) as usual and, while it does,
/// copies each chunk into a recording shared with every copy made by
/// [`TryCloneBody::try_clone_body`]. A copy sent as a retry replays the recording, then goes
/// on reading the source where the earlier attempt stopped (recording as it goes), so a
/// server that answered before reading the whole body does not prevent a retry.
///
/// # One reader at a time
///
/// Only one copy at a time reads the source: the newest copy polled while the source
/// still has data. A copy polled while a newer live copy reads (an abandoned attempt's)
/// ends at once with [`ReplayError::Superseded`], never waits. When the reader is dropped,
/// the next copy polled takes the source over. Copies are meant to be sent one after
/// another, as retries are (the design, linkerd's, is in `docs/design.md`).
///
/// # Never a truncated body
///
/// A copy sends the whole body or ends with an error, never a clean end after part of it:
///
/// - if the source failed, every copy that has not already got that error fails with
///   [`ReplayError::SourceFailed`] (before sending anything it had not sent yet);
/// - if the recording was given up while the copy still needs part of it, the copy fails
///   with [`ReplayError::NotReplayable`].
///
/// [`is_replayable`](TryCloneBody::is_replayable) tells in advance: it is `false` for a copy
/// in either case, and for a superseded copy. `try_clone_body` returns `None` once a new
/// copy could no longer be sent whole. `is_replayable` is a snapshot: while the engine
/// waits out the delay before a retry, the abandoned attempt's copy may still read on, go
/// over the limit or hit a failing source, and the retry then ends with one of the errors
/// above rather than send a wrong body.
///
/// # Memory
///
/// The recording is one buffer of at most `limit` bytes, given up (and freed) once more
/// than `limit` bytes were read (the body is then [*capped*](ReplayBody::is_capped) and
/// the engine hands the attempt's outcome back instead of retrying), or when data is read
/// while no other copy exists. A copy made before any data was read stays replayable.
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, StreamBody};
/// use http_body::Frame;
/// use telecho_retry::body::TryCloneBody;
/// use telecho_retry::body::ReplayBody;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let chunks = vec![Ok::<_, std::io::Error>(Frame::data(Bytes::from("hello "))),
///                   Ok(Frame::data(Bytes::from("world")))];
/// let body = ReplayBody::new(StreamBody::new(futures_util::stream::iter(chunks)), 64 * 1024);
/// let copy = body.try_clone_body().unwrap();
///
/// assert_eq!(body.collect().await.unwrap().to_bytes(), "hello world");
/// assert!(copy.is_replayable());
/// assert_eq!(copy.collect().await.unwrap().to_bytes(), "hello world");
/// # }
/// ```
pub struct ReplayBody<B> {
    shared: Arc<Mutex<ReplayState<B>>>,
    cursor: Cursor,
}

/// Where one copy is.
#[derive(Debug)]
struct Cursor {
    /// This copy's number: a copy made later has a larger one.
    id: u64,
    /// How many bytes of the body this copy has sent.
    sent: u64,
    /// Whether this copy has sent the trailers.
    trailers_sent: bool,
    /// Whether this copy has ended (cleanly).
    ended: bool,
}

struct ReplayState<B> {
    source: Source<B>,
    /// Every byte read from the source so far, while a copy may still need it; `None` once
    /// given up (capped, or read with no other copy alive).
    recording: Option<BytesMut>,
    trailers: Option<HeaderMap>,
    /// Bytes read from the source so far (by any copy).
    read: u64,
    limit: usize,
    /// More than `limit` bytes were read, or the body's known length is over it.
    capped: bool,
    /// The wrapped body's size hint when it was wrapped: the whole body's.
    size_hint: SizeHint,
    /// The copy reading the source, while it is being read.
    reader: Option<Reader>,
    next_id: u64,
}

enum Source<B> {
    Reading(Pin<Box<B>>),
    Ended,
    Failed,
}

struct Reader {
    id: u64,
    /// The reader's waker while it waits on the source, woken if a newer copy takes over.
    waker: Option<Waker>,
}

// ===== impl ReplayBody =====

impl<B: Body> ReplayBody<B> {
    /// Wraps `body`, recording up to `limit` bytes. With `limit == 0` nothing is recorded,
    /// and copies of a non-empty body are replayable only until its first byte is read.
    pub fn new(body: B, limit: usize) -> Self {
        let size_hint = body.size_hint();
        let capped = size_hint.lower() > limit as u64;
        ReplayBody {
            shared: Arc::new(Mutex::new(ReplayState {
                source: Source::Reading(Box::pin(body)),
                recording: (!capped).then(BytesMut::new),
                trailers: None,
                read: 0,
                limit,
                capped,
                size_hint,
                reader: None,
                next_id: 1,
            })),
            cursor: Cursor::new(0),
        }
    }
}

impl<B> ReplayBody<B> {
    fn lock(&self) -> MutexGuard<'_, ReplayState<B>> {
        lock(&self.shared)
    }

    /// `true` once more than the limit has been read (or when the body's known length is
    /// over it): copies that need any of the data already read can no longer be replayed.
    pub fn is_capped(&self) -> bool {
        self.lock().capped
    }

    /// Heap bytes the recording holds.
    #[cfg(test)]
    fn recorded_capacity(&self) -> usize {
        self.lock().recording.as_ref().map_or(0, BytesMut::capacity)
    }
}

fn lock<B>(shared: &Mutex<ReplayState<B>>) -> MutexGuard<'_, ReplayState<B>> {
    // Every update below is made after the source's poll returns, so a panic in it leaves
    // nothing half-written: recover the guard rather than propagate the poison.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

impl<B> TryCloneBody for ReplayBody<B> {
    /// A copy that will send the body from its start, or `None` when it could not be sent
    /// whole (the source failed, or data it would need was not recorded).
    fn try_clone_body(&self) -> Option<Self> {
        let mut s = self.lock();
        if matches!(s.source, Source::Failed) || (s.read > 0 && s.recording.is_none()) {
            return None;
        }
        let id = s.next_id;
        s.next_id = s.next_id.wrapping_add(1);
        drop(s);
        Some(ReplayBody {
            shared: Arc::clone(&self.shared),
            cursor: Cursor::new(id),
        })
    }

    /// Whether this copy can still send the whole body: the source has not failed, what
    /// it has yet to replay is recorded, and no newer copy has taken the source over.
    fn is_replayable(&self) -> bool {
        let s = self.lock();
        match &s.source {
            Source::Failed => false,
            Source::Reading(_) if s.is_superseded(self.cursor.id) => false,
            _ => self.cursor.sent >= s.read || s.recording.is_some(),
        }
    }
}

impl<B> Drop for ReplayBody<B> {
    fn drop(&mut self) {
        // The reader hands the source back for the next copy to be polled.
        let mut s = self.lock();
        if s.reader.as_ref().is_some_and(|r| r.id == self.cursor.id) {
            s.reader = None;
        }
    }
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.lock();
        f.debug_struct("ReplayBody")
            .field("copy", &self.cursor.id)
            .field("read", &s.read)
            .field("limit", &s.limit)
            .field("capped", &s.capped)
            .field("recorded", &s.recording.as_ref().map(BytesMut::len))
            .field("sent", &self.cursor.sent)
            .finish()
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body,
    B::Error: Into<SourceError>,
{
    type Data = Bytes;
    type Error = SourceError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, SourceError>>> {
        let this = self.get_mut();
        if this.cursor.ended {
            return Poll::Ready(None);
        }
        // With `&mut self` no copy of this one can be made meanwhile, so a count of one
        // stays one: no other copy exists to replay what is read now.
        let alone = Arc::strong_count(&this.shared) == 1;
        let mut superseded = None;
        let poll = lock(&this.shared).poll_copy(&mut this.cursor, cx, alone, &mut superseded);
        // Wake the copy that was reading only after the lock is released.
        if let Some(waker) = superseded {
            waker.wake();
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        if self.cursor.ended {
            return true;
        }
        let s = self.lock();
        if self.cursor.sent < s.read || (!self.cursor.trailers_sent && s.trailers.is_some()) {
            return false;
        }
        match &s.source {
            Source::Ended => true,
            Source::Reading(source) => source.is_end_stream(),
            Source::Failed => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        if self.cursor.ended {
            return SizeHint::with_exact(0);
        }
        // The wrapped body's hint, less what this copy sent: every copy is framed as the
        // first attempt was (a streamed body stays chunked even once its length is known).
        let whole = self.lock().size_hint;
        let sent = self.cursor.sent;
        let mut hint = SizeHint::new();
        if let Some(upper) = whole.upper() {
            hint.set_upper(upper.saturating_sub(sent));
        }
        hint.set_lower(whole.lower().saturating_sub(sent));
        hint
    }
}

// ===== impl Cursor =====

impl Cursor {
    fn new(id: u64) -> Self {
        Cursor {
            id,
            sent: 0,
            trailers_sent: false,
            ended: false,
        }
    }
}

// ===== impl ReplayState =====

impl<B> ReplayState<B> {
    /// Whether a newer copy than `id` is reading the source.
    fn is_superseded(&self, id: u64) -> bool {
        self.reader.as_ref().is_some_and(|r| r.id > id)
    }

    /// Counts a chunk read from the source and records it if a copy may replay it.
    fn record(&mut self, chunk: &[u8], alone: bool) {
        self.read = self.read.saturating_add(chunk.len() as u64);
        if self.read > self.limit as u64 {
            self.capped = true;
        }
        if chunk.is_empty() {
            return;
        }
        if self.capped || alone {
            self.recording = None;
        }
        if let Some(recording) = self.recording.as_mut() {
            reserve_within(recording, chunk.len(), self.limit);
            recording.extend_from_slice(chunk);
        }
    }
}

impl<B> ReplayState<B>
where
    B: Body,
    B::Error: Into<SourceError>,
{
    /// One poll of the copy at `cursor`; a reader it takes the source from leaves its
    /// waker in `superseded`.
    fn poll_copy(
        &mut self,
        cursor: &mut Cursor,
        cx: &mut Context<'_>,
        alone: bool,
        superseded: &mut Option<Waker>,
    ) -> Poll<Option<Result<Frame<Bytes>, SourceError>>> {
        match self.source {
            Source::Failed => return Poll::Ready(Some(Err(Box::new(ReplayError::SourceFailed)))),
            Source::Reading(_) if self.is_superseded(cursor.id) => {
                return Poll::Ready(Some(Err(Box::new(ReplayError::Superseded))));
            }
            Source::Reading(_) if self.reader.as_ref().is_none_or(|r| r.id != cursor.id) => {
                // The newest copy polled reads the source from now on.
                *superseded = self.reader.take().and_then(|r| r.waker);
                self.reader = Some(Reader {
                    id: cursor.id,
                    waker: None,
                });
            }
            Source::Reading(_) | Source::Ended => {}
        }

        // Behind the source: replay what was recorded.
        if cursor.sent < self.read {
            let from = usize::try_from(cursor.sent).unwrap_or(usize::MAX);
            let part = self.recording.as_ref().and_then(|recording| {
                let to = recording.len().min(from.saturating_add(REPLAY_FRAME));
                recording.get(from..to).filter(|part| !part.is_empty())
            });
            let Some(part) = part else {
                return Poll::Ready(Some(Err(Box::new(ReplayError::NotReplayable))));
            };
            let chunk = Bytes::copy_from_slice(part);
            cursor.sent = cursor.sent.saturating_add(chunk.len() as u64);
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if !cursor.trailers_sent {
            if let Some(trailers) = &self.trailers {
                cursor.trailers_sent = true;
                return Poll::Ready(Some(Ok(Frame::trailers(trailers.clone()))));
            }
        }

        // Caught up: read on from the source, recording as we go.
        loop {
            let Source::Reading(source) = &mut self.source else {
                // `Failed` returned above; the source ended and all of it was replayed.
                cursor.ended = true;
                return Poll::Ready(None);
            };
            let frame = match source.as_mut().poll_frame(cx) {
                Poll::Pending => {
                    if let Some(reader) = self.reader.as_mut() {
                        match &reader.waker {
                            Some(waker) if waker.will_wake(cx.waker()) => {}
                            _ => reader.waker = Some(cx.waker().clone()),
                        }
                    }
                    return Poll::Pending;
                }
                Poll::Ready(frame) => frame,
            };
            match frame {
                None => {
                    self.source = Source::Ended;
                    self.reader = None;
                    cursor.ended = true;
                    return Poll::Ready(None);
                }
                Some(Err(e)) => {
                    // No copy can send the whole body any more: free the recording.
                    self.source = Source::Failed;
                    self.reader = None;
                    self.recording = None;
                    return Poll::Ready(Some(Err(e.into())));
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(mut data) => {
                        let chunk = data.copy_to_bytes(data.remaining());
                        self.record(&chunk, alone);
                        cursor.sent = self.read;
                        return Poll::Ready(Some(Ok(Frame::data(chunk))));
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            self.trailers = Some(trailers.clone());
                            cursor.trailers_sent = true;
                            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                        }
                        // Neither data nor trailers: pass nothing on, read the next frame.
                    }
                },
            }
        }
    }
}

/// Makes room for `additional` more bytes, never growing the recording past `limit`
/// (which the caller has checked `len + additional` does not exceed).
fn reserve_within(recording: &mut BytesMut, additional: usize, limit: usize) {
    let needed = recording.len().saturating_add(additional);
    if needed <= recording.capacity() {
        return;
    }
    let capacity = recording
        .capacity()
        .saturating_mul(2)
        .max(MIN_RECORDING)
        .min(limit)
        .max(needed);
    // A fresh buffer of exactly `capacity`: `BytesMut::reserve` may round up further.
    let mut grown = BytesMut::with_capacity(capacity);
    grown.extend_from_slice(recording);
    *recording = grown;
}

// ===== errors =====

/// Why a copy of a [`ReplayBody`] could not give its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayError {
    /// Data it has to replay was not recorded: the body went over the replay limit, or was
    /// read while no other copy existed.
    NotReplayable,
    /// A newer copy took over reading the body: the attempt this copy belonged to was
    /// abandoned for a retry.
    Superseded,
    /// The wrapped body failed while another copy was reading it (that copy got the body's
    /// own error).
    SourceFailed,
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReplayError::NotReplayable => {
                "request body cannot be sent again: part of it was not recorded \
                 (over the replay buffer, or sent when no copy existed)"
            }
            ReplayError::Superseded => "request body abandoned: a retry is sending it again",
            ReplayError::SourceFailed => {
                "request body failed while an earlier attempt was sending it"
            }
        })
    }
}

impl std::error::Error for ReplayError {}

#[cfg(test)]
mod tests;

#[cfg(all(test, loom))]
mod loom_tests;
