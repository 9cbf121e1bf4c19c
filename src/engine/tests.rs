//! The engine driven through the tower layer with a limit store of the crate's own (the
//! store traits are crate-private).

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tokio::time::Instant;
use tower::{service_fn, Layer, ServiceExt};

use crate::limits::{LimitStore, Limits, Origin, OriginLimits, Pace, Paced, Withdrawal};
use crate::{RetryErrorKind, RetryPolicy, StopReason, TelEchoRetry};

/// A fleet's store whose every paced slot takes 10 s to come (a slow store, or a busy
/// fleet); nothing else limits.
#[derive(Debug)]
struct SlowPacing;

impl LimitStore for SlowPacing {
    fn origin(&self, _origin: &Origin<'_>) -> Arc<dyn OriginLimits> {
        Arc::new(SlowPacing)
    }

    fn cooldown_remaining(&self, _origin: &Origin<'_>, _now: Instant) -> Option<Duration> {
        None
    }

    fn longest_cooldown(&self, _now: Instant) -> Option<Duration> {
        None
    }
}

impl OriginLimits for SlowPacing {
    fn deposit(&self, _now: Instant) {}

    fn withdraw(&self, _now: Instant) -> Option<Withdrawal> {
        Some(Withdrawal::FREE)
    }

    fn refund(&self, _taken: Withdrawal) {}

    fn cool_down_until(&self, _until: Instant) {}

    fn cooldown_remaining(&self, _now: Instant) -> Option<Duration> {
        None
    }

    fn refuse_until(&self, _until: Instant) {}

    fn refusal_remaining(&self, _now: Instant) -> Option<Duration> {
        None
    }

    fn pace(&self, _max_wait: Duration, _deadline_left: Option<Duration>) -> Pace {
        Pace::Wait(Box::pin(async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Paced::Go
        }))
    }
}

#[tokio::test(start_paused = true)]
async fn a_deadline_reached_while_waiting_for_a_slot_ends_the_request() {
    let sent = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&sent);
    let inner = service_fn(move |_req: Request<Full<Bytes>>| {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, io::Error>(Response::new(Full::new(Bytes::new()))) }
    });
    let policy = RetryPolicy::builder()
        .deadline(Duration::from_secs(2))
        .build();
    let svc = TelEchoRetry::new(policy)
        .with_limits(Limits::from_store(SlowPacing))
        .layer(inner);
    let request = Request::builder()
        .uri("http://api.telecho.example/v1/calls")
        .body(Full::new(Bytes::new()))
        .unwrap();

    let t = Instant::now();
    let err = svc.oneshot(request).await.unwrap_err();
    assert_eq!(t.elapsed(), Duration::from_secs(2), "ended at the deadline");
    assert_eq!(err.kind(), RetryErrorKind::Deadline);
    assert_eq!(err.info().attempts(), 0);
    assert_eq!(
        err.info().slept(),
        Duration::from_secs(2),
        "the wait is in slept"
    );
    assert_eq!(err.stop_reason(), Some(StopReason::Deadline));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(sent.load(Ordering::SeqCst), 0, "never sent");
}
