//! Micro benchmarks of the decision path: `RetryPolicy::classify` and `parse_retry_after`.
//!
//! Run with `cargo bench -p telecho-retry-bench --bench classify`. Targets (issue 6):
//! `classify` under 50 ns, `parse_retry_after` under 200 ns, for every form.

use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::Criterion;
use http::header::RETRY_AFTER;
use http::{HeaderMap, HeaderValue, StatusCode};
use telecho_retry::classify::parse_retry_after;
use telecho_retry::RetryPolicy;

/// Headers of a typical response, with `Retry-After` when `retry_after` is given.
fn response_headers(retry_after: Option<&'static str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert("content-length", HeaderValue::from_static("96"));
    h.insert(
        "date",
        HeaderValue::from_static("Sun, 06 Nov 1994 08:49:30 GMT"),
    );
    h.insert(
        "x-request-id",
        HeaderValue::from_static("7f9c2ba4-e88f-11ee-a506-0242ac120002"),
    );
    if let Some(v) = retry_after {
        h.insert(RETRY_AFTER, HeaderValue::from_static(v));
    }
    h
}

fn classify(c: &mut Criterion) {
    let policy = RetryPolicy::default();
    let cases = [
        (
            "503 no Retry-After",
            StatusCode::SERVICE_UNAVAILABLE,
            response_headers(None),
        ),
        (
            "429 Retry-After: 7",
            StatusCode::TOO_MANY_REQUESTS,
            response_headers(Some("7")),
        ),
        // A date reads the wall clock (and lies in the past here: wait zero).
        (
            "429 Retry-After: IMF-fixdate",
            StatusCode::TOO_MANY_REQUESTS,
            response_headers(Some("Sun, 06 Nov 1994 08:49:37 GMT")),
        ),
        ("200", StatusCode::OK, response_headers(None)),
    ];
    let mut g = c.benchmark_group("classify");
    for (name, status, headers) in &cases {
        g.bench_function(*name, |b| {
            b.iter(|| policy.classify(black_box(*status), black_box(headers)))
        });
    }
    // For scale: `classify` reads the wall clock only for an HTTP-date `Retry-After`.
    g.bench_function("(reference) SystemTime::now", |b| b.iter(SystemTime::now));
    g.finish();
}

fn retry_after(c: &mut Criterion) {
    // Sun, 06 Nov 1994 08:49:30 GMT: 7 s before every date below.
    let now: SystemTime = UNIX_EPOCH + Duration::from_secs(784_111_770);
    let cases = [
        ("delta-seconds", "7"),
        ("IMF-fixdate", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ("RFC 850", "Sunday, 06-Nov-94 08:49:37 GMT"),
        ("asctime", "Sun Nov  6 08:49:37 1994"),
    ];
    let mut g = c.benchmark_group("parse_retry_after");
    for (name, value) in cases {
        let value = HeaderValue::from_static(value);
        assert_eq!(
            parse_retry_after(&value, now),
            Some(Duration::from_secs(7)),
            "{name}"
        );
        g.bench_function(name, |b| {
            b.iter(|| parse_retry_after(black_box(&value), black_box(now)))
        });
    }
    // For scale: the `httpdate` parse alone, which an IMF-fixdate `Retry-After` is handed to.
    let imf = "Sun, 06 Nov 1994 08:49:37 GMT";
    g.bench_function("(reference) httpdate::parse_http_date", |b| {
        b.iter(|| httpdate::parse_http_date(black_box(imf)))
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    classify(&mut c);
    retry_after(&mut c);
    c.final_summary();
}
