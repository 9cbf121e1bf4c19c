use super::*;
use crate::classify::RequestView;

/// The step API the engine's future drives, for outcomes built by hand.
impl RetryState {
    /// Records the outcome of the attempt just made and says what to do next.
    ///
    /// `can_resend` tells whether the adapter holds a usable duplicate of the request; a
    /// retryable outcome without one stops with [`StopReason::NotReplayable`].
    pub(crate) fn next(&mut self, outcome: Outcome<'_>, can_resend: bool) -> Action {
        let idempotent = match outcome {
            Outcome::Transport { idempotent, .. } => idempotent,
            Outcome::Response { .. } => false,
        };
        self.next_for(&RequestView::detached(idempotent), outcome, can_resend)
    }

    /// Like [`next`](Self::next), for an outcome of `request` (what the classifier sees
    /// of it).
    pub(crate) fn next_for(
        &mut self,
        request: &RequestView<'_>,
        outcome: Outcome<'_>,
        can_resend: bool,
    ) -> Action {
        let decision = self.policy.decide(request, &outcome);
        self.apply(decision, outcome, can_resend)
    }
}

use crate::classify::TransportErrorKind;
use crate::limits::{Limits, Origin, MAX_COOLDOWN};
use crate::policy::Jitter;
use http::header::RETRY_AFTER;
use http::HeaderValue;
use http::{HeaderMap, StatusCode};

const S: fn(u64) -> Duration = Duration::from_secs;

fn status(s: u16) -> (StatusCode, HeaderMap) {
    (StatusCode::from_u16(s).unwrap(), HeaderMap::new())
}

fn resp(st: &(StatusCode, HeaderMap)) -> Outcome<'_> {
    Outcome::Response {
        status: st.0,
        headers: &st.1,
        code: None,
    }
}

fn exact(max_retries: u32) -> RetryPolicy {
    RetryPolicy::builder()
        .max_retries(max_retries)
        .jitter(Jitter::None)
        .retry_after_spread(Duration::ZERO)
        .build()
}

#[test]
fn ladder_is_exact_without_jitter() {
    let p = exact(8);
    let mut st = RetryState::new(&p);
    let r = status(503);
    let mut got = Vec::new();
    while let Action::Retry(d) = st.next(resp(&r), true) {
        got.push(d);
    }
    assert_eq!(got, [1, 2, 4, 8, 16, 30, 30, 30].map(S));
    assert_eq!(st.stop_reason(), Some(StopReason::MaxRetries));
    assert_eq!(st.info().attempts(), 9);
    assert_eq!(st.info().slept(), S(121));
}

#[test]
fn may_retry_is_false_for_the_last_attempt() {
    let p = exact(2);
    let mut st = RetryState::new(&p);
    let r = status(500);
    assert!(st.may_retry());
    st.next(resp(&r), true);
    assert!(st.may_retry());
    st.next(resp(&r), true);
    assert!(!st.may_retry(), "third attempt is the last: no copy needed");
    assert_eq!(
        st.next(resp(&r), false),
        Action::Stop(StopReason::MaxRetries)
    );
    assert!(!RetryState::new(&exact(0)).may_retry());
}

#[test]
fn retry_after_then_backoff_counts_retries() {
    let p = exact(5);
    let mut st = RetryState::new(&p);
    let mut h = HeaderMap::new();
    h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
    let limited = (StatusCode::TOO_MANY_REQUESTS, h);
    assert_eq!(st.next(resp(&limited), true), Action::Retry(S(7)));
    // Second retry on the backoff ladder is n = 2.
    assert_eq!(st.next(resp(&status(502)), true), Action::Retry(S(2)));
    assert_eq!(
        st.next(resp(&status(201)), true),
        Action::Stop(StopReason::Success)
    );
    assert_eq!(st.info().slept(), S(9));
    assert_eq!(st.decision(), Some(Decision::Accept));
}

#[test]
fn retry_after_is_a_floor_under_the_backoff_schedule() {
    let p = exact(6);
    let mut st = RetryState::new(&p);
    let mut h = HeaderMap::new();
    h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
    let limited = (StatusCode::TOO_MANY_REQUESTS, h);
    let got: Vec<Duration> = (0..6)
        .map(|_| match st.next(resp(&limited), true) {
            Action::Retry(d) => d,
            other => panic!("{other:?}"),
        })
        .collect();
    // max(Retry-After, nominal backoff 1, 2, 4, 8, 16, 30).
    assert_eq!(got, [7, 7, 7, 8, 16, 30].map(S));
}

#[tokio::test(start_paused = true)]
async fn a_lifted_cap_and_an_absurd_retry_after_do_not_overflow() {
    let p = RetryPolicy::builder()
        .max_retry_after(Duration::MAX)
        .build();
    let limits = Limits::default();
    let mut st = RetryState::with_origin_limits(&p, limits.origin(&Origin::default()));
    let mut h = HeaderMap::new();
    h.insert(
        RETRY_AFTER,
        HeaderValue::from_static("99999999999999999999"),
    );
    match st.next(resp(&(StatusCode::TOO_MANY_REQUESTS, h)), true) {
        Action::Retry(d) => assert!(d >= Duration::from_secs(u64::MAX)),
        other => panic!("{other:?}"),
    }
    let left = limits.cooldown_remaining(&"/".parse().unwrap()).unwrap();
    assert!(left >= Duration::from_secs(86_400 * 365));
    assert!(matches!(st.admit(), Admission::Wait(_)));
}

#[tokio::test(start_paused = true)]
async fn an_absurd_retry_after_locks_the_origin_out_for_a_day_at_most() {
    let p = RetryPolicy::default();
    let limits = Limits::default();
    let mut st = RetryState::with_origin_limits(&p, limits.origin(&Origin::default()));
    st.next(resp(&rate_limited("99999999999999999999")), true);
    assert_eq!(
        limits.cooldown_remaining(&"/".parse().unwrap()),
        Some(MAX_COOLDOWN)
    );
    tokio::time::advance(MAX_COOLDOWN).await;
    let mut later = RetryState::with_origin_limits(&p, limits.origin(&Origin::default()));
    assert_eq!(later.admit(), Admission::Send);
}

fn rate_limited(retry_after: &'static str) -> (StatusCode, HeaderMap) {
    let mut h = HeaderMap::new();
    h.insert(RETRY_AFTER, HeaderValue::from_static(retry_after));
    (StatusCode::TOO_MANY_REQUESTS, h)
}

#[tokio::test(start_paused = true)]
async fn admission_holds_back_behind_the_cooldown_and_counts_the_wait() {
    let p = exact(3);
    let limits = Limits::default();
    let origin = Origin::default();
    let mut first = RetryState::with_origin_limits(&p, limits.origin(&origin));
    assert_eq!(first.admit(), Admission::Send);
    first.next(resp(&rate_limited("5")), true);
    let mut other = RetryState::with_origin_limits(&p, limits.origin(&origin));
    assert_eq!(other.admit(), Admission::Wait(S(5)));
    assert_eq!(other.info().slept(), S(5));
    tokio::time::advance(S(5)).await;
    assert_eq!(other.admit(), Admission::Send);
}

#[tokio::test(start_paused = true)]
async fn cooldowns_renewed_by_others_hold_a_request_back_no_longer_than_the_cap_in_all() {
    let p = exact(3); // max_retry_after: 60 s
    let limits = Limits::builder().without_pacing().build();
    let origin = Origin::default();
    let mut held = RetryState::with_origin_limits(&p, limits.origin(&origin));
    let mut waited = Duration::ZERO;
    loop {
        // Another request meets a 429 of 25 s each time the last cooldown ends.
        let mut other = RetryState::with_origin_limits(&p, limits.origin(&origin));
        other.next(resp(&rate_limited("25")), true);
        match held.admit() {
            Admission::Wait(wait) => {
                waited += wait;
                tokio::time::advance(wait).await;
            }
            Admission::Reject { reason, .. } => {
                assert_eq!(reason, StopReason::RetryAfterTooLong);
                break;
            }
            Admission::Send => panic!("sent while held back"),
        }
    }
    assert_eq!(waited, S(50), "two holds of 25 s; a third would pass 60 s");
}

#[tokio::test(start_paused = true)]
async fn admission_rejects_what_the_deadline_or_the_cap_cannot_wait_for() {
    let p = RetryPolicy::builder()
        .max_retries(3)
        .retry_after_spread(Duration::ZERO)
        .deadline(S(5))
        .build();
    let limits = Limits::default();
    let origin = Origin::default();
    let mut first = RetryState::with_origin_limits(&p, limits.origin(&origin));
    // 50 s fits under the 60 s cap but not under this request's 5 s deadline.
    assert_eq!(
        first.next(resp(&rate_limited("50")), true),
        Action::Stop(StopReason::Deadline)
    );
    let mut second = RetryState::with_origin_limits(&p, limits.origin(&origin));
    assert_eq!(
        second.admit(),
        Admission::Reject {
            reason: StopReason::Deadline,
            cooldown: Some(S(50))
        }
    );
    assert_eq!(second.stop_reason(), Some(StopReason::Deadline));

    // Above the cap: the 429 is returned, and later requests fail at once.
    let mut third = RetryState::with_origin_limits(&p, limits.origin(&origin));
    tokio::time::advance(S(50)).await;
    assert_eq!(
        third.admit(),
        Admission::Reject {
            reason: StopReason::Deadline,
            cooldown: None
        },
        "third's deadline passed while it waited"
    );
    let mut fourth = RetryState::with_origin_limits(&p, limits.origin(&origin));
    assert_eq!(fourth.admit(), Admission::Send);
    assert_eq!(
        fourth.next(resp(&rate_limited("3600")), true),
        Action::Stop(StopReason::RetryAfterTooLong)
    );
    let mut fifth = RetryState::with_origin_limits(&p, limits.origin(&origin));
    assert_eq!(
        fifth.admit(),
        Admission::Reject {
            reason: StopReason::RetryAfterTooLong,
            cooldown: Some(S(3600))
        }
    );
    assert_eq!(fifth.info().attempts(), 0);
}

#[test]
fn first_try_success_is_the_only_unannotated_outcome() {
    let p = exact(3);
    let mut st = RetryState::new(&p);
    st.next(resp(&status(200)), true);
    assert!(st.info().is_first_try_success());
    let mut st = RetryState::new(&p);
    st.next(resp(&status(404)), true);
    assert!(!st.info().is_first_try_success());
    let mut st = RetryState::new(&p);
    st.next(resp(&status(503)), true);
    st.next(resp(&status(200)), true);
    assert!(!st.info().is_first_try_success());
    assert_eq!(RetryInfo::of(&http::Extensions::new()).attempts(), 1);
}

#[test]
fn retry_after_spread_is_bounded_and_never_early() {
    let p = RetryPolicy::builder().seed(7).build();
    let mut h = HeaderMap::new();
    h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
    let limited = (StatusCode::TOO_MANY_REQUESTS, h);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..200 {
        let mut st = RetryState::new(&p);
        match st.next(resp(&limited), true) {
            Action::Retry(d) => {
                assert!(d >= S(7) && d <= S(7) + Duration::from_millis(500), "{d:?}");
                seen.insert(d);
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(seen.len() > 190, "spread is random per request");
}

#[test]
fn fatal_and_too_long_stop_at_once() {
    let p = exact(5);
    let mut st = RetryState::new(&p);
    assert_eq!(
        st.next(resp(&status(401)), true),
        Action::Stop(StopReason::Fatal)
    );
    let mut h = HeaderMap::new();
    h.insert(RETRY_AFTER, HeaderValue::from_static("3600"));
    let mut st = RetryState::new(&p);
    assert_eq!(
        st.next(resp(&(StatusCode::TOO_MANY_REQUESTS, h)), true),
        Action::Stop(StopReason::RetryAfterTooLong)
    );
    assert_eq!(st.info().attempts(), 1);
    assert_eq!(st.info().slept(), Duration::ZERO);
}

#[test]
fn not_replayable_stops_retryable_outcomes_only() {
    let p = exact(5);
    let mut st = RetryState::new(&p);
    assert_eq!(
        st.next(resp(&status(503)), false),
        Action::Stop(StopReason::NotReplayable)
    );
    let mut st = RetryState::new(&p);
    assert_eq!(
        st.next(resp(&status(200)), false),
        Action::Stop(StopReason::Success)
    );
}

#[test]
fn transport_outcomes_follow_idempotency() {
    let p = exact(5);
    let mut st = RetryState::new(&p);
    let post_timeout = Outcome::Transport {
        kind: TransportErrorKind::Timeout,
        idempotent: false,
    };
    assert_eq!(st.next(post_timeout, true), Action::Stop(StopReason::Fatal));
    let mut st = RetryState::new(&p);
    let get_timeout = Outcome::Transport {
        kind: TransportErrorKind::Timeout,
        idempotent: true,
    };
    assert_eq!(st.next(get_timeout, true), Action::Retry(S(1)));
    let post_connect = Outcome::Transport {
        kind: TransportErrorKind::Connect,
        idempotent: false,
    };
    assert_eq!(st.next(post_connect, true), Action::Retry(S(2)));
}

#[test]
fn seeded_policies_reproduce_delays() {
    let run = || {
        let p = RetryPolicy::builder().seed(99).build();
        let r = status(503);
        (0..20)
            .map(|_| {
                let mut st = RetryState::new(&p);
                (0..4).map(|_| st.next(resp(&r), true)).collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

mod properties {
    use super::*;
    use crate::policy::Jitter;
    use http::{HeaderMap, StatusCode};
    use proptest::prelude::*;

    fn any_jitter() -> impl Strategy<Value = Jitter> {
        prop_oneof![
            Just(Jitter::None),
            Just(Jitter::Proportional),
            Just(Jitter::Full),
            Just(Jitter::Equal),
            Just(Jitter::Decorrelated),
        ]
    }

    proptest! {
    #[test]
    fn every_delay_stays_within_base_and_max(
        seed in any::<u64>(),
        jitter in any_jitter(),
        base_ms in 1u64..5_000,
        extra_ms in 0u64..120_000,
        retries in 1u32..40,
    ) {
        let base = Duration::from_millis(base_ms);
        let max = base + Duration::from_millis(extra_ms);
        let policy = RetryPolicy::builder()
            .seed(seed)
            .jitter(jitter)
            .base_delay(base)
            .max_delay(max)
            .max_retries(retries)
            .build();
        let mut state = RetryState::new(&policy);
        let headers = HeaderMap::new();
        for n in 1..=retries {
            let outcome = Outcome::Response { status: StatusCode::SERVICE_UNAVAILABLE, headers: &headers, code: None };
            match state.next(outcome, true) {
                Action::Retry(d) => {
                    prop_assert!(d >= base && d <= max, "retry {} of {:?}: {:?} not in [{:?}, {:?}]", n, jitter, d, base, max);
                    if jitter == Jitter::None {
                        prop_assert_eq!(d, policy.nominal_delay(n));
                    }
                }
                other => prop_assert!(false, "stopped early: {:?}", other),
            }
        }
    }

    }
}
