//! Redis, and the proxy that cuts it.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A Redis URL taken apart around its `host:port`, so that a proxy can stand in for it and
/// so that its password never gets printed.
#[derive(Clone, Debug)]
pub(crate) struct RedisUrl {
    /// `redis://` or `rediss://`.
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
        if scheme != "redis" && scheme != "rediss" {
            return Err(format!(
                "REDIS_URL: expected redis:// or rediss:// URLs, not {scheme}://"
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

    /// Whether it asks for TLS.
    pub(crate) fn tls(&self) -> bool {
        self.scheme == "rediss://"
    }

    /// The host, without the port.
    pub(crate) fn host(&self) -> &str {
        self.host_port
            .rsplit_once(':')
            .map_or(self.host_port.as_str(), |(host, _)| host)
    }

    /// Whether a proxy on 127.0.0.1 can stand in for it under its own host name, as TLS
    /// needs (the certificate names the host): a loopback host.
    pub(crate) fn proxy_keeps_host(&self) -> bool {
        matches!(self.host(), "127.0.0.1" | "localhost")
    }

    /// The same URL, reaching Redis through `proxy` (on 127.0.0.1): under the URL's host
    /// name for TLS, which checks it against the certificate.
    pub(crate) fn via(&self, proxy: SocketAddr) -> RedisUrl {
        let host_port = if self.tls() {
            format!("{}:{}", self.host(), proxy.port())
        } else {
            proxy.to_string()
        };
        RedisUrl {
            host_port,
            ..self.clone()
        }
    }

    /// For printing: the password (any userinfo) hidden.
    pub(crate) fn redacted(&self) -> String {
        let userinfo = if self.userinfo.is_empty() { "" } else { "***@" };
        format!("{}{userinfo}{}{}", self.scheme, self.host_port, self.rest)
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
