//! Who is at the other end of a connection, as the listener saw it: what the
//! admin listener authenticates by (a client certificate) and records (the
//! address). The server puts it on each request; the services read it.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls_pki_types::CertificateDer;

/// Who is at the other end of the connection a request came on: an
/// extension of every request (`tonic::Request::extensions`).
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The client's end-entity certificate, verified against the listener's
    /// client CA bundle; `None` without TLS or without client certificates.
    pub certificate: Option<Arc<CertificateDer<'static>>>,
}
