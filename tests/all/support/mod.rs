//! Test servers shared by the integration tests that need real sockets: [`Server`], a
//! hyper 1 server on `127.0.0.1:0` that records every request and answers from a handler,
//! and [`RawServer`], a bare `TcpListener` that misbehaves on purpose.
//!
//! Each server is in a submodule of its own and re-exported here, so that tests name it
//! `crate::support::…`: `server` ([`Server`], [`Reply`], [`Seen`]), `raw` ([`RawServer`],
//! [`Misbehave`]), `upload` ([`EarlyRejectServer`], an upload server that answers before
//! reading the body) and `proxy` ([`Proxy`], a TCP proxy in front of a Redis that the test
//! controls). The `TelEchoRetry` helpers ([`unbudgeted`], [`budgeted`], [`paced`]) and
//! [`closed_addr`] are in this file.
#![allow(dead_code)] // each test crate uses its own subset

use std::net::SocketAddr;

mod proxy;
mod raw;
mod server;
mod upload;

// Each test module uses its own subset.
#[allow(unused_imports)]
pub(crate) use proxy::Proxy;
#[allow(unused_imports)]
pub(crate) use raw::{misbehave, read_request, Misbehave, RawServer};
#[allow(unused_imports)]
pub(crate) use server::{Handler, Reply, Seen, Server};
#[allow(unused_imports)]
pub(crate) use upload::{EarlyRejectServer, Upload, UploadLog};

// ===== limits =====

/// `TelEchoRetry` over `policy` with no retry budget (the shared cooldown on, no pacing).
#[cfg(any(feature = "tower", feature = "reqwest"))]
pub(crate) fn unbudgeted(policy: telecho_retry::RetryPolicy) -> telecho_retry::TelEchoRetry {
    use telecho_retry::limits::Limits;
    telecho_retry::TelEchoRetry::new(policy).with_limits(
        Limits::builder()
            .without_retry_budget()
            .without_pacing()
            .build(),
    )
}

/// `TelEchoRetry` over `policy` with `budget` (the shared cooldown on, no pacing).
#[cfg(any(feature = "tower", feature = "reqwest"))]
pub(crate) fn budgeted(
    policy: telecho_retry::RetryPolicy,
    budget: telecho_retry::limits::RetryBudget,
) -> telecho_retry::TelEchoRetry {
    use telecho_retry::limits::Limits;
    telecho_retry::TelEchoRetry::new(policy).with_limits(
        Limits::builder()
            .retry_budget(budget)
            .without_pacing()
            .build(),
    )
}

/// `TelEchoRetry` over `policy` paced at `pacing`, with no retry budget.
#[cfg(any(feature = "tower", feature = "reqwest"))]
pub(crate) fn paced(
    policy: telecho_retry::RetryPolicy,
    pacing: telecho_retry::limits::Pacing,
) -> telecho_retry::TelEchoRetry {
    use telecho_retry::limits::Limits;
    telecho_retry::TelEchoRetry::new(policy).with_limits(
        Limits::builder()
            .without_retry_budget()
            .pacing(pacing)
            .build(),
    )
}

/// A loopback address nobody listens on (bound, then released).
pub(crate) fn closed_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}
