//! The numbers of the learning workloads (closed loops against a limit the clients must
//! find): one line per run, the mode and workload first, then `key=value` fields, and
//! whether their goals were met (`goal_met=yes/no`; a missed goal is printed, it
//! does not fail the example). Every count of attempts is the server's; `lost` is the
//! children's: requests that ended without a 2xx, or were still running
//! [`DRAIN`](crate::child::DRAIN) after the loop ended (a loop starts no request after its
//! end; those in flight run on). `slowest_s`: the longest a request that succeeded took.
//!
//! - `limit-step`: `throttled_share` (429s / attempts, whole run),
//!   `worst_phase_throttled_share` (the same, in the worst of the three phases;
//!   `phase_throttled_shares`: each phase's, in order),
//!   `served_share` (admitted / what the bucket's rate allowed, in each phase but its
//!   first quarter; `worst_phase_served_share`: the same in the worst phase, not a goal
//!   of the issue), `throttled_share_after_1s` (as `throttled_share`, leaving out the
//!   tasks' first burst, sent before any 429 could tell of a limit; not a goal), `recovery_s` (from the step up until the end of the first 1 s in
//!   which the server admitted 90 % of L). Goal: ≤ 0.02, ≤ 0.04, ≥ 0.95, ≤ half a phase
//!   (10 s), no loss.
//! - `fixed-window`: `too_many_max`, `too_many_mean` (429s per window, after the first),
//!   `quota_used` (admitted / the windows' limits, after the first). Goal: ≤ 1 and ≥ 0.95,
//!   no loss.
//! - `quota-headers`: `too_many` (429s, whole run), `quota_used`. Goal: 0 and ≥ 0.97, no
//!   loss.
//! - `redis-cut-fallback`: `worst_window_vs_quota` (the most attempts the fleet sent in a
//!   1 s window from the cut on, admitted or not, over the quota; `worst_window_before_cut`
//!   the same before it, while the fleet learns the limit), `served_vs_quota` (admitted
//!   during the cut over the quota). Goal: ≤ 1.10 and ≥ 0.9 (the issue states the first
//!   for 8 processes, the second for 2), no loss.

use std::fmt::Write as _;
use std::time::Duration;

use crate::report::{sent_and_throttled, Outcome, Report};
use crate::run::RunResult;
use crate::server::{Answer, Hit};
use crate::spec::Workload;
use crate::workloads::Sizes;

/// The start of a `limit-step` run that `throttled_share_after_1s` leaves out.
const START: Duration = Duration::from_secs(1);

fn us(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Requests that did not end in a 2xx: ended otherwise, or still running [`DRAIN`](crate::child::DRAIN) after
/// the loop ended (stuck).
fn lost_reports(r: &RunResult) -> impl Iterator<Item = &Report> {
    r.reports.iter().filter(|rep| rep.outcome != Outcome::Ok)
}

/// How many requests were lost.
pub(crate) fn lost(r: &RunResult) -> usize {
    lost_reports(r).count()
}

/// How the lost requests ended, and the longest a stuck one had been running: `3
/// status-429, 2 cap (up to 41.2 s)`.
pub(crate) fn lost_by(r: &RunResult) -> String {
    let mut by = std::collections::BTreeMap::new();
    let mut longest: i64 = 0;
    for rep in lost_reports(r) {
        *by.entry(rep.outcome.word()).or_insert(0) += 1;
        if rep.outcome == Outcome::Cap {
            longest = longest.max(rep.end_us - rep.due_us);
        }
    }
    let words: Vec<String> = by
        .iter()
        .map(|(w, n)| match w.as_str() {
            "cap" => format!(
                "{n} still running 10 s after the end (up to {:.1} s)",
                longest as f64 / 1e6
            ),
            _ => format!("{n} {w}"),
        })
        .collect();
    words.join(", ")
}

/// The hits from `a` to `b` after the start.
fn between(hits: &[Hit], a: Duration, b: Duration) -> impl Iterator<Item = &Hit> {
    let (a, b) = (us(a), us(b));
    hits.iter().filter(move |h| h.at_us >= a && h.at_us < b)
}

fn admitted(hits: &[Hit], a: Duration, b: Duration) -> usize {
    between(hits, a, b)
        .filter(|h| h.answer == Answer::Ok)
        .count()
}

fn share(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn yes(ok: bool) -> &'static str {
    if ok {
        "yes"
    } else {
        "no"
    }
}

/// Per whole window of `window` from the start until `end`: (admitted, 429s, sent).
fn per_window(hits: &[Hit], window: Duration, end: Duration) -> Vec<(usize, usize, usize)> {
    let n = (end.as_secs_f64() / window.as_secs_f64()).round() as u32;
    (0..n)
        .map(|i| {
            let (a, b) = (window * i, window * (i + 1));
            let (sent, tm) = sent_and_throttled(between(hits, a, b));
            (admitted(hits, a, b), tm, sent)
        })
        .collect()
}

/// `recovery_s`: from `step_up` until the first 1 s window after it in which the server
/// admitted 90 % of `limit` (the window's end); `None` if none did.
fn recovery(hits: &[Hit], step_up: Duration, limit: f64) -> Option<f64> {
    let need = (0.9 * limit).ceil() as usize;
    let ok: Vec<i64> = hits
        .iter()
        .filter(|h| h.answer == Answer::Ok && h.at_us >= us(step_up))
        .map(|h| h.at_us)
        .collect();
    let mut first = 0;
    for (j, &t) in ok.iter().enumerate() {
        while ok[first] <= t - 1_000_000 {
            first += 1;
        }
        if j + 1 - first >= need {
            return Some((t - us(step_up)) as f64 / 1e6);
        }
    }
    None
}

/// The line of one run of the learning workloads, and whether its goals were met.
pub(crate) fn line(r: &RunResult, sizes: &Sizes) -> (String, bool) {
    let hits = &r.hits;
    let (sent, too_many) = sent_and_throttled(hits);
    let lost = lost(r);
    let mut s = format!("{} {}", r.spec.mode.name(), r.spec.workload.name());
    let met = match r.spec.workload {
        Workload::LimitStep { tasks } => {
            let phase = sizes.step_phase;
            let mut worst: f64 = 0.0;
            let mut worst_served = f64::INFINITY;
            let (mut served, mut allowed) = (0, 0.0);
            let mut phases = Vec::new();
            for i in 0..3 {
                let (a, b) = (phase * i, phase * (i + 1));
                let (p_sent, p_tm) = sent_and_throttled(between(hits, a, b));
                worst = worst.max(share(p_tm, p_sent));
                phases.push(format!("{:.3}", share(p_tm, p_sent)));
                let p_served = admitted(hits, a + sizes.step_settle, b);
                let p_allowed = r.setup.shape.allowed(a + sizes.step_settle, b);
                worst_served = worst_served.min(p_served as f64 / p_allowed.max(1.0));
                served += p_served;
                allowed += p_allowed;
            }
            let served_share = if allowed > 0.0 {
                served as f64 / allowed
            } else {
                0.0
            };
            let rec = recovery(hits, phase * 2, f64::from(sizes.step_limit));
            let throttled = share(too_many, sent);
            // The tasks' first burst goes out before any 429 can tell of a limit: the share
            // from the first second on shows what pacing does once it could know.
            let (late_sent, late_tm) = sent_and_throttled(between(hits, START, phase * 3));
            let late = share(late_tm, late_sent);
            let _ = write!(
                s,
                " tasks={tasks} store={} throttled_share={throttled:.3} \
                 throttled_share_after_1s={late:.3} \
                 worst_phase_throttled_share={worst:.3} phase_throttled_shares={} \
                 served_share={served_share:.2} \
                 worst_phase_served_share={worst_served:.2} recovery_s={}",
                r.store,
                phases.join("/"),
                rec.map_or("never".into(), |v| format!("{v:.1}")),
            );
            throttled <= 0.02
                && worst <= 0.04
                && served_share >= 0.95
                && rec.is_some_and(|v| v <= phase.as_secs_f64() / 2.0)
                && lost == 0
        }
        Workload::FixedWindow | Workload::QuotaHeaders => {
            let windows = per_window(hits, sizes.window, sizes.window * sizes.windows);
            let later = windows.get(1..).unwrap_or_default();
            let used = later.iter().map(|w| w.0).sum::<usize>();
            let quota_used = share(used, later.len() * sizes.window_limit as usize);
            let max = later.iter().map(|w| w.1).max().unwrap_or(0);
            let mean = share(later.iter().map(|w| w.1).sum(), later.len());
            let _ = write!(s, " store={}", r.store);
            if r.spec.workload == Workload::FixedWindow {
                let _ = write!(
                    s,
                    " too_many_max={max} too_many_mean={mean:.1} quota_used={quota_used:.2}"
                );
                max <= 1 && quota_used >= 0.95 && lost == 0
            } else {
                let _ = write!(s, " too_many={too_many} quota_used={quota_used:.2}");
                too_many == 0 && quota_used >= 0.97 && lost == 0
            }
        }
        Workload::RedisCutFallback { processes } => {
            let end = sizes.cut_before + sizes.cut_len + sizes.cut_after;
            let windows = per_window(hits, Duration::from_secs(1), end);
            let quota = sizes.cut_quota as usize;
            let (from, to) = (
                sizes.cut_before.as_secs(),
                (sizes.cut_before + sizes.cut_len).as_secs(),
            );
            // From the cut on: before it, the fleet learns a limit it was not told (the
            // other workloads measure that).
            let worst_of = |windows: &[(usize, usize, usize)]| {
                windows
                    .iter()
                    .map(|w| share(w.2, quota))
                    .fold(0.0, f64::max)
            };
            let before = worst_of(windows.get(..from as usize).unwrap_or_default());
            let worst = worst_of(windows.get(from as usize..).unwrap_or_default());
            let cut = windows.get(from as usize..to as usize).unwrap_or_default();
            let served = share(cut.iter().map(|w| w.0).sum(), cut.len() * quota);
            let _ = write!(
                s,
                " processes={processes} store={} worst_window_before_cut={before:.2} \
                 worst_window_vs_quota={worst:.2} \
                 served_vs_quota={served:.2} too_many={too_many} fallbacks={}",
                r.store, r.fallbacks
            );
            // The issue states the goal not to overshoot the quota with 8 processes, and not
            // to leave it unused with 2: a fallback sized to the fleet meets both at both.
            worst <= 1.10 && served >= 0.9 && lost == 0
        }
        _ => false,
    };
    // The slowest request that succeeded: how long the requests that were not lost took.
    let slowest = r
        .reports
        .iter()
        .filter(|rep| rep.outcome == Outcome::Ok)
        .map(|rep| rep.end_us - rep.due_us)
        .max()
        .unwrap_or(0);
    let _ = write!(
        s,
        " lost={lost} slowest_s={:.1} sent={sent} goal_met={}",
        slowest as f64 / 1e6,
        yes(met)
    );
    (s, met)
}
