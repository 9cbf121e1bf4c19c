//! Helpers for the observability tests (`observe_spans`, `observe_metrics`): a scripted
//! inner service for the tower layer, and a `tracing` layer that keeps every span and event
//! with its fields.
#![allow(dead_code)] // each test module uses its own subset

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use telecho_retry::{Jitter, RetryPolicy, RetryPolicyBuilder};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

pub(crate) type Req = Request<Full<Bytes>>;
pub(crate) type Resp = Response<Full<Bytes>>;

/// Through the tower layer with adaptive pacing: a 200, then a 429 (`Retry-After: 1`) that
/// cuts the learned rate, retried to a 200 (the two requests both end in 200).
#[cfg(feature = "tower")]
pub(crate) async fn one_adaptive_cut() {
    use telecho_retry::limits::{Limits, Pacing};
    use telecho_retry::TelEchoRetry;
    use tower::{Layer, ServiceExt};

    let limits = Limits::builder().pacing(Pacing::adaptive()).build();
    let svc = TelEchoRetry::new(exact().build())
        .with_limits(limits)
        .layer(scripted(vec![
            status(200),
            Answer::Status(429, Some("1")),
            status(200),
        ]));
    for _ in 0..2 {
        let resp = svc
            .clone()
            .oneshot(request("GET", "http://api.telecho.test/v1/agents"))
            .await;
        assert_eq!(resp.unwrap().status(), 200);
    }
}

/// No jitter, no `Retry-After` spread: delays are exact.
pub(crate) fn exact() -> RetryPolicyBuilder {
    RetryPolicy::builder()
        .jitter(Jitter::None)
        .retry_after_spread(Duration::ZERO)
}

// ===== a scripted inner service =====

/// What the scripted service does with one attempt.
#[derive(Clone, Debug)]
pub(crate) enum Answer {
    /// A response with this status and optional `Retry-After`.
    Status(u16, Option<&'static str>),
    /// An `io::Error` of this kind.
    Fail(io::ErrorKind),
    /// Never answers.
    Hang,
}

pub(crate) fn status(code: u16) -> Answer {
    Answer::Status(code, None)
}

type BoxFut = Pin<Box<dyn Future<Output = Result<Resp, io::Error>> + Send>>;

/// A `tower::service_fn` answering the n-th attempt (over all requests) with `script[n]`
/// (the last repeats). Calling it creates a span `inner.call`; polling its future, a span
/// `inner.poll`: both must be children of the attempt span.
pub(crate) fn scripted(
    script: Vec<Answer>,
) -> impl tower::Service<Req, Response = Resp, Error = io::Error, Future = BoxFut> + Clone + Send {
    let script = Arc::new(script);
    let n = Arc::new(AtomicUsize::new(0));
    tower::service_fn(move |_req: Req| {
        let i = n.fetch_add(1, Ordering::SeqCst).min(script.len() - 1);
        let answer = script[i].clone();
        drop(tracing::info_span!("inner.call"));
        Box::pin(async move {
            drop(tracing::info_span!("inner.poll"));
            match answer {
                Answer::Status(code, retry_after) => {
                    let mut b = Response::builder().status(code);
                    if let Some(ra) = retry_after {
                        b = b.header("retry-after", ra);
                    }
                    Ok(b.body(Full::new(Bytes::new())).unwrap())
                }
                Answer::Fail(kind) => Err(io::Error::from(kind)),
                Answer::Hang => std::future::pending().await,
            }
        }) as BoxFut
    })
}

pub(crate) fn request(method: &str, uri: &str) -> Req {
    Request::builder()
        .method(method)
        .uri(uri)
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap()
}

// ===== a tracing layer that keeps everything =====

/// One span as recorded: its name, its parent's index in [`Captured::spans`], every field
/// recorded on it (values as `Debug` text, strings without quotes), and whether it closed.
#[derive(Clone, Debug)]
pub(crate) struct SpanRecord {
    pub(crate) name: &'static str,
    pub(crate) parent: Option<usize>,
    pub(crate) fields: BTreeMap<String, String>,
    pub(crate) closed: bool,
}

impl SpanRecord {
    pub(crate) fn get(&self, field: &str) -> Option<&str> {
        self.fields.get(field).map(String::as_str)
    }
}

/// One event: its message and fields, and the index of the span it happened in.
#[derive(Clone, Debug)]
pub(crate) struct EventRecord {
    pub(crate) fields: BTreeMap<String, String>,
    pub(crate) span: Option<usize>,
}

#[derive(Debug, Default)]
pub(crate) struct Captured {
    pub(crate) spans: Vec<SpanRecord>,
    pub(crate) events: Vec<EventRecord>,
    /// Open span ids (the registry reuses ids) to their index in `spans`.
    open: BTreeMap<u64, usize>,
}

impl Captured {
    /// The spans named `name`, in the order they were created.
    pub(crate) fn named(&self, name: &str) -> Vec<&SpanRecord> {
        self.spans.iter().filter(|s| s.name == name).collect()
    }

    /// Every field value of every span and event, one per line.
    pub(crate) fn all_text(&self) -> String {
        let spans = self.spans.iter().flat_map(|s| {
            std::iter::once(s.name.to_owned())
                .chain(s.fields.iter().map(|(k, v)| format!("{k}={v}")))
        });
        let events = self
            .events
            .iter()
            .flat_map(|e| e.fields.iter().map(|(k, v)| format!("{k}={v}")));
        spans.chain(events).collect::<Vec<_>>().join("\n")
    }
}

/// The layer; clone it to read what it captured.
#[derive(Clone, Default)]
pub(crate) struct Capture(pub(crate) Arc<Mutex<Captured>>);

impl Capture {
    pub(crate) fn get(&self) -> std::sync::MutexGuard<'_, Captured> {
        self.0.lock().unwrap()
    }

    /// Installs a subscriber with this layer (and nothing else) as the thread's default.
    pub(crate) fn install(&self) -> tracing::subscriber::DefaultGuard {
        use tracing_subscriber::layer::SubscriberExt;
        tracing::subscriber::set_default(tracing_subscriber::registry().with(self.clone()))
    }
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S> Layer<S> for Capture
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut c = self.get();
        let parent = ctx
            .span(id)
            .and_then(|s| s.parent())
            .and_then(|p| c.open.get(&p.id().into_u64()).copied());
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let index = c.spans.len();
        c.spans.push(SpanRecord {
            name: attrs.metadata().name(),
            parent,
            fields,
            closed: false,
        });
        c.open.insert(id.into_u64(), index);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        let mut c = self.get();
        if let Some(&index) = c.open.get(&id.into_u64()) {
            values.record(&mut Fields(&mut c.spans[index].fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut c = self.get();
        let span = ctx
            .event_span(event)
            .and_then(|s| c.open.get(&s.id().into_u64()).copied());
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        c.events.push(EventRecord { fields, span });
    }

    fn on_close(&self, id: Id, _ctx: Context<'_, S>) {
        let mut c = self.get();
        if let Some(index) = c.open.remove(&id.into_u64()) {
            c.spans[index].closed = true;
        }
    }
}
