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

type Polled = Poll<Option<Result<Frame<Bytes>, SourceError>>>;

/// Polls a copy once in its own mock task (which records whether it was woken).
fn poll<B>(copy: &mut task::Spawn<ReplayBody<B>>) -> Polled
where
    B: Body,
    B::Error: Into<SourceError>,
{
    copy.enter(|cx, body| body.poll_frame(cx))
}

fn data(polled: Polled) -> Bytes {
    match polled {
        Poll::Ready(Some(Ok(frame))) => frame.into_data().expect("a data frame"),
        other => panic!("expected data, got {other:?}"),
    }
}

fn error(polled: Polled) -> SourceError {
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

// ===== one reader at a time, no lost wakeups =====

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
    assert!(
        e.downcast_ref::<ReplayError>() == Some(&ReplayError::Superseded),
        "{e}"
    );
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
    assert!(
        e.downcast_ref::<ReplayError>() == Some(&ReplayError::Superseded),
        "{e}"
    );

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
        assert!(error(poll(older)).downcast_ref::<ReplayError>() == Some(&ReplayError::Superseded));
    }
    send(&feed, "c");
    drop(feed);
    assert_eq!(data(poll(&mut third)), "c");
    assert!(matches!(poll(&mut third), Poll::Ready(None)));
}

// ===== a failed source is never replayed as a complete body =====

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
    assert!(
        e.downcast_ref::<ReplayError>() == Some(&ReplayError::SourceFailed),
        "{e}"
    );
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
    assert!(
        error(poll(&mut retry)).downcast_ref::<ReplayError>() == Some(&ReplayError::SourceFailed)
    );
    assert!(
        error(poll(&mut retry)).downcast_ref::<ReplayError>() == Some(&ReplayError::SourceFailed),
        "and stays failed"
    );
    assert!(!retry.is_end_stream());
}

mod memory;

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
