//! Redis servers a test starts for itself on loopback (`redis-server` on PATH): a plain one
//! (the fault matrix kills and restarts it, or fills its memory), a TLS one with
//! certificates the test makes, a cluster. Each process is killed, and its folder removed,
//! when its guard drops, a failing test included.
#![cfg(feature = "redis")]
#![allow(dead_code)] // each test module uses its own subset

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A folder of its own under the system's temporary folder, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(what: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("telecho-{what}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `contents` to `name` in the folder; returns its path as a string.
    pub(crate) fn write(&self, name: &str, contents: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_str().unwrap().to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port nobody listened on a moment ago.
pub(crate) fn free_port() -> u16 {
    crate::support::closed_addr().port()
}

/// One `redis-server` process, killed on drop.
pub(crate) struct RedisProcess {
    pub(crate) child: Option<Child>,
    pub(crate) port: u16,
}

impl RedisProcess {
    /// Starts `redis-server` on loopback, listening on `port` (TCP or TLS, as `args` say),
    /// without persistence; waits until the port accepts connections (at most 5 s).
    pub(crate) fn start(port: u16, args: &[&str], dir: &Path) -> RedisProcess {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        let mut process = RedisProcess {
            child: Some(child),
            port,
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let start = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
            if let Some(status) = process.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("redis-server {args:?} exited: {status}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "redis-server on {port} does not listen"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        process
    }

    /// Kills the process now (as a crash would).
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

// ===== TLS =====

/// A CA, and a server certificate it signed for `127.0.0.1` and `localhost`.
#[cfg(feature = "redis-tls")]
pub(crate) struct Certs {
    pub(crate) ca_pem: String,
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
}

#[cfg(feature = "redis-tls")]
impl Certs {
    pub(crate) fn new(name: &str) -> Certs {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

        let mut ca = CertificateParams::new(Vec::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);

        let mut server =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        server
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let key = KeyPair::generate().unwrap();
        let cert = server.signed_by(&key, &issuer).unwrap();
        Certs {
            ca_pem: ca_cert.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// A `redis-server` that accepts TLS only, on a loopback port, with a password.
#[cfg(feature = "redis-tls")]
pub(crate) struct TlsRedis {
    pub(crate) certs: Certs,
    pub(crate) process: RedisProcess,
    _dir: TempDir,
}

#[cfg(feature = "redis-tls")]
impl TlsRedis {
    pub(crate) const PASSWORD: &'static str = "s3cret-tls-pw";

    pub(crate) fn start() -> TlsRedis {
        let dir = TempDir::new("redis-tls");
        let certs = Certs::new("redis-tls");
        let ca = dir.write("ca.pem", &certs.ca_pem);
        let cert = dir.write("server.pem", &certs.cert_pem);
        let key = dir.write("server.key", &certs.key_pem);
        let port = free_port();
        let tls_port = port.to_string();
        let process = RedisProcess::start(
            port,
            &[
                "--port",
                "0",
                "--tls-port",
                &tls_port,
                "--tls-cert-file",
                &cert,
                "--tls-key-file",
                &key,
                "--tls-ca-cert-file",
                &ca,
                "--tls-auth-clients",
                "no",
                "--requirepass",
                Self::PASSWORD,
            ],
            dir.path(),
        );
        TlsRedis {
            certs,
            process,
            _dir: dir,
        }
    }

    /// `rediss://:<password>@127.0.0.1:<port>`.
    pub(crate) fn url(&self) -> String {
        format!(
            "rediss://:{}@127.0.0.1:{}",
            Self::PASSWORD,
            self.process.port
        )
    }

    /// A direct connection, trusting the test's CA.
    pub(crate) async fn direct(&self) -> redis::aio::MultiplexedConnection {
        let certs = redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(self.certs.ca_pem.clone().into_bytes()),
        };
        redis::Client::build_with_tls(self.url(), certs)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

/// Waits until `n` subscribers listen on `channel` on the Redis behind `conn` (at most 5 s).
pub(crate) async fn subscribed(conn: &mut impl redis::aio::ConnectionLike, channel: &str, n: i64) {
    let start = Instant::now();
    loop {
        let (_, count): (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query_async(conn)
            .await
            .unwrap();
        if count >= n {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "no subscription");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ===== Cluster =====

/// `redis-cli -p <port> <args>` on loopback; its output, or `None` if it failed.
#[cfg(feature = "redis-cluster")]
pub(crate) fn cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A Redis Cluster on loopback: `masters` masters, each with `replicas` replicas, a node
/// timeout of 1 s (a failover takes a few seconds). Killed on drop.
#[cfg(feature = "redis-cluster")]
pub(crate) struct RedisCluster {
    pub(crate) nodes: Vec<RedisProcess>,
    masters: usize,
    _dir: TempDir,
}

#[cfg(feature = "redis-cluster")]
impl RedisCluster {
    pub(crate) fn start(masters: usize, replicas: usize) -> RedisCluster {
        let dir = TempDir::new("redis-cluster");
        let mut nodes = Vec::new();
        for _ in 0..masters * (1 + replicas) {
            let port = free_port();
            // The bus port is its own free port: the default, port + 10000, may not exist.
            let bus = free_port().to_string();
            let conf = format!("nodes-{port}.conf");
            let port_arg = port.to_string();
            nodes.push(RedisProcess::start(
                port,
                &[
                    "--port",
                    &port_arg,
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &conf,
                    "--cluster-port",
                    &bus,
                    "--cluster-node-timeout",
                    "1000",
                    // A replica syncs at once (the default waits 5 s for more replicas): one
                    // that never synced cannot take over.
                    "--repl-diskless-sync-delay",
                    "0",
                ],
                dir.path(),
            ));
        }
        let cluster = RedisCluster {
            nodes,
            masters,
            _dir: dir,
        };
        let addrs: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addrs.iter().map(String::as_str));
        let replicas_arg = replicas.to_string();
        args.extend(["--cluster-replicas", &replicas_arg, "--cluster-yes"]);
        cli(cluster.nodes[0].port, &args).expect("redis-cli --cluster create");
        let ports: Vec<u16> = cluster.nodes.iter().map(|n| n.port).collect();
        cluster.wait_ok(&ports, Duration::from_secs(10));
        cluster.wait_synced(masters * replicas, Duration::from_secs(10));
        cluster
    }

    /// Waits until `n` nodes are replicas whose link to their master is up.
    fn wait_synced(&self, n: usize, within: Duration) {
        let start = Instant::now();
        loop {
            let synced = self
                .nodes
                .iter()
                .filter_map(|node| cli(node.port, &["info", "replication"]))
                .filter(|info| {
                    info.contains("role:slave") && info.contains("master_link_status:up")
                })
                .count();
            if synced >= n {
                return;
            }
            assert!(
                start.elapsed() < within,
                "{synced} of {n} replicas synced within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every node in `ports` says `cluster_state:ok` and knows every node.
    pub(crate) fn wait_ok(&self, ports: &[u16], within: Duration) {
        let start = Instant::now();
        let all = self.nodes.len();
        while !ports.iter().all(|&port| {
            let info = cli(port, &["cluster", "info"]).unwrap_or_default();
            info.contains("cluster_state:ok")
                && info.contains(&format!("cluster_known_nodes:{all}"))
        }) {
            assert!(
                start.elapsed() < within,
                "the cluster is not ok within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The URLs of the masters the cluster was created with.
    pub(crate) fn urls(&self) -> Vec<String> {
        self.nodes[..self.masters]
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect()
    }

    /// The index in `nodes` of the master that owns `key`'s slot now.
    pub(crate) fn master_of(&self, key: &str) -> usize {
        self.owner_of(key)
            .unwrap_or_else(|| panic!("no master owns {key}'s slot"))
    }

    /// The index in `nodes` of the live master that owns `key`'s slot, as a live node sees
    /// the cluster, if one does (`None` while it fails over).
    pub(crate) fn owner_of(&self, key: &str) -> Option<usize> {
        let live = self.nodes.iter().find(|n| n.child.is_some())?;
        let slot: u16 = cli(live.port, &["cluster", "keyslot", key])?
            .trim()
            .parse()
            .ok()?;
        let nodes = cli(live.port, &["cluster", "nodes"])?;
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let owns = fields[8..].iter().any(|range| {
                let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                match (lo.parse::<u16>(), hi.parse::<u16>()) {
                    (Ok(lo), Ok(hi)) => (lo..=hi).contains(&slot),
                    _ => false,
                }
            });
            if owns {
                let port: u16 = fields[1].split(['@', ':']).nth(1)?.parse().ok()?;
                return self
                    .nodes
                    .iter()
                    .position(|n| n.port == port && n.child.is_some());
            }
        }
        None
    }

    /// A direct connection to any live node, for `PUBSUB NUMSUB` (classic pub/sub is
    /// cluster-wide, but each node counts its own subscribers: see `subscribers`).
    pub(crate) fn subscribers(&self, channel: &str) -> i64 {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .filter_map(|n| cli(n.port, &["pubsub", "numsub", channel]))
            .filter_map(|out| {
                out.lines()
                    .nth(1)
                    .and_then(|l| l.trim().parse::<i64>().ok())
            })
            .sum()
    }
}
