//! How the engine's future ends a request early: refused before an attempt is sent (the
//! cooldown, this client's own pacing), or cut by the deadline (between attempts or
//! during one).

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use tokio::time::Sleep;
use tower_service::Service;

use super::attempt::finish;
use super::error::{RetryError, RetryErrorKind};
use super::future::{fail, Ending, Failure, FromFailure, Hold, RetryingProj, State};
use super::info::{RetryInfo, StopReason};
use super::observe;
use super::state::RetryState;
use super::traits::RetryResponse;

/// The error for a request the engine refused to send.
pub(super) fn refusal(
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

/// The next attempt is not sent (`reason`, with the wait that caused it and what that wait
/// was for): the caller gets the outcome of the last attempt if one is kept (a retry
/// refused), else the refusal.
pub(super) fn refuse<S, Req, F>(
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
pub(super) fn deadline_between<S, Req, F>(
    this: &mut RetryingProj<'_, S, Req, F>,
) -> Ending<S::Response, F>
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
pub(super) fn past_deadline(deadline: &mut Option<Pin<Box<Sleep>>>, cx: &mut Context<'_>) -> bool {
    deadline
        .as_mut()
        .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready())
}

pub(super) fn deadline_error<E>(retry: &RetryState) -> Failure<E> {
    Failure::Engine(RetryError::new(RetryErrorKind::Deadline, retry.info()))
}

/// The deadline passed with an attempt in flight: drops the attempt and ends the request.
pub(super) fn cut_at_deadline<S, Req, F>(
    this: &mut RetryingProj<'_, S, Req, F>,
) -> Failure<S::Error>
where
    S: Service<Req>,
    S::Response: RetryResponse,
{
    this.state.set(State::Admitting);
    this.retry.stop_at_deadline(true);
    observe::attempt_cut(this.span, this.retry);
    deadline_error(this.retry)
}
