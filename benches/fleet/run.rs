//! The parent's side of one run: its server, proxy and children, and what they reported.

use std::io::{BufRead, BufReader, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::child::{ChildArgs, Load};
use crate::clock::{instant_of, unix_ns};
use crate::deployment::Deployment;
use crate::proxy::RedisProxy;
use crate::report::Report;
use crate::server::{Hit, MockServer, Shape};
use crate::spec::{Config, Spec};
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

/// A Redis cut: from, to (offsets from the run's start), and whether Redis comes back
/// empty (the scope's keys deleted just before the cut ends).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cut {
    pub(crate) from: Duration,
    pub(crate) to: Duration,
    pub(crate) empty: bool,
}

/// How one run is set up: the server's limit, the children and what they send.
#[derive(Clone, Debug)]
pub(crate) struct Setup {
    pub(crate) shape: Shape,
    pub(crate) children: usize,
    /// The fleet's load: for a closed load, `tasks` is the fleet's, split across the
    /// children.
    pub(crate) load: Load,
    pub(crate) retries: Option<u32>,
    pub(crate) pacing: Option<(u32, Duration)>,
    pub(crate) fallback_share: Option<f64>,
    pub(crate) cut: Option<Cut>,
}

impl Setup {
    /// The child `index`'s share of the load.
    fn child_load(&self, index: usize) -> Load {
        match self.load {
            Load::Closed { tasks, duration } => Load::Closed {
                tasks: tasks / self.children + usize::from(index < tasks % self.children),
                duration,
            },
            open => open,
        }
    }
}

/// A run's raw results.
pub(crate) struct RunResult {
    pub(crate) spec: Spec,
    pub(crate) setup: Setup,
    /// What the children reported, one per request.
    pub(crate) reports: Vec<Report>,
    pub(crate) hits: Vec<Hit>,
    /// Children that failed, and how.
    pub(crate) failures: Vec<String>,
    /// Times the children's Redis stores fell back on in-process limits.
    pub(crate) fallbacks: u64,
    /// Where the children's limits were kept (`redis`, `process`, `none`), as they said.
    pub(crate) store: String,
}

impl RunResult {
    /// The sizes of a storm run (an open load).
    pub(crate) fn cfg(&self) -> Config {
        match self.setup.load {
            Load::Open { cfg, .. } => cfg,
            Load::Closed { .. } => Config {
                children: self.setup.children,
                limit: 1,
                window: Duration::from_secs(1),
                requests: 0,
            },
        }
    }

    /// The Redis cut, as offsets from the start.
    pub(crate) fn cut(&self) -> Option<(Duration, Duration)> {
        self.setup.cut.map(|c| (c.from, c.to))
    }
}

/// Cuts Redis from `cut.from` to `cut.to` after `start`, emptying the run's scope in Redis
/// (not through the proxy: on the parent's own connection) before it comes back if the cut
/// says so.
async fn cutter(
    proxy: tokio::sync::watch::Sender<bool>,
    cut: Cut,
    start: Instant,
    redis: Deployment,
    scope: String,
) -> Result<(), String> {
    tokio::time::sleep_until(start + cut.from).await;
    proxy.send_replace(true);
    tokio::time::sleep_until(start + cut.to).await;
    let emptied = if cut.empty {
        redis.empty_scope(&scope).await
    } else {
        Ok(0)
    };
    proxy.send_replace(false);
    emptied.map(|_| ())
}

pub(crate) async fn run(
    spec: Spec,
    setup: Setup,
    redis: Deployment,
    scope: String,
) -> Result<RunResult, String> {
    if let (Some(_), Some(why)) = (setup.cut, redis.why_no_cut()) {
        return Err(format!("{}: {why}", spec.label()));
    }
    let server = MockServer::start(setup.shape.clone()).await?;
    let proxy = match setup.cut {
        Some(_) => Some(RedisProxy::start(redis.nodes[0].host_port.clone()).await?),
        None => None,
    };
    let redis_for_children = redis.for_children(proxy.as_ref().map(|p| p.addr));
    let list: Vec<ChildArgs> = (0..setup.children)
        .map(|index| ChildArgs {
            server: server.addr,
            mode: spec.mode,
            redis: redis_for_children.clone(),
            cluster: redis.cluster,
            scope: scope.clone(),
            index,
            children: setup.children,
            retries: setup.retries,
            pacing: setup.pacing,
            fallback_share: setup.fallback_share,
            load: setup.child_load(index),
        })
        .collect();
    let (heard_tx, mut heard) = mpsc::unbounded_channel();
    let mut children = Children::spawn(&list, &heard_tx)?;
    drop(heard_tx);

    // Every child ready, or the run fails.
    let mut ready = 0;
    let mut stores = Vec::new();
    let ready_by = Instant::now() + READY_TIMEOUT;
    while ready < setup.children {
        match tokio::time::timeout_at(ready_by, heard.recv()).await {
            Ok(Some(Heard::Line(_, l))) if l == "ready" => ready += 1,
            Ok(Some(Heard::Line(_, l))) if l.starts_with("store ") => {
                stores.push(l["store ".len()..].to_string());
            }
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
    stores.sort();
    stores.dedup();
    let store = stores.join("+");

    let start_unix = unix_ns() + 200_000_000;
    let start = instant_of(start_unix);
    server.start_run(start);
    children.go(start_unix)?;
    let cutter = match (&proxy, setup.cut) {
        (Some(p), Some(cut)) => Some(tokio::spawn(cutter(
            p.cut.clone(),
            cut,
            start,
            redis.clone(),
            scope.clone(),
        ))),
        _ => None,
    };

    let mut reports = Vec::new();
    let mut failures = Vec::new();
    let mut finished = vec![false; setup.children];
    let mut fallbacks = 0;
    let report_by = start + setup.load.end() + setup.load.drain() + REPORT_GRACE;
    while finished.iter().any(|f| !f) {
        match tokio::time::timeout_at(report_by, heard.recv()).await {
            Ok(Some(Heard::Line(i, l))) => {
                if l == "done" {
                    finished[i] = true;
                } else if let Some(n) = l.strip_prefix("fallbacks ") {
                    fallbacks += n.parse::<u64>().unwrap_or(0);
                } else if let Some(r) = Report::parse(&l) {
                    if r.k % setup.children == i {
                        reports.push(r);
                    } else {
                        failures.push(format!("child {i}: report of another's request"));
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
        if c.is_finished() {
            if let Ok(Err(e)) = c.await {
                failures.push(e);
            }
        } else {
            c.abort();
        }
    }
    drop(children);
    Ok(RunResult {
        spec,
        setup,
        reports,
        hits: server.hits(),
        failures,
        fallbacks,
        store,
    })
}
