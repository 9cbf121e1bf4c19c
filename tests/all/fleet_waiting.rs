//! Attempts waiting for a fleet's learned rate (`Pacing::adaptive()` with `.redis(..)`):
//! served in turn, through the tower layer and the reqwest middleware; cancelled ones give
//! up their turn (`Timeout` above the layer); those in line when Redis goes away move to
//! the fallback at once, and back to Redis once it answers again; a rate Redis lost is
//! written back from what the fallback learned, and attempts wait meanwhile; slots dropped
//! on one replica go to another. Real time and the real Redis, as in `fleet_adaptive`.
#![cfg(all(
    feature = "redis",
    feature = "tower",
    feature = "reqwest",
    feature = "tracing"
))]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use telecho_retry::limits::{Limits, Pacing};
use telecho_retry::{RetryPolicy, TelEchoRetry};
use tokio::time::Instant;
use tower::{ServiceBuilder, ServiceExt};

use crate::fleet_adaptive::{fleet_paces_at, fleet_rate, last_interval, replica, replica_paced_at};
use crate::fleet_redis::{eventually, get, redis_addr, redis_url, Scope};
use crate::support::{Proxy, Reply, Server};

/// `tasks` closed loops of `send` for `secs`: the longest one request took.
async fn longest_request<F, Fut>(send: F, tasks: usize, secs: u64) -> Duration
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let end = Instant::now() + Duration::from_secs(secs);
    let loops: Vec<_> = (0..tasks)
        .map(|_| {
            let send = send.clone();
            tokio::spawn(async move {
                let mut longest = Duration::ZERO;
                while Instant::now() < end {
                    let begun = Instant::now();
                    send().await;
                    longest = longest.max(begun.elapsed());
                }
                longest
            })
        })
        .collect();
    let mut longest = Duration::ZERO;
    for l in loops {
        longest = longest.max(l.await.unwrap());
    }
    longest
}

/// One request through a tower replica of `limits` (a `service_fn` that answers 200), to
/// run in closed loops.
fn tower_send(limits: &Limits) -> impl Fn() -> BoxFuture + Clone + Send + 'static {
    let log: Arc<Mutex<Vec<(Instant, bool)>>> = Arc::default();
    let svc = replica(limits, RetryPolicy::default(), &log, Arc::new(|| true));
    move || {
        let svc = svc.clone();
        Box::pin(async move {
            assert_eq!(svc.oneshot(get()).await.unwrap().status(), 200);
        })
    }
}

/// One request through a reqwest middleware client of `limits` to `server`, to run in
/// closed loops.
fn middleware_send(
    server: &Server,
    limits: Limits,
    past: &PastPacing,
) -> impl Fn() -> BoxFuture + Clone + Send + 'static {
    let client = reqwest_middleware::ClientBuilder::new(
        reqwest::Client::builder().no_proxy().build().unwrap(),
    )
    .with(TelEchoRetry::default().with_limits(limits))
    .with(past.clone())
    .build();
    let url = server.url("/v1/calls");
    move || {
        let (client, url) = (client.clone(), url.clone());
        Box::pin(async move {
            assert_eq!(client.get(url).send().await.unwrap().status(), 200);
        })
    }
}

/// Counts the attempts that leave the retry middleware (past pacing): a timeout above may
/// still drop one before the server sees it, its slot used.
#[derive(Clone, Default)]
struct PastPacing(Arc<AtomicUsize>);

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for PastPacing {
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut http::Extensions,
        next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        self.0.fetch_add(1, Ordering::Relaxed);
        next.run(req, extensions).await
    }
}

/// `n` callers of `send` at once: each one's time from now until it was done.
fn at_once<F, Fut>(send: &F, n: usize) -> Vec<tokio::task::JoinHandle<Duration>>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let start = Instant::now();
    (0..n)
        .map(|_| {
            let send = send.clone();
            tokio::spawn(async move {
                send().await;
                start.elapsed()
            })
        })
        .collect()
}

type BoxFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// 12 closed loops at the fleet's 10/s: each request waits behind the 11 others, 1.2 s. An
/// attempt told to ask again later must not lose its turn to newcomers each time it asks
/// (before, one of them waited 4-7 s of a 6 s run).
const IN_TURN: Duration = Duration::from_millis(1600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_waiting_for_the_fleet_rate_are_served_in_turn() {
    let (_scope, limits) = replica_paced_at("http://api.example:80", 10.0).await;
    let send = tower_send(&limits);
    let longest = longest_request(send, 12, 6).await;
    assert!(longest < IN_TURN, "a request took {longest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_waiting_for_the_fleet_rate_are_served_in_turn_through_the_middleware() {
    let server = Server::start(|_| Reply::status(200)).await;
    let (_scope, limits) = replica_paced_at(&format!("http://{}", server.addr), 10.0).await;
    let send = middleware_send(&server, limits, &PastPacing::default());
    let longest = longest_request(send, 12, 6).await;
    assert!(longest < IN_TURN, "a request took {longest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_cancelled_in_turn_do_not_hold_up_the_others() {
    let (_scope, limits) = replica_paced_at("http://api.example:80", 10.0).await;
    let log: Arc<Mutex<Vec<(Instant, bool)>>> = Arc::default();
    // `Timeout` above the layer drops what waits longer than 0.5 s: most of the 12 loops'
    // requests, while they wait their turn or hold a reserved slot.
    let svc = ServiceBuilder::new()
        .timeout(Duration::from_millis(500))
        .service(replica(
            &limits,
            RetryPolicy::default(),
            &log,
            Arc::new(|| true),
        ));
    let timed_out = Arc::new(AtomicUsize::new(0));
    let send = {
        let timed_out = Arc::clone(&timed_out);
        move || {
            let (svc, timed_out) = (svc.clone(), Arc::clone(&timed_out));
            async move {
                if svc.oneshot(get()).await.is_err() {
                    timed_out.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    };
    longest_request(send, 12, 4).await;
    // The sends still go at the fleet's rate, one each 0.1 s: the places and turns of the
    // dropped requests were given up.
    let sent = log.lock().unwrap().len();
    let timed_out = timed_out.load(Ordering::Relaxed);
    assert!(timed_out > 12, "{timed_out} timed out");
    assert!((30..=50).contains(&sent), "{sent} sent in 4 s at 10/s");
    let interval = last_interval(&log, 20);
    assert!(
        (0.08..0.15).contains(&interval),
        "one send every {interval:.3} s"
    );
}

/// A replica of a new scope that reaches Redis through a proxy the test can cut, pacing at
/// `share` of the fleet's rate without Redis.
async fn replica_behind_proxy(share: f64) -> (Proxy, Scope, Limits) {
    let proxy = Proxy::start(redis_addr()).await;
    let scope = Scope::new();
    let limits = scope
        .builder(&format!("redis://{}", proxy.addr), Some(Pacing::adaptive()))
        .fallback_share(share)
        .build()
        .unwrap();
    scope.subscribed(1).await;
    (proxy, scope, limits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_in_line_when_redis_goes_away_move_to_the_fallback_at_once() {
    let (proxy, scope, limits) = replica_behind_proxy(1.0).await;
    fleet_paces_at(&scope, "http://api.example:80", 10.0).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let send = tower_send(&limits);
    // Redis goes away 2 s in, with 11 requests in line, and stays away.
    let cut = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        proxy.down();
        proxy
    });
    let longest = longest_request(send, 12, 5).await;
    let _proxy = cut.await.unwrap();
    assert!(limits.fallbacks() > 0, "paced in process");
    // On the fallback (its share: the whole rate, one replica) the line is as long; one in
    // line at the cut may wait up to twice it (newcomers that went straight to the fallback
    // come before it there), not the 4 s it waited when those in line moved one at a time.
    assert!(longest < 2 * IN_TURN, "a request took {longest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_waiting_on_the_fallback_ask_redis_once_it_answers_again() {
    let (proxy, scope, limits) = replica_behind_proxy(0.2).await;
    fleet_paces_at(&scope, "http://api.example:80", 10.0).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let send = tower_send(&limits);
    for _ in 0..3 {
        send().await;
    }
    // Redis goes away: 8 callers at once line up on the fallback, at 2/s (a fifth of
    // 10/s), where the last would wait 3.5 s. Redis answers again 0.3 s in.
    proxy.down();
    let callers = at_once(&send, 8);
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.up();
    let mut longest = Duration::ZERO;
    for caller in callers {
        longest = longest.max(caller.await.unwrap());
    }
    assert!(limits.fallbacks() > 0, "paced in process");
    // Seen again within a probe (250 ms), the rest go at Redis' 10/s: done by about 1.2 s.
    assert!(
        longest < Duration::from_secs(2),
        "the last took {longest:?}"
    );
}

#[tokio::test]
async fn a_rate_cut_without_redis_is_the_one_written_back() {
    let (proxy, scope, limits) = replica_behind_proxy(0.5).await;
    let origin = "http://api.example:80";
    fleet_paces_at(&scope, origin, 20.0).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let log: Arc<Mutex<Vec<(Instant, bool)>>> = Arc::default();
    let throttle = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let t = Arc::clone(&throttle);
    let svc = replica(
        &limits,
        RetryPolicy::default(),
        &log,
        Arc::new(move || !t.swap(false, Ordering::SeqCst)),
    );
    for _ in 0..3 {
        svc.clone().oneshot(get()).await.unwrap();
    }
    // Alone, at 10/s (half of 20/s), this replica meets a 429 and cuts (to at most 7/s).
    proxy.down();
    throttle.store(true, Ordering::SeqCst);
    assert_eq!(svc.clone().oneshot(get()).await.unwrap().status(), 200);
    // Redis comes back empty: the rate written back is from the fleet's as this replica
    // learned it alone (its cut rate over its share: at most 14/s), not the 20/s it last
    // saw there (as after a cut: at most 0.7 × 14/s, regrowing).
    scope.flush().await;
    proxy.up();
    let until = Instant::now() + Duration::from_secs(5);
    let mut rate = None;
    while rate.is_none() && Instant::now() < until {
        svc.clone().oneshot(get()).await.unwrap();
        rate = fleet_rate(&scope, origin).await;
    }
    assert!(
        limits.fallbacks() > 0,
        "paced in process while Redis was away"
    );
    assert!(rate.is_some_and(|r| (3.0..=10.0).contains(&r)), "{rate:?}");
}

#[tokio::test]
async fn without_redis_a_quota_paces_this_replica_at_its_share() {
    let (proxy, _scope, limits) = replica_behind_proxy(0.5).await;
    // 570 of 6,000 left for the next 60 s (under a tenth: the quota binds): 9/s for the
    // key (less 5 %), shared by the fleet.
    let server = Server::start(|_| {
        Reply::status(200)
            .header("ratelimit-policy", "\"default\";q=6000;w=60")
            .header("ratelimit", "\"default\";r=570;t=60")
    })
    .await;
    let client = reqwest_middleware::ClientBuilder::new(
        reqwest::Client::builder().no_proxy().build().unwrap(),
    )
    .with(TelEchoRetry::default().with_limits(limits.clone()))
    .build();
    proxy.down();
    for _ in 0..3 {
        let resp = client.get(server.url("/v1/calls")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    // The link notices in the background (a heartbeat, or the write of the quota failing).
    eventually("Redis unreachable", Duration::from_secs(2), || {
        !limits.is_reachable()
    })
    .await;
    let start = Instant::now();
    for _ in 0..6 {
        let resp = client.get(server.url("/v1/calls")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    // Half of 9/s: six sends take five intervals of 0.22 s (the whole rate: 0.55 s).
    let took = start.elapsed().as_secs_f64();
    assert!((0.95..2.0).contains(&took), "6 sends in {took:.2} s");
}

/// Redis loses the fleet's rate (10/s) just before 8 callers send at once: how many of
/// them are done within 150 ms, while this replica writes the rate back.
async fn done_at_once_while_written_back<F, Fut>(scope: &Scope, send: F) -> usize
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    for _ in 0..3 {
        send().await;
    }
    scope.flush().await;
    let callers = at_once(&send, 8);
    let mut quick = 0;
    for caller in callers {
        if caller.await.unwrap() < Duration::from_millis(150) {
            quick += 1;
        }
    }
    quick
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_while_a_lost_rate_is_written_back_are_paced() {
    let (scope, limits) = replica_paced_at("http://api.example:80", 10.0).await;
    let quick = done_at_once_while_written_back(&scope, tower_send(&limits)).await;
    // At 10/s, two in 150 ms (three with a slot given late); unpaced, all eight.
    assert!(quick <= 3, "{quick} of 8 done within 150 ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_while_a_lost_rate_is_written_back_are_paced_through_the_middleware() {
    let server = Server::start(|_| Reply::status(200)).await;
    let (scope, limits) = replica_paced_at(&format!("http://{}", server.addr), 10.0).await;
    let send = middleware_send(&server, limits, &PastPacing::default());
    let quick = done_at_once_while_written_back(&scope, send).await;
    assert!(quick <= 3, "{quick} of 8 done within 150 ms");
}

/// Two replicas of one fleet paced at 10/s (`pacing`: a fixed rate, or `None`: one learned
/// for `origin`), each running 6 closed loops of `send_of(its limits)` for 4 s. Under a
/// `Timeout` of 300 ms, most attempts are dropped while they wait: they give back slots
/// that the other replica has often reserved past already.
async fn two_replicas<S, Fut>(pacing: Option<Pacing>, origin: &str, send_of: impl Fn(&Limits) -> S)
where
    S: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let scope = Scope::new();
    let new = || scope.limits(&redis_url(), Some(pacing.unwrap_or_else(Pacing::adaptive)));
    let replicas = [new(), new()];
    if pacing.is_none() {
        scope.subscribed(2).await;
        fleet_paces_at(&scope, origin, 10.0).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let loops: Vec<_> = replicas
        .iter()
        .map(|limits| tokio::spawn(longest_request(send_of(limits), 6, 4)))
        .collect();
    for l in loops {
        l.await.unwrap();
    }
}

/// [`two_replicas`] through the tower layer under `Timeout`: how many attempts were sent.
async fn sent_through_tower(pacing: Option<Pacing>) -> usize {
    let log: Arc<Mutex<Vec<(Instant, bool)>>> = Arc::default();
    two_replicas(pacing, "http://api.example:80", |limits| {
        let svc = ServiceBuilder::new()
            .timeout(Duration::from_millis(300))
            .service(replica(
                limits,
                RetryPolicy::default(),
                &log,
                Arc::new(|| true),
            ));
        move || {
            let svc = svc.clone();
            async move {
                let _ = svc.oneshot(get()).await;
            }
        }
    })
    .await;
    let sent = log.lock().unwrap().len();
    eprintln!("{sent} sent in 4 s at 10/s");
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_dropped_on_one_replica_go_to_the_other_at_a_learned_rate() {
    let sent = sent_through_tower(None).await;
    // 40 at 10/s (and up to 4 more: the first slot, and those in flight at the end). Before,
    // a slot given back after the other replica reserved past it was lost: 4 to 17.
    assert!((32..=44).contains(&sent), "{sent} sent in 4 s at 10/s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_dropped_on_one_replica_go_to_the_other_at_a_fixed_rate() {
    let sent = sent_through_tower(Some(Pacing::new(10, Duration::from_secs(1)))).await;
    assert!((32..=44).contains(&sent), "{sent} sent in 4 s at 10/s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_dropped_on_one_replica_go_to_the_other_through_the_middleware() {
    let server = Server::start(|_| Reply::status(200)).await;
    let origin = format!("http://{}", server.addr);
    let past = PastPacing::default();
    two_replicas(None, &origin, |limits| {
        let send = middleware_send(&server, limits.clone(), &past);
        move || {
            let send = send.clone();
            async move {
                let _ = tokio::time::timeout(Duration::from_millis(300), send()).await;
            }
        }
    })
    .await;
    // Counted as they leave the middleware, as the tower tests count them at the service:
    // under load, the timeout may drop a request on its way to the server after its slot.
    let sent = past.0.load(Ordering::Relaxed);
    assert!(server.hits("/v1/calls") <= sent);
    assert!((32..=44).contains(&sent), "{sent} sent in 4 s at 10/s");
}
