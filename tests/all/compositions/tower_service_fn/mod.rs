//! (a) The tower layer over `tower::service_fn` on tokio's paused clock: the inner error
//! types, the fake server, the helpers the promises share and the macro that runs each
//! promise once per inner error type; one submodule per promise.

use super::*;

/// The inner error types the paused-clock tests run with.
trait FnError: ClassifyError + Into<BoxError> + Send + Sync + fmt::Debug + 'static {
    fn io(kind: io::ErrorKind) -> Self;
}

impl FnError for io::Error {
    fn io(kind: io::ErrorKind) -> Self {
        io::Error::from(kind)
    }
}

impl FnError for BoxError {
    fn io(kind: io::ErrorKind) -> Self {
        Box::new(io::Error::from(kind))
    }
}

/// An error type the engine cannot downcast to or express a timeout in: the attempt
/// timeout and the deadline must hold over it all the same.
#[derive(Debug)]
struct Opaque(io::ErrorKind);

impl fmt::Display for Opaque {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "opaque failure ({:?})", self.0)
    }
}

impl StdError for Opaque {}

impl ClassifyError for Opaque {
    fn transport_error_kind(&self) -> TransportErrorKind {
        TransportErrorKind::of_error(&io::Error::from(self.0))
    }
}

impl FnError for Opaque {
    fn io(kind: io::ErrorKind) -> Self {
        Opaque(kind)
    }
}

/// What the fake server does with one attempt.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Status(u16),
    /// 429 with `Retry-After` in seconds.
    Limited(u64),
    /// 429 with `Retry-After` in seconds, after holding the attempt this long.
    LimitedAfter(Duration, u64),
    /// 200 after holding the attempt this long.
    OkAfter(Duration),
    Fail(io::ErrorKind),
    Hang,
}

type Script = Arc<dyn Fn(&Uri, usize) -> Answer + Send + Sync>;
type FakeSvc<E> = BoxCloneService<Req, Resp, E>;

/// A fake server: answers each attempt by `script(uri, n)` (`n`: 1 for the first attempt
/// to that URI) and records when each attempt arrived.
#[derive(Clone)]
struct Fake {
    start: Instant,
    hits: Arc<Mutex<Vec<(String, Duration)>>>,
    script: Script,
}

impl Fake {
    fn new(script: impl Fn(&Uri, usize) -> Answer + Send + Sync + 'static) -> Fake {
        Fake {
            start: Instant::now(),
            hits: Arc::default(),
            script: Arc::new(script),
        }
    }

    fn answer(&self, req: &Req) -> Answer {
        let uri = req.uri().to_string();
        let n = {
            let mut hits = self.hits.lock().unwrap();
            hits.push((uri.clone(), self.start.elapsed()));
            hits.iter().filter(|(u, _)| *u == uri).count()
        };
        (self.script)(req.uri(), n)
    }

    /// When the attempts to `uri` arrived (since the fake was made).
    fn at(&self, uri: &str) -> Vec<Duration> {
        let hits = self.hits.lock().unwrap();
        hits.iter()
            .filter(|(u, _)| u == uri)
            .map(|(_, at)| *at)
            .collect()
    }

    fn total(&self) -> usize {
        self.hits.lock().unwrap().len()
    }

    fn service<E: FnError>(&self) -> FakeSvc<E> {
        let fake = self.clone();
        BoxCloneService::new(service_fn(move |req: Req| {
            let answer = fake.answer(&req);
            async move {
                match answer {
                    Answer::Status(s) => Ok(status(s)),
                    Answer::Limited(after) => Ok(limited(after)),
                    Answer::LimitedAfter(hold, after) => {
                        tokio::time::sleep(hold).await;
                        Ok(limited(after))
                    }
                    Answer::OkAfter(hold) => {
                        tokio::time::sleep(hold).await;
                        Ok(status(200))
                    }
                    Answer::Fail(kind) => Err(E::io(kind)),
                    Answer::Hang => std::future::pending().await,
                }
            }
        }))
    }
}

fn status(code: u16) -> Resp {
    Response::builder()
        .status(code)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn limited(retry_after: u64) -> Resp {
    Response::builder()
        .status(429)
        .header(RETRY_AFTER, retry_after.to_string())
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// Three origins on loopback (never connected to: the fake answers).
fn a(path: &str) -> String {
    format!("http://127.0.0.1:1001{path}")
}

fn b(path: &str) -> String {
    format!("http://127.0.0.1:1002{path}")
}

fn c(path: &str) -> String {
    format!("http://127.0.0.1:1003{path}")
}

/// The retry layer straight over the fake.
fn over_fake<E: FnError>(retry: impl IntoRetry, fake: &Fake) -> RetryService<FakeSvc<E>> {
    errors_are_retry_errors(retry.into_retry().layer(fake.service::<E>()))
}

/// A policy (with no retry budget), or a `TelEchoRetry` as it is.
trait IntoRetry {
    fn into_retry(self) -> TelEchoRetry;
}

impl IntoRetry for RetryPolicy {
    fn into_retry(self) -> TelEchoRetry {
        unbudgeted(self)
    }
}

impl IntoRetry for TelEchoRetry {
    fn into_retry(self) -> TelEchoRetry {
        self
    }
}

/// One paused-clock test per inner error type, each calling the generic behaviour. A
/// day of virtual time bounds each one, so that a timer that never fires fails the test
/// instead of hanging it (the paused clock jumps straight there).
macro_rules! service_fn_tests {
    ($($behaviour:ident { $($err:ty => $(#[$attr:meta])* $name:ident;)+ })*) => {
        $($(
            $(#[$attr])*
            #[tokio::test(start_paused = true)]
            async fn $name() {
                tokio::time::timeout(secs(86_400), $behaviour::<$err>())
                    .await
                    .expect("finished within a day of virtual time");
            }
        )+)*
    };
}

/// Sends `n` GETs to `uri` at once (every one is counted in the budget before any answer);
/// returns their results.
async fn at_once<S>(svc: &mut S, uri: &str, n: usize) -> Vec<Result<Out, RetryError>>
where
    S: Service<Req, Response = Out, Error = RetryError>,
{
    let mut pending = Vec::new();
    for _ in 0..n {
        pending.push(svc.ready().await.unwrap().call(get(uri)));
    }
    join_all(pending).await
}

// The submodules come after `service_fn_tests!`, which they use.
mod budget;
mod cooldown;
mod errors;
mod origins;
mod pacing;
mod stacks;
mod timeouts;
