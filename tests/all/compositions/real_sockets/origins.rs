//! Real sockets: per-origin limits (cooldown, budget), past the limits' bound of 1024
//! origins too.

use super::*;

// ----- per-origin limits -----

async fn a_429_from_one_origin_does_not_hold_back_another<C: Adapter>() {
    let limiting = Server::start(first_then(
        "/limited",
        limited_reply("1"),
        Reply::status(200),
    ))
    .await;
    let other = Server::start(|_| Reply::status(200)).await;
    let client = C::over(unbudgeted(fast().max_retries(0).build()));

    let got = client.send(Method::GET, limiting.url("/limited")).await;
    assert_eq!(got.status(), 429);
    let t = std::time::Instant::now();
    let got = client.send(Method::GET, other.url("/ok")).await;
    assert_eq!(got.status(), 200);
    assert!(t.elapsed() < ms(500), "held back: {:?}", t.elapsed());
    let got = client.send(Method::GET, limiting.url("/ok")).await;
    assert_eq!(got.status(), 200);
    assert!(t.elapsed() >= ms(800), "not held back: {:?}", t.elapsed());
}

async fn the_retry_budget_is_kept_per_origin<C: Adapter>() {
    let first = Server::start(|_| Reply::status(503)).await;
    let second = Server::start(|_| Reply::status(503)).await;
    let policy = fast().max_retries(1).build();
    let client = C::over(budgeted(policy, RetryBudget::new(secs(10), 1, 0.0)));
    for server in [&first, &second] {
        let got = join_all((0..20).map(|_| client.send(Method::GET, server.url("/")))).await;
        assert_eq!(server.seen().len(), 30, "20 requests + 10 retries");
        let budget = got
            .iter()
            .filter(|g| g.info().stop_reason() == Some(StopReason::Budget))
            .count();
        assert_eq!(budget, 10);
    }
}

real_socket_tests! {
    a_429_from_one_origin_does_not_hold_back_another {
        HyperUtil => a_429_from_one_origin_does_not_hold_back_another_tower_hyper_util;
        ReqwestMiddleware => a_429_from_one_origin_does_not_hold_back_another_reqwest_middleware;
    }
    the_retry_budget_is_kept_per_origin {
        HyperUtil => the_retry_budget_is_kept_per_origin_tower_hyper_util;
        ReqwestMiddleware => the_retry_budget_is_kept_per_origin_reqwest_middleware;
    }
}

// ----- more origins than the limits keep apart (1024) -----

/// A reqwest client with the retry middleware whose host `h{i}.test` resolves to
/// `addr(i)`, for `i` below `n` (one loopback server, `n` origins).
fn reqwest_client_for_hosts(
    retry: TelEchoRetry,
    n: usize,
    addr: impl Fn(usize) -> SocketAddr,
) -> ClientWithMiddleware {
    let mut builder = reqwest::Client::builder().no_proxy();
    for i in 0..n {
        builder = builder.resolve(&format!("h{i}.test"), addr(i));
    }
    ClientBuilder::new(builder.build().unwrap())
        .with(retry)
        .build()
}

/// Sends a GET to each of `urls` at once through `client`; the results in order.
async fn get_all(
    client: &ClientWithMiddleware,
    urls: impl Iterator<Item = String>,
) -> Vec<reqwest_middleware::Result<reqwest::Response>> {
    let sent = urls.map(|url| async move { execute(client, Method::GET, &url).await.0 });
    join_all(sent).await
}

/// The `RetryError` of a middleware error.
#[track_caller]
fn retry_error_of(result: &reqwest_middleware::Result<reqwest::Response>) -> &RetryError {
    match result {
        Err(reqwest_middleware::Error::Middleware(e)) => {
            e.downcast_ref::<RetryError>().expect("a RetryError")
        }
        other => panic!("expected a RetryError, got {other:?}"),
    }
}

/// 300 origins (one server under 300 host names) each answer 429 `Retry-After: 3600`,
/// above the 60 s cap: a second request to each fails at once, never sent, past the
/// bound of 1024 origins the limits keep apart too. (Past the bound origins share 16
/// overflow limits: a first request there may be refused by another's 429.)
#[tokio::test]
async fn no_origin_is_sent_to_during_its_cooldown_past_the_origin_bound_reqwest_middleware() {
    const ORIGINS: usize = 1100;
    // A thousand origins and more, each a connection: longer than the usual bound.
    bounded_for(secs(30), async {
        let server = Server::start(|seen| match seen.path.as_str() {
            "/limited" => limited_reply("3600"),
            _ => Reply::status(200),
        })
        .await;
        let retry = unbudgeted(fast().max_retries(0).build());
        let client = reqwest_client_for_hosts(retry, ORIGINS, |_| server.addr);
        let port = server.addr.port();
        let url = |i: usize, path: &str| format!("http://h{i}.test:{port}{path}");
        let first = get_all(&client, (0..ORIGINS).map(|i| url(i, "/limited"))).await;
        for (i, result) in first.iter().enumerate() {
            match result {
                Ok(resp) => assert_eq!(resp.status(), 429, "origin {i}"),
                Err(_) => assert!(
                    i >= 1024 && retry_error_of(result).is_rate_limited(),
                    "origin {i}: {result:?}"
                ),
            }
        }
        let again = get_all(&client, (0..ORIGINS).map(|i| url(i, "/again"))).await;
        for (i, result) in again.iter().enumerate() {
            let err = retry_error_of(result);
            assert_eq!(err.kind(), RetryErrorKind::RateLimited, "origin {i}");
            let left = err.cooldown().expect("the cooldown left");
            assert!(
                left > secs(3590) && left <= secs(3600),
                "origin {i}: {left:?}"
            );
            assert_eq!(err.info().attempts(), 0, "origin {i}");
        }
        assert_eq!(server.hits("/again"), 0, "none sent during its cooldown");
    })
    .await;
}

/// Pacing 1 per 10 s and a 5 s cap: `h0.test` takes its slot, then 1025 other origins
/// take theirs (they resolve to a closed port: a refused connection is quick, and a
/// slot is taken all the same): `h0.test`'s next slot is still ~10 s off, beyond the
/// cap: refused at once by the client's own pacing, not sent.
#[tokio::test]
async fn an_origins_pacing_holds_past_the_origin_bound_reqwest_middleware() {
    // A thousand origins and more, each a connection: longer than the usual bound.
    bounded_for(secs(30), async {
        let server = Server::start(|_| Reply::status(200)).await;
        let closed: SocketAddr = refused_url()[7..]
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let retry = paced(
            fast().max_retries(0).max_retry_after(secs(5)).build(),
            Pacing::new(1, secs(10)),
        );
        let client =
            reqwest_client_for_hosts(retry, 1026, |i| if i == 0 { server.addr } else { closed });
        let url = |i: usize, path: &str| {
            let port = if i == 0 {
                server.addr.port()
            } else {
                closed.port()
            };
            format!("http://h{i}.test:{port}{path}")
        };
        let (result, _) = execute(&client, Method::GET, &url(0, "/1")).await;
        assert_eq!(result.unwrap().status(), 200);
        let others = get_all(&client, (1..1026).map(|i| url(i, "/"))).await;
        assert!(others.iter().all(|r| r.is_err()), "refused connections");
        let (result, _) = execute(&client, Method::GET, &url(0, "/2")).await;
        let err = retry_error_of(&result);
        assert_eq!(err.kind(), RetryErrorKind::RateLimited);
        let wait = err.cooldown().expect("the wait for the slot");
        assert!(wait > secs(8) && wait <= secs(10), "{wait:?}");
        assert!(err.to_string().contains("client-side pacing"), "{err}");
        assert_eq!(server.hits("/2"), 0);
    })
    .await;
}
