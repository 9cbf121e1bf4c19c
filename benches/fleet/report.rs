//! What a child reports of each request, and the counts every workload's numbers start
//! from.

use tokio::time::Instant;

use crate::clock::micros_since;
use crate::server::{Answer, Hit};

/// How one request ended, as a child reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A 2xx.
    Ok,
    /// Another status handed back.
    Status(u16),
    /// An error instead of a response (its kind, one word).
    Error(String),
    /// Not done by the run's cap (the end of a closed loop).
    Cap,
}

impl Outcome {
    pub(crate) fn word(&self) -> String {
        match self {
            Outcome::Ok => "ok".into(),
            Outcome::Status(s) => format!("status-{s}"),
            Outcome::Error(e) => format!("error-{e}"),
            Outcome::Cap => "cap".into(),
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Outcome> {
        match s {
            "ok" => Some(Outcome::Ok),
            "cap" => Some(Outcome::Cap),
            _ => {
                if let Some(code) = s.strip_prefix("status-") {
                    code.parse().ok().map(Outcome::Status)
                } else {
                    s.strip_prefix("error-")
                        .map(|e| Outcome::Error(e.to_string()))
                }
            }
        }
    }
}

/// A child's report of one request: `req <k> <due µs> <end µs> <outcome>`. `due` is when
/// it was due (open loads) or started (closed loads), from the run's start.
#[derive(Clone, Debug)]
pub(crate) struct Report {
    pub(crate) k: usize,
    pub(crate) due_us: i64,
    pub(crate) end_us: i64,
    pub(crate) outcome: Outcome,
}

impl Report {
    /// Request `k`, due at `due`, ending now with `outcome`.
    pub(crate) fn new(k: usize, start: Instant, due: Instant, outcome: Outcome) -> Report {
        Report {
            k,
            due_us: micros_since(start, due),
            end_us: micros_since(start, Instant::now()),
            outcome,
        }
    }

    pub(crate) fn line(&self) -> String {
        format!(
            "req {} {} {} {}",
            self.k,
            self.due_us,
            self.end_us,
            self.outcome.word()
        )
    }

    pub(crate) fn parse(line: &str) -> Option<Report> {
        let mut it = line.split(' ');
        if it.next()? != "req" {
            return None;
        }
        let report = Report {
            k: it.next()?.parse().ok()?,
            due_us: it.next()?.parse().ok()?,
            end_us: it.next()?.parse().ok()?,
            outcome: Outcome::parse(it.next()?)?,
        };
        it.next().is_none().then_some(report)
    }
}

/// Attempts the server saw, and how many it answered 429.
pub(crate) fn sent_and_throttled<'a>(hits: impl IntoIterator<Item = &'a Hit>) -> (usize, usize) {
    hits.into_iter().fold((0, 0), |(sent, tm), h| {
        (sent + 1, tm + usize::from(h.answer == Answer::TooMany))
    })
}
