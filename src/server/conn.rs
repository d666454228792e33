//! One connection's life: HTTP/2 with the stream, header and keep-alive
//! settings, the handshake and header deadlines ([`super::h2guard`]), the
//! request timeout ([`super::deadline`]), the bounds on `Health/Watch`
//! streams ([`super::watches`]), an idle timeout, and graceful shutdown when
//! the listener drains; closed at once when the listener's roster picks it to
//! make room ([`super::roster`]); first the TLS handshake, when the listener
//! has TLS, within the handshake timeout. On the admin listener every
//! request carries the connection's [`Peer`] (address, client certificate) as
//! an extension. It
//! holds its connection-limit permit until it ends. It knows nothing of which
//! gRPC services it carries.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::time::Instant;
use tower::ServiceExt as _;

use super::activity::{InFlight, Track};
use super::deadline::Deadline;
use super::h2guard::H2Guard;
use super::limits::{Limits, MAX_HEADER_LIST_SIZE};
use super::listener::Admitted;
use super::watches::{WatchLimit, Watches};
use crate::auth::Peer;
use crate::tls::ServerTls;

/// What a connection serves (tonic's routes): a cloneable HTTP service that
/// never fails and whose futures can move between threads.
pub trait Routes:
    tower::Service<
        http::Request<hyper::body::Incoming>,
        Response = http::Response<tonic::body::Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S> Routes for S where
    S: tower::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

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
    /// The listener's `Health/Watch` streams.
    watches: Arc<WatchLimit>,
    /// `None`: plaintext HTTP/2.
    tls: Option<Arc<ServerTls>>,
    /// Put the [`Peer`] on every request: the admin listener, which
    /// authenticates by client certificate and records addresses. Not the
    /// gateway's hot path (an extension costs allocations per call).
    peer: bool,
}

impl Settings {
    pub fn new(
        limits: &Limits,
        watches: Arc<WatchLimit>,
        tls: Option<Arc<ServerTls>>,
        peer: bool,
    ) -> Self {
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
            watches,
            tls,
            peer,
        }
    }
}

/// Serve `conn` until it ends: the peer closes, a deadline passes, it is idle
/// too long, or the listener drains (`draining` turns true, or its sender is
/// dropped). Idle and drain both send GOAWAY and let the requests in flight
/// finish; a drained connection that still has requests in flight when the
/// grace period is over is aborted by the listener. Told to close to make
/// room, it closes at once.
pub async fn serve<S>(
    conn: Admitted,
    service: S,
    settings: Arc<Settings>,
    draining: watch::Receiver<bool>,
) where
    S: Routes,
{
    let Admitted {
        stream,
        peer,
        permit: _permit,
        place,
    } = conn;
    let in_flight = place
        .as_ref()
        .map_or_else(|| Arc::new(InFlight::new()), |p| p.in_flight().clone());
    let evicted = async {
        match &place {
            Some(p) => p.evicted().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = evicted => tracing::debug!(%peer, "connection closed to make room for a new one"),
        () = serve_stream(stream, peer, in_flight, service, &settings, draining) => {}
    }
}

async fn serve_stream<S>(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    in_flight: Arc<InFlight>,
    service: S,
    settings: &Settings,
    draining: watch::Receiver<bool>,
) where
    S: Routes,
{
    // Nagle off: small gRPC replies must not wait for the peer's delayed ACK.
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%peer, error = %e, "could not set TCP_NODELAY");
    }
    let Some(tls) = &settings.tls else {
        let peer = Peer {
            addr: peer,
            certificate: None,
        };
        return run(stream, peer, in_flight, service, settings, draining).await;
    };
    // The handshake gets the handshake timeout of its own: a client that
    // opens a connection and sends nothing must not hold a slot.
    let accepted = tokio::time::timeout(settings.handshake_timeout, tls.acceptor().accept(stream));
    let stream = match accepted.await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let certificate = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(<[_]>::first)
        .map(|c| Arc::new(c.clone().into_owned()));
    let peer = Peer {
        addr: peer,
        certificate,
    };
    run(stream, peer, in_flight, service, settings, draining).await;
}

/// Serve HTTP/2 on `io` (plaintext, or what the TLS handshake left).
async fn run<IO, S>(
    io: IO,
    peer_info: Peer,
    in_flight: Arc<InFlight>,
    service: S,
    settings: &Settings,
    mut draining: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Routes,
{
    let peer = peer_info.addr;
    let io = H2Guard::new(io, settings.handshake_timeout, settings.header_timeout);
    let with_peer = settings.peer;
    let service = service.map_request(move |mut request: http::Request<hyper::body::Incoming>| {
        if with_peer {
            request.extensions_mut().insert(peer_info.clone());
        }
        request
    });
    let deadline = Deadline::new(service, settings.request_timeout);
    let service = Track::new(
        Watches::new(deadline, settings.watches.clone()),
        in_flight.clone(),
    );
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
