//! The owner's web page at start-up: its settings, its TLS, the bind (with
//! the loopback rule for development mode), the organization register and
//! the OpenID provider's discovery, all before anything is served.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;

use super::{StartError, io};
use crate::tls::{ServerTls, TlsFiles};

/// `--web-listen` and what goes with it.
#[derive(Debug, Clone)]
pub struct WebSettings {
    pub listen: String,
    /// `None`: `http://` + the bound address.
    pub public_url: Option<String>,
    pub sessions: crate::web::session::SessionLimits,
    /// Log in with this OpenID provider; `None`: development mode.
    pub oidc: Option<WebOidc>,
    /// TLS ends at a proxy in front (`--web-behind-proxy`).
    pub behind_proxy: bool,
    /// The Entity Register's bulk download (`--organizations`): names.
    pub organizations: Option<PathBuf>,
    /// `--web-max-connections`.
    pub max_connections: usize,
    /// The page's own TLS (`--web-tls-cert`); `None`: plaintext (loopback,
    /// or behind a proxy).
    pub tls: Option<TlsFiles>,
}

/// `--web-oidc-*`.
#[derive(Debug, Clone)]
pub struct WebOidc {
    pub issuer: String,
    pub client_id: String,
    pub client_secret_file: PathBuf,
    pub acr: String,
    pub person_claim: String,
}

/// Bind the web listener and, with a provider, discover it. Off loopback the
/// page needs a verified login (a provider) and TLS, which ends at a proxy
/// in front (`--web-behind-proxy` with an `https://` public URL); development
/// mode is loopback only. Checked where it bound.
pub(super) async fn bind_web(
    w: &WebSettings,
) -> Result<
    (
        TcpListener,
        SocketAddr,
        crate::web::WebConfig,
        Option<Arc<ServerTls>>,
    ),
    StartError,
> {
    use crate::web::oidc::{Acr, ClientSecret, OidcClient, OidcConfig};
    let tls = match &w.tls {
        Some(files) => Some(Arc::new(
            ServerTls::load_for_browsers(files.clone())
                .map_err(|e| StartError::Config(format!("`--web-tls-cert`: {e}")))?,
        )),
        None => None,
    };
    let tcp = TcpListener::bind(&w.listen)
        .await
        .map_err(io(format!("binding `--web-listen {}`", w.listen)))?;
    let addr = tcp.local_addr().map_err(io("web address"))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let public_url = w
        .public_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{addr}"))
        .trim_end_matches('/')
        .to_string();
    if !addr.ip().is_loopback() {
        let https = public_url.starts_with("https://");
        let why = match (&w.oidc, tls.is_some() || w.behind_proxy, https) {
            (None, _, _) => Some("without --web-oidc-issuer nobody is verified (development mode)"),
            (Some(_), false, _) => Some(
                "give it TLS (--web-tls-cert, --web-tls-key), or put it behind a TLS proxy and say so with --web-behind-proxy",
            ),
            (Some(_), true, false) => {
                Some("--web-public-url must be the `https://` URL people use")
            }
            (Some(_), true, true) => None,
        };
        if let Some(why) = why {
            return Err(StartError::Config(format!(
                "refusing to serve the web page on `--web-listen {}` ({addr}, not a loopback address): {why}",
                w.listen
            )));
        }
    }
    let organizations = match &w.organizations {
        Some(path) => {
            let path = path.clone();
            let registry =
                tokio::task::spawn_blocking(move || crate::register::Registry::open(path))
                    .await
                    .map_err(|e| StartError::Config(format!("loading `--organizations`: {e}")))?
                    .map_err(|e| StartError::Config(format!("`--organizations`: {e}")))?;
            tracing::info!(
                organizations = registry.current().len(),
                skipped = registry.current().skipped(),
                "loaded the organization register"
            );
            Some(registry)
        }
        None => None,
    };
    let oidc = match &w.oidc {
        None => {
            tracing::warn!(
                %addr, "the web page runs in development mode: a person types who they are, nobody is verified"
            );
            None
        }
        Some(o) => {
            let secret = std::fs::read_to_string(&o.client_secret_file).map_err(io(format!(
                "reading `--web-oidc-client-secret-file {}`",
                o.client_secret_file.display()
            )))?;
            let mut config = OidcConfig::new(
                o.issuer.clone(),
                o.client_id.clone(),
                ClientSecret::new(secret.trim()),
                format!("{public_url}/auth/callback"),
            );
            config.required_acr = o
                .acr
                .parse::<Acr>()
                .map_err(|e| StartError::Config(format!("`--web-oidc-acr {}`: {e}", o.acr)))?;
            config.person_claim = o.person_claim.clone();
            // Plain http only to a provider on this machine (tests, a local
            // provider); the client refuses it anywhere else.
            config.allow_http = true;
            let client = OidcClient::discover(config).await.map_err(|e| {
                StartError::Config(format!("`--web-oidc-issuer {}`: {e}", o.issuer))
            })?;
            tracing::info!(issuer = %o.issuer, %addr, "the web page logs people in with the OpenID provider");
            Some(client)
        }
    };
    Ok((
        tcp,
        addr,
        crate::web::WebConfig {
            public_url,
            dev_mode: oidc.is_none(),
            sessions: w.sessions,
            oidc,
            organizations,
        },
        tls,
    ))
}
