//! The Redis the example runs against: one server, plain (`redis://`) or TLS (`rediss://`,
//! feature `redis-tls`), or a cluster (feature `redis-cluster`); whether it answers, which
//! runs it can take, and emptying a run's scope in it.

use std::net::SocketAddr;
use std::time::Duration;

use crate::proxy::RedisUrl;

/// How long the parent's own client may take to connect, and to answer each call (longer
/// than the redis crate's defaults: the children keep the machine busy).
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// A connection of the parent's own to one server.
pub(crate) type Direct = redis::aio::MultiplexedConnection;

/// `REDIS_URL`, taken apart.
#[derive(Clone)]
pub(crate) struct Deployment {
    /// The URLs given: one server's, or some of a cluster's nodes'.
    pub(crate) nodes: Vec<RedisUrl>,
    /// Whether the children use `redis_cluster`: more than one URL was given, or the one
    /// given is a cluster's node.
    pub(crate) cluster: bool,
    /// The parent's own connection to a server (not to a cluster), opened by
    /// [`check`](Self::check) before the runs load the machine, shared by every run.
    direct: Option<Direct>,
}

impl Deployment {
    /// One URL, or a cluster's node URLs separated by commas.
    pub(crate) fn parse(var: &str) -> Result<Deployment, String> {
        let nodes = var
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(RedisUrl::parse)
            .collect::<Result<Vec<RedisUrl>, String>>()?;
        let Some(first) = nodes.first() else {
            return Err("REDIS_URL: no URL".into());
        };
        if nodes.iter().any(|n| n.scheme != first.scheme) {
            return Err(
                "REDIS_URL: a cluster's nodes need one scheme, all redis:// or all rediss://"
                    .into(),
            );
        }
        if first.tls() && !cfg!(feature = "redis-tls") {
            return Err(
                "REDIS_URL: rediss:// needs the example's feature redis-tls (--features redis-tls)"
                    .into(),
            );
        }
        let deployment = Deployment {
            cluster: nodes.len() > 1,
            nodes,
            direct: None,
        };
        deployment.cluster_feature()?;
        Ok(deployment)
    }

    fn cluster_feature(&self) -> Result<(), String> {
        if self.cluster && !cfg!(feature = "redis-cluster") {
            return Err(
                "REDIS_URL: a Redis Cluster needs the example's feature redis-cluster \
                        (--features redis-cluster)"
                    .into(),
            );
        }
        Ok(())
    }

    fn tls(&self) -> bool {
        self.nodes[0].tls()
    }

    /// For printing, passwords hidden.
    pub(crate) fn redacted(&self) -> String {
        let urls: Vec<String> = self.nodes.iter().map(RedisUrl::redacted).collect();
        let urls = urls.join(",");
        if self.cluster {
            format!("cluster {urls}")
        } else {
            urls
        }
    }

    /// Connects to the first URL as a client would (TLS verified against the system's
    /// roots, `SSL_CERT_FILE` included; the password sent) and asks whether it is a
    /// cluster's node; then, for a cluster, connects to the cluster and pings it. The
    /// children's stores need nothing more.
    pub(crate) async fn check(&mut self) -> Result<(), String> {
        let hint = if self.tls() {
            " (a private CA: SSL_CERT_FILE=ca.pem)"
        } else {
            " (start redis-server, or set REDIS_URL)"
        };
        let at = self.redacted();
        let fail = |e: String| format!("no Redis answers at {at}: {e}{hint}");
        let (info, conn) = within(async {
            let mut conn = connect(&self.nodes[0]).await?;
            let info: String = redis::cmd("INFO")
                .arg("cluster")
                .query_async(&mut conn)
                .await?;
            Ok((info, conn))
        })
        .await
        .map_err(fail)?;
        if info.contains("cluster_enabled:1") {
            self.cluster = true;
            self.cluster_feature()?;
        }
        if self.cluster {
            self.ping_cluster().await.map_err(fail)?;
        } else {
            self.direct = Some(conn);
        }
        Ok(())
    }

    #[cfg(feature = "redis-cluster")]
    async fn ping_cluster(&self) -> Result<(), String> {
        let urls: Vec<String> = self.nodes.iter().map(RedisUrl::url).collect();
        within(async {
            let client = redis::cluster::ClusterClientBuilder::new(urls)
                .connection_timeout(CALL_TIMEOUT)
                .response_timeout(CALL_TIMEOUT)
                .build()?;
            let mut conn = client.get_async_connection().await?;
            redis::cmd("PING").query_async::<String>(&mut conn).await
        })
        .await
        .map(drop)
    }

    #[cfg(not(feature = "redis-cluster"))]
    async fn ping_cluster(&self) -> Result<(), String> {
        Err("a cluster needs the feature redis-cluster".into())
    }

    /// Why runs that cut Redis cannot run here, if they cannot. They cut it with a TCP
    /// proxy in front of one address, which the children are given in its place.
    pub(crate) fn why_no_cut(&self) -> Option<String> {
        if self.cluster {
            return Some(
                "they cut Redis with a TCP proxy in front of one address, and a cluster's \
                 clients connect to every node the cluster names"
                    .into(),
            );
        }
        let url = &self.nodes[0];
        if url.tls() && !url.proxy_keeps_host() {
            return Some(format!(
                "they cut Redis with a TCP proxy on 127.0.0.1, and the TLS certificate must \
                 name {}",
                url.host()
            ));
        }
        None
    }

    /// What the children are given: the URLs (through `proxy`, if the run cuts Redis).
    pub(crate) fn for_children(&self, proxy: Option<SocketAddr>) -> String {
        match proxy {
            Some(addr) => self.nodes[0].via(addr).url(),
            None => {
                let urls: Vec<String> = self.nodes.iter().map(RedisUrl::url).collect();
                urls.join(",")
            }
        }
    }

    /// Deletes every key of the run's `scope` (under the crate's default key prefix), as
    /// if Redis had restarted empty for it: `SCAN` and `DEL`, never `FLUSHALL` (others use
    /// this Redis); how many keys it deleted. On the parent's own connection (a new one if
    /// that one fails): connecting while the children start, a TLS handshake can take
    /// seconds on a small machine. One server only: only the runs that cut Redis empty a
    /// scope, and they do not run on a cluster.
    pub(crate) async fn empty_scope(&self, scope: &str) -> Result<usize, String> {
        let emptied = match self.direct.clone() {
            Some(mut conn) => empty(&mut conn, scope).await,
            None => Err("no connection".into()),
        };
        let first = match emptied {
            Ok(n) => return Ok(n),
            Err(e) => e,
        };
        let again = match within(connect(&self.nodes[0])).await {
            Ok(mut conn) => empty(&mut conn, scope).await,
            Err(e) => Err(e),
        };
        again.map_err(|e| format!("emptying scope {scope}: {first}; on a new connection: {e}"))
    }
}

/// [`Deployment::empty_scope`] on `conn`.
async fn empty(conn: &mut Direct, scope: &str) -> Result<usize, String> {
    let pattern = format!("{{telecho-retry:{scope}}}*");
    within(async {
        let mut keys: Vec<String> = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(conn)
                .await?;
            keys.extend(batch);
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        keys.sort();
        keys.dedup();
        for chunk in keys.chunks(100) {
            redis::cmd("DEL").arg(chunk).query_async::<()>(conn).await?;
        }
        Ok(keys.len())
    })
    .await
}

async fn connect(url: &RedisUrl) -> redis::RedisResult<Direct> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CALL_TIMEOUT))
        .set_response_timeout(Some(CALL_TIMEOUT));
    redis::Client::open(url.url())?
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// `call`, within twice [`CALL_TIMEOUT`] (a connection and a call); its error as text.
async fn within<T>(
    call: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, String> {
    let limit = CALL_TIMEOUT * 2;
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {limit:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_become_a_server_or_a_cluster() {
        let one = Deployment::parse("redis://:pw@127.0.0.1:6379/0").unwrap();
        assert!(!one.cluster);
        assert_eq!(one.for_children(None), "redis://:pw@127.0.0.1:6379/0");
        assert_eq!(one.redacted(), "redis://***@127.0.0.1:6379/0");
        assert!(one.why_no_cut().is_none());
        let proxied = one.for_children(Some("127.0.0.1:4000".parse().unwrap()));
        assert_eq!(proxied, "redis://:pw@127.0.0.1:4000/0");
        let listed = Deployment::parse("redis://127.0.0.1:7000, redis://127.0.0.1:7001");
        if cfg!(feature = "redis-cluster") {
            let listed = listed.unwrap();
            assert!(listed.cluster);
            assert!(listed.why_no_cut().is_some());
            assert_eq!(
                listed.for_children(None),
                "redis://127.0.0.1:7000,redis://127.0.0.1:7001"
            );
        } else {
            assert!(matches!(listed, Err(e) if e.contains("redis-cluster")));
        }
        assert!(Deployment::parse("redis://a:1,rediss://b:2").is_err());
        assert!(Deployment::parse(" , ").is_err());
    }

    #[test]
    fn tls_is_cut_through_the_proxy_only_on_loopback() {
        let Ok(local) = Deployment::parse("rediss://:pw@localhost:6380") else {
            assert!(!cfg!(feature = "redis-tls"));
            return;
        };
        assert!(local.why_no_cut().is_none());
        let proxied = local.for_children(Some("127.0.0.1:4000".parse().unwrap()));
        assert_eq!(proxied, "rediss://:pw@localhost:4000");
        let remote = Deployment::parse("rediss://redis.example.com:6380").unwrap();
        assert!(remote.why_no_cut().unwrap().contains("redis.example.com"));
    }
}
