//! [`Quota`]: what a server says is left before it throttles, read from its rate-limit
//! headers on any response (before a 429 comes).
//!
//! Accepted, first complete source wins:
//!
//! 1. `RateLimit` (draft-ietf-httpapi-ratelimit-headers-08 and later): a Structured Field
//!    List of `"policy";r=<remaining>;t=<seconds>` Items (a Token also names a policy).
//!    Items without `r` or `t` are skipped; of several, the most restrictive (the lowest
//!    `r / t`) counts. `RateLimit-Policy`'s `q` for the same policy name is the limit.
//! 2. `RateLimit-Remaining` and `RateLimit-Reset` (delta-seconds), with `RateLimit-Limit`
//!    (its first member), from the drafts up to -06.
//! 3. `X-RateLimit-Remaining` and `X-RateLimit-Reset`, with `X-RateLimit-Limit`: plain
//!    integers. The reset is delta-seconds, or a Unix time in seconds above 10^9 or in
//!    milliseconds above 10^12, measured from the wall clock; a fraction (`12.5`) counts to
//!    the millisecond.
//!
//! Anything else is no quota, never a panic: a malformed Structured Field (RFC 9651: the
//! whole field is ignored; Inner Lists and Display Strings count as malformed), negative,
//! fractional (but for the `X-` reset), non-numeric, overflowing or non-UTF-8 values, and
//! repeated plain headers that disagree. The reset is at most [`MAX_RESET`]; a reset time
//! already past is zero.

mod sf;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{HeaderMap, HeaderName};

use sf::Bare;

/// The longest reset a quota keeps, whatever the headers say: a day.
pub(crate) const MAX_RESET: Duration = super::MAX_COOLDOWN;

/// Above this, an `X-RateLimit-Reset` is a Unix time in seconds, not delta-seconds.
const UNIX_SECONDS_FROM: u64 = 1_000_000_000;
/// Above this, an `X-RateLimit-Reset` is a Unix time in milliseconds.
const UNIX_MILLIS_FROM: u64 = 1_000_000_000_000;

/// What a server says is left: `remaining` requests until `reset` from now, of `limit`
/// per window if it said so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Quota {
    /// The requests allowed per window, if given.
    pub(crate) limit: Option<u64>,
    /// The requests left until the reset.
    pub(crate) remaining: u64,
    /// How long until the quota resets (at most [`MAX_RESET`]).
    pub(crate) reset: Duration,
}

impl Quota {
    /// Reads the quota from a response's headers (see the module docs), reading the wall
    /// clock only for an `X-RateLimit-Reset` given as a Unix time.
    pub(crate) fn from_headers(
        headers: &HeaderMap,
        wall_clock: impl FnOnce() -> SystemTime,
    ) -> Option<Quota> {
        // Most responses state no quota: one pass over the names (a response has a few)
        // costs less than the lookups below, each of which hashes its name.
        let states_a_quota = headers.keys().any(|name| {
            let name = name.as_str();
            name.starts_with("ratelimit") || name.starts_with("x-ratelimit")
        });
        if !states_a_quota {
            return None;
        }
        ietf_current(headers)
            .or_else(|| ietf_legacy(headers))
            .or_else(|| x_ratelimit(headers, wall_clock))
    }
}

/// [`Quota::from_headers`] for the fuzz target: `(limit, remaining, reset)`.
#[doc(hidden)]
pub fn parse_quota_for_fuzzing(
    headers: &HeaderMap,
    now: SystemTime,
) -> Option<(Option<u64>, u64, Duration)> {
    Quota::from_headers(headers, || now).map(|q| (q.limit, q.remaining, q.reset))
}

// ===== sources =====

fn ietf_current(headers: &HeaderMap) -> Option<Quota> {
    let field = joined(headers, "ratelimit")?;
    let (name, remaining, reset) = sf::parse_list(&field)?
        .iter()
        .filter_map(|item| {
            let r = non_negative(item.param("r")?)?;
            let t = non_negative(item.param("t")?)?;
            Some((item.name(), r, t))
        })
        // The lowest r / t: r1 * t2 < r2 * t1 (15-digit values: no overflow in u128).
        .min_by(|a, b| {
            (u128::from(a.1) * u128::from(b.2)).cmp(&(u128::from(b.1) * u128::from(a.2)))
        })?;
    let limit = name.and_then(|name| {
        let field = joined(headers, "ratelimit-policy")?;
        let policies = sf::parse_list(&field)?;
        let policy = policies.iter().rev().find(|p| p.name() == Some(name))?;
        non_negative(policy.param("q")?)
    });
    Some(quota(limit, remaining, Duration::from_secs(reset)))
}

fn ietf_legacy(headers: &HeaderMap) -> Option<Quota> {
    let one_int = |name: &str| -> Option<u64> {
        match sf::parse_list(&joined(headers, name)?)?.as_slice() {
            [item] if item.params.is_empty() => non_negative(item.value),
            _ => None,
        }
    };
    let remaining = one_int("ratelimit-remaining")?;
    let reset = one_int("ratelimit-reset")?;
    // The first member is the limit in force; the others (with `w`) describe policies.
    let limit = joined(headers, "ratelimit-limit")
        .and_then(|f| non_negative(sf::parse_list(&f)?.first()?.value));
    Some(quota(limit, remaining, Duration::from_secs(reset)))
}

fn x_ratelimit(headers: &HeaderMap, wall_clock: impl FnOnce() -> SystemTime) -> Option<Quota> {
    let remaining = agreed(headers, "x-ratelimit-remaining", parse_u64)?;
    let reset = agreed(headers, "x-ratelimit-reset", parse_reset)?;
    let limit = agreed(headers, "x-ratelimit-limit", parse_u64);
    let reset = match reset.as_secs() {
        s if s > UNIX_MILLIS_FROM => at_unix(Duration::from_millis(s), wall_clock()),
        s if s > UNIX_SECONDS_FROM => at_unix(reset, wall_clock()),
        _ => reset,
    };
    Some(quota(limit, remaining, reset))
}

// ===== helpers =====

/// The quota, its reset clamped and a limit below `remaining` (inconsistent) dropped.
fn quota(limit: Option<u64>, remaining: u64, reset: Duration) -> Quota {
    Quota {
        limit: limit.filter(|l| *l >= remaining),
        remaining,
        reset: reset.min(MAX_RESET),
    }
}

/// Every line of the field `name`, joined by `", "` as RFC 9651 §4.2 says a recipient
/// combines them; `None` when absent or any line is not ASCII.
fn joined(headers: &HeaderMap, name: &str) -> Option<String> {
    let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
    let mut out = String::new();
    for value in headers.get_all(name) {
        let text = value.to_str().ok()?;
        if !out.is_empty() {
            out.push_str(", ");
        }
        out.push_str(text);
    }
    (!out.is_empty()).then_some(out)
}

/// The value of a plain header, which may be repeated (as lines or comma-separated) only
/// with equal values.
fn agreed<T: PartialEq>(
    headers: &HeaderMap,
    name: &str,
    parse: fn(&str) -> Option<T>,
) -> Option<T> {
    let field = joined(headers, name)?;
    let mut values = field
        .split(',')
        .map(|v| parse(v.trim_matches(|c| c == ' ' || c == '\t')));
    let first = values.next()??;
    values.all(|v| v.as_ref() == Some(&first)).then_some(first)
}

fn non_negative(value: Bare<'_>) -> Option<u64> {
    match value {
        Bare::Int(n) => u64::try_from(n).ok(),
        _ => None,
    }
}

/// One or more ASCII digits, no sign, fitting a `u64`.
fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Seconds, with an optional fraction of one or more digits (counted to the millisecond).
fn parse_reset(s: &str) -> Option<Duration> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs = parse_u64(whole)?;
    let millis = if s.contains('.') {
        if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        frac.bytes()
            .chain(std::iter::repeat(b'0'))
            .take(3)
            .fold(0, |ms, d| ms * 10 + u64::from(d - b'0'))
    } else {
        0
    };
    Some(Duration::from_secs(secs) + Duration::from_millis(millis))
}

/// From `now` until the Unix time `at`, zero if past.
fn at_unix(at: Duration, now: SystemTime) -> Duration {
    match UNIX_EPOCH.checked_add(at) {
        Some(at) => at.duration_since(now).unwrap_or(Duration::ZERO),
        None => MAX_RESET, // beyond what the platform's clock can tell: far ahead
    }
}

#[cfg(test)]
mod tests;
