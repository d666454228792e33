//! The metrics listener: `GET /metrics` over HTTP/1.1 (what Prometheus
//! speaks), anything else `404`. Bounded like the gRPC listeners, so it can
//! never be used to exhaust the process: the same accept loop
//! (`server::listener`: a permit per connection, over the limit closed at
//! once, back-off when descriptors run out) with a small limit of its own; a
//! request's headers, and the wait for the next request on a kept-alive
//! connection, must arrive within [`MetricsLimits::header_timeout`]; no
//! connection lives longer than [`MetricsLimits::lifetime`], however slowly
//! its peer reads; request bodies are never read. A scrape reads atomics and
//! the current snapshot ([`super::metrics::Exposition`]), so it never holds
//! a decision up. This module knows nothing of what the metrics mean.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::listener::{Acceptor, Admitted};
use crate::telemetry::metrics::Exposition;

/// The metrics' path.
pub const PATH: &str = "/metrics";
/// Health details as JSON: `200` serving, `503` not yet.
pub const HEALTH_PATH: &str = "/health";

/// The listener's bounds. Its connections come out of the descriptors kept
/// back from the gRPC listeners (`server::limits::FD_RESERVE`), so the limit
/// is small: a scraper needs one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsLimits {
    pub max_connections: usize,
    /// For a request's headers, and for the next request on an idle
    /// kept-alive connection.
    pub header_timeout: Duration,
    /// The longest any connection lives (a slow reader, a request body that
    /// never ends): then it is closed.
    pub lifetime: Duration,
}

impl MetricsLimits {
    pub const DEFAULT: Self = Self {
        max_connections: 8,
        header_timeout: Duration::from_secs(5),
        lifetime: Duration::from_secs(30),
    };
}

impl Default for MetricsLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// hyper's smallest read buffer; a scrape's request is a few hundred bytes.
const MAX_BUF: usize = 8 * 1024;
const MAX_HEADERS: usize = 32;

/// Serve `/metrics` on `tcp` until `shutdown`; then stop accepting and close
/// every connection (a scrape cut short is retried at the next interval).
pub async fn serve(
    tcp: TcpListener,
    exposition: Arc<Exposition>,
    limits: MetricsLimits,
    shutdown: impl Future<Output = ()>,
) {
    let mut acceptor = Acceptor::new(tcp, "metrics", limits.max_connections);
    let mut conns = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            admitted = acceptor.accept() => {
                conns.spawn(connection(admitted, exposition.clone(), limits));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(acceptor);
    conns.shutdown().await;
}

async fn connection(conn: Admitted, exposition: Arc<Exposition>, limits: MetricsLimits) {
    let Admitted {
        stream,
        peer,
        permit: _permit,
        place: _,
    } = conn;
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let response = respond(&exposition, &req);
        async move { Ok::<_, Infallible>(response) }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_BUF)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    let served = http.serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(limits.lifetime, served).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "metrics connection ended with an error"),
        Err(_) => tracing::debug!(%peer, "metrics connection open too long; closed"),
    }
}

fn respond<B>(exposition: &Exposition, req: &Request<B>) -> Response<Full<Bytes>> {
    if req.method() == Method::GET && req.uri().path() == HEALTH_PATH {
        let (serving, body) = exposition.health();
        let mut r = Response::new(Full::new(Bytes::from(body)));
        if !serving {
            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        }
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        return r;
    }
    if req.method() != Method::GET || req.uri().path() != PATH {
        return plain(
            StatusCode::NOT_FOUND,
            "not found; metrics are at GET /metrics, health at GET /health\n",
        );
    }
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    match exposition.render(accept) {
        Ok((content_type, body)) => {
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(content_type),
            );
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "could not encode the metrics");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not encode the metrics\n",
            )
        }
    }
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;
    use crate::telemetry::metrics::Metrics;

    async fn start(
        limits: MetricsLimits,
    ) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let snap = crate::snapshot::load::load_snapshot(
            &crate::snapshot::load::PolicySource::Embedded,
            std::path::Path::new("/nonexistent"),
        )
        .unwrap();
        let snap: Arc<dyn crate::telemetry::metrics::SnapshotFacts> = Arc::new(snap);
        let exposition = Arc::new(Exposition::new(
            Arc::new(Metrics::new()),
            Arc::new(move || snap.clone()),
        ));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        tokio::spawn(serve(tcp, exposition, limits, async {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    /// Reads until the peer closes; how long that took.
    async fn closed_after(c: &mut TcpStream) -> Duration {
        let t = tokio::time::Instant::now();
        let mut buf = [0; 4096];
        while c.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        t.elapsed()
    }

    #[tokio::test]
    async fn silent_and_slow_clients_are_cut_off() {
        let limits = MetricsLimits {
            max_connections: 2,
            header_timeout: Duration::from_millis(200),
            lifetime: Duration::from_millis(800),
        };
        let (addr, _stop) = start(limits).await;
        // Says nothing.
        let mut silent = TcpStream::connect(addr).await.unwrap();
        // Starts a request and never ends its headers.
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        // Over the limit of two: closed at once.
        let mut third = TcpStream::connect(addr).await.unwrap();
        assert!(closed_after(&mut third).await < Duration::from_millis(150));
        let (a, b) = tokio::join!(closed_after(&mut silent), closed_after(&mut slow));
        assert!(
            a < Duration::from_secs(2) && b < Duration::from_secs(2),
            "{a:?} {b:?}"
        );
        // A request body that never ends: the connection's lifetime ends it.
        let mut body = TcpStream::connect(addr).await.unwrap();
        body.write_all(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nab")
            .await
            .unwrap();
        let took = closed_after(&mut body).await;
        assert!(took < Duration::from_secs(3), "{took:?}");
    }
}
