//! A limit store of the user's own behind `SharedLimits::from_store`: the engine reads its
//! refusals and cooldowns, treats "zero left" as no wait, and `SharedLimits` reports a
//! refusal as time left.
#![cfg(feature = "tower")]

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use telecho_retry::limits::{LimitStore, Origin, OriginLimits, SharedLimits};
use telecho_retry::{RetryErrorKind, RetryPolicy, TelEchoRetry};
use tokio::time::Instant;
use tower::{service_fn, ServiceBuilder, ServiceExt};

/// One set of limits for every origin: a refusal or a cooldown fixed at creation.
#[derive(Debug)]
struct Fixed {
    refusal: Option<Duration>,
    cooldown: Option<Duration>,
}

impl OriginLimits for Fixed {
    fn deposit(&self, _now: Instant) {}
    fn withdraw(&self) -> bool {
        true
    }
    fn refund(&self) {}
    fn cool_down_until(&self, _until: Instant) {}
    fn cooldown_remaining(&self, _now: Instant) -> Option<Duration> {
        self.cooldown
    }
    fn refuse_until(&self, _until: Instant) {}
    fn refusal_remaining(&self, _now: Instant) -> Option<Duration> {
        self.refusal
    }
}

#[derive(Debug)]
struct Store(Arc<Fixed>);

impl LimitStore for Store {
    fn origin(&self, _origin: &Origin<'_>) -> Arc<dyn OriginLimits> {
        Arc::clone(&self.0) as Arc<dyn OriginLimits>
    }
}

fn client(
    store: Store,
    calls: Arc<AtomicUsize>,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<telecho_retry::ResponseBody<Full<Bytes>>>,
    Error = telecho_retry::RetryError,
> {
    let inner = service_fn(move |_req: Request<Full<Bytes>>| {
        calls.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))) }
    });
    ServiceBuilder::new()
        .layer(
            TelEchoRetry::new(RetryPolicy::default()).with_limits(SharedLimits::from_store(store)),
        )
        .service(inner)
}

fn get() -> Request<Full<Bytes>> {
    Request::get("http://api.example/v1/agents")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_custom_stores_refusal_fails_requests_at_once_and_counts_as_time_left() {
    let fixed = Fixed {
        refusal: Some(Duration::from_secs(3600)),
        cooldown: None,
    };
    let limits = SharedLimits::from_store(Store(Arc::new(fixed)));
    let uri: http::Uri = "http://api.example/".parse().unwrap();
    assert_eq!(
        limits.cooldown_remaining(&Origin::of_uri(&uri)),
        Some(Duration::from_secs(3600)),
        "the default LimitStore::cooldown_remaining reports refusals too"
    );
    let calls = Arc::new(AtomicUsize::new(0));
    let store = Store(Arc::new(Fixed {
        refusal: Some(Duration::from_secs(3600)),
        cooldown: None,
    }));
    let err = client(store, Arc::clone(&calls))
        .oneshot(get())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), RetryErrorKind::RateLimited);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn zero_left_from_a_store_is_no_wait() {
    let calls = Arc::new(AtomicUsize::new(0));
    let store = Store(Arc::new(Fixed {
        refusal: Some(Duration::ZERO),
        cooldown: Some(Duration::ZERO),
    }));
    let start = Instant::now();
    let resp = client(store, Arc::clone(&calls))
        .oneshot(get())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
