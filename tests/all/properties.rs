//! Property tests of every parser: no input panics, every value the crate formats parses
//! back. (The schedule's are beside it, in the engine's unit tests.)

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::RETRY_AFTER;
use http::{HeaderMap, HeaderValue, StatusCode};
use proptest::prelude::*;
use telecho_retry::classify::{parse_retry_after, Decision};
use telecho_retry::{ApiError, ErrorCode, ErrorType, RetryPolicy};

/// A wall clock between 1970 and 2200, whole seconds or not.
fn any_now() -> impl Strategy<Value = SystemTime> {
    (0u64..7_258_118_400, 0u32..1_000_000_000).prop_map(|(s, n)| UNIX_EPOCH + Duration::new(s, n))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parse_retry_after_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), now in any_now()) {
        if let Ok(v) = HeaderValue::from_bytes(&bytes) {
            let _ = parse_retry_after(&v, now);
        }
    }

    #[test]
    fn parse_retry_after_never_panics_on_date_like_text(s in "[A-Za-z]{3}, [0-9]{1,2} [A-Za-z]{3} [0-9]{1,5} [0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2} [A-Z]{3}", now in any_now()) {
        let v = HeaderValue::from_str(&s).unwrap();
        let _ = parse_retry_after(&v, now);
    }

    #[test]
    fn delta_seconds_round_trip(secs in any::<u64>(), now in any_now()) {
        let v = HeaderValue::from(secs);
        prop_assert_eq!(parse_retry_after(&v, now), Some(Duration::from_secs(secs)));
    }

    #[test]
    fn http_dates_round_trip(ahead in 0u64..10_000_000, now_secs in 0u64..4_000_000_000) {
        // HTTP dates have whole seconds: measure from a whole-second `now`.
        let now = UNIX_EPOCH + Duration::from_secs(now_secs);
        let v = HeaderValue::from_str(&httpdate::fmt_http_date(now + Duration::from_secs(ahead))).unwrap();
        prop_assert_eq!(parse_retry_after(&v, now), Some(Duration::from_secs(ahead)));
    }

    #[test]
    fn from_json_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = ApiError::from_json(&bytes);
    }

    #[test]
    fn from_json_never_panics_on_envelope_like_json(t in ".*", c in ".*", m in ".*", extra in proptest::option::of(".*")) {
        let mut body = format!(r#"{{"error":{{"type":{},"code":{},"message":{}"#,
            serde_json_string(&t), serde_json_string(&c), serde_json_string(&m));
        if let Some(x) = extra { body.push_str(&format!(r#","x":{}"#, serde_json_string(&x))); }
        body.push_str("}}");
        let e = ApiError::from_json(body.as_bytes()).unwrap();
        prop_assert_eq!(e.code().as_str(), c.as_str());
        prop_assert_eq!(e.error_type().as_str(), t.as_str());
        prop_assert_eq!(e.message(), m.as_str());
    }

    #[test]
    fn valid_envelopes_round_trip(t in ".*", c in ".*", m in ".*") {
        let e = ApiError::new(ErrorType::parse(&t), ErrorCode::parse(&c), m.as_str());
        let again = ApiError::from_json(e.to_json().as_bytes()).unwrap();
        prop_assert_eq!(&again, &e);
        prop_assert_eq!(ErrorCode::parse(again.code().as_str()), again.code().clone());
    }

    #[test]
    fn classify_is_total(
        status in 100u16..=999,
        values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..4),
        now in any_now(),
    ) {
        let status = StatusCode::from_u16(status).unwrap();
        let mut headers = HeaderMap::new();
        for v in values {
            if let Ok(v) = HeaderValue::from_bytes(&v) {
                headers.append(RETRY_AFTER, v);
            }
        }
        let policy = RetryPolicy::builder().wall_clock(move || now).build();
        let d = policy.classify(status, &headers);
        match d {
            Decision::Accept => prop_assert!(status.as_u16() < 400),
            Decision::RetryAfter(w) => {
                prop_assert!(status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error());
                prop_assert!(w <= policy.max_retry_after());
            }
            Decision::Backoff => prop_assert!(status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()),
            Decision::Fatal => prop_assert!(status.as_u16() >= 400),
            _ => prop_assert!(false, "unknown decision {:?}", d),
        }
    }
}

fn serde_json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
