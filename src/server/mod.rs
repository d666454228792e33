//! Serves the gRPC services on already-bound listeners (so tests can bind port
//! 0): the gateway listener gets `Authorizer` and Envoy's ext_authz
//! `Authorization`, the admin listener `Delegations`; both get the standard
//! health service and server reflection (`grpc.reflection.v1`, and `v1alpha`
//! for grpcurl before 1.8.8, Postman and evans). Never the admin API on the
//! gateway listener.
//!
//! tilgang drives its own connections rather than tonic's `Server`, for
//! bounded resources: `listener` accepts under a connection limit and backs
//! off when descriptors run out (the metrics listener, `metrics_listener`,
//! accepts with it too), `roster` keeps each peer to its share of
//! connections and picks one to close when the listener is full, `conn` runs
//! one HTTP/2 connection with `h2guard` (handshake and header deadlines),
//! `deadline` (request timeout), `watches` (how many `Health/Watch` streams,
//! for how long) and `activity` (idle timeout). [`limits`] holds every limit and
//! its default. On shutdown, `serve` reports `NOT_SERVING`, stops
//! accepting, sends GOAWAY, waits out the grace period and closes the rest.

mod activity;
mod conn;
mod deadline;
mod h2guard;
pub mod limits;
pub(crate) mod listener;
pub mod metrics_listener;
mod roster;
mod watches;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::auth::AdminAuth;
use crate::grpc::authorizer::AuthorizerService;
use crate::grpc::delegations::DelegationsService;
use crate::grpc::ext_authz::{CheckServer, ClaimSource, ExtAuthzService};
use crate::proto::FILE_DESCRIPTOR_SET;
use crate::proto::authorizer_server::AuthorizerServer;
use crate::proto::delegations_server::DelegationsServer;
use crate::snapshot::SnapshotStore;
use crate::store::DelegationStore;
use crate::telemetry::Telemetry;
use crate::tls::ServerTls;
use limits::{
    ADMIN_MAX_MESSAGE, ADMIN_MAX_RESPONSE, GATEWAY_MAX_MESSAGE, HEALTH_MAX_MESSAGE, Limits,
    REFLECTION_MAX_MESSAGE,
};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// A bound listener and the limits its connections get.
pub struct Listener {
    pub tcp: TcpListener,
    /// `None`: plaintext.
    pub tls: Option<Arc<ServerTls>>,
    /// The effective connection limit ([`limits::connection_limits`]).
    pub max_connections: usize,
    /// Most connections one peer (source IP) may hold.
    pub max_connections_per_peer: usize,
    /// Most `Health/Watch` streams open at once.
    pub max_watch_streams: usize,
    pub limits: Limits,
    /// Health says `NOT_SERVING` until this is `true` (the shared store's
    /// first snapshot); `None`: serving from the start.
    pub ready: Option<watch::Receiver<bool>>,
}

/// Serve the gateway API on `listener` until `shutdown` completes, then drain:
/// `tilgang.v1.Authorizer` and Envoy's `envoy.service.auth.v3.Authorization`.
pub async fn serve_gateway(
    listener: Listener,
    snapshots: Arc<SnapshotStore>,
    claims: ClaimSource,
    telemetry: Telemetry,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    type Service = AuthorizerServer<AuthorizerService>;
    type ExtAuthz = CheckServer;
    let service = Service::new(AuthorizerService::new(snapshots.clone(), telemetry.clone()))
        .max_decoding_message_size(GATEWAY_MAX_MESSAGE);
    let ext_authz = CheckServer::new(
        ExtAuthzService::new(snapshots, claims, telemetry),
        GATEWAY_MAX_MESSAGE,
    );
    let (health, routes) = routes::<Service>(service)?;
    let routes = routes.add_service(ext_authz).prepare();
    serve(
        listener,
        false,
        &[
            <Service as NamedService>::NAME,
            <ExtAuthz as NamedService>::NAME,
        ],
        routes,
        health,
        shutdown,
    )
    .await;
    Ok(())
}

/// Serve the admin API on `listener` until `shutdown` completes, then drain.
pub async fn serve_admin(
    listener: Listener,
    store: Arc<DelegationStore>,
    auth: AdminAuth,
    telemetry: Telemetry,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    type Service = DelegationsServer<DelegationsService>;
    let service = Service::new(DelegationsService::new(store, telemetry, auth))
        .max_decoding_message_size(ADMIN_MAX_MESSAGE)
        .max_encoding_message_size(ADMIN_MAX_RESPONSE);
    let (health, routes) = routes::<Service>(service)?;
    serve(
        listener,
        true,
        &[<Service as NamedService>::NAME],
        routes,
        health,
        shutdown,
    )
    .await;
    Ok(())
}

/// `service` with health and reflection (`v1` and `v1alpha`, advertising the
/// same services), each with its own message limit. Health reports `SERVING`
/// for `""` and for `service` until the drain.
fn routes<S>(service: S) -> Result<(HealthReporter, Routes), ServerError>
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let reporter = HealthReporter::new();
    let health = tonic_health::pb::health_server::HealthServer::new(
        tonic_health::server::HealthService::from_health_reporter(reporter.clone()),
    )
    .max_decoding_message_size(HEALTH_MAX_MESSAGE);
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // Advertise only what this listener serves.
            .with_service_name(S::NAME)
            .with_service_name("grpc.health.v1.Health")
    };
    let v1 = reflection()
        .build_v1()?
        .max_decoding_message_size(REFLECTION_MAX_MESSAGE);
    let v1alpha = reflection()
        .build_v1alpha()?
        .max_decoding_message_size(REFLECTION_MAX_MESSAGE);
    let routes = Routes::new(health)
        .add_service(v1)
        .add_service(v1alpha)
        .add_service(service)
        .prepare();
    Ok((reporter, routes))
}

/// Accept and serve connections until `shutdown`; then set health
/// `NOT_SERVING` (for `""` and `service`), stop listening, send GOAWAY to
/// every connection, give in-flight calls [`Limits::shutdown_grace`] to
/// finish and close what remains. `peer`: put each connection's
/// [`crate::auth::Peer`] on its requests.
async fn serve(
    listener: Listener,
    peer: bool,
    services: &[&'static str],
    routes: Routes,
    health: HealthReporter,
    shutdown: impl Future<Output = ()>,
) {
    let service = services.first().copied().unwrap_or("");
    let ready_now = listener.ready.as_ref().is_none_or(|r| *r.borrow());
    let status = if ready_now {
        ServingStatus::Serving
    } else {
        tracing::info!(
            listener = service,
            "health NOT_SERVING until the first snapshot is loaded from the store"
        );
        ServingStatus::NotServing
    };
    for name in std::iter::once(&"").chain(services) {
        health.set_service_status(*name, status).await;
    }
    let ready = listener.ready.clone();
    let mut ready = std::pin::pin!(async move {
        if let Some(mut r) = ready
            && r.wait_for(|loaded| *loaded).await.is_err()
        {
            // Whoever would say "loaded" is gone: never serving.
            std::future::pending::<()>().await;
        }
    });
    let mut waiting = !ready_now;
    let watches =
        watches::WatchLimit::new(listener.max_watch_streams, listener.limits.watch_lifetime);
    let settings = Arc::new(conn::Settings::new(
        &listener.limits,
        Arc::new(watches),
        listener.tls.clone(),
        peer,
    ));
    let roster = Arc::new(roster::Roster::new(listener.max_connections_per_peer));
    let mut acceptor = listener::Acceptor::new(listener.tcp, service, listener.max_connections)
        .with_roster(roster);
    let (drain, draining) = watch::channel(false);
    let mut conns = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = &mut ready, if waiting => {
                waiting = false;
                for name in std::iter::once(&"").chain(services) {
                    health.set_service_status(*name, ServingStatus::Serving).await;
                }
                tracing::info!(listener = service, "health SERVING: the first snapshot is loaded");
            }
            admitted = acceptor.accept() => {
                conns.spawn(conn::serve(admitted, routes.clone(), settings.clone(), draining.clone()));
            }
            Some(done) = conns.join_next(), if !conns.is_empty() => reap(done),
        }
    }

    // Health first, so load balancers and watchers hear it before anything
    // closes.
    for name in std::iter::once(&"").chain(services) {
        health
            .set_service_status(*name, ServingStatus::NotServing)
            .await;
    }
    drop(acceptor); // closes the listening socket: the port stops answering
    let _ = drain.send(true);
    tracing::info!(
        listener = service,
        connections = conns.len(),
        "draining: stopped accepting, sent GOAWAY"
    );
    let grace = listener.limits.shutdown_grace;
    let drained = tokio::time::timeout(grace, async {
        while let Some(done) = conns.join_next().await {
            reap(done);
        }
    })
    .await;
    if drained.is_err() {
        tracing::info!(
            listener = service,
            connections = conns.len(),
            "grace period over; closing the remaining connections"
        );
        conns.shutdown().await;
    }
}

/// A connection task ended; a panic in one is logged, never spread.
fn reap(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        tracing::error!(error = %e, "connection task panicked");
    }
}
