use super::*;

#[test]
fn methods_outside_rfc_9110_are_other() {
    assert_eq!(method_str(&Method::PATCH), "PATCH");
    assert_eq!(
        method_str(&Method::from_bytes(b"PURGE_SECRET_42").unwrap()),
        "_OTHER"
    );
}

#[cfg(feature = "metrics")]
#[test]
fn endings_are_indexed_in_order() {
    for (i, e) in EndLabel::ALL.iter().enumerate() {
        assert_eq!(e.index(), i, "{e:?}");
    }
}

#[cfg(feature = "metrics")]
#[test]
fn status_classes() {
    for (code, class) in [
        (101, "1xx"),
        (204, "2xx"),
        (304, "3xx"),
        (429, "4xx"),
        (599, "5xx"),
    ] {
        assert_eq!(
            StatusClass::of(http::StatusCode::from_u16(code).unwrap()).as_str(),
            class
        );
    }
}
