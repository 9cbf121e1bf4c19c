use std::time::Duration;

use super::{AdaptiveConfig, AdaptiveRate};
use crate::limits::quota::Quota;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Off, or pacing at `rate` from time 0.
fn at(rate: Option<f64>) -> AdaptiveRate {
    let mut a = AdaptiveRate::new(AdaptiveConfig::default());
    if let Some(rate) = rate {
        a.set(rate, Duration::ZERO);
    }
    a
}

/// Successes every `every` seconds over `[from, to)`.
fn succeed(a: &mut AdaptiveRate, from: f64, to: f64, every: f64) {
    let mut t = from;
    while t < to {
        a.succeeded(secs(t));
        t += every;
    }
}

fn close(a: f64, b: f64, tolerance: f64) -> bool {
    (a - b).abs() <= tolerance * b.abs()
}

// ===== cuts =====

#[test]
fn starts_off_and_the_first_429_turns_pacing_on() {
    let mut a = at(None);
    succeed(&mut a, 0.0, 2.0, 0.01); // 100/s, unpaced
    assert_eq!(a.rate(), None, "successes alone never turn pacing on");
    a.throttled(secs(1.99), secs(2.0), None);
    let rate = a.rate().unwrap();
    assert!(close(rate, 70.0, 0.05), "β × the measured 100/s: {rate}");
}

#[test]
fn a_set_rate_is_kept_within_bounds() {
    assert_eq!(at(Some(40.0)).rate(), Some(40.0));
    assert_eq!(at(Some(0.1)).rate(), Some(0.5));
    assert_eq!(at(Some(1e9)).rate(), Some(10_000.0));
    assert_eq!(at(Some(4.0)).interval(), Some(Duration::from_millis(250)));
    for nonsense in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert_eq!(at(Some(nonsense)).rate(), None, "{nonsense} is ignored");
    }
}

#[test]
fn one_cut_per_congestion_event() {
    let mut a = at(Some(100.0));
    succeed(&mut a, 0.0, 1.0, 0.001); // measured far above the rate
                                      // 50 in-flight requests, all sent before the first 429 arrived, all throttled.
    a.throttled(secs(0.98), secs(1.0), None);
    assert_eq!(a.rate(), Some(70.0));
    for i in 0..50 {
        a.throttled(
            secs(0.98 + 0.0001 * f64::from(i)),
            secs(1.0 + 0.001 * f64::from(i)),
            None,
        );
    }
    assert_eq!(a.rate(), Some(70.0), "the same event: no second cut");
    // A request sent after the cut and throttled: a new event.
    a.throttled(secs(1.0), secs(1.1), None);
    assert!(close(a.rate().unwrap(), 49.0, 1e-9));
}

#[test]
fn the_cut_is_from_the_measured_rate_when_sending_less() {
    let mut a = at(Some(100.0));
    succeed(&mut a, 0.0, 5.0, 0.1); // 10/s: the rate was never used
    a.throttled(secs(5.0), secs(5.0), None);
    assert!(close(a.rate().unwrap(), 7.0, 0.05), "{:?}", a.rate());
}

#[test]
fn the_rate_never_falls_below_the_floor() {
    let mut a = at(Some(0.6));
    for i in 0..20 {
        let t = f64::from(i);
        a.throttled(secs(t), secs(t), None);
        assert!(a.rate().unwrap() >= 0.5);
    }
    assert_eq!(a.rate(), Some(0.5));
}

// ===== regrowth =====

#[test]
fn regrowth_reaches_the_old_max_after_k() {
    let mut a = at(Some(100.0));
    succeed(&mut a, 0.0, 1.0, 0.001);
    a.throttled(secs(1.0), secs(1.0), None);
    assert_eq!(a.rate(), Some(70.0));
    let k = (100.0_f64 * 0.3 / 0.4).cbrt(); // 4.22 s
    succeed(&mut a, 1.0, 1.0 + k / 2.0, 0.001);
    let half = a.rate().unwrap();
    assert!(
        half > 70.0 && half < 100.0,
        "concave on the way back: {half}"
    );
    assert!(
        half > 90.0,
        "most of the way after K/2 (CUBIC's plateau): {half}"
    );
    succeed(&mut a, 1.0 + k / 2.0, 1.0 + k, 0.001);
    assert!(close(a.rate().unwrap(), 100.0, 0.01), "{:?}", a.rate());
    succeed(&mut a, 1.0 + k, 3.0 + k, 0.001);
    assert!(
        a.rate().unwrap() > 103.0,
        "probes above after K: {:?}",
        a.rate()
    );
}

#[test]
fn regrowth_is_bounded_by_twice_the_measured_rate() {
    let mut a = at(Some(1.0));
    succeed(&mut a, 0.0, 20.0, 0.1); // 10/s for 20 s: the curve alone would be ~2700/s
    let rate = a.rate().unwrap();
    assert!((15.0..=21.0).contains(&rate), "{rate}");
}

// ===== quotas =====

#[test]
fn a_quota_that_binds_sets_the_rate_directly() {
    let mut a = at(None);
    let quota = |remaining, reset| Quota {
        limit: Some(1000),
        remaining,
        reset: Duration::from_secs(reset),
    };
    assert!(a.learned_from_quota(&quota(50, 10), secs(1.0)));
    assert!(close(a.rate().unwrap(), 4.75, 1e-9), "5/s less 5 %");
    assert!(!a.learned_from_quota(&quota(100, 0), secs(2.0)));
    assert!(
        close(a.rate().unwrap(), 4.75, 1e-9),
        "a reset of zero says nothing"
    );
    assert!(a.learned_from_quota(&quota(0, 30), secs(3.0)));
    let rate = a.rate().unwrap();
    assert!(
        close(rate, 1.0 / 31.0, 1e-9),
        "nothing left: one a second after the reset, {rate}"
    );
    assert!(a.learned_from_quota(&quota(90, 3), secs(4.0)));
    assert!(close(a.rate().unwrap(), 28.5, 1e-9), "raises it as well");
}

#[test]
fn a_quota_with_plenty_left_paces_nothing_and_lifts_its_own_pacing() {
    let quota = |remaining| Quota {
        limit: Some(5000),
        remaining,
        reset: Duration::from_secs(3599),
    };
    let mut a = at(None);
    assert!(!a.learned_from_quota(&quota(4999), secs(1.0)));
    assert_eq!(
        a.rate(),
        None,
        "an hourly quota far from spent does not pace"
    );
    // Nor does a short burst: 100 in a second would spend it in 50 s, not within 10.
    succeed(&mut a, 1.0, 2.0, 0.01);
    assert!(!a.learned_from_quota(&quota(4899), secs(2.0)));
    assert_eq!(a.rate(), None, "a burst of 100 is not spread");
    assert!(a.learned_from_quota(&quota(400), secs(2.0)));
    assert!(a.rate().is_some(), "under a tenth left: paced");
    assert!(!a.learned_from_quota(&quota(5000), secs(3.0)));
    assert_eq!(a.rate(), None, "a new window: the quota's pacing is lifted");
    // A rate a 429 set is not a quota's: plenty left does not lift it.
    let mut b = at(Some(10.0));
    b.throttled(secs(4.0), secs(4.0), None);
    let cut = b.rate();
    assert!(!b.learned_from_quota(&quota(4999), secs(5.0)));
    assert_eq!(b.rate(), cut);
    // No limit stated: plenty unless the send rate would spend it soon, or none is left.
    let unstated = |remaining| Quota {
        limit: None,
        ..quota(remaining)
    };
    let mut c = at(None);
    succeed(&mut c, 0.0, 1.0, 0.1); // 10/s
    assert!(!c.learned_from_quota(&unstated(4999), secs(1.0)));
    assert_eq!(c.rate(), None, "an hour's 4999 at 10/s: nothing paced");
    assert!(
        c.learned_from_quota(&unstated(50), secs(1.0)),
        "50 at 10/s: 5 s"
    );
    assert!(
        at(None).learned_from_quota(&unstated(0), secs(1.0)),
        "none left"
    );
}

/// `remaining` of 300 left until `reset` seconds from now.
fn of_300(remaining: u64, reset: u64) -> Quota {
    Quota {
        limit: Some(300),
        remaining,
        reset: Duration::from_secs(reset),
    }
}

#[test]
fn a_quota_spent_fast_paces_before_its_last_tenth_until_refilled() {
    let quota = of_300;
    // 100/s for a second: 290 left would be spent in 2.9 s, before the reset in 9 s.
    let mut a = at(None);
    succeed(&mut a, 0.0, 1.0, 0.01);
    assert!(a.learned_from_quota(&quota(290, 9), secs(1.0)));
    let rate = a.rate().unwrap();
    assert!(close(rate, 290.0 / 9.0 * 0.95, 1e-9), "{rate}");
    // Paced, it sends less: the quota still paces until it is refilled.
    succeed(&mut a, 1.0, 6.0, 0.5);
    assert!(a.learned_from_quota(&quota(150, 4), secs(6.0)));
    assert!(close(a.rate().unwrap(), 150.0 / 4.0 * 0.95, 1e-9));
    assert!(!a.learned_from_quota(&quota(300, 10), secs(7.0)));
    assert_eq!(a.rate(), None, "refilled with plenty: lifted");
    // The same quota, spent slowly (2/s would leave most of it at the reset): no pacing.
    let mut b = at(None);
    succeed(&mut b, 0.0, 5.0, 0.5);
    assert!(!b.learned_from_quota(&quota(290, 9), secs(5.0)));
    assert_eq!(b.rate(), None);
}

#[test]
fn a_reset_stated_in_whole_seconds_is_bounded_by_each_response() {
    // The window ends at 10 s; the server rounds the seconds to it up.
    let quota = of_300;
    let mut a = at(None);
    assert!(a.learned_from_quota(&quota(20, 1), secs(9.05))); // the reset: by 10.05 s
    assert!(a.learned_from_quota(&quota(10, 1), secs(9.5))); // "1 s": by 10.5 s
    let rate = a.rate().unwrap();
    assert!(
        close(rate, 10.0 / 0.55 * 0.95, 1e-6),
        "{rate}: from 10.05 s"
    );
    // The next window (refilled, or a reset far later) starts over.
    assert!(!a.learned_from_quota(&quota(300, 10), secs(10.1)));
    assert!(a.learned_from_quota(&quota(20, 9), secs(10.2)));
    assert!(close(a.rate().unwrap(), 20.0 / 9.0 * 0.95, 1e-6));
}

// ===== simulated servers =====

mod sim;

#[test]
fn a_step_in_the_limit_is_followed() {
    // Token bucket 100/s, then 40/s, then 100/s (30 s each; burst 0.1 s of the rate), as in
    // adaptive_sim.py; N closed-loop senders, RTT 20 ms, paced by one shared rate that
    // starts off; a shared cooldown until Retry-After.
    for n in [4, 16, 64] {
        let mut a = at(None);
        let stats = sim::run(
            &mut sim::TokenBucket::stepping(100.0, 40.0, 30.0..60.0),
            &mut a,
            sim::Senders::shared(n),
            90,
        );
        for (phase, limit) in [(0, 100.0), (30, 40.0), (60, 100.0)] {
            let (sent, ok, throttled) = sim::sum(&stats[phase + 5..phase + 30]);
            let served = f64::from(ok) / (25.0 * limit);
            let share = f64::from(throttled) / f64::from(sent);
            eprintln!("N={n} from {phase}s: served {served:.3} of the limit, {share:.3} throttled");
            assert!(
                served >= 0.90,
                "N={n} phase at {phase}s: served {served:.3}"
            );
            assert!(
                share <= 0.04,
                "N={n} phase at {phase}s: throttled {share:.3}"
            );
        }
    }
}

#[test]
fn without_the_cooldown_a_whole_second_retry_after_does_not_hide_a_rate_still_too_high() {
    // A token bucket 50 → 20 → 50/s (20 s each) that answers `Retry-After: 1` (whole
    // seconds), each throttled sender waiting only its own (`shared_cooldown(false)`): a
    // 429 250 ms after a cut is a new event, so a rate still above the bucket's is cut
    // again then, not a second later (with a second's grace: 7.5 % and 12 % of the sends
    // after the step down answered 429 at 16 and 64 senders).
    for n in [16, 64] {
        let mut a = AdaptiveRate::new(AdaptiveConfig {
            held: false,
            ..AdaptiveConfig::default()
        });
        let senders = sim::Senders {
            n,
            cooldown: false,
            whole_seconds: true,
        };
        let mut bucket = sim::TokenBucket::stepping(50.0, 20.0, 20.0..40.0);
        let stats = sim::run(&mut bucket, &mut a, senders, 60);
        for (phase, limit) in [(0, 50.0), (20, 20.0), (40, 50.0)] {
            let (sent, _, throttled) = sim::sum(&stats[phase..phase + 20]);
            let (_, ok, _) = sim::sum(&stats[phase + 5..phase + 20]);
            let served = f64::from(ok) / (15.0 * limit);
            let share = f64::from(throttled) / f64::from(sent);
            eprintln!("N={n} from {phase}s: served {served:.3}, {share:.3} throttled");
            assert!(served >= 0.93, "N={n} from {phase}s: served {served:.3}");
            // The start (a burst of N into a bucket of 5) is what a limit never told costs.
            let most = if phase == 0 { 0.07 } else { 0.05 };
            assert!(share <= most, "N={n} from {phase}s: throttled {share:.3}");
        }
    }
}

#[test]
fn a_fixed_window_limit_is_found() {
    // 120 per 60 s window (windows start at 17 s + 60 k), 429 with Retry-After until the
    // window ends; 8 closed-loop senders.
    let mut a = at(None);
    let senders = sim::Senders::shared(8);
    let stats = sim::run(
        &mut sim::FixedWindow::new(120, 60, 17),
        &mut a,
        senders,
        617,
    );
    let (sent, ok, throttled) = sim::sum(&stats[77..617]);
    let served = f64::from(ok) / (9.0 * 120.0);
    let share = f64::from(throttled) / f64::from(sent);
    eprintln!(
        "served {served:.3} of the limit, {share:.3} throttled, rate {:?}",
        a.rate()
    );
    assert!(served >= 0.90, "served {served:.3}");
}
