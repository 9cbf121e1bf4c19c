//! The scenarios, each sent through the adapters, printed and checked against what the
//! demo promises of it.

use super::*;

impl Demo {
    pub(super) async fn rate_limit(&self) -> Vec<String> {
        let path = "/v1/calls";
        let mut problems = Vec::new();
        for via in [Via::Reqwest, Via::Tower] {
            self.mock.script(
                path,
                vec![
                    Reply::error(429, "rate_limit_per_minute").retry_after(1),
                    Reply::unavailable(),
                    Reply::json(201, r#"{"id":"tel_call_demo42","status":"queued"}"#),
                ],
            );
            let call = Call {
                method: Method::POST,
                path,
                key: API_KEY,
                idempotency_key: Some(format!("demo-call-{}", via.short())),
                body: Some(Bytes::from_static(
                    br#"{"agent_id":"tel_agent_demo","to":"+15550100"}"#,
                )),
            };
            println!(
                "\n  POST {path} with Idempotency-Key: demo-call-{}, via {}",
                via.short(),
                via.label()
            );
            let mut c = Checks::default();
            match self.send(via, call).await {
                Ok(sent) => {
                    let hits = self.report(&sent, path);
                    c.expect(sent.status == StatusCode::CREATED, "final status is 201");
                    c.expect(sent.info.attempts() == 3, "3 attempts");
                    c.expect(hits.len() == 3, "the server saw 3 requests");
                    if let [h1, h2, h3] = &hits[..] {
                        let gap1 = h2.at - h1.at;
                        let gap2 = h3.at - h2.at;
                        c.expect(
                            gap1 >= Duration::from_secs(1),
                            format!("attempt 2 waited out Retry-After: 1 (gap {})", secs(gap1)),
                        );
                        c.expect(
                            gap1 <= Duration::from_secs(1) + RETRY_AFTER_SPREAD + SLACK,
                            format!(
                                "attempt 2 came no later than 1 s + spread (gap {})",
                                secs(gap1)
                            ),
                        );
                        // Retry 2 on the backoff ladder: nominal 2 x base, jittered to [base, 3 x base].
                        c.expect(
                            gap2 >= BASE_DELAY && gap2 <= BASE_DELAY * 3 + SLACK,
                            format!(
                                "attempt 3 came after a backoff in [{}, {}] (gap {})",
                                secs(BASE_DELAY),
                                secs(BASE_DELAY * 3),
                                secs(gap2)
                            ),
                        );
                    }
                    let key = format!("demo-call-{}", via.short());
                    c.expect(
                        hits.iter()
                            .all(|h| h.idempotency_key.as_deref() == Some(&key)),
                        "every attempt carried the same Idempotency-Key",
                    );
                    c.expect(
                        sent.info.stop_reason() == Some(StopReason::Success),
                        "stop reason is success",
                    );
                    c.expect(
                        sent.result
                            .as_ref()
                            .is_ok_and(|b| b.starts_with(br#"{"id":"tel_call_demo42""#)),
                        "the caller got the created call",
                    );
                    println!("  The 429 and the 503 were absorbed: the caller only sees the 201.");
                }
                Err(e) => c.fail(e),
            }
            problems.extend(c.finish(via));
        }
        problems
    }

    pub(super) async fn bad_key(&self) -> Vec<String> {
        let path = "/v1/agents";
        let mut problems = Vec::new();
        for via in [Via::Reqwest, Via::Tower] {
            self.mock
                .script(path, vec![Reply::json(200, r#"{"data":[]}"#)]);
            let call = Call {
                method: Method::GET,
                path,
                key: "tel_sk_not_a_real_key",
                idempotency_key: None,
                body: None,
            };
            println!(
                "\n  GET {path} with Authorization: Bearer tel_sk_not_a_real_key, via {}",
                via.label()
            );
            let mut c = Checks::default();
            match self.send(via, call).await {
                Ok(sent) => {
                    self.report(&sent, path);
                    c.expect(
                        sent.status == StatusCode::UNAUTHORIZED,
                        "final status is 401",
                    );
                    c.expect(
                        sent.info.attempts() == 1,
                        "1 attempt: a 4xx is never retried",
                    );
                    c.expect(
                        sent.info.stop_reason() == Some(StopReason::Fatal),
                        "stop reason is fatal",
                    );
                    c.expect(
                        sent.elapsed < Duration::from_millis(500),
                        format!("handed back at once (took {})", secs(sent.elapsed)),
                    );
                    match &sent.result {
                        Err(err) => {
                            println!("  Typed error: {err}");
                            match err.code() {
                                Some(ErrorCode::InvalidApiKey) => println!(
                                    "  `match err.code()` hits ErrorCode::InvalidApiKey: fix the key, retrying cannot help."
                                ),
                                other => c.fail(format!(
                                    "expected ErrorCode::InvalidApiKey, got {other:?}"
                                )),
                            }
                        }
                        Ok(_) => c.fail("expected a typed ResponseError, got a success"),
                    }
                }
                Err(e) => c.fail(e),
            }
            problems.extend(c.finish(via));
        }
        problems
    }

    pub(super) async fn long_retry_after(&mut self) -> Vec<String> {
        let path = "/v1/phone-numbers";
        let mut problems = Vec::new();
        self.mock.script(
            path,
            vec![
                Reply::error(429, "rate_limit_per_hour").retry_after(3600),
                Reply::json(200, r#"{"data":[]}"#),
            ],
        );
        let call = Call {
            method: Method::GET,
            path,
            key: API_KEY,
            idempotency_key: None,
            body: None,
        };
        println!("\n  GET {path}, via {}", Via::Reqwest.label());
        let mut c = Checks::default();
        match self.send(Via::Reqwest, call).await {
            Ok(sent) => {
                self.report(&sent, path);
                c.expect(
                    sent.status == StatusCode::TOO_MANY_REQUESTS,
                    "final status is 429",
                );
                c.expect(sent.info.attempts() == 1, "1 attempt");
                c.expect(
                    sent.info.stop_reason() == Some(StopReason::RetryAfterTooLong),
                    "stop reason is retry_after_too_long",
                );
                c.expect(
                    sent.elapsed < Duration::from_millis(500),
                    format!("handed back at once (took {})", secs(sent.elapsed)),
                );
                match &sent.result {
                    Err(err) => {
                        println!("  Typed error: {err}");
                        println!(
                            "  err.retry_after() is {:?}: the caller decides what to do (queue the job, tell the user).",
                            err.retry_after().unwrap_or_default()
                        );
                        c.expect(
                            err.code() == Some(&ErrorCode::RateLimitPerHour),
                            "code is rate_limit_per_hour",
                        );
                        c.expect(
                            err.retry_after() == Some(Duration::from_secs(3600)),
                            "the Retry-After header reached the caller intact",
                        );
                    }
                    Ok(_) => c.fail("expected a typed ResponseError, got a success"),
                }
            }
            Err(e) => c.fail(e),
        }
        problems.extend(c.finish(Via::Reqwest));

        // The same `TelEchoRetry` serves the tower client: until the hour passes, it does
        // not send what would meet the same 429, and fails at once instead.
        println!("\n  GET {path} again, via {}", Via::Tower.label());
        let mut c = Checks::default();
        let hits_before = self.mock.hits(path).len();
        let req = http::Request::get(self.mock.url(path))
            .header(AUTHORIZATION, format!("Bearer {API_KEY}"))
            .body(Full::new(Bytes::new()))
            .expect("a request");
        let start = Instant::now();
        self.tally.request(0);
        self.tally.refused.set(self.tally.refused.get() + 1);
        match self.tower.clone().oneshot(req).await {
            Ok(resp) => c.fail(format!(
                "expected a rate-limited error, got {}",
                resp.status()
            )),
            Err(err) => {
                println!(
                    "  Not sent: {err} (RetryError, kind {:?}, {} attempts)",
                    err.kind(),
                    err.info().attempts()
                );
                c.expect(err.is_rate_limited(), "the error says rate limited");
                c.expect(
                    err.cooldown()
                        .is_some_and(|c| c > Duration::from_secs(3500)),
                    "it carries the remaining wait",
                );
                c.expect(err.info().attempts() == 0, "0 attempts");
            }
        }
        c.expect(
            start.elapsed() < Duration::from_millis(500),
            "failed at once",
        );
        c.expect(
            self.mock.hits(path).len() == hits_before,
            "nothing reached the server",
        );
        problems.extend(c.finish(Via::Tower));
        problems
    }

    pub(super) async fn streaming(&self) -> Vec<String> {
        let path = "/v1/agents/tel_agent_demo/files";
        let mut problems = Vec::new();
        println!(
            "\n  (Streaming bodies are the reqwest middleware's job: it records up to the replay buffer,"
        );
        println!(
            "  {} KiB here, while sending. Under the tower layer, the request's body type decides.)",
            REPLAY_BUFFER / 1024
        );
        for (size, replies) in [
            (
                32 * 1024,
                vec![Reply::unavailable(), Reply::json(201, "{}")],
            ),
            (
                4 * 1024,
                vec![
                    Reply::unavailable(),
                    Reply::json(201, r#"{"id":"tel_file_demo7"}"#),
                ],
            ),
        ] {
            let fits = size <= REPLAY_BUFFER;
            self.mock.script(path, replies);
            println!(
                "\n  POST {path} with a {} KiB streaming body (reqwest::Body::wrap_stream), {} the {} KiB buffer",
                size / 1024,
                if fits { "within" } else { "larger than" },
                REPLAY_BUFFER / 1024
            );
            let mut c = Checks::default();
            match self.send_stream(path, size).await {
                Ok(sent) => {
                    let hits = self.report(&sent, path);
                    c.expect(
                        hits.iter().all(|h| h.body_len == size),
                        format!("every attempt delivered all {size} bytes"),
                    );
                    if fits {
                        c.expect(sent.status == StatusCode::CREATED, "final status is 201");
                        c.expect(
                            sent.info.attempts() == 2,
                            "2 attempts: the body was replayed",
                        );
                        println!("  The body fit the buffer, so the retry replayed it.");
                    } else {
                        c.expect(
                            sent.status == StatusCode::SERVICE_UNAVAILABLE,
                            "final status is the 503",
                        );
                        c.expect(sent.info.attempts() == 1, "1 attempt: sent once");
                        c.expect(
                            sent.info.stop_reason() == Some(StopReason::NotReplayable),
                            "stop reason is not_replayable",
                        );
                        c.expect(
                            sent.elapsed < Duration::from_millis(500),
                            format!("handed back at once (took {})", secs(sent.elapsed)),
                        );
                        println!(
                            "  The body outgrew the buffer, so it could not be sent again: the 503 is handed back."
                        );
                    }
                }
                Err(e) => c.fail(e),
            }
            problems.extend(c.finish(Via::Reqwest));
        }
        problems
    }
}

/// The checks of one run.
#[derive(Default)]
struct Checks {
    failed: Vec<String>,
}

impl Checks {
    fn expect(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            self.failed.push(format!("expected: {}", what.into()));
        }
    }

    fn fail(&mut self, what: impl Into<String>) {
        self.failed.push(what.into());
    }

    fn finish(self, via: Via) -> Vec<String> {
        if self.failed.is_empty() {
            println!("  [ok] behaved as described");
        } else {
            for f in &self.failed {
                println!("  [MISMATCH] {f}");
            }
        }
        self.failed
            .into_iter()
            .map(|f| format!("via {}: {f}", via.short()))
            .collect()
    }
}
