//! [`ReplayBody`]: a streaming request body teed into a bounded buffer.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use super::TryCloneBody;

/// The error type of a [`ReplayBody`]: the wrapped body's error, boxed (what
/// `tower::BoxError` is).
type BoxError = Box<dyn std::error::Error + Send + Sync>;

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
/// The design follows linkerd's `ReplayBody`: only one copy at a time reads the source, so
/// only one copy ever waits on it, and its waker is the one the source wakes. The reader
/// is the *newest* copy that has been polled while the source still has data:
///
/// - A copy polled while an older copy is reading takes the source over at once, and the
///   older copy is woken. The engine only polls a retry's copy once it is done with the
///   previous attempt, so the older copy belongs to an abandoned attempt (hyper may still be
///   sending it on the connection that got an early `503`).
/// - A copy polled while a newer live copy is reading, that is, a *superseded* copy, ends
///   at once with a [`Superseded`] error instead of waiting: its connection is closed rather
///   than left open with half a request. It never waits for the newer copy.
/// - When the reader is dropped, the source is free again: the next copy polled, older or
///   newer, takes it (replaying what it has not sent yet from the recording first).
///
/// So a copy returns `Poll::Pending` only while it is the reader and the source is pending;
/// if a newer copy takes over, the waiting copy is woken to find out. Linkerd instead lets
/// the reader move the state out and panics if a second copy is polled meanwhile; here the
/// state stays behind the shared lock so that a newer copy can take over from a reader that
/// is not being polled (a connection stuck writing).
///
/// Copies are meant to be sent one after another, as retries are: a program that polls two
/// copies side by side (a tee) sees the older one fail with [`Superseded`].
///
/// # Never a truncated body
///
/// A copy sends the whole body or ends with an error, never a clean end after part of it:
///
/// - if the source failed, every copy that has not already got that error fails with
///   [`SourceFailed`] (before sending anything it had not sent yet);
/// - if the recording was given up while the copy still needs part of it, the copy fails
///   with [`NotReplayable`].
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
/// The recording is one buffer owned by the `ReplayBody`: chunks are copied into it, so
/// neither many tiny chunks nor small slices of large buffers can make it hold more than
/// `limit` bytes (plus the small shared state). Replayed data is copied out of it again, at
/// most 16 KiB per frame. The recording is given up (and freed)
///
/// - once more than `limit` bytes have been read: the body is then
///   [*capped*](ReplayBody::is_capped), and the engine hands the attempt's outcome back
///   instead of retrying;
/// - when the reader reads more data while no other copy exists: nobody could replay it,
///   so nothing is recorded (the engine drops its copy when no retry can follow). A copy
///   made after that cannot be sent whole, so `try_clone_body` returns `None`.
///
/// A copy made before any data was read needs no recording: it stays replayable (say,
/// after a connection error) even for a body whose known length is over the limit.
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, StreamBody};
/// use http_body::Frame;
/// use telecho_retry::body::TryCloneBody;
/// use telecho_retry::ReplayBody;
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
    shared: Arc<Mutex<Shared<B>>>,
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

struct Shared<B> {
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
            shared: Arc::new(Mutex::new(Shared {
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
    fn lock(&self) -> MutexGuard<'_, Shared<B>> {
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

fn lock<B>(shared: &Mutex<Shared<B>>) -> MutexGuard<'_, Shared<B>> {
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
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
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

// ===== impl Shared =====

impl<B> Shared<B> {
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

impl<B> Shared<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    /// One poll of the copy at `cursor`; a reader it takes the source from leaves its
    /// waker in `superseded`.
    fn poll_copy(
        &mut self,
        cursor: &mut Cursor,
        cx: &mut Context<'_>,
        alone: bool,
        superseded: &mut Option<Waker>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.source {
            Source::Failed => return Poll::Ready(Some(Err(Box::new(SourceFailed(()))))),
            Source::Reading(_) if self.is_superseded(cursor.id) => {
                return Poll::Ready(Some(Err(Box::new(Superseded(())))));
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
                return Poll::Ready(Some(Err(Box::new(NotReplayable(())))));
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

/// The error a copy returns when data it has to replay was not recorded: the body went
/// over the replay limit, or was read while no other copy existed.
#[derive(Debug)]
pub struct NotReplayable(());

impl fmt::Display for NotReplayable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "request body cannot be sent again: part of it was not recorded \
             (over the replay buffer, or sent when no copy existed)",
        )
    }
}

impl std::error::Error for NotReplayable {}

/// The error a copy returns when a newer copy of the body has taken over reading it: the
/// attempt this copy belonged to was abandoned for a retry.
#[derive(Debug)]
pub struct Superseded(());

impl fmt::Display for Superseded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("request body abandoned: a retry is sending it again")
    }
}

impl std::error::Error for Superseded {}

/// The error a copy returns when the wrapped body failed while another copy was reading
/// it (that copy got the body's own error).
#[derive(Debug)]
pub struct SourceFailed(());

impl fmt::Display for SourceFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("request body failed while an earlier attempt was sending it")
    }
}

impl std::error::Error for SourceFailed {}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};
    use std::io;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::sync::mpsc;
    use tokio_test::task;

    fn stream(parts: &[&'static str]) -> impl Body<Data = Bytes, Error = io::Error> {
        let frames: Vec<Result<Frame<Bytes>, io::Error>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    /// A source the test feeds by hand: pending until something is sent, ended when the
    /// sender is dropped.
    struct Channel(mpsc::UnboundedReceiver<Result<Frame<Bytes>, io::Error>>);

    impl Body for Channel {
        type Data = Bytes;
        type Error = io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
            self.0.poll_recv(cx)
        }
    }

    type Feed = mpsc::UnboundedSender<Result<Frame<Bytes>, io::Error>>;

    fn channel(limit: usize) -> (Feed, ReplayBody<Channel>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, ReplayBody::new(Channel(rx), limit))
    }

    fn send(feed: &Feed, data: &'static str) {
        feed.send(Ok(Frame::data(Bytes::from_static(data.as_bytes()))))
            .unwrap();
    }

    type Polled = Poll<Option<Result<Frame<Bytes>, BoxError>>>;

    /// Polls a copy once in its own mock task (which records whether it was woken).
    fn poll<B>(copy: &mut task::Spawn<ReplayBody<B>>) -> Polled
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        copy.enter(|cx, body| body.poll_frame(cx))
    }

    fn data(polled: Polled) -> Bytes {
        match polled {
            Poll::Ready(Some(Ok(frame))) => frame.into_data().expect("a data frame"),
            other => panic!("expected data, got {other:?}"),
        }
    }

    fn error(polled: Polled) -> BoxError {
        match polled {
            Poll::Ready(Some(Err(e))) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    // ===== replays =====

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
    async fn a_copy_made_before_any_read_is_replayable_even_over_the_limit() {
        // A connection error before the body was sent: the copy can still send it whole.
        let mut body = ReplayBody::new(http_body_util::Full::new(Bytes::from(vec![7u8; 100])), 10);
        let copy = body.try_clone_body().unwrap();
        assert!(copy.is_replayable());
        assert_eq!(copy.size_hint().exact(), Some(100));

        let _ = body.frame().await.unwrap().unwrap();
        assert!(body.is_capped());
        assert!(
            !copy.is_replayable(),
            "the 100 bytes read were not recorded"
        );
        assert!(body.try_clone_body().is_none());
        assert!(copy.collect().await.is_err());
    }

    #[tokio::test]
    async fn errors_pass_through_and_stop_replays() {
        let frames: Vec<Result<Frame<Bytes>, io::Error>> = vec![
            Ok(Frame::data(Bytes::from_static(b"a"))),
            Err(io::Error::other("boom")),
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
        let frames: Vec<Result<Frame<Bytes>, io::Error>> = vec![
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

    #[tokio::test]
    async fn trailers_only_body_is_replayed() {
        let mut t = HeaderMap::new();
        t.insert("x-checksum", "0".parse().unwrap());
        let frames: Vec<Result<Frame<Bytes>, io::Error>> = vec![Ok(Frame::trailers(t.clone()))];
        let body = ReplayBody::new(StreamBody::new(futures_util::stream::iter(frames)), 64);
        let copy = body.try_clone_body().unwrap();
        assert_eq!(body.collect().await.unwrap().trailers(), Some(&t));
        let again = copy.collect().await.unwrap();
        assert_eq!(again.trailers(), Some(&t));
        assert!(again.to_bytes().is_empty());
    }

    #[tokio::test]
    async fn copies_are_framed_as_the_first_attempt_was() {
        // A stream of unknown length stays of unknown length (chunked), even once read.
        let body = ReplayBody::new(stream(&["ab", "cd"]), 64);
        let copy = body.try_clone_body().unwrap();
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abcd");
        assert_eq!(copy.size_hint().exact(), None);
        assert_eq!(copy.collect().await.unwrap().to_bytes(), "abcd");

        // A known length is kept, and counts down as the copy sends.
        let body = ReplayBody::new(http_body_util::Full::new(Bytes::from("abcd")), 64);
        let copy = body.try_clone_body().unwrap();
        assert!(!copy.is_end_stream());
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abcd");
        let mut copy = copy;
        assert_eq!(copy.size_hint().exact(), Some(4));
        let data = copy.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(data, "abcd");
        assert!(copy.is_end_stream());
        assert_eq!(copy.size_hint().exact(), Some(0));
        assert!(copy.frame().await.is_none());
    }

    // ===== fix 1: one reader at a time, no lost wakeups =====

    /// The early-`503` case: the first attempt's copy is still being sent (and waits on
    /// the source) when the retry's copy is polled. The retry takes the source over and
    /// the first copy is woken, to fail: before, it kept waiting, never to be woken, and
    /// its connection stayed open.
    #[tokio::test]
    async fn a_newer_copy_takes_the_source_over_and_wakes_the_older_one() {
        let (feed, body) = channel(64);
        let retry = body.try_clone_body().unwrap();
        let mut first = task::spawn(body);
        let mut retry = task::spawn(retry);

        send(&feed, "ab");
        assert_eq!(data(poll(&mut first)), "ab");
        assert!(poll(&mut first).is_pending());

        assert_eq!(
            data(poll(&mut retry)),
            "ab",
            "the retry replays what was sent"
        );
        assert!(
            first.is_woken(),
            "the first copy, waiting on the source, is woken when the retry takes it over"
        );
        assert!(poll(&mut retry).is_pending());

        send(&feed, "cd");
        assert!(retry.is_woken(), "the reader is woken by new data");
        assert_eq!(data(poll(&mut retry)), "cd");
        let e = error(poll(&mut first));
        assert!(e.is::<Superseded>(), "{e}");
        assert!(!first.is_replayable());
        assert!(retry.is_replayable());

        drop(feed);
        assert!(matches!(poll(&mut retry), Poll::Ready(None)));
    }

    /// The other order: the retry's copy waits on the source, then the abandoned copy is
    /// polled again. It fails at once instead of stealing the wakeup (before, it polled the
    /// source, its waker replaced the retry's, and the retry hung).
    #[tokio::test]
    async fn an_older_copy_polled_after_a_newer_one_fails_and_steals_no_wakeup() {
        let (feed, body) = channel(64);
        let retry = body.try_clone_body().unwrap();
        let mut first = task::spawn(body);
        let mut retry = task::spawn(retry);

        assert!(poll(&mut retry).is_pending());
        let e = error(poll(&mut first));
        assert!(e.is::<Superseded>(), "{e}");

        send(&feed, "ab");
        assert!(retry.is_woken(), "the waiting retry is woken by new data");
        assert_eq!(data(poll(&mut retry)), "ab");
    }

    #[tokio::test]
    async fn dropping_the_reader_hands_the_source_back() {
        let (feed, body) = channel(64);
        let retry = body.try_clone_body().unwrap();
        let mut first = task::spawn(body);
        let mut retry = task::spawn(retry);

        send(&feed, "ab");
        assert_eq!(data(poll(&mut first)), "ab");
        assert_eq!(data(poll(&mut retry)), "ab");
        send(&feed, "cd");
        assert_eq!(data(poll(&mut retry)), "cd");
        assert!(poll(&mut retry).is_pending());
        drop(retry);

        // The source is free again: the older copy replays what it missed and reads on.
        assert!(first.is_replayable());
        assert_eq!(data(poll(&mut first)), "cd");
        assert!(poll(&mut first).is_pending());
        send(&feed, "ef");
        assert!(first.is_woken());
        assert_eq!(data(poll(&mut first)), "ef");
        drop(feed);
        assert!(matches!(poll(&mut first), Poll::Ready(None)));
    }

    /// Three attempts in a row, each abandoned while its body was still being sent: every
    /// waiting copy is woken, only the newest reads, and it sends the whole body.
    #[tokio::test]
    async fn each_retry_supersedes_the_one_before() {
        let (feed, body) = channel(64);
        let second = body.try_clone_body().unwrap();
        let mut first = task::spawn(body);
        send(&feed, "a");
        assert_eq!(data(poll(&mut first)), "a");
        assert!(poll(&mut first).is_pending());

        let third = second.try_clone_body().unwrap();
        let mut second = task::spawn(second);
        assert_eq!(data(poll(&mut second)), "a");
        assert!(first.is_woken());
        send(&feed, "b");
        assert_eq!(data(poll(&mut second)), "b");
        assert!(poll(&mut second).is_pending());

        let mut third = task::spawn(third);
        assert_eq!(data(poll(&mut third)), "ab");
        assert!(second.is_woken());
        for older in [&mut first, &mut second] {
            assert!(error(poll(older)).is::<Superseded>());
        }
        send(&feed, "c");
        drop(feed);
        assert_eq!(data(poll(&mut third)), "c");
        assert!(matches!(poll(&mut third), Poll::Ready(None)));
    }

    // ===== fix 2: a failed source is never replayed as a complete body =====

    #[tokio::test]
    async fn a_copy_of_a_body_whose_source_failed_ends_with_an_error() {
        let frames: Vec<Result<Frame<Bytes>, io::Error>> = vec![
            Ok(Frame::data(Bytes::from_static(b"prefix"))),
            Err(io::Error::other("upload source broke")),
        ];
        let body = ReplayBody::new(StreamBody::new(futures_util::stream::iter(frames)), 64);
        let copy = body.try_clone_body().unwrap();
        let e = body.collect().await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "upload source broke",
            "the reader gets the error itself"
        );

        assert!(!copy.is_replayable());
        let again = copy.try_clone_body();
        let e = copy
            .collect()
            .await
            .expect_err("the recorded prefix must not end cleanly");
        assert!(e.is::<SourceFailed>(), "{e}");
        assert!(again.is_none(), "no new copy of a failed body");
    }

    /// The retry's copy is replaying when the source fails under the older copy: it must
    /// not send the rest of the prefix and then a clean end.
    #[tokio::test]
    async fn a_source_failing_between_attempts_fails_the_retry() {
        let (feed, body) = channel(64);
        let retry = body.try_clone_body().unwrap();
        let mut first = task::spawn(body);
        send(&feed, "ab");
        assert_eq!(data(poll(&mut first)), "ab");
        feed.send(Err(io::Error::other("broke"))).unwrap();
        assert!(error(poll(&mut first)).to_string().contains("broke"));

        let mut retry = task::spawn(retry);
        assert!(!retry.is_replayable());
        assert!(error(poll(&mut retry)).is::<SourceFailed>());
        assert!(
            error(poll(&mut retry)).is::<SourceFailed>(),
            "and stays failed"
        );
        assert!(!retry.is_end_stream());
    }

    // ===== fix 3: the limit bounds the memory held =====

    /// A `Bytes` whose backing allocation says when it is freed.
    struct Tracked(Vec<u8>, Arc<AtomicBool>);

    impl AsRef<[u8]> for Tracked {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }

    impl Drop for Tracked {
        fn drop(&mut self) {
            self.1.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn slices_of_a_large_buffer_are_copied_not_kept_alive() {
        let freed = Arc::new(AtomicBool::new(false));
        let mut parent = vec![0u8; 10 * 1024 * 1024];
        for (i, b) in parent.iter_mut().enumerate().take(1000) {
            *b = (i % 251) as u8;
        }
        let parent = Bytes::from_owner(Tracked(parent, Arc::clone(&freed)));
        let frames: Vec<Result<Frame<Bytes>, io::Error>> = (0..10)
            .map(|i| Ok(Frame::data(parent.slice(i * 100..(i + 1) * 100))))
            .collect();
        let expected = Bytes::copy_from_slice(&parent[..1000]);
        drop(parent);

        let body = ReplayBody::new(StreamBody::new(futures_util::stream::iter(frames)), 4096);
        let copy = body.try_clone_body().unwrap();
        assert_eq!(body.collect().await.unwrap().to_bytes(), expected);
        assert!(
            freed.load(Ordering::SeqCst),
            "the recording of 1000 bytes keeps a 10 MiB buffer alive"
        );
        assert!(copy.recorded_capacity() <= 4096);
        assert_eq!(copy.collect().await.unwrap().to_bytes(), expected);
    }

    #[tokio::test]
    async fn tiny_chunks_are_coalesced_within_the_limit() {
        let limit = 10_000;
        let frames = (0..limit).map(|_| Ok::<_, io::Error>(Frame::data(Bytes::from_static(b"z"))));
        let body = ReplayBody::new(StreamBody::new(futures_util::stream::iter(frames)), limit);
        let copy = body.try_clone_body().unwrap();
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), limit);
        assert!(!copy.is_capped());
        assert!(
            copy.recorded_capacity() <= limit,
            "{} bytes held for a {limit}-byte recording",
            copy.recorded_capacity()
        );
        assert_eq!(copy.collect().await.unwrap().to_bytes(), vec![b'z'; limit]);
    }

    #[tokio::test]
    async fn a_body_never_copied_records_nothing() {
        let mut body = ReplayBody::new(stream(&["ab", "cd"]), 64);
        assert_eq!(
            body.frame().await.unwrap().unwrap().into_data().unwrap(),
            "ab"
        );
        assert_eq!(body.recorded_capacity(), 0);
        assert!(!body.is_capped());
        assert!(
            body.try_clone_body().is_none(),
            "\"ab\" went out unrecorded: a copy could not send it"
        );
    }

    #[tokio::test]
    async fn recording_stops_once_no_other_copy_is_left() {
        let mut body = ReplayBody::new(stream(&["ab", "cd", "ef"]), 64);
        let copy = body.try_clone_body().unwrap();
        assert_eq!(
            body.frame().await.unwrap().unwrap().into_data().unwrap(),
            "ab"
        );
        assert!(body.recorded_capacity() > 0);
        drop(copy); // the engine will not retry: it dropped its copy
        assert_eq!(
            body.frame().await.unwrap().unwrap().into_data().unwrap(),
            "cd"
        );
        assert_eq!(body.recorded_capacity(), 0, "the recording was freed");
        assert!(body.try_clone_body().is_none());
        assert_eq!(body.collect().await.unwrap().to_bytes(), "ef");
    }

    #[tokio::test]
    async fn a_copy_made_before_any_read_needs_no_recording() {
        let body = ReplayBody::new(stream(&["ab"]), 64);
        let copy = body.try_clone_body().unwrap();
        drop(body); // never polled (say, the connection was refused)
        assert!(copy.is_replayable());
        assert_eq!(copy.collect().await.unwrap().to_bytes(), "ab");
    }

    // ===== the type =====

    #[test]
    fn send_and_sync_for_a_send_only_source() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        /// A body that is `Send` but not `Sync`.
        struct SendOnly(std::marker::PhantomData<std::cell::Cell<u8>>);
        impl Body for SendOnly {
            type Data = Bytes;
            type Error = io::Error;
            fn poll_frame(
                self: Pin<&mut Self>,
                _: &mut Context<'_>,
            ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
                Poll::Ready(None)
            }
        }
        assert_send_sync::<ReplayBody<SendOnly>>();
    }

    #[test]
    fn debug_shows_no_data() {
        let body = ReplayBody::new(http_body_util::Full::new(Bytes::from("token=s3cr3t")), 64);
        let copy = body.try_clone_body().unwrap();
        let text = format!("{body:?} {copy:?}");
        assert!(!text.contains("s3cr3t"), "{text}");
    }
}
