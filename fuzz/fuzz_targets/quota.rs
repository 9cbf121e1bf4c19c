//! Fuzzes the rate-limit quota headers (`RateLimit`, `RateLimit-Policy`, the older
//! `RateLimit-*` and `X-RateLimit-*`): never panics, and a quota obeys its bounds.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use telecho_retry::limits::parse_quota_for_fuzzing;

const NAMES: [&str; 8] = [
    "ratelimit",
    "ratelimit-policy",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
];

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let now = UNIX_EPOCH + Duration::from_secs(u64::from(first) * 40_000_000);
    // Lines of "<name index byte><value>".
    let mut headers = HeaderMap::new();
    for line in rest.split(|b| *b == b'\n') {
        let Some((&name, value)) = line.split_first() else {
            continue;
        };
        if let Ok(v) = HeaderValue::from_bytes(value) {
            headers.append(NAMES[usize::from(name) % NAMES.len()], v);
        }
    }
    if let Some((limit, remaining, reset)) = parse_quota_for_fuzzing(&headers, now) {
        assert!(reset <= Duration::from_secs(86_400));
        assert!(limit.is_none_or(|l| l >= remaining));
    }
});
