//! The synchronization primitives of the parts that are model-checked: std's, or under
//! `cfg(loom)` loom's, whose every interleaving the models explore ("Model checking" in
//! `docs/robustness.md`). Re-exports only: a normal build uses std's types themselves.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Mutex, MutexGuard};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Mutex, MutexGuard};

/// What the models share: a future driven on a loom thread.
#[cfg(all(test, loom))]
pub(crate) mod model {
    use std::future::Future;
    use std::pin::{pin, Pin};
    // std's `Arc`, not loom's: tokio clones and drops wakers inside its own locks, which
    // must not be steps where loom switches threads.
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};

    struct Unpark(loom::thread::Thread);

    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }

    /// Polls `f` on this loom thread until it is ready, parked while it is pending: a
    /// wakeup that never comes is a deadlock loom reports.
    pub(crate) fn block_on<F: Future>(f: F) -> F::Output {
        let waker = Waker::from(Arc::new(Unpark(loom::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut f = pin!(f);
        loop {
            if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
                return out;
            }
            loom::thread::park();
        }
    }

    /// Polls `f` once, with a waker that does nothing.
    pub(crate) fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
        Pin::new(f).poll(&mut Context::from_waker(Waker::noop()))
    }
}
