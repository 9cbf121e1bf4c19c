//! How much memory a `ReplayBody` recording really holds, measured with a counting global
//! allocator (`stats_alloc`): the replay limit bounds heap bytes, not just payload bytes.
//!
//! The tests share the process-wide allocator counters, so they take a lock and run one at
//! a time; the bodies are always ready, so they are polled to the end without a runtime.

use std::alloc::System;

use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, StreamBody};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use telecho_retry::body::ReplayBody;
use telecho_retry::body::TryCloneBody;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const LIMIT: usize = 64 * 1024;

/// Room for the shared state, the copies and the allocator noise of the test harness.
const SLACK: isize = 8 * 1024;

/// Heap bytes allocated and not yet freed since `region` started.
fn held(region: &Region<'_, System>) -> isize {
    // `stats_alloc` already counts a reallocation's growth in `bytes_allocated` (and its
    // shrinking in `bytes_deallocated`).
    let s = region.change();
    s.bytes_allocated as isize - s.bytes_deallocated as isize
}

/// `n` frames made on demand by `frame`, so the frames themselves are only allocated while
/// they are read.
fn frames(
    n: usize,
    frame: impl FnMut() -> Bytes,
) -> impl Body<Data = Bytes, Error = std::io::Error> {
    let mut frame = frame;
    StreamBody::new(futures_util::stream::repeat_with(move || Ok(Frame::data(frame()))).take(n))
}

/// Reads `body` to its end (the frames are always ready) and returns how many bytes came.
fn drain<B: Body<Data = Bytes> + Unpin>(body: B) -> usize
where
    B::Error: std::fmt::Debug,
{
    let all = body
        .collect()
        .now_or_never()
        .expect("an always-ready body")
        .unwrap();
    all.to_bytes().len()
}

/// Both scenarios in one test: the counting allocator is global, and the test harness's own
/// thread allocates when another test ends (its report), which a second test running beside
/// this one's region would count.
#[test]
fn replayed_bodies_hold_about_the_limit_and_unreplayed_ones_nothing() {
    one_byte_frames_are_recorded_in_about_limit_bytes();
    a_body_that_was_never_copied_records_nothing();
}

fn one_byte_frames_are_recorded_in_about_limit_bytes() {
    let region = Region::new(GLOBAL);
    // 64 Ki frames of one byte each: exactly the limit, so all of it is recorded.
    let body = ReplayBody::new(frames(LIMIT, || Bytes::from_static(b"x")), LIMIT);
    let copy = body.try_clone_body().unwrap();
    assert_eq!(drain(body), LIMIT);

    let recorded = held(&region);
    assert!(
        recorded <= LIMIT as isize + SLACK,
        "a recording of {LIMIT} one-byte frames holds {recorded} bytes"
    );
    assert!(copy.is_replayable());
    assert_eq!(drain(copy), LIMIT);
}

fn a_body_that_was_never_copied_records_nothing() {
    let region = Region::new(GLOBAL);
    // 60 frames of 1 KiB, each its own allocation: nothing may keep them once sent.
    let body = ReplayBody::new(frames(60, || Bytes::from(vec![b'y'; 1024])), LIMIT);
    let mut body = std::pin::pin!(body);
    let mut sent = 0;
    while let Some(frame) = body.frame().now_or_never().expect("an always-ready body") {
        sent += frame.unwrap().into_data().unwrap().len();
    }
    assert_eq!(sent, 60 * 1024);

    let recorded = held(&region);
    assert!(
        recorded <= SLACK,
        "a body with no copy still holds {recorded} bytes after sending 60 KiB"
    );
    assert!(
        body.try_clone_body().is_none(),
        "a copy of a body sent unrecorded cannot be replayed"
    );
}
