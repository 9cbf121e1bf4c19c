//! The parent's side of one run: its server, proxy and children, and what they reported.

use std::io::{BufRead, BufReader, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::child::{ChildArgs, Report};
use crate::clock::{instant_of, unix_ns};
use crate::proxy::{RedisProxy, RedisUrl};
use crate::server::{Hit, MockServer};
use crate::spec::{Config, Spec, Workload};
use crate::{READY_TIMEOUT, REPORT_GRACE};

/// What a child said, or that it is gone.
pub(crate) enum Heard {
    Line(usize, String),
    Gone(usize),
}

/// The children of one run; killed (if still running) when dropped, whatever happened.
pub(crate) struct Children {
    pub(crate) procs: Vec<Child>,
    pub(crate) stdins: Vec<Option<ChildStdin>>,
}

impl Children {
    pub(crate) fn spawn(
        list: &[ChildArgs],
        heard: &mpsc::UnboundedSender<Heard>,
    ) -> Result<Children, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut children = Children {
            procs: Vec::new(),
            stdins: Vec::new(),
        };
        for (i, args) in list.iter().enumerate() {
            let mut proc = Command::new(&exe)
                .args(args.to_args())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| format!("starting child {i}: {e}"))?;
            let stdout = proc.stdout.take();
            children.stdins.push(proc.stdin.take());
            children.procs.push(proc);
            let heard = heard.clone();
            std::thread::spawn(move || {
                if let Some(stdout) = stdout {
                    for line in BufReader::new(stdout).lines() {
                        let Ok(line) = line else { break };
                        if heard.send(Heard::Line(i, line)).is_err() {
                            return;
                        }
                    }
                }
                let _ = heard.send(Heard::Gone(i));
            });
        }
        Ok(children)
    }

    /// Tells every child when the run starts.
    pub(crate) fn go(&mut self, start_unix_ns: u128) -> Result<(), String> {
        for (i, stdin) in self.stdins.iter_mut().enumerate() {
            let stdin = stdin
                .as_mut()
                .ok_or_else(|| format!("child {i}: no stdin"))?;
            writeln!(stdin, "go {start_unix_ns}")
                .and_then(|()| stdin.flush())
                .map_err(|e| format!("child {i}: {e}"))?;
        }
        Ok(())
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        // Closing stdin ends a child that is still waiting; kill the rest.
        self.stdins.clear();
        for p in &mut self.procs {
            if !matches!(p.try_wait(), Ok(Some(_))) {
                let _ = p.kill();
            }
            let _ = p.wait();
        }
    }
}

/// A run's raw results.
pub(crate) struct RunResult {
    pub(crate) spec: Spec,
    pub(crate) cfg: Config,
    /// Per request `k`: what its child reported (`None`: nothing, so lost).
    pub(crate) reports: Vec<Option<Report>>,
    pub(crate) hits: Vec<Hit>,
    /// Children that failed, and how.
    pub(crate) failures: Vec<String>,
    /// The Redis cut, as offsets from the start, for a `steady-redis-cut` run.
    pub(crate) cut: Option<(Duration, Duration)>,
    /// Times the children's Redis stores fell back on in-process limits.
    pub(crate) fallbacks: u64,
}

pub(crate) async fn run(
    spec: Spec,
    cfg: Config,
    redis: RedisUrl,
    scope: String,
) -> Result<RunResult, String> {
    let server = MockServer::start(&cfg).await?;
    let proxy = if spec.workload == Workload::SteadyRedisCut {
        Some(RedisProxy::start(redis.host_port.clone()).await?)
    } else {
        None
    };
    let redis_for_children = match &proxy {
        Some(p) => redis.via(p.addr),
        None => redis.clone(),
    };
    let list: Vec<ChildArgs> = (0..cfg.children)
        .map(|index| ChildArgs {
            server: server.addr,
            mode: spec.mode,
            workload: spec.workload,
            redis: redis_for_children.url(),
            scope: scope.clone(),
            index,
            cfg,
        })
        .collect();
    let (heard_tx, mut heard) = mpsc::unbounded_channel();
    let mut children = Children::spawn(&list, &heard_tx)?;
    drop(heard_tx);

    // Every child ready, or the run fails.
    let mut ready = 0;
    let ready_by = Instant::now() + READY_TIMEOUT;
    while ready < cfg.children {
        match tokio::time::timeout_at(ready_by, heard.recv()).await {
            Ok(Some(Heard::Line(_, l))) if l == "ready" => ready += 1,
            Ok(Some(Heard::Line(i, l))) => {
                return Err(format!(
                    "{}: child {i} said {l:?} before the start",
                    spec.label()
                ))
            }
            Ok(Some(Heard::Gone(i))) => {
                return Err(format!(
                    "{}: child {i} exited before the start",
                    spec.label()
                ))
            }
            Ok(None) | Err(_) => {
                return Err(format!("{}: children not ready in time", spec.label()))
            }
        }
    }

    let start_unix = unix_ns() + 200_000_000;
    let start = instant_of(start_unix);
    server.start_run(start);
    children.go(start_unix)?;
    let cut = (spec.workload == Workload::SteadyRedisCut).then(|| cfg.cut());
    let cutter = match (&proxy, cut) {
        (Some(p), Some((from, to))) => {
            let switch = p.cut.clone();
            Some(tokio::spawn(async move {
                tokio::time::sleep_until(start + from).await;
                switch.send_replace(true);
                tokio::time::sleep_until(start + to).await;
                switch.send_replace(false);
            }))
        }
        _ => None,
    };

    let mut reports: Vec<Option<Report>> = vec![None; cfg.requests];
    let mut failures = Vec::new();
    let mut finished = vec![false; cfg.children];
    let mut fallbacks = 0;
    let report_by = start + cfg.cap() + REPORT_GRACE;
    while finished.iter().any(|f| !f) {
        match tokio::time::timeout_at(report_by, heard.recv()).await {
            Ok(Some(Heard::Line(i, l))) => {
                if l == "done" {
                    finished[i] = true;
                } else if let Some(n) = l.strip_prefix("fallbacks ") {
                    fallbacks += n.parse::<u64>().unwrap_or(0);
                } else if let Some(r) = Report::parse(&l) {
                    let slot = reports.get_mut(r.k);
                    match slot {
                        Some(s) if r.k % cfg.children == i => *s = Some(r),
                        _ => failures.push(format!("child {i}: report of another's request")),
                    }
                } else {
                    failures.push(format!("child {i}: unexpected line {l:?}"));
                }
            }
            Ok(Some(Heard::Gone(i))) => {
                if !finished[i] {
                    failures.push(format!("child {i} exited without its results"));
                    finished[i] = true;
                }
            }
            Ok(None) => break,
            Err(_) => {
                failures.push("children did not report in time (killed)".into());
                break;
            }
        }
    }
    if let Some(c) = cutter {
        c.abort();
    }
    drop(children);
    Ok(RunResult {
        spec,
        cfg,
        reports,
        hits: server.hits(),
        failures,
        cut,
        fallbacks,
    })
}
