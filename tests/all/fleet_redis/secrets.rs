//! Secrets: neither the password nor the key reaches debug output or errors; building
//! outside a runtime is an error, not a panic.

use super::*;

#[tokio::test]
async fn neither_the_password_nor_the_key_reaches_debug_output_or_errors() {
    let url = "redis://user:s3cret-pw@127.0.0.1:1/0";
    let builder = Limits::builder()
        .pacing(Pacing::per_minute(600))
        .redis(url, "telecho-key-1");
    assert!(!format!("{builder:?}").contains("s3cret"));
    let limits = builder.build().unwrap();
    let retry = TelEchoRetry::default().with_limits(limits.clone());
    for text in [
        format!("{limits:?}"),
        format!("{limits:#?}"),
        format!("{retry:?}"),
    ] {
        assert!(!text.contains("s3cret"), "{text}");
        assert!(!text.contains("user"), "{text}");
        assert!(text.contains("127.0.0.1:1"), "{text}");
    }
    let err = Limits::builder()
        .redis("rediss://user:s3cret-pw@", "k")
        .build()
        .unwrap_err();
    let mut chain = format!("{err} {err:?}");
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        chain.push_str(&format!(" {s} {s:?}"));
        source = s.source();
    }
    assert!(!chain.contains("s3cret"), "{chain}");
    for scope in [
        "tel_sk_live_123",
        " tel_sk_live_123",
        "TEL_SK_LIVE_123",
        "Bearer tel_sk_live_123",
        "prod/tel_sk_live_123",
    ] {
        let err = Limits::builder()
            .redis(redis_url(), scope)
            .build()
            .unwrap_err();
        let text = format!("{err} {err:?}").to_ascii_lowercase();
        assert!(!text.contains("tel_sk_live_123"), "{scope:?}: {text}");
    }
}

#[test]
fn building_outside_a_runtime_is_an_error_not_a_panic() {
    let err = Limits::builder()
        .redis(redis_url(), "k")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("tokio runtime"), "{err}");
}
