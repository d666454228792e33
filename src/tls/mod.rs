//! TLS for the gateway and admin listeners (rustls, with `ring`): a
//! certificate chain and key from PEM files, optionally a CA bundle that
//! client certificates must chain to, and all of it reloaded from disk when it
//! changes (cert-manager rotates certificates in place or by a Secret's
//! `..data` swap).
//!
//! What it promises:
//! - **Start-up fails** on files that are missing, do not parse, or hold a key
//!   that does not match the certificate: before any port is bound.
//! - **A bad change never replaces a good configuration.** A rotation caught
//!   half-way (the new certificate beside the old key), a truncated file or a
//!   missing one keeps the last good configuration serving, and is logged once
//!   per distinct content; [`ServerTls::status`] reports it.
//! - **Nothing half-written is acted on**: content is used only once two looks
//!   a [`RESCAN`] apart read the same bytes (the rule `snapshot::settle`
//!   explains, with the period as the gap).
//! - **Connections are not disturbed by a rotation**: each handshake takes the
//!   configuration current at that moment, so a connection keeps the
//!   certificate it was opened with and new connections get the new one.
//!
//! The files are looked at every [`RESCAN`] rather than watched: certificates
//! rotate days before they expire, a look is three reads of a few KiB, and it
//! sees through Secret symlinks and file systems without events alike.
//!
//! This module decides nothing about who a client is (see
//! `auth::admin`); it only verifies that a client certificate chains to the
//! CA bundle when one is configured.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

#[cfg(test)]
mod tests;

/// How often the files are looked at.
pub const RESCAN: Duration = Duration::from_secs(1);

/// A certificate file, key or CA bundle is a few KiB; more is a mistake.
pub const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// The protocol tilgang speaks over TLS: gRPC is HTTP/2 only.
const ALPN_H2: &[u8] = b"h2";

/// The files of one listener's TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM: the server certificate first, then its intermediates.
    pub cert: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM: the CAs a client certificate must chain to. Set: every client must
    /// present one (mutual TLS). `None`: no client certificate is asked for.
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading `{}`: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{}` is larger than {MAX_PEM_BYTES} bytes; not a PEM file", path.display())]
    TooLarge { path: PathBuf },
    #[error("`{}` holds no PEM certificate{}", path.display(), detail_suffix(detail))]
    NoCertificate { path: PathBuf, detail: String },
    #[error("`{}` holds no PEM private key{}", path.display(), detail_suffix(detail))]
    NoKey { path: PathBuf, detail: String },
    #[error("the key `{}` does not fit the certificate `{}`: {detail}", key.display(), cert.display())]
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        detail: String,
    },
    #[error("the client CA bundle `{}` is not usable: {detail}", path.display())]
    ClientCa { path: PathBuf, detail: String },
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    }
}

/// What reloading has done, for logs, metrics and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsStatus {
    /// Changes put in force since start-up.
    pub reloads: u64,
    /// What is wrong with the files on disk now, while the last good
    /// configuration keeps serving; `None` when they hold what is served.
    pub problem: Option<String>,
}

/// One listener's TLS configuration, kept current. Cheap to share.
pub struct ServerTls {
    files: TlsFiles,
    /// The protocols offered in ALPN: `h2` for the gRPC listeners, `h2` and
    /// `http/1.1` for the web page.
    alpn: Vec<Vec<u8>>,
    /// Swapped whole; a handshake loads it once.
    config: ArcSwap<ServerConfig>,
    look: Mutex<Look>,
    reloads: AtomicU64,
    /// When the served certificate expires, in Unix seconds (its
    /// `notAfter`), for the metrics: an operator must hear of a rotation that
    /// stopped before clients do.
    expires: AtomicI64,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.files)
            .finish()
    }
}

/// What the looks have seen.
#[derive(Debug, Default)]
struct Look {
    /// The content in force.
    loaded: Option<blake3::Hash>,
    /// Content seen once, differing from what is in force: acted on if the
    /// next look sees it again.
    pending: Option<blake3::Hash>,
    /// The last content refused (logged once), and why.
    refused: Option<(blake3::Hash, String)>,
}

/// The files' bytes, or the error reading them, and their digest. Built into
/// a configuration only when it is to be judged ([`Read::build`]): a look that
/// finds what it saw before reads, hashes and stops.
struct Read {
    digest: blake3::Hash,
    pem: Result<Pem, TlsError>,
}

struct Pem {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl Read {
    /// The configuration, and its leaf certificate's `notAfter`.
    fn build(self, files: &TlsFiles, alpn: &[Vec<u8>]) -> Result<(ServerConfig, i64), TlsError> {
        let pem = self.pem?;
        let (mut config, expires) = build(files, &pem.cert, &pem.key, pem.client_ca.as_deref())?;
        config.alpn_protocols = alpn.to_vec();
        Ok((config, expires))
    }
}

/// What a metrics scrape reads of a listener's TLS.
impl crate::telemetry::metrics::TlsFacts for ServerTls {
    fn reloads(&self) -> u64 {
        self.status().reloads
    }
    fn files_refused(&self) -> bool {
        self.status().problem.is_some()
    }
    fn expires(&self) -> i64 {
        ServerTls::expires(self)
    }
}

impl ServerTls {
    /// Load the files; any problem is an error (for start-up).
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        Self::load_offering(files, vec![ALPN_H2.to_vec()])
    }

    /// For a listener browsers use: HTTP/2 or HTTP/1.1.
    pub fn load_for_browsers(files: TlsFiles) -> Result<Self, TlsError> {
        Self::load_offering(files, vec![ALPN_H2.to_vec(), b"http/1.1".to_vec()])
    }

    fn load_offering(files: TlsFiles, alpn: Vec<Vec<u8>>) -> Result<Self, TlsError> {
        let read = read(&files);
        let digest = read.digest;
        let (config, expires) = read.build(&files, &alpn)?;
        Ok(Self {
            alpn,
            files,
            config: ArcSwap::from_pointee(config),
            look: Mutex::new(Look {
                loaded: Some(digest),
                ..Look::default()
            }),
            reloads: AtomicU64::new(0),
            expires: AtomicI64::new(expires),
        })
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Whether clients must present a certificate.
    pub fn requires_client_certificates(&self) -> bool {
        self.files.client_ca.is_some()
    }

    /// An acceptor for one handshake, with the configuration current now.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.load_full())
    }

    /// When the certificate served now expires (`notAfter`), Unix seconds.
    pub fn expires(&self) -> i64 {
        self.expires.load(Ordering::Relaxed)
    }

    pub fn status(&self) -> TlsStatus {
        let look = self.look.lock().unwrap_or_else(PoisonError::into_inner);
        TlsStatus {
            reloads: self.reloads.load(Ordering::Relaxed),
            problem: look.refused.as_ref().map(|(_, why)| why.clone()),
        }
    }

    /// Look at the files once: put settled new content in force, or report
    /// why not. Blocking (reads files); [`watch`] calls it every [`RESCAN`].
    pub fn look(&self) {
        let read = read(&self.files);
        let mut look = self.look.lock().unwrap_or_else(PoisonError::into_inner);
        if look.loaded == Some(read.digest) {
            // Back to what is served (a change undone): nothing is wrong.
            look.pending = None;
            look.refused = None;
            return;
        }
        if look.pending != Some(read.digest) {
            // New content: maybe mid-save. Acted on once it is seen again.
            look.pending = Some(read.digest);
            return;
        }
        if look.refused.as_ref().map(|(d, _)| *d) == Some(read.digest) {
            // Judged and refused already; still the problem reported.
            return;
        }
        let digest = read.digest;
        match read.build(&self.files, &self.alpn) {
            Ok((config, expires)) => {
                self.config.store(Arc::new(config));
                self.expires.store(expires, Ordering::Relaxed);
                look.loaded = Some(digest);
                look.pending = None;
                look.refused = None;
                let reloads = self.reloads.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::info!(
                    cert = %self.files.cert.display(),
                    reloads,
                    "TLS certificate reloaded; new connections get it, open ones keep theirs"
                );
            }
            Err(e) => {
                tracing::error!(
                    cert = %self.files.cert.display(),
                    error = %e,
                    "TLS files changed but cannot be used; the last good certificate keeps serving"
                );
                look.refused = Some((digest, e.to_string()));
            }
        }
    }
}

/// Look at `tls`'s files every `every` until `stop` completes.
pub async fn watch(
    tls: Arc<ServerTls>,
    every: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut stop = std::pin::pin!(stop);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; start-up has just loaded
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = tick.tick() => {
                let t = tls.clone();
                if let Err(e) = tokio::task::spawn_blocking(move || t.look()).await {
                    tracing::error!(error = %e, "looking at the TLS files failed");
                }
            }
        }
    }
}

/// Read the files. The digest covers what was read, or how reading failed,
/// so a persisting problem is one content (judged and logged once).
fn read(files: &TlsFiles) -> Read {
    let mut hasher = blake3::Hasher::new();
    let mut bytes = |path: &Path| -> Result<Vec<u8>, TlsError> {
        let r = read_capped(path);
        match &r {
            Ok(b) => {
                hasher.update(&(b.len() as u64).to_le_bytes());
                hasher.update(b);
            }
            Err(e) => {
                hasher.update(b"\xff");
                hasher.update(e.to_string().as_bytes());
            }
        }
        r
    };
    let cert = bytes(&files.cert);
    let key = bytes(&files.key);
    let ca = files.client_ca.as_deref().map(&mut bytes);
    let pem = (|| {
        Ok(Pem {
            cert: cert?,
            key: key?,
            client_ca: ca.transpose()?,
        })
    })();
    Read {
        digest: hasher.finalize(),
        pem,
    }
}

fn read_capped(path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read as _;
    let err = |source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(err)?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(err)?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(TlsError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file, in order; at least one.
pub fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::NoCertificate {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
            detail: String::new(),
        });
    }
    Ok(certs)
}

fn build(
    files: &TlsFiles,
    cert: &[u8],
    key: &[u8],
    client_ca: Option<&[u8]>,
) -> Result<(ServerConfig, i64), TlsError> {
    let chain = certificates(&files.cert, cert)?;
    let expires = x509_parser::parse_x509_certificate(&chain[0])
        .map(|(_, c)| c.validity().not_after.timestamp())
        .map_err(|e| TlsError::NoCertificate {
            path: files.cert.clone(),
            detail: format!("the first certificate does not parse: {e}"),
        })?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| TlsError::NoKey {
        path: files.key.clone(),
        detail: match e {
            rustls_pki_types::pem::Error::NoItemsFound => String::new(),
            e => e.to_string(),
        },
    })?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::KeyMismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
            detail: e.to_string(),
        })?;
    let builder = match (&files.client_ca, client_ca) {
        (None, _) => builder.with_no_client_auth(),
        (Some(path), Some(pem)) => {
            let mut roots = RootCertStore::empty();
            for ca in certificates(path, pem)? {
                roots.add(ca).map_err(|e| TlsError::ClientCa {
                    path: path.clone(),
                    detail: e.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| TlsError::ClientCa {
                    path: path.clone(),
                    detail: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
        // A bundle named but not read: never serve without the check.
        (Some(path), None) => {
            return Err(TlsError::ClientCa {
                path: path.clone(),
                detail: "not read".into(),
            });
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::KeyMismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
            detail: e.to_string(),
        })?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok((config, expires))
}
