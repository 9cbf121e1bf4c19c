//! The same scenarios through the reqwest middleware.

use super::*;
use crate::support::{Reply, Server};

fn fast() -> RetryPolicyBuilder {
    exact()
        .base_delay(Duration::from_millis(10))
        .max_delay(Duration::from_millis(100))
}

fn client(retry: TelEchoRetry) -> ::reqwest_middleware::ClientWithMiddleware {
    ::reqwest_middleware::ClientBuilder::new(reqwest::Client::builder().no_proxy().build().unwrap())
        .with(retry)
        .build()
}

#[test]
fn reqwest_503_503_200() {
    let m = record(false, || async {
        let server = Server::scripted(vec![
            Reply::status(503),
            Reply::status(503),
            Reply::status(200),
        ])
        .await;
        let resp = client(TelEchoRetry::new(fast().build()))
            .get(server.url("/v1/agents"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    });
    assert_eq!(
        m,
        expect(&[
            (
                "telecho_retry.requests{status_class=2xx,stop_reason=success}",
                V::C(1)
            ),
            (
                "telecho_retry.retries{decision=backoff,status_class=5xx}",
                V::C(2)
            ),
            (
                "telecho_retry.retry_delay{decision=backoff}",
                V::H(vec![0.01, 0.02])
            ),
        ])
    );
}

#[test]
fn reqwest_429_retry_after_holds_back_a_second_request() {
    let m = record(false, || async {
        let server = Server::scripted(vec![
            Reply::status(429).header("retry-after", "1"),
            Reply::status(200),
        ])
        .await;
        let client = client(unpaced(fast().build()));
        let first = tokio::spawn({
            let request = client.get(server.url("/v1/agents"));
            async move { request.send().await.unwrap().status() }
        });
        // The second request starts once the first has met its 429.
        while server.hits("/v1/agents") == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let second = client.get(server.url("/v1/agents")).send().await.unwrap();
        assert_eq!(second.status(), 200);
        assert_eq!(first.await.unwrap(), 200);
    });
    let wait = rounded(&m, "telecho_retry.cooldown.delay");
    assert_eq!(wait.len(), 1);
    assert!(wait[0] > 0.5 && wait[0] < 1.0, "held back for {wait:?}");
    let mut without_wait = m.clone();
    without_wait.remove("telecho_retry.cooldown.delay");
    assert_eq!(
        without_wait,
        expect(&[
            (
                "telecho_retry.requests{status_class=2xx,stop_reason=success}",
                V::C(2)
            ),
            (
                "telecho_retry.retries{decision=retry_after,status_class=4xx}",
                V::C(1)
            ),
            (
                "telecho_retry.retry_delay{decision=retry_after}",
                V::H(vec![1.0])
            ),
            ("telecho_retry.cooldown.holds", V::C(1)),
        ])
    );
}

#[test]
fn reqwest_budget_refusal() {
    let m = record(false, || async {
        let server = Server::scripted(vec![Reply::status(503)]).await;
        let resp = client(no_budget())
            .get(server.url("/v1/agents"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 503);
    });
    assert_eq!(
        m,
        expect(&[
            (
                "telecho_retry.requests{status_class=5xx,stop_reason=budget}",
                V::C(1)
            ),
            ("telecho_retry.budget.refusals{status_class=5xx}", V::C(1)),
        ])
    );
}

#[test]
fn reqwest_fatal_401() {
    let m = record(false, || async {
        let server = Server::scripted(vec![Reply::status(401)]).await;
        let resp = client(TelEchoRetry::new(fast().build()))
            .get(server.url("/v1/agents"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
    });
    assert_eq!(
        m,
        expect(&[(
            "telecho_retry.requests{status_class=4xx,stop_reason=fatal}",
            V::C(1)
        )])
    );
}
