//! Real sockets: the retry budget's ratio of 100 requests.

use super::*;

// ----- the budget's ratio -----

async fn the_retry_budget_allows_its_ratio_of_100_requests<C: Adapter>() {
    for ratio in [0.3, 0.6] {
        let server = Server::start(|_| Reply::status(503)).await;
        let policy = fast().max_retries(1).build();
        let client = C::over(budgeted(policy, RetryBudget::new(secs(10), 0, ratio)));
        let got = join_all((0..100).map(|_| client.send(Method::GET, server.url("/")))).await;
        let retries = server.seen().len() as i64 - 100;
        let want = share_of_100(ratio);
        assert!(
            (retries - want).abs() <= 1,
            "ratio {ratio}: {retries} retries for 100 requests, want {want} ± 1"
        );
        let budget = got
            .iter()
            .filter(|g| g.info().stop_reason() == Some(StopReason::Budget))
            .count() as i64;
        assert_eq!(budget, 100 - retries, "ratio {ratio}");
    }
}

real_socket_tests! {
    the_retry_budget_allows_its_ratio_of_100_requests {
        HyperUtil => the_retry_budget_allows_its_ratio_of_100_requests_tower_hyper_util;
        ReqwestMiddleware => the_retry_budget_allows_its_ratio_of_100_requests_reqwest_middleware;
    }
}
