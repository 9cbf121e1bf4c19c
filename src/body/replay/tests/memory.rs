//! The limit bounds the memory a replay body holds.

use super::*;

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
