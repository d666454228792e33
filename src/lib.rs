//! tilgang: a gRPC authorization sidecar that answers "may this supplier call this
//! service owner's API with this scope?" from Cedar policies and delegation data.
//!
//! # Layout
//! The module tree follows the data flow.
//! - [`proto`]: the generated wire types (`proto/tilgang/v1/*.proto`).
//! - [`ids`]: org numbers, person ids, scopes, right ids: parse, don't validate.
//! - [`catalogue`]: the rights catalogue (right → scopes), data from `policies/`.
//! - [`engine`]: the pure decision, (snapshot, request) → allow/deny + reasons.
//! - [`gateway`]: what an HTTP gateway sends (route, token claims) → the
//!   engine's request; the route table.
//! - [`snapshot`]: the immutable policy+data snapshot; [`snapshot::load`] reads
//!   it from files; [`snapshot::reload`] decides what a change on disk means,
//!   once [`snapshot::settle`] says its content has settled; [`snapshot::watch`]
//!   turns file events into reload work.
//! - [`auth`]: bearer tokens: the JWKS file (hot-reloaded) and the verifier
//!   (signature, `exp`/`nbf`, `iss`, `aud`) shared by the gateway and admin listeners.
//! - [`store`]: admin writes: delegation files written atomically, audit log,
//!   undo; and the overview, an ordered walk that `ListDelegations` pages.
//! - [`grpc`]: tonic services; the one place errors become `tonic::Status`.
//! - [`server`]: serves one listener: services, health, reflection, and the
//!   connection limits (per listener and per peer, making room when full),
//!   `Health/Watch` bounds, timeouts and drain ([`server::limits`] has every
//!   limit).
//! - [`tls`]: the listeners' TLS (rustls): certificate, key and client CA
//!   files, reloaded when they change.
//! - [`telemetry`]: what operators see: Prometheus metrics (atomics bumped by
//!   the services, exposed on their own HTTP/1.1 listener), the decision log
//!   (JSON lines through a bounded queue to a writer thread), admin write and
//!   refusal log lines, the log filter and format from the environment, and
//!   the log gate that keeps any one callsite from flooding the log.
//! - [`web`]: the owner's web page (delegate, edit, undo, overview in a
//!   browser), calling the same store operations as the admin API;
//!   [`web::oidc`] is the OpenID Connect relying party (ID-porten login).
//! - [`sidecar`]: the composition root: `Config`, start-up (everything is loaded
//!   and validated, and the decision log opened, before a port is bound) and
//!   shutdown.
//! - [`register`]: organization names from the Entity Register's bulk
//!   download (streamed gzip'd JSON into compact arrays), name search, and the
//!   hot-reloaded file; for people to read, never part of a decision.
//! - [`table`]: decision tables, shared by `tilgang test` and `cargo test`.
//! - [`cli`]: one module per subcommand of the `tilgang` binary.
#![forbid(unsafe_code)]

pub mod auth;
pub mod catalogue;
pub mod cli;
pub mod engine;
pub mod gateway;
pub mod grpc;
pub mod ids;
pub mod model;
pub mod register;
pub mod server;
pub mod sidecar;
pub mod snapshot;
pub mod store;
pub mod table;
pub mod telemetry;
pub mod tls;
pub mod web;

/// Generated from `proto/tilgang/v1/*.proto` by `build.rs`.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("tilgang.v1");

    /// The encoded descriptor set, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/tilgang_descriptor.bin"));
}
