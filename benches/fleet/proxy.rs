//! Redis, and the proxy that cuts it.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A Redis URL taken apart around its `host:port`, so that a proxy can stand in for it and
/// so that its password never gets printed.
#[derive(Clone, Debug)]
pub(crate) struct RedisUrl {
    /// `redis://`.
    pub(crate) scheme: String,
    /// `user:password@`, or empty.
    pub(crate) userinfo: String,
    /// `host:port`.
    pub(crate) host_port: String,
    /// `/0`, `?…`, or empty.
    pub(crate) rest: String,
}

impl RedisUrl {
    pub(crate) fn parse(url: &str) -> Result<RedisUrl, String> {
        let Some((scheme, after)) = url.split_once("://") else {
            return Err("REDIS_URL: expected redis://host:port".into());
        };
        if scheme != "redis" {
            return Err(format!(
                "REDIS_URL: the example (and its proxy) need a plain redis:// URL, not {scheme}://"
            ));
        }
        let end = after.find(['/', '?']).unwrap_or(after.len());
        let (authority, rest) = after.split_at(end);
        let (userinfo, host_port) = match authority.rfind('@') {
            Some(at) => authority.split_at(at + 1),
            None => ("", authority),
        };
        if host_port.is_empty() {
            return Err("REDIS_URL: no host".into());
        }
        let host_port = if host_port.contains(':') {
            host_port.to_string()
        } else {
            format!("{host_port}:6379")
        };
        Ok(RedisUrl {
            scheme: format!("{scheme}://"),
            userinfo: userinfo.to_string(),
            host_port,
            rest: rest.to_string(),
        })
    }

    pub(crate) fn url(&self) -> String {
        format!(
            "{}{}{}{}",
            self.scheme, self.userinfo, self.host_port, self.rest
        )
    }

    /// The same URL, reaching Redis through `proxy`.
    pub(crate) fn via(&self, proxy: SocketAddr) -> RedisUrl {
        RedisUrl {
            host_port: proxy.to_string(),
            ..self.clone()
        }
    }

    /// For printing: the password (any userinfo) hidden.
    pub(crate) fn redacted(&self) -> String {
        let userinfo = if self.userinfo.is_empty() { "" } else { "***@" };
        format!("{}{userinfo}{}{}", self.scheme, self.host_port, self.rest)
    }

    /// Deletes every key of the run's `scope` (under the crate's default key prefix), as
    /// if Redis had restarted empty for it, with `redis-cli --scan --pattern` and `DEL`
    /// (never `FLUSHALL`: others use this Redis); how many keys it deleted. Blocking.
    pub(crate) fn empty_scope(&self, scope: &str) -> Result<usize, String> {
        let cli = |args: &[&str]| -> Result<String, String> {
            let out = std::process::Command::new("redis-cli")
                .arg("-u")
                .arg(self.url())
                .args(args)
                .output()
                .map_err(|e| format!("redis-cli: {e}"))?;
            if !out.status.success() {
                return Err(format!("redis-cli {}: {}", args[0], out.status));
            }
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        };
        let pattern = format!("{{telecho-retry:{scope}}}*");
        let listed = cli(&["--scan", "--pattern", &pattern])?;
        let keys: Vec<&str> = listed.lines().filter(|k| !k.is_empty()).collect();
        for chunk in keys.chunks(100) {
            let mut args = vec!["DEL"];
            args.extend_from_slice(chunk);
            cli(&args)?;
        }
        Ok(keys.len())
    }

    /// Whether something answers `PING` there within a second (any reply will do: a
    /// Redis that wants a password says so, and is there).
    pub(crate) async fn answers(&self) -> bool {
        let probe = async {
            let mut s = TcpStream::connect(&self.host_port).await.ok()?;
            tokio::io::AsyncWriteExt::write_all(&mut s, b"PING\r\n")
                .await
                .ok()?;
            let mut buf = [0u8; 64];
            let n = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await.ok()?;
            (n > 0).then_some(())
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(1), probe).await,
            Ok(Some(()))
        )
    }
}

/// A TCP proxy between the children and Redis that the parent can cut: while cut, every
/// connection through it is dropped and new ones are closed as soon as they are accepted.
pub(crate) struct RedisProxy {
    pub(crate) addr: SocketAddr,
    pub(crate) cut: watch::Sender<bool>,
    pub(crate) accept: tokio::task::JoinHandle<()>,
}

impl RedisProxy {
    pub(crate) async fn start(upstream: String) -> Result<RedisProxy, String> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("Redis proxy: bind 127.0.0.1:0: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("Redis proxy: local address: {e}"))?;
        let (cut, cut_rx) = watch::channel(false);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                if *cut_rx.borrow() {
                    drop(client);
                    continue;
                }
                let mut cut_rx = cut_rx.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let connect = TcpStream::connect(upstream);
                    let Ok(Ok(mut server)) =
                        tokio::time::timeout(Duration::from_secs(1), connect).await
                    else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut_rx.wait_for(|cut| *cut) => {}
                    }
                    // Both ends dropped here: a cut looks like a reset to the child.
                });
            }
        });
        Ok(RedisProxy { addr, cut, accept })
    }

    pub(crate) fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

impl Drop for RedisProxy {
    fn drop(&mut self) {
        self.set_cut(true);
        self.accept.abort();
    }
}
