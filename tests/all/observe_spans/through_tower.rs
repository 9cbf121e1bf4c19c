//! The attempt spans through the tower layer over `tower::service_fn` on a paused clock.

use super::*;

#[tokio::test(start_paused = true)]
async fn tower_each_attempt_runs_in_its_own_span_with_the_resend_count() {
    let capture = Capture::default();
    let _guard = capture.install();
    let svc = TelEchoRetry::new(exact().build()).layer(scripted(vec![
        status(503),
        status(503),
        status(200),
    ]));
    let resp = svc
        .oneshot(request("POST", "http://api.telecho.test/v1/calls"))
        .instrument(tracing::info_span!("caller"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let c = capture.get();
    let caller = c.spans.iter().position(|s| s.name == "caller");
    let attempts = c.named(ATTEMPT_SPAN);
    assert_eq!(attempts.len(), 3, "one span per attempt: {attempts:#?}");
    for a in &attempts {
        assert!(a.closed, "every attempt span ends with its attempt");
        assert_eq!(a.parent, caller, "a child of the caller's span");
        assert_eq!(a.get(field::REQUEST_METHOD), Some("POST"));
    }
    assert_eq!(
        column(&attempts, field::RESEND_COUNT),
        [None, Some("1"), Some("2")]
    );
    assert_eq!(
        column(&attempts, field::RESPONSE_STATUS_CODE),
        [Some("503"), Some("503"), Some("200")]
    );
    assert_eq!(
        column(&attempts, field::ERROR_TYPE),
        [Some("503"), Some("503"), None]
    );
    assert_eq!(
        column(&attempts, field::OTEL_STATUS_CODE),
        [Some("ERROR"), Some("ERROR"), None]
    );
    assert_eq!(
        column(&attempts, field::DECISION),
        [Some("backoff"), Some("backoff"), Some("accept")]
    );
    assert_eq!(
        column(&attempts, field::RETRY_DELAY_MS),
        [Some("1000"), Some("2000"), None]
    );
    assert_eq!(
        column(&attempts, field::STOP_REASON),
        [None, None, Some("success")]
    );

    // The inner service's spans, made when it is called and when its future is polled, are
    // children of the attempt they serve.
    for name in ["inner.call", "inner.poll"] {
        let inner = c.named(name);
        assert_eq!(inner.len(), 3, "{name}");
        for (i, span) in inner.iter().enumerate() {
            let parent = &c.spans[span.parent.expect("inner spans have a parent")];
            assert_eq!(parent.name, ATTEMPT_SPAN, "{name} #{i}");
            assert_eq!(
                parent.get(field::RESEND_COUNT),
                [None, Some("1"), Some("2")][i],
                "{name} #{i} belongs to attempt {}",
                i + 1
            );
        }
    }

    // The `retrying` events happen inside the attempt they follow.
    let retrying: Vec<_> = c
        .events
        .iter()
        .filter(|e| e.fields.get("message").map(String::as_str) == Some("retrying"))
        .collect();
    assert_eq!(retrying.len(), 2);
    for (i, e) in retrying.iter().enumerate() {
        let span = &c.spans[e.span.expect("inside a span")];
        assert_eq!(span.name, ATTEMPT_SPAN);
        assert_eq!(span.get(field::RESEND_COUNT), [None, Some("1")][i]);
        assert_eq!(e.fields["attempt"], (i + 1).to_string());
    }
}

#[tokio::test(start_paused = true)]
async fn tower_transport_errors_and_timeouts_are_the_error_type() {
    let capture = Capture::default();
    let _guard = capture.install();
    let policy = exact().attempt_timeout(Duration::from_secs(1)).build();
    let svc = TelEchoRetry::new(policy).layer(scripted(vec![
        Answer::Fail(io::ErrorKind::ConnectionRefused),
        Answer::Hang,
        status(204),
    ]));
    let resp = svc
        .oneshot(request("GET", "http://api.telecho.test/v1/agents"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);

    let c = capture.get();
    let attempts = c.named(ATTEMPT_SPAN);
    assert_eq!(
        column(&attempts, field::ERROR_TYPE),
        [Some("connect"), Some("timeout"), None]
    );
    assert_eq!(
        column(&attempts, field::RESPONSE_STATUS_CODE),
        [None, None, Some("204")]
    );
    assert_eq!(
        column(&attempts, field::RESEND_COUNT),
        [None, Some("1"), Some("2")]
    );
    assert_eq!(column(&attempts, field::REQUEST_METHOD), [Some("GET"); 3]);
}

#[tokio::test(start_paused = true)]
async fn tower_fatal_401_is_one_span_that_says_so() {
    let capture = Capture::default();
    let _guard = capture.install();
    let svc = TelEchoRetry::new(exact().build()).layer(scripted(vec![status(401)]));
    let resp = svc
        .oneshot(request("GET", "http://api.telecho.test/v1/agents"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let c = capture.get();
    let attempts = c.named(ATTEMPT_SPAN);
    assert_eq!(attempts.len(), 1);
    let a = attempts[0];
    assert_eq!(a.get(field::RESEND_COUNT), None);
    assert_eq!(a.get(field::ERROR_TYPE), Some("401"));
    assert_eq!(a.get(field::DECISION), Some("fatal"));
    assert_eq!(a.get(field::STOP_REASON), Some("fatal"));
    assert_eq!(a.get(field::RETRY_DELAY_MS), None);
}

#[tokio::test(start_paused = true)]
async fn tower_an_attempt_cut_by_the_deadline_says_deadline() {
    let capture = Capture::default();
    let _guard = capture.install();
    let policy = exact().deadline(Duration::from_secs(2)).build();
    let svc = TelEchoRetry::new(policy).layer(scripted(vec![Answer::Hang]));
    let err = svc
        .oneshot(request("GET", "http://api.telecho.test/v1/agents"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), RetryErrorKind::Deadline);
    let c = capture.get();
    let attempts = c.named(ATTEMPT_SPAN);
    assert_eq!(attempts.len(), 1);
    assert!(attempts[0].closed);
    assert_eq!(attempts[0].get(field::ERROR_TYPE), Some("deadline"));
    assert_eq!(attempts[0].get(field::STOP_REASON), Some("deadline"));
    assert!(c
        .events
        .iter()
        .any(|e| e.fields.get("message").map(String::as_str) == Some("deadline cut the attempt")));
}

#[tokio::test(start_paused = true)]
async fn tower_a_request_dropped_mid_attempt_closes_its_span_as_cancelled() {
    let capture = Capture::default();
    let _guard = capture.install();
    let mut svc = TelEchoRetry::new(exact().build()).layer(scripted(vec![Answer::Hang]));
    let mut fut = task::spawn(
        svc.ready()
            .await
            .unwrap()
            .call(request("GET", "http://api.telecho.test/v1/agents")),
    );
    assert_pending!(fut.poll());
    assert!(!capture.get().named(ATTEMPT_SPAN)[0].closed);
    drop(fut);
    let c = capture.get();
    let a = c.named(ATTEMPT_SPAN)[0];
    assert!(a.closed);
    assert_eq!(a.get(field::STOP_REASON), Some("cancelled"));
}

#[tokio::test(start_paused = true)]
async fn tower_a_request_held_back_by_the_cooldown_logs_the_wait() {
    let capture = Capture::default();
    let _guard = capture.install();
    let svc = TelEchoRetry::new(exact().build())
        .layer(scripted(vec![Answer::Status(429, Some("2")), status(200)]));
    let first = tokio::spawn(
        svc.clone()
            .oneshot(request("GET", "http://api.telecho.test/v1/agents")),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = svc
        .oneshot(request("GET", "http://api.telecho.test/v1/agents"))
        .await
        .unwrap();
    assert_eq!(second.status(), 200);
    assert_eq!(first.await.unwrap().unwrap().status(), 200);
    let c = capture.get();
    let held: Vec<_> = c
        .events
        .iter()
        .filter(|e| {
            e.fields.get("message").map(String::as_str) == Some("held back by the cooldown")
        })
        .collect();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].fields["wait_ms"], "1500");
    // Held back before it was sent: no attempt span was open.
    assert_eq!(held[0].span, None);
    let attempts = c.named(ATTEMPT_SPAN);
    assert_eq!(
        column(&attempts, field::DECISION),
        [Some("retry_after"), Some("accept"), Some("accept")]
    );
}

#[tokio::test(start_paused = true)]
async fn tower_a_429_that_cuts_adaptive_pacing_logs_the_cut() {
    let capture = Capture::default();
    let _guard = capture.install();
    one_adaptive_cut().await;
    let c = capture.get();
    let cuts: Vec<_> = c
        .events
        .iter()
        .filter(|e| e.fields.get("message").map(String::as_str) == Some("pacing rate cut"))
        .collect();
    assert_eq!(cuts.len(), 1, "{:?}", c.events);
    assert!(!cuts[0].fields.contains_key("from"), "not pacing before");
    let to: f64 = cuts[0].fields["to"].parse().unwrap();
    assert!(to >= 0.5, "{to}");
}

#[tokio::test(start_paused = true)]
async fn tower_every_attempt_stays_under_the_span_current_when_the_request_was_made() {
    let capture = Capture::default();
    let _guard = capture.install();
    let mut svc = TelEchoRetry::new(exact().build()).layer(scripted(vec![
        status(503),
        status(503),
        status(200),
    ]));
    let caller = tracing::info_span!("caller");
    let fut = {
        let _entered = caller.enter();
        std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
        svc.call(request("GET", "http://api.telecho.test/v1/agents"))
    };
    // Awaited elsewhere, outside the caller's span.
    let resp = tokio::spawn(fut).await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    let c = capture.get();
    let caller = c.spans.iter().position(|s| s.name == "caller");
    let attempts = c.named(ATTEMPT_SPAN);
    assert_eq!(attempts.len(), 3);
    for a in &attempts {
        assert_eq!(a.parent, caller, "every attempt, retries included: {a:?}");
    }
    // The events' `decision` takes the span field's values.
    let retrying: Vec<_> = c
        .events
        .iter()
        .filter(|e| e.fields.get("message").map(String::as_str) == Some("retrying"))
        .collect();
    assert_eq!(retrying.len(), 2);
    for e in retrying {
        assert_eq!(
            e.fields.get("decision").map(String::as_str),
            Some("backoff")
        );
    }
}
