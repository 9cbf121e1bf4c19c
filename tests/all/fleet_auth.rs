//! A Redis that refuses the credentials: requests go on in process, and the log says why
//! (not "unreachable"), without the password.
#![cfg(all(feature = "redis", feature = "tower", feature = "tracing"))]

use std::time::Duration;

use telecho_retry::limits::{Limits, Pacing};
use telecho_retry::{RetryPolicy, TelEchoRetry};
use tower::{service_fn, ServiceBuilder, ServiceExt};

use crate::fleet_redis::{get, ok};
use crate::observe_support::Capture;
use crate::redis_servers::{free_port, RedisProcess, TempDir};

#[tokio::test]
async fn a_wrong_password_is_logged_as_such_and_requests_go_on() {
    let capture = Capture::default();
    let _guard = capture.install();
    let dir = TempDir::new("auth");
    let port = free_port();
    let _redis = RedisProcess::start(
        port,
        &["--port", &port.to_string(), "--requirepass", "right-one"],
        dir.path(),
    );
    let limits = Limits::builder()
        .pacing(Pacing::new(100, Duration::from_secs(1)))
        .redis(format!("redis://:wrong-one@127.0.0.1:{port}"), "auth-test")
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(TelEchoRetry::new(RetryPolicy::default()).with_limits(limits.clone()))
        .service(service_fn(|_req| async {
            Ok::<_, std::convert::Infallible>(ok())
        }));
    for _ in 0..3 {
        let resp = tokio::time::timeout(Duration::from_secs(2), svc.clone().oneshot(get()))
            .await
            .expect("bounded")
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert!(!limits.is_reachable());
    let text = capture.get().all_text();
    assert!(text.contains("authentication failed"), "{text}");
    assert!(!text.contains("wrong-one"), "the password reached the log");
}
