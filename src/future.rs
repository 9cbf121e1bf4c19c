//! [`ResponseFuture`]: the retry engine's future, shared by the tower service and the
//! reqwest middleware.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use crate::request::{ClassifyError, RetryRequest, RetryResponse};
use crate::state::{Action, Outcome, RetryState};
use crate::trace;

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
        request: Option<Req>,
        retry: RetryState,
        idempotent: bool,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // An attempt is in flight.
        Called { #[pin] future: F },
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
    /// Sends the first attempt on `service` (which the caller polled ready) and returns the
    /// future driving the rest.
    pub(crate) fn new(mut service: S, retry: RetryState, request: Req) -> Self {
        let idempotent = retry
            .policy()
            .is_idempotent(request.method(), request.headers());
        let duplicate = retry
            .may_retry()
            .then(|| request.try_clone_request())
            .flatten();
        let future = service.call(request);
        ResponseFuture {
            state: State::Called { future },
            service,
            request: duplicate,
            retry,
            idempotent,
        }
    }
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
            match this.state.as_mut().project() {
                StateProj::Called { future } => {
                    let mut result = ready!(future.poll(cx));
                    let duplicate = this.request.take().filter(Req::is_replayable);
                    let outcome = match &result {
                        Ok(response) => Outcome::Response {
                            status: response.status(),
                            headers: response.headers(),
                            code: response.error_code(),
                        },
                        Err(error) => Outcome::Transport {
                            kind: error.transport_error_kind(),
                            idempotent: *this.idempotent,
                        },
                    };
                    let action = this.retry.next(outcome, duplicate.is_some());
                    trace::outcome(this.retry, &outcome, action);
                    match (action, duplicate) {
                        (Action::Retry(delay), Some(duplicate)) => {
                            *this.request = Some(duplicate);
                            this.state.set(State::Sleeping {
                                sleep: tokio::time::sleep(delay),
                            });
                        }
                        _ => {
                            let info = this.retry.info();
                            match &mut result {
                                Ok(response) => {
                                    response.extensions_mut().insert(info);
                                }
                                Err(error) => error.attach_retry_info(info),
                            }
                            return Poll::Ready(result);
                        }
                    }
                }
                StateProj::Sleeping { sleep } => {
                    ready!(sleep.poll(cx));
                    this.state.set(State::Resending);
                }
                StateProj::Resending => {
                    ready!(this.service.poll_ready(cx))?;
                    let Some(request) = this.request.take() else {
                        unreachable!("Resending is entered only with a duplicate in hand");
                    };
                    *this.request = this
                        .retry
                        .may_retry()
                        .then(|| request.try_clone_request())
                        .flatten();
                    let future = this.service.call(request);
                    this.state.set(State::Called { future });
                }
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
