//! The server: it admits `CAPACITY` requests in each fixed one-second window of the paused
//! clock, and rejects the rest at once.

use super::*;

/// The header that carries the client's index, so that the server tells retries from first
/// attempts (the layer resends the request as it was).
const CLIENT: HeaderName = HeaderName::from_static("x-storm-client");

type Req = Request<Empty<Bytes>>;
type Resp = Response<Empty<Bytes>>;

/// What the server keeps: its fixed window, and what arrived.
pub(super) struct Log {
    window: u64,
    admitted: u32,
    /// Per client: attempts that arrived.
    pub(super) attempts: Vec<u32>,
    /// Every arrival: (time ns, is a retry).
    pub(super) arrivals: Vec<(u64, bool)>,
}

#[derive(Clone)]
pub(super) struct Server {
    scenario: Scenario,
    start: Instant,
    pub(super) log: Arc<Mutex<Log>>,
}

impl Server {
    /// A server for `n` clients, its clock starting now.
    pub(super) fn new(scenario: Scenario, n: usize) -> Self {
        let start = Instant::now();
        let log = Log {
            window: 0,
            admitted: 0,
            attempts: vec![0; n],
            arrivals: Vec::new(),
        };
        Server {
            scenario,
            start,
            log: Arc::new(Mutex::new(log)),
        }
    }

    /// Nanoseconds on the (paused) clock since the storm began.
    pub(super) fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn answer(&self, request: &Req) -> Resp {
        let client: usize = request.headers()[&CLIENT]
            .to_str()
            .ok()
            .and_then(|c| c.parse().ok())
            .expect("every request names its client");
        let t = self.now();
        let mut log = self.log.lock().unwrap();
        let log = &mut *log;
        log.arrivals.push((t, log.attempts[client] > 0));
        log.attempts[client] += 1;
        if t / SECOND != log.window {
            log.window = t / SECOND;
            log.admitted = 0;
        }
        let mut response = Response::new(Empty::new());
        if log.admitted < CAPACITY {
            log.admitted += 1;
            return response;
        }
        match self.scenario {
            Scenario::TooMany => {
                *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
                let to_next = (log.window + 1) * SECOND - t;
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(to_next.div_ceil(SECOND)));
            }
            Scenario::Unavailable => *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE,
        }
        response
    }

    /// The server as the tower service every client sends to.
    pub(super) fn service(
        &self,
    ) -> tower::util::ServiceFn<
        impl FnMut(Req) -> std::future::Ready<Result<Resp, Infallible>> + Clone + Send + 'static,
    > {
        let server = self.clone();
        service_fn(move |request: Req| std::future::ready(Ok(server.answer(&request))))
    }
}

pub(super) fn request(client: usize) -> Req {
    Request::get("http://telecho.test/v1/agents")
        .header(CLIENT, client)
        .body(Empty::new())
        .expect("a valid request")
}
