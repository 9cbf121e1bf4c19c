//! The adapters: [`TelEchoRetry`](retry::TelEchoRetry) as a tower `Layer` and as a
//! `reqwest_middleware::Middleware`. Each turns its request and response types into the
//! engine's traits and its failures into its error type; the retry loop is the engine's.

#[cfg(feature = "reqwest")]
pub mod reqwest;
#[cfg(feature = "reqwest-tracing")]
pub(crate) mod reqwest_tracing;
#[cfg(any(feature = "tower", feature = "reqwest"))]
pub(crate) mod retry;
#[cfg(feature = "tower")]
pub(crate) mod tower;
