//! One `Limits` handle shared between two policies; a deadline too far to represent, and an
//! `Either` body copied for a retry.

use super::*;

/// A `service_fn` whose first answer is a 429 with `Retry-After: 5`, then 200; it records
/// when each attempt arrived.
fn limited_once() -> (Svc<Infallible>, Arc<Mutex<Vec<Duration>>>) {
    let times: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let log = Arc::clone(&times);
    let start = Instant::now();
    let svc = service_fn(move |_req: Request<Full<Bytes>>| {
        let n = {
            let mut log = log.lock().unwrap();
            log.push(start.elapsed());
            log.len()
        };
        async move {
            let resp = if n == 1 {
                Response::builder().status(429).header("retry-after", "5")
            } else {
                Response::builder().status(200)
            };
            Ok::<_, Infallible>(resp.body(Full::new(Bytes::new())).unwrap())
        }
    });
    (BoxCloneService::new(svc), times)
}

#[tokio::test(start_paused = true)]
async fn one_limits_handle_holds_back_two_policies() {
    for shared in [true, false] {
        let (inner, times) = limited_once();
        let limits = Limits::builder().without_retry_budget().build();
        let patient = crate::support::unbudgeted(quick().max_retries(8).build());
        let other = crate::support::unbudgeted(quick().max_retries(0).build());
        let (patient, other) = if shared {
            (
                patient.with_limits(limits.clone()),
                other.with_limits(limits),
            )
        } else {
            (patient, other)
        };
        let a = ServiceBuilder::new().layer(patient).service(inner.clone());
        let b = ServiceBuilder::new().layer(other).service(inner);
        let first = tokio::spawn(a.oneshot(with_override(Method::GET, None)));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let resp = b.oneshot(with_override(Method::GET, None)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
        let times = times.lock().unwrap().clone();
        let b_sent = times[1];
        if shared {
            // The other policy's request waited out the first one's 429.
            assert_eq!(b_sent, Duration::from_secs(5), "{times:?}");
        } else {
            assert_eq!(b_sent, Duration::from_secs(1), "{times:?}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_deadline_too_far_to_represent_is_no_deadline() {
    let (inner, seen) = recording(|n| Some(if n < 2 { 503 } else { 200 }));
    for policy_deadline in [Duration::MAX, Duration::from_secs(u64::MAX / 2)] {
        let svc = ServiceBuilder::new()
            .layer(crate::support::unbudgeted(
                quick().deadline(policy_deadline).build(),
            ))
            .service(inner.clone());
        let resp = svc
            .oneshot(with_override(
                Method::GET,
                Some(RetryOverride::new().deadline(Duration::MAX)),
            ))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    assert_eq!(attempts(&seen), 3);
}

#[tokio::test(start_paused = true)]
async fn an_either_body_is_copied_for_a_retry_under_tower() {
    use http_body_util::{BodyExt, Either, Empty};
    let bodies: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let log = Arc::clone(&bodies);
    let inner = service_fn(move |req: Request<Either<Full<Bytes>, Empty<Bytes>>>| {
        let log = Arc::clone(&log);
        async move {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let n = {
                let mut log = log.lock().unwrap();
                log.push(body);
                log.len()
            };
            let status = if n == 1 { 503 } else { 200 };
            Ok::<_, Infallible>(
                Response::builder()
                    .status(status)
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
        }
    });
    let svc = ServiceBuilder::new()
        .layer(crate::support::unbudgeted(quick().build()))
        .service(inner);
    let req = Request::post("/v1/calls")
        .body(Either::Left(Full::new(Bytes::from_static(b"payload"))))
        .unwrap();
    let resp = svc.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(*bodies.lock().unwrap(), [&b"payload"[..], &b"payload"[..]]);
}
