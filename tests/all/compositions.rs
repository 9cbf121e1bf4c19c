//! The engine's promises through every adapter and the usual tower stacks.
//!
//! Each promise (errors, attempt timeout and deadline, the deadline behind the cooldown,
//! readiness while held back, the cooldown above the cap, per-origin limits, the budget's
//! ratio, extensions, refused connections, client-side pacing) is written once as a generic function and run
//! through every adapter it applies to:
//!
//! - the tower layer over `tower::service_fn` on tokio's paused clock, with the inner error
//!   type `std::io::Error`, `tower::BoxError` (and, for the timers, an opaque error type
//!   the engine knows nothing about): exact timings (tests named `…_tower_service_fn_io`,
//!   `…_box`, `…_opaque`);
//! - the tower layer over hyper-util's legacy client against a loopback server, in real
//!   time with short delays (`…_tower_hyper_util`);
//! - the reqwest middleware against a loopback server (`…_reqwest_middleware`);
//!
//! and through the stacks `RetryService<ConcurrencyLimit<_>>`, `RetryService<Buffer<_>>`,
//! `Buffer<RetryService<_>>` and `Timeout<RetryService<_>>`.
//!
//! The paused-clock tests live in module `tower_service_fn`, the real-socket ones in
//! `real_sockets`. Real-socket tests are bounded by a 2 s `tokio::time::timeout`;
//! `Retry-After` is at most `1` on real sockets, or above the cap (never waited for).
//! Tests marked `` assert a promise the engine does not keep yet.
#![cfg(all(feature = "tower", feature = "reqwest"))]

use crate::support;

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use http::header::RETRY_AFTER;
use http::{Extensions, Method, Request, Response, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use telecho_retry::body::ResponseBody;
use telecho_retry::classify::ClassifyError;
use telecho_retry::classify::TransportErrorKind;
use telecho_retry::limits::{Limits, Pacing, RetryBudget};
use telecho_retry::{
    Jitter, RetryError, RetryErrorKind, RetryInfo, RetryOverride, RetryPolicy, RetryPolicyBuilder,
    RetryService, StopReason, TelEchoRetry,
};
use tokio::time::{advance, Instant};
use tokio_test::{assert_pending, assert_ready};
use tower::limit::{ConcurrencyLimit, ConcurrencyLimitLayer};
use tower::timeout::error::Elapsed;
use tower::timeout::TimeoutLayer;
use tower::util::BoxCloneService;
use tower::{service_fn, BoxError, Layer, Service, ServiceBuilder, ServiceExt};

use support::{budgeted, paced, unbudgeted, Misbehave, RawServer, Reply, Server};

// ===== shared helpers =====

type Req = Request<Full<Bytes>>;
type Resp = Response<Full<Bytes>>;
/// What the retry layer hands back for an inner `Resp`.
type Out = Response<ResponseBody<Full<Bytes>>>;

const ZERO: Duration = Duration::ZERO;

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// No randomness and no budget: the 1 s, 2 s, 4 s … ladder and `Retry-After` to the ms.
fn exact() -> RetryPolicyBuilder {
    RetryPolicy::builder()
        .jitter(Jitter::None)
        .retry_after_spread(ZERO)
}

/// Like [`exact`], with a 20 ms, 40 ms, 80 ms, 100 ms … ladder for real sockets.
fn fast() -> RetryPolicyBuilder {
    exact().base_delay(ms(20)).max_delay(ms(100))
}

fn request(method: Method, uri: &str) -> Req {
    Request::builder()
        .method(method)
        .uri(uri)
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap()
}

fn get(uri: &str) -> Req {
    request(Method::GET, uri)
}

fn post(uri: &str) -> Req {
    request(Method::POST, uri)
}

/// The `RetryInfo` of a response (none attached reads as "one attempt, success").
fn info<B>(resp: &Response<B>) -> RetryInfo {
    RetryInfo::of(resp.extensions())
}

/// The `io::ErrorKind` of a `RetryError`'s inner error.
#[track_caller]
fn inner_io_kind(err: &RetryError) -> io::ErrorKind {
    err.get_inner()
        .expect("an inner error")
        .downcast_ref::<io::Error>()
        .expect("the inner error is the io::Error the service returned")
        .kind()
}

/// The `RetryError` inside a boxed error from a layer above the retry layer.
#[track_caller]
fn retry_error_in(err: &BoxError) -> &RetryError {
    RetryError::of(&**err).unwrap_or_else(|| panic!("no RetryError in {err:?}"))
}

/// Compiles only if the service's error type is the concrete `RetryError`.
fn errors_are_retry_errors<S, R>(svc: S) -> S
where
    S: Service<R, Error = RetryError>,
{
    svc
}

/// Runs a real-socket test under a 2 s bound.
async fn bounded(test: impl Future<Output = ()>) {
    bounded_for(secs(2), test).await;
}

/// Runs a real-socket test under `bound`.
async fn bounded_for(bound: Duration, test: impl Future<Output = ()>) {
    tokio::time::timeout(bound, test)
        .await
        .unwrap_or_else(|_| panic!("a real-socket test finishes within {bound:?}"));
}

/// `floor(100 · ratio)`: the retries 100 requests buy.
fn share_of_100(ratio: f32) -> i64 {
    (100.0 * f64::from(ratio)).floor() as i64
}

// ===== (a) the tower layer over service_fn, paused clock =====

mod tower_service_fn {
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

    // ----- errors -----

    async fn inner_errors_reach_the_caller_as_a_retry_error_with_info_and_source<E: FnError>() {
        let fake = Fake::new(|uri, _| match uri.path() {
            "/denied" => Answer::Fail(io::ErrorKind::PermissionDenied),
            _ => Answer::Fail(io::ErrorKind::ConnectionReset),
        });
        let svc = over_fake::<E>(exact().max_retries(2).build(), &fake);

        // Not a transport failure the policy knows: fatal, one attempt.
        let err: RetryError = svc.clone().oneshot(get(&a("/denied"))).await.unwrap_err();
        assert_eq!(err.kind(), RetryErrorKind::Inner);
        assert_eq!(inner_io_kind(&err), io::ErrorKind::PermissionDenied);
        assert!(err.source().is_some(), "the inner error is the source");
        assert_eq!(err.info().attempts(), 1);
        assert_eq!(err.info().slept(), ZERO);
        assert_eq!(err.stop_reason(), Some(StopReason::Fatal));
        assert!(!err.is_timeout() && !err.is_rate_limited());
        assert_eq!(err.cooldown(), None);

        // A reset on a GET: retried twice, then the last error with what was tried.
        let t = Instant::now();
        let err = svc.oneshot(get(&a("/reset"))).await.unwrap_err();
        assert_eq!(t.elapsed(), secs(3));
        assert_eq!(err.kind(), RetryErrorKind::Inner);
        assert_eq!(inner_io_kind(&err), io::ErrorKind::ConnectionReset);
        assert_eq!(err.info().attempts(), 3);
        assert_eq!(err.info().slept(), secs(3));
        assert_eq!(err.stop_reason(), Some(StopReason::MaxRetries));
        assert_eq!(fake.at(&a("/reset")), [ZERO, secs(1), secs(3)]);
    }

    /// An inner service whose `poll_ready` fails.
    struct BrokenReady<E>(PhantomData<fn() -> E>);

    impl<E> Clone for BrokenReady<E> {
        fn clone(&self) -> Self {
            BrokenReady(PhantomData)
        }
    }

    impl<E: FnError> Service<Req> for BrokenReady<E> {
        type Response = Resp;
        type Error = E;
        type Future = std::future::Ready<Result<Resp, E>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), E>> {
            Poll::Ready(Err(E::io(io::ErrorKind::BrokenPipe)))
        }

        fn call(&mut self, _req: Req) -> Self::Future {
            panic!("called without being ready");
        }
    }

    async fn a_failed_poll_ready_is_a_retry_error_with_no_attempt_sent<E: FnError>() {
        let svc =
            errors_are_retry_errors(TelEchoRetry::default().layer(BrokenReady::<E>(PhantomData)));
        let err = svc.oneshot(get(&a("/"))).await.unwrap_err();
        assert_eq!(err.kind(), RetryErrorKind::Inner);
        assert_eq!(inner_io_kind(&err), io::ErrorKind::BrokenPipe);
        assert_eq!(err.info().attempts(), 0);
        assert_eq!(err.info().slept(), ZERO);
    }

    service_fn_tests! {
        inner_errors_reach_the_caller_as_a_retry_error_with_info_and_source {
            io::Error => inner_errors_reach_the_caller_as_a_retry_error_with_info_and_source_tower_service_fn_io;
            BoxError => inner_errors_reach_the_caller_as_a_retry_error_with_info_and_source_tower_service_fn_box;
        }
        a_failed_poll_ready_is_a_retry_error_with_no_attempt_sent {
            io::Error => a_failed_poll_ready_is_a_retry_error_with_no_attempt_sent_tower_service_fn_io;
            BoxError => a_failed_poll_ready_is_a_retry_error_with_no_attempt_sent_tower_service_fn_box;
        }
    }

    // ----- attempt timeout and deadline over any inner error type -----

    async fn attempt_timeout_is_enforced_over_any_inner_error_type<E: FnError>() {
        let fake = Fake::new(|_, _| Answer::Hang);
        let policy = exact().max_retries(2).attempt_timeout(secs(2)).build();
        let svc = over_fake::<E>(policy, &fake);

        // A GET: 2 s, 1 s backoff, 2 s, 2 s backoff, 2 s.
        let t = Instant::now();
        let err = svc.clone().oneshot(get(&a("/get"))).await.unwrap_err();
        assert_eq!(t.elapsed(), secs(9));
        assert_eq!(err.kind(), RetryErrorKind::AttemptTimeout);
        assert!(err.is_timeout());
        assert!(err.get_inner().is_none());
        assert_eq!(err.info().attempts(), 3);
        assert_eq!(err.info().slept(), secs(3));
        assert_eq!(err.stop_reason(), Some(StopReason::MaxRetries));
        assert_eq!(fake.at(&a("/get")), [ZERO, secs(3), secs(7)]);

        // A POST that may have arrived is not resent.
        let t = Instant::now();
        let err = svc.oneshot(post(&a("/post"))).await.unwrap_err();
        assert_eq!(t.elapsed(), secs(2));
        assert_eq!(err.kind(), RetryErrorKind::AttemptTimeout);
        assert_eq!(err.info().attempts(), 1);
        assert_eq!(err.stop_reason(), Some(StopReason::Fatal));
        assert_eq!(fake.at(&a("/post")).len(), 1);
    }

    async fn deadline_cuts_the_attempt_in_flight_and_sends_none_after_it<E: FnError>() {
        let fake = Fake::new(|_, _| Answer::Hang);
        let policy = exact()
            .max_retries(5)
            .attempt_timeout(secs(2))
            .deadline(ms(4500))
            .build();
        let svc = over_fake::<E>(policy, &fake);

        // Attempt 1 times out at 2 s, attempt 2 starts at 3 s and is cut at 4.5 s.
        let t = Instant::now();
        let err = svc.oneshot(get(&a("/"))).await.unwrap_err();
        assert_eq!(t.elapsed(), ms(4500));
        assert_eq!(err.kind(), RetryErrorKind::Deadline);
        assert!(err.is_timeout());
        assert!(err.get_inner().is_none());
        assert_eq!(err.info().attempts(), 2);
        assert_eq!(err.stop_reason(), Some(StopReason::Deadline));
        tokio::time::sleep(secs(60)).await;
        assert_eq!(
            fake.at(&a("/")),
            [ZERO, secs(3)],
            "no attempt after the deadline"
        );
    }

    service_fn_tests! {
        attempt_timeout_is_enforced_over_any_inner_error_type {
            io::Error => attempt_timeout_is_enforced_over_any_inner_error_type_tower_service_fn_io;
            BoxError => attempt_timeout_is_enforced_over_any_inner_error_type_tower_service_fn_box;
            Opaque => attempt_timeout_is_enforced_over_any_inner_error_type_tower_service_fn_opaque;
        }
        deadline_cuts_the_attempt_in_flight_and_sends_none_after_it {
            io::Error => deadline_cuts_the_attempt_in_flight_and_sends_none_after_it_tower_service_fn_io;
            BoxError => deadline_cuts_the_attempt_in_flight_and_sends_none_after_it_tower_service_fn_box;
            Opaque => deadline_cuts_the_attempt_in_flight_and_sends_none_after_it_tower_service_fn_opaque;
        }
    }

    // ----- the deadline bounds the wait behind the cooldown -----

    async fn deadline_refuses_a_wait_behind_the_cooldown<E: FnError>() {
        let fake = Fake::new(|uri, _| match uri.path() {
            "/limited" => Answer::Limited(5),
            _ => Answer::Status(200),
        });
        let svc = over_fake::<E>(exact().max_retries(3).deadline(secs(3)).build(), &fake);

        // 5 s does not fit a 3 s deadline: the 429 at once.
        let t = Instant::now();
        let resp = svc.clone().oneshot(get(&a("/limited"))).await.unwrap();
        assert_eq!(t.elapsed(), ZERO);
        assert_eq!(resp.status(), 429);
        assert_eq!(info(&resp).stop_reason(), Some(StopReason::Deadline));

        // 1 s later, another request would wait 4 s behind the cooldown: refused at once.
        advance(secs(1)).await;
        let t = Instant::now();
        let err = svc.clone().oneshot(get(&a("/other"))).await.unwrap_err();
        assert_eq!(t.elapsed(), ZERO, "refused at once, not after a wait");
        assert_eq!(err.kind(), RetryErrorKind::Deadline);
        assert!(err.is_timeout());
        assert!(err.get_inner().is_none());
        assert_eq!(err.cooldown(), Some(secs(4)));
        assert_eq!(err.info().attempts(), 0);
        assert_eq!(err.info().slept(), ZERO);
        assert_eq!(err.stop_reason(), Some(StopReason::Deadline));
        assert!(fake.at(&a("/other")).is_empty(), "nothing sent");

        // Once the cooldown has passed, the same request goes through.
        advance(secs(4)).await;
        let resp = svc.oneshot(get(&a("/other"))).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(fake.at(&a("/other")), [secs(5)]);
    }

    /// A server: 429 `Retry-After: 5` for the first `/limited`, 503 for the first `/flaky`,
    /// 200 for everything else.
    fn limited_then_flaky() -> Fake {
        Fake::new(|uri, n| match (uri.path(), n) {
            ("/limited", 1) => Answer::Limited(5),
            ("/flaky", 1) => Answer::Status(503),
            _ => Answer::Status(200),
        })
    }

    async fn a_wait_behind_the_cooldown_that_fits_the_deadline_is_counted_in_slept<E: FnError>() {
        let fake = limited_then_flaky();
        let svc = over_fake::<E>(exact().max_retries(3).deadline(secs(10)).build(), &fake);
        let first = tokio::spawn(svc.clone().oneshot(get(&a("/limited"))));
        tokio::time::sleep(secs(1)).await;

        // Held back 4 s, then a 503, 1 s of backoff, a 200.
        let t = Instant::now();
        let resp = svc.oneshot(get(&a("/flaky"))).await.unwrap();
        assert_eq!(t.elapsed(), secs(5));
        assert_eq!(resp.status(), 200);
        assert_eq!(info(&resp).attempts(), 2);
        assert_eq!(
            info(&resp).slept(),
            secs(5),
            "4 s behind the cooldown + 1 s"
        );
        assert_eq!(fake.at(&a("/flaky")), [secs(5), secs(6)]);
        assert_eq!(first.await.unwrap().unwrap().status(), 200);
    }

    async fn a_first_try_success_after_a_cooldown_wait_reports_the_wait<E: FnError>() {
        let fake = limited_then_flaky();
        let svc = over_fake::<E>(exact().max_retries(3).deadline(secs(10)).build(), &fake);
        let first = tokio::spawn(svc.clone().oneshot(get(&a("/limited"))));
        tokio::time::sleep(secs(1)).await;

        let t = Instant::now();
        let resp = svc.oneshot(get(&a("/ok"))).await.unwrap();
        assert_eq!(t.elapsed(), secs(4));
        assert_eq!(resp.status(), 200);
        assert_eq!(fake.at(&a("/ok")), [secs(5)]);
        assert_eq!(first.await.unwrap().unwrap().status(), 200);
        let info = info(&resp);
        assert_eq!(info.attempts(), 1);
        assert_eq!(
            info.slept(),
            secs(4),
            "the 4 s behind the cooldown are counted in RetryInfo::slept"
        );
    }

    async fn a_cooldown_extended_past_the_deadline_during_the_wait_fails_when_it_wakes<
        E: FnError,
    >() {
        let fake = Fake::new(|uri, _| match uri.path() {
            "/slow" => Answer::LimitedAfter(secs(3), 9),
            "/limited" => Answer::Limited(4),
            _ => Answer::Status(200),
        });
        let svc = over_fake::<E>(exact().max_retries(0).deadline(secs(10)).build(), &fake);

        // In flight before the cooldown: answers 429 `Retry-After: 9` at 3 s (until 12 s).
        let slow = tokio::spawn(svc.clone().oneshot(get(&a("/slow"))));
        tokio::task::yield_now().await;
        // Cooldown until 4 s.
        let resp = svc.clone().oneshot(get(&a("/limited"))).await.unwrap();
        assert_eq!(resp.status(), 429);

        // Fits at first (4 s < 10 s); at 4 s the cooldown runs to 12 s, past the deadline.
        let t = Instant::now();
        let err = svc.oneshot(get(&a("/ok"))).await.unwrap_err();
        assert_eq!(t.elapsed(), secs(4));
        assert_eq!(err.kind(), RetryErrorKind::Deadline);
        assert_eq!(err.cooldown(), Some(secs(8)));
        assert_eq!(err.info().attempts(), 0);
        assert_eq!(err.info().slept(), secs(4));
        assert_eq!(err.stop_reason(), Some(StopReason::Deadline));
        assert_eq!(slow.await.unwrap().unwrap().status(), 429);
        tokio::time::sleep(secs(60)).await;
        assert!(fake.at(&a("/ok")).is_empty(), "never sent");
    }

    async fn a_retry_due_exactly_at_the_deadline_is_not_slept_for<E: FnError>() {
        let fake = Fake::new(|_, _| Answer::Status(503));
        let svc = over_fake::<E>(exact().max_retries(5).deadline(secs(3)).build(), &fake);

        // Attempts at 0 and 1 s; the next would be due at 3 s, the deadline itself, where no
        // attempt may be sent: the 503 is returned at 1 s rather than after a pointless 2 s.
        let t = Instant::now();
        let result = svc.oneshot(get(&a("/"))).await;
        let elapsed = t.elapsed();
        assert_eq!(fake.at(&a("/")), [ZERO, secs(1)]);
        let resp = result.expect("the last outcome, not an error after a pointless sleep");
        assert_eq!(resp.status(), 503);
        assert_eq!(elapsed, secs(1));
        assert_eq!(info(&resp).attempts(), 2);
        assert_eq!(info(&resp).slept(), secs(1));
        assert_eq!(info(&resp).stop_reason(), Some(StopReason::Deadline));
    }

    service_fn_tests! {
        deadline_refuses_a_wait_behind_the_cooldown {
            io::Error => deadline_refuses_a_wait_behind_the_cooldown_tower_service_fn_io;
            BoxError => deadline_refuses_a_wait_behind_the_cooldown_tower_service_fn_box;
        }
        a_wait_behind_the_cooldown_that_fits_the_deadline_is_counted_in_slept {
            io::Error => a_wait_behind_the_cooldown_that_fits_the_deadline_is_counted_in_slept_tower_service_fn_io;
            BoxError => a_wait_behind_the_cooldown_that_fits_the_deadline_is_counted_in_slept_tower_service_fn_box;
        }
        a_first_try_success_after_a_cooldown_wait_reports_the_wait {
            io::Error =>
                a_first_try_success_after_a_cooldown_wait_reports_the_wait_tower_service_fn_io;
            BoxError =>
                a_first_try_success_after_a_cooldown_wait_reports_the_wait_tower_service_fn_box;
        }
        a_cooldown_extended_past_the_deadline_during_the_wait_fails_when_it_wakes {
            io::Error => a_cooldown_extended_past_the_deadline_during_the_wait_fails_when_it_wakes_tower_service_fn_io;
            BoxError => a_cooldown_extended_past_the_deadline_during_the_wait_fails_when_it_wakes_tower_service_fn_box;
        }
        a_retry_due_exactly_at_the_deadline_is_not_slept_for {
            io::Error =>
                a_retry_due_exactly_at_the_deadline_is_not_slept_for_tower_service_fn_io;
            BoxError =>
                a_retry_due_exactly_at_the_deadline_is_not_slept_for_tower_service_fn_box;
        }
    }

    // ----- a request held back holds no readiness reservation -----

    /// The first request gets a 429 `Retry-After: 5` from origin A; a second one to A, held
    /// back until 5 s, must leave the capacity below the retry layer free: a third one to
    /// origin B goes through at once.
    async fn held_back_request_leaves_capacity<E, S>(
        build: impl FnOnce(TelEchoRetry, FakeSvc<E>) -> S,
    ) where
        E: FnError,
        S: Service<Req, Response = Out, Error = RetryError> + Clone + Send + 'static,
        S::Future: Send,
    {
        let fake = Fake::new(|uri, n| match (uri.path(), n) {
            ("/limited", 1) => Answer::Limited(5),
            _ => Answer::Status(200),
        });
        let svc = build(unbudgeted(exact().max_retries(1).build()), fake.service());

        let first = tokio::spawn(svc.clone().oneshot(get(&a("/limited"))));
        tokio::time::sleep(secs(1)).await;
        let second = tokio::spawn(svc.clone().oneshot(get(&a("/ok"))));
        // Lets `second` run: it reserves the inner service, then is held back.
        tokio::time::sleep(ms(1)).await;

        let t = Instant::now();
        let third = svc.clone().oneshot(get(&b("/ok"))).await.unwrap();
        assert_eq!(
            t.elapsed(),
            ZERO,
            "the third request waited for capacity the held-back one kept"
        );
        assert_eq!(third.status(), 200);

        assert_eq!(first.await.unwrap().unwrap().status(), 200);
        assert_eq!(second.await.unwrap().unwrap().status(), 200);
        assert_eq!(fake.at(&a("/limited")), [ZERO, secs(5)]);
        assert_eq!(fake.at(&a("/ok")), [secs(5)]);
        assert_eq!(fake.at(&b("/ok")), [secs(1) + ms(1)]);
    }

    async fn a_request_held_back_by_the_cooldown_holds_no_concurrency_limit_permit<E: FnError>() {
        held_back_request_leaves_capacity(|retry, inner: FakeSvc<E>| {
            ServiceBuilder::new()
                .layer(retry)
                .layer(ConcurrencyLimitLayer::new(1))
                .service(inner)
        })
        .await;
    }

    async fn a_request_held_back_by_the_cooldown_holds_no_buffer_slot<E: FnError>() {
        held_back_request_leaves_capacity(|retry, inner: FakeSvc<E>| {
            ServiceBuilder::new().layer(retry).buffer(1).service(inner)
        })
        .await;
    }

    async fn deadline_bounds_the_wait_for_the_inner_service_to_be_ready<E: FnError>() {
        let fake = Fake::new(|uri, n| match (uri.path(), n) {
            ("/limited", 1) => Answer::Limited(1),
            ("/hang", _) => Answer::Hang,
            _ => Answer::Status(200),
        });
        let limit = ConcurrencyLimit::new(fake.service::<E>(), 1);
        let policy = exact().max_retries(0).deadline(secs(2)).build();
        let svc = errors_are_retry_errors(unbudgeted(policy).layer(limit.clone()));
        let resp = svc.clone().oneshot(get(&a("/limited"))).await.unwrap();
        assert_eq!(resp.status(), 429);

        // Held back 1 s; meanwhile another client of the limit takes its only permit.
        let mut held = tokio_test::task::spawn(svc.oneshot(get(&a("/ok"))));
        assert_pending!(held.poll());
        let mut hog = tokio_test::task::spawn(limit.oneshot(get(&b("/hang"))));
        assert_pending!(hog.poll());
        advance(secs(1)).await;
        assert_pending!(held.poll());
        advance(secs(1) - ms(1)).await;
        assert_pending!(held.poll());
        advance(ms(1)).await;
        let err = assert_ready!(held.poll()).unwrap_err();
        assert_eq!(err.kind(), RetryErrorKind::Deadline);
        assert_eq!(err.info().attempts(), 0);
        assert_eq!(err.info().slept(), secs(1));
        assert_eq!(err.stop_reason(), Some(StopReason::Deadline));
        drop(hog);
        tokio::time::sleep(secs(10)).await;
        assert!(fake.at(&a("/ok")).is_empty(), "never sent");
    }

    service_fn_tests! {
        a_request_held_back_by_the_cooldown_holds_no_concurrency_limit_permit {
            io::Error => a_request_held_back_by_the_cooldown_holds_no_concurrency_limit_permit_tower_service_fn_io;
            BoxError => a_request_held_back_by_the_cooldown_holds_no_concurrency_limit_permit_tower_service_fn_box;
        }
        a_request_held_back_by_the_cooldown_holds_no_buffer_slot {
            io::Error => a_request_held_back_by_the_cooldown_holds_no_buffer_slot_tower_service_fn_io;
            BoxError => a_request_held_back_by_the_cooldown_holds_no_buffer_slot_tower_service_fn_box;
        }
        deadline_bounds_the_wait_for_the_inner_service_to_be_ready {
            io::Error => deadline_bounds_the_wait_for_the_inner_service_to_be_ready_tower_service_fn_io;
            BoxError => deadline_bounds_the_wait_for_the_inner_service_to_be_ready_tower_service_fn_box;
        }
    }

    // ----- a Retry-After above the cap -----

    /// A 429 with `Retry-After: retry_after` (above the 60 s cap) is returned at once;
    /// `later` seconds on, requests to that origin fail at once with the cooldown left,
    /// nothing sent, until it has passed.
    async fn above_the_cap<E: FnError>(retry_after: u64, later: u64) {
        let fake = Fake::new(move |uri, n| match (uri.path(), n) {
            ("/limited", 1) => Answer::Limited(retry_after),
            ("/at-cap", 1) => Answer::Limited(60),
            _ => Answer::Status(200),
        });
        let svc = over_fake::<E>(exact().max_retries(3).build(), &fake);
        assert_eq!(svc.retry().policy().max_retry_after(), secs(60), "default");

        let t = Instant::now();
        let resp = svc.clone().oneshot(get(&a("/limited"))).await.unwrap();
        assert_eq!(t.elapsed(), ZERO);
        assert_eq!(resp.status(), 429);
        assert_eq!(
            resp.headers()[RETRY_AFTER],
            retry_after.to_string().as_str(),
            "header intact"
        );
        assert_eq!(info(&resp).attempts(), 1);
        assert_eq!(info(&resp).slept(), ZERO);
        assert_eq!(
            info(&resp).stop_reason(),
            Some(StopReason::RetryAfterTooLong)
        );

        // Until it passes, requests to that origin fail at once, whatever the method.
        advance(secs(later)).await;
        for req in [get(&a("/other")), post(&a("/other"))] {
            let t = Instant::now();
            let result = svc.clone().oneshot(req).await;
            assert_eq!(t.elapsed(), ZERO, "not held back: refused at once");
            let err = result.unwrap_err();
            assert_eq!(err.kind(), RetryErrorKind::RateLimited);
            assert!(err.is_rate_limited());
            assert!(!err.is_timeout());
            assert!(err.get_inner().is_none());
            assert_eq!(
                err.cooldown(),
                Some(secs(retry_after - later)),
                "the wait left"
            );
            assert_eq!(err.info().attempts(), 0);
            assert_eq!(err.info().slept(), ZERO);
            assert_eq!(err.stop_reason(), Some(StopReason::RetryAfterTooLong));
        }
        assert!(fake.at(&a("/other")).is_empty(), "nothing sent");

        advance(secs(retry_after - later)).await;
        let resp = svc.clone().oneshot(get(&a("/other"))).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(fake.at(&a("/other")), [secs(retry_after)]);

        // At the cap exactly: waited for, not returned.
        let t = Instant::now();
        let resp = svc.oneshot(get(&b("/at-cap"))).await.unwrap();
        assert_eq!(t.elapsed(), secs(60));
        assert_eq!(resp.status(), 200);
        assert_eq!(info(&resp).attempts(), 2);
    }

    async fn a_retry_after_above_the_cap_is_returned_at_once_and_starts_the_cooldown<E: FnError>() {
        above_the_cap::<E>(3600, 100).await;
    }

    async fn requests_fail_rate_limited_until_the_cooldown_has_passed_even_once_under_the_cap<
        E: FnError,
    >() {
        // 10 s after a `Retry-After: 61`, 51 s are left: less than the cap, still refused.
        above_the_cap::<E>(61, 10).await;
    }

    service_fn_tests! {
        a_retry_after_above_the_cap_is_returned_at_once_and_starts_the_cooldown {
            io::Error => a_retry_after_above_the_cap_is_returned_at_once_and_starts_the_cooldown_tower_service_fn_io;
            BoxError => a_retry_after_above_the_cap_is_returned_at_once_and_starts_the_cooldown_tower_service_fn_box;
        }
        requests_fail_rate_limited_until_the_cooldown_has_passed_even_once_under_the_cap {
            io::Error =>
                requests_fail_rate_limited_until_the_cooldown_has_passed_even_once_under_the_cap_tower_service_fn_io;
            BoxError =>
                requests_fail_rate_limited_until_the_cooldown_has_passed_even_once_under_the_cap_tower_service_fn_box;
        }
    }

    // ----- per-origin limits -----

    async fn a_429_from_one_origin_does_not_hold_back_another<E: FnError>() {
        let fake = Fake::new(|uri, n| match (uri.path(), n) {
            ("/limited", 1) => Answer::Limited(5),
            ("/long", 1) => Answer::Limited(3600),
            _ => Answer::Status(200),
        });
        let svc = over_fake::<E>(exact().max_retries(0).build(), &fake);

        let resp = svc.clone().oneshot(get(&a("/limited"))).await.unwrap();
        assert_eq!(resp.status(), 429);
        let t = Instant::now();
        let resp = svc.clone().oneshot(get(&b("/ok"))).await.unwrap();
        assert_eq!(
            (resp.status().as_u16(), t.elapsed()),
            (200, ZERO),
            "B is not held back"
        );
        let resp = svc.clone().oneshot(get(&a("/ok"))).await.unwrap();
        assert_eq!(
            (resp.status().as_u16(), t.elapsed()),
            (200, secs(5)),
            "A is"
        );

        // Above the cap: A refuses, B does not.
        let resp = svc.clone().oneshot(get(&a("/long"))).await.unwrap();
        assert_eq!(resp.status(), 429);
        let resp = svc.clone().oneshot(get(&b("/ok"))).await.unwrap();
        assert_eq!(resp.status(), 200);
        let err = svc.oneshot(get(&a("/ok"))).await.unwrap_err();
        assert!(err.is_rate_limited());
        assert_eq!(fake.at(&b("/ok")), [ZERO, secs(5)]);
    }

    /// The same through one service, not clones: the service keeps the last origin's limits
    /// between calls, and they are that origin's, never another's.
    async fn one_service_keeps_each_origins_limits_apart<E: FnError>() {
        let fake = Fake::new(|uri, n| match (uri.path(), n) {
            ("/limited", 1) => Answer::Limited(5),
            _ => Answer::Status(200),
        });
        let mut svc = over_fake::<E>(exact().max_retries(0).build(), &fake);
        let t = Instant::now();
        let resp = svc
            .ready()
            .await
            .unwrap()
            .call(get(&a("/limited")))
            .await
            .unwrap();
        assert_eq!(resp.status(), 429);
        let resp = svc
            .ready()
            .await
            .unwrap()
            .call(get(&a("/ok")))
            .await
            .unwrap();
        assert_eq!(
            (resp.status().as_u16(), t.elapsed()),
            (200, secs(5)),
            "A is held back"
        );
        let t = Instant::now();
        let resp = svc
            .ready()
            .await
            .unwrap()
            .call(get(&b("/ok")))
            .await
            .unwrap();
        assert_eq!(
            (resp.status().as_u16(), t.elapsed()),
            (200, ZERO),
            "B is not"
        );
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

    async fn the_retry_budget_is_kept_per_origin<E: FnError>() {
        let fake = Fake::new(|_, _| Answer::Status(503));
        // No share of traffic; a floor of 1 retry a second over 10 s: 10 retries per origin.
        let policy = exact().max_retries(1).base_delay(ms(100)).build();
        let mut svc = over_fake::<E>(budgeted(policy, RetryBudget::new(secs(10), 1, 0.0)), &fake);
        for uri in [a("/"), b("/")] {
            let results = at_once(&mut svc, &uri, 20).await;
            assert_eq!(fake.at(&uri).len(), 30, "{uri}: 20 requests + 10 retries");
            let budget = results
                .iter()
                .filter(|r| info(r.as_ref().unwrap()).stop_reason() == Some(StopReason::Budget))
                .count();
            assert_eq!(budget, 10, "{uri}");
        }
    }

    service_fn_tests! {
        a_429_from_one_origin_does_not_hold_back_another {
            io::Error => a_429_from_one_origin_does_not_hold_back_another_tower_service_fn_io;
            BoxError => a_429_from_one_origin_does_not_hold_back_another_tower_service_fn_box;
        }
        one_service_keeps_each_origins_limits_apart {
            io::Error => one_service_keeps_each_origins_limits_apart_tower_service_fn_io;
            BoxError => one_service_keeps_each_origins_limits_apart_tower_service_fn_box;
        }
        the_retry_budget_is_kept_per_origin {
            io::Error => the_retry_budget_is_kept_per_origin_tower_service_fn_io;
            BoxError => the_retry_budget_is_kept_per_origin_tower_service_fn_box;
        }
    }

    // ----- more origins than the limits keep apart (1024) -----

    /// Origin `i` of many, each its own host.
    fn host(i: usize, path: &str) -> String {
        format!("http://h{i}.test{path}")
    }

    /// 300 origins each answer 429 `Retry-After: 3600`. Under a cap of 2 h that is a
    /// cooldown: later requests to the origin wait it out; under the default 60 s cap a
    /// refusal: they fail at once. Either way no request to an origin is sent during its
    /// cooldown, past the limits' bound of 1024 origins too. (Past the bound, origins share
    /// 16 overflow limits, so a first request may be held back or refused by another
    /// origin's cooldown: documented, and never a request sent too early.)
    async fn no_origin_is_sent_to_during_its_cooldown_past_the_origin_bound<E: FnError>() {
        const ORIGINS: usize = 1100;
        for (cap, refused) in [(secs(7200), false), (secs(60), true)] {
            let fake = Fake::new(|uri, _| match uri.path() {
                "/limited" => Answer::Limited(3600),
                _ => Answer::Status(200),
            });
            let policy = exact().max_retries(0).max_retry_after(cap).build();
            let svc = over_fake::<E>(policy, &fake);
            // All at 0 s: the second requests go while the first ones held back by a shared
            // overflow limit still wait.
            let first = (0..ORIGINS).map(|i| svc.clone().oneshot(get(&host(i, "/limited"))));
            let first = tokio::spawn(join_all(first));
            tokio::task::yield_now().await;
            let again = (0..ORIGINS).map(|i| svc.clone().oneshot(get(&host(i, "/again"))));
            let again = tokio::spawn(join_all(again));
            for (i, result) in first.await.unwrap().into_iter().enumerate() {
                match result {
                    Ok(resp) => assert_eq!(resp.status(), 429, "origin {i}"),
                    // Past the bound: refused (under the 60 s cap), or held back by the
                    // cooldowns of the origins sharing its overflow limit for longer than
                    // the cap in all (under the 2 h cap).
                    Err(err) => {
                        assert!(i >= 1024, "origin {i}: {err:?}");
                        assert_eq!(err.kind(), RetryErrorKind::RateLimited, "origin {i}");
                    }
                }
            }
            let mut held_too_long = Vec::new();
            for (i, result) in again.await.unwrap().into_iter().enumerate() {
                if refused {
                    let err = result.unwrap_err();
                    assert_eq!(err.kind(), RetryErrorKind::RateLimited, "origin {i}");
                    assert_eq!(err.info().attempts(), 0, "origin {i}");
                } else {
                    match result {
                        Ok(resp) => assert_eq!(resp.status(), 200, "origin {i}"),
                        Err(err) => {
                            assert!(i >= 1024, "origin {i}: {err:?}");
                            assert_eq!(err.kind(), RetryErrorKind::RateLimited, "origin {i}");
                            held_too_long.push(i);
                        }
                    }
                }
            }
            for i in 0..ORIGINS {
                let mut sent = fake.at(&host(i, "/limited"));
                sent.extend(fake.at(&host(i, "/again")));
                sent.sort();
                if refused {
                    assert!(sent.len() <= 1, "origin {i}: {sent:?}");
                } else if !held_too_long.contains(&i) {
                    assert!(sent.len() <= 2, "origin {i}: {sent:?}");
                    if i < 1024 {
                        assert_eq!(sent.len(), 2, "origin {i}: both sent in the end");
                    }
                }
                for pair in sent.windows(2) {
                    assert!(
                        pair[1] - pair[0] >= secs(3600),
                        "origin {i}: sent during its cooldown: {sent:?}"
                    );
                }
            }
            if !refused {
                let kept: Vec<_> = (0..1024).map(|i| fake.at(&host(i, "/again"))).collect();
                assert!(
                    kept.iter().all(|at| at == &[secs(3600)]),
                    "the 1024 kept apart wait exactly their own hour: {kept:?}"
                );
            }
        }
    }

    /// Pacing 1 per 10 s: origin `a` takes its slot, then 1025 other origins take theirs
    /// (past the limits' bound of 1024) through a client of the same limits that refuses a
    /// slot more than 5 s ahead (two origins sharing an overflow limit must not advance the
    /// paused clock): `a`'s next request still waits for its slot at 10 s.
    async fn an_origins_pacing_holds_past_the_origin_bound<E: FnError>() {
        let fake = Fake::new(|_, _| Answer::Status(200));
        let limits = Limits::builder()
            .without_retry_budget()
            .pacing(Pacing::new(1, secs(10)))
            .build();
        let svc = over_fake::<E>(
            TelEchoRetry::new(exact().build()).with_limits(limits.clone()),
            &fake,
        );
        let others = over_fake::<E>(
            TelEchoRetry::new(exact().max_retry_after(secs(5)).build()).with_limits(limits),
            &fake,
        );
        svc.clone().oneshot(get(&a("/1"))).await.unwrap();
        for i in 0..1025 {
            let _ = others.clone().oneshot(get(&host(i, "/"))).await;
        }
        assert!(fake.total() >= 1024, "the others took slots of their own");
        let t = Instant::now();
        let resp = svc.oneshot(get(&a("/2"))).await.unwrap();
        assert_eq!(
            t.elapsed(),
            secs(10),
            "a's slot is still 10 s after its last"
        );
        assert_eq!(info(&resp).slept(), secs(10));
        assert_eq!(fake.at(&a("/2")), [secs(10)]);
    }

    service_fn_tests! {
        no_origin_is_sent_to_during_its_cooldown_past_the_origin_bound {
            io::Error => no_origin_is_sent_to_during_its_cooldown_past_the_origin_bound_tower_service_fn_io;
        }
        an_origins_pacing_holds_past_the_origin_bound {
            io::Error => an_origins_pacing_holds_past_the_origin_bound_tower_service_fn_io;
        }
    }

    // ----- the budget's ratio -----

    const RATIOS: [f32; 10] = [0.05, 0.1, 0.2, 0.25, 1.0 / 3.0, 0.5, 0.6, 0.75, 0.9, 1.0];

    async fn the_retry_budget_allows_its_ratio_of_100_requests<E: FnError>() {
        for ratio in RATIOS {
            let fake = Fake::new(|_, _| Answer::Status(503));
            let policy = exact().max_retries(1).base_delay(ms(100)).build();
            let mut svc = over_fake::<E>(
                budgeted(policy, RetryBudget::new(secs(10), 0, ratio)),
                &fake,
            );
            let results = at_once(&mut svc, &a("/"), 100).await;
            let retries = fake.total() as i64 - 100;
            let want = share_of_100(ratio);
            assert!(
                (retries - want).abs() <= 1,
                "ratio {ratio}: {retries} retries for 100 requests, want {want} ± 1"
            );
            let budget = results
                .iter()
                .filter(|r| info(r.as_ref().unwrap()).stop_reason() == Some(StopReason::Budget))
                .count() as i64;
            assert_eq!(budget, 100 - retries, "ratio {ratio}");
        }
    }

    /// Steady traffic for 40 s, a request every 100 ms, every attempt a 503 and one retry
    /// wanted per request. Budget: 20 % of requests plus 1 retry per second, over 10 s. In
    /// every 10 s window the retries sent stay within the share of that window's requests
    /// (20 of 100, plus 10), and over the last 30 s they use at least 9/10 of its share (a
    /// request counts for 0.9 to 1 × the window, a retry for 1 to 1.1 ×: the budget errs
    /// on the side of fewer retries).
    async fn the_retry_budget_holds_its_share_in_every_10_s_window<E: FnError>() {
        const RATIO: f64 = 0.2;
        const FLOOR: usize = 10; // 1 per second over 10 s
        let fake = Fake::new(|_, _| Answer::Status(503));
        let policy = exact().max_retries(1).base_delay(ms(50)).build();
        let svc = over_fake::<E>(budgeted(policy, RetryBudget::new(secs(10), 1, 0.2)), &fake);
        let mut requests = Vec::new();
        for i in 0..400 {
            requests.push(tokio::spawn(svc.clone().oneshot(get(&a(&format!("/{i}"))))));
            tokio::time::sleep(ms(100)).await;
        }
        for request in requests {
            assert_eq!(request.await.unwrap().unwrap().status(), 503);
        }
        // The first attempt to each path is its request, the second its retry.
        let (mut firsts, mut retries) = (Vec::new(), Vec::new());
        for i in 0..400 {
            let at = fake.at(&a(&format!("/{i}")));
            firsts.push(at[0]);
            retries.extend(at.get(1).copied());
            assert!(at.len() <= 2);
        }
        let in_window = |times: &[Duration], from: Duration| {
            times
                .iter()
                .filter(|t| **t >= from && **t < from + secs(10))
                .count()
        };
        // Windows starting every 50 ms (on request and on retry times alike).
        for from in (0..=600).map(|k| ms(50) * k) {
            let sent = in_window(&firsts, from);
            let retried = in_window(&retries, from);
            let share = (RATIO * sent as f64).floor() as usize + FLOOR;
            assert!(
                retried <= share,
                "{retried} retries in the 10 s from {from:?}, for {sent} requests: share {share}"
            );
        }
        // And it is not starved: once the traffic is steady, the retries of the last 30 s
        // use at least 9/10 of those 30 s' share (the budget is bursty within that: the
        // floor's retries come back together as a slot leaves the window).
        let steady = |times: &[Duration]| times.iter().filter(|t| **t >= secs(10)).count();
        let share = (RATIO * steady(&firsts) as f64).floor() as usize + 3 * FLOOR;
        let retried = steady(&retries);
        assert!(
            retried * 10 >= share * 9 && retried <= share,
            "{retried} retries in the last 30 s: the share is {share}"
        );
    }

    service_fn_tests! {
        the_retry_budget_holds_its_share_in_every_10_s_window {
            io::Error => the_retry_budget_holds_its_share_in_every_10_s_window_tower_service_fn_io;
        }
        the_retry_budget_allows_its_ratio_of_100_requests {
            io::Error => the_retry_budget_allows_its_ratio_of_100_requests_tower_service_fn_io;
            BoxError => the_retry_budget_allows_its_ratio_of_100_requests_tower_service_fn_box;
        }
    }

    // ----- a refused connection -----

    async fn a_refused_connection_retried_n_times_is_an_inner_retry_error_with_n_plus_1_attempts<
        E: FnError,
    >() {
        let fake = Fake::new(|_, _| Answer::Fail(io::ErrorKind::ConnectionRefused));
        for n in 0..=3u32 {
            let svc = over_fake::<E>(exact().max_retries(n).build(), &fake);
            let uri = a(&format!("/{n}"));
            let t = Instant::now();
            // A POST: nothing was sent, so it is retried like any other.
            let err = svc.oneshot(post(&uri)).await.unwrap_err();
            let slept = secs((1 << n) - 1);
            assert_eq!(t.elapsed(), slept);
            assert_eq!(err.kind(), RetryErrorKind::Inner);
            assert_eq!(inner_io_kind(&err), io::ErrorKind::ConnectionRefused);
            assert_eq!(err.info().attempts(), n + 1);
            assert_eq!(err.info().slept(), slept);
            assert_eq!(err.stop_reason(), Some(StopReason::MaxRetries));
            assert_eq!(fake.at(&uri).len(), n as usize + 1);
        }
    }

    service_fn_tests! {
        a_refused_connection_retried_n_times_is_an_inner_retry_error_with_n_plus_1_attempts {
            io::Error => a_refused_connection_retried_n_times_is_an_inner_retry_error_with_n_plus_1_attempts_tower_service_fn_io;
            BoxError => a_refused_connection_retried_n_times_is_an_inner_retry_error_with_n_plus_1_attempts_tower_service_fn_box;
        }
    }

    // ----- stacks: Buffer and Timeout above the retry layer -----

    async fn errors_through_a_buffer_above_are_boxed_retry_errors<E: FnError>() {
        let fake = Fake::new(|uri, _| match uri.path() {
            "/refused" => Answer::Fail(io::ErrorKind::ConnectionRefused),
            "/hang" => Answer::Hang,
            "/limited" => Answer::Limited(3600),
            "/limited-50" => Answer::Limited(50),
            _ => Answer::Status(200),
        });
        let policy = exact()
            .max_retries(1)
            .attempt_timeout(secs(2))
            .deadline(secs(10))
            .build();
        let svc = ServiceBuilder::new()
            .buffer(8)
            .layer(unbudgeted(policy))
            .service(fake.service::<E>());

        let err: BoxError = svc.clone().oneshot(post(&a("/refused"))).await.unwrap_err();
        let err = retry_error_in(&err);
        assert_eq!(err.kind(), RetryErrorKind::Inner);
        assert_eq!(inner_io_kind(err), io::ErrorKind::ConnectionRefused);
        assert_eq!(err.info().attempts(), 2);
        assert_eq!(err.info().slept(), secs(1));

        let err = svc.clone().oneshot(get(&a("/hang"))).await.unwrap_err();
        let err = retry_error_in(&err);
        assert_eq!(err.kind(), RetryErrorKind::AttemptTimeout);
        assert_eq!(err.info().attempts(), 2);
        assert_eq!(err.stop_reason(), Some(StopReason::MaxRetries));

        let resp = svc.clone().oneshot(get(&b("/limited"))).await.unwrap();
        assert_eq!(resp.status(), 429);
        let err = svc.clone().oneshot(get(&b("/other"))).await.unwrap_err();
        let err = retry_error_in(&err);
        assert_eq!(err.kind(), RetryErrorKind::RateLimited);
        assert_eq!(err.cooldown(), Some(secs(3600)));
        assert_eq!(err.info().attempts(), 0);

        // 50 s fits under the cap but not under the 10 s deadline.
        let resp = svc.clone().oneshot(get(&c("/limited-50"))).await.unwrap();
        assert_eq!(resp.status(), 429);
        assert_eq!(info(&resp).stop_reason(), Some(StopReason::Deadline));
        let err = svc.oneshot(get(&c("/other"))).await.unwrap_err();
        let err = retry_error_in(&err);
        assert_eq!(err.kind(), RetryErrorKind::Deadline);
        assert_eq!(err.cooldown(), Some(secs(50)));
        assert_eq!(err.info().attempts(), 0);
        assert!(fake.at(&b("/other")).is_empty() && fake.at(&c("/other")).is_empty());
    }

    async fn an_outer_timeout_bounds_retries_and_cooldown_waits<E: FnError>() {
        let fake = Fake::new(|uri, _| match uri.path() {
            "/down" => Answer::Status(503),
            "/limited" => Answer::Limited(10),
            "/denied" => Answer::Fail(io::ErrorKind::PermissionDenied),
            _ => Answer::Status(200),
        });
        let svc = ServiceBuilder::new()
            .layer(TimeoutLayer::new(ms(2500)))
            .layer(unbudgeted(exact().max_retries(5).build()))
            .service(fake.service::<E>());

        // Attempts at 0 and 1 s; the one due at 3 s is never sent.
        let t = Instant::now();
        let err = svc.clone().oneshot(get(&a("/down"))).await.unwrap_err();
        assert_eq!(t.elapsed(), ms(2500));
        assert!(err.is::<Elapsed>(), "{err:?}");

        // A 429 `Retry-After: 10` at 2.5 s: the request waits, and is cut at 5 s.
        let err = svc.clone().oneshot(get(&b("/limited"))).await.unwrap_err();
        assert!(err.is::<Elapsed>(), "{err:?}");
        // Held back until 12.5 s: cut at 7.5 s, never sent.
        let t = Instant::now();
        let err = svc.clone().oneshot(get(&b("/other"))).await.unwrap_err();
        assert_eq!(t.elapsed(), ms(2500));
        assert!(err.is::<Elapsed>(), "{err:?}");

        // The retry layer's own errors still come through as RetryErrors.
        let err = svc.oneshot(get(&a("/denied"))).await.unwrap_err();
        let err = retry_error_in(&err);
        assert_eq!(err.kind(), RetryErrorKind::Inner);
        assert_eq!(inner_io_kind(err), io::ErrorKind::PermissionDenied);

        tokio::time::sleep(secs(100)).await;
        assert_eq!(fake.at(&a("/down")), [ZERO, secs(1)]);
        assert_eq!(fake.at(&b("/limited")), [ms(2500)]);
        assert!(fake.at(&b("/other")).is_empty());
    }

    service_fn_tests! {
        errors_through_a_buffer_above_are_boxed_retry_errors {
            io::Error => errors_through_a_buffer_above_are_boxed_retry_errors_tower_service_fn_io;
            BoxError => errors_through_a_buffer_above_are_boxed_retry_errors_tower_service_fn_box;
        }
        an_outer_timeout_bounds_retries_and_cooldown_waits {
            io::Error => an_outer_timeout_bounds_retries_and_cooldown_waits_tower_service_fn_io;
            BoxError => an_outer_timeout_bounds_retries_and_cooldown_waits_tower_service_fn_box;
        }
    }

    // ----- client-side pacing -----

    /// A fake that lets `limit` requests per fixed window of `window` through (windows
    /// counted from the fake's start) and answers a 429 with `Retry-After` to the window's
    /// end past that; the paced client must never meet one.
    fn fixed_window(limit: usize, window: Duration) -> Fake {
        let start = Instant::now();
        let counts: Mutex<Vec<usize>> = Mutex::default();
        Fake::new(move |_, _| {
            let index = (start.elapsed().as_nanos() / window.as_nanos()) as usize;
            let mut counts = counts.lock().unwrap();
            if counts.len() <= index {
                counts.resize(index + 1, 0);
            }
            counts[index] += 1;
            if counts[index] > limit {
                Answer::Limited(window.as_secs().max(1))
            } else {
                Answer::Status(200)
            }
        })
    }

    async fn pacing_at_the_servers_limit_lets_100_concurrent_requests_meet_no_429<E: FnError>() {
        let fake = fixed_window(10, secs(1));
        let svc = over_fake::<E>(paced(exact().build(), Pacing::new(10, secs(1))), &fake);
        let t = Instant::now();
        let responses = join_all((0..100).map(|_| svc.clone().oneshot(get(&a("/v1/calls"))))).await;
        assert_eq!(t.elapsed(), ms(9900), "one every 100 ms");
        for (i, resp) in responses.into_iter().enumerate() {
            let resp = resp.unwrap();
            assert_eq!(resp.status(), 200, "request {i}");
            assert_eq!(info(&resp).attempts(), 1, "request {i}");
            assert_eq!(
                info(&resp).slept(),
                ms(100) * i as u32,
                "its wait is in slept"
            );
        }
        let at = fake.at(&a("/v1/calls"));
        assert_eq!(at.len(), 100, "no 429, no retry");
        assert!(at.windows(2).all(|w| w[1] - w[0] == ms(100)), "{at:?}");
    }

    async fn retries_are_paced_like_first_attempts<E: FnError>() {
        let fake = Fake::new(|_, n| match n {
            1 => Answer::Status(503),
            _ => Answer::Status(200),
        });
        let policy = exact().max_retries(2).build();
        let svc = over_fake::<E>(paced(policy, Pacing::new(1, secs(5))), &fake);
        let resp = svc.oneshot(get(&a("/flaky"))).await.unwrap();
        assert_eq!(resp.status(), 200);
        // The backoff says 1 s; the retry's slot is at 5 s.
        assert_eq!(fake.at(&a("/flaky")), [ZERO, secs(5)]);
        assert_eq!(info(&resp).attempts(), 2);
        assert_eq!(
            info(&resp).slept(),
            secs(5),
            "1 s of backoff and 4 s for the slot"
        );
    }

    async fn a_paced_slot_beyond_the_cap_or_the_deadline_fails_at_once<E: FnError>() {
        let fake = Fake::new(|_, _| Answer::Status(200));
        let policy = exact().max_retry_after(secs(60)).build();
        let svc = over_fake::<E>(paced(policy, Pacing::new(1, secs(120))), &fake);
        assert_eq!(
            svc.clone().oneshot(get(&a("/1"))).await.unwrap().status(),
            200
        );
        let t = Instant::now();
        let err = svc.oneshot(get(&a("/2"))).await.unwrap_err();
        assert_eq!(t.elapsed(), ZERO, "refused at once");
        assert_eq!(err.kind(), RetryErrorKind::RateLimited);
        assert!(err.is_rate_limited());
        assert_eq!(
            err.cooldown(),
            Some(secs(120)),
            "the wait it would have had"
        );
        assert_eq!(err.stop_reason(), Some(StopReason::RetryAfterTooLong));
        assert_eq!(err.info().attempts(), 0);

        // Under the cap, over the deadline.
        let policy = exact().deadline(secs(5)).build();
        let svc = over_fake::<E>(paced(policy, Pacing::new(1, secs(10))), &fake);
        assert_eq!(
            svc.clone().oneshot(get(&b("/1"))).await.unwrap().status(),
            200
        );
        let err = svc.oneshot(get(&b("/2"))).await.unwrap_err();
        assert_eq!(t.elapsed(), ZERO);
        assert_eq!(err.kind(), RetryErrorKind::Deadline);
        assert_eq!(err.cooldown(), Some(secs(10)));
        assert_eq!(err.stop_reason(), Some(StopReason::Deadline));
        tokio::time::sleep(secs(200)).await;
        assert!(
            fake.at(&a("/2")).is_empty() && fake.at(&b("/2")).is_empty(),
            "never sent"
        );
        // Refused slots were not taken: the next request goes at its own slot.
        assert_eq!(fake.total(), 2);
    }

    async fn a_slot_exactly_at_the_deadline_is_refused_at_once_and_not_taken<E: FnError>() {
        let fake = Fake::new(|_, _| Answer::Status(200));
        let svc = over_fake::<E>(paced(exact().build(), Pacing::new(1, secs(1))), &fake);
        svc.clone().oneshot(get(&a("/0"))).await.unwrap();
        let mut req = get(&a("/1"));
        req.extensions_mut()
            .insert(RetryOverride::new().deadline(secs(1)));
        let t = Instant::now();
        let err = svc.clone().oneshot(req).await.unwrap_err();
        assert_eq!(t.elapsed(), ZERO, "refused at once");
        assert_eq!(err.kind(), RetryErrorKind::Deadline);
        assert_eq!(err.cooldown(), Some(secs(1)));
        assert_eq!(err.info().slept(), ZERO);
        svc.oneshot(get(&a("/2"))).await.unwrap();
        assert_eq!(
            fake.at(&a("/2")),
            [secs(1)],
            "the slot at 1 s was not taken"
        );
        assert!(fake.at(&a("/1")).is_empty());
    }

    async fn a_request_cancelled_while_waiting_for_its_slot_gives_its_place_back<E: FnError>() {
        let fake = Fake::new(|_, _| Answer::Status(200));
        let svc = over_fake::<E>(paced(exact().build(), Pacing::new(1, secs(1))), &fake);
        svc.clone().oneshot(get(&a("/1"))).await.unwrap();
        let mut cancelled = tokio_test::task::spawn(svc.clone().oneshot(get(&a("/2"))));
        assert_pending!(cancelled.poll());
        advance(ms(500)).await;
        assert_pending!(cancelled.poll());
        drop(cancelled);
        let t = Instant::now();
        let third = svc.oneshot(get(&a("/3"))).await.unwrap();
        assert_eq!(t.elapsed(), ms(500), "the slot at 1 s, not 2 s");
        assert_eq!(info(&third).slept(), ms(500));
        assert!(fake.at(&a("/2")).is_empty());
    }

    /// `/1` takes the only slot of the next 5 s at origin `a`; a second request to `a`
    /// waits for its slot holding what `poll_ready` reserved, so that it is sent the moment
    /// its slot comes: a third to origin `b` waits for that capacity until then.
    async fn paced_request_keeps_capacity<E, S>(build: impl Fn(TelEchoRetry, FakeSvc<E>) -> S)
    where
        E: FnError,
        S: Service<Req, Response = Out> + Clone + Send + 'static,
        S::Error: fmt::Debug + Send,
        S::Future: Send,
    {
        let fake = Fake::new(|_, _| Answer::Status(200));
        let retry = paced(exact().build(), Pacing::new(1, secs(5)));
        let svc = build(retry, fake.service());
        assert_eq!(
            svc.clone().oneshot(get(&a("/1"))).await.unwrap().status(),
            200
        );
        let second = tokio::spawn(svc.clone().oneshot(get(&a("/2"))));
        tokio::time::sleep(ms(1)).await;
        let t = Instant::now();
        let third = svc.clone().oneshot(get(&b("/3"))).await.unwrap();
        assert_eq!(
            t.elapsed(),
            secs(5) - ms(1),
            "the third waits for the capacity the paced one holds until its slot"
        );
        assert_eq!(third.status(), 200);
        assert_eq!(second.await.unwrap().unwrap().status(), 200);
        assert_eq!(fake.at(&a("/2")), [secs(5)]);
        assert_eq!(fake.at(&b("/3")), [secs(5)]);
    }

    async fn a_request_waiting_for_its_slot_keeps_its_concurrency_limit_permit<E: FnError>() {
        paced_request_keeps_capacity(|retry, inner: FakeSvc<E>| {
            ServiceBuilder::new()
                .layer(retry)
                .layer(ConcurrencyLimitLayer::new(1))
                .service(inner)
        })
        .await;
    }

    async fn a_request_waiting_for_its_slot_keeps_its_buffer_slot<E: FnError>() {
        paced_request_keeps_capacity(|retry, inner: FakeSvc<E>| {
            ServiceBuilder::new().layer(retry).buffer(1).service(inner)
        })
        .await;
    }

    /// Pacing 2/s over a `ConcurrencyLimit(1)` below the retry layer (`stack` puts layers
    /// above the retry layer). `/0` goes at once; `/slow` waits for its slot at 0.5 s and
    /// then holds the only permit for 5 s; four more requests queue for the permit. Each
    /// takes its slot once the permit is its own, so they go out one interval apart from
    /// 5.5 s, as the inner service is called: not all at 5.5 s on slots taken while they
    /// queued.
    async fn paced_sends_stay_spaced_behind_a_busy_concurrency_limit<E, S>(
        stack: impl FnOnce(RetryService<ConcurrencyLimit<FakeSvc<E>>>) -> S,
    ) where
        E: FnError,
        S: Service<Req, Response = Out> + Clone + Send + 'static,
        S::Error: fmt::Debug + Send,
        S::Future: Send,
    {
        let fake = Fake::new(|uri, _| match uri.path() {
            "/slow" => Answer::OkAfter(secs(5)),
            _ => Answer::Status(200),
        });
        let retry = paced(exact().build(), Pacing::new(2, secs(1)));
        let svc = stack(retry.layer(ConcurrencyLimit::new(fake.service::<E>(), 1)));
        let paths = ["/0", "/slow", "/q", "/q", "/q", "/q"];
        let results = join_all(paths.map(|p| svc.clone().oneshot(get(&a(p))))).await;
        for (path, result) in paths.iter().zip(results) {
            assert_eq!(result.unwrap().status(), 200, "{path}");
        }
        assert_eq!(fake.at(&a("/0")), [ZERO]);
        assert_eq!(fake.at(&a("/slow")), [ms(500)]);
        assert_eq!(
            fake.at(&a("/q")),
            [ms(5500), secs(6), ms(6500), secs(7)],
            "spaced when sent"
        );
    }

    async fn paced_sends_stay_spaced_behind_a_busy_concurrency_limit_below<E: FnError>() {
        paced_sends_stay_spaced_behind_a_busy_concurrency_limit::<E, _>(|svc| svc).await;
    }

    async fn paced_sends_stay_spaced_behind_a_busy_limit_with_a_timeout_above<E: FnError>() {
        paced_sends_stay_spaced_behind_a_busy_concurrency_limit::<E, _>(|svc| {
            tower::timeout::Timeout::new(svc, secs(60))
        })
        .await;
    }

    async fn paced_sends_stay_spaced_behind_a_busy_limit_with_a_buffer_above<E: FnError>() {
        paced_sends_stay_spaced_behind_a_busy_concurrency_limit::<E, _>(|svc| {
            tower::buffer::Buffer::new(svc, 8)
        })
        .await;
    }

    /// Pacing 1/s: `/limited` takes the slot at 0 and answers 429 `Retry-After: 1` at
    /// 0.5 s, while `/ok` waits for its slot at 1 s. At 1 s `/ok` sees the cooldown (to
    /// 1.5 s) before it takes the slot, so the slot is not wasted: it goes at 1.5 s, on
    /// the slot it waited for, not at 2 s on the next one.
    async fn a_cooldown_that_begins_during_a_wait_for_a_slot_wastes_no_slot<E: FnError>() {
        let fake = Fake::new(|uri, _| match uri.path() {
            "/limited" => Answer::LimitedAfter(ms(500), 1),
            _ => Answer::Status(200),
        });
        let policy = exact().max_retries(0).build();
        let svc = over_fake::<E>(paced(policy, Pacing::new(1, secs(1))), &fake);
        let limited = tokio::spawn(svc.clone().oneshot(get(&a("/limited"))));
        tokio::task::yield_now().await;
        let t = Instant::now();
        let resp = svc.clone().oneshot(get(&a("/ok"))).await.unwrap();
        assert_eq!(
            t.elapsed(),
            ms(1500),
            "at the cooldown's end, not a slot later"
        );
        assert_eq!(resp.status(), 200);
        assert_eq!(info(&resp).attempts(), 1);
        assert_eq!(
            info(&resp).slept(),
            ms(1500),
            "1 s for the slot, 0.5 s behind the cooldown"
        );
        assert_eq!(limited.await.unwrap().unwrap().status(), 429);
        assert_eq!(fake.at(&a("/ok")), [ms(1500)]);
        // The slot at 1.5 s is taken: the next is at 2.5 s.
        let t = Instant::now();
        svc.oneshot(get(&a("/next"))).await.unwrap();
        assert_eq!(t.elapsed(), secs(1));
    }

    async fn an_outer_timeout_cuts_a_wait_for_a_slot_and_frees_it<E: FnError>() {
        let fake = Fake::new(|_, _| Answer::Status(200));
        let svc = ServiceBuilder::new()
            .layer(TimeoutLayer::new(secs(2)))
            .layer(paced(exact().build(), Pacing::new(1, secs(5))))
            .service(fake.service::<E>());
        svc.clone().oneshot(get(&a("/1"))).await.unwrap();
        let err = svc.clone().oneshot(get(&a("/2"))).await.unwrap_err();
        assert!(err.is::<Elapsed>(), "{err:?}");
        tokio::time::sleep(secs(2)).await;
        // Had /2 kept its slot (at 5 s), this one's would be at 10 s, past its timeout.
        let t = Instant::now();
        svc.oneshot(get(&a("/3"))).await.unwrap();
        assert_eq!(t.elapsed(), secs(1), "the slot at 5 s, which /2 never took");
        assert!(fake.at(&a("/2")).is_empty());
    }

    service_fn_tests! {
        pacing_at_the_servers_limit_lets_100_concurrent_requests_meet_no_429 {
            io::Error => pacing_at_the_servers_limit_lets_100_concurrent_requests_meet_no_429_tower_service_fn_io;
            BoxError => pacing_at_the_servers_limit_lets_100_concurrent_requests_meet_no_429_tower_service_fn_box;
        }
        retries_are_paced_like_first_attempts {
            io::Error => retries_are_paced_like_first_attempts_tower_service_fn_io;
            BoxError => retries_are_paced_like_first_attempts_tower_service_fn_box;
        }
        a_paced_slot_beyond_the_cap_or_the_deadline_fails_at_once {
            io::Error => a_paced_slot_beyond_the_cap_or_the_deadline_fails_at_once_tower_service_fn_io;
            BoxError => a_paced_slot_beyond_the_cap_or_the_deadline_fails_at_once_tower_service_fn_box;
        }
        a_slot_exactly_at_the_deadline_is_refused_at_once_and_not_taken {
            io::Error => a_slot_exactly_at_the_deadline_is_refused_at_once_and_not_taken_tower_service_fn_io;
        }
        a_request_cancelled_while_waiting_for_its_slot_gives_its_place_back {
            io::Error => a_request_cancelled_while_waiting_for_its_slot_gives_its_place_back_tower_service_fn_io;
        }
        a_request_waiting_for_its_slot_keeps_its_concurrency_limit_permit {
            io::Error => a_request_waiting_for_its_slot_keeps_its_concurrency_limit_permit_tower_service_fn_io;
            BoxError => a_request_waiting_for_its_slot_keeps_its_concurrency_limit_permit_tower_service_fn_box;
        }
        a_request_waiting_for_its_slot_keeps_its_buffer_slot {
            io::Error => a_request_waiting_for_its_slot_keeps_its_buffer_slot_tower_service_fn_io;
            BoxError => a_request_waiting_for_its_slot_keeps_its_buffer_slot_tower_service_fn_box;
        }
        paced_sends_stay_spaced_behind_a_busy_concurrency_limit_below {
            io::Error => paced_sends_stay_spaced_behind_a_busy_concurrency_limit_below_tower_service_fn_io;
            BoxError => paced_sends_stay_spaced_behind_a_busy_concurrency_limit_below_tower_service_fn_box;
        }
        paced_sends_stay_spaced_behind_a_busy_limit_with_a_timeout_above {
            io::Error => paced_sends_stay_spaced_behind_a_busy_limit_with_a_timeout_above_tower_service_fn_io;
        }
        paced_sends_stay_spaced_behind_a_busy_limit_with_a_buffer_above {
            io::Error => paced_sends_stay_spaced_behind_a_busy_limit_with_a_buffer_above_tower_service_fn_io;
        }
        a_cooldown_that_begins_during_a_wait_for_a_slot_wastes_no_slot {
            io::Error => a_cooldown_that_begins_during_a_wait_for_a_slot_wastes_no_slot_tower_service_fn_io;
            BoxError => a_cooldown_that_begins_during_a_wait_for_a_slot_wastes_no_slot_tower_service_fn_box;
        }
        an_outer_timeout_cuts_a_wait_for_a_slot_and_frees_it {
            io::Error => an_outer_timeout_cuts_a_wait_for_a_slot_and_frees_it_tower_service_fn_io;
            BoxError => an_outer_timeout_cuts_a_wait_for_a_slot_and_frees_it_tower_service_fn_box;
        }
    }
}

// ===== (b) hyper-util's client and (c) the reqwest middleware, real sockets =====

mod real_sockets {
    use super::*;

    /// One logical request's outcome, as either real-socket adapter reports it.
    #[derive(Debug)]
    enum Got {
        Response {
            status: u16,
            info: RetryInfo,
            retry_after: Option<String>,
        },
        /// A failure the engine decided (`RetryError` without an inner error).
        Engine {
            kind: RetryErrorKind,
            info: RetryInfo,
            cooldown: Option<Duration>,
            /// Its `Display`.
            message: String,
        },
        /// The last attempt's own error.
        Inner {
            kind: TransportErrorKind,
            info: RetryInfo,
        },
    }

    impl Got {
        fn info(&self) -> RetryInfo {
            match self {
                Got::Response { info, .. } | Got::Engine { info, .. } | Got::Inner { info, .. } => {
                    *info
                }
            }
        }

        #[track_caller]
        fn status(&self) -> u16 {
            match self {
                Got::Response { status, .. } => *status,
                other => panic!("expected a response, got {other:?}"),
            }
        }

        #[track_caller]
        fn engine(&self) -> (RetryErrorKind, Option<Duration>) {
            match self {
                Got::Engine { kind, cooldown, .. } => (*kind, *cooldown),
                other => panic!("expected an engine error, got {other:?}"),
            }
        }

        /// The `Display` of an engine error.
        #[track_caller]
        fn message(&self) -> &str {
            match self {
                Got::Engine { message, .. } => message,
                other => panic!("expected an engine error, got {other:?}"),
            }
        }

        #[track_caller]
        fn inner(&self) -> TransportErrorKind {
            match self {
                Got::Inner { kind, .. } => *kind,
                other => panic!("expected an inner error, got {other:?}"),
            }
        }
    }

    /// A client through one adapter.
    trait Adapter: Clone + Send + Sync + 'static {
        fn over(retry: TelEchoRetry) -> Self;
        fn send(&self, method: Method, url: String) -> impl Future<Output = Got> + Send;
    }

    type HyperClient = hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>;

    fn hyper_client() -> HyperClient {
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()
    }

    /// (b) The tower layer over hyper-util's legacy client.
    #[derive(Clone)]
    struct HyperUtil(RetryService<HyperClient>);

    impl Adapter for HyperUtil {
        fn over(retry: TelEchoRetry) -> Self {
            let svc = ServiceBuilder::new().layer(retry).service(hyper_client());
            HyperUtil(errors_are_retry_errors(svc))
        }

        fn send(&self, method: Method, url: String) -> impl Future<Output = Got> + Send {
            let svc = self.0.clone();
            async move {
                match svc.oneshot(request(method, &url)).await {
                    Ok(resp) => Got::Response {
                        status: resp.status().as_u16(),
                        info: info(&resp),
                        retry_after: retry_after(resp.headers()),
                    },
                    Err(err) => {
                        if let Some(inner) = err.get_inner() {
                            assert!(
                                inner
                                    .downcast_ref::<hyper_util::client::legacy::Error>()
                                    .is_some(),
                                "the inner error is the client's own: {inner:?}"
                            );
                        }
                        got_of(&err)
                    }
                }
            }
        }
    }

    fn retry_after(headers: &http::HeaderMap) -> Option<String> {
        headers
            .get(RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    /// A tower-side `RetryError` as a [`Got`].
    #[track_caller]
    fn got_of(err: &RetryError) -> Got {
        match (err.kind(), err.get_inner()) {
            (RetryErrorKind::Inner, Some(inner)) => Got::Inner {
                kind: TransportErrorKind::of_error(inner),
                info: err.info(),
            },
            (RetryErrorKind::Inner, None) => panic!("an Inner RetryError without the inner error"),
            (kind, None) => Got::Engine {
                kind,
                info: err.info(),
                cooldown: err.cooldown(),
                message: err.to_string(),
            },
            (kind, Some(inner)) => panic!("a {kind:?} RetryError with an inner error: {inner:?}"),
        }
    }

    /// An extension the caller sets; the middleware must keep it on every outcome.
    #[derive(Clone, Debug, PartialEq)]
    struct CallerTag(&'static str);

    /// (c) The reqwest middleware.
    #[derive(Clone)]
    struct ReqwestMiddleware(ClientWithMiddleware);

    fn reqwest_client(retry: TelEchoRetry) -> ClientWithMiddleware {
        let inner = reqwest::Client::builder().no_proxy().build().unwrap();
        ClientBuilder::new(inner).with(retry).build()
    }

    /// Sends through the middleware with a [`CallerTag`] in the caller's extensions; returns
    /// the result and the extensions afterwards.
    async fn execute(
        client: &ClientWithMiddleware,
        method: Method,
        url: &str,
    ) -> (reqwest_middleware::Result<reqwest::Response>, Extensions) {
        let mut extensions = Extensions::new();
        extensions.insert(CallerTag("caller"));
        let req = client.request(method, url).body("{}").build().unwrap();
        let result = client.execute_with_extensions(req, &mut extensions).await;
        (result, extensions)
    }

    impl Adapter for ReqwestMiddleware {
        fn over(retry: TelEchoRetry) -> Self {
            ReqwestMiddleware(reqwest_client(retry))
        }

        fn send(&self, method: Method, url: String) -> impl Future<Output = Got> + Send {
            let client = self.0.clone();
            async move {
                let (result, extensions) = execute(&client, method, &url).await;
                assert_eq!(
                    extensions.get::<CallerTag>(),
                    Some(&CallerTag("caller")),
                    "the caller's extensions are kept: {result:?}"
                );
                match result {
                    Ok(resp) => {
                        let info = RetryInfo::of(resp.extensions());
                        assert_eq!(RetryInfo::of(&extensions), info, "the caller sees the info");
                        Got::Response {
                            status: resp.status().as_u16(),
                            info,
                            retry_after: retry_after(resp.headers()),
                        }
                    }
                    Err(err) => {
                        // Every failure is a `RetryError`, with the same info as the
                        // caller's extensions.
                        let err = RetryError::of(&err).expect("a RetryError");
                        assert_eq!(extensions.get::<RetryInfo>(), Some(&err.info()));
                        match err.get_inner() {
                            Some(inner) => Got::Inner {
                                kind: TransportErrorKind::of_error(inner),
                                info: err.info(),
                            },
                            None => got_of(err),
                        }
                    }
                }
            }
        }
    }

    /// One real-socket test per adapter, each calling the generic behaviour under a 2 s bound.
    macro_rules! real_socket_tests {
    ($($behaviour:ident { $($adapter:ty => $(#[$attr:meta])* $name:ident;)+ })*) => {
        $($(
            $(#[$attr])*
            #[tokio::test]
            async fn $name() {
                bounded($behaviour::<$adapter>()).await;
            }
        )+)*
    };
}

    /// A URL on a port nobody listens on.
    fn refused_url() -> String {
        format!("http://{}/v1/calls", crate::support::closed_addr())
    }

    /// Answers `first` to the first request for `path`, `rest` to everything else.
    fn first_then(
        path: &'static str,
        first: Reply,
        rest: Reply,
    ) -> impl Fn(&support::Seen) -> Reply {
        let n = AtomicUsize::new(0);
        move |seen| {
            if seen.path == path && n.fetch_add(1, Ordering::SeqCst) == 0 {
                first.clone()
            } else {
                rest.clone()
            }
        }
    }

    fn limited_reply(retry_after: &str) -> Reply {
        Reply::status(429).header("retry-after", retry_after)
    }

    // ----- attempt timeout and deadline -----

    async fn attempt_timeout_cuts_a_silent_server_and_retries_only_a_get<C: Adapter>() {
        let policy = fast().max_retries(1).attempt_timeout(ms(100)).build();

        let server = RawServer::start(Misbehave::Silent).await;
        let client = C::over(unbudgeted(policy.clone()));
        let t = std::time::Instant::now();
        let got = client.send(Method::GET, server.url()).await;
        let elapsed = t.elapsed();
        assert_eq!(got.engine().0, RetryErrorKind::AttemptTimeout);
        assert_eq!(got.info().attempts(), 2);
        assert_eq!(got.info().slept(), ms(20));
        assert_eq!(got.info().stop_reason(), Some(StopReason::MaxRetries));
        assert!(elapsed >= ms(220) && elapsed < ms(1000), "{elapsed:?}");
        assert_eq!(server.requests(), 2);

        let server = RawServer::start(Misbehave::Silent).await;
        let client = C::over(unbudgeted(policy));
        let got = client.send(Method::POST, server.url()).await;
        assert_eq!(got.engine().0, RetryErrorKind::AttemptTimeout);
        assert_eq!(got.info().attempts(), 1);
        assert_eq!(got.info().stop_reason(), Some(StopReason::Fatal));
        assert_eq!(server.requests(), 1);
    }

    async fn deadline_cuts_the_attempt_in_flight_and_sends_none_after_it<C: Adapter>() {
        let server = RawServer::start(Misbehave::Silent).await;
        let client = C::over(unbudgeted(fast().max_retries(3).deadline(ms(150)).build()));
        let t = std::time::Instant::now();
        let got = client.send(Method::GET, server.url()).await;
        let elapsed = t.elapsed();
        assert_eq!(got.engine().0, RetryErrorKind::Deadline);
        assert_eq!(got.info().attempts(), 1);
        assert_eq!(got.info().stop_reason(), Some(StopReason::Deadline));
        assert!(elapsed >= ms(150) && elapsed < ms(600), "{elapsed:?}");
        tokio::time::sleep(ms(200)).await;
        assert_eq!(server.requests(), 1, "no attempt after the deadline");
    }

    real_socket_tests! {
        attempt_timeout_cuts_a_silent_server_and_retries_only_a_get {
            HyperUtil => attempt_timeout_cuts_a_silent_server_and_retries_only_a_get_tower_hyper_util;
            ReqwestMiddleware => attempt_timeout_cuts_a_silent_server_and_retries_only_a_get_reqwest_middleware;
        }
        deadline_cuts_the_attempt_in_flight_and_sends_none_after_it {
            HyperUtil => deadline_cuts_the_attempt_in_flight_and_sends_none_after_it_tower_hyper_util;
            ReqwestMiddleware => deadline_cuts_the_attempt_in_flight_and_sends_none_after_it_reqwest_middleware;
        }
    }

    // ----- the deadline bounds the wait behind the cooldown -----

    async fn deadline_refuses_a_wait_behind_the_cooldown<C: Adapter>() {
        let server = Server::start(|seen| match seen.path.as_str() {
            "/limited" => limited_reply("1"),
            _ => Reply::status(200),
        })
        .await;
        let client = C::over(unbudgeted(fast().max_retries(3).deadline(ms(500)).build()));

        let got = client.send(Method::GET, server.url("/limited")).await;
        assert_eq!(got.status(), 429);
        assert_eq!(got.info().stop_reason(), Some(StopReason::Deadline));

        let t = std::time::Instant::now();
        let got = client.send(Method::GET, server.url("/other")).await;
        assert!(t.elapsed() < ms(200), "refused at once: {:?}", t.elapsed());
        let (kind, cooldown) = got.engine();
        assert_eq!(kind, RetryErrorKind::Deadline);
        let cooldown = cooldown.expect("the cooldown left");
        assert!(cooldown > ms(500) && cooldown <= secs(1), "{cooldown:?}");
        assert_eq!(got.info().attempts(), 0);
        assert_eq!(got.info().slept(), ZERO);
        assert_eq!(got.info().stop_reason(), Some(StopReason::Deadline));
        assert_eq!(server.hits("/other"), 0, "nothing sent");
    }

    /// `/limited` answers 429 `Retry-After: 1` once; a request to `path` sent 100 ms later
    /// waits behind the cooldown, under a 1.5 s deadline. Returns its outcome, how long it
    /// took, and the server.
    async fn behind_a_1s_cooldown<C: Adapter>(path: &'static str) -> (Got, Duration, Server) {
        let flaky = AtomicUsize::new(0);
        let limited = first_then("/limited", limited_reply("1"), Reply::status(200));
        let server = Server::start(move |seen| {
            if seen.path == "/flaky" && flaky.fetch_add(1, Ordering::SeqCst) == 0 {
                Reply::status(503)
            } else {
                limited(seen)
            }
        })
        .await;
        let client = C::over(unbudgeted(fast().max_retries(3).deadline(ms(1500)).build()));
        let first = tokio::spawn({
            let (client, url) = (client.clone(), server.url("/limited"));
            async move { client.send(Method::GET, url).await }
        });
        tokio::time::sleep(ms(100)).await;
        let t = std::time::Instant::now();
        let got = client.send(Method::GET, server.url(path)).await;
        let elapsed = t.elapsed();
        assert_eq!(first.await.unwrap().status(), 200);

        let seen = server.seen();
        let limited_at = seen.iter().find(|s| s.path == "/limited").unwrap().at;
        let sent_at = seen.iter().find(|s| s.path == path).unwrap().at;
        assert!(
            sent_at.duration_since(limited_at) >= secs(1),
            "sent {:?} after the 429",
            sent_at.duration_since(limited_at)
        );
        (got, elapsed, server)
    }

    async fn a_wait_behind_the_cooldown_that_fits_the_deadline_is_counted_in_slept<C: Adapter>() {
        let (got, elapsed, server) = behind_a_1s_cooldown::<C>("/flaky").await;
        assert_eq!(got.status(), 200);
        assert!(elapsed >= ms(800), "{elapsed:?}");
        assert_eq!(got.info().attempts(), 2);
        assert_eq!(server.hits("/flaky"), 2);
        // ~900 ms behind the cooldown, then 20 ms of backoff.
        let slept = got.info().slept();
        assert!(slept >= ms(820) && slept <= ms(1020), "{slept:?}");
    }

    async fn a_first_try_success_after_a_cooldown_wait_reports_the_wait<C: Adapter>() {
        let (got, elapsed, _server) = behind_a_1s_cooldown::<C>("/ok").await;
        assert_eq!(got.status(), 200);
        assert!(elapsed >= ms(800), "{elapsed:?}");
        assert_eq!(got.info().attempts(), 1);
        let slept = got.info().slept();
        assert!(
            slept >= ms(800) && slept <= secs(1),
            "the wait behind the cooldown is counted in RetryInfo::slept: {slept:?}"
        );
    }

    real_socket_tests! {
        deadline_refuses_a_wait_behind_the_cooldown {
            HyperUtil => deadline_refuses_a_wait_behind_the_cooldown_tower_hyper_util;
            ReqwestMiddleware => deadline_refuses_a_wait_behind_the_cooldown_reqwest_middleware;
        }
        a_wait_behind_the_cooldown_that_fits_the_deadline_is_counted_in_slept {
            HyperUtil => a_wait_behind_the_cooldown_that_fits_the_deadline_is_counted_in_slept_tower_hyper_util;
            ReqwestMiddleware => a_wait_behind_the_cooldown_that_fits_the_deadline_is_counted_in_slept_reqwest_middleware;
        }
        a_first_try_success_after_a_cooldown_wait_reports_the_wait {
            HyperUtil =>
                a_first_try_success_after_a_cooldown_wait_reports_the_wait_tower_hyper_util;
            ReqwestMiddleware =>
                a_first_try_success_after_a_cooldown_wait_reports_the_wait_reqwest_middleware;
        }
    }

    // ----- a Retry-After above the cap -----

    async fn a_retry_after_above_the_cap_is_returned_at_once_and_starts_the_cooldown<C: Adapter>() {
        let server = Server::start(|seen| match seen.path.as_str() {
            "/limited" => limited_reply("3600"),
            _ => Reply::status(200),
        })
        .await;
        let client = C::over(unbudgeted(fast().max_retries(3).build()));

        let t = std::time::Instant::now();
        let got = client.send(Method::GET, server.url("/limited")).await;
        assert!(t.elapsed() < ms(500), "{:?}", t.elapsed());
        assert_eq!(got.status(), 429);
        let Got::Response { retry_after, .. } = &got else {
            unreachable!()
        };
        assert_eq!(retry_after.as_deref(), Some("3600"), "header intact");
        assert_eq!(got.info().attempts(), 1);
        assert_eq!(
            got.info().stop_reason(),
            Some(StopReason::RetryAfterTooLong)
        );

        for method in [Method::GET, Method::POST] {
            let t = std::time::Instant::now();
            let got = client.send(method, server.url("/other")).await;
            assert!(t.elapsed() < ms(200), "{:?}", t.elapsed());
            let (kind, cooldown) = got.engine();
            assert_eq!(kind, RetryErrorKind::RateLimited);
            let cooldown = cooldown.expect("the cooldown left");
            assert!(
                cooldown > secs(3590) && cooldown <= secs(3600),
                "{cooldown:?}"
            );
            assert_eq!(got.info().attempts(), 0);
            assert_eq!(
                got.info().stop_reason(),
                Some(StopReason::RetryAfterTooLong)
            );
        }
        assert_eq!(server.hits("/other"), 0, "nothing sent");
        assert_eq!(server.hits("/limited"), 1);
    }

    async fn requests_fail_rate_limited_until_the_cooldown_has_passed_even_once_under_the_cap<
        C: Adapter,
    >() {
        let server = Server::start(|seen| match seen.path.as_str() {
            "/limited" => limited_reply("1"),
            _ => Reply::status(200),
        })
        .await;
        // A 500 ms cap: `Retry-After: 1` is above it.
        let policy = fast().max_retries(3).max_retry_after(ms(500)).build();
        let client = C::over(unbudgeted(policy));
        let got = client.send(Method::GET, server.url("/limited")).await;
        assert_eq!(got.status(), 429);
        assert_eq!(
            got.info().stop_reason(),
            Some(StopReason::RetryAfterTooLong)
        );

        // 600 ms on, about 400 ms are left: under the cap, and still a refusal.
        tokio::time::sleep(ms(600)).await;
        let got = tokio::time::timeout(ms(300), client.send(Method::GET, server.url("/other")))
            .await
            .expect("refused at once, not held back behind the cooldown");
        let (kind, cooldown) = got.engine();
        assert_eq!(kind, RetryErrorKind::RateLimited);
        let cooldown = cooldown.expect("the cooldown left");
        assert!(cooldown > ms(100) && cooldown <= ms(400), "{cooldown:?}");
        assert_eq!(server.hits("/other"), 0, "nothing sent");
    }

    real_socket_tests! {
        a_retry_after_above_the_cap_is_returned_at_once_and_starts_the_cooldown {
            HyperUtil => a_retry_after_above_the_cap_is_returned_at_once_and_starts_the_cooldown_tower_hyper_util;
            ReqwestMiddleware => a_retry_after_above_the_cap_is_returned_at_once_and_starts_the_cooldown_reqwest_middleware;
        }
        requests_fail_rate_limited_until_the_cooldown_has_passed_even_once_under_the_cap {
            HyperUtil =>
                requests_fail_rate_limited_until_the_cooldown_has_passed_even_once_under_the_cap_tower_hyper_util;
            ReqwestMiddleware =>
                requests_fail_rate_limited_until_the_cooldown_has_passed_even_once_under_the_cap_reqwest_middleware;
        }
    }

    // ----- per-origin limits -----

    async fn a_429_from_one_origin_does_not_hold_back_another<C: Adapter>() {
        let limiting = Server::start(first_then(
            "/limited",
            limited_reply("1"),
            Reply::status(200),
        ))
        .await;
        let other = Server::start(|_| Reply::status(200)).await;
        let client = C::over(unbudgeted(fast().max_retries(0).build()));

        let got = client.send(Method::GET, limiting.url("/limited")).await;
        assert_eq!(got.status(), 429);
        let t = std::time::Instant::now();
        let got = client.send(Method::GET, other.url("/ok")).await;
        assert_eq!(got.status(), 200);
        assert!(t.elapsed() < ms(500), "held back: {:?}", t.elapsed());
        let got = client.send(Method::GET, limiting.url("/ok")).await;
        assert_eq!(got.status(), 200);
        assert!(t.elapsed() >= ms(800), "not held back: {:?}", t.elapsed());
    }

    async fn the_retry_budget_is_kept_per_origin<C: Adapter>() {
        let first = Server::start(|_| Reply::status(503)).await;
        let second = Server::start(|_| Reply::status(503)).await;
        let policy = fast().max_retries(1).build();
        let client = C::over(budgeted(policy, RetryBudget::new(secs(10), 1, 0.0)));
        for server in [&first, &second] {
            let got = join_all((0..20).map(|_| client.send(Method::GET, server.url("/")))).await;
            assert_eq!(server.seen().len(), 30, "20 requests + 10 retries");
            let budget = got
                .iter()
                .filter(|g| g.info().stop_reason() == Some(StopReason::Budget))
                .count();
            assert_eq!(budget, 10);
        }
    }

    real_socket_tests! {
        a_429_from_one_origin_does_not_hold_back_another {
            HyperUtil => a_429_from_one_origin_does_not_hold_back_another_tower_hyper_util;
            ReqwestMiddleware => a_429_from_one_origin_does_not_hold_back_another_reqwest_middleware;
        }
        the_retry_budget_is_kept_per_origin {
            HyperUtil => the_retry_budget_is_kept_per_origin_tower_hyper_util;
            ReqwestMiddleware => the_retry_budget_is_kept_per_origin_reqwest_middleware;
        }
    }

    // ----- the budget's ratio -----

    async fn the_retry_budget_allows_its_ratio_of_100_requests<C: Adapter>() {
        for ratio in [0.3, 0.6] {
            let server = Server::start(|_| Reply::status(503)).await;
            let policy = fast().max_retries(1).build();
            let client = C::over(budgeted(policy, RetryBudget::new(secs(10), 0, ratio)));
            let got = join_all((0..100).map(|_| client.send(Method::GET, server.url("/")))).await;
            let retries = server.seen().len() as i64 - 100;
            let want = share_of_100(ratio);
            assert!(
                (retries - want).abs() <= 1,
                "ratio {ratio}: {retries} retries for 100 requests, want {want} ± 1"
            );
            let budget = got
                .iter()
                .filter(|g| g.info().stop_reason() == Some(StopReason::Budget))
                .count() as i64;
            assert_eq!(budget, 100 - retries, "ratio {ratio}");
        }
    }

    real_socket_tests! {
        the_retry_budget_allows_its_ratio_of_100_requests {
            HyperUtil => the_retry_budget_allows_its_ratio_of_100_requests_tower_hyper_util;
            ReqwestMiddleware => the_retry_budget_allows_its_ratio_of_100_requests_reqwest_middleware;
        }
    }

    // ----- a refused connection -----

    async fn a_refused_connection_retried_n_times_is_an_inner_retry_error_with_n_plus_1_attempts<
        C: Adapter,
    >() {
        for n in 0..=2u32 {
            let client = C::over(unbudgeted(fast().max_retries(n).build()));
            let got = client.send(Method::POST, refused_url()).await;
            assert_eq!(got.inner(), TransportErrorKind::Connect);
            assert_eq!(got.info().attempts(), n + 1);
            assert_eq!(got.info().slept(), ms(20 * ((1 << n) - 1)));
            assert_eq!(got.info().stop_reason(), Some(StopReason::MaxRetries));
        }
    }

    real_socket_tests! {
        a_refused_connection_retried_n_times_is_an_inner_retry_error_with_n_plus_1_attempts {
            HyperUtil => a_refused_connection_retried_n_times_is_an_inner_retry_error_with_n_plus_1_attempts_tower_hyper_util;
            ReqwestMiddleware => a_refused_connection_retried_n_times_is_an_inner_retry_error_with_n_plus_1_attempts_reqwest_middleware;
        }
    }

    // ----- hyper-util stacks -----

    /// Like [`held_back_request_leaves_capacity`], over hyper-util in real time: `/limited`
    /// answers 429 `Retry-After: 1` once; a request to the same server is held back; one to
    /// another server goes through at once.
    async fn held_back_request_leaves_capacity_over_hyper_util<S>(
        build: impl FnOnce(TelEchoRetry, HyperClient) -> S,
    ) where
        S: Service<
                Req,
                Response = Response<ResponseBody<hyper::body::Incoming>>,
                Error = RetryError,
            > + Clone
            + Send
            + 'static,
        S::Future: Send,
    {
        let limiting = Server::start(first_then(
            "/limited",
            limited_reply("1"),
            Reply::status(200),
        ))
        .await;
        let other = Server::start(|_| Reply::status(200)).await;
        let svc = build(unbudgeted(fast().max_retries(1).build()), hyper_client());

        let first = tokio::spawn(svc.clone().oneshot(get(&limiting.url("/limited"))));
        tokio::time::sleep(ms(100)).await;
        let second = tokio::spawn(svc.clone().oneshot(get(&limiting.url("/ok"))));
        tokio::time::sleep(ms(50)).await;

        let t = std::time::Instant::now();
        let third = svc.clone().oneshot(get(&other.url("/ok"))).await.unwrap();
        assert!(
            t.elapsed() < ms(400),
            "the third request waited {:?} for capacity the held-back one kept",
            t.elapsed()
        );
        assert_eq!(third.status(), 200);
        assert_eq!(limiting.hits("/ok"), 0, "the second one still waits");

        assert_eq!(first.await.unwrap().unwrap().status(), 200);
        assert_eq!(second.await.unwrap().unwrap().status(), 200);
        let seen = limiting.seen();
        let limited_at = seen[0].at;
        let ok_at = seen.iter().find(|s| s.path == "/ok").unwrap().at;
        assert!(ok_at.duration_since(limited_at) >= secs(1));
    }

    #[tokio::test]
    async fn a_request_held_back_by_the_cooldown_holds_no_concurrency_limit_permit_tower_hyper_util(
    ) {
        bounded(held_back_request_leaves_capacity_over_hyper_util(
            |retry, client| {
                ServiceBuilder::new()
                    .layer(retry)
                    .layer(ConcurrencyLimitLayer::new(1))
                    .service(client)
            },
        ))
        .await;
    }

    #[tokio::test]
    async fn a_request_held_back_by_the_cooldown_holds_no_buffer_slot_tower_hyper_util() {
        bounded(held_back_request_leaves_capacity_over_hyper_util(
            |retry, client| ServiceBuilder::new().layer(retry).buffer(1).service(client),
        ))
        .await;
    }

    #[tokio::test]
    async fn deadline_bounds_the_wait_for_the_inner_service_to_be_ready_tower_hyper_util() {
        bounded(async {
            let limiting = Server::start(first_then(
                "/limited",
                limited_reply("1"),
                Reply::status(200),
            ))
            .await;
            let silent = RawServer::start(Misbehave::Silent).await;
            let limit = ConcurrencyLimit::new(hyper_client(), 1);
            let policy = fast().max_retries(0).deadline(ms(1200)).build();
            let svc = errors_are_retry_errors(unbudgeted(policy).layer(limit.clone()));
            let resp = svc
                .clone()
                .oneshot(get(&limiting.url("/limited")))
                .await
                .unwrap();
            assert_eq!(resp.status(), 429);

            // Held back ~1 s; meanwhile another client of the limit takes its only permit.
            let t = std::time::Instant::now();
            let held = tokio::spawn(svc.oneshot(get(&limiting.url("/ok"))));
            tokio::time::sleep(ms(50)).await;
            let hog = tokio::spawn(limit.oneshot(get(&silent.url())));
            let err = held.await.unwrap().unwrap_err();
            let elapsed = t.elapsed();
            assert_eq!(err.kind(), RetryErrorKind::Deadline);
            assert!(elapsed >= ms(1150) && elapsed < ms(1600), "{elapsed:?}");
            assert_eq!(err.info().attempts(), 0);
            let slept = err.info().slept();
            assert!(slept >= ms(800) && slept <= secs(1), "{slept:?}");
            assert_eq!(silent.requests(), 1, "the permit was taken");
            hog.abort();
            tokio::time::sleep(ms(100)).await;
            assert_eq!(limiting.hits("/ok"), 0, "never sent");
        })
        .await;
    }

    #[tokio::test]
    async fn errors_through_a_buffer_above_are_boxed_retry_errors_tower_hyper_util() {
        bounded(async {
            let limiting = Server::start(|seen| match seen.path.as_str() {
                "/limited" => limited_reply("3600"),
                _ => Reply::status(200),
            })
            .await;
            let short = Server::start(|_| limited_reply("1")).await;
            let silent = RawServer::start(Misbehave::Silent).await;
            let policy = fast()
                .max_retries(1)
                .attempt_timeout(ms(100))
                .deadline(ms(500))
                .build();
            let svc = ServiceBuilder::new()
                .buffer(8)
                .layer(unbudgeted(policy))
                .service(hyper_client());

            let err: BoxError = svc.clone().oneshot(post(&refused_url())).await.unwrap_err();
            let err = retry_error_in(&err);
            assert_eq!(err.kind(), RetryErrorKind::Inner);
            let inner = err.get_inner().unwrap();
            let inner = inner
                .downcast_ref::<hyper_util::client::legacy::Error>()
                .expect("hyper-util's error");
            assert!(inner.is_connect());
            assert_eq!(err.info().attempts(), 2);

            let err = svc.clone().oneshot(get(&silent.url())).await.unwrap_err();
            let err = retry_error_in(&err);
            assert_eq!(err.kind(), RetryErrorKind::AttemptTimeout);
            assert_eq!(err.info().attempts(), 2);

            let resp = svc
                .clone()
                .oneshot(get(&limiting.url("/limited")))
                .await
                .unwrap();
            assert_eq!(resp.status(), 429);
            let err = svc
                .clone()
                .oneshot(get(&limiting.url("/other")))
                .await
                .unwrap_err();
            let err = retry_error_in(&err);
            assert_eq!(err.kind(), RetryErrorKind::RateLimited);
            assert_eq!(err.info().attempts(), 0);

            // 1 s does not fit the 500 ms deadline.
            let resp = svc.clone().oneshot(get(&short.url("/a"))).await.unwrap();
            assert_eq!(resp.status(), 429);
            let t = std::time::Instant::now();
            let err = svc.oneshot(get(&short.url("/b"))).await.unwrap_err();
            assert!(t.elapsed() < ms(300), "refused at once: {:?}", t.elapsed());
            let err = retry_error_in(&err);
            assert_eq!(err.kind(), RetryErrorKind::Deadline);
            assert_eq!(err.info().attempts(), 0);
            assert_eq!(limiting.hits("/other") + short.hits("/b"), 0);
        })
        .await;
    }

    #[tokio::test]
    async fn an_outer_timeout_bounds_retries_and_cooldown_waits_tower_hyper_util() {
        bounded(async {
            let down = Server::start(|_| Reply::status(503)).await;
            let limiting = Server::start(|seen| match seen.path.as_str() {
                "/limited" => limited_reply("1"),
                _ => Reply::status(200),
            })
            .await;
            let svc = ServiceBuilder::new()
                .layer(TimeoutLayer::new(ms(150)))
                .layer(unbudgeted(fast().max_retries(5).build()))
                .service(hyper_client());

            // 20 + 40 + 80 + 100 + 100 ms of backoff would take past 150 ms.
            let t = std::time::Instant::now();
            let err = svc.clone().oneshot(get(&down.url("/"))).await.unwrap_err();
            let elapsed = t.elapsed();
            assert!(err.is::<Elapsed>(), "{err:?}");
            assert!(elapsed >= ms(150) && elapsed < ms(400), "{elapsed:?}");

            // Waiting for `Retry-After: 1`, and held back behind it: both cut at 150 ms.
            for path in ["/limited", "/other"] {
                let t = std::time::Instant::now();
                let err = svc
                    .clone()
                    .oneshot(get(&limiting.url(path)))
                    .await
                    .unwrap_err();
                let elapsed = t.elapsed();
                assert!(err.is::<Elapsed>(), "{path}: {err:?}");
                assert!(elapsed >= ms(150) && elapsed < ms(400), "{elapsed:?}");
            }

            // The retry layer's own errors still come through as RetryErrors: a POST whose
            // response was cut short is not resent.
            let cut = RawServer::start(Misbehave::IncompleteHead).await;
            let err = svc.oneshot(post(&cut.url())).await.unwrap_err();
            let err = retry_error_in(&err);
            assert_eq!(err.kind(), RetryErrorKind::Inner);
            assert_eq!(err.info().attempts(), 1);
            assert_eq!(err.stop_reason(), Some(StopReason::Fatal));

            let before = down.seen().len();
            assert!(before <= 4, "{before} attempts within 150 ms");
            tokio::time::sleep(ms(1100)).await;
            assert_eq!(down.seen().len(), before, "nothing sent after the timeout");
            assert_eq!(limiting.hits("/limited"), 1);
            assert_eq!(limiting.hits("/other"), 0);
        })
        .await;
    }

    // ----- the reqwest middleware keeps the caller's extensions -----

    #[tokio::test]
    async fn the_callers_extensions_survive_every_outcome_with_retry_info_reqwest_middleware() {
        bounded(async {
            let flaky = first_then("/flaky", Reply::status(503), Reply::status(200));
            let server = Server::start(move |seen| match seen.path.as_str() {
                "/missing" => Reply::status(404),
                "/down" => Reply::status(503),
                _ => flaky(seen),
            })
            .await;
            let limiting = Server::start(|_| limited_reply("3600")).await;
            let silent = RawServer::start(Misbehave::Silent).await;
            let plain = reqwest_client(unbudgeted(fast().max_retries(2).build()));
            let timed = reqwest_client(unbudgeted(
                fast().max_retries(1).attempt_timeout(ms(100)).build(),
            ));
            let bounded_client =
                reqwest_client(unbudgeted(fast().max_retries(1).deadline(ms(100)).build()));

            // (client, method, url, Ok(status) or Err(engine kind or None for inner), attempts, stop)
            type Want = Result<u16, Option<RetryErrorKind>>;
            let cases: Vec<(&ClientWithMiddleware, Method, String, Want, u32, StopReason)> = vec![
                (
                    &plain,
                    Method::GET,
                    server.url("/ok"),
                    Ok(200),
                    1,
                    StopReason::Success,
                ),
                (
                    &plain,
                    Method::GET,
                    server.url("/flaky"),
                    Ok(200),
                    2,
                    StopReason::Success,
                ),
                (
                    &plain,
                    Method::GET,
                    server.url("/missing"),
                    Ok(404),
                    1,
                    StopReason::Fatal,
                ),
                (
                    &plain,
                    Method::GET,
                    server.url("/down"),
                    Ok(503),
                    3,
                    StopReason::MaxRetries,
                ),
                (
                    &plain,
                    Method::POST,
                    refused_url(),
                    Err(None),
                    3,
                    StopReason::MaxRetries,
                ),
                (
                    &timed,
                    Method::GET,
                    silent.url(),
                    Err(Some(RetryErrorKind::AttemptTimeout)),
                    2,
                    StopReason::MaxRetries,
                ),
                (
                    &timed,
                    Method::POST,
                    silent.url(),
                    Err(Some(RetryErrorKind::AttemptTimeout)),
                    1,
                    StopReason::Fatal,
                ),
                (
                    &bounded_client,
                    Method::GET,
                    silent.url(),
                    Err(Some(RetryErrorKind::Deadline)),
                    1,
                    StopReason::Deadline,
                ),
                (
                    &plain,
                    Method::GET,
                    limiting.url("/"),
                    Ok(429),
                    1,
                    StopReason::RetryAfterTooLong,
                ),
                (
                    &plain,
                    Method::GET,
                    limiting.url("/again"),
                    Err(Some(RetryErrorKind::RateLimited)),
                    0,
                    StopReason::RetryAfterTooLong,
                ),
            ];
            for (client, method, url, want, attempts, stop) in cases {
                let what = format!("{method} {url}");
                let (result, extensions) = execute(client, method, &url).await;
                assert_eq!(
                    extensions.get::<CallerTag>(),
                    Some(&CallerTag("caller")),
                    "{what}: the caller's extensions are kept"
                );
                let info = RetryInfo::of(&extensions);
                assert_eq!(
                    (info.attempts(), info.stop_reason()),
                    (attempts, Some(stop)),
                    "{what}"
                );
                // Only a first-try success may leave the info out (it reads as such).
                if !info.is_first_try_success() {
                    assert!(extensions.get::<RetryInfo>().is_some(), "{what}");
                }
                match (result, want) {
                    (Ok(resp), Ok(status)) => {
                        assert_eq!(resp.status(), status, "{what}");
                        assert_eq!(RetryInfo::of(resp.extensions()), info, "{what}");
                    }
                    (Err(e), Err(want)) => {
                        let err = RetryError::of(&e).expect("a RetryError");
                        assert_eq!(err.info(), info, "{what}");
                        match want {
                            Some(kind) => assert_eq!(err.kind(), kind, "{what}"),
                            None => {
                                assert_eq!(err.kind(), RetryErrorKind::Inner, "{what}");
                                let inner = err
                                    .get_inner()
                                    .and_then(|e| e.downcast_ref::<reqwest::Error>());
                                assert!(
                                    inner.is_some_and(reqwest::Error::is_connect),
                                    "{what}: {e:?}"
                                );
                            }
                        }
                    }
                    (result, want) => panic!("{what}: got {result:?}, want {want:?}"),
                }
            }
        })
        .await;
    }

    // ----- client-side pacing -----

    /// A server that lets at most `limit` requests in through any 150 ms (a sliding window,
    /// a little shorter than the client's 200 ms period, so that loopback jitter does not
    /// count as a burst) and answers 429 `Retry-After: 1` past that.
    fn sliding_window(limit: usize) -> impl Fn(&support::Seen) -> Reply {
        let recent: Mutex<Vec<Instant>> = Mutex::default();
        move |seen| {
            let mut recent = recent.lock().unwrap();
            recent.retain(|at| seen.at.duration_since(*at) < ms(150));
            recent.push(seen.at);
            if recent.len() > limit {
                limited_reply("1")
            } else {
                Reply::status(200)
            }
        }
    }

    async fn pacing_spreads_a_burst_so_that_it_meets_no_429<C: Adapter>() {
        let server = Server::start(sliding_window(5)).await;
        let client = C::over(paced(fast().build(), Pacing::new(5, ms(200))));
        let t = std::time::Instant::now();
        let got =
            join_all((0..20).map(|_| client.send(Method::GET, server.url("/v1/calls")))).await;
        let elapsed = t.elapsed();
        for (i, got) in got.iter().enumerate() {
            assert_eq!(got.status(), 200, "request {i}: {got:?}");
            assert_eq!(got.info().attempts(), 1, "request {i}");
        }
        assert_eq!(server.hits("/v1/calls"), 20, "no 429, no retry");
        // 19 intervals of 40 ms.
        assert!(elapsed >= ms(760) && elapsed < ms(1900), "{elapsed:?}");
        let slept = got.iter().map(|g| g.info().slept()).max().unwrap();
        assert!(slept >= ms(700), "the waits are in slept: {slept:?}");
    }

    async fn a_paced_slot_beyond_the_cap_fails_at_once_with_nothing_sent<C: Adapter>() {
        let server = Server::start(|_| Reply::status(200)).await;
        let client = C::over(paced(fast().build(), Pacing::new(1, secs(120))));
        assert_eq!(
            client.send(Method::GET, server.url("/1")).await.status(),
            200
        );
        let t = std::time::Instant::now();
        let got = client.send(Method::POST, server.url("/2")).await;
        assert!(t.elapsed() < ms(200), "{:?}", t.elapsed());
        let (kind, wait) = got.engine();
        assert_eq!(kind, RetryErrorKind::RateLimited);
        let wait = wait.expect("the wait it would have had");
        assert!(wait > secs(119) && wait <= secs(120), "{wait:?}");
        assert_eq!(got.info().attempts(), 0);
        assert_eq!(
            got.info().stop_reason(),
            Some(StopReason::RetryAfterTooLong)
        );
        assert_eq!(server.hits("/2"), 0);
        // The client's own pacing said no, not the API.
        let message = got.message();
        assert!(
            message
                .starts_with("rate limited by client-side pacing: not sent, the next slot is in"),
            "{message}"
        );
        assert!(!message.contains("API"), "{message}");
    }

    /// Pacing 10/s (100 ms apart): `/slow` is held 300 ms by the server while four more
    /// requests go: at the server they arrive 100 ms apart all the same.
    async fn paced_requests_arrive_spaced_behind_a_slow_one<C: Adapter>() {
        let server = Server::start(|seen| match seen.path.as_str() {
            "/slow" => Reply::status(200).after(ms(300)),
            _ => Reply::status(200),
        })
        .await;
        let client = C::over(paced(fast().build(), Pacing::new(10, secs(1))));
        let paths = ["/slow", "/q", "/q", "/q", "/q"];
        let got = join_all(paths.map(|p| client.send(Method::GET, server.url(p)))).await;
        for got in &got {
            assert_eq!(got.status(), 200, "{got:?}");
        }
        assert_spaced(&server.seen(), ms(80));
    }

    /// Consecutive arrivals at the server are at least `gap` apart (an interval less some
    /// loopback jitter).
    #[track_caller]
    fn assert_spaced(seen: &[support::Seen], gap: Duration) {
        let mut at: Vec<_> = seen.iter().map(|s| (s.at, s.path.clone())).collect();
        at.sort();
        for pair in at.windows(2) {
            let apart = pair[1].0 - pair[0].0;
            assert!(
                apart >= gap,
                "{} arrived {apart:?} after {}: {at:?}",
                pair[1].1,
                pair[0].1
            );
        }
    }

    /// Pacing 10/s over a `ConcurrencyLimit(1)` below the retry layer: `/0` goes at once,
    /// `/slow` on its slot at 100 ms holds the only permit ~300 ms, four more requests queue
    /// for it. They take their slots once the permit is theirs, so they arrive 100 ms apart,
    /// not together when it frees.
    #[tokio::test]
    async fn paced_sends_stay_spaced_behind_a_busy_concurrency_limit_tower_hyper_util() {
        bounded(async {
            let server = Server::start(|seen| match seen.path.as_str() {
                "/slow" => Reply::status(200).after(ms(300)),
                _ => Reply::status(200),
            })
            .await;
            let svc = ServiceBuilder::new()
                .layer(paced(fast().build(), Pacing::new(10, secs(1))))
                .layer(ConcurrencyLimitLayer::new(1))
                .service(hyper_client());
            let paths = ["/0", "/slow", "/q", "/q", "/q", "/q"];
            let results = join_all(paths.map(|p| svc.clone().oneshot(get(&server.url(p))))).await;
            for (path, result) in paths.iter().zip(results) {
                assert_eq!(result.unwrap().status(), 200, "{path}");
            }
            let seen = server.seen();
            let slow = seen.iter().find(|s| s.path == "/slow").unwrap().at;
            let first_q = seen.iter().find(|s| s.path == "/q").unwrap().at;
            assert!(first_q - slow >= ms(250), "the queue waited for the permit");
            assert_spaced(&seen, ms(80));
        })
        .await;
    }

    // ----- more origins than the limits keep apart (1024) -----

    /// A reqwest client with the retry middleware whose host `h{i}.test` resolves to
    /// `addr(i)`, for `i` below `n` (one loopback server, `n` origins).
    fn reqwest_client_for_hosts(
        retry: TelEchoRetry,
        n: usize,
        addr: impl Fn(usize) -> SocketAddr,
    ) -> ClientWithMiddleware {
        let mut builder = reqwest::Client::builder().no_proxy();
        for i in 0..n {
            builder = builder.resolve(&format!("h{i}.test"), addr(i));
        }
        ClientBuilder::new(builder.build().unwrap())
            .with(retry)
            .build()
    }

    /// Sends a GET to each of `urls` at once through `client`; the results in order.
    async fn get_all(
        client: &ClientWithMiddleware,
        urls: impl Iterator<Item = String>,
    ) -> Vec<reqwest_middleware::Result<reqwest::Response>> {
        let sent = urls.map(|url| async move { execute(client, Method::GET, &url).await.0 });
        join_all(sent).await
    }

    /// The `RetryError` of a middleware error.
    #[track_caller]
    fn retry_error_of(result: &reqwest_middleware::Result<reqwest::Response>) -> &RetryError {
        match result {
            Err(reqwest_middleware::Error::Middleware(e)) => {
                e.downcast_ref::<RetryError>().expect("a RetryError")
            }
            other => panic!("expected a RetryError, got {other:?}"),
        }
    }

    /// 300 origins (one server under 300 host names) each answer 429 `Retry-After: 3600`,
    /// above the 60 s cap: a second request to each fails at once, never sent, past the
    /// bound of 1024 origins the limits keep apart too. (Past the bound origins share 16
    /// overflow limits: a first request there may be refused by another's 429.)
    #[tokio::test]
    async fn no_origin_is_sent_to_during_its_cooldown_past_the_origin_bound_reqwest_middleware() {
        const ORIGINS: usize = 1100;
        // A thousand origins and more, each a connection: longer than the usual bound.
        bounded_for(secs(30), async {
            let server = Server::start(|seen| match seen.path.as_str() {
                "/limited" => limited_reply("3600"),
                _ => Reply::status(200),
            })
            .await;
            let retry = unbudgeted(fast().max_retries(0).build());
            let client = reqwest_client_for_hosts(retry, ORIGINS, |_| server.addr);
            let port = server.addr.port();
            let url = |i: usize, path: &str| format!("http://h{i}.test:{port}{path}");
            let first = get_all(&client, (0..ORIGINS).map(|i| url(i, "/limited"))).await;
            for (i, result) in first.iter().enumerate() {
                match result {
                    Ok(resp) => assert_eq!(resp.status(), 429, "origin {i}"),
                    Err(_) => assert!(
                        i >= 1024 && retry_error_of(result).is_rate_limited(),
                        "origin {i}: {result:?}"
                    ),
                }
            }
            let again = get_all(&client, (0..ORIGINS).map(|i| url(i, "/again"))).await;
            for (i, result) in again.iter().enumerate() {
                let err = retry_error_of(result);
                assert_eq!(err.kind(), RetryErrorKind::RateLimited, "origin {i}");
                let left = err.cooldown().expect("the cooldown left");
                assert!(
                    left > secs(3590) && left <= secs(3600),
                    "origin {i}: {left:?}"
                );
                assert_eq!(err.info().attempts(), 0, "origin {i}");
            }
            assert_eq!(server.hits("/again"), 0, "none sent during its cooldown");
        })
        .await;
    }

    /// Pacing 1 per 10 s and a 5 s cap: `h0.test` takes its slot, then 1025 other origins
    /// take theirs (they resolve to a closed port: a refused connection is quick, and a
    /// slot is taken all the same): `h0.test`'s next slot is still ~10 s off, beyond the
    /// cap: refused at once by the client's own pacing, not sent.
    #[tokio::test]
    async fn an_origins_pacing_holds_past_the_origin_bound_reqwest_middleware() {
        // A thousand origins and more, each a connection: longer than the usual bound.
        bounded_for(secs(30), async {
            let server = Server::start(|_| Reply::status(200)).await;
            let closed: SocketAddr = refused_url()[7..]
                .split('/')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let retry = paced(
                fast().max_retries(0).max_retry_after(secs(5)).build(),
                Pacing::new(1, secs(10)),
            );
            let client =
                reqwest_client_for_hosts(
                    retry,
                    1026,
                    |i| if i == 0 { server.addr } else { closed },
                );
            let url = |i: usize, path: &str| {
                let port = if i == 0 {
                    server.addr.port()
                } else {
                    closed.port()
                };
                format!("http://h{i}.test:{port}{path}")
            };
            let (result, _) = execute(&client, Method::GET, &url(0, "/1")).await;
            assert_eq!(result.unwrap().status(), 200);
            let others = get_all(&client, (1..1026).map(|i| url(i, "/"))).await;
            assert!(others.iter().all(|r| r.is_err()), "refused connections");
            let (result, _) = execute(&client, Method::GET, &url(0, "/2")).await;
            let err = retry_error_of(&result);
            assert_eq!(err.kind(), RetryErrorKind::RateLimited);
            let wait = err.cooldown().expect("the wait for the slot");
            assert!(wait > secs(8) && wait <= secs(10), "{wait:?}");
            assert!(err.to_string().contains("client-side pacing"), "{err}");
            assert_eq!(server.hits("/2"), 0);
        })
        .await;
    }

    real_socket_tests! {
        pacing_spreads_a_burst_so_that_it_meets_no_429 {
            HyperUtil => pacing_spreads_a_burst_so_that_it_meets_no_429_tower_hyper_util;
            ReqwestMiddleware => pacing_spreads_a_burst_so_that_it_meets_no_429_reqwest_middleware;
        }
        a_paced_slot_beyond_the_cap_fails_at_once_with_nothing_sent {
            HyperUtil => a_paced_slot_beyond_the_cap_fails_at_once_with_nothing_sent_tower_hyper_util;
            ReqwestMiddleware => a_paced_slot_beyond_the_cap_fails_at_once_with_nothing_sent_reqwest_middleware;
        }
        paced_requests_arrive_spaced_behind_a_slow_one {
            HyperUtil => paced_requests_arrive_spaced_behind_a_slow_one_tower_hyper_util;
            ReqwestMiddleware => paced_requests_arrive_spaced_behind_a_slow_one_reqwest_middleware;
        }
    }
}
