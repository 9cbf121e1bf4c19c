//! The chart: attempts per window, admitted and 429, per mode and workload.

use std::fmt::Write as _;

use crate::run::RunResult;
use crate::server::Answer;
use crate::spec::{Mode, Workload};
use crate::storm::Stats;

/// Attempts per server window: (admitted, 429) for windows `0..n`.
pub(crate) fn per_window(r: &RunResult, n: usize) -> Vec<(u32, u32)> {
    let w = i64::try_from(r.cfg().window.as_micros().max(1)).unwrap_or(i64::MAX);
    let mut bins = vec![(0u32, 0u32); n];
    for h in &r.hits {
        let i = usize::try_from(h.at_us.div_euclid(w).max(0)).unwrap_or(usize::MAX);
        if let Some(b) = bins.get_mut(i) {
            match h.answer {
                Answer::Ok => b.0 += 1,
                _ => b.1 += 1,
            }
        }
    }
    bins
}

/// Small multiples: a column per workload, a row per mode; in each panel, stacked bars of
/// attempts per window (admitted, 429), the limit dashed, the floor marked.
pub(crate) fn svg(results: &[(RunResult, Stats)]) -> String {
    let Some((first, _)) = results.first() else {
        return String::new();
    };
    let cfg = first.cfg();
    let columns = [Workload::Burst, Workload::Steady];
    let rows: Vec<Mode> = Mode::ALL
        .into_iter()
        .filter(|m| results.iter().any(|(r, _)| r.spec.mode == *m))
        .collect();
    let cut_row = results
        .iter()
        .any(|(r, _)| r.spec.workload == Workload::SteadyRedisCut);
    let n_rows = rows.len() + usize::from(cut_row);
    let (pw, ph, left, top, col_gap, row_gap) = (520.0, 110.0, 60.0, 92.0, 70.0, 58.0);
    let windows = (cfg.cap().as_secs_f64() / cfg.window.as_secs_f64()).ceil() as usize;
    let y_max = f64::from(cfg.limit) * 3.0;
    let w = left + columns.len() as f64 * (pw + col_gap);
    let h = top + n_rows as f64 * (ph + row_gap);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="22" font-size="15" font-weight="bold">Fleet storm: {} processes, {} requests, one key limited to {} per {} s window</text>"#,
        cfg.children,
        cfg.requests,
        cfg.limit,
        cfg.window.as_secs_f64()
    );
    let _ = writeln!(
        s,
        r##"<text x="{left}" y="40" fill="#555">Attempts the server saw per window: blue admitted, red 429 (bars above {y_max} clipped, count printed); dashed: the limit; grey line: the floor.</text>"##
    );
    let _ = writeln!(
        s,
        r##"<text x="{left}" y="56" fill="#555">Measured with real processes over loopback; one run, timings noisy. Shaded: Redis cut.</text>"##
    );
    let panel = |s: &mut String, x0: f64, y0: f64, r: &RunResult, st: &Stats| {
        let _ = writeln!(
            s,
            r#"<text x="{x0}" y="{}"><tspan font-weight="bold">{}</tspan>: {:.2} sent/ok, done at {:.2} x floor, p99 {:.1} s, lost {}</text>"#,
            y0 - 6.0,
            r.spec.label(),
            st.per_success(),
            st.completion / cfg.floor().as_secs_f64(),
            st.p99,
            st.lost
        );
        let _ = writeln!(
            s,
            r##"<rect x="{x0}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="#bbb"/>"##
        );
        let bw = pw / windows as f64;
        if let Some((from, to)) = r.cut() {
            let (a, b) = (
                from.as_secs_f64() / cfg.window.as_secs_f64() * bw,
                to.as_secs_f64() / cfg.window.as_secs_f64() * bw,
            );
            let _ = writeln!(
                s,
                r##"<rect x="{:.1}" y="{y0}" width="{:.1}" height="{ph}" fill="#f3e3a0" opacity="0.6"/>"##,
                x0 + a,
                b - a
            );
        }
        let y_of = |v: f64| y0 + ph - v.min(y_max) / y_max * ph;
        // Counts of clipped bars, on two alternating lines so that neighbours do not overlap.
        let mut line = 0;
        for (i, (ok, rejected)) in per_window(r, windows).into_iter().enumerate() {
            let x = x0 + i as f64 * bw + 1.0;
            let (ok, rejected) = (f64::from(ok), f64::from(rejected));
            let _ = writeln!(
                s,
                r##"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#1f77b4"/>"##,
                y_of(ok),
                bw - 2.0,
                y0 + ph - y_of(ok)
            );
            if rejected > 0.0 {
                let _ = writeln!(
                    s,
                    r##"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#d62728"/>"##,
                    y_of(ok + rejected),
                    bw - 2.0,
                    y_of(ok) - y_of(ok + rejected)
                );
            }
            if ok + rejected > y_max {
                let _ = writeln!(
                    s,
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="9" fill="white">{}</text>"#,
                    x + bw / 2.0 - 1.0,
                    y0 + 10.0 + f64::from(line) * 10.0,
                    ok + rejected
                );
                line = 1 - line;
            } else {
                line = 0;
            }
        }
        let ly = y_of(f64::from(cfg.limit));
        let _ = writeln!(
            s,
            r#"<line x1="{x0}" y1="{ly:.1}" x2="{}" y2="{ly:.1}" stroke="black" stroke-dasharray="5 4"/>"#,
            x0 + pw
        );
        let fx = x0 + cfg.floor().as_secs_f64() / cfg.window.as_secs_f64() * bw;
        let _ = writeln!(
            s,
            r##"<line x1="{fx:.1}" y1="{y0}" x2="{fx:.1}" y2="{}" stroke="#888" stroke-width="1.5"/>"##,
            y0 + ph
        );
        for (v, label) in [
            (0.0, "0".to_string()),
            (f64::from(cfg.limit), cfg.limit.to_string()),
            (y_max, format!("{y_max}")),
        ] {
            let _ = writeln!(
                s,
                r##"<text x="{}" y="{:.1}" text-anchor="end" fill="#555">{label}</text>"##,
                x0 - 4.0,
                y_of(v) + 4.0
            );
        }
        let step = (windows / 6).max(1);
        for i in (0..=windows).step_by(step) {
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{}" text-anchor="middle" fill="#555">{} s</text>"##,
                x0 + i as f64 * bw,
                y0 + ph + 13.0,
                i as f64 * cfg.window.as_secs_f64()
            );
        }
    };
    for (ci, wl) in columns.iter().enumerate() {
        let x0 = left + ci as f64 * (pw + col_gap);
        let _ = writeln!(
            s,
            r#"<text x="{x0}" y="{}" font-size="13" font-weight="bold">{}</text>"#,
            top - 16.0,
            match wl {
                Workload::Burst => "burst: every request at t = 0",
                _ => "steady: twice the limit's rate",
            }
        );
        for (ri, mode) in rows.iter().enumerate() {
            let y0 = top + ri as f64 * (ph + row_gap) + 12.0;
            if let Some((r, st)) = results
                .iter()
                .find(|(r, _)| r.spec.mode == *mode && r.spec.workload == *wl)
            {
                panel(&mut s, x0, y0, r, st);
            }
        }
    }
    if let Some((r, st)) = results
        .iter()
        .find(|(r, _)| r.spec.workload == Workload::SteadyRedisCut)
    {
        let y0 = top + rows.len() as f64 * (ph + row_gap) + 12.0;
        panel(&mut s, left + pw + col_gap, y0, r, st);
    }
    s.push_str("</svg>\n");
    s
}
