//! The web listener: HTTP/1.1 and HTTP/2 (hyper's automatic choice) on one
//! already-bound socket, with the connection limit of [`Acceptor`], a
//! deadline for a request's headers, a maximum connection age, and a drain on
//! shutdown (open connections finish what they are answering, within the
//! grace period). It knows nothing of pages.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt as _;

use super::Web;
use crate::server::listener::Acceptor;
use crate::tls::ServerTls;

/// A connection's bounds on the web listener.
#[derive(Debug, Clone, Copy)]
pub struct WebLimits {
    pub max_connections: usize,
    /// From accept to a request's complete headers (HTTP/1.1).
    pub header_timeout: Duration,
    /// A connection is closed gracefully (what it is answering finishes)
    /// after this long, so no client holds a place for ever.
    pub max_connection_age: Duration,
    /// How long open connections may finish once the drain begins.
    pub grace: Duration,
    /// From accept to a finished TLS handshake.
    pub handshake_timeout: Duration,
}

impl Default for WebLimits {
    fn default() -> Self {
        Self {
            max_connections: 512,
            header_timeout: Duration::from_secs(10),
            max_connection_age: Duration::from_secs(60),
            grace: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(5),
        }
    }
}

/// Serve the page on `tcp` until `shutdown` completes, then drain.
pub async fn serve_web(
    tcp: TcpListener,
    tls: Option<Arc<ServerTls>>,
    web: Arc<Web>,
    limits: WebLimits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let router = super::steps::router(web);
    let (drain_tx, drain_rx) = watch::channel(false);
    let mut acceptor = Acceptor::new(tcp, "web", limits.max_connections);
    let mut tasks = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            conn = acceptor.accept() => {
                let router = router.clone();
                let draining = drain_rx.clone();
                let tls = tls.clone();
                tasks.spawn(async move {
                    let _permit = conn.permit;
                    let _ = conn.stream.set_nodelay(true);
                    match tls {
                        None => connection(conn.stream, router, limits, draining).await,
                        Some(tls) => {
                            let accepted = tokio::time::timeout(
                                limits.handshake_timeout,
                                tls.acceptor().accept(conn.stream),
                            );
                            match accepted.await {
                                Ok(Ok(stream)) => connection(stream, router, limits, draining).await,
                                Ok(Err(e)) => tracing::debug!(error = %e, "web: TLS handshake failed"),
                                Err(_) => tracing::debug!("web: TLS handshake timed out"),
                            }
                        }
                    }
                });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    let _ = drain_tx.send(true);
    let drained = tokio::time::timeout(limits.grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tasks.abort_all();
    }
}

/// Serve one connection (plaintext, or what the TLS handshake left) until it
/// ends, the listener drains, or it reaches its maximum age.
async fn connection<IO>(
    io: IO,
    router: axum::Router,
    limits: WebLimits,
    mut draining: watch::Receiver<bool>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service =
        router.map_request(|r: http::Request<hyper::body::Incoming>| r.map(axum::body::Body::new));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(100);
    let conn =
        builder.serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service));
    let mut conn = std::pin::pin!(conn);
    draining.mark_changed();
    let age = tokio::time::sleep(limits.max_connection_age);
    let mut age = std::pin::pin!(age);
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            changed = draining.changed() => {
                if changed.is_err() || *draining.borrow() {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.as_mut().await;
                    return;
                }
            }
            () = &mut age => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.as_mut().await;
                return;
            }
        }
    }
}
