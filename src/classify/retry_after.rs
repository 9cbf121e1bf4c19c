//! `Retry-After` parsing (RFC 9110 §10.2.3): delta-seconds and HTTP-date.
//!
//! ```
//! use std::time::{Duration, SystemTime, UNIX_EPOCH};
//! use http::HeaderValue;
//! use telecho_retry::classify::parse_retry_after;
//!
//! let now = UNIX_EPOCH + Duration::from_secs(784_111_770); // Sun, 06 Nov 1994 08:49:30 GMT
//! let secs = HeaderValue::from_static("7");
//! assert_eq!(parse_retry_after(&secs, now), Some(Duration::from_secs(7)));
//! let date = HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT");
//! assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(7)));
//! let junk = HeaderValue::from_static("soon");
//! assert_eq!(parse_retry_after(&junk, now), None);
//! ```

use std::time::{Duration, SystemTime};

use http::HeaderValue;

/// Parses a `Retry-After` value into the time to wait, measured from `now`.
///
/// Accepted, as RFC 9110 requires of a recipient:
/// - delta-seconds: one or more ASCII digits, e.g. `120`;
/// - HTTP-date in any of the three forms: IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`),
///   obsolete RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime
///   (`Sun Nov  6 08:49:37 1994`), parsed by the `httpdate` crate.
///
/// Leading and trailing spaces and tabs are ignored.
///
/// Outcomes for everything else, never a panic:
/// - a date at or before `now` gives `Some(Duration::ZERO)`;
/// - a digit string too large for a `u64` saturates to `Duration::from_secs(u64::MAX)`
///   (callers then compare it against their cap, see
///   [`RetryPolicyBuilder::max_retry_after`](crate::RetryPolicyBuilder::max_retry_after));
/// - empty, negative (`-1`), signed (`+1`), fractional (`1.5`), garbage, non-ASCII,
///   non-UTF-8 and impossible dates (`Feb 30`) give `None`: the header is treated as absent.
pub fn parse_retry_after(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    parse_retry_after_at(value, || now)
}

/// [`parse_retry_after`], reading the clock only for an HTTP-date.
pub(crate) fn parse_retry_after_at(
    value: &HeaderValue,
    now: impl FnOnce() -> SystemTime,
) -> Option<Duration> {
    let bytes = trim_ows(value.as_bytes());
    if bytes.is_empty() {
        return None;
    }
    if bytes.iter().all(u8::is_ascii_digit) {
        return Some(parse_delta_seconds(bytes));
    }
    // `HeaderValue` may hold obs-text (bytes >= 0x80): not UTF-8 gives `None` here, UTF-8
    // beyond ASCII an error from httpdate, which checks for ASCII itself.
    let text = std::str::from_utf8(bytes).ok()?;
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now()).unwrap_or(Duration::ZERO))
}

fn trim_ows(mut b: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = b {
        b = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = b {
        b = rest;
    }
    b
}

fn parse_delta_seconds(digits: &[u8]) -> Duration {
    let mut secs: u64 = 0;
    for d in digits {
        secs = match secs
            .checked_mul(10)
            .and_then(|s| s.checked_add(u64::from(d - b'0')))
        {
            Some(s) => s,
            None => return Duration::from_secs(u64::MAX),
        };
    }
    Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    // Sun, 06 Nov 1994 08:49:37 GMT, the RFC's example instant.
    const RFC_EXAMPLE: u64 = 784_111_777;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn parse(s: &str, now: SystemTime) -> Option<Duration> {
        parse_retry_after(&HeaderValue::from_str(s).unwrap(), now)
    }

    #[test]
    fn delta_seconds() {
        let now = at(0);
        assert_eq!(parse("0", now), Some(Duration::ZERO));
        assert_eq!(parse("1", now), Some(Duration::from_secs(1)));
        assert_eq!(parse("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse("007", now), Some(Duration::from_secs(7)));
        assert_eq!(parse(" 7\t", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse("18446744073709551615", now),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn too_large_saturates() {
        let now = at(0);
        assert_eq!(
            parse("18446744073709551616", now),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(
            parse("99999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        let long = "9".repeat(5000);
        assert_eq!(parse(&long, now), Some(Duration::from_secs(u64::MAX)));
    }

    #[test]
    fn all_three_date_forms() {
        let now = at(RFC_EXAMPLE - 7);
        for form in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(parse(form, now), Some(Duration::from_secs(7)), "{form}");
        }
    }

    #[test]
    fn date_in_the_past_or_now_is_zero() {
        assert_eq!(
            parse("Sun, 06 Nov 1994 08:49:37 GMT", at(RFC_EXAMPLE)),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse("Sun, 06 Nov 1994 08:49:37 GMT", at(RFC_EXAMPLE + 3600)),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn subsecond_now_is_respected() {
        let now = at(RFC_EXAMPLE - 2) + Duration::from_millis(250);
        assert_eq!(
            parse("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_millis(1750))
        );
    }

    #[test]
    fn year_9999_is_a_long_but_finite_wait() {
        let d = parse("Fri, 31 Dec 9999 23:59:59 GMT", at(0)).unwrap();
        assert_eq!(d, Duration::from_secs(253_402_300_799));
    }

    #[test]
    fn bad_values_are_none() {
        let now = at(RFC_EXAMPLE);
        for bad in [
            "",
            "   ",
            "-1",
            "+5",
            "1.5",
            "1e3",
            "0x10",
            "5 s",
            "soon",
            "Sun, 06 Nov 1994 08:49:37",
            "Sun, 30 Feb 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 25:49:37 GMT",
            "06 Nov 1994",
        ] {
            assert_eq!(parse(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn non_ascii_and_non_utf8_are_none() {
        let now = at(0);
        let latin1 = HeaderValue::from_bytes(b"\xe9\xe9").unwrap();
        assert_eq!(parse_retry_after(&latin1, now), None);
        let utf8 = HeaderValue::from_bytes("Sun, 06 Nov 1994 08:49:37 GMT é".as_bytes()).unwrap();
        assert_eq!(parse_retry_after(&utf8, now), None);
        let digits_then_high = HeaderValue::from_bytes(b"12\xff").unwrap();
        assert_eq!(parse_retry_after(&digits_then_high, now), None);
    }
}
