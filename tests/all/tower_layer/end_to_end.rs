//! End to end: hyper-util's client through the layer against a real server, and a
//! first-try success that adds nothing to the response.

use super::*;

/// What the test server saw of one request.
#[derive(Debug)]
struct Seen {
    method: Method,
    path: String,
    body: Bytes,
    at: std::time::Instant,
}

#[tokio::test]
async fn hyper_util_client_through_the_layer_against_a_real_server() {
    use hyper::body::Incoming;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));

    let log = seen.clone();
    let server = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let log = log.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let log = log.clone();
                    async move {
                        let at = std::time::Instant::now();
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await?.to_bytes();
                        let n = {
                            let mut log = log.lock().unwrap();
                            log.push(Seen {
                                method: parts.method,
                                path: parts.uri.path().to_owned(),
                                body,
                                at,
                            });
                            log.len()
                        };
                        let resp = match n {
                            1 => Response::builder()
                                .status(503)
                                .body(Full::new(Bytes::from_static(b"{\"error\":{}}"))),
                            2 => Response::builder()
                                .status(429)
                                .header(RETRY_AFTER, "1")
                                .body(Full::new(Bytes::from_static(b"{\"error\":{}}"))),
                            _ => Response::builder()
                                .status(200)
                                .body(Full::new(Bytes::from_static(b"{\"id\":\"tel_call_1\"}"))),
                        };
                        Ok::<_, hyper::Error>(resp.unwrap())
                    }
                });
                // A connection the client gives up on ends with an error: not the test's concern.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });

    let policy = RetryPolicy::builder()
        .base_delay(ms(50))
        .retry_after_spread(ms(100))
        .build();
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let client = ServiceBuilder::new()
        .layer(TelEchoRetry::new(policy))
        .service(client);

    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{addr}/v1/calls"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(
            b"{\"agent_id\":\"tel_agent_1\",\"to\":\"+15550100\"}",
        )))
        .unwrap();
    let resp = tokio::time::timeout(secs(30), client.oneshot(req))
        .await
        .expect("finished in time")
        .expect("a response");

    // What the client got.
    assert_eq!(resp.status(), StatusCode::OK);
    let info = info(&resp);
    assert_eq!(info.attempts(), 3);
    assert_eq!(info.stop_reason(), Some(StopReason::Success));
    assert!(info.slept() >= secs(1) + ms(50), "{info:?}");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, Bytes::from_static(b"{\"id\":\"tel_call_1\"}"));

    // What the server saw.
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "{seen:?}");
    for s in seen.iter() {
        assert_eq!(s.method, Method::POST);
        assert_eq!(s.path, "/v1/calls");
        assert_eq!(
            s.body,
            Bytes::from_static(b"{\"agent_id\":\"tel_agent_1\",\"to\":\"+15550100\"}")
        );
    }
    let gap = seen[2].at - seen[1].at;
    assert!(
        gap >= secs(1),
        "the retry after `Retry-After: 1` came {gap:?} later"
    );
    drop(seen);
    server.abort();
}

#[tokio::test(start_paused = true)]
async fn first_try_success_adds_nothing_to_the_response() {
    let svc = tower::ServiceBuilder::new()
        .layer(TelEchoRetry::default())
        .service(tower::service_fn(|_req: Request<Full<Bytes>>| async {
            Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new())))
        }));
    let resp = svc
        .oneshot(Request::new(Full::new(Bytes::from_static(b"x"))))
        .await
        .unwrap();
    assert!(
        resp.extensions().is_empty(),
        "no allocation on the success path"
    );
    let info = RetryInfo::of(resp.extensions());
    assert_eq!(
        (info.attempts(), info.stop_reason()),
        (1, Some(StopReason::Success))
    );
}
