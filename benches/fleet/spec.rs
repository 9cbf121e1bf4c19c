//! What is run: the modes, the workloads, and the sizes of the storm workloads.

use std::time::Duration;

use crate::CAP_FLOORS;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Mode {
    /// A `TelEchoRetry` of its own in each process (storm workloads).
    PerProcess,
    /// Limits in Redis, no pacing (storm workloads).
    FleetCooldown,
    /// Limits in Redis, pacing 2 % under the limit (storm workloads).
    FleetPacing,
    /// `Limits::builder().without_pacing().redis(..)`: the defaults but pacing (before
    /// adaptive pacing was the default).
    Unpaced,
    /// `TelEchoRetry::default()` with `Limits::builder().redis(..)`: the crate's defaults
    /// (adaptive pacing, the shared cooldown).
    Default,
    /// Adaptive pacing without the shared cooldown (`shared_cooldown(false)`), in Redis.
    Adaptive,
    /// A fixed `Pacing` at the server's true limit, in Redis.
    Fixed,
    /// reqwest-retry's `RetryTransientMiddleware`, default `ExponentialBackoff`.
    ReqwestRetry,
}

impl Mode {
    pub(crate) const ALL: [Mode; 8] = [
        Mode::PerProcess,
        Mode::FleetCooldown,
        Mode::FleetPacing,
        Mode::Unpaced,
        Mode::Default,
        Mode::Adaptive,
        Mode::Fixed,
        Mode::ReqwestRetry,
    ];

    /// The modes the storm workloads compare.
    pub(crate) const STORM: [Mode; 4] = [
        Mode::PerProcess,
        Mode::FleetCooldown,
        Mode::FleetPacing,
        Mode::ReqwestRetry,
    ];

    /// The modes the learning workloads compare.
    pub(crate) const LEARN: [Mode; 5] = [
        Mode::Unpaced,
        Mode::Default,
        Mode::Adaptive,
        Mode::Fixed,
        Mode::ReqwestRetry,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::PerProcess => "per-process",
            Mode::FleetCooldown => "fleet-cooldown",
            Mode::FleetPacing => "fleet-pacing",
            Mode::Unpaced => "unpaced",
            Mode::Default => "default",
            Mode::Adaptive => "adaptive-alone",
            Mode::Fixed => "fixed",
            Mode::ReqwestRetry => "reqwest-retry",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.name() == s)
    }

    /// Whether the mode keeps its limits in Redis (the adaptive mode tries to).
    pub(crate) fn fleet(self) -> bool {
        !matches!(self, Mode::PerProcess | Mode::ReqwestRetry)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Workload {
    Burst,
    Steady,
    /// `Steady`, with Redis cut for about one window mid-run.
    SteadyRedisCut,
    /// A token bucket whose rate steps L → 0.4 L → L; closed-loop tasks.
    LimitStep {
        tasks: usize,
    },
    /// A fixed window of several seconds whose limit the clients are not told.
    FixedWindow,
    /// The same, with the quota in `RateLimit` and `X-RateLimit-*` headers.
    QuotaHeaders,
    /// Redis cut for a while, then back empty, with this many processes.
    RedisCutFallback {
        processes: usize,
    },
}

impl Workload {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Workload::Burst => "burst",
            Workload::Steady => "steady",
            Workload::SteadyRedisCut => "steady-redis-cut",
            Workload::LimitStep { .. } => "limit-step",
            Workload::FixedWindow => "fixed-window",
            Workload::QuotaHeaders => "quota-headers",
            Workload::RedisCutFallback { .. } => "redis-cut-fallback",
        }
    }

    /// The name, with the size that tells runs of one workload apart (for scopes).
    pub(crate) fn slug(self) -> String {
        match self {
            Workload::LimitStep { tasks } => format!("limit-step-{tasks}"),
            Workload::RedisCutFallback { processes } => format!("redis-cut-fallback-{processes}"),
            w => w.name().to_string(),
        }
    }

    /// Whether its runs cut Redis (through the example's proxy).
    pub(crate) fn cuts_redis(self) -> bool {
        matches!(
            self,
            Workload::SteadyRedisCut | Workload::RedisCutFallback { .. }
        )
    }

    /// The open-loop schedule of a storm workload; `None` for the learning workloads
    /// (closed loops).
    pub(crate) fn schedule(self) -> Option<Schedule> {
        match self {
            Workload::Burst => Some(Schedule::Burst),
            Workload::Steady | Workload::SteadyRedisCut => Some(Schedule::Steady),
            _ => None,
        }
    }
}

/// When the requests of an open-loop run are due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Schedule {
    /// Every request at `t = 0`.
    Burst,
    /// Twice the limit's rate, evenly spaced across the fleet.
    Steady,
}

impl Schedule {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Schedule::Burst => "burst",
            Schedule::Steady => "steady",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Schedule> {
        [Schedule::Burst, Schedule::Steady]
            .into_iter()
            .find(|w| w.name() == s)
    }
}

/// The sizes of every storm run.
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
    pub(crate) fn due(&self, schedule: Schedule, k: usize) -> Duration {
        match schedule {
            Schedule::Burst => Duration::ZERO,
            // Twice the limit's rate: L × 2 requests per window.
            Schedule::Steady => self
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
        match self.workload {
            Workload::LimitStep { tasks } => {
                format!(
                    "{} {} tasks={tasks}",
                    self.mode.name(),
                    self.workload.name()
                )
            }
            Workload::RedisCutFallback { processes } => format!(
                "{} {} processes={processes}",
                self.mode.name(),
                self.workload.name()
            ),
            _ => format!("{} {}", self.mode.name(), self.workload.name()),
        }
    }

    /// Whether the run is one of the storm workloads (an open loop of requests).
    pub(crate) fn storm(&self) -> bool {
        self.workload.schedule().is_some()
    }
}
