//! The status matrix (exactly 429 and 5xx are retried), and `Retry-After` in seconds and
//! as an HTTP date, waited out at the server.

use super::*;

// ===== the status matrix =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_matrix_retries_exactly_429_and_5xx() {
    let server = Server::start(|seen| {
        let status: u16 = seen.path.trim_start_matches("/status/").parse().unwrap();
        Reply::status(status).body(format!("status {status}"))
    })
    .await;
    // 400 requests at once: this test is about the status rule, not the retry budget
    // (which would rightly stop some of these 202 retries; see tests/all/load_protection/).
    let client = client(crate::support::unbudgeted(fast(2).build()));
    let started = Instant::now();

    // Every status from 200 to 599 (1xx are not final responses: hyper cannot send them
    // as one). Redirects are not followed: the client has `redirect::Policy::none()`.
    let results: Vec<(u16, reqwest_middleware::Result<reqwest::Response>)> =
        futures_util::stream::iter(200u16..=599)
            .map(|status| {
                let client = client.clone();
                let url = server.url(&format!("/status/{status}"));
                async move { (status, client.get(url).send().await) }
            })
            .buffer_unordered(50)
            .collect()
            .await;
    let elapsed = started.elapsed();

    assert_eq!(results.len(), 400);
    let mut wrong = Vec::new();
    for (status, result) in results {
        let want = if status == 429 || (500..=599).contains(&status) {
            3
        } else {
            1
        };
        let hits = server.hits(&format!("/status/{status}"));
        match result {
            Ok(resp) => {
                let got = (
                    resp.status().as_u16(),
                    hits,
                    info(&resp).attempts() as usize,
                );
                if got != (status, want, want) {
                    wrong.push(format!(
                        "{status}: want {want} hits, got (status, hits, attempts) = {got:?}"
                    ));
                }
            }
            Err(e) => wrong.push(format!("{status}: error {e}")),
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert!(
        elapsed < Duration::from_secs(10),
        "the matrix took {elapsed:?}"
    );
}

// ===== Retry-After =====

#[tokio::test]
async fn retry_after_seconds_is_waited_out_at_the_server() {
    let server = Server::scripted(vec![
        Reply::status(429).header("retry-after", "1"),
        Reply::status(200).body("ok"),
    ])
    .await;
    let client = client(TelEchoRetry::new(fast(2).build()));

    let resp = client.get(server.url("/v1/agents")).send().await.unwrap();

    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(info(&resp).attempts(), 2);
    assert_eq!(info(&resp).slept(), Duration::from_secs(1));
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    let gap = seen[1].at - seen[0].at;
    assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");
    assert!(gap < Duration::from_millis(1900), "retried after {gap:?}");
}

#[tokio::test]
async fn retry_after_http_date_is_waited_out_at_the_server() {
    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(2));
    // The header has whole seconds: the instant the server names is this one.
    let told = httpdate::parse_http_date(&date).unwrap();
    let server = Server::scripted(vec![
        Reply::status(503).header("retry-after", date.clone()),
        Reply::status(200).body("ok"),
    ])
    .await;
    let client = client(TelEchoRetry::new(fast(2).build()));

    let resp = client.get(server.url("/v1/agents")).send().await.unwrap();

    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(info(&resp).attempts(), 2);
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert!(
        seen[1].wall >= told,
        "retry arrived {:?} before the Retry-After date {date}",
        told.duration_since(seen[1].wall).unwrap_or_default()
    );
    let gap = seen[1].at - seen[0].at;
    // The date is 1-2 s ahead of the first request; a 10 ms backoff would be far shorter.
    assert!(gap > Duration::from_millis(900), "retried after {gap:?}");
    assert!(gap < Duration::from_millis(2900), "retried after {gap:?}");
}
