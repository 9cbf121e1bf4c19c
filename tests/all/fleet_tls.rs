//! The fleet's limits through a Redis that accepts TLS only (feature `redis-tls`): each test
//! starts its own `redis-server --tls-port` on loopback, with a password and a CA and
//! server certificate made by the test (rcgen).
#![cfg(all(feature = "redis-tls", feature = "tower", feature = "reqwest"))]

use std::time::Duration;

use telecho_retry::limits::{Limits, Pacing, RedisLimitsBuilder};
use telecho_retry::{RetryPolicy, TelEchoRetry};
use tokio::time::Instant;

use crate::fleet_redis::{each_within, per_sec, replica, Calls, Scope, BOUND};
use crate::fleet_scenarios::{cooldown_relays, on_redis, pacing_holds};
use crate::redis_servers::{subscribed, Certs, TlsRedis};

fn builder(redis: &TlsRedis, scope: &Scope, pacing: Option<Pacing>) -> RedisLimitsBuilder {
    scope
        .builder(&redis.url(), pacing)
        .tls_root_certificate(redis.certs.ca_pem.as_bytes())
}

async fn two_replicas(redis: &TlsRedis, pacing: Option<Pacing>) -> (Limits, Limits) {
    let scope = Scope::new();
    let a = builder(redis, &scope, pacing).build().unwrap();
    let b = builder(redis, &scope, pacing).build().unwrap();
    let channel = format!("{}events", scope.base());
    subscribed(&mut redis.direct().await, &channel, 2).await;
    on_redis(&a, Duration::from_secs(2)).await;
    on_redis(&b, Duration::from_secs(2)).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cooldown_reaches_the_other_replica_through_tls() {
    let redis = TlsRedis::start();
    let (a, b) = two_replicas(&redis, None).await;
    cooldown_relays(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_pacing_holds_its_rate_through_tls() {
    let redis = TlsRedis::start();
    let (a, b) = two_replicas(&redis, per_sec(20)).await;
    pacing_holds(&a, &b, 20).await;
}

#[tokio::test]
async fn a_wrong_ca_builds_falls_back_and_never_reaches_redis() {
    let redis = TlsRedis::start();
    let scope = Scope::new();
    let stranger = Certs::new("another");
    let limits = scope
        .builder(&redis.url(), per_sec(50))
        .tls_root_certificate(stranger.ca_pem)
        .build()
        .expect("a CA that did not sign the server's certificate is no build error");
    let svc = replica(RetryPolicy::default(), &limits, Calls::default(), |_| {
        crate::fleet_redis::ok()
    });
    let start = Instant::now();
    each_within(&svc, 5, BOUND).await;
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(!limits.is_reachable());
    assert!(limits.fallbacks() >= 1, "{}", limits.fallbacks());
    // And it stays so: the prober's handshakes keep failing, without a panic.
    tokio::time::sleep(Duration::from_millis(600)).await;
    each_within(&svc, 2, BOUND).await;
    assert!(!limits.is_reachable());
}

#[tokio::test]
async fn the_system_roots_do_not_trust_a_private_ca() {
    let redis = TlsRedis::start();
    let scope = Scope::new();
    // No root certificate given: the system's roots, which do not hold the test's CA.
    let limits = scope.builder(&redis.url(), per_sec(50)).build().unwrap();
    let svc = replica(RetryPolicy::default(), &limits, Calls::default(), |_| {
        crate::fleet_redis::ok()
    });
    each_within(&svc, 3, BOUND).await;
    assert!(!limits.is_reachable());
}

#[tokio::test]
async fn the_password_of_a_rediss_url_reaches_no_debug_output_or_error() {
    let redis = TlsRedis::start();
    let scope = Scope::new();
    let builder = builder(&redis, &scope, per_sec(50));
    let text = format!("{builder:?}");
    assert!(!text.contains(TlsRedis::PASSWORD), "{text}");
    assert!(!text.contains("BEGIN CERTIFICATE"), "{text}");
    assert!(text.contains("tls_root_certificate: true"), "{text}");
    let limits = builder.build().unwrap();
    on_redis(&limits, Duration::from_secs(2)).await;
    let retry = TelEchoRetry::default().with_limits(limits.clone());
    for text in [
        format!("{limits:?}"),
        format!("{limits:#?}"),
        format!("{retry:?}"),
    ] {
        assert!(!text.contains(TlsRedis::PASSWORD), "{text}");
        assert!(
            text.contains(&format!("127.0.0.1:{}", redis.process.port)),
            "{text}"
        );
    }
    // Errors name what is wrong, never the URL.
    for (url, pem) in [
        (redis.url(), "not a certificate".to_owned()),
        (
            redis.url().replacen("rediss", "redis", 1),
            redis.certs.ca_pem.clone(),
        ),
        (
            format!("{}/#insecure", redis.url()),
            redis.certs.ca_pem.clone(),
        ),
    ] {
        let err = scope
            .builder(&url, None)
            .tls_root_certificate(pem)
            .build()
            .unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains(TlsRedis::PASSWORD), "{text}");
        eprintln!("{err}");
    }
}
