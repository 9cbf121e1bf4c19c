//! Test servers shared by the integration tests that need real sockets: [`Server`], a
//! hyper 1 server on `127.0.0.1:0` that records every request and answers from a handler,
//! and [`RawServer`], a bare `TcpListener` that misbehaves on purpose.
#![allow(dead_code)] // each test crate uses its own subset

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Method};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

// ===== a recording hyper server =====

/// One request as the server received it.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    /// Monotonic arrival time (head and body fully read).
    pub(crate) at: Instant,
    /// Wall-clock arrival time, for HTTP-date `Retry-After`.
    pub(crate) wall: SystemTime,
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// What the server answers.
#[derive(Clone, Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    /// Sent as one body with a `Content-Length` when there is one chunk, else chunked.
    pub(crate) chunks: Vec<Bytes>,
    /// How long the server holds the request before it answers.
    pub(crate) delay: Duration,
}

impl Reply {
    pub(crate) fn status(status: u16) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            chunks: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    pub(crate) fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    pub(crate) fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.chunks = vec![body.into()];
        self
    }

    /// Answers only after holding the request for `delay`.
    pub(crate) fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub(crate) fn chunked(mut self, body: &Bytes, chunk: usize) -> Self {
        self.chunks = (0..body.len())
            .step_by(chunk)
            .map(|i| body.slice(i..(i + chunk).min(body.len())))
            .collect();
        self
    }

    pub(crate) fn into_response(self) -> http::Response<BoxBody<Bytes, Infallible>> {
        let body = if self.chunks.len() == 1 {
            Full::new(self.chunks[0].clone()).boxed()
        } else {
            let frames = self.chunks.into_iter().map(|c| Ok(Frame::data(c)));
            BodyExt::boxed(StreamBody::new(futures_util::stream::iter(frames)))
        };
        let mut builder = http::Response::builder().status(self.status);
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        builder.body(body).expect("a valid test response")
    }
}

pub(crate) type Handler = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

/// A hyper 1 HTTP/1.1 server on `127.0.0.1:0`; stops when dropped.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    pub(crate) seen: Arc<Mutex<Vec<Seen>>>,
    pub(crate) task: JoinHandle<()>,
}

impl Server {
    /// Answers a request to a path under `/limited` 429 with `Retry-After: retry_after`,
    /// any other 200.
    pub(crate) async fn limited(retry_after: &'static str) -> Server {
        Server::start(move |seen| {
            if seen.path.starts_with("/limited") {
                Reply::status(429).header("retry-after", retry_after)
            } else {
                Reply::status(200)
            }
        })
        .await
    }

    /// Answers every request with `handler(request)`.
    pub(crate) async fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Server {
        let handler: Handler = Arc::new(handler);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            // Owned here, so aborting the accept loop also ends every connection.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let handler = Arc::clone(&handler);
                let log = Arc::clone(&log);
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let handler = Arc::clone(&handler);
                    let log = Arc::clone(&log);
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes());
                        let seen = Seen {
                            at: Instant::now(),
                            wall: SystemTime::now(),
                            method: parts.method,
                            path: parts.uri.path().to_owned(),
                            headers: parts.headers,
                            body: body.unwrap_or_default(),
                        };
                        let reply = handler(&seen);
                        log.lock().unwrap().push(seen);
                        if !reply.delay.is_zero() {
                            tokio::time::sleep(reply.delay).await;
                        }
                        Ok::<_, Infallible>(reply.into_response())
                    }
                });
                connections.spawn(async move {
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                // Reap finished connections so the set does not grow without bound.
                while connections.try_join_next().is_some() {}
            }
        });
        Server { addr, seen, task }
    }

    /// Answers the n-th request (0-based, over all paths) with `replies[n]`; the last
    /// reply repeats.
    pub(crate) async fn scripted(replies: Vec<Reply>) -> Server {
        assert!(!replies.is_empty());
        let n = AtomicUsize::new(0);
        Server::start(move |_| {
            let i = n.fetch_add(1, Ordering::SeqCst).min(replies.len() - 1);
            replies[i].clone()
        })
        .await
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub(crate) fn hits(&self, path: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path == path)
            .count()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ===== a misbehaving raw TCP server =====

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

// ===== an upload server that answers before reading the body =====

/// How [`EarlyRejectServer`] read one request body.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Upload {
    /// The body's framing ended properly (the last chunk, or every `Content-Length`
    /// byte): to the server this is a complete request.
    Complete(Bytes),
    /// The connection ended or broke mid-body, after these bytes.
    Cut(Bytes),
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Lengths and a digest, not 60 KiB of bytes.
        let (kind, body) = match self {
            Upload::Complete(b) => ("Complete", b),
            Upload::Cut(b) => ("Cut", b),
        };
        let sum = body
            .iter()
            .fold(0u32, |h, &b| h.rotate_left(5) ^ u32::from(b));
        write!(f, "{kind}({} bytes, digest {sum:08x})", body.len())
    }
}

/// What [`EarlyRejectServer`] has seen so far.
#[derive(Clone, Debug, Default)]
pub(crate) struct UploadLog {
    /// The `503` to the first request has been written.
    pub(crate) rejected: bool,
    /// The client closed (or reset) the first connection after that `503`.
    pub(crate) first_closed: bool,
    /// Connections accepted, and connections over (for any reason).
    pub(crate) accepted: usize,
    pub(crate) ended: usize,
    /// The bodies of the requests after the first, in the order they ended.
    pub(crate) uploads: Vec<Upload>,
}

/// A raw HTTP/1.1 server on `127.0.0.1:0` for upload tests; stops when dropped.
///
/// The first connection gets `503` (`Content-Length: 0`, keep-alive) as soon as its
/// request head is read, and its body is never read as a request: the server only
/// discards what arrives until the client closes the connection, which it records. Every
/// later connection has its body read to the end of its framing (chunked or
/// `Content-Length`); a complete body is answered `200` with `Connection: close`.
pub(crate) struct EarlyRejectServer {
    pub(crate) addr: SocketAddr,
    pub(crate) log: tokio::sync::watch::Receiver<UploadLog>,
    pub(crate) task: JoinHandle<()>,
}

impl EarlyRejectServer {
    pub(crate) async fn start() -> EarlyRejectServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, log) = tokio::sync::watch::channel(UploadLog::default());
        let tx = Arc::new(tx);
        let task = tokio::spawn(async move {
            let mut tasks = JoinSet::new();
            let mut n = 0usize;
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tx.send_modify(|l| l.accepted += 1);
                let first = n == 0;
                n += 1;
                let tx = Arc::clone(&tx);
                tasks.spawn(async move {
                    serve_upload(stream, first, &tx).await;
                    tx.send_modify(|l| l.ended += 1);
                });
                while tasks.try_join_next().is_some() {}
            }
        });
        EarlyRejectServer { addr, log, task }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/v1/uploads", self.addr)
    }

    pub(crate) fn log(&self) -> UploadLog {
        self.log.borrow().clone()
    }

    /// Waits (at most `within`) until `what` holds for the log; whether it did.
    pub(crate) async fn wait_for(
        &self,
        within: Duration,
        what: impl FnMut(&UploadLog) -> bool,
    ) -> bool {
        let mut log = self.log.clone();
        let held = tokio::time::timeout(within, log.wait_for(what)).await;
        matches!(held, Ok(Ok(_)))
    }
}

impl Drop for EarlyRejectServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_upload(
    mut stream: TcpStream,
    first: bool,
    log: &tokio::sync::watch::Sender<UploadLog>,
) {
    let mut buf = Vec::new();
    let Some(head_end) = read_until(&mut stream, &mut buf, 0, b"\r\n\r\n").await else {
        return;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let mut pos = head_end + 4;
    if first {
        let reply = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n";
        if stream.write_all(reply).await.is_err() {
            return;
        }
        log.send_modify(|l| l.rejected = true);
        let mut sink = [0u8; 8192];
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
        log.send_modify(|l| l.first_closed = true);
        return;
    }
    let chunked = head
        .lines()
        .any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"));
    let upload = if chunked {
        read_chunked(&mut stream, &mut buf, &mut pos).await
    } else {
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        loop {
            if buf.len() >= pos + length {
                break Upload::Complete(Bytes::copy_from_slice(&buf[pos..pos + length]));
            }
            if !fill(&mut stream, &mut buf).await {
                break Upload::Cut(Bytes::copy_from_slice(&buf[pos..]));
            }
        }
    };
    let complete = matches!(upload, Upload::Complete(_));
    log.send_modify(|l| l.uploads.push(upload));
    if complete {
        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
        let _ = stream.write_all(reply).await;
        let _ = stream.shutdown().await;
    }
}

/// Reads more bytes into `buf`; `false` at the end of the stream or on an error.
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 8192];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

/// The index of the next `needle` at or after `from`, reading as needed.
async fn read_until(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    from: usize,
    needle: &[u8],
) -> Option<usize> {
    loop {
        if let Some(i) = buf
            .get(from..)
            .and_then(|b| b.windows(needle.len()).position(|w| w == needle))
        {
            return Some(from + i);
        }
        if !fill(stream, buf).await {
            return None;
        }
    }
}

async fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>, pos: &mut usize) -> Upload {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = read_until(stream, buf, *pos, b"\r\n").await else {
            return Upload::Cut(body.into());
        };
        let line = String::from_utf8_lossy(&buf[*pos..line_end]).into_owned();
        let Ok(size) = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
        else {
            return Upload::Cut(body.into());
        };
        *pos = line_end + 2;
        if size == 0 {
            // Trailers, up to an empty line.
            loop {
                let Some(end) = read_until(stream, buf, *pos, b"\r\n").await else {
                    return Upload::Cut(body.into());
                };
                let empty = end == *pos;
                *pos = end + 2;
                if empty {
                    return Upload::Complete(body.into());
                }
            }
        }
        while buf.len() < *pos + size + 2 {
            if !fill(stream, buf).await {
                body.extend_from_slice(&buf[(*pos).min(buf.len())..]);
                return Upload::Cut(body.into());
            }
        }
        body.extend_from_slice(&buf[*pos..*pos + size]);
        *pos += size + 2;
    }
}

// ===== a TCP proxy the test controls =====

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

// ===== limits =====

/// `TelEchoRetry` over `policy` with no retry budget (the shared cooldown on, no pacing).
#[cfg(any(feature = "tower", feature = "reqwest"))]
pub(crate) fn unbudgeted(policy: telecho_retry::RetryPolicy) -> telecho_retry::TelEchoRetry {
    use telecho_retry::limits::Limits;
    telecho_retry::TelEchoRetry::new(policy).with_limits(
        Limits::builder()
            .without_retry_budget()
            .without_pacing()
            .build(),
    )
}

/// `TelEchoRetry` over `policy` with `budget` (the shared cooldown on, no pacing).
#[cfg(any(feature = "tower", feature = "reqwest"))]
pub(crate) fn budgeted(
    policy: telecho_retry::RetryPolicy,
    budget: telecho_retry::limits::RetryBudget,
) -> telecho_retry::TelEchoRetry {
    use telecho_retry::limits::Limits;
    telecho_retry::TelEchoRetry::new(policy).with_limits(
        Limits::builder()
            .retry_budget(budget)
            .without_pacing()
            .build(),
    )
}

/// `TelEchoRetry` over `policy` paced at `pacing`, with no retry budget.
#[cfg(any(feature = "tower", feature = "reqwest"))]
pub(crate) fn paced(
    policy: telecho_retry::RetryPolicy,
    pacing: telecho_retry::limits::Pacing,
) -> telecho_retry::TelEchoRetry {
    use telecho_retry::limits::Limits;
    telecho_retry::TelEchoRetry::new(policy).with_limits(
        Limits::builder()
            .without_retry_budget()
            .pacing(pacing)
            .build(),
    )
}

/// A loopback address nobody listens on (bound, then released).
pub(crate) fn closed_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}
