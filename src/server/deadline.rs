//! The request timeout: a call whose handler, including reading its request
//! message, has not answered in time is answered `DEADLINE_EXCEEDED`. Dropping
//! the handler drops the request body and the half-read message buffered for
//! it, so a client that starts many large messages and never finishes them
//! cannot hold that memory. Only the wait for the response head is timed: a
//! response stream (`Health/Watch`) that has started is never cut here.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderMap, Request, Response};
use tonic::Status;
use tonic::body::Body;
use tower::Service;

/// A tower service that answers `DEADLINE_EXCEEDED` when `inner` takes longer
/// than `limit`, or than the client's own `grpc-timeout` if that is shorter.
#[derive(Clone)]
pub struct Deadline<S> {
    inner: S,
    limit: Duration,
}

impl<S> Deadline<S> {
    pub fn new(inner: S, limit: Duration) -> Self {
        Self { inner, limit }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<Request<B>> for Deadline<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let limit = grpc_timeout(req.headers()).map_or(self.limit, |t| t.min(self.limit));
        let response = self.inner.call(req);
        Box::pin(async move {
            // Most calls answer on their first poll (a decision is in memory):
            // those need no timer, which costs a clock read and a timer-wheel
            // entry per call.
            let mut response = std::pin::pin!(response);
            let first = std::future::poll_fn(|cx| {
                Poll::Ready(match response.as_mut().poll(cx) {
                    Poll::Ready(r) => Some(r),
                    Poll::Pending => None,
                })
            })
            .await;
            if let Some(answered) = first {
                return answered;
            }
            match tokio::time::timeout(limit, response).await {
                Ok(answered) => answered,
                Err(_) => Ok(Status::deadline_exceeded(format!(
                    "the call took longer than {limit:?}"
                ))
                .into_http()),
            }
        })
    }
}

/// The client's deadline from the `grpc-timeout` header: 1 to 8 digits and a
/// unit (`H`, `M`, `S`, `m`, `u`, `n`). A malformed value is ignored, as
/// gRPC servers do.
fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at_checked(value.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[test]
    fn reads_the_grpc_timeout_header() {
        let parse = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("grpc-timeout", v.parse().unwrap());
            grpc_timeout(&h)
        };
        assert_eq!(parse("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse("30S"), Some(Duration::from_secs(30)));
        assert_eq!(parse("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse("99999999u"), Some(Duration::from_micros(99_999_999)));
        assert_eq!(parse("5n"), Some(Duration::from_nanos(5)));
        for bad in ["", "S", "123456789S", "10", "10s", "-1S", "1.5S", "１S"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        assert_eq!(grpc_timeout(&HeaderMap::new()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_call_is_answered_deadline_exceeded() {
        let slow = tower::service_fn(|_: Request<()>| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<_, Infallible>(Response::new(Body::empty()))
        });
        let svc = Deadline::new(slow, Duration::from_secs(30));
        let start = tokio::time::Instant::now();
        let r = svc.clone().oneshot(Request::new(())).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(30));
        let status = Status::from_header_map(r.headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);

        // The client's shorter deadline wins.
        let mut req = Request::new(());
        req.headers_mut()
            .insert("grpc-timeout", "100m".parse().unwrap());
        let start = tokio::time::Instant::now();
        svc.oneshot(req).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(100));
    }
}
