//! Issue 22's fault matrix: for each fault of the store, a fleet of 4 replicas under twice
//! the limit's load loses no request and keeps every deadline, and comes back to Redis
//! after the fault. The harness (server, load, measures, table) is in `fault_harness`; each
//! fault has its own scope, proxy or `redis-server`, server and fleet, and they all run at
//! once. The table is printed (`--nocapture`); `docs/faults.md` explains it.
#![cfg(all(feature = "redis", feature = "tower"))]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use telecho_retry::limits::Limits;
use tokio::time::Instant;

use crate::fault_harness::{run, table, Mode, Row, REPLICAS};
use crate::fleet_redis::{direct, redis_addr, redis_url, Scope};
use crate::redis_servers::{free_port, RedisProcess, TempDir};
use crate::support::Proxy;

/// How long the fleet may take to be on Redis before the load starts.
const READY: Duration = Duration::from_secs(5);

fn fleet(mode: Mode, scope: &Scope, url: &str) -> Vec<Limits> {
    (0..REPLICAS)
        .map(|_| mode.builder(scope, url).build().unwrap())
        .collect()
}

/// Runs `inject` against a fleet that reaches the shared Redis through its own proxy.
async fn through_proxy<F: std::future::Future<Output = ()>>(
    fault: &str,
    mode: Mode,
    inject: impl FnOnce(Arc<Proxy>) -> F,
) -> Row {
    let proxy = Arc::new(Proxy::start(redis_addr()).await);
    let scope = Scope::new();
    let fleet = fleet(mode, &scope, &proxy.url());
    run(fault, mode, fleet, READY, inject(Arc::clone(&proxy))).await
}

/// Connections dropped, new ones closed at once, for 3 s.
async fn cut(mode: Mode) -> Row {
    through_proxy("cut", mode, |proxy| async move {
        proxy.down();
        tokio::time::sleep(Duration::from_secs(3)).await;
        proxy.up();
    })
    .await
}

/// Nothing forwarded for 0.8 s, shorter than the subscription's keep-alive (1 s).
async fn stall() -> Row {
    through_proxy("stall", Mode::Paced, |proxy| async move {
        proxy.pause();
        tokio::time::sleep(Duration::from_millis(800)).await;
        proxy.resume();
    })
    .await
}

/// Every reply from Redis 80 ms late (the call timeout is 50 ms), for 3 s.
async fn slow_link() -> Row {
    through_proxy("slow link", Mode::Paced, |proxy| async move {
        proxy.delay(Duration::from_millis(80));
        tokio::time::sleep(Duration::from_secs(3)).await;
        proxy.delay(Duration::ZERO);
    })
    .await
}

/// Nothing forwarded for 4 s, connections left open: past the subscription's keep-alive
/// and its ping's bound, and past the 3 probes that replace the connection.
async fn silent() -> Row {
    through_proxy("silent connection", Mode::Paced, |proxy| async move {
        proxy.pause();
        tokio::time::sleep(Duration::from_secs(4)).await;
        proxy.resume();
    })
    .await
}

/// A `redis-server` of its own on `port`, without persistence.
async fn plain_redis(port: u16, dir: PathBuf, args: &[&str]) -> RedisProcess {
    let mut all = vec!["--port".to_owned(), port.to_string()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = all.iter().map(String::as_str).collect();
        RedisProcess::start(port, &args, &dir)
    })
    .await
    .unwrap()
}

/// Its own `redis-server`, killed (`SIGKILL`), and started again on the same port 2 s
/// later: empty, its scripts gone.
async fn restart() -> Row {
    let dir = TempDir::new("redis-restart");
    let port = free_port();
    let process = Mutex::new(Some(plain_redis(port, dir.path().into(), &[]).await));
    let scope = Scope::new();
    let url = format!("redis://127.0.0.1:{port}");
    let fleet = fleet(Mode::Paced, &scope, &url);
    run("restart, empty", Mode::Paced, fleet, READY, async {
        process.lock().unwrap().take(); // killed on drop
        tokio::time::sleep(Duration::from_secs(2)).await;
        let again = plain_redis(port, dir.path().into(), &[]).await;
        *process.lock().unwrap() = Some(again);
    })
    .await
}

/// Its own `redis-server`, filled with 2 MB, then `maxmemory 1mb` under `noeviction`
/// for 3 s: every write, and so every script the store runs, fails with `OOM`; `PING` and
/// pub/sub still answer.
async fn out_of_memory() -> Row {
    let dir = TempDir::new("redis-oom");
    let port = free_port();
    let _process = plain_redis(
        port,
        dir.path().into(),
        &["--maxmemory-policy", "noeviction"],
    )
    .await;
    let scope = Scope::new();
    let url = format!("redis://127.0.0.1:{port}");
    let fleet = fleet(Mode::Paced, &scope, &url);
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    run("out of memory", Mode::Paced, fleet, READY, async {
        let mut fill = redis::pipe();
        for i in 0..40 {
            fill.cmd("SET")
                .arg(format!("fill:{i}"))
                .arg(vec![b'x'; 50_000])
                .ignore();
        }
        let _: () = fill.query_async(&mut conn).await.unwrap();
        let config = |value: &str| {
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("maxmemory")
                .arg(value)
                .clone()
        };
        let _: () = config("1mb").query_async(&mut conn).await.unwrap();
        let write: redis::RedisResult<()> = redis::cmd("SET")
            .arg("probe")
            .arg(1)
            .query_async(&mut conn)
            .await;
        let refused = write.unwrap_err().to_string();
        assert!(refused.contains("OOM"), "{refused}");
        tokio::time::sleep(Duration::from_secs(3)).await;
        let _: () = config("0").query_async(&mut conn).await.unwrap();
    })
    .await
}

/// One message of the flood: malformed ones, and well-formed ones that name other origins
/// (or the load's origin with no time left).
fn flood_message(n: u64) -> Vec<u8> {
    let other = format!("http://flood-{}.example:80", n % 4096);
    match n % 10 {
        0 => Vec::new(),
        1 => vec![0xff, 0xfe, 0, b' ', 0xc3],
        2 => vec![b'x'; 2048],
        3 => b"flooder cooldown soon http://api.example:80".to_vec(),
        4 => b"flooder cooldown -5 http://api.example:80".to_vec(),
        5 => b"flooder cooldown 0 http://api.example:80".to_vec(),
        6 => format!("flooder cooldown 500 {other}").into_bytes(),
        7 => format!("flooder refusal 500 {other}").into_bytes(),
        8 => format!("flooder rate 0 {other}").into_bytes(),
        _ => b"flooder cooldown 18446744073709551616 http://api.example:80".to_vec(),
    }
}

/// Another client publishes 50 messages every 10 ms (about 5,000 per second) on the
/// scope's channel for 3 s.
async fn flood() -> Row {
    let scope = Scope::new();
    let fleet = fleet(Mode::Paced, &scope, &redis_url());
    let channel = format!("{}events", scope.base());
    let mut conn = direct().await;
    run("pub/sub flood", Mode::Paced, fleet, READY, async {
        let until = Instant::now() + Duration::from_secs(3);
        let (mut n, mut received) = (0, 0);
        while Instant::now() < until {
            let mut burst = redis::pipe();
            for _ in 0..50 {
                burst.cmd("PUBLISH").arg(&channel).arg(flood_message(n));
                n += 1;
            }
            let counts: Vec<i64> = burst.query_async(&mut conn).await.unwrap();
            received += counts.iter().sum::<i64>();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Each message reaches every replica's subscription.
        eprintln!("pub/sub flood: {n} messages in 3 s, {received} deliveries");
    })
    .await
}

/// A cluster of 3 masters with a replica each; the master that owns the scope's slot is
/// killed (`SIGKILL`); the fault ends when a live master owns the slot again.
#[cfg(feature = "redis-cluster")]
async fn failover() -> Option<Row> {
    use crate::redis_servers::RedisCluster;

    let cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3, 1))
        .await
        .unwrap();
    let scope = Scope::new();
    let fleet = (0..REPLICAS)
        .map(|_| {
            Mode::Paced
                .limits()
                .redis_cluster(cluster.urls(), &scope.scope)
                .key_prefix(&scope.prefix)
                .build()
                .unwrap()
        })
        .collect();
    let cluster = Arc::new(Mutex::new(cluster));
    let channel = format!("{}events", scope.base());
    let row = run(
        "failover",
        Mode::Paced,
        fleet,
        Duration::from_secs(10),
        async {
            let cluster = Arc::clone(&cluster);
            tokio::task::spawn_blocking(move || {
                let mut cluster = cluster.lock().unwrap();
                let master = cluster.master_of(&channel);
                cluster.nodes[master].kill();
                let killed = std::time::Instant::now();
                while cluster.owner_of(&channel).is_none() {
                    assert!(killed.elapsed() < Duration::from_secs(15), "no failover");
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
            .await
            .unwrap();
        },
    )
    .await;
    Some(row)
}

#[cfg(not(feature = "redis-cluster"))]
async fn failover() -> Option<Row> {
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fault_matrix() {
    let start = Instant::now();
    let (cut_paced, cut_default, stall, slow, restart, oom, flood, silent, failover) = tokio::join!(
        cut(Mode::Paced),
        cut(Mode::Default),
        stall(),
        slow_link(),
        restart(),
        out_of_memory(),
        flood(),
        silent(),
        failover(),
    );
    let mut rows = vec![
        cut_paced,
        cut_default,
        stall,
        slow,
        restart,
        oom,
        flood,
        silent,
    ];
    rows.extend(failover);
    eprintln!("\n{}", table(&rows));
    for r in &rows {
        eprintln!("{} ({:?}): {}", r.fault, r.mode, r.detail);
    }
    eprintln!(
        "the fault matrix took {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let broken: Vec<String> = rows
        .iter()
        .filter(|r| r.lost > 0 || r.past_deadline > 0)
        .map(|r| {
            format!(
                "{}: {} lost, {} past their deadline; {:?}",
                r.fault,
                r.lost,
                r.past_deadline,
                &r.lost_detail[..r.lost_detail.len().min(5)]
            )
        })
        .collect();
    assert!(broken.is_empty(), "{broken:#?}");
}
