//! Serves the gRPC services on already-bound listeners (so tests can bind port 0):
//! the gateway listener gets `Authorizer`, the admin listener `Delegations`; both
//! get the standard health service and server reflection. Never the admin API on
//! the gateway listener.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use crate::grpc::authorizer::AuthorizerService;
use crate::grpc::delegations::DelegationsService;
use crate::proto::FILE_DESCRIPTOR_SET;
use crate::proto::authorizer_server::AuthorizerServer;
use crate::proto::delegations_server::DelegationsServer;
use crate::snapshot::SnapshotStore;
use crate::store::DelegationStore;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Reflection that advertises only what this listener serves.
fn reflection(
    service: &str,
) -> Result<
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    ServerError,
> {
    Ok(tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .with_service_name(service)
        .with_service_name("grpc.health.v1.Health")
        .build_v1()?)
}

/// Accepted connections with Nagle off: small gRPC replies must not wait for
/// the peer's delayed ACK.
fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Serve the gateway API on `listener` until `shutdown` completes, then drain.
pub async fn serve_gateway(
    listener: TcpListener,
    snapshots: Arc<SnapshotStore>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<AuthorizerServer<AuthorizerService>>()
        .await;
    Server::builder()
        .add_service(health_service)
        .add_service(reflection("tilgang.v1.Authorizer")?)
        .add_service(AuthorizerServer::new(AuthorizerService::new(snapshots)))
        .serve_with_incoming_shutdown(incoming(listener), async move {
            shutdown.await;
            // Tell health checkers first, so load balancers stop sending.
            health
                .set_not_serving::<AuthorizerServer<AuthorizerService>>()
                .await;
        })
        .await?;
    Ok(())
}

/// Serve the admin API on `listener` until `shutdown` completes, then drain.
pub async fn serve_admin(
    listener: TcpListener,
    store: Arc<DelegationStore>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<DelegationsServer<DelegationsService>>()
        .await;
    Server::builder()
        .add_service(health_service)
        .add_service(reflection("tilgang.v1.Delegations")?)
        .add_service(DelegationsServer::new(DelegationsService::new(store)))
        .serve_with_incoming_shutdown(incoming(listener), async move {
            shutdown.await;
            health
                .set_not_serving::<DelegationsServer<DelegationsService>>()
                .await;
        })
        .await?;
    Ok(())
}
