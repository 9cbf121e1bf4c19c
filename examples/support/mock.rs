//! A tiny in-process mock of the TelEcho API, shared by the examples.
//!
//! It listens on `127.0.0.1:0` (a free loopback port), speaks the contract of
//! `telecho-errors.md` (the JSON error envelope, its codes, `Retry-After`), and records
//! every request it receives so that an example can print and check what really went over
//! the wire.
//!
//! - Every request must carry `Authorization: Bearer <API_KEY>`; otherwise the mock answers
//!   401 `missing_api_key` or 401 `invalid_api_key`, on every route.
//! - Each route (a path) plays a *script*: a list of canned replies served in order, the
//!   last one repeated once the list runs out. [`MockApi::script`] sets (and resets) one.
//! - The mock reads each request body to the end before answering, and records its length.
//!
//! Cargo does not build files in subdirectories of `examples/` as examples of their own;
//! each example includes this file with `#[path = "support/mock.rs"] mod mock;` (the
//! demo, a directory, with `#[path = "../support/mock.rs"]`).

// Not every example uses every helper.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The only API key the mock accepts.
pub(crate) const API_KEY: &str = "tel_sk_demo_0123456789";

/// One canned reply.
#[derive(Clone, Debug)]
pub(crate) struct Reply {
    status: StatusCode,
    code: Option<&'static str>,
    retry_after: Option<String>,
    body: String,
}

impl Reply {
    /// An error reply: `status` with the TelEcho envelope for `code`.
    pub(crate) fn error(status: u16, code: &'static str) -> Reply {
        let status = StatusCode::from_u16(status).expect("a valid status");
        let body = format!(
            r#"{{"error":{{"type":"{}","code":"{}","message":"{}"}}}}"#,
            error_type(code),
            code,
            message(code)
        );
        Reply {
            status,
            code: Some(code),
            retry_after: None,
            body,
        }
    }

    /// A 503 from the infrastructure in front of the API: plain text, no TelEcho envelope.
    pub(crate) fn unavailable() -> Reply {
        Reply {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: None,
            retry_after: None,
            body: "upstream temporarily unavailable".into(),
        }
    }

    /// A success reply with a JSON body.
    pub(crate) fn json(status: u16, body: &str) -> Reply {
        Reply {
            status: StatusCode::from_u16(status).expect("a valid status"),
            code: None,
            retry_after: None,
            body: body.into(),
        }
    }

    /// Adds `Retry-After: <secs>`.
    pub(crate) fn retry_after(mut self, secs: u64) -> Reply {
        self.retry_after = Some(secs.to_string());
        self
    }
}

/// The `error.type` the mock sends for a code.
fn error_type(code: &str) -> &'static str {
    match code {
        "missing_api_key" | "invalid_api_key" | "revoked_api_key" | "expired_api_key" => {
            "authentication_error"
        }
        "rate_limit_per_minute" | "rate_limit_per_hour" => "rate_limit_error",
        "call_blocked" => "billing_error",
        "outbound_call_failed" => "telephony_error",
        c if c.ends_with("_not_found") => "not_found_error",
        _ => "invalid_request_error",
    }
}

/// The human-readable message the mock sends for a code.
fn message(code: &str) -> &'static str {
    match code {
        "missing_api_key" => "No Authorization header sent.",
        "invalid_api_key" => "The API key provided is invalid.",
        "rate_limit_per_minute" => "Rate limit exceeded: too many requests this minute.",
        "rate_limit_per_hour" => "Rate limit exceeded: too many requests this hour.",
        "call_blocked" => "Subscription expired, cancelled, or out of minutes.",
        "outbound_call_failed" => "The outbound dial failed (SIP error).",
        "agent_not_found" => "No such agent in your org.",
        _ => "Request failed.",
    }
}

/// One request as the mock saw it, and what it answered.
#[derive(Clone, Debug)]
pub(crate) struct Hit {
    /// When the request head arrived.
    pub(crate) at: Instant,
    pub(crate) method: String,
    pub(crate) status: StatusCode,
    /// The TelEcho code of the reply, if it was an error with one.
    pub(crate) code: Option<&'static str>,
    pub(crate) retry_after: Option<String>,
    /// Bytes of request body received.
    pub(crate) body_len: usize,
    pub(crate) idempotency_key: Option<String>,
}

#[derive(Default)]
struct Route {
    replies: Vec<Reply>,
    served: usize,
    hits: Vec<Hit>,
}

type Routes = Arc<Mutex<HashMap<String, Route>>>;

/// The running mock. Dropping it stops accepting connections.
pub(crate) struct MockApi {
    addr: SocketAddr,
    routes: Routes,
    accept: JoinHandle<()>,
}

impl MockApi {
    /// Binds `127.0.0.1:0` and starts serving in the background.
    pub(crate) async fn start() -> MockApi {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let routes = Routes::default();
        let shared = Arc::clone(&routes);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let routes = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(Arc::clone(&routes), req));
                    // A client closing its connection early is not the mock's problem.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        MockApi {
            addr,
            routes,
            accept,
        }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sets the script of `path` (replies served in order, the last one repeated) and
    /// forgets its earlier hits.
    pub(crate) fn script(&self, path: &str, replies: Vec<Reply>) {
        assert!(!replies.is_empty(), "a script needs at least one reply");
        let mut routes = self.routes.lock().expect("mock state");
        routes.insert(
            path.to_owned(),
            Route {
                replies,
                ..Route::default()
            },
        );
    }

    /// Every request `path` received since its script was set, in arrival order.
    pub(crate) fn hits(&self, path: &str) -> Vec<Hit> {
        let routes = self.routes.lock().expect("mock state");
        routes.get(path).map(|r| r.hits.clone()).unwrap_or_default()
    }
}

impl Drop for MockApi {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn handle(
    routes: Routes,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let at = Instant::now();
    let (parts, body) = req.into_parts();
    // Read the whole body first, as a real API behind a proxy would.
    let body_len = match body.collect().await {
        Ok(b) => b.to_bytes().len(),
        Err(_) => 0,
    };
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    // Authentication comes first on every route; only scripted replies advance a script.
    let (reply, scripted) = match header("authorization") {
        None => (Reply::error(401, "missing_api_key"), false),
        Some(auth) if auth != format!("Bearer {API_KEY}") => {
            (Reply::error(401, "invalid_api_key"), false)
        }
        Some(_) => {
            let routes = routes.lock().expect("mock state");
            match routes.get(parts.uri.path()) {
                Some(route) if !route.replies.is_empty() => {
                    let next = route.served.min(route.replies.len() - 1);
                    (route.replies[next].clone(), true)
                }
                _ => (
                    Reply::json(
                        404,
                        r#"{"error":{"type":"invalid_request_error","code":"not_found","message":"No such route in the mock."}}"#,
                    ),
                    false,
                ),
            }
        }
    };
    {
        let mut routes = routes.lock().expect("mock state");
        let route = routes.entry(parts.uri.path().to_owned()).or_default();
        if scripted {
            route.served += 1;
        }
        route.hits.push(Hit {
            at,
            method: parts.method.to_string(),
            status: reply.status,
            code: reply.code,
            retry_after: reply.retry_after.clone(),
            body_len,
            idempotency_key: header("idempotency-key"),
        });
    }
    let content_type = if reply.body.starts_with('{') {
        "application/json"
    } else {
        "text/plain"
    };
    let mut resp = Response::builder()
        .status(reply.status)
        .header("content-type", content_type);
    if let Some(ra) = &reply.retry_after {
        resp = resp.header("retry-after", ra);
    }
    Ok(resp
        .body(Full::new(Bytes::from(reply.body)))
        .expect("a valid response"))
}

/// Formats `d` as seconds with millisecond precision: `1.042s`.
pub(crate) fn secs(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}
