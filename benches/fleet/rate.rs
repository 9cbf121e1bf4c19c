//! The rate the fleet found with the crate's defaults (adaptive pacing), against the true
//! limit: from the server's own log, the fleet's attempts per second (sent; admitted;
//! answered 429) in 0.5 s bins, in each default `limit-step` run. (The learned rate itself lives in the children, or in Redis;
//! what the fleet sends is what it learned, seen from outside.)

use std::fmt::Write as _;
use std::time::Duration;

use crate::report::sent_and_throttled;
use crate::run::RunResult;
use crate::server::{Answer, Hit};
use crate::spec::{Mode, Workload};

/// The width of a bin.
const BIN: Duration = Duration::from_millis(500);

/// One bin: its start (s), the limit then, and sent, admitted and 429s per second.
struct Bin {
    t: f64,
    limit: f64,
    sent: f64,
    admitted: f64,
    throttled: f64,
}

fn bins(r: &RunResult) -> Vec<Bin> {
    let end = r.setup.load.end();
    let n = (end.as_secs_f64() / BIN.as_secs_f64()).ceil() as u32;
    let bin_us = i64::try_from(BIN.as_micros()).unwrap_or(i64::MAX);
    let per_s = 1.0 / BIN.as_secs_f64();
    (0..n)
        .map(|i| {
            let a = i64::from(i) * bin_us;
            let inside = |h: &&Hit| h.at_us >= a && h.at_us < a + bin_us;
            let (sent, throttled) = sent_and_throttled(r.hits.iter().filter(inside));
            let admitted = r
                .hits
                .iter()
                .filter(inside)
                .filter(|h| h.answer == Answer::Ok)
                .count();
            Bin {
                t: f64::from(i) * BIN.as_secs_f64(),
                limit: r.setup.shape.rate_at(BIN * i + BIN / 2),
                sent: sent as f64 * per_s,
                admitted: admitted as f64 * per_s,
                throttled: throttled as f64 * per_s,
            }
        })
        .collect()
}

/// The adaptive `limit-step` runs, by task count.
fn adaptive_steps<'a>(results: &[&'a RunResult]) -> Vec<(usize, &'a RunResult)> {
    let mut runs: Vec<(usize, &RunResult)> = results
        .iter()
        .filter(|r| r.spec.mode == Mode::Default)
        .filter_map(|r| match r.spec.workload {
            Workload::LimitStep { tasks } => Some((tasks, *r)),
            _ => None,
        })
        .collect();
    runs.sort_by_key(|(tasks, _)| *tasks);
    runs
}

/// `tasks,store,t_s,limit_per_s,sent_per_s,admitted_per_s,throttled_per_s`, a row per bin
/// of each adaptive `limit-step` run.
pub(crate) fn csv(results: &[&RunResult]) -> String {
    let mut s =
        String::from("tasks,store,t_s,limit_per_s,sent_per_s,admitted_per_s,throttled_per_s\n");
    for (tasks, r) in adaptive_steps(results) {
        for b in bins(r) {
            let _ = writeln!(
                s,
                "{tasks},{},{:.1},{:.1},{:.1},{:.1},{:.1}",
                r.store, b.t, b.limit, b.sent, b.admitted, b.throttled
            );
        }
    }
    s
}

/// A panel per adaptive `limit-step` run: the limit (dashed), what the fleet sent per
/// second (grey), what was admitted (blue) and answered 429 (red).
pub(crate) fn svg(results: &[&RunResult]) -> String {
    let runs = adaptive_steps(results);
    let (pw, ph, left, top, gap) = (760.0, 150.0, 60.0, 96.0, 60.0);
    let w = left + pw + 30.0;
    let h = top + runs.len() as f64 * (ph + gap) + 10.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="22" font-size="15" font-weight="bold">The defaults (adaptive pacing) against a token bucket whose limit steps L → 0.4 L → L</text>"#
    );
    let _ = writeln!(
        s,
        r##"<text x="{left}" y="40" fill="#555">Per second, in 0.5 s bins from the server's log: dashed the limit; grey what the fleet sent; blue admitted; red answered 429.</text>"##
    );
    let _ = writeln!(
        s,
        r##"<text x="{left}" y="56" fill="#555">What the fleet sends is the rate it learned, seen from the server. Real processes over loopback; one run, timings noisy.</text>"##
    );
    let _ = writeln!(
        s,
        r##"<text x="{left}" y="72" fill="#555">store: where the learned rate was kept (redis: one rate for the fleet; process: one rate per process).</text>"##
    );
    for (row, (tasks, r)) in runs.iter().enumerate() {
        let bins = bins(r);
        let end = r.setup.load.end().as_secs_f64();
        let peak = bins.iter().map(|b| b.limit).fold(1.0, f64::max);
        let y_max = (peak * 2.0).ceil();
        let (x0, y0) = (left, top + row as f64 * (ph + gap) + 12.0);
        let x_of = |t: f64| x0 + t / end * pw;
        let y_of = |v: f64| y0 + ph - v.min(y_max) / y_max * ph;
        let _ = writeln!(
            s,
            r#"<text x="{x0}" y="{}"><tspan font-weight="bold">default, {} processes, {tasks} tasks</tspan> (store={})</text>"#,
            y0 - 6.0,
            r.setup.children,
            r.store
        );
        let _ = writeln!(
            s,
            r##"<rect x="{x0}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="#bbb"/>"##
        );
        let bw = BIN.as_secs_f64() / end * pw;
        let mut sent = String::new();
        let mut admitted = String::new();
        let mut limit = String::new();
        for b in &bins {
            let x = x_of(b.t);
            if b.throttled > 0.0 {
                let _ = writeln!(
                    s,
                    r##"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#d62728" opacity="0.5"/>"##,
                    y_of(b.throttled),
                    bw,
                    y0 + ph - y_of(b.throttled)
                );
            }
            let _ = write!(
                sent,
                "{:.1},{:.1} {:.1},{:.1} ",
                x,
                y_of(b.sent),
                x + bw,
                y_of(b.sent)
            );
            let _ = write!(
                admitted,
                "{:.1},{:.1} {:.1},{:.1} ",
                x,
                y_of(b.admitted),
                x + bw,
                y_of(b.admitted)
            );
            let _ = write!(
                limit,
                "{:.1},{:.1} {:.1},{:.1} ",
                x,
                y_of(b.limit),
                x + bw,
                y_of(b.limit)
            );
        }
        for (points, style) in [
            (&sent, r##"stroke="#999" stroke-width="1.2""##),
            (&admitted, r##"stroke="#1f77b4" stroke-width="1.8""##),
            (
                &limit,
                r#"stroke="black" stroke-width="1.2" stroke-dasharray="5 4""#,
            ),
        ] {
            let _ = writeln!(s, r#"<polyline fill="none" {style} points="{points}"/>"#);
        }
        for v in [0.0, peak, y_max] {
            let _ = writeln!(
                s,
                r##"<text x="{}" y="{:.1}" text-anchor="end" fill="#555">{v}/s</text>"##,
                x0 - 4.0,
                y_of(v) + 4.0
            );
        }
        let step = (end / 6.0).ceil().max(1.0);
        let mut t = 0.0;
        while t <= end {
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{}" text-anchor="middle" fill="#555">{t} s</text>"##,
                x_of(t),
                y0 + ph + 13.0
            );
            t += step;
        }
    }
    s.push_str("</svg>\n");
    s
}
