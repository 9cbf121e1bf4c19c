//! Fuzzes `parse_retry_after`: never panics; a result is consistent with the input form.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use telecho_retry::parse_retry_after;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let now = UNIX_EPOCH + Duration::from_secs(u64::from(first) * 40_000_000);
    let Ok(value) = HeaderValue::from_bytes(rest) else {
        return;
    };
    if let Some(d) = parse_retry_after(&value, now) {
        let trimmed = value.as_bytes().trim_ascii();
        if trimmed.iter().all(u8::is_ascii_digit) {
            // Delta-seconds: the exact number, or the saturated maximum.
            let text = std::str::from_utf8(trimmed).unwrap();
            match text.parse::<u64>() {
                Ok(secs) => assert_eq!(d, Duration::from_secs(secs)),
                Err(_) => assert_eq!(d, Duration::from_secs(u64::MAX)),
            }
        } else {
            // An HTTP-date: at most year 9999 away.
            assert!(d <= Duration::from_secs(253_402_300_800));
        }
    }
});
