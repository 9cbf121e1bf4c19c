//! [`Proxy`]: a TCP proxy in front of a Redis, which the test can cut, pause, take down
//! and delay.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// A TCP proxy on `127.0.0.1:0` in front of `target` (a Redis), which the test can cut
/// (close every connection), pause (forward nothing, as a stalled network: data waits,
/// nothing is lost), resume, take down (cut, and close new connections at once) or up, and
/// delay the replies (each is forwarded that long after it arrived).
pub(crate) struct Proxy {
    pub(crate) addr: SocketAddr,
    paused: tokio::sync::watch::Sender<bool>,
    cut: tokio::sync::watch::Sender<u64>,
    down: Arc<std::sync::atomic::AtomicBool>,
    /// The delay of the replies, in ms.
    delay: Arc<std::sync::atomic::AtomicU64>,
    task: JoinHandle<()>,
}

impl Proxy {
    pub(crate) async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (paused, _) = tokio::sync::watch::channel(false);
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let delay = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (p, c, d, l) = (
            paused.clone(),
            cut.clone(),
            Arc::clone(&down),
            Arc::clone(&delay),
        );
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                if d.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let (paused, mut cut, delay) = (p.subscribe(), c.subscribe(), Arc::clone(&l));
                connections.spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::select! {
                        _ = pump(cr, sw, paused.clone()) => {}
                        _ = delayed_pump(sr, cw, paused, delay) => {}
                        _ = cut.changed() => {}
                    }
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Proxy {
            addr,
            paused,
            cut,
            down,
            delay,
            task,
        }
    }

    /// Forwards each reply `delay` after it arrived (zero: at once).
    pub(crate) fn delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.delay.store(ms, Ordering::SeqCst);
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Closes every connection (new ones are accepted).
    pub(crate) fn cut(&self) {
        self.cut.send_modify(|g| *g += 1);
    }

    /// Forwards nothing until [`resume`](Self::resume), on old and new connections alike.
    pub(crate) fn pause(&self) {
        self.paused.send_replace(true);
    }

    pub(crate) fn resume(&self) {
        self.paused.send_replace(false);
    }

    /// Cuts every connection and closes new ones at once, until [`up`](Self::up).
    pub(crate) fn down(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.cut();
    }

    pub(crate) fn up(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

/// Copies `from` to `to` as [`pump`] does, each read forwarded `delay` ms after it arrived.
async fn delayed_pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut paused: tokio::sync::watch::Receiver<bool>,
    delay: Arc<std::sync::atomic::AtomicU64>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let read = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let at = Instant::now() + Duration::from_millis(delay.load(Ordering::SeqCst));
            if tx.send((at, buf[..n].to_vec())).is_err() {
                return;
            }
        }
    };
    let write = async move {
        while let Some((at, data)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            while *paused.borrow_and_update() {
                if paused.changed().await.is_err() {
                    return;
                }
            }
            if to.write_all(&data).await.is_err() {
                return;
            }
        }
    };
    // The writer ends once the reader has and all it read is forwarded.
    tokio::join!(read, write);
}

/// Copies `from` to `to`, holding what it read while `paused`.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut paused: tokio::sync::watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while *paused.borrow_and_update() {
            if paused.changed().await.is_err() {
                return;
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
