//! [`EarlyRejectServer`]: an upload server that answers before reading the body.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

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
