//! Request and response bodies: what the engine copies for a retry ([`TryCloneBody`],
//! [`ReplayBody`] for streams) and what it hands back after reading the start of an error
//! body ([`ResponseBody`]).
//!
//! [`TryCloneBody`] is implemented for the bodies that can be copied (`Full`, `Empty`,
//! `String`, `Bytes`, `Vec<u8>`, static slices, `()`), for [`ReplayBody`] (a streaming body
//! teed into a bounded buffer), and as "cannot be copied" for `BoxBody`, `UnsyncBoxBody` and
//! hyper's `Incoming`. A request whose body cannot be copied is sent once and its outcome
//! returned unchanged.

pub(crate) mod peek;
pub(crate) mod replay;

use bytes::{Buf, Bytes};

pub use peek::{ResponseBody, ERROR_BODY_TIMEOUT};
pub use replay::{ReplayBody, ReplayError};

/// A request body that may be duplicated for a retry.
#[diagnostic::on_unimplemented(
    message = "the retry engine cannot copy a request body of type `{Self}`",
    label = "this body type does not implement `TryCloneBody`",
    note = "implement `telecho_retry::body::TryCloneBody` for it (returning `None` sends such requests once), wrap a stream in `telecho_retry::body::ReplayBody`, or box it (`BoxBody`)"
)]
pub trait TryCloneBody: Sized {
    /// A copy of the body, or `None` when it cannot be copied.
    fn try_clone_body(&self) -> Option<Self>;

    /// Whether a copy made by [`try_clone_body`](Self::try_clone_body) can still be sent,
    /// checked after the attempt's outcome. `true` unless the copy replays a body that
    /// overflowed its buffer, whose source failed, or that a newer copy took over.
    fn is_replayable(&self) -> bool {
        true
    }
}

// ===== impl TryCloneBody =====

macro_rules! clone_body {
    ($($t:ty),* $(,)?) => {
        $(impl TryCloneBody for $t {
            fn try_clone_body(&self) -> Option<Self> {
                Some(self.clone())
            }
        })*
    };
}

clone_body!(String, Bytes, Vec<u8>, &'static str, &'static [u8], ());

impl<D: Buf + Clone> TryCloneBody for http_body_util::Full<D> {
    fn try_clone_body(&self) -> Option<Self> {
        Some(self.clone())
    }
}

impl<D> TryCloneBody for http_body_util::Empty<D> {
    fn try_clone_body(&self) -> Option<Self> {
        Some(http_body_util::Empty::new())
    }
}

impl<L: TryCloneBody, R: TryCloneBody> TryCloneBody for http_body_util::Either<L, R> {
    fn try_clone_body(&self) -> Option<Self> {
        match self {
            http_body_util::Either::Left(l) => l.try_clone_body().map(http_body_util::Either::Left),
            http_body_util::Either::Right(r) => {
                r.try_clone_body().map(http_body_util::Either::Right)
            }
        }
    }

    fn is_replayable(&self) -> bool {
        match self {
            http_body_util::Either::Left(l) => l.is_replayable(),
            http_body_util::Either::Right(r) => r.is_replayable(),
        }
    }
}

impl<D, E> TryCloneBody for http_body_util::combinators::BoxBody<D, E> {
    fn try_clone_body(&self) -> Option<Self> {
        None
    }
}

impl<D, E> TryCloneBody for http_body_util::combinators::UnsyncBoxBody<D, E> {
    fn try_clone_body(&self) -> Option<Self> {
        None
    }
}

#[cfg(any(feature = "tower", feature = "reqwest"))]
impl TryCloneBody for hyper::body::Incoming {
    fn try_clone_body(&self) -> Option<Self> {
        None
    }
}
