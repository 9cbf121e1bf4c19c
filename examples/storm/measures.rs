//! The measures of a run, and the tables: one run per strategy, and over many seeds.

use super::*;

pub(super) struct Metrics {
    pub(super) sent: u64,
    pub(super) ok: usize,
    pub(super) gave_up: usize,
    pub(super) p50: f64,
    pub(super) p99: f64,
    /// Time of the last success, and whether every client succeeded.
    pub(super) last_ok: f64,
    pub(super) all_ok: bool,
    pub(super) peak: usize,
}

fn secs(ns: u64) -> f64 {
    ns as f64 / SECOND as f64
}

pub(super) fn metrics(run: &Run) -> Metrics {
    let mut lat: Vec<u64> = run.done.iter().flatten().copied().collect();
    lat.sort_unstable();
    let pct = |p: f64| {
        if lat.is_empty() {
            f64::NAN
        } else {
            let i = ((p * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1;
            secs(lat[i])
        }
    };
    // Peak retry arrivals in any one-second span [t, t + 1 s).
    let retries: Vec<u64> = run
        .arrivals
        .iter()
        .filter(|(_, r)| *r)
        .map(|(t, _)| *t)
        .collect();
    let (mut peak, mut lo) = (0, 0);
    for hi in 0..retries.len() {
        while retries[hi] - retries[lo] >= SECOND {
            lo += 1;
        }
        peak = peak.max(hi - lo + 1);
    }
    Metrics {
        sent: run.sent,
        ok: lat.len(),
        gave_up: run.clients - lat.len(),
        p50: pct(0.50),
        p99: pct(0.99),
        last_ok: lat.last().map_or(f64::NAN, |t| secs(*t)),
        all_ok: lat.len() == run.clients,
        peak,
    }
}

pub(super) fn print_table(scenario: Scenario, n: usize, rows: &[(String, Metrics)]) {
    println!(
        "\n{} | N = {n} clients | capacity {CAPACITY}/s",
        scenario.label()
    );
    println!(
        "{:<36} {:>6} {:>6} {:>7} {:>8} {:>8} {:>8} {:>11} {:>12}",
        "strategy",
        "sent",
        "ok",
        "gave up",
        "sent/ok",
        "p50 s",
        "p99 s",
        "all ok at s",
        "peak retry/s"
    );
    for (name, m) in rows {
        let all = if m.all_ok {
            format!("{:.1}", m.last_ok)
        } else {
            "never".to_string()
        };
        println!(
            "{:<36} {:>6} {:>6} {:>7} {:>8.2} {:>8.2} {:>8.2} {:>11} {:>12}",
            name,
            m.sent,
            m.ok,
            m.gave_up,
            m.sent as f64 / m.ok.max(1) as f64,
            m.p50,
            m.p99,
            all,
            m.peak
        );
    }
    if scenario == Scenario::TooMany {
        println!("(Retry-After exact: computed in this example, Retry-After + U[0, 500 ms] at every retry; not the crate's schedule)");
    }
}

/// The same N = `n` storm over `seeds` seeds: how much of the table above is luck.
pub(super) fn seed_summary(scenario: Scenario, n: usize, seeds: u64) {
    println!(
        "\n{} | N = {n} | over {seeds} seeds (mean, and min..max of clients that gave up)",
        scenario.label()
    );
    println!(
        "{:<36} {:>8} {:>17} {:>10} {:>8} {:>12} {:>12}",
        "strategy", "sent/ok", "gave up", "all ok in", "p99 s", "all ok at s", "peak retry/s"
    );
    for strategy in strategies(scenario) {
        let ms: Vec<Metrics> = (0..seeds)
            .map(|k| {
                let seed = SEED ^ k.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                metrics(&simulate(scenario, &strategy, n, seed))
            })
            .collect();
        let mean = |f: &dyn Fn(&Metrics) -> f64| ms.iter().map(f).sum::<f64>() / ms.len() as f64;
        let all: Vec<f64> = ms.iter().filter(|m| m.all_ok).map(|m| m.last_ok).collect();
        let all_at = if all.is_empty() {
            "-".to_string()
        } else {
            format!("{:.1}", all.iter().sum::<f64>() / all.len() as f64)
        };
        let gave = |m: &Metrics| m.gave_up;
        println!(
            "{:<36} {:>8.2} {:>17} {:>10} {:>8.2} {:>12} {:>12.0}",
            strategy.name(),
            mean(&|m| m.sent as f64 / m.ok.max(1) as f64),
            format!(
                "{:.1} ({}..{})",
                mean(&|m| m.gave_up as f64),
                ms.iter().map(gave).min().unwrap_or(0),
                ms.iter().map(gave).max().unwrap_or(0)
            ),
            format!("{}/{seeds}", all.len()),
            mean(&|m| m.p99),
            all_at,
            mean(&|m| m.peak as f64),
        );
    }
}
