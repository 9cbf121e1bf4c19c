//! The engine: per-request state (`RetryState`), the future both adapters drive, and what
//! a request's outcome carries back ([`RetryInfo`], [`RetryError`]).
//!
//! Adapters (the tower layer, the reqwest middleware) are thin: they turn their request
//! and response types into the engine's traits (`RetryRequest`, `RetryResponse`) and its
//! failures into their error types. What the engine shows of itself (spans, events,
//! metrics) is in [`observe`](crate::observe).

mod attempt;
mod ending;
mod error;
pub(crate) mod future;
mod info;
pub mod observe;
mod overrides;
mod state;
#[cfg(all(test, feature = "tower"))]
mod tests;
mod traits;

pub(crate) use error::BoxError;
pub use error::{RetryError, RetryErrorKind};
pub use info::{AttemptNumber, RetryInfo, StopReason};
pub use overrides::RetryOverride;
pub(crate) use state::RetryState;
#[allow(unused_imports)] // which ones are used depends on the adapters built
pub(crate) use traits::{ResponseParts, RetryRequest, RetryResponse};
