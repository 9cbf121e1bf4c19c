//! The clients: ours (the crate's tower layer), and the two that are not ours, computed
//! here.

use super::*;

/// One client's result: when it succeeded (ns), or `None` if it gave up; and how many
/// attempts it made, by its own count.
type Outcome = (Option<u64>, u32);

/// One of our clients: the crate's tower layer over the server, with limits of its own (no
/// retry budget or 429 cooldown shared with the other clients).
pub(super) async fn our_client(policy: RetryPolicy, server: Server, i: usize) -> Outcome {
    let limits = Limits::builder()
        .without_retry_budget()
        .shared_cooldown(false)
        .build();
    let client = ServiceBuilder::new()
        .layer(TelEchoRetry::new(policy).with_limits(limits))
        .service(server.service());
    let response = client
        .oneshot(request(i))
        .await
        .expect("nothing here fails but a response's status");
    let info = RetryInfo::of(response.extensions());
    if response.status().is_success() {
        (Some(server.now()), info.attempts())
    } else {
        assert_eq!(info.stop_reason(), Some(StopReason::MaxRetries));
        (None, info.attempts())
    }
}

/// SplitMix64, for the jitter of the clients that are not ours.
pub(super) struct SplitMix(u64);

impl SplitMix {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The schedule of a client that is not ours, computed in this example.
pub(super) enum Theirs {
    ExactRetryAfter { past_retries: u32, rng: SplitMix },
    ReqwestRetry { past_retries: u32, rng: SplitMix },
}

impl Theirs {
    /// The wait before the next attempt after a rejection, or `None` to give up.
    fn rejected(&mut self, headers: &HeaderMap) -> Option<Duration> {
        match self {
            // Not the crate's schedule: exactly what the server said, plus the spread.
            Theirs::ExactRetryAfter { past_retries, rng } => {
                if *past_retries >= MAX_RETRIES {
                    return None;
                }
                let told = headers
                    .get(RETRY_AFTER)
                    .and_then(|v| parse_retry_after(v, std::time::SystemTime::UNIX_EPOCH))
                    .expect("the 429 scenario always sends delta-seconds");
                *past_retries += 1;
                Some(told + SPREAD.mul_f64(rng.next_f64()))
            }
            // retry-policies 0.5 `ExponentialBackoff::should_retry` with the builder's
            // defaults (min 1 s, max 30 min, base 2, `Jitter::Full`), max 5 retries.
            Theirs::ReqwestRetry { past_retries, rng } => {
                if *past_retries >= MAX_RETRIES {
                    return None;
                }
                let unjittered =
                    Duration::from_secs(1 << *past_retries).min(Duration::from_secs(30 * 60));
                *past_retries += 1;
                Some(unjittered.mul_f64(rng.next_f64()))
            }
        }
    }
}

/// A client that is not ours: a loop over the same server, sleeping on the same clock.
pub(super) async fn their_client(mut schedule: Theirs, server: Server, i: usize) -> Outcome {
    let mut service = server.service();
    let mut attempts = 0;
    loop {
        let Ok(ready) = service.ready().await;
        let Ok(response) = ready.call(request(i)).await;
        attempts += 1;
        if response.status().is_success() {
            return (Some(server.now()), attempts);
        }
        match schedule.rejected(response.headers()) {
            Some(wait) => tokio::time::sleep(wait).await,
            None => return (None, attempts),
        }
    }
}

pub(super) fn client_rng(seed: u64, i: usize) -> SplitMix {
    SplitMix(seed ^ (i as u64 + 1).wrapping_mul(0xa076_1d64_78bd_642f))
}
