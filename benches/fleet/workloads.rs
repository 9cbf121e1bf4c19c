//! The sizes of every workload, how each run is set up, and the plan of runs.

use std::time::Duration;

use crate::child::Load;
use crate::run::{Cut, Setup};
use crate::server::Shape;
use crate::spec::{Config, Mode, Spec, Workload};
use crate::MAX_RETRIES;

/// The sizes of a whole run of the example (full or `--quick`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sizes {
    /// The storm workloads (`burst`, `steady`, `steady-redis-cut`).
    pub(crate) storm: Config,
    /// `limit-step`: the limit L per second, the length of each of its three phases (L,
    /// 0.4 L, L), the start of each phase left out of `served_share`, the task counts
    /// (one run each) and the processes.
    pub(crate) step_limit: u32,
    pub(crate) step_phase: Duration,
    pub(crate) step_settle: Duration,
    pub(crate) step_tasks: &'static [usize],
    pub(crate) step_children: usize,
    /// `fixed-window` and `quota-headers`: the window, its limit, how many windows a run
    /// lasts, the tasks and the processes.
    pub(crate) window: Duration,
    pub(crate) window_limit: u32,
    pub(crate) windows: u32,
    pub(crate) window_tasks: usize,
    pub(crate) window_children: usize,
    /// `redis-cut-fallback`: the quota per 1 s window, the time before the cut, the cut,
    /// the time after it, the process counts (one run each) and the tasks per process.
    pub(crate) cut_quota: u32,
    pub(crate) cut_before: Duration,
    pub(crate) cut_len: Duration,
    pub(crate) cut_after: Duration,
    pub(crate) cut_processes: &'static [usize],
    pub(crate) cut_tasks_per_process: usize,
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

impl Sizes {
    pub(crate) const FULL: Sizes = Sizes {
        storm: Config::FULL,
        step_limit: 50,
        step_phase: secs(20),
        step_settle: secs(5),
        step_tasks: &[4, 16, 64],
        step_children: 4,
        window: secs(10),
        window_limit: 300,
        windows: 5,
        window_tasks: 16,
        window_children: 4,
        cut_quota: 50,
        cut_before: secs(5),
        cut_len: secs(10),
        cut_after: secs(10),
        cut_processes: &[8, 2],
        cut_tasks_per_process: 4,
    };
    pub(crate) const QUICK: Sizes = Sizes {
        storm: Config::QUICK,
        step_limit: 50,
        step_phase: secs(6),
        step_settle: Duration::from_millis(1500),
        step_tasks: &[16],
        step_children: 4,
        window: secs(4),
        window_limit: 100,
        windows: 3,
        window_tasks: 8,
        window_children: 2,
        cut_quota: 20,
        cut_before: secs(2),
        cut_len: secs(4),
        cut_after: secs(3),
        cut_processes: &[8, 2],
        cut_tasks_per_process: 2,
    };

    pub(crate) fn of(quick: bool) -> Sizes {
        if quick {
            Sizes::QUICK
        } else {
            Sizes::FULL
        }
    }

    /// The `limit-step` server: L, 0.4 L, L.
    pub(crate) fn step_shape(&self) -> Shape {
        let l = f64::from(self.step_limit);
        Shape::TokenBucket {
            steps: vec![
                (Duration::ZERO, l),
                (self.step_phase, 0.4 * l),
                (self.step_phase * 2, l),
            ],
        }
    }

    /// How the run of `spec` is set up.
    pub(crate) fn setup(&self, spec: Spec) -> Setup {
        if let Some(schedule) = spec.workload.schedule() {
            let cfg = self.storm;
            return Setup {
                shape: Shape::FixedWindow {
                    limit: cfg.limit,
                    window: cfg.window,
                    quota_headers: false,
                },
                children: cfg.children,
                load: Load::Open { schedule, cfg },
                retries: Some(MAX_RETRIES),
                // 2 % under the key's limit: at exactly the limit, an attempt that reaches
                // the server a moment late, past a window's end, is one too many in the
                // next window.
                pacing: (spec.mode == Mode::FleetPacing)
                    .then(|| (cfg.limit, cfg.window.mul_f64(1.02))),
                // Alone while Redis is cut, each replica keeps its share of the fleet's rate.
                fallback_share: spec.mode.fleet().then(|| 1.0 / cfg.children as f64),
                cut: (spec.workload == Workload::SteadyRedisCut).then(|| {
                    let (from, to) = cfg.cut();
                    Cut {
                        from,
                        to,
                        empty: false,
                    }
                }),
            };
        }
        // the learning workloads: closed loops, the crate's defaults, the true limit for
        // `fixed`.
        let fixed = |n: u32, per: Duration| (spec.mode == Mode::Fixed).then_some((n, per));
        let (shape, children, tasks, duration, pacing, cut) = match spec.workload {
            Workload::LimitStep { tasks } => (
                self.step_shape(),
                self.step_children,
                tasks,
                self.step_phase * 3,
                fixed(self.step_limit, secs(1)),
                None,
            ),
            Workload::RedisCutFallback { processes } => (
                Shape::FixedWindow {
                    limit: self.cut_quota,
                    window: secs(1),
                    quota_headers: false,
                },
                processes,
                processes * self.cut_tasks_per_process,
                self.cut_before + self.cut_len + self.cut_after,
                fixed(self.cut_quota, secs(1)),
                Some(Cut {
                    from: self.cut_before,
                    to: self.cut_before + self.cut_len,
                    empty: true,
                }),
            ),
            // `FixedWindow`, `QuotaHeaders`.
            w => (
                Shape::FixedWindow {
                    limit: self.window_limit,
                    window: self.window,
                    quota_headers: w == Workload::QuotaHeaders,
                },
                self.window_children,
                self.window_tasks,
                self.window * self.windows,
                fixed(self.window_limit, self.window),
                None,
            ),
        };
        Setup {
            shape,
            children,
            load: Load::Closed { tasks, duration },
            retries: None,
            pacing,
            fallback_share: None,
            cut,
        }
    }

    /// The runs, in groups run side by side. The storm groups as before: the paced runs
    /// apart from the storms of the other modes (on a small machine, a storm's bursts of
    /// retries delay a paced attempt past a window's end now and then). Then the learning
    /// workloads, each mode beside the others on the same workload, and workloads of about
    /// the same length together.
    pub(crate) fn plan(&self, quick: bool) -> Vec<Vec<Spec>> {
        let spec = |mode, workload| Spec { mode, workload };
        let learn = |workloads: &[Workload]| -> Vec<Spec> {
            workloads
                .iter()
                .flat_map(|w| Mode::LEARN.into_iter().map(|m| spec(m, *w)))
                .collect()
        };
        let steps: Vec<Workload> = self
            .step_tasks
            .iter()
            .map(|&tasks| Workload::LimitStep { tasks })
            .collect();
        let cuts: Vec<Workload> = self
            .cut_processes
            .iter()
            .map(|&processes| Workload::RedisCutFallback { processes })
            .collect();
        let windows = [Workload::FixedWindow, Workload::QuotaHeaders];
        if quick {
            return vec![
                vec![
                    spec(Mode::PerProcess, Workload::Burst),
                    spec(Mode::FleetCooldown, Workload::Burst),
                    spec(Mode::FleetPacing, Workload::Burst),
                    spec(Mode::FleetPacing, Workload::SteadyRedisCut),
                ],
                learn(&steps),
                learn(&windows),
                learn(&cuts),
            ];
        }
        let storms = |workload| {
            Mode::STORM
                .into_iter()
                .filter(|m| *m != Mode::FleetPacing)
                .map(|m| spec(m, workload))
                .collect::<Vec<Spec>>()
        };
        let paced = vec![
            spec(Mode::FleetPacing, Workload::Burst),
            spec(Mode::FleetPacing, Workload::Steady),
            spec(Mode::FleetPacing, Workload::SteadyRedisCut),
        ];
        // The largest task count beside the fixed windows: both about a minute long.
        let (last_step, first_steps) = steps
            .split_last()
            .map_or((&[][..], &[][..]), |(l, f)| (std::slice::from_ref(l), f));
        let mut last = learn(last_step);
        last.extend(learn(&windows));
        vec![
            storms(Workload::Burst),
            storms(Workload::Steady),
            paced,
            learn(first_steps),
            last,
            learn(&cuts),
        ]
    }
}
