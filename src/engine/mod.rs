//! The engine: per-request state ([`RetryState`]), the future both adapters drive, the
//! limits shared between requests, and what a request's outcome carries back
//! ([`RetryInfo`], [`RetryError`]).
//!
//! Adapters (the tower layer, the reqwest middleware) are thin: they turn their request
//! and response types into the engine's traits ([`RetryRequest`], [`RetryResponse`]) and
//! its failures into their error types. A new adapter implements those traits and drives
//! the engine's future (crate-private) or, for a loop of its own, a [`RetryState`].
//!
//! What the engine shows of itself (spans, events, metrics) is in [`observe`].

mod error;
pub(crate) mod future;
mod info;
mod instant;
pub(crate) mod limits;
pub mod observe;
mod overrides;
pub(crate) mod pacer;
mod state;
mod traits;

pub use error::{BoxError, RetryError, RetryErrorKind};
pub use info::{AttemptNumber, RetryInfo, StopReason};
pub use overrides::RetryOverride;
pub use state::{Action, Admission, RetryState, MAX_COOLDOWN};
pub use traits::{ResponseParts, RetryRequest, RetryResponse};
