//! Counts one connection's requests in flight, so the connection knows when it
//! is idle. A request counts from the call until its response body has ended
//! or been dropped, so a long `Health/Watch` stream keeps its connection busy
//! (until its lifetime, [`super::watches`]). `Health/Watch` streams are also
//! counted apart: a connection holding nothing else has no ordinary call in
//! flight ([`InFlight::busy`]), and may be closed to make room
//! ([`super::roster`]). This module only counts; [`super::conn`] decides what
//! idle means.
//!
//! Counting wakes nobody: the connection looks at the count when its idle
//! timer fires (a watch channel here woke the connection's task twice per
//! request, a tenth of the cost of a call under load).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;
use tower::Service;

/// One connection's requests in flight, and when the last one ended.
#[derive(Debug)]
pub struct InFlight {
    count: AtomicUsize,
    /// Of `count`, the `Health/Watch` streams.
    watches: AtomicUsize,
    /// Ordinary calls (not watches) ever started.
    calls: AtomicU64,
    /// When the count last went to zero, in nanoseconds after `since`.
    last_end: AtomicU64,
    since: Instant,
}

impl InFlight {
    pub fn new() -> Self {
        Self {
            count: AtomicUsize::new(0),
            watches: AtomicUsize::new(0),
            calls: AtomicU64::new(0),
            last_end: AtomicU64::new(0),
            since: Instant::now(),
        }
    }

    /// How many requests are in flight.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// How many ordinary calls (not `Health/Watch` streams) are in flight.
    pub fn busy(&self) -> usize {
        let watches = self.watches.load(Ordering::Acquire);
        self.count().saturating_sub(watches)
    }

    /// Whether an ordinary call (not a watch) was ever made.
    pub fn ever_called(&self) -> bool {
        self.calls.load(Ordering::Acquire) > 0
    }

    /// Count a request from now until the returned guard is dropped.
    #[cfg(test)]
    pub fn counted(self: &Arc<Self>, watch: bool) -> Counted {
        Counted::new(self, watch)
    }

    /// How long nothing has been in flight at `now`: `None` while something
    /// is (or since the connection began, if nothing ever was).
    pub fn idle_for(&self, now: Instant) -> Option<Duration> {
        if self.count() > 0 {
            return None;
        }
        let last = self.since + Duration::from_nanos(self.last_end.load(Ordering::Acquire));
        Some(now.saturating_duration_since(last))
    }

    fn start(&self, watch: bool) {
        // A watch among the watches first, so `busy` never sees it as a call.
        if watch {
            self.watches.fetch_add(1, Ordering::AcqRel);
        } else {
            self.calls.fetch_add(1, Ordering::AcqRel);
        }
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    fn end(&self, watch: bool) {
        let now = u64::try_from(self.since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        // The time first, so a reader that sees the count at zero sees it too.
        self.last_end.fetch_max(now, Ordering::AcqRel);
        self.count.fetch_sub(1, Ordering::AcqRel);
        if watch {
            self.watches.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Default for InFlight {
    fn default() -> Self {
        Self::new()
    }
}

/// A tower service that counts the requests passing through it.
#[derive(Clone)]
pub struct Track<S> {
    inner: S,
    count: Arc<InFlight>,
}

impl<S> Track<S> {
    /// The service, driving `count`.
    pub fn new(inner: S, count: Arc<InFlight>) -> Self {
        Self { inner, count }
    }
}

/// One request in flight; dropping it counts the request as done.
pub struct Counted {
    count: Arc<InFlight>,
    watch: bool,
}

impl Counted {
    fn new(count: &Arc<InFlight>, watch: bool) -> Self {
        count.start(watch);
        Self {
            count: count.clone(),
            watch,
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.count.end(self.watch);
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, RB> Service<Request<B>> for Track<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = Response<Tracked<RB>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let watch = req.uri().path() == super::watches::WATCH_PATH;
        let counted = Counted::new(&self.count, watch);
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| Tracked {
                body,
                counted: Some(counted),
            }))
        })
    }
}

/// A response body that holds its request's place in the count until it
/// ends or is dropped.
pub struct Tracked<B> {
    body: B,
    counted: Option<Counted>,
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let me = self.get_mut();
        let frame = Pin::new(&mut me.body).poll_frame(cx);
        if matches!(frame, Poll::Ready(None | Some(Err(_)))) {
            me.counted = None;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_request_counts_until_its_body_ends_or_is_dropped() {
        use http_body::Body as _;
        let svc = tower::service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(String::from("hi")))
        });
        let count = Arc::new(InFlight::new());
        let mut svc = Track::new(svc, count.clone());
        let pending = svc.ready().await.unwrap().call(Request::new(()));
        assert_eq!(count.count(), 1, "counted from the call");
        let mut first = pending.await.unwrap().into_body();
        assert_eq!(count.count(), 1, "and while the body is unread");
        let second = svc.ready().await.unwrap().call(Request::new(())).await;
        assert_eq!(count.count(), 2);
        drop(second);
        assert_eq!(count.count(), 1, "a dropped body is done");
        let mut cx = Context::from_waker(std::task::Waker::noop());
        while let Poll::Ready(Some(_)) = Pin::new(&mut first).poll_frame(&mut cx) {}
        assert_eq!(count.count(), 0, "a finished body is done");
        // A call dropped before it answers is done too.
        drop(svc.ready().await.unwrap().call(Request::new(())));
        assert_eq!(count.count(), 0);
    }
}
