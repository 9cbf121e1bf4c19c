use super::*;
use crate::envelope::{ApiError, ErrorCode};

fn code<B: Body>(peeked: &Peeked<B>) -> Option<ErrorCode> {
    ApiError::from_json(&peeked.bytes()?)
        .ok()
        .map(|e| e.code().clone())
}
use futures_util::stream::{self, StreamExt};
use http::HeaderMap;
use http_body_util::{BodyExt, Full, StreamBody};
use std::io;
use tokio::sync::mpsc;
use tokio::time::Instant;

const ENVELOPE: &[u8] =
    br#"{"error":{"type":"authentication_error","code":"invalid_api_key","message":"The API key provided is invalid."}}"#;
const TIMEOUT: Duration = Duration::from_secs(10);

type Item = Result<Frame<Bytes>, io::Error>;

fn data(b: &[u8]) -> Item {
    Ok(Frame::data(Bytes::copy_from_slice(b)))
}

fn body_of(items: Vec<Item>) -> StreamBody<stream::Iter<std::vec::IntoIter<Item>>> {
    StreamBody::new(stream::iter(items))
}

type ChannelBody = StreamBody<Pin<Box<dyn futures_util::Stream<Item = Item> + Send>>>;

/// A body fed by the test: the sender's frames, ended when the sender is dropped.
fn channel() -> (mpsc::UnboundedSender<Item>, ChannelBody) {
    let (tx, rx) = mpsc::unbounded_channel::<Item>();
    let s = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|i| (i, rx)) });
    (tx, StreamBody::new(Box::pin(s)))
}

async fn read_all<B>(body: B) -> (Bytes, Option<HeaderMap>)
where
    B: Body<Data = Bytes>,
    B::Error: fmt::Debug,
{
    let collected = body.collect().await.expect("no body error");
    let trailers = collected.trailers().cloned();
    (collected.to_bytes(), trailers)
}

#[tokio::test(start_paused = true)]
async fn body_within_limit_gives_its_code_and_is_replayed_whole() {
    let started = Instant::now();
    let peeked = peek(Full::new(Bytes::from_static(ENVELOPE)), 64 * 1024, TIMEOUT).await;
    assert_eq!(started.elapsed(), Duration::ZERO, "no waiting");
    assert!(peeked.is_complete());
    assert!(!peeked.timed_out);
    assert_eq!(peeked.bytes().as_deref(), Some(ENVELOPE));
    assert_eq!(code(&peeked), Some(ErrorCode::InvalidApiKey));

    let body = peeked.into_body();
    assert!(!body.is_end_stream());
    assert_eq!(body.size_hint().exact(), Some(ENVELOPE.len() as u64));
    let (all, trailers) = read_all(body).await;
    assert_eq!(all, ENVELOPE);
    assert!(trailers.is_none());
}

#[tokio::test(start_paused = true)]
async fn body_of_exactly_the_limit_is_complete() {
    let peeked = peek(
        Full::new(Bytes::from_static(ENVELOPE)),
        ENVELOPE.len(),
        TIMEOUT,
    )
    .await;
    assert_eq!(code(&peeked), Some(ErrorCode::InvalidApiKey));
    let peeked = peek(
        Full::new(Bytes::from_static(ENVELOPE)),
        ENVELOPE.len() - 1,
        TIMEOUT,
    )
    .await;
    assert!(!peeked.is_complete());
    assert_eq!(code(&peeked), None);
}

#[tokio::test(start_paused = true)]
async fn body_over_the_limit_gives_no_code_and_is_replayed_whole() {
    // An envelope followed by more: only the first 64 bytes would fit.
    let mut items: Vec<Item> = ENVELOPE.chunks(40).map(data).collect();
    items.push(data(&[b' '; 2000]));
    items.push(data(b"tail"));
    let mut want = ENVELOPE.to_vec();
    want.extend_from_slice(&[b' '; 2000]);
    want.extend_from_slice(b"tail");

    let peeked = peek(body_of(items), 64, TIMEOUT).await;
    assert!(!peeked.is_complete());
    assert!(!peeked.timed_out);
    assert_eq!(peeked.bytes(), None);
    assert_eq!(code(&peeked), None);
    assert!(peeked.len > 64 && peeked.len < want.len(), "stopped early");
    let (all, _) = read_all(peeked.into_body()).await;
    assert_eq!(all, want);
}

#[tokio::test(start_paused = true)]
async fn body_that_never_ends_is_cut_by_the_timeout_and_the_rest_still_reads() {
    let (tx, body) = channel();
    tx.send(data(&ENVELOPE[..20])).unwrap();
    tx.send(data(&ENVELOPE[20..50])).unwrap();

    let started = Instant::now();
    let peeked = peek(body, 64 * 1024, TIMEOUT).await;
    assert_eq!(started.elapsed(), TIMEOUT, "returned at the time bound");
    assert!(peeked.timed_out);
    assert!(!peeked.is_complete());
    assert_eq!(code(&peeked), None);
    assert_eq!(peeked.len, 50, "kept what arrived");

    let body = peeked.into_body();
    assert!(!body.is_end_stream());
    // The rest arrives later and is read after the prefix.
    tx.send(data(&ENVELOPE[50..])).unwrap();
    drop(tx);
    let (all, _) = read_all(body).await;
    assert_eq!(all, ENVELOPE);
}

#[tokio::test(start_paused = true)]
async fn body_pending_forever_after_a_prefix() {
    let items = vec![data(b"{\"error\":")];
    let body = StreamBody::new(stream::iter(items).chain(stream::pending()));
    let started = Instant::now();
    let c = collect(body, 64 * 1024, Duration::from_millis(300)).await;
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    assert_eq!(
        c,
        Collected {
            bytes: Bytes::from_static(b"{\"error\":"),
            truncated: true,
            timed_out: true,
        }
    );
}

#[tokio::test(start_paused = true)]
async fn body_error_mid_read_is_replayed_after_the_prefix() {
    let items = vec![
        data(b"{\"err"),
        data(b"or\":"),
        Err(io::Error::new(io::ErrorKind::ConnectionReset, "gone")),
        data(b"never read"),
    ];
    let peeked = peek(body_of(items), 64 * 1024, TIMEOUT).await;
    assert!(!peeked.is_complete());
    assert!(!peeked.timed_out);
    assert_eq!(code(&peeked), None);

    let mut body = peeked.into_body();
    assert!(!body.is_end_stream());
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(
        first.into_data().unwrap(),
        "{\"error\":",
        "merged small frames"
    );
    let err = body.frame().await.unwrap().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    assert!(
        body.frame().await.is_none(),
        "the failed body is not polled again"
    );
    assert!(body.is_end_stream());
}

#[tokio::test(start_paused = true)]
async fn many_tiny_frames_are_merged_and_replayed() {
    let items: Vec<Item> = ENVELOPE.chunks(1).map(data).collect();
    let peeked = peek(body_of(items), 64 * 1024, TIMEOUT).await;
    assert_eq!(code(&peeked), Some(ErrorCode::InvalidApiKey));
    assert_eq!(
        peeked.frames.len(),
        1,
        "one buffer for {} frames",
        ENVELOPE.len()
    );
    let (all, _) = read_all(peeked.into_body()).await;
    assert_eq!(all, ENVELOPE);

    // 200 000 one-byte frames past a 64 KiB limit: read up to the limit, replayed whole.
    let n = 200_000;
    let items: Vec<Item> = (0..n).map(|i| data(&[b'a' + (i % 26) as u8])).collect();
    let want: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
    let peeked = peek(body_of(items), 64 * 1024, TIMEOUT).await;
    assert!(!peeked.is_complete());
    assert!(peeked.frames_read <= 64 * 1024 + 1);
    let (all, _) = read_all(peeked.into_body()).await;
    assert_eq!(all, want);
}

#[tokio::test(start_paused = true)]
async fn endless_empty_frames_do_not_spin() {
    let body = StreamBody::new(stream::repeat_with(|| data(b"")));
    let peeked = peek(body, 1024, TIMEOUT).await;
    assert!(!peeked.is_complete());
    assert_eq!(peeked.frames_read, 1025);
    assert!(peeked.frames.is_empty());
}

#[tokio::test(start_paused = true)]
async fn trailers_are_kept_in_place() {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", "0".parse().unwrap());
    let items = vec![
        data(&ENVELOPE[..10]),
        data(&ENVELOPE[10..]),
        Ok(Frame::trailers(trailers.clone())),
    ];
    let peeked = peek(body_of(items), 64 * 1024, TIMEOUT).await;
    assert_eq!(code(&peeked), Some(ErrorCode::InvalidApiKey));
    let (all, got) = read_all(peeked.into_body()).await;
    assert_eq!(all, ENVELOPE);
    assert_eq!(got, Some(trailers.clone()));

    // Trailers that arrive after the peek gave up are read from the rest.
    let (tx, body) = channel();
    tx.send(data(ENVELOPE)).unwrap();
    let peeked = peek(body, 64 * 1024, TIMEOUT).await;
    assert!(peeked.timed_out);
    tx.send(Ok(Frame::trailers(trailers.clone()))).unwrap();
    drop(tx);
    let (all, got) = read_all(peeked.into_body()).await;
    assert_eq!(all, ENVELOPE);
    assert_eq!(got, Some(trailers));
}

#[tokio::test(start_paused = true)]
async fn size_hint_and_end_of_stream_count_prefix_and_rest() {
    // A 100-byte body of which 30 are read before the peek times out.
    let (tx, body) = channel();
    tx.send(data(&[b'x'; 30])).unwrap();
    let peeked = peek(body, 64 * 1024, TIMEOUT).await;
    let mut body = peeked.into_body();
    let hint = body.size_hint();
    assert_eq!((hint.lower(), hint.upper()), (30, None));
    drop(tx);
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.data_ref().map(Bytes::len), Some(30));
    assert_eq!(body.size_hint().lower(), 0);
    assert!(body.frame().await.is_none());

    // A `Full` read whole by the peek: exact hint, ends after its one frame.
    let peeked = peek(Full::new(Bytes::from_static(b"12345")), 4, TIMEOUT).await;
    assert!(!peeked.is_complete(), "5 bytes are over a 4-byte limit");
    let mut body = peeked.into_body();
    assert_eq!(body.size_hint().exact(), Some(5));
    assert!(!body.is_end_stream());
    body.frame().await.unwrap().unwrap();
    assert!(body.is_end_stream());
    assert_eq!(body.size_hint().exact(), Some(0));

    // Nothing read: the rest's own hint.
    let body = ResponseBody::new(Full::new(Bytes::from_static(b"12345")));
    assert_eq!(body.size_hint().exact(), Some(5));
}

#[tokio::test(start_paused = true)]
async fn collect_keeps_at_most_the_limit() {
    let c = collect(Full::new(Bytes::from_static(ENVELOPE)), 64 * 1024, TIMEOUT).await;
    assert_eq!(
        (c.bytes.as_ref(), c.truncated, c.timed_out),
        (ENVELOPE, false, false)
    );
    let items: Vec<Item> = ENVELOPE.chunks(7).map(data).collect();
    let c = collect(body_of(items), 20, TIMEOUT).await;
    assert_eq!(
        (c.bytes.as_ref(), c.truncated, c.timed_out),
        (&ENVELOPE[..20], true, false)
    );
    let items = vec![data(b"abc"), Err(io::Error::other("boom"))];
    let c = collect(body_of(items), 20, TIMEOUT).await;
    assert_eq!((c.bytes.as_ref(), c.truncated), (&b"abc"[..], true));
}

#[test]
fn debug_shows_no_data_and_auto_traits_follow_the_body() {
    fn send_sync_unpin<T: Send + Sync + Unpin>(_: &T) {}
    let body = ResponseBody::new(Full::new(Bytes::from_static(b"secret-token")));
    send_sync_unpin(&body);
    let shown = format!("{body:?}");
    assert!(!shown.contains("secret"), "{shown}");
    assert!(shown.contains("prefix_bytes"), "{shown}");
}
