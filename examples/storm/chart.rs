//! The chart, `docs/storm.svg`: arrivals per one-second window, one panel per strategy.

use std::fmt::Write as _;

use super::*;

/// Arrivals in each one-second server window `[k s, k+1 s)`, for the first `span` seconds.
fn per_window(run: &Run, span: u64) -> Vec<u32> {
    let mut bins = vec![0u32; span as usize];
    for (t, _) in &run.arrivals {
        if let Some(b) = bins.get_mut((t / SECOND) as usize) {
            *b += 1;
        }
    }
    bins
}

/// One scenario's runs for the chart: (scenario, N, [(strategy, run)]).
pub(super) type Column = (Scenario, usize, Vec<(String, Run)>);

/// Small multiples: one column per scenario, one panel per strategy, each a polyline of
/// arrivals per one-second window on a log scale, with the capacity as a dashed line.
pub(super) fn svg(columns: &[Column]) -> String {
    let (pw, ph) = (400.0, 100.0); // plot area of one panel
    let (left, col_gap, top, row_gap) = (50.0, 80.0, 86.0, 52.0);
    let span = 48u64;
    let rows = columns.iter().map(|c| c.2.len()).max().unwrap_or(0);
    let w = left + columns.len() as f64 * (pw + col_gap);
    let h = top + rows as f64 * (ph + row_gap);
    // log10 scale from 1 to 1000 arrivals, 1 lifted off the axis so that 0 sits apart.
    let y_of = |y0: f64, v: u32| {
        let l = if v == 0 {
            0.0
        } else {
            f64::from(v).log10().min(3.0) + 0.3
        };
        y0 + ph - l / 3.3 * ph
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let n = columns.first().map_or(0, |c| c.1);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="22" font-size="15" font-weight="bold">Retry storm: {n} clients at t = 0, a server admitting {CAPACITY} per one-second window</text>"#
    );
    let _ = writeln!(
        s,
        r##"<text x="{left}" y="40" fill="#555">Arrivals per window (all attempts; log scale, 0 on the axis); dashed: capacity. Simulated time; seed {SEED:#x}.</text>"##
    );
    let _ = writeln!(
        s,
        r##"<text x="{left}" y="56" fill="#555">Blue: the crate's schedule (its real tower layer); red: Retry-After exact, computed in the example, not the crate's schedule; grey: reqwest-retry-like.</text>"##
    );
    for (ci, (scenario, _, runs)) in columns.iter().enumerate() {
        let x0 = left + ci as f64 * (pw + col_gap);
        let _ = writeln!(
            s,
            r#"<text x="{x0}" y="{}" font-size="13" font-weight="bold">{}</text>"#,
            top - 14.0,
            scenario.label()
        );
        for (ri, (name, run)) in runs.iter().enumerate() {
            let y0 = top + ri as f64 * (ph + row_gap) + 14.0;
            let m = metrics(run);
            let outcome = if m.all_ok {
                format!("all ok at {:.1} s", m.last_ok)
            } else {
                format!("{} gave up", m.gave_up)
            };
            let _ = writeln!(
                s,
                r#"<text x="{x0}" y="{}"><tspan font-weight="bold">{name}</tspan>: {:.2} sent per success, {outcome}</text>"#,
                y0 - 5.0,
                m.sent as f64 / m.ok.max(1) as f64
            );
            let _ = writeln!(
                s,
                r##"<rect x="{x0}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="#bbb"/>"##
            );
            for (v, label) in [(1, "1"), (10, "10"), (100, "100"), (1000, "1000")] {
                let yy = y_of(y0, v);
                let _ = writeln!(
                    s,
                    r##"<line x1="{x0}" y1="{yy}" x2="{}" y2="{yy}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end" fill="#555">{label}</text>"##,
                    x0 + pw,
                    x0 - 4.0,
                    yy + 4.0
                );
            }
            for t in (0..=span).step_by(8) {
                let xx = x0 + t as f64 / span as f64 * pw;
                let _ = writeln!(
                    s,
                    r##"<text x="{xx}" y="{}" text-anchor="middle" fill="#555">{t} s</text>"##,
                    y0 + ph + 13.0
                );
            }
            let cy = y_of(y0, CAPACITY);
            let _ = writeln!(
                s,
                r#"<line x1="{x0}" y1="{cy}" x2="{}" y2="{cy}" stroke="black" stroke-dasharray="5 4"/>"#,
                x0 + pw
            );
            // A step line: each window's count held across the window.
            let mut pts = Vec::new();
            for (k, v) in per_window(run, span).iter().enumerate() {
                let (xa, xb) = (
                    x0 + k as f64 / span as f64 * pw,
                    x0 + (k + 1) as f64 / span as f64 * pw,
                );
                let yy = y_of(y0, *v);
                pts.push(format!("{xa:.1},{yy:.1} {xb:.1},{yy:.1}"));
            }
            let color = if name.starts_with("reqwest") {
                "#7f7f7f"
            } else if name.starts_with("Retry-After exact") {
                "#d62728"
            } else {
                "#1f77b4"
            };
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{color}" stroke-width="1.6" points="{}"/>"#,
                pts.join(" ")
            );
        }
    }
    s.push_str("</svg>\n");
    s
}
