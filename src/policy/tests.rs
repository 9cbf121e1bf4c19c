use super::*;
use http::header::RETRY_AFTER;
use http::HeaderValue;
use std::time::UNIX_EPOCH;

fn with_ra(v: &'static str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(RETRY_AFTER, HeaderValue::from_static(v));
    h
}

/// Every status the `http` crate can represent, 100..=999.
fn all_statuses() -> impl Iterator<Item = StatusCode> {
    (100u16..=999).map(|s| StatusCode::from_u16(s).unwrap())
}

#[test]
fn status_matrix_without_retry_after() {
    let p = RetryPolicy::default();
    let h = HeaderMap::new();
    for status in all_statuses() {
        let s = status.as_u16();
        let want = match s {
            100..=399 => Decision::Accept,
            429 => Decision::Backoff,
            500..=599 => Decision::Backoff,
            _ => Decision::Fatal,
        };
        assert_eq!(p.classify(status, &h), want, "{s}");
    }
}

#[test]
fn status_matrix_with_retry_after() {
    let p = RetryPolicy::default();
    let h = with_ra("7");
    for status in all_statuses() {
        let s = status.as_u16();
        let want = match s {
            100..=399 => Decision::Accept,
            429 | 500..=599 => Decision::RetryAfter(Duration::from_secs(7)),
            _ => Decision::Fatal,
        };
        assert_eq!(p.classify(status, &h), want, "{s}");
    }
}

#[test]
fn retry_after_above_cap_is_fatal_and_at_cap_is_not() {
    let p = RetryPolicy::default();
    assert_eq!(
        p.classify(StatusCode::TOO_MANY_REQUESTS, &with_ra("60")),
        Decision::RetryAfter(Duration::from_secs(60))
    );
    assert_eq!(
        p.classify(StatusCode::TOO_MANY_REQUESTS, &with_ra("61")),
        Decision::Fatal
    );
    assert_eq!(
        p.classify(
            StatusCode::TOO_MANY_REQUESTS,
            &with_ra("99999999999999999999")
        ),
        Decision::Fatal
    );
    assert_eq!(
        p.classify(StatusCode::SERVICE_UNAVAILABLE, &with_ra("3600")),
        Decision::Fatal
    );
}

#[test]
fn unusable_retry_after_falls_back_to_backoff() {
    let p = RetryPolicy::default();
    for bad in ["soon", "-3", "1.5", ""] {
        assert_eq!(
            p.classify(StatusCode::TOO_MANY_REQUESTS, &with_ra(bad)),
            Decision::Backoff,
            "{bad:?}"
        );
    }
}

#[test]
fn first_parsable_retry_after_wins() {
    let p = RetryPolicy::default();
    let mut h = HeaderMap::new();
    h.append(RETRY_AFTER, HeaderValue::from_static("garbage"));
    h.append(RETRY_AFTER, HeaderValue::from_static("3"));
    h.append(RETRY_AFTER, HeaderValue::from_static("9"));
    assert_eq!(
        p.classify(StatusCode::TOO_MANY_REQUESTS, &h),
        Decision::RetryAfter(Duration::from_secs(3))
    );
}

#[test]
fn http_date_uses_injected_clock() {
    let now = UNIX_EPOCH + Duration::from_secs(784_111_777 - 12);
    let p = RetryPolicy::builder().wall_clock(move || now).build();
    assert_eq!(
        p.classify(
            StatusCode::TOO_MANY_REQUESTS,
            &with_ra("Sun, 06 Nov 1994 08:49:37 GMT")
        ),
        Decision::RetryAfter(Duration::from_secs(12))
    );
}

#[test]
fn code_rules_override_status() {
    let p = RetryPolicy::builder()
        .on_code(ErrorCode::OutboundCallFailed, CodeRule::Fatal)
        .on_code(ErrorCode::AgentInactive, CodeRule::Retry)
        .build();
    let h = HeaderMap::new();
    assert!(p.has_code_rules());
    assert!(!RetryPolicy::default().has_code_rules());
    assert_eq!(
        p.classify_with_code(
            StatusCode::BAD_GATEWAY,
            &h,
            Some(&ErrorCode::OutboundCallFailed)
        ),
        Decision::Fatal
    );
    assert_eq!(
        p.classify_with_code(StatusCode::CONFLICT, &h, Some(&ErrorCode::AgentInactive)),
        Decision::Backoff
    );
    assert_eq!(
        p.classify_with_code(
            StatusCode::CONFLICT,
            &with_ra("2"),
            Some(&ErrorCode::AgentInactive)
        ),
        Decision::RetryAfter(Duration::from_secs(2))
    );
    // Success responses are never retried, whatever the body says.
    assert_eq!(
        p.classify_with_code(StatusCode::OK, &h, Some(&ErrorCode::AgentInactive)),
        Decision::Accept
    );
    // A code without a rule keeps the status decision.
    assert_eq!(
        p.classify_with_code(StatusCode::BAD_GATEWAY, &h, Some(&ErrorCode::InvalidId)),
        Decision::Backoff
    );
}

#[test]
fn later_code_rule_replaces_earlier() {
    let p = RetryPolicy::builder()
        .on_code(ErrorCode::CallBlocked, CodeRule::Retry)
        .on_code(ErrorCode::CallBlocked, CodeRule::Fatal)
        .build();
    assert_eq!(
        p.classify_with_code(
            StatusCode::SERVICE_UNAVAILABLE,
            &HeaderMap::new(),
            Some(&ErrorCode::CallBlocked)
        ),
        Decision::Fatal
    );
}

#[test]
fn transport_rules() {
    let p = RetryPolicy::default();
    let none = HeaderMap::new();
    let mut keyed = HeaderMap::new();
    keyed.insert("idempotency-key", HeaderValue::from_static("k1"));
    use TransportErrorKind::*;
    for kind in [Connect, Refused, Timeout, Reset, IncompleteMessage, Other] {
        let get = p.classify_transport(kind, &Method::GET, &none);
        let post = p.classify_transport(kind, &Method::POST, &none);
        let post_keyed = p.classify_transport(kind, &Method::POST, &keyed);
        let (want_get, want_post, want_keyed) = match kind {
            Connect | Refused => (Decision::Backoff, Decision::Backoff, Decision::Backoff),
            Other => (Decision::Fatal, Decision::Fatal, Decision::Fatal),
            _ => (Decision::Backoff, Decision::Fatal, Decision::Backoff),
        };
        assert_eq!(
            (get, post, post_keyed),
            (want_get, want_post, want_keyed),
            "{kind:?}"
        );
    }
    let no_key = RetryPolicy::builder().without_idempotency_header().build();
    assert_eq!(
        no_key.classify_transport(Timeout, &Method::POST, &keyed),
        Decision::Fatal
    );
}

#[test]
fn builder_normalizes_instead_of_panicking() {
    let p = RetryPolicy::builder()
        .base_delay(Duration::from_secs(10))
        .max_delay(Duration::from_secs(2))
        .build();
    assert_eq!(p.base_delay(), Duration::from_secs(10));
    assert_eq!(p.max_delay(), Duration::from_secs(10));
    let z = RetryPolicy::builder()
        .base_delay(Duration::ZERO)
        .max_delay(Duration::ZERO)
        .build();
    assert_eq!(z.base_delay(), Duration::from_millis(1));
    assert_eq!(z.max_delay(), Duration::from_millis(1));
}

#[test]
fn defaults_are_the_contract() {
    let p = RetryPolicy::default();
    assert_eq!(p.max_retries(), 5);
    assert_eq!(p.base_delay(), Duration::from_secs(1));
    assert_eq!(p.max_delay(), Duration::from_secs(30));
    assert_eq!(p.jitter(), Jitter::Proportional);
    assert_eq!(p.max_retry_after(), Duration::from_secs(60));
    assert_eq!(p.retry_after_spread(), Duration::from_millis(500));
}
