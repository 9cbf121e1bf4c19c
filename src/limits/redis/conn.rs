//! The connection the link calls through, to a standalone Redis (the redis crate's
//! auto-reconnecting `ConnectionManager`) or to a Redis Cluster (feature `redis-cluster`:
//! its `ClusterConnection`, which follows the slots through failovers), and where the
//! subscription connects.
//!
//! In a cluster every key of a scope is in one slot (one hash tag), so each script runs on
//! the node that owns it. Pub/sub is classic: a `PUBLISH` reaches every node of the
//! cluster, so the subscription listens on any one node; each new subscription tries the
//! next node, from the ones given and the ones the cluster names (`CLUSTER NODES`), so a
//! node that failed is left behind.

#[cfg(feature = "redis-cluster")]
use std::sync::Mutex;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, PubSub};
#[cfg(feature = "redis-cluster")]
use redis::ConnectionInfo;
use redis::{Client, Cmd, RedisError, RedisFuture, Value};

use super::builder::ErrorKind;
use super::tls;

/// Where the store's Redis is.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    /// One URL: a standalone Redis.
    Single(String),
    /// The URLs of some of a cluster's nodes.
    #[cfg(feature = "redis-cluster")]
    Cluster(Vec<String>),
}

/// Makes connections to the target.
pub(crate) struct Connector {
    /// The client of the URL, or of the first node given: the subscription's (for a
    /// standalone Redis) and the address `Debug` shows.
    first: Client,
    single: ConnectionManagerConfig,
    #[cfg(feature = "redis-cluster")]
    cluster: Option<Cluster>,
}

#[cfg(feature = "redis-cluster")]
struct Cluster {
    client: redis::cluster::ClusterClient,
    config: redis::cluster::ClusterConfig,
    /// The private CA, if any, for the subscription's node clients.
    root: Option<Vec<u8>>,
    /// Nodes to subscribe on, and the index of the next one to try.
    nodes: Mutex<(Vec<String>, usize)>,
}

/// A connection: cheap to clone, reconnecting by itself.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    #[cfg(feature = "redis-cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Connector {
    /// `connect`: the bound of a connection attempt; `respond`: of each answer.
    pub(crate) fn new(
        target: &Target,
        root: Option<&[u8]>,
        connect: Duration,
        respond: Duration,
    ) -> Result<Connector, ErrorKind> {
        let single = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect))
            .set_response_timeout(Some(respond))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(500));
        match target {
            Target::Single(url) => Ok(Connector {
                first: tls::client(url, root)?,
                single,
                #[cfg(feature = "redis-cluster")]
                cluster: None,
            }),
            #[cfg(feature = "redis-cluster")]
            Target::Cluster(urls) => {
                let Some(first) = urls.first() else {
                    return Err(ErrorKind::NoNodes);
                };
                let mut infos = Vec::with_capacity(urls.len());
                for url in urls {
                    // Each URL is checked as a standalone one would be (TLS, `#insecure`).
                    let client = tls::client(url, root)?;
                    infos.push(client.get_connection_info().clone());
                }
                let builder = redis::cluster::ClusterClientBuilder::new(infos)
                    .connection_timeout(connect)
                    .response_timeout(respond)
                    .retries(2)
                    .min_retry_wait(10)
                    .max_retry_wait(100);
                #[cfg(feature = "redis-tls")]
                let builder = match root {
                    Some(pem) => builder.certs(redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem.to_vec()),
                    }),
                    None => builder,
                };
                let client = builder.build().map_err(ErrorKind::Url)?;
                let config = redis::cluster::ClusterConfig::new()
                    .set_connection_timeout(connect)
                    .set_response_timeout(respond);
                Ok(Connector {
                    first: tls::client(first, root)?,
                    single,
                    cluster: Some(Cluster {
                        client,
                        config,
                        root: root.map(<[u8]>::to_vec),
                        nodes: Mutex::new((urls.clone(), 0)),
                    }),
                })
            }
        }
    }

    /// The client of the URL, or of the first node given.
    pub(crate) fn first(&self) -> &Client {
        &self.first
    }

    /// A new connection that connects when first used (within a tokio runtime).
    pub(crate) fn connect_lazy(&self) -> Result<Conn, RedisError> {
        #[cfg(feature = "redis-cluster")]
        if let Some(cluster) = &self.cluster {
            let conn = cluster
                .client
                .get_pending_async_connection_with_config(cluster.config.clone());
            return Ok(Conn::Cluster(conn));
        }
        let conn =
            ConnectionManager::new_lazy_with_config(self.first.clone(), self.single.clone())?;
        Ok(Conn::Single(conn))
    }

    /// Whether the target is a cluster.
    pub(crate) fn is_cluster(&self) -> bool {
        #[cfg(feature = "redis-cluster")]
        return self.cluster.is_some();
        #[cfg(not(feature = "redis-cluster"))]
        false
    }

    /// A subscription connection: to the Redis, or to the next node of the cluster.
    pub(crate) async fn pubsub(&self) -> Result<PubSub, RedisError> {
        #[cfg(feature = "redis-cluster")]
        if let Some(cluster) = &self.cluster {
            let url = {
                let mut nodes = cluster.nodes.lock().unwrap_or_else(|e| e.into_inner());
                let (list, next) = &mut *nodes;
                *next = next.wrapping_add(1);
                list[*next % list.len()].clone()
            };
            let client = tls::client(&url, cluster.root.as_deref())
                .map_err(|_| RedisError::from((redis::ErrorKind::InvalidClientConfig, "node")))?;
            return client.get_async_pubsub().await;
        }
        self.first.get_async_pubsub().await
    }

    /// Adds the nodes a `CLUSTER NODES` answer names as up to the ones the subscription
    /// tries (the ones given stay first).
    #[cfg(feature = "redis-cluster")]
    pub(crate) fn learn_nodes(&self, cluster_nodes: &str) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let info = self.first.get_connection_info();
        let mut nodes = cluster.nodes.lock().unwrap_or_else(|e| e.into_inner());
        for (host, port) in up_nodes(cluster_nodes) {
            let url = node_url(info, &host, port);
            if !nodes.0.contains(&url) {
                nodes.0.push(url);
            }
        }
    }
}

/// The URL of the node at `host:port`, with the first node's scheme, user and password.
#[cfg(feature = "redis-cluster")]
fn node_url(first: &ConnectionInfo, host: &str, port: u16) -> String {
    let tls = matches!(first.addr(), redis::ConnectionAddr::TcpTls { .. });
    let settings = first.redis_settings();
    let user = settings.username().unwrap_or_default();
    let auth = match settings.password() {
        Some(pw) => format!("{}:{}@", encode(user), encode(pw)),
        None if !user.is_empty() => format!("{}@", encode(user)),
        None => String::new(),
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let scheme = if tls { "rediss" } else { "redis" };
    format!("{scheme}://{auth}{host}:{port}")
}

/// Percent-encodes everything but unreserved characters, for a URL's user information.
#[cfg(feature = "redis-cluster")]
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `host:port` of every node a `CLUSTER NODES` answer shows connected and not failing.
#[cfg(feature = "redis-cluster")]
fn up_nodes(text: &str) -> Vec<(String, u16)> {
    let mut up = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, addr, flags, _, _, _, _, link, ..] = fields[..] else {
            continue;
        };
        if link != "connected"
            || flags
                .split(',')
                .any(|f| matches!(f, "fail" | "fail?" | "handshake" | "noaddr"))
        {
            continue;
        }
        // `ip:port@cport[,hostname]`
        let addr = addr.split(['@', ',']).next().unwrap_or_default();
        let Some((host, port)) = addr.rsplit_once(':') else {
            continue;
        };
        match port.parse::<u16>() {
            Ok(port) if port != 0 && !host.is_empty() => up.push((host.to_owned(), port)),
            _ => {}
        }
    }
    up
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            #[cfg(feature = "redis-cluster")]
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            #[cfg(feature = "redis-cluster")]
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            #[cfg(feature = "redis-cluster")]
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(all(test, feature = "redis-cluster"))]
mod tests {
    use super::*;

    #[test]
    fn only_connected_nodes_that_do_not_fail_are_learned() {
        let text = "\
07c3 127.0.0.1:30004@40004 slave e7d1 0 1426238317239 4 connected
67ed 127.0.0.1:30002@40002,host.example master - 0 1426238316232 2 connected 5461-10922
292f 127.0.0.1:30003@40003 master,fail - 0 1426238318243 3 disconnected 10923-16383
6ec2 127.0.0.1:30005@40005 slave 67ed 0 1426238316232 5 disconnected
824f :0@0 master,noaddr - 0 0 0 disconnected
e7d1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460
";
        assert_eq!(
            up_nodes(text),
            vec![
                ("127.0.0.1".to_owned(), 30004),
                ("127.0.0.1".to_owned(), 30002),
                ("127.0.0.1".to_owned(), 30001),
            ]
        );
    }

    #[test]
    fn a_node_url_keeps_the_scheme_and_the_credentials() {
        let info =
            redis::IntoConnectionInfo::into_connection_info("redis://u:p%40ss@10.0.0.1:7000")
                .unwrap();
        assert_eq!(
            node_url(&info, "127.0.0.1", 7001),
            "redis://u:p%40ss@127.0.0.1:7001"
        );
        assert_eq!(node_url(&info, "::1", 7001), "redis://u:p%40ss@[::1]:7001");
    }
}
