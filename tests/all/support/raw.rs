//! [`RawServer`]: a bare `TcpListener` on `127.0.0.1:0` that misbehaves on purpose
//! ([`Misbehave`]) on every connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Misbehave {
    /// Reads the request, then resets the connection (RST, `SO_LINGER` 0).
    Reset,
    /// Reads the request, sends a cut-off status line and head, closes.
    IncompleteHead,
    /// Reads the request, sends a complete head with `Content-Length: 100`, 10 bytes of
    /// body, closes.
    TruncatedBody,
    /// Reads the request, sends a complete `503` head with `Content-Length: 100`, 10 bytes
    /// of body, closes.
    TruncatedErrorBody,
    /// Reads the request and never answers (holds the connection until the client goes).
    Silent,
    /// Reads the request, sends a chunked `503` whose body never ends (until the client
    /// goes away).
    EndlessErrorBody,
    /// Reads the request, sends a complete head with this status and
    /// `Content-Length: 100`, then resets the connection.
    ResetAfterHead(u16),
    /// Reads the request, sends a `502` head with `Content-Length: 100` and 4 bytes, then
    /// holds the connection without sending more.
    StallAfterErrorHead,
    /// Reads the request, sends a complete head with this status and `Content-Length: 100`,
    /// 10 bytes of body (`0123456789`), then holds the connection without sending more.
    StallAfterPartialBody(u16),
}

/// A `TcpListener` on `127.0.0.1:0` that misbehaves on every connection; stops when
/// dropped.
pub(crate) struct RawServer {
    pub(crate) addr: SocketAddr,
    pub(crate) connections: Arc<AtomicUsize>,
    pub(crate) requests: Arc<AtomicUsize>,
    pub(crate) task: JoinHandle<()>,
}

impl RawServer {
    pub(crate) async fn start(how: Misbehave) -> RawServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (conns, reqs) = (Arc::clone(&connections), Arc::clone(&requests));
        let task = tokio::spawn(async move {
            let mut tasks = JoinSet::new();
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                conns.fetch_add(1, Ordering::SeqCst);
                let reqs = Arc::clone(&reqs);
                tasks.spawn(async move {
                    if !read_request(&mut stream).await {
                        return;
                    }
                    reqs.fetch_add(1, Ordering::SeqCst);
                    misbehave(stream, how).await;
                });
                while tasks.try_join_next().is_some() {}
            }
        });
        RawServer {
            addr,
            connections,
            requests,
            task,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/v1/calls", self.addr)
    }

    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub(crate) fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request head and its `Content-Length` body; `false` if the client went away
/// first.
pub(crate) async fn read_request(stream: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while buf.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    true
}

pub(crate) async fn misbehave(mut stream: TcpStream, how: Misbehave) {
    match how {
        Misbehave::Reset => {
            // A zero linger makes the close an immediate RST and does not block on drop
            // (the reason tokio deprecates `set_linger` is a non-zero linger).
            #[allow(deprecated)]
            stream.set_linger(Some(Duration::ZERO)).unwrap();
            drop(stream);
        }
        Misbehave::IncompleteHead => {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Le").await;
            let _ = stream.shutdown().await;
        }
        Misbehave::TruncatedBody => {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
                .await;
            let _ = stream.shutdown().await;
        }
        Misbehave::TruncatedErrorBody => {
            let _ = stream
                .write_all(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 100\r\n\r\n0123456789",
                )
                .await;
            let _ = stream.shutdown().await;
        }
        Misbehave::EndlessErrorBody => {
            let head = b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n";
            if stream.write_all(head).await.is_err() {
                return;
            }
            let chunk = format!("{:x}\r\n{}\r\n", 16 * 1024, "x".repeat(16 * 1024));
            while stream.write_all(chunk.as_bytes()).await.is_ok() {}
        }
        Misbehave::ResetAfterHead(status) => {
            let head = format!("HTTP/1.1 {status} Whatever\r\nContent-Length: 100\r\n\r\n");
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.flush().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            #[allow(deprecated)]
            let _ = stream.set_linger(Some(Duration::ZERO));
            drop(stream);
        }
        Misbehave::StallAfterErrorHead => {
            let head = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 100\r\n\r\n{\"er";
            let _ = stream.write_all(head).await;
            let mut sink = [0u8; 1024];
            while let Ok(n) = stream.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        }
        Misbehave::StallAfterPartialBody(status) => {
            let head = format!(
                "HTTP/1.1 {status} Whatever\r\nContent-Type: application/json\r\n\
                 Content-Length: 100\r\n\r\n0123456789"
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let mut sink = [0u8; 1024];
            while let Ok(n) = stream.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        }
        Misbehave::Silent => {
            // Hold the connection open, answering nothing, until the client closes it.
            let mut sink = [0u8; 1024];
            while let Ok(n) = stream.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        }
    }
}
