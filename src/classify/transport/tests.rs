use super::*;

#[test]
fn box_error_walks_sources() {
    let e: Box<dyn StdError + Send + Sync> =
        Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
    assert_eq!(e.transport_error_kind(), TransportErrorKind::Reset);
}

#[derive(Debug)]
struct Wrap(Box<dyn StdError + 'static>);
impl fmt::Display for Wrap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("wrapped")
    }
}
impl StdError for Wrap {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.0)
    }
}

fn io(kind: io::ErrorKind) -> io::Error {
    io::Error::new(kind, "x")
}

#[test]
fn io_kinds_map() {
    use TransportErrorKind::*;
    for (k, want) in [
        (io::ErrorKind::ConnectionRefused, Connect),
        (io::ErrorKind::TimedOut, Timeout),
        (io::ErrorKind::ConnectionReset, Reset),
        (io::ErrorKind::BrokenPipe, Reset),
        (io::ErrorKind::UnexpectedEof, IncompleteMessage),
        (io::ErrorKind::InvalidData, Other),
        (io::ErrorKind::PermissionDenied, Other),
    ] {
        assert_eq!(TransportErrorKind::of_error(&io(k)), want, "{k:?}");
    }
}

#[test]
fn source_chain_is_walked_and_connect_wins() {
    let reset_in_chain = Wrap(Box::new(Wrap(Box::new(io(io::ErrorKind::ConnectionReset)))));
    assert_eq!(
        TransportErrorKind::of_error(&reset_in_chain),
        TransportErrorKind::Reset
    );
    // A timeout wrapping a refused connection: nothing was sent.
    #[derive(Debug)]
    struct TimeoutOver(io::Error);
    impl fmt::Display for TimeoutOver {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("t")
        }
    }
    impl StdError for TimeoutOver {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }
    let e = Wrap(Box::new(io(io::ErrorKind::TimedOut)));
    assert_eq!(
        TransportErrorKind::of_error(&e),
        TransportErrorKind::Timeout
    );
    let e = Wrap(Box::new(TimeoutOver(io(io::ErrorKind::ConnectionRefused))));
    assert_eq!(
        TransportErrorKind::of_error(&e),
        TransportErrorKind::Connect
    );
}

#[test]
fn refused_is_never_considered_sent_and_has_a_name() {
    assert!(!TransportErrorKind::Refused.may_have_been_sent());
    assert!(!TransportErrorKind::Connect.may_have_been_sent());
    assert!(TransportErrorKind::Reset.may_have_been_sent());
    assert_eq!(TransportErrorKind::Refused.to_string(), "refused");
}

#[cfg(feature = "tower")]
#[test]
fn tower_timeout_elapsed_is_a_timeout() {
    let e = tower::timeout::error::Elapsed::new();
    assert_eq!(
        TransportErrorKind::of_error(&e),
        TransportErrorKind::Timeout
    );
    // As a `TimeoutLayer` under the retry layer hands it up: boxed, maybe wrapped.
    let boxed: Box<dyn StdError + Send + Sync> = Box::new(e);
    assert_eq!(
        TransportErrorKind::of_error(&*boxed),
        TransportErrorKind::Timeout
    );
    let wrapped = Wrap(Box::new(tower::timeout::error::Elapsed::new()));
    assert_eq!(
        TransportErrorKind::of_error(&wrapped),
        TransportErrorKind::Timeout
    );
}

#[cfg(feature = "tower")]
#[test]
fn h2_reasons_of_our_own_are_not_the_servers_refusal() {
    // `h2::Error::from(Reason)` is a reason this side produced, not the server's
    // RST_STREAM or GOAWAY: nothing says the server did not process the request. (The
    // server-sent cases are tested end to end in `tests/http2.rs`.)
    for reason in [
        h2::Reason::REFUSED_STREAM,
        h2::Reason::NO_ERROR,
        h2::Reason::CANCEL,
    ] {
        let e = Wrap(Box::new(h2::Error::from(reason)));
        assert_eq!(
            TransportErrorKind::of_error(&e),
            TransportErrorKind::Other,
            "{reason:?}"
        );
    }
}

/// The error an h2 client gets for one `POST` from an in-memory h2 server that runs
/// `serve` on its connection.
#[cfg(feature = "tower")]
async fn h2_client_error<F, Fut>(serve: F) -> h2::Error
where
    F: FnOnce(h2::server::Connection<tokio::io::DuplexStream, bytes::Bytes>) -> Fut,
    F: Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(async move {
        let conn = h2::server::handshake(server_io).await.unwrap();
        serve(conn).await;
    });
    let (send, conn) = h2::client::handshake(client_io).await.unwrap();
    tokio::spawn(conn);
    let err = async {
        let mut send = send.ready().await?;
        let req = http::Request::post("http://api.telecho.test/v1/calls")
            .body(())
            .unwrap();
        let (resp, _) = send.send_request(req, true)?;
        resp.await.map(|_| ())
    }
    .await
    .expect_err("the server did not answer");
    server.await.unwrap();
    err
}

#[cfg(feature = "tower")]
#[tokio::test]
async fn h2_refused_stream_from_the_server_is_refused_whatever_wraps_it() {
    let err = h2_client_error(|mut conn| async move {
        let (_req, mut respond) = conn.accept().await.unwrap().unwrap();
        respond.send_reset(h2::Reason::REFUSED_STREAM);
        while conn.accept().await.is_some() {}
    })
    .await;
    assert!(err.is_reset() && err.is_remote(), "{err:?}");
    assert_eq!(
        TransportErrorKind::of_error(&err),
        TransportErrorKind::Refused
    );
    // An outer link that alone would say Timeout (an io::Error whose source() is the
    // h2 error): the server's refusal is the more precise word.
    #[derive(Debug)]
    struct Via(h2::Error);
    impl fmt::Display for Via {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("via")
        }
    }
    impl StdError for Via {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }
    let outer = io::Error::new(io::ErrorKind::TimedOut, Via(err));
    assert_eq!(
        TransportErrorKind::of_error(&outer),
        TransportErrorKind::Refused
    );
}

#[cfg(feature = "tower")]
#[tokio::test]
async fn h2_goaway_no_error_from_the_server_is_refused() {
    let err = h2_client_error(|mut conn| async move {
        conn.abrupt_shutdown(h2::Reason::NO_ERROR);
        while conn.accept().await.is_some() {}
    })
    .await;
    assert!(err.is_go_away() && err.is_remote(), "{err:?}");
    assert_eq!(err.reason(), Some(h2::Reason::NO_ERROR));
    assert_eq!(
        TransportErrorKind::of_error(&err),
        TransportErrorKind::Refused
    );
}

#[cfg(feature = "tower")]
#[tokio::test]
async fn h2_goaway_with_an_error_code_is_not_refused() {
    let err = h2_client_error(|mut conn| async move {
        conn.abrupt_shutdown(h2::Reason::INTERNAL_ERROR);
        while conn.accept().await.is_some() {}
    })
    .await;
    assert!(err.is_go_away() && err.is_remote(), "{err:?}");
    assert_eq!(
        TransportErrorKind::of_error(&err),
        TransportErrorKind::Other
    );
}

#[test]
fn unknown_errors_are_other() {
    let e: Box<dyn StdError> = "plain string error".into();
    assert_eq!(TransportErrorKind::of_error(&*e), TransportErrorKind::Other);
}

#[test]
fn idempotent_methods() {
    for m in ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"] {
        assert!(is_idempotent_method(&m.parse().unwrap()), "{m}");
    }
    for m in ["POST", "PATCH", "CONNECT", "PURGE"] {
        assert!(!is_idempotent_method(&m.parse().unwrap()), "{m}");
    }
}
