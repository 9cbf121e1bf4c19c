//! Transport errors: timeouts retried by method and idempotency key, a refused connection.

use super::*;

fn io_error(kind: io::ErrorKind) -> BoxError {
    Box::new(io::Error::new(kind, "inner call failed"))
}

/// Sends `req`, fails its first attempt with `error`, and answers a retry (if one comes
/// 1 s later) with 200. Returns the outcome and the number of attempts the mock saw.
async fn first_attempt_fails(
    req: Request<Full<Bytes>>,
    error: BoxError,
) -> (Result<Response<ResponseBody<String>>, RetryError>, usize) {
    let (method, headers) = (req.method().clone(), req.headers().clone());
    let (mut fut, mut handle) = start(exact(5), req);
    let (_, first) = take_attempt(&mut handle);
    first.send_error(error);
    if let Poll::Ready(result) = fut.poll() {
        advance(secs(3600)).await;
        assert_no_attempt(&mut handle, "after a fatal transport error");
        return (result, 1);
    }
    let (retry, second) = expect_retry_after(&mut fut, &mut handle, secs(1)).await;
    assert_eq!(*retry.method(), method);
    assert_eq!(*retry.headers(), headers);
    second.send_response(status(200));
    (assert_ready!(fut.poll()), 2)
}

#[tokio::test(start_paused = true)]
async fn post_timeout_is_not_retried() {
    let (result, attempts) = first_attempt_fails(post(), io_error(io::ErrorKind::TimedOut)).await;
    assert_eq!(attempts, 1);
    let err = result.expect_err("the timeout is handed back");
    assert_eq!(err.kind(), RetryErrorKind::Inner);
    assert_eq!(err.info().attempts(), 1);
    assert_eq!(err.stop_reason(), Some(StopReason::Fatal));
    let io = err
        .get_inner()
        .and_then(|e| e.downcast_ref::<io::Error>())
        .expect("the inner error, unchanged");
    assert_eq!(io.kind(), io::ErrorKind::TimedOut);
}

#[tokio::test(start_paused = true)]
async fn get_timeout_is_retried() {
    let (result, attempts) = first_attempt_fails(get(), io_error(io::ErrorKind::TimedOut)).await;
    assert_eq!(attempts, 2);
    let resp = result.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(info(&resp).attempts(), 2);
}

#[tokio::test(start_paused = true)]
async fn post_with_idempotency_key_timeout_is_retried() {
    let mut req = post();
    req.headers_mut()
        .insert("idempotency-key", HeaderValue::from_static("k-42"));
    let (result, attempts) = first_attempt_fails(req, io_error(io::ErrorKind::TimedOut)).await;
    assert_eq!(attempts, 2);
    assert_eq!(result.unwrap().status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn post_connect_refused_is_retried() {
    let refused = io_error(io::ErrorKind::ConnectionRefused);
    let (result, attempts) = first_attempt_fails(post(), refused).await;
    assert_eq!(attempts, 2);
    assert_eq!(result.unwrap().status(), StatusCode::OK);
}
