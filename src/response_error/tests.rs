use super::*;

fn resp(status: u16, body: &'static [u8]) -> http::Response<Bytes> {
    http::Response::builder()
        .status(status)
        .header("retry-after", "12")
        .body(Bytes::from_static(body))
        .unwrap()
}

#[test]
fn success_and_redirects_pass() {
    for s in [200, 201, 204, 301, 304] {
        assert!(resp(s, b"").api_error_for_status().is_ok(), "{s}");
    }
}

#[test]
fn envelope_is_parsed_with_retry_after() {
    let e = resp(
        429,
        br#"{"error":{"type":"rate_limit_error","code":"rate_limit_per_minute","message":"slow down"}}"#,
    )
    .api_error_for_status()
    .unwrap_err();
    assert_eq!(e.code(), Some(&ErrorCode::RateLimitPerMinute));
    assert_eq!(e.retry_after(), Some(Duration::from_secs(12)));
    assert_eq!(
        e.to_string(),
        "429 Too Many Requests: rate_limit_per_minute: slow down"
    );
    assert!(std::error::Error::source(&e).is_some());
}

#[test]
fn non_envelope_keeps_raw_body() {
    let e = resp(502, b"<html>bad gateway</html>")
        .api_error_for_status()
        .unwrap_err();
    assert!(e.api_error().is_none());
    assert_eq!(e.body(), &Bytes::from_static(b"<html>bad gateway</html>"));
    assert_eq!(
        e.to_string(),
        "502 Bad Gateway: response body is not a TelEcho error (24 bytes)"
    );
}

mod async_body {
    use super::*;
    use futures_util::stream::{self, StreamExt};
    use http_body::Frame;
    use http_body_util::StreamBody;
    use tokio::time::Instant;

    type Item = Result<Frame<Bytes>, std::io::Error>;

    fn expect_err<T>(r: Result<T, ResponseError>) -> ResponseError {
        match r {
            Ok(_) => panic!("expected a ResponseError"),
            Err(e) => e,
        }
    }

    fn streaming(
        status: u16,
        chunks: &[&'static [u8]],
        then_stall: bool,
    ) -> http::Response<impl Body<Data = Bytes, Error = std::io::Error> + Unpin + Send> {
        let items: Vec<Item> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from_static(c))))
            .collect();
        let tail = if then_stall {
            stream::pending().boxed()
        } else {
            stream::empty().boxed()
        };
        let body = StreamBody::new(stream::iter(items).chain(tail));
        http::Response::builder()
            .status(status)
            .header("retry-after", "3")
            .body(body)
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn stalled_body_is_kept_as_it_was_at_the_time_bound() {
        let started = Instant::now();
        let e = expect_err(
            streaming(401, &[b"{\"error\":", b"{\"type\""], true)
                .api_error_for_status()
                .await,
        );
        assert_eq!(started.elapsed(), ERROR_BODY_TIMEOUT);
        assert_eq!(e.body(), &Bytes::from_static(b"{\"error\":{\"type\""));
        assert!(e.body_truncated() && e.body_timed_out());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(
            e.to_string(),
            "401 Unauthorized: response body is not a TelEcho error (16 bytes, timed out)"
        );
        assert!(format!("{e:?}").contains("body_timed_out: true"));
    }

    #[tokio::test(start_paused = true)]
    async fn envelope_in_chunks_is_parsed_at_once() {
        let started = Instant::now();
        let e = expect_err(
            streaming(
                429,
                &[
                    br#"{"error":{"type":"rate_limit_error","#,
                    br#""code":"rate_limit_per_hour","message":"later"}}"#,
                ],
                false,
            )
            .api_error_for_status()
            .await,
        );
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(e.code(), Some(&ErrorCode::RateLimitPerHour));
        assert!(!e.body_truncated() && !e.body_timed_out());
    }

    #[tokio::test(start_paused = true)]
    async fn success_is_handed_back_without_reading_the_body() {
        let started = Instant::now();
        let Ok(resp) = streaming(200, &[b"partial"], true)
            .api_error_for_status()
            .await
        else {
            panic!("a 200 passes");
        };
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(resp.status(), 200);
    }

    #[tokio::test(start_paused = true)]
    async fn body_over_the_limit_is_cut_without_waiting() {
        let big: &'static [u8] = Box::leak(vec![b'x'; MAX_ERROR_BODY_BYTES + 1].into_boxed_slice());
        let started = Instant::now();
        let e = expect_err(
            streaming(500, &[big, b"more"], true)
                .api_error_for_status()
                .await,
        );
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "the limit, not the clock, ended it"
        );
        assert_eq!(e.body().len(), MAX_ERROR_BODY_BYTES);
        assert!(e.body_truncated() && !e.body_timed_out());
    }
}

#[test]
fn debug_shows_the_length_of_a_body_that_is_not_an_envelope_not_its_bytes() {
    let body = "<html>upstream error for +4915112345678: secret-token-abc</html>";
    let r = http::Response::builder()
        .status(502)
        .body(Bytes::from_static(body.as_bytes()))
        .unwrap();
    let e = r.api_error_for_status().unwrap_err();
    assert!(e.api_error().is_none());
    let debug = format!("{e:?}");
    for part in ["+4915112345678", "secret-token", "<html>", "upstream"] {
        assert!(!debug.contains(part), "{part} in {debug}");
    }
    assert!(
        debug.contains(&format!("body_len: {}", body.len())),
        "{debug}"
    );
    assert_eq!(
        e.body(),
        body.as_bytes(),
        "the bytes are still there to read"
    );
}

#[test]
fn huge_body_is_truncated_and_not_parsed() {
    let big = Bytes::from(vec![b'x'; MAX_ERROR_BODY_BYTES + 10]);
    let r = http::Response::builder().status(500).body(big).unwrap();
    let e = r.api_error_for_status().unwrap_err();
    assert!(e.body_truncated());
    assert_eq!(e.body().len(), MAX_ERROR_BODY_BYTES);
    assert!(format!("{e:?}").len() < 400, "Debug stays short");
}

#[test]
fn a_truncated_body_does_not_keep_the_whole_buffer_alive() {
    let big = Bytes::from(vec![b'x'; 10 * 1024 * 1024]);
    let r = http::Response::builder()
        .status(500)
        .body(big.clone())
        .unwrap();
    let e = r.api_error_for_status().unwrap_err();
    assert_eq!(e.body().len(), MAX_ERROR_BODY_BYTES);
    assert!(
        big.is_unique(),
        "the error holds a copy, not a slice of 10 MiB"
    );
}
