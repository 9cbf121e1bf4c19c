//! The retry engine's future ([`Retrying`]), shared by the tower service and the reqwest
//! middleware, and the tower service's [`ResponseFuture`].

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::HeaderValue;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::error::{RetryError, RetryErrorKind};
use super::info::{AttemptNumber, RetryInfo, StopReason};
use super::observe::{self, AttemptSpan};
use super::state::{Action, Admission, RetryState};
use super::traits::{ResponseParts, RetryRequest, RetryResponse};
use crate::body::peek::{peek, PeekFuture};
use crate::body::ERROR_BODY_TIMEOUT;
use crate::classify::{
    is_idempotent_method, ClassifyError, Outcome, RequestView, TransportErrorKind,
};
use crate::envelope::{ApiError, ErrorCode, MAX_ENVELOPE_BYTES};
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
type Ending<R, F> = Result<Output<R>, F>;

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
fn fail<T, E, F: FromFailure<E>>(failure: Failure<E>) -> Result<T, F> {
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
        state: State<S::Future, S::Response>,
        service: S,
        // The request the next attempt sends: a duplicate, or the original while the first
        // attempt waits to be admitted or for the inner service.
        request: Option<Req>,
        retry: RetryState,
        // Whether the attempt in flight is safe to resend after a transport error, when no
        // duplicate is kept to tell (`None`: ask the duplicate, only if an error comes).
        idempotent: Option<bool>,
        // Fires at the policy's deadline; boxed, and only when a deadline is set.
        deadline: Option<Pin<Box<Sleep>>>,
        // The outcome that led to the retry now waiting (boxed: retries only): if the retry
        // is not sent after all (refused, its body no longer replayable), this is what the
        // caller gets. Dropped when the retry is sent.
        last: Option<Box<Attempted<Output<S::Response>, S::Error>>>,
        // The span of the attempt in flight (see `observe`), entered around its polls.
        span: AttemptSpan,
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
    enum State<F, R>
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

/// The attempt timeout of the attempt in flight: when it fires, and how long it was.
struct AttemptTimer {
    sleep: Pin<Box<Sleep>>,
    after: Duration,
}

/// What one attempt came to: a response (as it will be handed back) with the error code
/// read from its body, an error, or a timeout.
enum Attempted<R, E> {
    Response(R, Option<ErrorCode>),
    Error(E),
    TimedOut(Duration),
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

/// The error for a request the engine refused to send.
fn refusal(
    reason: StopReason,
    cooldown: Option<Duration>,
    hold: Hold,
    info: RetryInfo,
) -> RetryError {
    let kind = match reason {
        StopReason::RetryAfterTooLong => RetryErrorKind::RateLimited,
        _ => RetryErrorKind::Deadline,
    };
    let error = RetryError::new(kind, info).with_cooldown(cooldown);
    match hold {
        Hold::Cooldown => error,
        Hold::Pacing => error.by_pacing(),
    }
}

/// Sends `request` as the next attempt: keeps a duplicate in `slot` when a retry could
/// follow, marks the attempt number, opens the attempt's span, and arms the attempt
/// timeout.
fn send<S, Req>(
    service: &mut S,
    retry: &mut RetryState,
    slot: &mut Option<Req>,
    idempotent: &mut Option<bool>,
    span: &mut AttemptSpan,
    mut request: Req,
) -> State<S::Future, S::Response>
where
    S: Service<Req>,
    S::Response: RetryResponse,
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
        None => Some(retry.is_idempotent(request.method(), request.headers())),
    };
    let number = retry.attempts() + 1;
    // Retries only: the first attempt stays allocation-free (no number means attempt 1).
    if let Some(extensions) = request.extensions_mut() {
        if number > 1 {
            extensions.insert(AttemptNumber(number));
        } else if !extensions.is_empty() {
            // Extensions reused from an earlier request must not make this one a resend.
            extensions.remove::<AttemptNumber>();
        }
    }
    if let Some(name) = retry.policy().attempt_header() {
        request
            .headers_mut()
            .insert(name.clone(), HeaderValue::from(number));
    }
    observe::attempt_started(request.method(), number, span);
    let entered = span.enter();
    let future = service.call(request);
    drop(entered);
    retry.attempt_sent();
    let timer = retry.per_attempt_timeout().map(|after| AttemptTimer {
        sleep: Box::pin(tokio::time::sleep(after)),
        after,
    });
    State::Called { future, timer }
}

/// Feeds an attempt's result to the state: `Continue(delay)` to retry after `delay` (the
/// duplicate is left in `slot`), `Break(())` to hand the result to the caller (the duplicate
/// is dropped). The outcome is looked at where it lies: it is as large as a response, and
/// the success path moves it only to hand it back.
#[inline]
fn decide<Req, R, E>(
    retry: &mut RetryState,
    span: &mut AttemptSpan,
    slot: &mut Option<Req>,
    idempotent: Option<bool>,
    attempted: &Attempted<R, E>,
) -> ControlFlow<(), Duration>
where
    Req: RetryRequest,
    R: ResponseParts,
    E: ClassifyError,
{
    // Idempotency matters to failures only: a success pays nothing for it.
    // Idempotency is read when it matters: for a transport error now; for a response only
    // if the classifier asks (the success path pays nothing for it).
    let known = match (attempted, idempotent, slot.as_ref()) {
        (_, Some(known), _) => Some(known),
        (Attempted::Response(..), None, _) => None,
        (_, None, Some(copy)) => Some(retry.is_idempotent(copy.method(), copy.headers())),
        (_, None, None) => Some(false),
    };
    let idempotent = known.unwrap_or(false);
    // The duplicate is looked at where it lies (it is as large as the request): it stays
    // for a retry and is dropped in place otherwise.
    let duplicate = slot.as_ref().filter(|copy| copy.is_replayable());
    let outcome = match attempted {
        Attempted::Response(response, code) => Outcome::Response {
            status: response.status(),
            headers: response.headers(),
            code: code.as_ref(),
        },
        Attempted::Error(error) => Outcome::Transport {
            kind: error.transport_error_kind(),
            idempotent,
        },
        Attempted::TimedOut(_) => Outcome::Transport {
            kind: TransportErrorKind::Timeout,
            idempotent,
        },
    };
    let policy = retry.policy();
    let request = match duplicate {
        Some(copy) => {
            let view = RequestView::new(copy.method(), copy.headers())
                .with_idempotency_header(policy.idempotency_header());
            let view = match known.or(retry.idempotent_override()) {
                Some(idempotent) => view.with_idempotent(idempotent),
                None => view,
            };
            match copy.extensions() {
                Some(extensions) => view.with_extensions(extensions),
                None => view,
            }
        }
        None => RequestView::detached(idempotent),
    };
    let verdict = policy.verdict(&request, &outcome);
    let can_resend = duplicate.is_some();
    let action = retry.apply(verdict, outcome, can_resend);
    observe::attempt_ended(span, retry, &outcome, action);
    if let (Action::Retry(delay), true) = (action, can_resend) {
        return ControlFlow::Continue(delay);
    }
    *slot = None;
    ControlFlow::Break(())
}

/// What the caller gets for `attempted`, the last outcome, with the [`RetryInfo`].
// Always inlined: the response of a success is then built where `poll` returns it.
#[inline(always)]
fn finish<R, E, F>(retry: &RetryState, attempted: Attempted<R, E>) -> Result<R, F>
where
    F: FromFailure<E>,
    R: ResponseParts,
{
    // A first attempt that succeeded carries no `RetryInfo`: the success path stays
    // allocation-free, and "no `RetryInfo`" reads as "one attempt, success".
    if retry.is_first_try_success() {
        if let Attempted::Response(response, _) = attempted {
            return Ok(response);
        }
    }
    let info = retry.info();
    match attempted {
        Attempted::Response(mut response, _) => {
            response.extensions_mut().insert(info);
            Ok(response)
        }
        Attempted::Error(error) => fail(Failure::Inner(error, info)),
        Attempted::TimedOut(_) if info.stop_reason() == Some(StopReason::Deadline) => fail(
            Failure::Engine(RetryError::new(RetryErrorKind::Deadline, info)),
        ),
        Attempted::TimedOut(after) => fail(Failure::Engine(
            RetryError::new(RetryErrorKind::AttemptTimeout, info).with_timeout(after),
        )),
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

/// Whether the body of `response` is read for its error code before it is classified: when
/// the classifier wants error codes, this is an error response, and a retry could follow
/// (`copy_kept`: a duplicate of the request is in hand). On the last attempt the code could
/// only name the stop reason: the response is handed back at once.
#[inline]
fn wants_code<R: ResponseParts>(response: &R, copy_kept: bool, retry: &RetryState) -> bool {
    copy_kept && retry.policy().has_code_rules() && response.status().as_u16() >= 400
}

/// The state that reads the body of `response` for its error code, within
/// `attempt_left` (what is left of the attempt's time) and the error-body bound.
fn read_code<R, F>(response: R, attempt_left: Option<Duration>) -> State<F, R>
where
    R: RetryResponse,
{
    let (head, body) = response.into_head();
    let within = attempt_left.map_or(ERROR_BODY_TIMEOUT, |left| left.min(ERROR_BODY_TIMEOUT));
    State::Peeking {
        peek: Box::pin(peek(body, MAX_ENVELOPE_BYTES, within)),
        head: Some(Box::new(head)),
    }
}

/// Sends the request in hand as the next attempt, now that the inner service is ready and
/// the slot has come; `Some` ending instead when the copy's body can no longer be replayed
/// (its recording overflowed, or its source failed, while the retry waited): the caller
/// then gets the outcome it would have replaced.
fn dispatch<S, Req, F>(this: &mut RetryingProj<'_, S, Req, F>) -> Option<Ending<S::Response, F>>
where
    S: Service<Req>,
    S::Response: RetryResponse,
    Req: RetryRequest,
    F: FromFailure<S::Error>,
{
    let Some(request) = this.request.take() else {
        unreachable!("an attempt is sent only with a request in hand");
    };
    if let Some(last) = this.last.take() {
        if !request.is_replayable() {
            this.retry.give_up(StopReason::NotReplayable);
            observe::stopped_between(this.retry);
            return Some(finish(this.retry, *last));
        }
    }
    let next = send(
        this.service,
        this.retry,
        this.request,
        this.idempotent,
        this.span,
        request,
    );
    this.state.set(next);
    None
}

/// The next attempt is not sent (`reason`, with the wait that caused it and what that wait
/// was for): the caller gets the outcome of the last attempt if one is kept (a retry
/// refused), else the refusal.
fn refuse<S, Req, F>(
    this: &mut RetryingProj<'_, S, Req, F>,
    reason: StopReason,
    cooldown: Option<Duration>,
    hold: Hold,
) -> Ending<S::Response, F>
where
    S: Service<Req>,
    S::Response: RetryResponse,
    F: FromFailure<S::Error>,
{
    observe::refused(reason, cooldown);
    if let Some(last) = this.last.take() {
        observe::stopped_between(this.retry);
        return finish(this.retry, *last);
    }
    fail(Failure::Engine(refusal(
        reason,
        cooldown,
        hold,
        this.retry.info(),
    )))
}

/// The deadline passed between attempts: the outcome of the last attempt if one is kept,
/// else the deadline error.
fn deadline_between<S, Req, F>(this: &mut RetryingProj<'_, S, Req, F>) -> Ending<S::Response, F>
where
    S: Service<Req>,
    S::Response: RetryResponse,
    F: FromFailure<S::Error>,
{
    this.retry.stop_at_deadline(false);
    observe::stopped_between(this.retry);
    if let Some(last) = this.last.take() {
        return finish(this.retry, *last);
    }
    fail(deadline_error(this.retry))
}

/// Polls the deadline timer, if there is one: `true` once it has fired.
fn past_deadline(deadline: &mut Option<Pin<Box<Sleep>>>, cx: &mut Context<'_>) -> bool {
    deadline
        .as_mut()
        .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready())
}

fn deadline_error<E>(retry: &RetryState) -> Failure<E> {
    Failure::Engine(RetryError::new(RetryErrorKind::Deadline, retry.info()))
}

/// The deadline passed with an attempt in flight: drops the attempt and ends the request.
fn cut_at_deadline<S, Req, F>(this: &mut RetryingProj<'_, S, Req, F>) -> Failure<S::Error>
where
    S: Service<Req>,
    S::Response: RetryResponse,
{
    this.state.set(State::Admitting);
    this.retry.stop_at_deadline(true);
    observe::attempt_cut(this.span, this.retry);
    deadline_error(this.retry)
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

/// A random UUID v4 (from the operating system's randomness), as a header value.
fn new_idempotency_key() -> HeaderValue {
    let mut buf = uuid::Uuid::encode_buffer();
    let key = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(key).expect("a hyphenated UUID is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_uuid_v4_and_distinct() {
        let keys: std::collections::HashSet<_> = (0..1000).map(|_| new_idempotency_key()).collect();
        assert_eq!(keys.len(), 1000);
        for key in &keys {
            let parsed = uuid::Uuid::parse_str(key.to_str().unwrap()).unwrap();
            assert_eq!(parsed.get_version(), Some(uuid::Version::Random));
            assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
        }
    }
}
