//! A burst after 429s cut the rate to its floor is not refused up front.

use super::*;

/// After 429s have cut the rate to its floor, a burst of 100 with a 10 s deadline: slow
/// start drains it in seconds, so none is refused up front from the floor's rate.
#[tokio::test(start_paused = true)]
async fn a_burst_after_the_rate_was_cut_to_its_floor_is_not_refused_up_front() {
    let throttling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let server = {
        let throttling = Arc::clone(&throttling);
        service_fn(move |_req: Req| {
            let limited = throttling.load(std::sync::atomic::Ordering::SeqCst);
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok::<_, Infallible>(answer(!limited, 1, None))
            }
        })
    };
    let policy = RetryPolicy::builder()
        .deadline(Duration::from_secs(10))
        .build();
    let svc = tower::ServiceBuilder::new()
        .layer(TelEchoRetry::new(policy))
        .service(server);
    // 429s, seconds apart: each a new event, each a cut.
    for _ in 0..6 {
        let _ = svc.clone().oneshot(get_calls()).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    throttling.store(false, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let start = Instant::now();
    let burst = (0..100).map(|_| svc.clone().oneshot(get_calls()));
    let results = futures_util::future::join_all(burst).await;
    let refused = results.iter().filter(|r| r.is_err()).count();
    eprintln!(
        "burst of 100: {refused} refused, the last done after {:?}",
        start.elapsed()
    );
    assert_eq!(refused, 0, "refused from the floor's rate");
    assert!(start.elapsed() < Duration::from_secs(10));
}
