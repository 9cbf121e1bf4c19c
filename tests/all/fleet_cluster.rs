//! The fleet's limits through a Redis Cluster (feature `redis-cluster`): each test starts
//! its own cluster of `redis-server` processes on loopback (`redis-cli --cluster create`),
//! killed when the test ends, failing or not.
#![cfg(all(feature = "redis-cluster", feature = "tower", feature = "reqwest"))]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use telecho_retry::limits::{Limits, Pacing};
use telecho_retry::RetryPolicy;
use tokio::time::Instant;
use tower::ServiceExt;

use crate::fleet_redis::{eventually, get, meet_429, ok, per_sec, replica, Calls, Scope};
use crate::fleet_scenarios::{cooldown_relays, on_redis, pacing_holds};
use crate::redis_servers::RedisCluster;

fn limits(cluster: &RedisCluster, scope: &Scope, pacing: Option<Pacing>) -> Limits {
    let mut limits = Limits::builder().without_retry_budget();
    if let Some(pacing) = pacing {
        limits = limits.pacing(pacing);
    }
    limits
        .redis_cluster(cluster.urls(), &scope.scope)
        .key_prefix(&scope.prefix)
        .call_timeout(Duration::from_millis(50))
        .build()
        .unwrap()
}

async fn two_replicas(cluster: &RedisCluster, pacing: Option<Pacing>) -> (Scope, Limits, Limits) {
    let scope = Scope::new();
    let a = limits(cluster, &scope, pacing);
    let b = limits(cluster, &scope, pacing);
    let channel = format!("{}events", scope.base());
    eventually("both subscribed", Duration::from_secs(5), || {
        cluster.subscribers(&channel) >= 2
    })
    .await;
    on_redis(&a, Duration::from_secs(5)).await;
    on_redis(&b, Duration::from_secs(5)).await;
    (scope, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cooldown_and_fixed_pacing_hold_across_a_cluster() {
    let cluster = RedisCluster::start(3, 0);
    let (_, a, b) = two_replicas(&cluster, per_sec(20)).await;
    cooldown_relays(&a, &b).await;
    pacing_holds(&a, &b, 20).await;
}

/// The master that owns the scope's slot is killed: its replica takes over after the node
/// timeout (1 s). Meanwhile every request succeeds within its bound (paced in process), a
/// cooldown met then reaches the other replica afterwards, and both come back to the
/// cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_of_the_scope_s_master_loses_nothing_and_the_fleet_returns() {
    let test_start = Instant::now();
    let mut cluster = RedisCluster::start(3, 1);
    eprintln!("cluster up after {:?}", test_start.elapsed());
    let (scope, a, b) = two_replicas(&cluster, per_sec(20)).await;

    // Steady load through both replicas, every request bounded.
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Calls::default();
    let mut load = Vec::new();
    for store in [&a, &b] {
        let svc = replica(RetryPolicy::default(), store, Arc::clone(&calls), |_| ok());
        let stop = Arc::clone(&stop);
        load.push(tokio::spawn(async move {
            let mut sent = 0;
            while !stop.load(Ordering::Relaxed) {
                let resp = tokio::time::timeout(Duration::from_secs(1), svc.clone().oneshot(get()))
                    .await
                    .expect("a request within 1 s")
                    .unwrap();
                assert_eq!(resp.status(), 200);
                sent += 1;
            }
            sent
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = (a.fallbacks(), b.fallbacks());

    let master = cluster.master_of(&format!("{}events", scope.base()));
    let killed_at = Instant::now();
    cluster.nodes[master].kill();
    eventually("A falls back", Duration::from_secs(3), || !a.is_reachable()).await;
    // A cooldown met while the slot has no master: held in memory, written once it has one.
    let other: http::Uri = "https://other.example/".parse().unwrap();
    meet_429(&a, "https://other.example/", 8, false).await;

    on_redis(&a, Duration::from_secs(15)).await;
    on_redis(&b, Duration::from_secs(15)).await;
    let back = killed_at.elapsed();
    eventually(
        "B learns the cooldown met during the failover",
        Duration::from_secs(2),
        || b.cooldown_remaining(&other).is_some(),
    )
    .await;
    let during = (a.fallbacks() - before.0, b.fallbacks() - before.1);

    // Back on the cluster: no more fallbacks, and a new cooldown relays at once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let settled = (a.fallbacks(), b.fallbacks());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        (a.fallbacks(), b.fallbacks()),
        settled,
        "paced by Redis again"
    );
    // (On an origin of its own: the load's requests must not wait for it.)
    let third = "https://third.example/";
    meet_429(&b, third, 2, false).await;
    let third: http::Uri = third.parse().unwrap();
    eventually(
        "A learns B's 429 after the failover",
        Duration::from_millis(500),
        || a.cooldown_remaining(&third).is_some(),
    )
    .await;

    stop.store(true, Ordering::Relaxed);
    let mut sent = 0;
    for task in load {
        sent += task.await.unwrap();
    }
    assert!(during.0 + during.1 > 0, "the failover was seen: {during:?}");
    eprintln!(
        "failover: back on the cluster {back:?} after the kill; fallbacks during it {during:?}; \
         {sent} requests, all 200; test {:?}",
        test_start.elapsed()
    );
}
