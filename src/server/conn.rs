//! One connection's life: HTTP/2 with the stream, header and keep-alive
//! settings, the handshake and header deadlines ([`super::h2guard`]), the
//! request timeout ([`super::deadline`]), an idle timeout, and graceful
//! shutdown when the listener drains. It holds its connection-limit permit
//! until it ends. It knows nothing of which gRPC services it carries.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::watch;
use tokio::time::Instant;

use super::activity::Track;
use super::deadline::Deadline;
use super::h2guard::H2Guard;
use super::limits::{Limits, MAX_HEADER_LIST_SIZE};
use super::listener::Admitted;

/// What every connection of one listener shares.
pub struct Settings {
    http: http2::Builder<TokioExecutor>,
    handshake_timeout: Duration,
    header_timeout: Duration,
    idle_timeout: Duration,
    request_timeout: Duration,
    /// How long a closing connection with nothing in flight may take to
    /// close (a peer that does not read our GOAWAY): the keep-alive timeout.
    linger: Duration,
}

impl Settings {
    pub fn new(limits: &Limits) -> Self {
        let mut http = http2::Builder::new(TokioExecutor::new());
        http.timer(TokioTimer::new())
            .max_concurrent_streams(limits.max_concurrent_streams)
            .max_header_list_size(MAX_HEADER_LIST_SIZE)
            .keep_alive_interval(limits.keepalive_interval)
            .keep_alive_timeout(limits.keepalive_timeout);
        Self {
            http,
            handshake_timeout: limits.handshake_timeout,
            header_timeout: limits.header_timeout,
            idle_timeout: limits.idle_timeout,
            request_timeout: limits.request_timeout,
            linger: limits.keepalive_timeout,
        }
    }
}

/// Serve `conn` until it ends: the peer closes, a deadline passes, it is idle
/// too long, or the listener drains (`draining` turns true, or its sender is
/// dropped). Idle and drain both send GOAWAY and let the requests in flight
/// finish; a drained connection that still has requests in flight when the
/// grace period is over is aborted by the listener.
pub async fn serve<S>(
    conn: Admitted,
    service: S,
    settings: Arc<Settings>,
    mut draining: watch::Receiver<bool>,
) where
    S: tower::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let Admitted {
        stream,
        peer,
        permit: _permit,
    } = conn;
    // Nagle off: small gRPC replies must not wait for the peer's delayed ACK.
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%peer, error = %e, "could not set TCP_NODELAY");
    }
    let io = H2Guard::new(stream, settings.handshake_timeout, settings.header_timeout);
    let (service, in_flight) = Track::new(Deadline::new(service, settings.request_timeout));
    let http = settings
        .http
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
    let mut http = std::pin::pin!(http);
    // One timer for idle and linger: when it fires, the count of requests in
    // flight says whether the connection is idle, and for how long; a busy
    // one looks again a full period later.
    let idle = tokio::time::sleep(settings.idle_timeout);
    let mut idle = std::pin::pin!(idle);
    let mut closing = false;
    // Look at the drain state once at the start: a connection accepted just
    // before the drain began must drain too.
    draining.mark_changed();
    loop {
        tokio::select! {
            ended = http.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(%peer, error = %e, "connection closed with an error");
                }
                return;
            }
            () = idle.as_mut() => {
                let wait = if closing { settings.linger } else { settings.idle_timeout };
                let now = Instant::now();
                match in_flight.idle_for(now) {
                    Some(idle_for) if idle_for >= wait => {
                        if closing {
                            tracing::debug!(%peer, "connection did not close after GOAWAY; dropping it");
                            return;
                        }
                        tracing::debug!(%peer, "connection idle; closing it");
                        closing = true;
                        http.as_mut().graceful_shutdown();
                        idle.as_mut().reset(now + settings.linger);
                    }
                    // Idle, but not for long enough yet: the rest of the wait.
                    Some(idle_for) => idle.as_mut().reset(now + (wait - idle_for)),
                    None => idle.as_mut().reset(now + wait),
                }
            }
            changed = draining.changed(), if !closing => {
                if changed.is_err() || *draining.borrow_and_update() {
                    closing = true;
                    http.as_mut().graceful_shutdown();
                    let now = Instant::now();
                    // Idle now: linger from now on; busy: look again then.
                    let wait = match in_flight.idle_for(now) {
                        Some(_) => settings.linger,
                        None => settings.linger.min(settings.idle_timeout),
                    };
                    idle.as_mut().reset(now + wait);
                }
            }
        }
    }
}
