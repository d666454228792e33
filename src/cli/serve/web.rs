//! `serve`'s flags for the owner's web page.

use std::time::Duration;

use crate::sidecar::WebSettings;
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
    /// At most this many web sessions at once; a new one then ends the one
    /// idle longest
    #[arg(long, env = "TILGANG_WEB_MAX_SESSIONS", value_name = "N", default_value_t = 10_000,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub web_max_sessions: usize,
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
        })
    }
}
