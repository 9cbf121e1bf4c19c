//! What the tower-path benchmarks share: the request a TelEcho client sends, the minimal
//! `tower::retry` policies we compare with (without and with tower's retry budget), the
//! inner service, and ways to call a service that is ready at once (reused, or cloned per
//! call with `oneshot`).
#![allow(dead_code)] // each bench uses its own subset

use std::convert::Infallible;
use std::fmt::Debug;
use std::future::Future;
use std::future::{ready, Ready};
use std::hint::black_box;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use tower::retry::budget::{Budget, TpsBudget};
use tower::retry::Policy;
use tower::{service_fn, Service, ServiceExt};

pub(crate) type Req = Request<Full<Bytes>>;
pub(crate) type Resp = Response<Full<Bytes>>;

/// A realistic request: method, URI, eight headers including `Authorization`, 1 KiB body.
pub(crate) fn request(i: usize) -> Req {
    let mut body = Vec::with_capacity(1024);
    body.extend_from_slice(b"{\"to\":\"+15551234567\",\"from\":\"+15557654321\",\"note\":\"");
    while body.len() < 1022 {
        body.push(b'a' + (body.len() % 26) as u8);
    }
    body.extend_from_slice(b"\"}");
    let token = format!("Bearer tk_live_{:032x}", 0x5eed_u128 * (i as u128 + 1));
    let request_id = format!("{:08x}-e88f-11ee-a506-0242ac120002", i);
    Request::builder()
        .method("POST")
        .uri("https://api.telecho.example/v1/calls?dry_run=false")
        .header("host", "api.telecho.example")
        .header("authorization", HeaderValue::try_from(token).unwrap())
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header("user-agent", "telecho-client/0.1.0")
        .header("x-request-id", HeaderValue::try_from(request_id).unwrap())
        .header("accept-encoding", "identity")
        .header("content-length", body.len())
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// What a minimal `tower::retry::Policy` has to do to copy a request.
pub(crate) fn copy_request(req: &Req) -> Req {
    let mut copy = Request::new(req.body().clone());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    *copy.extensions_mut() = req.extensions().clone();
    copy
}

/// The smallest honest `tower::retry::Policy`: copy the request for every attempt, retry a
/// 5xx at once, at most `left` times.
#[derive(Clone, Copy)]
pub(crate) struct MinimalPolicy {
    pub(crate) left: u32,
}

impl Policy<Req, Resp, Infallible> for MinimalPolicy {
    type Future = Ready<()>;

    fn retry(
        &mut self,
        _req: &mut Req,
        result: &mut Result<Resp, Infallible>,
    ) -> Option<Ready<()>> {
        match result {
            Ok(resp) if resp.status().is_server_error() && self.left > 0 => {
                self.left -= 1;
                Some(ready(()))
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(copy_request(req))
    }
}

/// [`MinimalPolicy`] with tower's own retry budget, the equal-work peer of our default
/// (whose budget is the same: 20 % extra load and 10 retries a second over 10 s): a retry
/// withdraws from the budget, a request that ends deposits into it, as in the example of
/// `tower::retry::budget`. The budget is shared by every clone of the policy.
#[derive(Clone)]
pub(crate) struct BudgetPolicy {
    pub(crate) left: u32,
    pub(crate) budget: Arc<TpsBudget>,
}

impl BudgetPolicy {
    /// At most 5 retries, within `TpsBudget::default()`.
    pub(crate) fn new() -> Self {
        BudgetPolicy {
            left: 5,
            budget: Arc::new(TpsBudget::default()),
        }
    }
}

impl Policy<Req, Resp, Infallible> for BudgetPolicy {
    type Future = Ready<()>;

    fn retry(
        &mut self,
        _req: &mut Req,
        result: &mut Result<Resp, Infallible>,
    ) -> Option<Ready<()>> {
        match result {
            Ok(resp) if resp.status().is_server_error() && self.left > 0 => {
                if !self.budget.withdraw() {
                    return None;
                }
                self.left -= 1;
                Some(ready(()))
            }
            _ => {
                self.budget.deposit();
                None
            }
        }
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(copy_request(req))
    }
}

/// The inner service every variant wraps: answers 200 with a small JSON body.
pub(crate) fn inner() -> impl Service<Req, Response = Resp, Error = Infallible, Future: Send> + Clone
{
    service_fn(|req: Req| {
        black_box(&req);
        async {
            let mut resp = Response::new(Full::new(Bytes::from_static(b"{\"id\":\"call_123\"}")));
            *resp.status_mut() = StatusCode::OK;
            Ok::<_, Infallible>(resp)
        }
    })
}

/// Polls `svc` ready (every service here is ready at once) and calls it. The future owns
/// everything it needs, so criterion can await it outside the closure.
pub(crate) fn call_now<S>(svc: &mut S, req: Req) -> S::Future
where
    S: Service<Req>,
    S::Error: Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => svc.call(req),
        other => panic!("service not ready: {other:?}"),
    }
}

/// Calls `svc` and polls the future once: every service here answers at once, so one poll
/// finishes the call (no runtime needed).
pub(crate) fn call_to_end<S>(svc: &mut S, req: Req) -> S::Response
where
    S: Service<Req>,
    S::Error: Debug,
{
    poll_once(call_now(svc, req))
}

/// What a caller that keeps one service does per call: clones it and sends `req` through
/// the clone with `oneshot` (ready, then call), polling the future once as
/// [`call_to_end`] does.
pub(crate) fn oneshot_to_end<S>(svc: &S, req: Req) -> S::Response
where
    S: Service<Req> + Clone,
    S::Error: Debug,
{
    poll_once(svc.clone().oneshot(req))
}

/// Polls `fut` once, which must finish it.
fn poll_once<T, E: Debug>(fut: impl Future<Output = Result<T, E>>) -> T {
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(resp)) => resp,
        Poll::Ready(Err(e)) => panic!("call failed: {e:?}"),
        Poll::Pending => panic!("the call did not finish in one poll"),
    }
}

/// What [`paired_rounds`] measured: the median of A's and of B's times over the rounds, and
/// the rounds' time ratios B / A, sorted.
pub(crate) struct Paired {
    pub(crate) a: std::time::Duration,
    pub(crate) b: std::time::Duration,
    pub(crate) ratios: Vec<f64>,
}

impl Paired {
    /// The ratio at `q` (0 the least, 0.5 the median, 1 the greatest).
    pub(crate) fn ratio_at(&self, q: f64) -> f64 {
        self.ratios[((self.ratios.len() - 1) as f64 * q).round() as usize]
    }
}

/// Paired rounds: criterion times one variant for seconds and then the next, and on a
/// shared machine the speed drifts between them; here each of `rounds` rounds times a batch
/// of A (`a`) and of B (`b`) back to back, B first every other round, after one warm-up
/// batch of each. Each closure runs one batch and returns its time.
pub(crate) fn paired_rounds(
    rounds: usize,
    mut a: impl FnMut() -> std::time::Duration,
    mut b: impl FnMut() -> std::time::Duration,
) -> Paired {
    a();
    b();
    let (mut ta, mut tb, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (x, y) = if round % 2 == 0 {
            let x = a();
            (x, b())
        } else {
            let y = b();
            (a(), y)
        };
        ta.push(x);
        tb.push(y);
        ratios.push(y.as_secs_f64() / x.as_secs_f64());
    }
    ta.sort();
    tb.sort();
    ratios.sort_by(|x, y| x.total_cmp(y));
    Paired {
        a: ta[rounds / 2],
        b: tb[rounds / 2],
        ratios,
    }
}
