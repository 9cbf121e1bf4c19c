//! The retry engine's future ([`Retrying`]), shared by the tower service and the reqwest
//! middleware, and the tower service's [`ResponseFuture`].

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::attempt::{
    decide, dispatch, finish, new_idempotency_key, read_code, send, wants_code, AttemptTimer,
    Attempted,
};
use super::ending::{cut_at_deadline, deadline_between, past_deadline, refusal, refuse};
use super::error::RetryError;
use super::info::{RetryInfo, StopReason};
use super::observe::{self, AttemptSpan};
use super::state::{Admission, RetryState};
use super::traits::{RetryRequest, RetryResponse};
use crate::body::peek::PeekFuture;
use crate::classify::{is_idempotent_method, ClassifyError};
use crate::envelope::ApiError;
use crate::limits::pacer::{Pace, PaceFuture, Paced};

/// How a logical request failed, as the engine hands it to an adapter.
pub(crate) enum Failure<E> {
    /// The last attempt's own error.
    Inner(E, RetryInfo),
    /// A failure the engine decided: a timeout, the deadline, a rate limit.
    Engine(RetryError),
}

/// The response an adapter hands back for inner responses of type `R`.
pub(crate) type Output<R> = <R as RetryResponse>::Output;

/// How one logical request ends, for inner responses `R`, in the adapter's error type `F`.
pub(super) type Ending<R, F> = Result<Output<R>, F>;

/// The error type an adapter's [`Retrying`] ends in, made from a [`Failure`] where the
/// failure happens: the response of a success is then built where `poll` returns it, not
/// moved through a conversion of the result.
pub(crate) trait FromFailure<E> {
    /// The adapter's error for `failure`.
    fn from_failure(failure: Failure<E>) -> Self;
}

impl<E> FromFailure<E> for Failure<E> {
    #[inline]
    fn from_failure(failure: Failure<E>) -> Self {
        failure
    }
}

/// `Err` of the adapter's error type `F` for `failure`.
#[inline]
pub(super) fn fail<T, E, F: FromFailure<E>>(failure: Failure<E>) -> Result<T, F> {
    Err(F::from_failure(failure))
}

pin_project! {
    /// One logical request: admit, reserve the inner service, take the paced slot,
    /// attempt, classify, wait, until [`RetryState`] says stop.
    ///
    /// It holds the one duplicate of the request that the next attempt will send (made only
    /// when a retry could follow), the inner service instance it polls ready before every
    /// attempt, and the timers. Dropping it cancels cleanly: an attempt in flight is
    /// dropped, and no further attempt is sent.
    ///
    /// An attempt waits for its paced slot *after* the inner service is ready, holding what
    /// `poll_ready` reserved (a `ConcurrencyLimit` permit, a `Buffer` slot): it is sent the
    /// moment its slot comes, so the spacing holds when attempts are sent. A cooldown that
    /// begins meanwhile gives the reservation and the slot back (see `drive`).
    #[project = RetryingProj]
    pub(crate) struct Retrying<S, Req, F>
    where
        S: Service<Req>,
        S::Response: RetryResponse,
    {
        #[pin]
        pub(super) state: State<S::Future, S::Response>,
        pub(super) service: S,
        // The request the next attempt sends: a duplicate, or the original while the first
        // attempt waits to be admitted or for the inner service.
        pub(super) request: Option<Req>,
        pub(super) retry: RetryState,
        // Whether the attempt in flight is safe to resend after a transport error, when no
        // duplicate is kept to tell (`None`: ask the duplicate, only if an error comes).
        pub(super) idempotent: Option<bool>,
        // Fires at the policy's deadline; boxed, and only when a deadline is set.
        pub(super) deadline: Option<Pin<Box<Sleep>>>,
        // The outcome that led to the retry now waiting (boxed: retries only): if the retry
        // is not sent after all (refused, its body no longer replayable), this is what the
        // caller gets. Dropped when the retry is sent.
        pub(super) last: Option<Box<Attempted<Output<S::Response>, S::Error>>>,
        // The span of the attempt in flight (see `observe`), entered around its polls.
        pub(super) span: AttemptSpan,
        // The future resolved: dropping it now is not a cancellation.
        done: bool,
        // The error type it ends in.
        fails: PhantomData<fn() -> F>,
    }

    impl<S, Req, F> PinnedDrop for Retrying<S, Req, F>
    where
        S: Service<Req>,
        S::Response: RetryResponse,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if !*this.done {
                observe::cancelled(this.span, this.retry);
            }
        }
    }
}

pin_project! {
    #[project = StateProj]
    pub(super) enum State<F, R>
    where
        R: RetryResponse,
    {
        // Waiting out a backoff delay or the shared cooldown before the next attempt.
        // (Timers and the body read are boxed: they exist only on the paths that wait, and
        // the future every call moves stays small.)
        Waiting { sleep: Pin<Box<Sleep>> },
        // About to ask whether the next attempt may be sent (the cooldown, the deadline).
        Admitting,
        // Admitted; waiting for the inner service to be ready, then taking the paced slot.
        Reserving,
        // Ready (holding what `poll_ready` reserved), waiting for the attempt's slot under
        // client-side pacing since `since`.
        Pacing { wait: PaceFuture, since: Instant },
        // An attempt is in flight, bounded by the attempt timeout if there is one.
        Called { #[pin] future: F, timer: Option<AttemptTimer> },
        // An error response arrived; reading its body for the error code.
        Peeking { peek: Pin<Box<PeekFuture<R::Body>>>, head: Option<Box<R::Head>> },
        // Refused before an attempt was sent, for `reason`, with the wait that caused it
        // (`Hold`: the origin's cooldown, or this client's own pacing). (The error is made
        // when polled: it is larger than every other state.)
        Refused { reason: StopReason, cooldown: Option<Duration>, hold: Hold },
    }
}

/// What held back a request that was refused before an attempt was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hold {
    /// The origin's cooldown or refusal (a 429 with `Retry-After`), or the deadline.
    Cooldown,
    /// This client's own pacing: the attempt's slot lay too far ahead.
    Pacing,
}

impl<S, Req, F> Retrying<S, Req, F>
where
    S: Service<Req> + Clone,
    S::Response: RetryResponse,
    Req: RetryRequest,
{
    /// Starts one logical request on `service`, which the caller polled ready. The first
    /// attempt is sent at once when it is admitted and its paced slot is now; a slot ahead
    /// is waited for holding the reservation; held back by the shared cooldown, it gives
    /// back the reservation and waits; refused, the future resolves to the error.
    pub(crate) fn new(mut service: S, mut retry: RetryState, mut request: Req) -> Self {
        if let Some(name) = retry.policy().generated_idempotency_header() {
            if !is_idempotent_method(request.method()) && !request.headers().contains_key(name) {
                request
                    .headers_mut()
                    .insert(name.clone(), new_idempotency_key());
            }
        }
        // A deadline too far to represent as an instant is no deadline.
        let mut deadline = retry
            .deadline()
            .and_then(|d| retry.started().checked_add(d))
            .map(|at| Box::pin(tokio::time::sleep_until(at)));
        let mut slot = None;
        let mut idempotent = None;
        let mut span = AttemptSpan::for_request();
        // Admitted as it starts: the clock reading that started the state serves.
        let state = match retry.admit_at(retry.started()) {
            Admission::Send => match retry.pace() {
                Pace::Go => send(
                    &mut service,
                    &mut retry,
                    &mut slot,
                    &mut idempotent,
                    &mut span,
                    request,
                ),
                Pace::Wait(wait) => {
                    // The service is ready: the slot is waited for holding the reservation,
                    // so that the attempt goes the moment its slot comes.
                    slot = Some(request);
                    State::Pacing {
                        wait,
                        since: Instant::now(),
                    }
                }
                Pace::TooLong(wait) => {
                    let reason = retry.stop_reason().unwrap_or(StopReason::RetryAfterTooLong);
                    observe::refused(reason, Some(wait));
                    deadline = None;
                    State::Refused {
                        reason,
                        cooldown: Some(wait),
                        hold: Hold::Pacing,
                    }
                }
            },
            Admission::Wait(wait) => {
                observe::held_back(wait);
                // Give back what `poll_ready` reserved: a request held back holds no
                // capacity of the inner service (a clone of a tower service is unreserved).
                service = service.clone();
                slot = Some(request);
                State::Waiting {
                    sleep: Box::pin(tokio::time::sleep(wait)),
                }
            }
            Admission::Reject { reason, cooldown } => {
                observe::refused(reason, cooldown);
                deadline = None;
                State::Refused {
                    reason,
                    cooldown,
                    hold: Hold::Cooldown,
                }
            }
        };
        Retrying {
            state,
            service,
            request: slot,
            retry,
            idempotent,
            deadline,
            last: None,
            span,
            done: false,
            fails: PhantomData,
        }
    }
}

impl<S, Req, F> Future for Retrying<S, Req, F>
where
    S: Service<Req> + Clone,
    S::Response: RetryResponse,
    S::Error: ClassifyError,
    Req: RetryRequest,
    F: FromFailure<S::Error>,
{
    type Output = Ending<S::Response, F>;

    /// # Panics
    ///
    /// When polled again after it completed (as an `async fn`'s future does), before it
    /// does anything: no attempt is admitted, paced or sent.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        assert!(
            !*this.done,
            "the retry future was polled after it completed"
        );
        let result = ready!(drive(&mut this, cx));
        *this.done = true;
        observe::finished(this.retry.stop_reason(), &result);
        Poll::Ready(result)
    }
}

/// The state machine: admit, reserve, pace, attempt, classify, wait, until the request
/// ends.
// Inlined into `poll`, so that the result is built where `poll` returns it, not moved.
#[inline(always)]
fn drive<S, Req, F>(
    this: &mut RetryingProj<'_, S, Req, F>,
    cx: &mut Context<'_>,
) -> Poll<Ending<S::Response, F>>
where
    S: Service<Req> + Clone,
    S::Response: RetryResponse,
    S::Error: ClassifyError,
    Req: RetryRequest,
    F: FromFailure<S::Error>,
{
    {
        loop {
            let attempted = match this.state.as_mut().project() {
                StateProj::Waiting { sleep } => {
                    ready!(sleep.as_mut().poll(cx));
                    this.state.set(State::Admitting);
                    continue;
                }
                StateProj::Admitting => {
                    match this.retry.admit() {
                        Admission::Send => this.state.set(State::Reserving),
                        Admission::Wait(wait) => {
                            observe::held_back(wait);
                            this.state.set(State::Waiting {
                                sleep: Box::pin(tokio::time::sleep(wait)),
                            });
                        }
                        Admission::Reject { reason, cooldown } => {
                            return Poll::Ready(refuse(this, reason, cooldown, Hold::Cooldown));
                        }
                    }
                    continue;
                }
                StateProj::Reserving => {
                    if past_deadline(this.deadline, cx) {
                        return Poll::Ready(deadline_between(this));
                    }
                    if let Err(error) = ready!(this.service.poll_ready(cx)) {
                        // The inner service broke: its error ends the request.
                        this.retry.give_up(StopReason::ServiceError);
                        observe::stopped_between(this.retry);
                        return Poll::Ready(fail(Failure::Inner(error, this.retry.info())));
                    }
                    // The slot is taken once the service is ready: an attempt that waited
                    // for readiness does not go out together with those that waited too.
                    match this.retry.pace() {
                        Pace::Go => {}
                        Pace::Wait(wait) => {
                            this.state.set(State::Pacing {
                                wait,
                                since: Instant::now(),
                            });
                            continue;
                        }
                        Pace::TooLong(wait) => {
                            let reason = this
                                .retry
                                .stop_reason()
                                .unwrap_or(StopReason::RetryAfterTooLong);
                            return Poll::Ready(refuse(this, reason, Some(wait), Hold::Pacing));
                        }
                    }
                    if let Some(ending) = dispatch(this) {
                        return Poll::Ready(ending);
                    }
                    continue;
                }
                StateProj::Pacing { wait, since } => {
                    if past_deadline(this.deadline, cx) {
                        // The wait so far counts; dropping it gives the slot back now, not
                        // when the caller drops this future.
                        this.retry.paced(since.elapsed());
                        this.state.set(State::Admitting);
                        return Poll::Ready(deadline_between(this));
                    }
                    // A cooldown that began while this attempt waited is asked about before
                    // the wait is polled: the pacer takes the slot only when polled, so a
                    // slot is not taken only to be wasted behind the cooldown.
                    match this.retry.admit() {
                        Admission::Send => {}
                        Admission::Wait(hold) => {
                            this.retry.paced(since.elapsed());
                            observe::held_back(hold);
                            // Gives back the slot's place and what `poll_ready` reserved (a
                            // clone of a tower service is unreserved).
                            *this.service = this.service.clone();
                            this.state.set(State::Waiting {
                                sleep: Box::pin(tokio::time::sleep(hold)),
                            });
                            continue;
                        }
                        Admission::Reject { reason, cooldown } => {
                            this.retry.paced(since.elapsed());
                            this.state.set(State::Admitting);
                            return Poll::Ready(refuse(this, reason, cooldown, Hold::Cooldown));
                        }
                    }
                    let paced = ready!(wait.as_mut().poll(cx));
                    let waited = since.elapsed();
                    if paced != Paced::Free {
                        this.retry.paced(waited);
                        observe::paced(waited);
                    }
                    if let Paced::TooLong(wait) = paced {
                        let reason = this.retry.pace_refused(wait);
                        return Poll::Ready(refuse(this, reason, Some(wait), Hold::Pacing));
                    }
                    if let Some(ending) = dispatch(this) {
                        return Poll::Ready(ending);
                    }
                    continue;
                }
                StateProj::Called { future, timer } => match this.span.in_scope(|| future.poll(cx))
                {
                    Poll::Ready(Ok(response)) => {
                        if wants_code(&response, this.request.is_some(), this.retry) {
                            // The body is read within what is left of the attempt's time.
                            let left = timer.as_ref().map(|t| {
                                t.sleep.deadline().saturating_duration_since(Instant::now())
                            });
                            this.state.set(read_code(response, left));
                            continue;
                        }
                        // Handed back as it is: its body is not read.
                        Attempted::Response(response.into_output(), None)
                    }
                    Poll::Ready(Err(error)) => Attempted::Error(error),
                    Poll::Pending => {
                        if past_deadline(this.deadline, cx) {
                            return Poll::Ready(fail(cut_at_deadline(this)));
                        }
                        let Some(timer) = timer else {
                            return Poll::Pending;
                        };
                        ready!(timer.sleep.as_mut().poll(cx));
                        Attempted::TimedOut(timer.after)
                    }
                },
                StateProj::Peeking { peek, head } => {
                    let peeked = match this.span.in_scope(|| peek.as_mut().poll(cx)) {
                        Poll::Ready(peeked) => peeked,
                        Poll::Pending => {
                            if past_deadline(this.deadline, cx) {
                                return Poll::Ready(fail(cut_at_deadline(this)));
                            }
                            return Poll::Pending;
                        }
                    };
                    let Some(head) = head.take() else {
                        unreachable!("Peeking holds the head until the read ends");
                    };
                    let code = peeked
                        .bytes()
                        .and_then(|body| ApiError::from_json(&body).ok())
                        .map(|envelope| envelope.code().clone());
                    let response = S::Response::from_head(*head, peeked.into_body());
                    Attempted::Response(response, code)
                }
                StateProj::Refused {
                    reason,
                    cooldown,
                    hold,
                } => {
                    let error = refusal(*reason, *cooldown, *hold, this.retry.info());
                    return Poll::Ready(fail(Failure::Engine(error)));
                }
            };
            // The attempt is over: drop its future (and with it the connection it holds)
            // before waiting for the next one.
            this.state.set(State::Admitting);
            match decide(
                this.retry,
                this.span,
                this.request,
                *this.idempotent,
                &attempted,
            ) {
                ControlFlow::Continue(delay) => {
                    *this.last = Some(Box::new(attempted));
                    this.state.set(State::Waiting {
                        sleep: Box::pin(tokio::time::sleep(delay)),
                    });
                }
                ControlFlow::Break(()) => return Poll::Ready(finish(this.retry, attempted)),
            }
        }
    }
}

impl<S, Req, F> fmt::Debug for Retrying<S, Req, F>
where
    S: Service<Req>,
    S::Response: RetryResponse,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retrying")
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}
