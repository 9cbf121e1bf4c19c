//! Fuzzes `RetryPolicy::classify` over any status and any `Retry-After` header values:
//! never panics, and the decision obeys the contract's table.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use http::header::RETRY_AFTER;
use http::{HeaderMap, HeaderValue, StatusCode};
use libfuzzer_sys::fuzz_target;
use telecho_retry::{Decision, RetryPolicy};

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let status = 100 + u16::from_le_bytes([data[0], data[1]]) % 900;
    let Ok(status) = StatusCode::from_u16(status) else {
        return;
    };
    let now = UNIX_EPOCH + Duration::from_secs(u64::from(data[2]) * 40_000_000);
    let mut headers = HeaderMap::new();
    for part in data[3..].split(|b| *b == b'\n') {
        if let Ok(v) = HeaderValue::from_bytes(part) {
            headers.append(RETRY_AFTER, v);
        }
    }
    let policy = RetryPolicy::builder().wall_clock(move || now).build();
    let retryable = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
    match policy.classify(status, &headers) {
        Decision::Accept => assert!(status.as_u16() < 400),
        Decision::RetryAfter(d) => assert!(retryable && d <= policy.max_retry_after()),
        Decision::Backoff => assert!(retryable),
        Decision::Fatal => assert!(status.as_u16() >= 400),
        other => panic!("unexpected decision {other:?}"),
    }
});
