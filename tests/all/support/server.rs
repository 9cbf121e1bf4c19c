//! [`Server`]: a hyper 1 server on `127.0.0.1:0` that records every request ([`Seen`])
//! and answers from a handler ([`Reply`]).

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
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

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
