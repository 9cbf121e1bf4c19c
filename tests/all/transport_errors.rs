//! A `POST` whose connection breaks *after* it was written, with an error kind that would
//! mean "could not connect" on its own (`EHOSTUNREACH`, `ENETUNREACH`, `ECONNREFUSED`: what a
//! live TCP connection whose path is lost reports), is not resent: under hyper-util's client
//! the error is not a connect error, so it may have reached the server.
#![cfg(feature = "tower")]

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::Full;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use telecho_retry::classify::TransportErrorKind;
use telecho_retry::{RetryErrorKind, RetryPolicy, StopReason, TelEchoRetry};
use tokio::net::{TcpListener, TcpStream};
use tower::{ServiceBuilder, ServiceExt};

/// A connection that works until the request is written, then fails its reads with `kind`.
struct PathLost {
    inner: TokioIo<TcpStream>,
    wrote: bool,
    kind: io::ErrorKind,
}

impl Read for PathLost {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        if self.wrote {
            return Poll::Ready(Err(io::Error::from(self.kind)));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl Write for PathLost {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.wrote = true;
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Connection for PathLost {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

#[derive(Clone)]
struct Connector {
    addr: std::net::SocketAddr,
    kind: io::ErrorKind,
}

type Connecting = Pin<Box<dyn Future<Output = io::Result<PathLost>> + Send>>;

impl tower::Service<Uri> for Connector {
    type Response = PathLost;
    type Error = io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Connecting {
        let (addr, kind) = (self.addr, self.kind);
        Box::pin(async move {
            let tcp = TcpStream::connect(addr).await?;
            Ok(PathLost {
                inner: TokioIo::new(tcp),
                wrote: false,
                kind,
            })
        })
    }
}

/// Sends one `POST` over connections whose path is lost with `kind`; returns how many
/// requests the server received, and the error.
async fn post_over_a_lost_path(kind: io::ErrorKind) -> (usize, telecho_retry::RetryError) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&received);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let count = Arc::clone(&count);
            tokio::spawn(async move {
                if crate::support::read_request(&mut stream).await {
                    count.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            });
        }
    });
    let hyper =
        Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(Connector { addr, kind });
    let policy = RetryPolicy::builder()
        .max_retries(3)
        .base_delay(Duration::from_millis(20))
        .max_delay(Duration::from_millis(40))
        .build();
    let client = ServiceBuilder::new()
        .layer(TelEchoRetry::new(policy))
        .service(hyper);
    let req = Request::post("http://api.telecho.test/v1/calls")
        .body(Full::new(Bytes::from_static(b"{\"to\":\"+15550100\"}")))
        .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(5), client.oneshot(req))
        .await
        .expect("the request ends")
        .expect_err("no answer can arrive");
    // Give a resend, if one were made, time to arrive.
    tokio::time::sleep(Duration::from_millis(200)).await;
    (received.load(Ordering::SeqCst), err)
}

#[tokio::test]
async fn a_post_is_not_resent_when_an_established_connection_loses_its_path() {
    for kind in [
        io::ErrorKind::HostUnreachable,
        io::ErrorKind::NetworkUnreachable,
        io::ErrorKind::ConnectionRefused,
        io::ErrorKind::ConnectionReset,
    ] {
        let (received, err) = post_over_a_lost_path(kind).await;
        assert_eq!(
            received, 1,
            "{kind:?}: the server got the POST {received} times"
        );
        assert_eq!(err.kind(), RetryErrorKind::Inner, "{kind:?}");
        assert_eq!(err.info().attempts(), 1, "{kind:?}");
        assert_eq!(err.stop_reason(), Some(StopReason::Fatal), "{kind:?}");
        let inner = err.get_inner().expect("the client's error");
        assert_eq!(
            TransportErrorKind::of_error(inner),
            TransportErrorKind::Reset,
            "{kind:?}"
        );
    }
}
