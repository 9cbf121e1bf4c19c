//! Models of the [`ReplayBody`]'s copies under loom: the hand-off of the source between
//! an abandoned attempt's copy and the retry's, and the wakeup of the one left waiting.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http_body::{Body, Frame};
use loom::thread;

use super::{ReplayBody, ReplayError, SourceError, TryCloneBody};
use crate::sync::model::block_on;
use crate::sync::{Arc, Mutex};

/// A source of one chunk that stays pending until the gate is opened.
#[derive(Clone, Default)]
struct Gate(Arc<Mutex<GateState>>);

#[derive(Default)]
struct GateState {
    open: bool,
    sent: bool,
    waker: Option<Waker>,
}

impl Gate {
    fn open(&self) {
        let waker = {
            let mut g = self.0.lock().unwrap();
            g.open = true;
            g.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl Body for Gate {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let mut g = self.0.lock().unwrap();
        if !g.open {
            g.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        if g.sent {
            return Poll::Ready(None);
        }
        g.sent = true;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"body")))))
    }
}

/// Reads a copy to its end: the bytes it sent, or the error it ended with.
fn send(mut copy: ReplayBody<Gate>) -> Result<Vec<u8>, ReplayError> {
    block_on(async move {
        let mut sent = Vec::new();
        while let Some(frame) = poll_fn(|cx| Pin::new(&mut copy).poll_frame(cx)).await {
            let frame = frame.map_err(|e: SourceError| *e.downcast::<ReplayError>().unwrap())?;
            sent.extend_from_slice(&frame.into_data().unwrap());
        }
        Ok(sent)
    })
}

/// When a retry's copy takes the source over from the abandoned attempt's, both end and
/// neither is left waiting: the retry sends the whole body, the abandoned copy the whole
/// body or `Superseded`.
#[test]
fn the_retry_takes_the_source_over_and_wakes_the_abandoned_copy() {
    loom::model(|| {
        let gate = Gate::default();
        let first = ReplayBody::new(gate.clone(), 64);
        let retry = first.try_clone_body().unwrap();
        let abandoned = thread::spawn(move || send(first));
        let live = thread::spawn(move || send(retry));
        gate.open();
        assert_eq!(live.join().unwrap(), Ok(b"body".to_vec()));
        let abandoned = abandoned.join().unwrap();
        assert!(
            matches!(&abandoned, Ok(b) if b == b"body")
                || abandoned == Err(ReplayError::Superseded),
            "{abandoned:?}"
        );
    });
}
