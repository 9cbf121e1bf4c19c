//! What is run: the modes, the workloads, their sizes, and the plan of runs.

use std::time::Duration;

use crate::CAP_FLOORS;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Mode {
    PerProcess,
    FleetCooldown,
    FleetPacing,
    ReqwestRetry,
}

impl Mode {
    pub(crate) const ALL: [Mode; 4] = [
        Mode::PerProcess,
        Mode::FleetCooldown,
        Mode::FleetPacing,
        Mode::ReqwestRetry,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::PerProcess => "per-process",
            Mode::FleetCooldown => "fleet-cooldown",
            Mode::FleetPacing => "fleet-pacing",
            Mode::ReqwestRetry => "reqwest-retry",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.name() == s)
    }

    /// Whether the mode keeps its limits in Redis.
    pub(crate) fn fleet(self) -> bool {
        matches!(self, Mode::FleetCooldown | Mode::FleetPacing)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Workload {
    Burst,
    Steady,
    /// `Steady`, with Redis cut for about one window mid-run.
    SteadyRedisCut,
}

impl Workload {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Workload::Burst => "burst",
            Workload::Steady => "steady",
            Workload::SteadyRedisCut => "steady-redis-cut",
        }
    }

    /// What the children do (the cut is the parent's doing).
    pub(crate) fn child_name(self) -> &'static str {
        match self {
            Workload::Burst => "burst",
            Workload::Steady | Workload::SteadyRedisCut => "steady",
        }
    }

    pub(crate) fn parse_child(s: &str) -> Option<Workload> {
        match s {
            "burst" => Some(Workload::Burst),
            "steady" => Some(Workload::Steady),
            _ => None,
        }
    }
}

/// The sizes of every run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Config {
    /// R: child processes per run.
    pub(crate) children: usize,
    /// L: requests the server admits per window.
    pub(crate) limit: u32,
    /// W: the server's fixed window.
    pub(crate) window: Duration,
    /// Requests per run, split evenly across the children.
    pub(crate) requests: usize,
}

impl Config {
    pub(crate) const FULL: Config = Config {
        children: 4,
        limit: 50,
        window: Duration::from_secs(1),
        requests: 400,
    };
    pub(crate) const QUICK: Config = Config {
        children: 2,
        limit: 20,
        window: Duration::from_secs(1),
        requests: 40,
    };

    /// The least time the server needs to admit every request: `requests / L × W`.
    pub(crate) fn floor(&self) -> Duration {
        self.window
            .mul_f64(self.requests as f64 / f64::from(self.limit.max(1)))
    }

    /// When the run ends: requests not done by then are lost.
    pub(crate) fn cap(&self) -> Duration {
        self.floor() * CAP_FLOORS
    }

    /// When request `k` (of the whole fleet) is due, after the run's start.
    pub(crate) fn due(&self, workload: Workload, k: usize) -> Duration {
        match workload {
            Workload::Burst => Duration::ZERO,
            // Twice the limit's rate: L × 2 requests per window.
            Workload::Steady | Workload::SteadyRedisCut => self
                .window
                .mul_f64(k as f64 / (2.0 * f64::from(self.limit.max(1)))),
        }
    }

    /// The Redis cut of a `steady-redis-cut` run: one window around the middle of the
    /// floor, as offsets from the run's start.
    pub(crate) fn cut(&self) -> (Duration, Duration) {
        let from = (self.floor() / 2).saturating_sub(self.window / 2);
        (from, from + self.window)
    }
}

/// One run: a mode under a workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Spec {
    pub(crate) mode: Mode,
    pub(crate) workload: Workload,
}

impl Spec {
    pub(crate) fn label(&self) -> String {
        format!("{} {}", self.mode.name(), self.workload.name())
    }
}

/// The runs, in groups run side by side. In the full run the paced runs go together, apart
/// from the storms of the other modes: on a small machine, a storm's bursts of retries
/// delay a paced attempt past a window's end now and then (see the README).
pub(crate) fn plan(quick: bool) -> Vec<Vec<Spec>> {
    let spec = |mode, workload| Spec { mode, workload };
    let paced = vec![
        spec(Mode::FleetPacing, Workload::Burst),
        spec(Mode::FleetPacing, Workload::Steady),
        spec(Mode::FleetPacing, Workload::SteadyRedisCut),
    ];
    if quick {
        return vec![vec![
            spec(Mode::PerProcess, Workload::Burst),
            spec(Mode::FleetCooldown, Workload::Burst),
            spec(Mode::FleetPacing, Workload::Burst),
            spec(Mode::FleetPacing, Workload::SteadyRedisCut),
        ]];
    }
    let storms = |workload| {
        Mode::ALL
            .into_iter()
            .filter(|m| *m != Mode::FleetPacing)
            .map(|m| spec(m, workload))
            .collect::<Vec<Spec>>()
    };
    vec![storms(Workload::Burst), storms(Workload::Steady), paced]
}
