//! With feature `metrics`, the demo installs `metrics-util`'s debugging recorder, and
//! ends with what the crate's metrics say about the run, checked against what the
//! demo saw. (A service would install a Prometheus or OpenTelemetry exporter instead.)

use std::collections::BTreeMap;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use telecho_retry::observe::{describe_metrics, metric};

use super::Tally;

pub(super) fn install() -> Snapshotter {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().expect("no other metrics recorder");
    describe_metrics();
    snapshotter
}

/// Counters by name, then by their labels (`a=b, c=d`); histograms as their samples.
#[derive(Default)]
struct Seen {
    counters: BTreeMap<String, BTreeMap<String, u64>>,
    histograms: BTreeMap<String, Vec<f64>>,
}

impl Seen {
    fn total(&self, name: &str) -> u64 {
        self.counters.get(name).map_or(0, |by| by.values().sum())
    }

    fn line(&self, name: &str) -> String {
        let mut out = format!("{name:<32} {:>3}", self.total(name));
        for (labels, n) in self.counters.get(name).into_iter().flatten() {
            if !labels.is_empty() {
                out.push_str(&format!("\n    {n:>3}  {labels}"));
            }
        }
        out
    }

    fn histogram(&self, name: &str) -> String {
        let samples = self.histograms.get(name).map_or(&[][..], Vec::as_slice);
        if samples.is_empty() {
            return format!("{name:<32}   0 samples");
        }
        let sum: f64 = samples.iter().sum();
        let max = samples.iter().copied().fold(0.0, f64::max);
        format!(
            "{name:<32} {:>3} samples, {sum:.2} s in all, longest {max:.2} s",
            samples.len()
        )
    }
}

/// Prints the summary; returns what does not agree with what the demo saw.
pub(super) fn print(snapshotter: &Snapshotter, tally: &Tally) -> Vec<String> {
    let mut seen = Seen::default();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let (_, key) = key.into_parts();
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        match value {
            DebugValue::Counter(n) => {
                *seen
                    .counters
                    .entry(key.name().to_owned())
                    .or_default()
                    .entry(labels.join(", "))
                    .or_default() += n;
            }
            DebugValue::Histogram(xs) => seen
                .histograms
                .entry(key.name().to_owned())
                .or_default()
                .extend(xs.into_iter().map(|x| x.0)),
            DebugValue::Gauge(_) => {}
        }
    }

    println!("\n=== metrics (feature `metrics`): what a dashboard would show of this run");
    for name in [
        metric::REQUESTS,
        metric::RETRIES,
        metric::COOLDOWN_HOLDS,
        metric::COOLDOWN_REFUSALS,
        metric::BUDGET_REFUSALS,
    ] {
        println!("  {}", seen.line(name));
    }
    for name in [metric::RETRY_DELAY, metric::COOLDOWN_DELAY] {
        println!("  {}", seen.histogram(name));
    }

    let mut problems = Vec::new();
    let mut agree = |what: &str, metric: u64, demo: u64| {
        if metric != demo {
            problems.push(format!(
                "metrics: {what} is {metric}, but the demo counted {demo}"
            ));
        }
    };
    agree(
        metric::REQUESTS,
        seen.total(metric::REQUESTS),
        tally.requests.get(),
    );
    agree(
        metric::RETRIES,
        seen.total(metric::RETRIES),
        tally.retries.get(),
    );
    agree(
        "the number of retry delays",
        seen.histograms
            .get(metric::RETRY_DELAY)
            .map_or(0, |h| h.len() as u64),
        tally.retries.get(),
    );
    agree(
        metric::COOLDOWN_REFUSALS,
        seen.total(metric::COOLDOWN_REFUSALS),
        tally.refused.get(),
    );
    if problems.is_empty() {
        println!(
            "  [ok] {} requests and {} retries, as the demo counted them from each RetryInfo",
            tally.requests.get(),
            tally.retries.get()
        );
    }
    problems
}
