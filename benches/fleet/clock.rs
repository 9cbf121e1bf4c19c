//! Time: the Unix clock parent and children share, and tokio instants.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Nanoseconds since the Unix epoch: the one clock parent and children share.
pub(crate) fn unix_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// The tokio instant of a Unix time in nanoseconds (on this machine's clock).
pub(crate) fn instant_of(unix: u128) -> Instant {
    let (now_i, now_u) = (Instant::now(), unix_ns());
    if unix >= now_u {
        now_i + Duration::from_nanos(u64::try_from(unix - now_u).unwrap_or(u64::MAX))
    } else {
        let back = Duration::from_nanos(u64::try_from(now_u - unix).unwrap_or(u64::MAX));
        now_i.checked_sub(back).unwrap_or(now_i)
    }
}

/// Microseconds from `start` to `t`, negative when `t` is earlier.
pub(crate) fn micros_since(start: Instant, t: Instant) -> i64 {
    if t >= start {
        i64::try_from((t - start).as_micros()).unwrap_or(i64::MAX)
    } else {
        -i64::try_from((start - t).as_micros()).unwrap_or(i64::MAX)
    }
}
