//! `grpc.health.v1.Health/Watch` streams, bounded: at most so many at once
//! per listener (more are answered `RESOURCE_EXHAUSTED` at once), and each
//! ends cleanly (`grpc-status: 0`) after a lifetime, so that clients watch
//! again rather than hold a stream, and the connection under it, for ever.
//! Knows the one path; nothing else about what a listener serves.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::{Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;
use tonic::body::Body;
use tower::Service;

/// The path of a health watch.
pub const WATCH_PATH: &str = "/grpc.health.v1.Health/Watch";

/// One listener's watches: how many may be open, and for how long each.
#[derive(Debug)]
pub struct WatchLimit {
    open: Arc<Semaphore>,
    max: usize,
    lifetime: Duration,
}

impl WatchLimit {
    pub fn new(max: usize, lifetime: Duration) -> Self {
        Self {
            open: Arc::new(Semaphore::new(max)),
            max,
            lifetime,
        }
    }
}

/// A tower service that bounds the watches passing through it; every other
/// call passes untouched (no allocation, no lock).
#[derive(Clone)]
pub struct Watches<S> {
    inner: S,
    limit: Arc<WatchLimit>,
}

impl<S> Watches<S> {
    pub fn new(inner: S, limit: Arc<WatchLimit>) -> Self {
        Self { inner, limit }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The inner call's future, or a watch's.
pub enum WatchesFuture<F> {
    Call(F),
    Watch(BoxFuture<Result<Response<Body>, Infallible>>),
}

impl<F> Future for WatchesFuture<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>> + Unpin,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Self::Call(f) => Pin::new(f).poll(cx),
            Self::Watch(f) => f.as_mut().poll(cx),
        }
    }
}

impl<S, B> Service<Request<B>> for Watches<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + Unpin + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = WatchesFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if req.uri().path() != WATCH_PATH {
            return WatchesFuture::Call(self.inner.call(req));
        }
        let Ok(permit) = self.limit.open.clone().try_acquire_owned() else {
            tracing::debug!(max = self.limit.max, "Health/Watch refused: too many open");
            let status = Status::resource_exhausted(format!(
                "this listener has {} Health/Watch streams open, its most; use Health/Check, or watch again later",
                self.limit.max
            ));
            return WatchesFuture::Watch(Box::pin(std::future::ready(Ok(status.into_http()))));
        };
        let lifetime = self.limit.lifetime;
        let response = self.inner.call(req);
        WatchesFuture::Watch(Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| Body::new(Lifetime::new(body, lifetime, permit))))
        }))
    }
}

/// A watch's response body: the inner one until it ends or the lifetime is
/// over, then `grpc-status: 0`. Holds the watch's place until dropped.
struct Lifetime {
    /// `None` once ended.
    body: Option<Body>,
    end: Pin<Box<tokio::time::Sleep>>,
    _place: OwnedSemaphorePermit,
}

impl Lifetime {
    fn new(body: Body, lifetime: Duration, place: OwnedSemaphorePermit) -> Self {
        Self {
            body: Some(body),
            end: Box::pin(tokio::time::sleep(lifetime)),
            _place: place,
        }
    }
}

impl http_body::Body for Lifetime {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let me = self.get_mut();
        let Some(body) = &mut me.body else {
            return Poll::Ready(None);
        };
        match Pin::new(body).poll_frame(cx) {
            Poll::Ready(None) => {
                me.body = None;
                return Poll::Ready(None);
            }
            Poll::Ready(Some(frame)) => return Poll::Ready(Some(frame)),
            Poll::Pending => {}
        }
        if me.end.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        // Between two messages (frames are whole messages): end the stream
        // as a finished call.
        me.body = None;
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    /// A body that never yields: a health watch with nothing to say.
    struct Never;

    impl http_body::Body for Never {
        type Data = Bytes;
        type Error = Status;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
            Poll::Pending
        }
    }

    /// A watch whose body never ends, and a unary call.
    fn service() -> impl Service<
        Request<()>,
        Response = Response<Body>,
        Error = Infallible,
        Future: Send + Unpin + 'static,
    > + Clone {
        tower::service_fn(|req: Request<()>| {
            let body = if req.uri().path() == WATCH_PATH {
                Body::new(Never)
            } else {
                Body::empty()
            };
            std::future::ready(Ok::<_, Infallible>(Response::new(body)))
        })
    }

    fn watch() -> Request<()> {
        Request::builder().uri(WATCH_PATH).body(()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn watches_over_the_limit_are_refused_and_each_ends_at_its_lifetime() {
        let limit = Arc::new(WatchLimit::new(1, Duration::from_secs(60)));
        let mut svc = Watches::new(service(), limit);
        let first = svc.ready().await.unwrap().call(watch()).await.unwrap();
        let refused = svc.ready().await.unwrap().call(watch()).await.unwrap();
        assert_eq!(
            refused.headers().get("grpc-status").unwrap(),
            &HeaderValue::from(tonic::Code::ResourceExhausted as i32)
        );
        // Other calls pass.
        let unary = Request::builder().uri("/x/Y").body(()).unwrap();
        assert!(svc.ready().await.unwrap().call(unary).await.is_ok());

        // The lifetime ends the first with OK, and frees its place.
        let ended = tokio::time::timeout(Duration::from_secs(61), first.into_body().collect())
            .await
            .expect("ended at its lifetime")
            .unwrap();
        let trailers = ended.trailers().unwrap();
        assert_eq!(trailers.get("grpc-status").unwrap(), "0");
        let again = svc.ready().await.unwrap().call(watch()).await.unwrap();
        assert!(again.headers().get("grpc-status").is_none());
    }
}
