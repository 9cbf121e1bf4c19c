//! The demo's two clients, the reqwest middleware and the tower layer over hyper-util
//! (one `TelEchoRetry` under both), and sending a scenario's requests through them.

use super::*;

impl Demo {
    pub(super) async fn start(events: capture::Events) -> Demo {
        let (reqwest, tower) = Demo::clients();
        Demo {
            mock: MockApi::start().await,
            events,
            tally: Tally::default(),
            reqwest,
            tower,
        }
    }

    /// Both clients, sharing one `TelEchoRetry` (and so its budget and cooldown).
    fn clients() -> (ClientWithMiddleware, TowerClient) {
        // One policy for both adapters: the TelEcho contract, with delays shortened so that
        // the demo is quick. The defaults are base 1 s, cap 30 s, Retry-After cap 60 s.
        let policy = RetryPolicy::builder()
            .max_retries(MAX_RETRIES)
            .base_delay(BASE_DELAY)
            .max_delay(MAX_DELAY)
            .max_retry_after(MAX_RETRY_AFTER)
            .retry_after_spread(RETRY_AFTER_SPREAD)
            .build();
        let retry = TelEchoRetry::new(policy).replay_buffer(REPLAY_BUFFER);

        let reqwest = reqwest_middleware::ClientBuilder::new(
            reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("a reqwest client"),
        )
        .with(retry.clone())
        .build();

        let hyper = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let tower = tower::ServiceBuilder::new().layer(retry).service(hyper);
        (reqwest, tower)
    }

    pub(super) fn reset_clients(&mut self) {
        (self.reqwest, self.tower) = Demo::clients();
    }

    // ===== sending =====

    pub(super) async fn send(&self, via: Via, call: Call) -> Result<Sent, String> {
        self.events.clear();
        let sent = self.send_once(via, call).await;
        self.tally
            .request(sent.as_ref().map_or(0, |s| s.info.retries()));
        sent
    }

    async fn send_once(&self, via: Via, call: Call) -> Result<Sent, String> {
        let start = Instant::now();
        let url = self.mock.url(call.path);
        let auth = format!("Bearer {}", call.key);
        let (status, info, result) = match via {
            Via::Reqwest => {
                let mut req = self
                    .reqwest
                    .request(call.method, url)
                    .header(AUTHORIZATION, auth);
                if let Some(key) = call.idempotency_key {
                    req = req.header("idempotency-key", key);
                }
                if let Some(body) = call.body {
                    req = req.header(CONTENT_TYPE, "application/json").body(body);
                }
                let resp = req
                    .send()
                    .await
                    .map_err(|e| format!("request failed: {e}"))?;
                let status = resp.status();
                let info = retry_info(resp.extensions())?;
                // `api_error_for_status` turns a 4xx/5xx into a typed `ResponseError`.
                let result = match resp.api_error_for_status().await {
                    Ok(resp) => Ok(resp
                        .bytes()
                        .await
                        .map_err(|e| format!("reading the body failed: {e}"))?),
                    Err(err) => Err(err),
                };
                (status, info, result)
            }
            Via::Tower => {
                let mut req = http::Request::builder()
                    .method(call.method)
                    .uri(url)
                    .header(AUTHORIZATION, auth);
                if let Some(key) = call.idempotency_key {
                    req = req.header("idempotency-key", key);
                }
                if call.body.is_some() {
                    req = req.header(CONTENT_TYPE, "application/json");
                }
                let req = req
                    .body(Full::new(call.body.unwrap_or_default()))
                    .map_err(|e| format!("bad request: {e}"))?;
                let resp = self
                    .tower
                    .clone()
                    .oneshot(req)
                    .await
                    .map_err(|e| format!("request failed: {e}"))?;
                let status = resp.status();
                let info = retry_info(resp.extensions())?;
                let (parts, body) = resp.into_parts();
                let body = body
                    .collect()
                    .await
                    .map_err(|e| format!("reading the body failed: {e}"))?
                    .to_bytes();
                // The same typed error, for an `http::Response<Bytes>`.
                let result = http::Response::from_parts(parts, body)
                    .api_error_for_status()
                    .map(http::Response::into_body);
                (status, info, result)
            }
        };
        Ok(Sent {
            started: start,
            status,
            info,
            elapsed: start.elapsed(),
            result,
        })
    }

    /// POSTs `size` bytes as a stream of 1 KiB chunks through the reqwest middleware.
    pub(super) async fn send_stream(&self, path: &str, size: usize) -> Result<Sent, String> {
        self.events.clear();
        let sent = self.send_stream_once(path, size).await;
        self.tally
            .request(sent.as_ref().map_or(0, |s| s.info.retries()));
        sent
    }

    async fn send_stream_once(&self, path: &str, size: usize) -> Result<Sent, String> {
        let start = Instant::now();
        let chunks =
            (0..size / 1024).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 1024])));
        let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
        let resp = self
            .reqwest
            .post(self.mock.url(path))
            .header(AUTHORIZATION, format!("Bearer {API_KEY}"))
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = resp.status();
        let info = retry_info(resp.extensions())?;
        let result = match resp.api_error_for_status().await {
            Ok(resp) => Ok(resp
                .bytes()
                .await
                .map_err(|e| format!("reading the body failed: {e}"))?),
            Err(err) => Err(err),
        };
        Ok(Sent {
            started: start,
            status,
            info,
            elapsed: start.elapsed(),
            result,
        })
    }
}

fn retry_info(extensions: &http::Extensions) -> Result<RetryInfo, String> {
    // No RetryInfo means one attempt that succeeded; `RetryInfo::of` reads it that way.
    Ok(RetryInfo::of(extensions))
}
