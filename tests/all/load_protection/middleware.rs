//! The same features through the reqwest middleware, against a real server on loopback,
//! with short real delays.

use super::support::{Misbehave, RawServer, Reply, Server};
use super::*;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};

fn client(retry: TelEchoRetry) -> ClientWithMiddleware {
    let inner = reqwest::Client::builder().no_proxy().build().unwrap();
    ClientBuilder::new(inner).with(retry).build()
}

fn fast() -> telecho_retry::RetryPolicyBuilder {
    exact()
        .base_delay(Duration::from_millis(20))
        .max_delay(Duration::from_millis(200))
}

fn info(resp: &reqwest::Response) -> RetryInfo {
    *resp.extensions().get::<RetryInfo>().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_429_holds_back_every_request_of_the_client() {
    let server = Server::start(|seen| {
        if seen.path == "/first" {
            Reply::status(429).header("retry-after", "1")
        } else {
            Reply::status(200)
        }
    })
    .await;
    let client = client(TelEchoRetry::new(fast().max_retries(0).build()));
    let first = client.get(server.url("/first")).send().await.unwrap();
    assert_eq!(first.status(), 429);
    let limited_at = std::time::Instant::now();

    let mut tasks = Vec::new();
    for _ in 0..20 {
        let client = client.clone();
        let url = server.url("/later");
        tasks.push(tokio::spawn(async move { client.get(url).send().await }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().status(), 200);
    }
    let seen = server.seen();
    assert_eq!(
        seen.len(),
        21,
        "one 429, then 20 successes: no request collected its own 429"
    );
    let first_429 = seen[0].at;
    for s in &seen[1..] {
        assert!(
            s.at.duration_since(first_429) >= Duration::from_secs(1),
            "{:?}",
            s.at - first_429
        );
    }
    assert!(limited_at.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn generated_key_and_attempt_header_through_the_middleware() {
    let server = Server::scripted(vec![
        Reply::status(503),
        Reply::status(503),
        Reply::status(201),
    ])
    .await;
    let policy = fast()
        .generate_idempotency_keys(true)
        .attempt_header(http::HeaderName::from_static("x-retry-attempt"))
        .build();
    let client = client(TelEchoRetry::new(policy));
    let resp = client
        .post(server.url("/v1/calls"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let get = client.get(server.url("/v1/agents")).send().await.unwrap();
    assert_eq!(get.status(), 201);

    let seen = server.seen();
    assert_eq!(seen.len(), 4);
    let keys: Vec<_> = seen[..3]
        .iter()
        .map(|s| s.headers["idempotency-key"].clone())
        .collect();
    assert_eq!(keys[0].len(), 36);
    assert!(keys.iter().all(|k| *k == keys[0]));
    let attempts: Vec<_> = seen[..3]
        .iter()
        .map(|s| s.headers["x-retry-attempt"].clone())
        .collect();
    assert_eq!(attempts, ["1", "2", "3"]);
    assert!(
        !seen[3].headers.contains_key("idempotency-key"),
        "no key on a GET"
    );
    assert_eq!(seen[3].headers["x-retry-attempt"], "1");
}

/// Records the `AttemptNumber` each attempt carries, below the retry middleware.
#[derive(Clone, Default)]
struct SeesAttempts(Arc<Mutex<Vec<Option<u32>>>>);

#[async_trait::async_trait]
impl Middleware for SeesAttempts {
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut http::Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        self.0
            .lock()
            .unwrap()
            .push(extensions.get::<AttemptNumber>().map(|a| a.0));
        next.run(req, extensions).await
    }
}

#[tokio::test]
async fn attempt_number_extension_reaches_the_next_middleware() {
    let server = Server::scripted(vec![Reply::status(502), Reply::status(200)]).await;
    let sees = SeesAttempts::default();
    let inner = reqwest::Client::builder().no_proxy().build().unwrap();
    let client = ClientBuilder::new(inner)
        .with(TelEchoRetry::new(fast().build()))
        .with(sees.clone())
        .build();
    client.get(server.url("/")).send().await.unwrap();
    assert_eq!(*sees.0.lock().unwrap(), [None, Some(2)]);
}

#[tokio::test]
async fn deadline_through_the_middleware() {
    let server = Server::start(|_| Reply::status(503)).await;
    // Attempts at 0 and 100 ms; the next delay (200 ms) would end past 250 ms.
    let policy = exact()
        .base_delay(Duration::from_millis(100))
        .max_retries(10)
        .deadline(Duration::from_millis(250))
        .build();
    let started = std::time::Instant::now();
    let resp = client(TelEchoRetry::new(policy))
        .get(server.url("/"))
        .send()
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(resp.status(), 503);
    assert_eq!(server.seen().len(), 2);
    assert_eq!(info(&resp).stop_reason(), Some(StopReason::Deadline));
}

#[tokio::test]
async fn attempt_timeout_through_the_middleware() {
    let server = RawServer::start(Misbehave::Silent).await;
    let policy = fast()
        .max_retries(2)
        .attempt_timeout(Duration::from_millis(100))
        .build();
    let c = client(TelEchoRetry::new(policy.clone()));
    let started = std::time::Instant::now();
    let err = c.get(server.url()).send().await.unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(300 + 20 + 40));
    let reqwest_middleware::Error::Middleware(e) = &err else {
        panic!("{err:?}");
    };
    let e = e.downcast_ref::<telecho_retry::RetryError>().unwrap();
    assert_eq!(e.kind(), RetryErrorKind::AttemptTimeout, "{err:?}");
    assert_eq!(e.info().attempts(), 3);
    assert_eq!(server.requests(), 3, "a GET that timed out is retried");

    let server = RawServer::start(Misbehave::Silent).await;
    let c = client(TelEchoRetry::new(policy));
    c.post(server.url()).body("{}").send().await.unwrap_err();
    assert_eq!(server.requests(), 1, "a POST that timed out is not");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_through_the_middleware() {
    let server = Server::start(|_| Reply::status(503)).await;
    let policy = fast().max_retries(1).build();
    let client = client(crate::support::budgeted(
        policy,
        RetryBudget::new(Duration::from_secs(10), 1, 0.0),
    ));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let c = client.clone();
        let url = server.url("/");
        tasks.push(tokio::spawn(
            async move { c.get(url).send().await.unwrap() },
        ));
    }
    let mut budget_stops = 0;
    for t in tasks {
        let resp = t.await.unwrap();
        if info(&resp).stop_reason() == Some(StopReason::Budget) {
            budget_stops += 1;
        }
    }
    assert_eq!(
        server.seen().len(),
        30,
        "20 requests + the 10 retries the budget allows"
    );
    assert_eq!(budget_stops, 10);
}
