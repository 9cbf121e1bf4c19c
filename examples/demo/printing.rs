//! What the demo prints: its introduction, and the timeline of each run (the server's
//! record of the attempts beside the crate's decisions, read from its tracing events).

use super::*;

impl Demo {
    pub(super) fn intro(&self) {
        println!("telecho-retry demo");
        println!(
            "A mock TelEcho API listens on {} (in this process). Each scenario sends real HTTP",
            self.mock.url("")
        );
        println!("requests through the crate's reqwest middleware and/or its tower layer.");
        println!();
        println!(
            "Policy, shortened so that the whole demo ends in under {} s (defaults in brackets):",
            TIME_LIMIT.as_secs()
        );
        println!(
            "  max_retries {MAX_RETRIES} [5]; backoff base {} ms, doubling, jittered, capped at {} s [1 s .. 30 s];",
            BASE_DELAY.as_millis(),
            MAX_DELAY.as_secs()
        );
        println!(
            "  Retry-After honoured up to {} s [60 s], plus 0..{} ms of spread [500 ms]; replay buffer {} KiB [64 KiB].",
            MAX_RETRY_AFTER.as_secs(),
            RETRY_AFTER_SPREAD.as_millis(),
            REPLAY_BUFFER / 1024
        );
        println!();
        println!("Timeline columns: time since the request was sent | attempt | what the server");
        println!(
            "answered | what the crate decided (from its tracing events) | how long it waited."
        );
    }

    /// Prints the timeline of the run just made and what the caller got; returns the
    /// server's record of it.
    pub(super) fn report(&self, sent: &Sent, path: &str) -> Vec<Hit> {
        let hits = self.mock.hits(path);
        let events = self.events.take();
        println!(
            "    {:<8} {:<4} {:<46} {:<40} then waited",
            "time", "try", "server answered", "client decided"
        );
        for (i, hit) in hits.iter().enumerate() {
            let attempt = i as u64 + 1;
            let mut answer = format!(
                "{} {}",
                hit.status.as_u16(),
                hit.code
                    .unwrap_or(hit.status.canonical_reason().unwrap_or(""))
            );
            if let Some(ra) = &hit.retry_after {
                answer.push_str(&format!(", Retry-After: {ra}"));
            }
            if hit.body_len >= 1024 {
                answer.push_str(&format!(" ({} B in)", hit.body_len));
            }
            let retry = events
                .iter()
                .find(|e| e.attempt == Some(attempt) && e.delay_ms.is_some());
            let (decision, wait) = match retry {
                Some(e) => {
                    let how = if e.decision.contains("RetryAfter") {
                        "retry: Retry-After + spread"
                    } else if e.decision.contains("Backoff") {
                        "retry: exponential backoff"
                    } else {
                        "retry"
                    };
                    let wait = Duration::from_millis(e.delay_ms.unwrap_or(0));
                    (how.to_owned(), secs(wait))
                }
                None if i + 1 == hits.len() => (stop_text(sent.info.stop_reason()), "-".into()),
                None => ("(no tracing event seen)".into(), "?".into()),
            };
            println!(
                "    +{:<7} #{:<3} {:<46} {:<40} {}",
                secs(hit.at.saturating_duration_since(sent.started)),
                attempt,
                answer,
                decision,
                wait
            );
        }
        let what = match &sent.result {
            Ok(body) => format!("Ok, body {}", String::from_utf8_lossy(body)),
            Err(err) => format!("Err(ResponseError: {err})"),
        };
        println!(
            "  Caller got {} after {} attempt(s), {} asleep, {} in all: {what}",
            sent.status,
            sent.info.attempts(),
            secs(sent.info.slept()),
            secs(sent.elapsed)
        );
        hits
    }
}

fn stop_text(reason: Option<StopReason>) -> String {
    match reason {
        Some(StopReason::Success) => "accept: hand it to the caller".into(),
        Some(StopReason::Fatal) => "fatal (4xx): hand it back now".into(),
        Some(StopReason::RetryAfterTooLong) => format!(
            "Retry-After > {} s cap: hand it back now",
            MAX_RETRY_AFTER.as_secs()
        ),
        Some(StopReason::NotReplayable) => "body not replayable: hand it back".into(),
        Some(StopReason::MaxRetries) => "out of retries: hand it back".into(),
        Some(other) => format!("stop: {other}"),
        None => "?".into(),
    }
}
