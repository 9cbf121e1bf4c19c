//! The decision path in instructions, counted by valgrind's callgrind through `gungraun`
//! (deterministic, unlike the times of `benches/classify.rs` on a shared machine).
//!
//! ```sh
//! cargo install gungraun-runner --version 0.20.0   # once: the runner gungraun drives
//! cargo bench -p telecho-retry-bench --bench classify_instructions
//! ```
//!
//! Each benchmark makes `CALLS` calls; divide the reported `Instructions` by `CALLS`. The
//! `Retry-After` date lies in the past, so the wait is zero (as in `benches/classify.rs`).

use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gungraun::prelude::*;
use http::header::RETRY_AFTER;
use http::{HeaderMap, HeaderValue, StatusCode};
use telecho_retry::classify::parse_retry_after;
use telecho_retry::RetryPolicy;

/// Calls per benchmark.
const CALLS: usize = 1000;

const IMF: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

fn headers_with_date() -> (RetryPolicy, HeaderMap) {
    let mut h = HeaderMap::new();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert("content-length", HeaderValue::from_static("96"));
    h.insert(RETRY_AFTER, HeaderValue::from_static(IMF));
    (RetryPolicy::default(), h)
}

#[library_benchmark]
#[bench::calls(setup = headers_with_date)]
fn classify_429_date((policy, headers): (RetryPolicy, HeaderMap)) {
    for _ in 0..CALLS {
        black_box(policy.classify(
            black_box(StatusCode::TOO_MANY_REQUESTS),
            black_box(&headers),
        ));
    }
}

#[library_benchmark]
fn parse_imf_fixdate() {
    let value = HeaderValue::from_static(IMF);
    let now = UNIX_EPOCH + Duration::from_secs(784_111_770);
    for _ in 0..CALLS {
        black_box(parse_retry_after(black_box(&value), black_box(now)));
    }
}

#[library_benchmark]
fn httpdate_alone() {
    for _ in 0..CALLS {
        black_box(httpdate::parse_http_date(black_box(IMF)).ok());
    }
}

#[library_benchmark]
fn system_time_now() {
    for _ in 0..CALLS {
        black_box(SystemTime::now());
    }
}

library_benchmark_group!(
    name = decision_path,
    benchmarks = [
        classify_429_date,
        parse_imf_fixdate,
        httpdate_alone,
        system_time_now
    ]
);

main!(library_benchmark_groups = decision_path);
