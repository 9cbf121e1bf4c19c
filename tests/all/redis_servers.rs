//! Redis servers a test starts for itself on loopback (`redis-server` on PATH): a TLS one
//! with certificates the test makes, a cluster. Each process is killed, and its folder
//! removed, when its guard drops, a failing test included.
#![cfg(all(feature = "redis", feature = "redis-tls"))]
#![allow(dead_code)] // each test module uses its own subset

use std::net::{SocketAddr, TcpListener, TcpStream};
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
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One `redis-server` process, killed on drop.
pub(crate) struct RedisProcess {
    child: Option<Child>,
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
