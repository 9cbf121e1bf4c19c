//! The retry budget: a flood of 503s stops at the budget and resumes as it refills.

use super::*;

#[tokio::test(start_paused = true)]
async fn a_flood_of_503s_stops_at_the_budget_and_resumes_as_it_refills() {
    let server = Server::new();
    let inner = always(&server, 503);
    // No share of traffic, a floor of 1 retry per second over 10 s: 10 retries per window.
    let policy = exact()
        .max_retries(3)
        .base_delay(Duration::from_millis(100))
        .build();
    let svc = tower::ServiceBuilder::new()
        .layer(crate::support::budgeted(
            policy,
            RetryBudget::new(Duration::from_secs(10), 1, 0.0),
        ))
        .service(inner);

    let first = flood(svc.clone()).await;
    let retries: u32 = first.iter().map(|r| r.0).sum();
    assert_eq!(retries, 10, "the budget allows 10 retries in the window");
    assert!(first.iter().any(|r| r.1 == StopReason::Budget));
    assert_eq!(server.seen().len(), 30);

    // Still inside the window: no retries at all.
    let second = flood(svc.clone()).await;
    assert!(
        second.iter().all(|r| r == &(0, StopReason::Budget)),
        "{second:?}"
    );

    // The window slides past: the budget has refilled.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let third = flood(svc).await;
    assert_eq!(third.iter().map(|r| r.0).sum::<u32>(), 10);
}

/// Sends 20 concurrent GETs; returns each one's (retries, stop reason).
async fn flood<S>(svc: S) -> Vec<(u32, StopReason)>
where
    S: Service<Req, Response = Response<ResponseBody<Full<Bytes>>>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug + Send,
{
    let mut tasks = Vec::new();
    for _ in 0..20 {
        tasks.push(tokio::spawn(svc.clone().oneshot(request(Method::GET))));
    }
    let mut reasons = Vec::new();
    for t in tasks {
        let resp = t.await.unwrap().unwrap();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        let info = *resp.extensions().get::<RetryInfo>().unwrap();
        reasons.push((info.retries(), info.stop_reason().unwrap()));
    }
    reasons
}
