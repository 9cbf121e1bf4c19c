//! Paused clock: the retry budget's ratio, at once and in every 10 s window.

use super::*;

// ----- the budget's ratio -----

const RATIOS: [f32; 10] = [0.05, 0.1, 0.2, 0.25, 1.0 / 3.0, 0.5, 0.6, 0.75, 0.9, 1.0];

async fn the_retry_budget_allows_its_ratio_of_100_requests<E: FnError>() {
    for ratio in RATIOS {
        let fake = Fake::new(|_, _| Answer::Status(503));
        let policy = exact().max_retries(1).base_delay(ms(100)).build();
        let mut svc = over_fake::<E>(
            budgeted(policy, RetryBudget::new(secs(10), 0, ratio)),
            &fake,
        );
        let results = at_once(&mut svc, &a("/"), 100).await;
        let retries = fake.total() as i64 - 100;
        let want = share_of_100(ratio);
        assert!(
            (retries - want).abs() <= 1,
            "ratio {ratio}: {retries} retries for 100 requests, want {want} ± 1"
        );
        let budget = results
            .iter()
            .filter(|r| info(r.as_ref().unwrap()).stop_reason() == Some(StopReason::Budget))
            .count() as i64;
        assert_eq!(budget, 100 - retries, "ratio {ratio}");
    }
}

/// Steady traffic for 40 s, a request every 100 ms, every attempt a 503 and one retry
/// wanted per request. Budget: 20 % of requests plus 1 retry per second, over 10 s. In
/// every 10 s window the retries sent stay within the share of that window's requests
/// (20 of 100, plus 10), and over the last 30 s they use at least 9/10 of its share (a
/// request counts for 0.9 to 1 × the window, a retry for 1 to 1.1 ×: the budget errs
/// on the side of fewer retries).
async fn the_retry_budget_holds_its_share_in_every_10_s_window<E: FnError>() {
    const RATIO: f64 = 0.2;
    const FLOOR: usize = 10; // 1 per second over 10 s
    let fake = Fake::new(|_, _| Answer::Status(503));
    let policy = exact().max_retries(1).base_delay(ms(50)).build();
    let svc = over_fake::<E>(budgeted(policy, RetryBudget::new(secs(10), 1, 0.2)), &fake);
    let mut requests = Vec::new();
    for i in 0..400 {
        requests.push(tokio::spawn(svc.clone().oneshot(get(&a(&format!("/{i}"))))));
        tokio::time::sleep(ms(100)).await;
    }
    for request in requests {
        assert_eq!(request.await.unwrap().unwrap().status(), 503);
    }
    // The first attempt to each path is its request, the second its retry.
    let (mut firsts, mut retries) = (Vec::new(), Vec::new());
    for i in 0..400 {
        let at = fake.at(&a(&format!("/{i}")));
        firsts.push(at[0]);
        retries.extend(at.get(1).copied());
        assert!(at.len() <= 2);
    }
    let in_window = |times: &[Duration], from: Duration| {
        times
            .iter()
            .filter(|t| **t >= from && **t < from + secs(10))
            .count()
    };
    // Windows starting every 50 ms (on request and on retry times alike).
    for from in (0..=600).map(|k| ms(50) * k) {
        let sent = in_window(&firsts, from);
        let retried = in_window(&retries, from);
        let share = (RATIO * sent as f64).floor() as usize + FLOOR;
        assert!(
            retried <= share,
            "{retried} retries in the 10 s from {from:?}, for {sent} requests: share {share}"
        );
    }
    // And it is not starved: once the traffic is steady, the retries of the last 30 s
    // use at least 9/10 of those 30 s' share (the budget is bursty within that: the
    // floor's retries come back together as a slot leaves the window).
    let steady = |times: &[Duration]| times.iter().filter(|t| **t >= secs(10)).count();
    let share = (RATIO * steady(&firsts) as f64).floor() as usize + 3 * FLOOR;
    let retried = steady(&retries);
    assert!(
        retried * 10 >= share * 9 && retried <= share,
        "{retried} retries in the last 30 s: the share is {share}"
    );
}

service_fn_tests! {
    the_retry_budget_holds_its_share_in_every_10_s_window {
        io::Error => the_retry_budget_holds_its_share_in_every_10_s_window_tower_service_fn_io;
    }
    the_retry_budget_allows_its_ratio_of_100_requests {
        io::Error => the_retry_budget_allows_its_ratio_of_100_requests_tower_service_fn_io;
        BoxError => the_retry_budget_allows_its_ratio_of_100_requests_tower_service_fn_box;
    }
}
