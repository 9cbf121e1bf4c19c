//! The edges of the Redis limits (issue 20), against the real Redis at `REDIS_URL`, each
//! request behaviour through both adapters: the tower layer over hyper-util's client and
//! the reqwest middleware. Real time (Redis is real); every wait is bounded.
//!
//! This file holds the adapters and the helpers; the tests, numbered by the edges of the
//! issue, are in `slots` (3-5: the round trip's bound, slots given back), `recovery` (6-8:
//! background calls, relearning after a cut, Redis restarted empty) and `bounds` (9-10:
//! what comes from Redis is bounded, the fallback's burst across replicas).
#![cfg(all(feature = "redis", feature = "tower", feature = "reqwest"))]

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use telecho_retry::limits::{Limits, Pacing, MAX_COOLDOWN};
use telecho_retry::{RetryPolicy, TelEchoRetry};
use tokio::time::Instant;
use tower::{ServiceBuilder, ServiceExt};

use crate::fleet_redis::{direct, eventually, redis_addr, redis_url, Scope};
use crate::support::{Proxy, Server};

/// The adapter a request goes through.
#[derive(Clone, Copy, Debug)]
enum Via {
    Hyper,
    Reqwest,
}

const BOTH: [Via; 2] = [Via::Hyper, Via::Reqwest];

impl Via {
    /// Sends `GET url` with `limits` and `policy` (bounded by 10 s); the status, or the
    /// error as text.
    async fn send(self, limits: &Limits, policy: RetryPolicy, url: &str) -> Result<u16, String> {
        let retry = TelEchoRetry::new(policy).with_limits(limits.clone());
        let sent = async {
            match self {
                Via::Hyper => {
                    let svc = ServiceBuilder::new()
                        .layer(retry)
                        .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
                    let request = Request::get(url).body(Full::new(Bytes::new())).unwrap();
                    svc.oneshot(request)
                        .await
                        .map(|r| r.status().as_u16())
                        .map_err(|e| e.to_string())
                }
                Via::Reqwest => {
                    let client = reqwest_middleware::ClientBuilder::new(
                        reqwest::Client::builder().no_proxy().build().unwrap(),
                    )
                    .with(retry)
                    .build();
                    client
                        .get(url)
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .map_err(|e| e.to_string())
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), sent)
            .await
            .unwrap_or_else(|_| panic!("{self:?}: a request took more than 10 s"))
    }
}

/// A server that answers 429 with `Retry-After: 4` on paths starting with `/limited`, 200
/// elsewhere.
async fn server() -> Server {
    Server::limited("4").await
}

/// When the server saw `path`.
fn seen_at(server: &Server, path: &str) -> Instant {
    server
        .seen()
        .iter()
        .find(|s| s.path == path)
        .unwrap_or_else(|| panic!("{path} not seen"))
        .at
}

fn no_retries() -> RetryPolicy {
    RetryPolicy::builder()
        .max_retries(0)
        .retry_after_spread(Duration::ZERO)
        .build()
}

async fn get_tat(key: &str) -> Option<u64> {
    let mut conn = direct().await;
    redis::cmd("GET")
        .arg(key)
        .query_async::<Option<u64>>(&mut conn)
        .await
        .unwrap()
}

/// The pace key of `server`'s origin in `scope`.
fn pace_key(scope: &Scope, server: &Server) -> String {
    format!("{}pace:http://{}", scope.base(), server.addr)
}

mod bounds;
mod recovery;
mod slots;
