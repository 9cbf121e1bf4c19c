//! A fixed window whose `Retry-After` says when it ends: adaptive pacing costs nothing.

use super::*;

/// [`fixed_window_log`] with the whole quota ours: (served share of the limit, share of
/// sends answered 429).
async fn fixed_window(limits: Limits) -> (f64, f64) {
    let log = fixed_window_log(limits, Window::OURS, 60).await;
    shares(&log, &[(0, 60, 20.0)], 0)[0]
}

/// Where the shared cooldown is already right (a `Retry-After` that says when the window
/// ends), adaptive pacing costs nothing and halves the 429s.
#[tokio::test(start_paused = true)]
async fn on_a_fixed_window_with_an_exact_retry_after_adaptive_pacing_costs_nothing() {
    let default = fixed_window(Limits::builder().without_pacing().build()).await;
    let adaptive = fixed_window(Limits::default()).await;
    let alone = fixed_window(
        Limits::builder()
            .pacing(Pacing::adaptive())
            .shared_cooldown(false)
            .build(),
    )
    .await;
    eprintln!("(served, 429 share) on a fixed window of 10 s:");
    eprintln!("  no pacing {default:.3?}, adaptive {adaptive:.3?}, without cooldown {alone:.3?}");
    for (served, _) in [default, adaptive, alone] {
        assert!(served >= 0.95, "served {served:.3}");
    }
    assert!(adaptive.1 <= default.1, "{adaptive:?} {default:?}");
}
