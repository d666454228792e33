//! `serve`'s flags for the owner's web page.

use std::path::PathBuf;
use std::time::Duration;

use crate::sidecar::{WebOidc, WebSettings};
use crate::web::session::SessionLimits;

#[derive(Debug, clap::Args)]
pub struct WebArgs {
    /// The owner's web page (HTTP/1.1 and HTTP/2); `off` serves none. Without
    /// an OpenID provider it runs in development mode (a typed-in person, no
    /// login), allowed only on a loopback address
    #[arg(
        long,
        env = "TILGANG_WEB_LISTEN",
        value_name = "ADDR|off",
        default_value = "127.0.0.1:8080"
    )]
    pub web_listen: String,
    /// The URL people open the page at (scheme, host, port), when it is not
    /// `http://` + the bound address: forms must come from its origin
    #[arg(long, env = "TILGANG_WEB_PUBLIC_URL", value_name = "URL")]
    pub web_public_url: Option<String>,
    /// A web session ends after this many seconds without a request
    #[arg(long, env = "TILGANG_WEB_SESSION_IDLE", value_name = "SECONDS", default_value_t = 1800,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub web_session_idle: u64,
    /// A web session ends this many seconds after login, whatever happens
    #[arg(long, env = "TILGANG_WEB_SESSION_LIFETIME", value_name = "SECONDS", default_value_t = 7200,
          value_parser = clap::value_parser!(u64).range(1..=7 * 86_400))]
    pub web_session_lifetime: u64,
    /// Concurrent connections to the web page; more are closed at once
    #[arg(long, env = "TILGANG_WEB_MAX_CONNECTIONS", value_name = "N", default_value_t = 512,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=65_536))]
    pub web_max_connections: usize,
    /// At most this many web sessions at once; a new one then ends the one
    /// idle longest
    #[arg(long, env = "TILGANG_WEB_MAX_SESSIONS", value_name = "N", default_value_t = 10_000,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub web_max_sessions: usize,
    /// The OpenID provider people log in with (ID-porten:
    /// `https://idporten.no`); its `/.well-known/openid-configuration` is read
    /// at start. Without it the page runs in development mode
    #[arg(long, env = "TILGANG_WEB_OIDC_ISSUER", value_name = "URL", requires_all = ["web_oidc_client_id", "web_oidc_client_secret_file"])]
    pub web_oidc_issuer: Option<String>,
    /// This page's client id at the provider
    #[arg(
        long,
        env = "TILGANG_WEB_OIDC_CLIENT_ID",
        value_name = "ID",
        requires = "web_oidc_issuer"
    )]
    pub web_oidc_client_id: Option<String>,
    /// A file holding the client secret (surrounding whitespace ignored; the
    /// secret is never logged)
    #[arg(
        long,
        env = "TILGANG_WEB_OIDC_CLIENT_SECRET_FILE",
        value_name = "FILE",
        requires = "web_oidc_issuer"
    )]
    pub web_oidc_client_secret_file: Option<PathBuf>,
    /// The lowest authentication level accepted (`acr`): `idporten-loa-substantial`
    /// or `idporten-loa-high`
    #[arg(
        long,
        env = "TILGANG_WEB_OIDC_ACR",
        value_name = "ACR",
        default_value = "idporten-loa-substantial"
    )]
    pub web_oidc_acr: String,
    /// The ID-token claim that names the person
    #[arg(
        long,
        env = "TILGANG_WEB_OIDC_PERSON_CLAIM",
        value_name = "CLAIM",
        default_value = "pid"
    )]
    pub web_oidc_person_claim: String,
    /// TLS ends at a proxy in front, which people reach at an `https://`
    /// --web-public-url: then the page may listen off loopback (with a
    /// provider). The proxy's forwarded headers are not read
    #[arg(
        long,
        env = "TILGANG_WEB_BEHIND_PROXY",
        conflicts_with = "web_tls_cert"
    )]
    pub web_behind_proxy: bool,
    /// Serve the web page over TLS with this PEM certificate chain (reloaded
    /// when it changes, like the other listeners'); needs --web-tls-key
    #[arg(
        long,
        env = "TILGANG_WEB_TLS_CERT",
        value_name = "FILE",
        requires = "web_tls_key"
    )]
    pub web_tls_cert: Option<PathBuf>,
    /// The Entity Register's bulk download (gzip'd JSON of `enheter` and/or
    /// `underenheter`, from Brønnøysundregistrene): organisation names on the
    /// page, and unknown or deleted organisations refused; hot-reloaded
    #[arg(long, env = "TILGANG_ORGANIZATIONS", value_name = "FILE")]
    pub organizations: Option<PathBuf>,
    /// The PEM private key of --web-tls-cert
    #[arg(
        long,
        env = "TILGANG_WEB_TLS_KEY",
        value_name = "FILE",
        requires = "web_tls_cert"
    )]
    pub web_tls_key: Option<PathBuf>,
}

impl WebArgs {
    pub fn settings(&self) -> Option<WebSettings> {
        (self.web_listen != "off").then(|| WebSettings {
            listen: self.web_listen.clone(),
            public_url: self.web_public_url.clone(),
            sessions: SessionLimits {
                max_sessions: self.web_max_sessions,
                idle: Duration::from_secs(self.web_session_idle),
                absolute: Duration::from_secs(self.web_session_lifetime),
            },
            oidc: self.web_oidc_issuer.clone().map(|issuer| WebOidc {
                issuer,
                client_id: self.web_oidc_client_id.clone().unwrap_or_default(),
                client_secret_file: self.web_oidc_client_secret_file.clone().unwrap_or_default(),
                acr: self.web_oidc_acr.clone(),
                person_claim: self.web_oidc_person_claim.clone(),
            }),
            behind_proxy: self.web_behind_proxy,
            organizations: self.organizations.clone(),
            max_connections: self.web_max_connections,
            tls: match (&self.web_tls_cert, &self.web_tls_key) {
                (Some(cert), Some(key)) => Some(crate::tls::TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: None,
                }),
                _ => None,
            },
        })
    }
}
