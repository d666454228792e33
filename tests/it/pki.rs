//! Certificates for the TLS tests, generated per test (never committed): a
//! CA, server certificates for `localhost` and 127.0.0.1, client certificates,
//! and the PEM files a listener reads, replaced by rename as cert-manager
//! would rotate them.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType};
use tilgang::tls::TlsFiles;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::util::save_by_rename;

pub struct Ca(CertifiedIssuer<'static, KeyPair>);

/// A certificate and its key, as PEM.
pub struct Issued {
    pub cert: String,
    pub key: String,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        Self(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
    }

    pub fn pem(&self) -> String {
        self.0.pem()
    }

    /// A certificate for `names` (DNS names or IP addresses).
    pub fn issue(&self, names: &[&str]) -> Issued {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "tilgang test");
        let cert = params.signed_by(&key, &self.0).unwrap();
        Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// A client certificate whose only name is the URI `uri` (a SPIFFE id).
    pub fn issue_uri(&self, uri: &str) -> Issued {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![SanType::URI(uri.try_into().unwrap())];
        let cert = params.signed_by(&key, &self.0).unwrap();
        Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// A server certificate for this machine's loopback names.
    pub fn server(&self) -> Issued {
        self.issue(&["localhost", "127.0.0.1"])
    }

    /// What a client trusting this CA (and presenting `identity`) uses.
    pub fn client(&self, identity: Option<&Issued>) -> ClientTlsConfig {
        let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(self.pem()));
        match identity {
            Some(i) => tls.identity(Identity::from_pem(&i.cert, &i.key)),
            None => tls,
        }
    }
}

/// Write a listener's files into `dir` (by rename); `client_ca` asks for
/// client certificates issued by it.
pub fn write(dir: &Path, name: &str, server: &Issued, client_ca: Option<&Ca>) -> TlsFiles {
    let path = |what: &str| -> PathBuf { dir.join(format!("{name}.{what}")) };
    save_by_rename(&path("crt"), &server.cert);
    save_by_rename(&path("key"), &server.key);
    let client_ca = client_ca.map(|ca| {
        save_by_rename(&path("client-ca.crt"), &ca.pem());
        path("client-ca.crt")
    });
    TlsFiles {
        cert: path("crt"),
        key: path("key"),
        client_ca,
    }
}
