//! One attempt of the engine's future: sending it (`send`, `dispatch`), what it came to
//! (`Attempted`), turning that into "retry after N" or "hand it back" (`decide`), and what
//! the caller gets (`finish`).

use std::ops::ControlFlow;
use std::pin::Pin;
use std::time::Duration;

use http::HeaderValue;
use tokio::time::Sleep;
use tower_service::Service;

use super::error::{RetryError, RetryErrorKind};
use super::future::{fail, Ending, Failure, FromFailure, RetryingProj, State};
use super::info::{AttemptNumber, StopReason};
use super::observe::{self, AttemptSpan};
use super::state::{Action, RetryState};
use super::traits::{ResponseParts, RetryRequest, RetryResponse};
use crate::body::peek::peek;
use crate::body::ERROR_BODY_TIMEOUT;
use crate::classify::{ClassifyError, Outcome, RequestView, TransportErrorKind};
use crate::envelope::{ErrorCode, MAX_ENVELOPE_BYTES};

/// The attempt timeout of the attempt in flight: when it fires, and how long it was.
pub(super) struct AttemptTimer {
    pub(super) sleep: Pin<Box<Sleep>>,
    pub(super) after: Duration,
}

/// What one attempt came to: a response (as it will be handed back) with the error code
/// read from its body, an error, or a timeout.
pub(super) enum Attempted<R, E> {
    Response(R, Option<ErrorCode>),
    Error(E),
    TimedOut(Duration),
}

/// Sends `request` as the next attempt: keeps a duplicate in `slot` when a retry could
/// follow, marks the attempt number, opens the attempt's span, and arms the attempt
/// timeout.
pub(super) fn send<S, Req>(
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
pub(super) fn decide<Req, R, E>(
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
        Attempted::Response(response, code) => {
            // The origin's limits learn from every response (adaptive pacing).
            retry.learn(response.status(), response.headers());
            Outcome::Response {
                status: response.status(),
                headers: response.headers(),
                code: code.as_ref(),
            }
        }
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
    let decision = policy.decide(&request, &outcome);
    let can_resend = duplicate.is_some();
    let action = retry.apply(decision, outcome, can_resend);
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
pub(super) fn finish<R, E, F>(retry: &RetryState, attempted: Attempted<R, E>) -> Result<R, F>
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

/// Whether the body of `response` is read for its error code before it is classified: when
/// the classifier wants error codes, this is an error response, and a retry could follow
/// (`copy_kept`: a duplicate of the request is in hand). On the last attempt the code could
/// only name the stop reason: the response is handed back at once.
#[inline]
pub(super) fn wants_code<R: ResponseParts>(
    response: &R,
    copy_kept: bool,
    retry: &RetryState,
) -> bool {
    copy_kept && retry.policy().has_code_rules() && response.status().as_u16() >= 400
}

/// The state that reads the body of `response` for its error code, within
/// `attempt_left` (what is left of the attempt's time) and the error-body bound.
pub(super) fn read_code<R, F>(response: R, attempt_left: Option<Duration>) -> State<F, R>
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

/// A random UUID v4 (from the operating system's randomness), as a header value.
pub(super) fn new_idempotency_key() -> HeaderValue {
    let mut buf = uuid::Uuid::encode_buffer();
    let key = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(key).expect("a hyphenated UUID is a valid header value")
}

/// Sends the request in hand as the next attempt, now that the inner service is ready and
/// the slot has come; `Some` ending instead when the copy's body can no longer be replayed
/// (its recording overflowed, or its source failed, while the retry waited): the caller
/// then gets the outcome it would have replaced.
pub(super) fn dispatch<S, Req, F>(
    this: &mut RetryingProj<'_, S, Req, F>,
) -> Option<Ending<S::Response, F>>
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
