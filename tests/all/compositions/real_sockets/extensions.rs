//! Real sockets: the reqwest middleware keeps the caller's extensions on every outcome.

use super::*;

// ----- the reqwest middleware keeps the caller's extensions -----

#[tokio::test]
async fn the_callers_extensions_survive_every_outcome_with_retry_info_reqwest_middleware() {
    bounded(async {
        let flaky = first_then("/flaky", Reply::status(503), Reply::status(200));
        let server = Server::start(move |seen| match seen.path.as_str() {
            "/missing" => Reply::status(404),
            "/down" => Reply::status(503),
            _ => flaky(seen),
        })
        .await;
        let limiting = Server::start(|_| limited_reply("3600")).await;
        let silent = RawServer::start(Misbehave::Silent).await;
        let plain = reqwest_client(unbudgeted(fast().max_retries(2).build()));
        let timed = reqwest_client(unbudgeted(
            fast().max_retries(1).attempt_timeout(ms(100)).build(),
        ));
        let bounded_client =
            reqwest_client(unbudgeted(fast().max_retries(1).deadline(ms(100)).build()));

        // (client, method, url, Ok(status) or Err(engine kind or None for inner), attempts, stop)
        type Want = Result<u16, Option<RetryErrorKind>>;
        let cases: Vec<(&ClientWithMiddleware, Method, String, Want, u32, StopReason)> = vec![
            (
                &plain,
                Method::GET,
                server.url("/ok"),
                Ok(200),
                1,
                StopReason::Success,
            ),
            (
                &plain,
                Method::GET,
                server.url("/flaky"),
                Ok(200),
                2,
                StopReason::Success,
            ),
            (
                &plain,
                Method::GET,
                server.url("/missing"),
                Ok(404),
                1,
                StopReason::Fatal,
            ),
            (
                &plain,
                Method::GET,
                server.url("/down"),
                Ok(503),
                3,
                StopReason::MaxRetries,
            ),
            (
                &plain,
                Method::POST,
                refused_url(),
                Err(None),
                3,
                StopReason::MaxRetries,
            ),
            (
                &timed,
                Method::GET,
                silent.url(),
                Err(Some(RetryErrorKind::AttemptTimeout)),
                2,
                StopReason::MaxRetries,
            ),
            (
                &timed,
                Method::POST,
                silent.url(),
                Err(Some(RetryErrorKind::AttemptTimeout)),
                1,
                StopReason::Fatal,
            ),
            (
                &bounded_client,
                Method::GET,
                silent.url(),
                Err(Some(RetryErrorKind::Deadline)),
                1,
                StopReason::Deadline,
            ),
            (
                &plain,
                Method::GET,
                limiting.url("/"),
                Ok(429),
                1,
                StopReason::RetryAfterTooLong,
            ),
            (
                &plain,
                Method::GET,
                limiting.url("/again"),
                Err(Some(RetryErrorKind::RateLimited)),
                0,
                StopReason::RetryAfterTooLong,
            ),
        ];
        for (client, method, url, want, attempts, stop) in cases {
            let what = format!("{method} {url}");
            let (result, extensions) = execute(client, method, &url).await;
            assert_eq!(
                extensions.get::<CallerTag>(),
                Some(&CallerTag("caller")),
                "{what}: the caller's extensions are kept"
            );
            let info = RetryInfo::of(&extensions);
            assert_eq!(
                (info.attempts(), info.stop_reason()),
                (attempts, Some(stop)),
                "{what}"
            );
            // Only a first-try success may leave the info out (it reads as such).
            if !info.is_first_try_success() {
                assert!(extensions.get::<RetryInfo>().is_some(), "{what}");
            }
            match (result, want) {
                (Ok(resp), Ok(status)) => {
                    assert_eq!(resp.status(), status, "{what}");
                    assert_eq!(RetryInfo::of(resp.extensions()), info, "{what}");
                }
                (Err(e), Err(want)) => {
                    let err = RetryError::of(&e).expect("a RetryError");
                    assert_eq!(err.info(), info, "{what}");
                    match want {
                        Some(kind) => assert_eq!(err.kind(), kind, "{what}"),
                        None => {
                            assert_eq!(err.kind(), RetryErrorKind::Inner, "{what}");
                            let inner = err
                                .get_inner()
                                .and_then(|e| e.downcast_ref::<reqwest::Error>());
                            assert!(
                                inner.is_some_and(reqwest::Error::is_connect),
                                "{what}: {e:?}"
                            );
                        }
                    }
                }
                (result, want) => panic!("{what}: got {result:?}, want {want:?}"),
            }
        }
    })
    .await;
}
