//! The numbers of the storm workloads: the table and the machine-readable lines.

use std::collections::BTreeMap;

use crate::report::Outcome;
use crate::run::RunResult;
use crate::server::Answer;

#[derive(Clone, Debug)]
pub(crate) struct Stats {
    pub(crate) sent: usize,
    pub(crate) too_many: usize,
    pub(crate) ok: usize,
    pub(crate) lost: usize,
    /// Why requests were lost: outcome word → count.
    pub(crate) lost_by: BTreeMap<String, usize>,
    /// The last success after the start, in seconds.
    pub(crate) completion: f64,
    pub(crate) p50: f64,
    pub(crate) p99: f64,
}

impl Stats {
    pub(crate) fn of(r: &RunResult) -> Stats {
        let sent = r.hits.len();
        let too_many = r
            .hits
            .iter()
            .filter(|h| h.answer == Answer::TooMany)
            .count();
        let mut lat = Vec::new();
        let mut completion: f64 = 0.0;
        let mut lost_by = BTreeMap::new();
        // Per request `k`: what its child reported (`None`: nothing, so lost).
        let mut by_k = vec![None; r.cfg().requests];
        for rep in &r.reports {
            if let Some(slot) = by_k.get_mut(rep.k) {
                *slot = Some(rep);
            }
        }
        for rep in &by_k {
            match rep {
                Some(rep) if rep.outcome == Outcome::Ok => {
                    lat.push((rep.end_us - rep.due_us) as f64 / 1e6);
                    completion = completion.max(rep.end_us as f64 / 1e6);
                }
                Some(rep) => *lost_by.entry(rep.outcome.word()).or_insert(0) += 1,
                None => *lost_by.entry("unreported".to_string()).or_insert(0) += 1,
            }
        }
        lat.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            if lat.is_empty() {
                f64::NAN
            } else {
                let i = ((p * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1;
                lat[i]
            }
        };
        let ok = lat.len();
        Stats {
            sent,
            too_many,
            ok,
            lost: by_k.len() - ok,
            lost_by,
            completion,
            p50: pct(0.50),
            p99: pct(0.99),
        }
    }

    pub(crate) fn per_success(&self) -> f64 {
        if self.ok == 0 {
            f64::INFINITY
        } else {
            self.sent as f64 / self.ok as f64
        }
    }
}

pub(crate) fn print_table(results: &[(RunResult, Stats)]) {
    println!(
        "\n{:<16} {:<17} {:>6} {:>6} {:>5} {:>5} {:>7} {:>8} {:>7} {:>7}",
        "mode", "workload", "sent", "429s", "ok", "lost", "sent/ok", "done/fl", "p50 s", "p99 s"
    );
    for (r, s) in results {
        println!(
            "{:<16} {:<17} {:>6} {:>6} {:>5} {:>5} {:>7.2} {:>8.2} {:>7.2} {:>7.2}",
            r.spec.mode.name(),
            r.spec.workload.name(),
            s.sent,
            s.too_many,
            s.ok,
            s.lost,
            s.per_success(),
            s.completion / r.cfg().floor().as_secs_f64(),
            s.p50,
            s.p99,
        );
    }
    for (r, s) in results {
        if s.lost > 0 {
            let why: Vec<String> = s.lost_by.iter().map(|(w, n)| format!("{n} {w}")).collect();
            println!("  {}: lost {} ({})", r.spec.label(), s.lost, why.join(", "));
        }
        let rejected: Vec<String> = r
            .hits
            .iter()
            .filter(|h| h.answer == Answer::TooMany)
            .map(|h| format!("{:.3} s", h.at_us as f64 / 1e6))
            .collect();
        if (1..=8).contains(&rejected.len()) {
            println!("  {}: 429s at {}", r.spec.label(), rejected.join(", "));
        }
        if r.fallbacks > 0 {
            println!(
                "  {}: the children fell back on in-process limits {} times (Redis not reached in time)",
                r.spec.label(),
                r.fallbacks
            );
        }
        for f in &r.failures {
            println!("  {}: {f}", r.spec.label());
        }
    }
}

pub(crate) fn machine_line(r: &RunResult, s: &Stats) -> String {
    format!(
        "{} {} requests_per_success={:.2} completion_vs_floor={:.2} p50_s={:.2} p99_s={:.2} sent={} too_many={} lost={}",
        r.spec.mode.name(),
        r.spec.workload.name(),
        s.per_success(),
        s.completion / r.cfg().floor().as_secs_f64(),
        s.p50,
        s.p99,
        s.sent,
        s.too_many,
        s.lost
    )
}
