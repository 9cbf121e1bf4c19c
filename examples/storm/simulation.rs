//! One storm, on a runtime of its own whose clock starts paused.

use super::*;

#[derive(Clone, Debug)]
pub(super) struct Run {
    pub(super) clients: usize,
    pub(super) sent: u64,
    /// Per client: when it succeeded (ns), or `None` if it gave up.
    pub(super) done: Vec<Option<u64>>,
    /// Every arrival: (time ns, is a retry).
    pub(super) arrivals: Vec<(u64, bool)>,
}

/// One storm, on a runtime of its own whose clock starts paused at `t = 0`.
pub(super) fn simulate(scenario: Scenario, strategy: &Strategy, n: usize, seed: u64) -> Run {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a tokio runtime")
        .block_on(storm(scenario, strategy, n, seed))
}

async fn storm(scenario: Scenario, strategy: &Strategy, n: usize, seed: u64) -> Run {
    let server = Server::new(scenario, n);
    // One policy for all clients: each request draws its own jitter stream from the seed
    // and its sequence number, as in one process; the limits are what keeps them apart.
    // Spawned in order, and first polled in that order once this task waits.
    let tasks: Vec<_> = match strategy {
        Strategy::Ours { jitter, .. } => {
            // One policy for every client, as the old per-request state shared it: each
            // request draws its own jitter stream from the seed and its sequence number (the
            // order of its first draw). The policy shares nothing else: the budget and the
            // cooldown live in the limits, each client's own.
            let policy = RetryPolicy::builder()
                .max_retries(MAX_RETRIES)
                .jitter(*jitter)
                .retry_after_spread(SPREAD)
                .seed(seed)
                .build();
            (0..n)
                .map(|i| tokio::spawn(our_client(policy.clone(), server.clone(), i)))
                .collect()
        }
        Strategy::ExactRetryAfter => (0..n)
            .map(|i| {
                let schedule = Theirs::ExactRetryAfter {
                    past_retries: 0,
                    rng: client_rng(seed, i),
                };
                tokio::spawn(their_client(schedule, server.clone(), i))
            })
            .collect(),
        Strategy::ReqwestRetry => (0..n)
            .map(|i| {
                let schedule = Theirs::ReqwestRetry {
                    past_retries: 0,
                    rng: client_rng(seed, i),
                };
                tokio::spawn(their_client(schedule, server.clone(), i))
            })
            .collect(),
    };
    let mut done = Vec::with_capacity(n);
    let mut attempts = Vec::with_capacity(n);
    for task in tasks {
        let (at, made) = task.await.expect("a client task");
        done.push(at);
        attempts.push(made);
    }
    let log = &mut *server.log.lock().unwrap();
    // What each client counted (for ours, its RetryInfo) is what reached the server.
    assert_eq!(attempts, log.attempts);
    let arrivals = std::mem::take(&mut log.arrivals);
    debug_assert!(arrivals.is_sorted(), "the clock never goes back");
    Run {
        clients: n,
        sent: arrivals.len() as u64,
        done,
        arrivals,
    }
}
