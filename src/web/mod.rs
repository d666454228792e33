//! The owner's web page: the flow a general manager (DAGL) knows from
//! Altinn's "Tilgang til programmeringsgrensesnitt – API": an overview of the
//! suppliers the organisation has given API rights, adding a supplier
//! (organisation number → rights → confirm → receipt), editing and undoing,
//! and what the organisation has received. Served on a listener of its own.
//!
//! No rules live here: every write is the admin store's operation (the same
//! `DelegationStore::delegate`/`revoke`/`undo` the gRPC admin API calls),
//! decided by the same admin policy and `roles.json`, counted in the same
//! metrics and written to the same audit log (with `"channel": "web"`). This
//! module turns forms into those calls and their answers into pages.
//!
//! Layout: [`i18n`] (every text, three languages), [`session`] (server-side
//! sessions, CSRF), [`views`] (the HTML), [`steps`] (one handler per URL),
//! [`serve`] (the listener: HTTP/1.1 and HTTP/2, bounded connections),
//! [`oidc`] (the OpenID Connect relying party: ID-porten login).

pub mod i18n;
pub mod oidc;
pub mod serve;
pub mod session;
pub mod steps;
pub mod views;
pub mod when;

use std::sync::{Arc, LazyLock};

use crate::store::DelegationStore;
use crate::telemetry::Telemetry;
use session::{SessionLimits, Sessions};

/// How the page is reached and who may log in.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// The URL people use, without a trailing `/` (`https://tilgang.example`
    /// or, in development, `http://127.0.0.1:8080`): the origin forms must
    /// come from and the base of the login redirect.
    pub public_url: String,
    /// No verified login: a person types who they are. Loopback only.
    pub dev_mode: bool,
    pub sessions: SessionLimits,
    /// The OpenID provider people log in with (ID-porten); `None` in
    /// development mode.
    pub oidc: Option<oidc::OidcClient>,
    /// Organisation names (`--organizations`); `None`: numbers only, and
    /// any valid number may be added.
    pub organizations: Option<Arc<crate::register::Registry>>,
}

impl WebConfig {
    /// The scheme and host of [`Self::public_url`], as an `Origin` header
    /// names it.
    pub fn origin(&self) -> &str {
        origin_of(&self.public_url)
    }

    /// Whether the page is served over TLS (then the session cookie is
    /// `__Host-` and `Secure`).
    pub fn secure(&self) -> bool {
        self.public_url.starts_with("https://")
    }

    /// The page's Content-Security-Policy: nothing inline, nothing from
    /// elsewhere; forms post to this site, whose logout redirects to the
    /// provider (browsers hold a form's redirects to `form-action` too).
    pub fn content_security_policy(&self) -> String {
        let provider = self
            .oidc
            .as_ref()
            .map(|c| {
                format!(
                    " {}",
                    origin_of(
                        &c.metadata()
                            .end_session_endpoint
                            .clone()
                            .unwrap_or_else(|| c.metadata().issuer.clone())
                    )
                )
            })
            .unwrap_or_default();
        format!(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'{provider}; \
             frame-ancestors 'none'; base-uri 'none'"
        )
    }
}

/// What every request handler shares.
pub struct Web {
    pub store: Arc<DelegationStore>,
    pub telemetry: Telemetry,
    pub config: WebConfig,
    pub sessions: Sessions,
    /// [`WebConfig::content_security_policy`], made once.
    pub csp: http::HeaderValue,
}

impl std::fmt::Debug for Web {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Web")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Web {
    /// An organisation's name from the register, when there is one.
    pub fn name_of(&self, org: &crate::ids::OrgNumber) -> Option<String> {
        let register = self.config.organizations.as_ref()?.current();
        register.get(org).map(|o| o.name.to_string())
    }

    /// `Name (974 760 673)`, or the spaced number alone.
    pub fn labelled(&self, org: &crate::ids::OrgNumber) -> String {
        match self.name_of(org) {
            Some(name) => format!("{name} ({})", views::spaced(org)),
            None => views::spaced(org),
        }
    }

    pub fn new(store: Arc<DelegationStore>, telemetry: Telemetry, config: WebConfig) -> Arc<Self> {
        let sessions = Sessions::new(config.sessions);
        let csp = http::HeaderValue::from_str(&config.content_security_policy())
            .unwrap_or_else(|_| http::HeaderValue::from_static("default-src 'none'"));
        Arc::new(Self {
            store,
            telemetry,
            config,
            sessions,
            csp,
        })
    }
}

/// The scheme and host of `url`.
pub fn origin_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

/// The stylesheet, built in.
pub const STYLESHEET: &str = include_str!("assets/tilgang.css");

/// The stylesheet's URL: named by its content's hash, so it can be cached
/// for a year and a new build is fetched at once.
pub static STYLESHEET_PATH: LazyLock<String> = LazyLock::new(|| {
    let hash = blake3::hash(STYLESHEET.as_bytes()).to_hex();
    format!("/assets/tilgang-{}.css", &hash[..16])
});
