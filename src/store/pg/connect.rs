//! Where the shared store is and how to reach it: `--store` (a libpq-style
//! URL or `key=value` string), the password from `--store-password-file` or
//! `TILGANG_STORE_PASSWORD` (never from the URL into a log), and TLS with
//! rustls (ring), whose server certificate is always verified: against
//! `--store-ca` when given, else Mozilla's roots. `sslmode=disable` is the
//! only way to talk in plain text.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::PgError;

/// How long connecting may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The application name the server shows in `pg_stat_activity`.
const APPLICATION: &str = "tilgang";

/// What a connection receives unasked (notifications, notices); polling it
/// drives the connection.
pub type Messages = std::pin::Pin<
    Box<
        dyn futures_util::Stream<Item = Result<tokio_postgres::AsyncMessage, tokio_postgres::Error>>
            + Send,
    >,
>;

/// A way to reach the shared store. `Display` never shows the password.
#[derive(Clone)]
pub struct StoreConfig {
    pg: tokio_postgres::Config,
    tls: MakeRustlsConnect,
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreConfig({self})")
    }
}

impl fmt::Display for StoreConfig {
    /// `postgres://user@host:port/db`, without the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let user = self.pg.get_user().unwrap_or("");
        let hosts: Vec<String> = self
            .pg
            .get_hosts()
            .iter()
            .zip(self.pg.get_ports().iter().chain(std::iter::repeat(&5432)))
            .map(|(h, p)| match h {
                Host::Tcp(h) => format!("{h}:{p}"),
                Host::Unix(path) => format!("{}:{p}", path.display()),
            })
            .collect();
        let db = self.pg.get_dbname().unwrap_or(user);
        write!(f, "postgres://{user}@{}/{db}", hosts.join(","))
    }
}

impl StoreConfig {
    /// Read `--store`. The password comes from `password_file` (surrounding
    /// whitespace ignored), else `password` (the environment), else the URL;
    /// `ca` is a PEM bundle that replaces the public roots.
    pub fn new(
        url: &str,
        password_file: Option<&Path>,
        password: Option<String>,
        ca: Option<&Path>,
    ) -> Result<Self, PgError> {
        // libpq's `verify-ca`/`verify-full` mean what rustls always does.
        let url = url
            .replace("sslmode=verify-full", "sslmode=require")
            .replace("sslmode=verify-ca", "sslmode=require");
        let mut pg = tokio_postgres::Config::from_str(&url).map_err(|e| PgError::Config {
            reason: format!("`--store` is not a PostgreSQL URL: {e}"),
        })?;
        if pg.get_hosts().is_empty() {
            return Err(PgError::Config {
                reason: "`--store` names no host".to_string(),
            });
        }
        if pg.get_user().is_none() {
            return Err(PgError::Config {
                reason: "`--store` names no user (postgres://USER@HOST/DB)".to_string(),
            });
        }
        if let Some(path) = password_file {
            let text = std::fs::read_to_string(path).map_err(|e| PgError::PasswordFile {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            pg.password(text.trim());
        } else if let Some(p) = password {
            pg.password(p);
        }
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(CONNECT_TIMEOUT);
        }
        // A dead peer is noticed within about half a minute, not at the
        // kernel's two-hour default.
        pg.keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .tcp_user_timeout(Duration::from_secs(20));
        if pg.get_application_name().is_none() {
            pg.application_name(APPLICATION);
        }
        let tls = MakeRustlsConnect::new(client_tls(ca)?);
        let this = Self { pg, tls };
        if !url.contains("sslmode=") {
            // libpq's default, `prefer`, falls back to plain text when the
            // server offers no TLS: say so rather than let it pass unseen.
            tracing::warn!(
                store = %this,
                "`--store` has no `sslmode`: TLS is used only if the server offers it, else the \
                 connection is plain text; say `sslmode=verify-full` (or `sslmode=disable`)"
            );
        }
        Ok(this)
    }

    /// Whether the connection is encrypted.
    pub fn tls(&self) -> bool {
        self.pg.get_ssl_mode() != SslMode::Disable
    }

    pub(super) fn pg(&self) -> &tokio_postgres::Config {
        &self.pg
    }

    pub(super) fn connector(&self) -> MakeRustlsConnect {
        self.tls.clone()
    }

    /// One connection, and the stream of what the server sends on its own
    /// (notifications): polling that stream drives the connection.
    pub async fn connect(&self) -> Result<(tokio_postgres::Client, Messages), PgError> {
        let (client, mut conn) =
            self.pg
                .connect(self.tls.clone())
                .await
                .map_err(|e| PgError::Connect {
                    store: self.to_string(),
                    reason: crate::telemetry::logs::error_chain(&e),
                })?;
        let messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        Ok((client, Box::pin(messages)))
    }

    /// Connect and drive the connection on the runtime: for short jobs
    /// (`migrate`, `export`, `import`) that need no notifications.
    pub async fn connect_spawned(&self) -> Result<tokio_postgres::Client, PgError> {
        let (client, mut messages) = self.connect().await?;
        tokio::spawn(async move {
            use futures_util::StreamExt;
            while let Some(m) = messages.next().await {
                if let Err(e) = m {
                    tracing::debug!(error = %e, "store connection ended");
                }
            }
        });
        Ok(client)
    }
}

/// The rustls client configuration: `ca`'s certificates, or Mozilla's roots.
fn client_tls(ca: Option<&Path>) -> Result<rustls::ClientConfig, PgError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let bad = |reason: String| PgError::Ca {
                path: PathBuf::from(path),
                reason,
            };
            let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
            let mut found = 0;
            for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| bad(format!("not PEM: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| bad(format!("not a usable CA certificate: {e}")))?;
                found += 1;
            }
            if found == 0 {
                return Err(bad("holds no certificate".to_string()));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PgError::Config {
            reason: format!("TLS set-up: {e}"),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_no_password() {
        let c = StoreConfig::new(
            "postgres://tilgang:hunter2@db.example:5433/fleet?sslmode=disable",
            None,
            None,
            None,
        )
        .unwrap();
        assert_eq!(c.to_string(), "postgres://tilgang@db.example:5433/fleet");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!c.tls());
    }

    #[test]
    fn verify_full_is_tls() {
        let c = StoreConfig::new(
            "postgres://u@h/db?sslmode=verify-full",
            None,
            Some("pw".into()),
            None,
        )
        .unwrap();
        assert!(c.tls());
        assert_eq!(c.pg.get_password(), Some(&b"pw"[..]));
    }

    #[test]
    fn refuses_what_is_not_a_store() {
        for bad in ["mysql://x", "postgres://", "postgres://h/db"] {
            assert!(StoreConfig::new(bad, None, None, None).is_err(), "{bad}");
        }
    }
}
