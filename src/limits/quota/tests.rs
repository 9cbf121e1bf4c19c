use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

use super::{sf, Quota, MAX_RESET};

/// 2023-11-14 22:13:20 UTC.
const NOW: u64 = 1_700_000_000;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(value).unwrap(),
        );
    }
    map
}

fn parse(pairs: &[(&str, &str)]) -> Option<Quota> {
    let pairs: Vec<_> = pairs.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
    Quota::from_headers(&headers(&pairs), now)
}

fn q(limit: Option<u64>, remaining: u64, reset_secs: u64) -> Option<Quota> {
    Some(Quota {
        limit,
        remaining,
        reset: Duration::from_secs(reset_secs),
    })
}

// ===== the current draft =====

#[test]
fn ietf_current_with_policy() {
    let got = parse(&[
        ("ratelimit-policy", r#""default";q=100;w=60"#),
        ("ratelimit", r#""default";r=50;t=30"#),
    ]);
    assert_eq!(got, q(Some(100), 50, 30));
    assert_eq!(
        parse(&[("ratelimit", r#""default";r=50;t=30"#)]),
        q(None, 50, 30)
    );
    assert_eq!(
        parse(&[("ratelimit", "default;r=50;t=30")]),
        q(None, 50, 30),
        "a Token name"
    );
}

#[test]
fn ietf_current_most_restrictive_item_wins() {
    let got = parse(&[
        (
            "ratelimit-policy",
            r#""permin";q=50;w=60, "perday";q=1000;w=86400"#,
        ),
        ("ratelimit", r#""permin";r=40;t=30, "perday";r=100;t=3600"#),
    ]);
    assert_eq!(
        got,
        q(Some(1000), 100, 3600),
        "100/3600 s is less than 40/30 s"
    );
    // Split over lines, as RFC 9651 allows; a pk and other parameters are comments.
    let got = parse(&[
        ("ratelimit", r#""a";r=10;t=10;pk=:cHsdsRa894==:"#),
        ("ratelimit", r#""b";r=0;t=5;acme-x=?1;d=1.5"#),
    ]);
    assert_eq!(got, q(None, 0, 5));
}

#[test]
fn ietf_current_items_without_r_or_t_are_skipped() {
    assert_eq!(parse(&[("ratelimit", r#""a";r=999"#)]), None);
    assert_eq!(
        parse(&[("ratelimit", r#""a";r=999, "b";r=5;t=9"#)]),
        q(None, 5, 9)
    );
    assert_eq!(parse(&[("ratelimit", r#""a";r=-1;t=9"#)]), None);
    assert_eq!(parse(&[("ratelimit", r#""a";r=1.0;t=9"#)]), None);
}

#[test]
fn malformed_structured_fields_are_ignored_whole() {
    for bad in [
        r#""a";r=5;t=9,"#,
        r#""a";r=5;t=9,,"b";r=1;t=1"#,
        r#""a";R=5;t=9"#,
        r#""a;r=5;t=9"#,
        r#"("a" "b");r=5;t=9"#,
        r#""a";r=1234567890123456;t=9"#,
        r#""a";r=5;t=9 "b""#,
        r#"%"a";r=5;t=9"#,
        r#""a\x";r=5;t=9"#,
        "",
    ] {
        assert_eq!(parse(&[("ratelimit", bad)]), None, "{bad:?}");
    }
    // A malformed policy field only loses the limit.
    let got = parse(&[
        ("ratelimit-policy", "\"a\";q="),
        ("ratelimit", "\"a\";r=5;t=9"),
    ]);
    assert_eq!(got, q(None, 5, 9));
}

#[test]
fn reset_is_clamped_and_inconsistent_limit_dropped() {
    let got = parse(&[("ratelimit", r#""a";r=5;t=999999999999999"#)]);
    assert_eq!(got.unwrap().reset, MAX_RESET);
    let got = parse(&[
        ("ratelimit-policy", r#""a";q=3"#),
        ("ratelimit", r#""a";r=5;t=9"#),
    ]);
    assert_eq!(got, q(None, 5, 9));
}

// ===== older drafts and X-RateLimit =====

#[test]
fn ietf_legacy_fields() {
    let got = parse(&[
        ("ratelimit-limit", "10, 10;w=1, 50;w=60"),
        ("ratelimit-remaining", "7"),
        ("ratelimit-reset", "3"),
    ]);
    assert_eq!(got, q(Some(10), 7, 3));
    assert_eq!(
        parse(&[("ratelimit-remaining", "7"), ("ratelimit-reset", "-3")]),
        None
    );
    assert_eq!(
        parse(&[("ratelimit-remaining", "7, 8"), ("ratelimit-reset", "3")]),
        None
    );
}

#[test]
fn x_ratelimit_delta_seconds_and_unix_times() {
    let base = [("x-ratelimit-limit", "60"), ("x-ratelimit-remaining", "12")];
    let with = |reset: &str| {
        let mut v = base.to_vec();
        v.push(("x-ratelimit-reset", reset));
        parse(&v)
    };
    assert_eq!(with("30"), q(Some(60), 12, 30));
    assert_eq!(
        with("1000000000"),
        q(Some(60), 12, 86_400),
        "10^9 s is still a delay, clamped"
    );
    assert_eq!(with(&*format!("{}", NOW + 45).leak()), q(Some(60), 12, 45));
    assert_eq!(
        with(&*format!("{}", (NOW + 45) * 1000).leak()),
        q(Some(60), 12, 45)
    );
    assert_eq!(
        with(&*format!("{}", NOW - 5).leak()),
        q(Some(60), 12, 0),
        "past: zero"
    );
    let frac = with("1.25").unwrap().reset;
    assert_eq!(frac, Duration::from_millis(1250));
    assert_eq!(with("18446744073709551615").unwrap().reset, MAX_RESET);
}

#[test]
fn x_ratelimit_bad_values_are_none() {
    for (remaining, reset) in [
        ("-1", "5"),
        ("+1", "5"),
        ("1", "-5"),
        ("one", "5"),
        ("1", "soon"),
        ("18446744073709551616", "5"),
        ("1", "99999999999999999999"),
        ("1", "1."),
        ("1", ".5"),
        ("1", "1e3"),
        ("", "5"),
        ("1, 2", "5"),
    ] {
        let got = parse(&[
            ("x-ratelimit-remaining", remaining),
            ("x-ratelimit-reset", reset),
        ]);
        assert_eq!(got, None, "{remaining:?} {reset:?}");
    }
}

#[test]
fn repeated_plain_headers_must_agree() {
    let agree = parse(&[
        ("x-ratelimit-remaining", "4"),
        ("x-ratelimit-remaining", "4"),
        ("x-ratelimit-reset", "9"),
    ]);
    assert_eq!(agree, q(None, 4, 9));
    let disagree = parse(&[
        ("x-ratelimit-remaining", "4"),
        ("x-ratelimit-remaining", "5"),
        ("x-ratelimit-reset", "9"),
    ]);
    assert_eq!(disagree, None);
    let bad_limit = parse(&[
        ("x-ratelimit-limit", "4"),
        ("x-ratelimit-limit", "8"),
        ("x-ratelimit-remaining", "4"),
        ("x-ratelimit-reset", "9"),
    ]);
    assert_eq!(
        bad_limit,
        q(None, 4, 9),
        "a conflicting limit is dropped alone"
    );
}

#[test]
fn non_utf8_is_none() {
    let map = headers(&[
        ("x-ratelimit-remaining", b"4\xff"),
        ("x-ratelimit-reset", b"9"),
    ]);
    assert_eq!(Quota::from_headers(&map, now), None);
    let map = headers(&[("ratelimit", b"\"\xe9\";r=1;t=2")]);
    assert_eq!(Quota::from_headers(&map, now), None);
}

#[test]
fn the_current_draft_wins_over_older_forms() {
    let got = parse(&[
        ("x-ratelimit-remaining", "1"),
        ("x-ratelimit-reset", "1"),
        ("ratelimit", r#""a";r=5;t=9"#),
    ]);
    assert_eq!(got, q(None, 5, 9));
}

#[test]
fn wall_clock_is_read_only_for_a_unix_reset() {
    let map = headers(&[("ratelimit", b"\"a\";r=5;t=9")]);
    let got = Quota::from_headers(&map, || panic!("clock read"));
    assert_eq!(got, q(None, 5, 9));
}

#[test]
fn sf_parser_keeps_the_last_repeated_parameter() {
    let items = sf::parse_list(r#""a";r=1;r=2, b"#).unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].param("r"), Some(sf::Bare::Int(2)));
    assert_eq!(items[1].name(), Some("b"));
}

// ===== properties =====

proptest! {
    #[test]
    fn never_panics_on_arbitrary_bytes(
        fields in proptest::collection::vec((0usize..7, proptest::collection::vec(any::<u8>(), 0..40)), 0..6),
        clock in any::<u64>(),
    ) {
        const NAMES: [&str; 7] = [
            "ratelimit", "ratelimit-policy", "ratelimit-limit", "ratelimit-remaining",
            "ratelimit-reset", "x-ratelimit-remaining", "x-ratelimit-reset",
        ];
        let mut map = HeaderMap::new();
        for (name, value) in fields {
            if let Ok(v) = HeaderValue::from_bytes(&value) {
                map.append(NAMES[name], v);
            }
        }
        let now = UNIX_EPOCH.checked_add(Duration::from_secs(clock % (1 << 40))).unwrap();
        if let Some(q) = Quota::from_headers(&map, || now) {
            prop_assert!(q.reset <= MAX_RESET);
            prop_assert!(q.limit.is_none_or(|l| l >= q.remaining));
        }
    }

    #[test]
    fn never_panics_on_structured_text(s in r#"[a-z0-9"=;,:?@*. ()\\%-]{0,40}"#) {
        let _ = sf::parse_list(&s);
        let map = headers(&[("ratelimit", s.as_bytes()), ("ratelimit-policy", s.as_bytes())]);
        let _ = Quota::from_headers(&map, now);
    }

    #[test]
    fn well_formed_ietf_round_trips(
        name in "[a-z][a-z0-9_-]{0,8}",
        q in 0u64..1_000_000_000_000_000,
        r in 0u64..1_000_000_000_000_000,
        t in 0u64..1_000_000,
    ) {
        let map = headers(&[
            ("ratelimit-policy", format!("\"{name}\";q={q};w=60").as_bytes()),
            ("ratelimit", format!("\"{name}\";r={r};t={t}").as_bytes()),
        ]);
        let got = Quota::from_headers(&map, now).unwrap();
        prop_assert_eq!(got.remaining, r);
        prop_assert_eq!(got.limit, (q >= r).then_some(q));
        prop_assert_eq!(got.reset, Duration::from_secs(t).min(MAX_RESET));
    }

    #[test]
    fn well_formed_x_ratelimit_round_trips(
        limit in any::<u64>(),
        remaining in any::<u64>(),
        reset in 0u64..=1_000_000_000,
    ) {
        let map = headers(&[
            ("x-ratelimit-limit", limit.to_string().as_bytes()),
            ("x-ratelimit-remaining", remaining.to_string().as_bytes()),
            ("x-ratelimit-reset", reset.to_string().as_bytes()),
        ]);
        let got = Quota::from_headers(&map, now).unwrap();
        prop_assert_eq!(got.remaining, remaining);
        prop_assert_eq!(got.limit, (limit >= remaining).then_some(limit));
        prop_assert_eq!(got.reset, Duration::from_secs(reset).min(MAX_RESET));
    }

    #[test]
    fn unix_reset_round_trips(ahead in 0u64..100_000, millis in any::<bool>()) {
        let at = NOW + ahead;
        let value = if millis { (at * 1000).to_string() } else { at.to_string() };
        let map = headers(&[("x-ratelimit-remaining", b"1"), ("x-ratelimit-reset", value.as_bytes())]);
        let got = Quota::from_headers(&map, now).unwrap();
        prop_assert_eq!(got.reset, Duration::from_secs(ahead).min(MAX_RESET));
    }
}
