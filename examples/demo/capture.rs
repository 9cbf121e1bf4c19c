//! A `tracing` layer that keeps the crate's events (target `telecho_retry`) so the demo
//! can show the decision and delay the crate chose for each attempt.

use super::*;
use tracing::field::{Field, Visit};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// One captured event.
#[derive(Clone, Debug, Default)]
pub(super) struct Event {
    pub(super) attempt: Option<u64>,
    /// The `Debug` of the crate's `Option<Decision>`, e.g. `Some(RetryAfter(1s))`.
    pub(super) decision: String,
    pub(super) delay_ms: Option<u64>,
}

impl Visit for Event {
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "attempt" => self.attempt = Some(value),
            "delay_ms" => self.delay_ms = Some(value),
            _ => {}
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if let Ok(v) = u64::try_from(value) {
            self.record_u64(field, v);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "decision" {
            self.decision = format!("{value:?}");
        }
    }
}

/// The events seen so far (shared with the layer).
#[derive(Clone, Default)]
pub(super) struct Events(Arc<Mutex<Vec<Event>>>);

impl Events {
    pub(super) fn clear(&self) {
        self.0.lock().expect("events").clear();
    }

    pub(super) fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.0.lock().expect("events"))
    }
}

struct Capture(Events);

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() == "telecho_retry" {
            let mut e = Event::default();
            event.record(&mut e);
            self.0 .0.lock().expect("events").push(e);
        }
    }
}

/// Installs the capture layer, and with `verbose` a `fmt` layer on stderr showing the
/// crate's events at DEBUG.
pub(super) fn install(verbose: bool) -> Events {
    let events = Events::default();
    let fmt = verbose.then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_filter(
                Targets::new()
                    .with_default(LevelFilter::OFF)
                    .with_target("telecho_retry", LevelFilter::DEBUG),
            )
    });
    tracing_subscriber::registry()
        .with(Capture(events.clone()))
        .with(fmt)
        .init();
    events
}
