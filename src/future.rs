//! [`ResponseFuture`]: the retry engine's future, shared by the tower service and the
//! reqwest middleware.

use std::fmt;
use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::HeaderValue;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use crate::backoff::Rng;
use crate::request::{ClassifyError, RetryRequest, RetryResponse};
use crate::state::{Action, AttemptNumber, Outcome, RetryState};
use crate::trace;
use crate::transport::{is_idempotent_method, AttemptTimedOut};

pin_project! {
    /// The future of one logical request through [`RetryService`](crate::RetryService):
    /// attempt, classify, sleep, retry, until [`RetryState`] says stop.
    ///
    /// It holds the one duplicate of the request that the next attempt will send (made only
    /// when a retry could follow), the inner service instance it polls ready before every
    /// retry, and a `tokio::time::Sleep`. Dropping it cancels cleanly: an attempt in flight
    /// is dropped, and no further attempt is sent.
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S::Future>,
        service: S,
        // The request the next attempt sends: a duplicate, or the original while the first
        // attempt is held back by the shared cooldown.
        request: Option<Req>,
        retry: RetryState,
        // Whether the attempt in flight is safe to resend after a transport error, when no
        // duplicate is kept to tell (`None`: ask the duplicate, only if an error comes).
        idempotent: Option<bool>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // An attempt is in flight.
        Called { #[pin] future: F },
        // An attempt is in flight, with a timeout.
        Timed { #[pin] future: F, #[pin] sleep: Sleep, after: Duration },
        // Waiting out the delay before the next attempt.
        Sleeping { #[pin] sleep: Sleep },
        // Waiting for the inner service to be ready for the next attempt.
        Resending,
    }
}

impl<S, Req> ResponseFuture<S, Req>
where
    S: Service<Req>,
    Req: RetryRequest,
{
    /// Starts one logical request on `service`, which the caller polled ready: the first
    /// attempt is sent at once unless the shared cooldown holds it back.
    pub(crate) fn new(mut service: S, mut retry: RetryState, mut request: Req) -> Self {
        if let Some(name) = retry.policy().generated_idempotency_header() {
            if !is_idempotent_method(request.method()) && !request.headers().contains_key(name) {
                let key = new_idempotency_key();
                request.headers_mut().insert(name.clone(), key);
            }
        }
        let mut slot = None;
        let mut idempotent = None;
        let state = match retry.hold_back() {
            Some(wait) => {
                slot = Some(request);
                State::Sleeping {
                    sleep: tokio::time::sleep(wait),
                }
            }
            None => send(
                &mut service,
                &mut retry,
                &mut slot,
                &mut idempotent,
                request,
            ),
        };
        ResponseFuture {
            state,
            service,
            request: slot,
            retry,
            idempotent,
        }
    }
}

/// Sends `request` as the next attempt: keeps a duplicate in `slot` when a retry could
/// follow, marks the attempt number, and arms the attempt timeout.
fn send<S, Req>(
    service: &mut S,
    retry: &mut RetryState,
    slot: &mut Option<Req>,
    idempotent: &mut Option<bool>,
    mut request: Req,
) -> State<S::Future>
where
    S: Service<Req>,
    Req: RetryRequest,
{
    *slot = retry
        .may_retry()
        .then(|| request.try_clone_request())
        .flatten();
    // With a duplicate in hand, idempotency is read from it if an error ever comes; without
    // one, read it now, before the request is gone (the stop reason depends on it).
    *idempotent = match slot {
        Some(_) => None,
        None => Some(
            retry
                .policy()
                .is_idempotent(request.method(), request.headers()),
        ),
    };
    let number = retry.attempts() + 1;
    // Retries only: the first attempt stays allocation-free (no number means attempt 1).
    if number > 1 {
        if let Some(extensions) = request.extensions_mut() {
            extensions.insert(AttemptNumber(number));
        }
    }
    if let Some(name) = retry.policy().attempt_header() {
        request
            .headers_mut()
            .insert(name.clone(), HeaderValue::from(number));
    }
    let future = service.call(request);
    retry.attempt_sent();
    match retry.attempt_timeout() {
        Some(after) => State::Timed {
            future,
            sleep: tokio::time::sleep(after),
            after,
        },
        None => State::Called { future },
    }
}

/// Feeds an attempt's result to the state: `Continue(delay)` to retry after `delay` (the
/// duplicate is left in `slot`), `Break(result)` to hand the result to the caller.
fn decide<Req, R, E>(
    retry: &mut RetryState,
    slot: &mut Option<Req>,
    idempotent: Option<bool>,
    mut result: Result<R, E>,
) -> ControlFlow<Result<R, E>, Duration>
where
    Req: RetryRequest,
    R: RetryResponse,
    E: ClassifyError,
{
    let idempotent = || match (idempotent, slot.as_ref()) {
        (Some(known), _) => known,
        (None, Some(copy)) => retry.policy().is_idempotent(copy.method(), copy.headers()),
        (None, None) => false,
    };
    let idempotent = result.is_err() && idempotent();
    let duplicate = slot.take().filter(Req::is_replayable);
    let outcome = match &result {
        Ok(response) => Outcome::Response {
            status: response.status(),
            headers: response.headers(),
            code: response.error_code(),
        },
        Err(error) => Outcome::Transport {
            kind: error.transport_error_kind(),
            idempotent,
        },
    };
    let action = retry.next(outcome, duplicate.is_some());
    trace::outcome(retry, &outcome, action);
    if let (Action::Retry(delay), Some(duplicate)) = (action, duplicate) {
        *slot = Some(duplicate);
        return ControlFlow::Continue(delay);
    }
    let info = retry.info();
    match &mut result {
        // A first attempt that succeeded carries no `RetryInfo`: the success path stays
        // allocation-free, and "no `RetryInfo`" reads as "one attempt, success".
        Ok(_) if info.is_first_try_success() => {}
        Ok(response) => {
            response.extensions_mut().insert(info);
        }
        Err(error) => error.attach_retry_info(info),
    }
    ControlFlow::Break(result)
}

impl<S, Req> Future for ResponseFuture<S, Req>
where
    S: Service<Req>,
    S::Response: RetryResponse,
    S::Error: ClassifyError,
    Req: RetryRequest,
{
    type Output = Result<S::Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let result = match this.state.as_mut().project() {
                StateProj::Called { future } => ready!(future.poll(cx)),
                StateProj::Timed {
                    future,
                    mut sleep,
                    after,
                } => {
                    if let Poll::Ready(result) = future.poll(cx) {
                        result
                    } else {
                        ready!(sleep.as_mut().poll(cx));
                        match S::Error::attempt_timed_out(AttemptTimedOut { after: *after }) {
                            Some(error) => Err(error),
                            None => {
                                // This error type cannot say "timed out": let the attempt run.
                                sleep.reset(Instant::now() + Duration::from_secs(86_400 * 365));
                                continue;
                            }
                        }
                    }
                }
                StateProj::Sleeping { sleep } => {
                    ready!(sleep.poll(cx));
                    this.state.set(State::Resending);
                    continue;
                }
                StateProj::Resending => {
                    if let Some(wait) = this.retry.hold_back() {
                        this.state.set(State::Sleeping {
                            sleep: tokio::time::sleep(wait),
                        });
                        continue;
                    }
                    if let Err(mut error) = ready!(this.service.poll_ready(cx)) {
                        error.attach_retry_info(this.retry.info());
                        return Poll::Ready(Err(error));
                    }
                    let Some(request) = this.request.take() else {
                        unreachable!("Resending is entered only with a request in hand");
                    };
                    let next = send(
                        this.service,
                        this.retry,
                        this.request,
                        this.idempotent,
                        request,
                    );
                    this.state.set(next);
                    continue;
                }
            };
            match decide(this.retry, this.request, *this.idempotent, result) {
                ControlFlow::Continue(delay) => this.state.set(State::Sleeping {
                    sleep: tokio::time::sleep(delay),
                }),
                ControlFlow::Break(result) => return Poll::Ready(result),
            }
        }
    }
}

impl<S, Req> fmt::Debug for ResponseFuture<S, Req>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// A random UUID v4, as a header value.
fn new_idempotency_key() -> HeaderValue {
    let mut rng = Rng::new(Rng::random_seed());
    let hi = rng.next_u64();
    let lo = rng.next_u64();
    let hi = (hi & !0xf000) | 0x4000; // version 4
    let lo = (lo & !(0b11 << 62)) | (0b10 << 62); // RFC 4122 variant
    let s = format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xffff,
        hi & 0xffff,
        lo >> 48,
        lo & 0xffff_ffff_ffff
    );
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static("invalid-key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_uuid_v4_and_distinct() {
        let a = new_idempotency_key();
        let b = new_idempotency_key();
        assert_ne!(a, b);
        let s = a.to_str().unwrap();
        assert_eq!(s.len(), 36);
        let parts: Vec<&str> = s.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'), "version 4: {s}");
        assert!(
            matches!(&parts[3][..1], "8" | "9" | "a" | "b"),
            "variant: {s}"
        );
    }
}
