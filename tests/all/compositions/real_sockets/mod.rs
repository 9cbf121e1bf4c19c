//! (b) The tower layer over hyper-util's legacy client and (c) the reqwest middleware,
//! against loopback servers in real time: the adapters, the helpers the promises share
//! and the macro that runs each promise once per adapter; one submodule per promise.

use super::*;

/// One logical request's outcome, as either real-socket adapter reports it.
#[derive(Debug)]
enum Got {
    Response {
        status: u16,
        info: RetryInfo,
        retry_after: Option<String>,
    },
    /// A failure the engine decided (`RetryError` without an inner error).
    Engine {
        kind: RetryErrorKind,
        info: RetryInfo,
        cooldown: Option<Duration>,
        /// Its `Display`.
        message: String,
    },
    /// The last attempt's own error.
    Inner {
        kind: TransportErrorKind,
        info: RetryInfo,
    },
}

impl Got {
    fn info(&self) -> RetryInfo {
        match self {
            Got::Response { info, .. } | Got::Engine { info, .. } | Got::Inner { info, .. } => {
                *info
            }
        }
    }

    #[track_caller]
    fn status(&self) -> u16 {
        match self {
            Got::Response { status, .. } => *status,
            other => panic!("expected a response, got {other:?}"),
        }
    }

    #[track_caller]
    fn engine(&self) -> (RetryErrorKind, Option<Duration>) {
        match self {
            Got::Engine { kind, cooldown, .. } => (*kind, *cooldown),
            other => panic!("expected an engine error, got {other:?}"),
        }
    }

    /// The `Display` of an engine error.
    #[track_caller]
    fn message(&self) -> &str {
        match self {
            Got::Engine { message, .. } => message,
            other => panic!("expected an engine error, got {other:?}"),
        }
    }

    #[track_caller]
    fn inner(&self) -> TransportErrorKind {
        match self {
            Got::Inner { kind, .. } => *kind,
            other => panic!("expected an inner error, got {other:?}"),
        }
    }
}

/// A client through one adapter.
trait Adapter: Clone + Send + Sync + 'static {
    fn over(retry: TelEchoRetry) -> Self;
    fn send(&self, method: Method, url: String) -> impl Future<Output = Got> + Send;
}

type HyperClient = hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>;

fn hyper_client() -> HyperClient {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()
}

/// (b) The tower layer over hyper-util's legacy client.
#[derive(Clone)]
struct HyperUtil(RetryService<HyperClient>);

impl Adapter for HyperUtil {
    fn over(retry: TelEchoRetry) -> Self {
        let svc = ServiceBuilder::new().layer(retry).service(hyper_client());
        HyperUtil(errors_are_retry_errors(svc))
    }

    fn send(&self, method: Method, url: String) -> impl Future<Output = Got> + Send {
        let svc = self.0.clone();
        async move {
            match svc.oneshot(request(method, &url)).await {
                Ok(resp) => Got::Response {
                    status: resp.status().as_u16(),
                    info: info(&resp),
                    retry_after: retry_after(resp.headers()),
                },
                Err(err) => {
                    if let Some(inner) = err.get_inner() {
                        assert!(
                            inner
                                .downcast_ref::<hyper_util::client::legacy::Error>()
                                .is_some(),
                            "the inner error is the client's own: {inner:?}"
                        );
                    }
                    got_of(&err)
                }
            }
        }
    }
}

fn retry_after(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get(RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_owned())
}

/// A tower-side `RetryError` as a [`Got`].
#[track_caller]
fn got_of(err: &RetryError) -> Got {
    match (err.kind(), err.get_inner()) {
        (RetryErrorKind::Inner, Some(inner)) => Got::Inner {
            kind: TransportErrorKind::of_error(inner),
            info: err.info(),
        },
        (RetryErrorKind::Inner, None) => panic!("an Inner RetryError without the inner error"),
        (kind, None) => Got::Engine {
            kind,
            info: err.info(),
            cooldown: err.cooldown(),
            message: err.to_string(),
        },
        (kind, Some(inner)) => panic!("a {kind:?} RetryError with an inner error: {inner:?}"),
    }
}

/// An extension the caller sets; the middleware must keep it on every outcome.
#[derive(Clone, Debug, PartialEq)]
struct CallerTag(&'static str);

/// (c) The reqwest middleware.
#[derive(Clone)]
struct ReqwestMiddleware(ClientWithMiddleware);

fn reqwest_client(retry: TelEchoRetry) -> ClientWithMiddleware {
    let inner = reqwest::Client::builder().no_proxy().build().unwrap();
    ClientBuilder::new(inner).with(retry).build()
}

/// Sends through the middleware with a [`CallerTag`] in the caller's extensions; returns
/// the result and the extensions afterwards.
async fn execute(
    client: &ClientWithMiddleware,
    method: Method,
    url: &str,
) -> (reqwest_middleware::Result<reqwest::Response>, Extensions) {
    let mut extensions = Extensions::new();
    extensions.insert(CallerTag("caller"));
    let req = client.request(method, url).body("{}").build().unwrap();
    let result = client.execute_with_extensions(req, &mut extensions).await;
    (result, extensions)
}

impl Adapter for ReqwestMiddleware {
    fn over(retry: TelEchoRetry) -> Self {
        ReqwestMiddleware(reqwest_client(retry))
    }

    fn send(&self, method: Method, url: String) -> impl Future<Output = Got> + Send {
        let client = self.0.clone();
        async move {
            let (result, extensions) = execute(&client, method, &url).await;
            assert_eq!(
                extensions.get::<CallerTag>(),
                Some(&CallerTag("caller")),
                "the caller's extensions are kept: {result:?}"
            );
            match result {
                Ok(resp) => {
                    let info = RetryInfo::of(resp.extensions());
                    assert_eq!(RetryInfo::of(&extensions), info, "the caller sees the info");
                    Got::Response {
                        status: resp.status().as_u16(),
                        info,
                        retry_after: retry_after(resp.headers()),
                    }
                }
                Err(err) => {
                    // Every failure is a `RetryError`, with the same info as the
                    // caller's extensions.
                    let err = RetryError::of(&err).expect("a RetryError");
                    assert_eq!(extensions.get::<RetryInfo>(), Some(&err.info()));
                    match err.get_inner() {
                        Some(inner) => Got::Inner {
                            kind: TransportErrorKind::of_error(inner),
                            info: err.info(),
                        },
                        None => got_of(err),
                    }
                }
            }
        }
    }
}

/// One real-socket test per adapter, each calling the generic behaviour under a 2 s bound.
macro_rules! real_socket_tests {
    ($($behaviour:ident { $($adapter:ty => $(#[$attr:meta])* $name:ident;)+ })*) => {
        $($(
            $(#[$attr])*
            #[tokio::test]
            async fn $name() {
                bounded($behaviour::<$adapter>()).await;
            }
        )+)*
    };
}

/// A URL on a port nobody listens on.
fn refused_url() -> String {
    format!("http://{}/v1/calls", crate::support::closed_addr())
}

/// Answers `first` to the first request for `path`, `rest` to everything else.
fn first_then(path: &'static str, first: Reply, rest: Reply) -> impl Fn(&support::Seen) -> Reply {
    let n = AtomicUsize::new(0);
    move |seen| {
        if seen.path == path && n.fetch_add(1, Ordering::SeqCst) == 0 {
            first.clone()
        } else {
            rest.clone()
        }
    }
}

fn limited_reply(retry_after: &str) -> Reply {
    Reply::status(429).header("retry-after", retry_after)
}

// The submodules come after `real_socket_tests!`, which they use.
mod budget;
mod cooldown;
mod errors;
mod extensions;
mod origins;
mod pacing;
mod stacks;
mod timeouts;
