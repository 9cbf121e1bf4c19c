//! A limit that steps 50 → 20 → 50 per second: adaptive pacing follows it and serves more
//! than no pacing.

use super::*;

const STEPS: [(u64, u64, f64); 3] = [(0, 20, 50.0), (20, 40, 20.0), (40, 60, 50.0)];

fn stepping(t: Duration) -> f64 {
    let s = t.as_secs();
    STEPS
        .iter()
        .find(|(from, to, _)| (*from..*to).contains(&s))
        .map_or(50.0, |p| p.2)
}

/// [`bucket_log`] stepping 50 → 20 → 50 per second: each phase's served share and 429
/// share after its first 5 s.
async fn sixteen_callers(limits: Limits) -> Vec<(f64, f64)> {
    shares(&bucket_log(limits, stepping).await, &STEPS, 5)
}

#[tokio::test(start_paused = true)]
async fn adaptive_pacing_follows_a_stepping_limit_and_serves_more_than_no_pacing() {
    let default = sixteen_callers(Limits::builder().without_pacing().build()).await;
    let adaptive = sixteen_callers(Limits::default()).await;
    let alone = sixteen_callers(
        Limits::builder()
            .pacing(Pacing::adaptive())
            .shared_cooldown(false)
            .build(),
    )
    .await;
    eprintln!("(served, 429 share) per phase 50/20/50 after 5 s:");
    eprintln!("  no pacing:                      {default:.3?}");
    eprintln!("  adaptive (the default):         {adaptive:.3?}");
    eprintln!("  adaptive, no shared cooldown:   {alone:.3?}");
    for (phase, ((d, _), (a, a429))) in default.iter().zip(&adaptive).enumerate() {
        assert!(*a429 <= 0.04, "phase {phase}: {a429:.3} of sends met a 429");
        assert!(a > d, "phase {phase}: adaptive {a:.3}, no pacing {d:.3}");
    }
    for (phase, (served, limited)) in alone.iter().enumerate() {
        assert!(*limited <= 0.04, "phase {phase}: {limited:.3} met a 429");
        assert!(
            *served >= 0.9,
            "phase {phase}: served {served:.3} of the limit"
        );
    }
}
