//! The OpenID Connect relying party for the owners' web pages (ID-porten in
//! production): discovery, the authorization code flow with PKCE, the ID
//! token's verification, and the logout URL.
//!
//! The flow, as the web layer drives it:
//! 1. At start-up, [`OidcClient::discover`] fetches the provider's metadata
//!    and keys; an error there is a refusal to start. Keys are then
//!    refreshed in the background (and once on an unknown `kid`); a failed
//!    refresh keeps the last keys.
//! 2. `/login`: [`OidcClient::authorization_request`] gives the URL to
//!    redirect to and a [`PendingLogin`] to keep server-side in the session.
//! 3. `/auth/callback`: [`CallbackParams::from_query`], then
//!    [`OidcClient::callback`] checks `state`, trades the code for tokens,
//!    verifies the ID token (with `auth::Verifier`) and gives a [`Person`].
//! 4. Logout: [`OidcClient::logout_request`].
//!
//! Layout: `discovery` (metadata and keys), `flow` (PKCE, state, nonce,
//! token exchange, claim checks), `http` (the client: timeouts, size
//! limits, rustls with ring), `url` (URL rules, query encoding), `error`.
//!
//! This module keeps no session and serves no page; it decides nothing
//! about what a person may do. It never logs or puts in an error a secret,
//! code, verifier, nonce or token.

mod discovery;
mod error;
mod flow;
mod http;
mod url;

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use discovery::{MIN_UNKNOWN_KID_REFRESH, ProviderMetadata};
pub use error::OidcError;
pub use flow::MAX_ID_TOKEN_AGE;
pub use http::{HttpError, MAX_RESPONSE_BYTES};
pub use url::UrlProblem;

use crate::auth::{ConfigError, DEFAULT_LEEWAY, MAX_LEEWAY, TokenError, Verifier, VerifierConfig};
use crate::ids::{PersonId, echo};
use discovery::ProviderKeys;
use flow::{AuthorizationParams, ClientAuth, Exchange, Expected};
use http::HttpClient;
use url::Http;

/// ID-porten's level for most services, and the default requirement.
pub const DEFAULT_ACR: Acr = Acr::Substantial;
/// ID-porten's claim for the national identity number.
pub const DEFAULT_PERSON_CLAIM: &str = "pid";
/// For each request to the provider: connect, TLS, send and read.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the provider's keys are fetched again.
pub const DEFAULT_KEY_REFRESH: Duration = Duration::from_secs(3600);
/// How long a login may take, from the redirect to the provider to the
/// callback.
pub const DEFAULT_MAX_LOGIN_AGE: Duration = Duration::from_secs(600);

/// The relying party's settings, filled from flags by the web layer.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The issuer exactly as the provider names it (`https://idporten.no`).
    pub issuer: String,
    pub client_id: String,
    pub client_secret: ClientSecret,
    /// `<public url>/auth/callback`, registered with the provider.
    pub redirect_uri: String,
    /// The lowest level of login accepted; asked for as `acr_values`.
    pub required_acr: Acr,
    /// The claim naming the person ([`DEFAULT_PERSON_CLAIM`]).
    pub person_claim: String,
    /// Whether an `http://` issuer (and endpoints) may be used; even then
    /// only for a loopback host. For development and tests.
    pub allow_http: bool,
    pub http_timeout: Duration,
    pub key_refresh: Duration,
    /// Clock skew allowed on `exp`, `nbf` and `iat` (at most
    /// `auth::MAX_LEEWAY`).
    pub leeway: Duration,
    pub max_login_age: Duration,
}

impl OidcConfig {
    /// The defaults for everything else.
    pub fn new(
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: ClientSecret,
        redirect_uri: impl Into<String>,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            client_id: client_id.into(),
            client_secret,
            redirect_uri: redirect_uri.into(),
            required_acr: DEFAULT_ACR,
            person_claim: DEFAULT_PERSON_CLAIM.to_owned(),
            allow_http: false,
            http_timeout: DEFAULT_HTTP_TIMEOUT,
            key_refresh: DEFAULT_KEY_REFRESH,
            leeway: DEFAULT_LEEWAY,
            max_login_age: DEFAULT_MAX_LOGIN_AGE,
        }
    }

    /// Check what can be checked without the network: the issuer and
    /// redirect URI (https, or `http://` to a loopback host when
    /// `allow_http`), non-empty id, secret and claim, the leeway.
    pub fn validate(&self) -> Result<(), OidcError> {
        let http = self.http();
        url::check(&self.issuer, http, false).map_err(|problem| OidcError::Url {
            what: "issuer",
            url: echo(&self.issuer),
            problem,
        })?;
        url::check(&self.redirect_uri, http, true).map_err(|problem| OidcError::Url {
            what: "redirect URI",
            url: echo(&self.redirect_uri),
            problem,
        })?;
        if self.client_id.is_empty() {
            return Err(OidcError::EmptyClientId);
        }
        if self.client_secret.expose().is_empty() {
            return Err(OidcError::EmptyClientSecret);
        }
        if self.person_claim.is_empty() {
            return Err(OidcError::EmptyPersonClaim);
        }
        if self.leeway > MAX_LEEWAY {
            return Err(OidcError::LeewayTooLong {
                leeway: self.leeway,
                max: MAX_LEEWAY,
            });
        }
        Ok(())
    }

    fn http(&self) -> Http {
        if self.allow_http {
            Http::LoopbackOnly
        } else {
            Http::Refused
        }
    }
}

/// The client secret. Never printed: `Debug` shows `ClientSecret(..)`,
/// and there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret(Box<str>);

impl ClientSecret {
    /// The secret as given; a trailing line break (as a file read whole
    /// ends) is dropped.
    pub fn new(secret: impl Into<String>) -> Self {
        let mut secret = secret.into();
        while secret.ends_with(['\n', '\r']) {
            secret.pop();
        }
        Self(secret.into())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(..)")
    }
}

/// ID-porten's levels of assurance, ordered: a higher level satisfies a
/// requirement for a lower one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Acr {
    /// `idporten-loa-low`.
    #[serde(rename = "idporten-loa-low")]
    Low,
    /// `idporten-loa-substantial` (MinID, BankID on mobile, ...).
    #[serde(rename = "idporten-loa-substantial")]
    Substantial,
    /// `idporten-loa-high` (BankID, Buypass, Commfides).
    #[serde(rename = "idporten-loa-high")]
    High,
}

impl Acr {
    /// The value exactly as ID-porten writes it.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "idporten-loa-low" => Some(Self::Low),
            "idporten-loa-substantial" => Some(Self::Substantial),
            "idporten-loa-high" => Some(Self::High),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "idporten-loa-low",
            Self::Substantial => "idporten-loa-substantial",
            Self::High => "idporten-loa-high",
        }
    }

    /// Whether a login at this level meets `required`.
    pub fn satisfies(self, required: Acr) -> bool {
        self >= required
    }
}

impl FromStr for Acr {
    type Err = OidcError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).ok_or_else(|| OidcError::UnknownAcr { got: echo(s) })
    }
}

impl fmt::Display for Acr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The language of the provider's pages (`ui_locales`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UiLocale {
    Nb,
    Nn,
    En,
}

impl UiLocale {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "nb" => Some(Self::Nb),
            "nn" => Some(Self::Nn),
            "en" => Some(Self::En),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nb => "nb",
            Self::Nn => "nn",
            Self::En => "en",
        }
    }
}

/// A login under way, kept server-side in the browser's session between
/// the redirect to the provider and the callback. `Debug` shows only its age.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLogin {
    /// Sent to the provider and back: ties the callback to this session.
    pub state: String,
    /// Must come back inside the ID token.
    pub nonce: String,
    /// PKCE: its S256 hash went out with the request; it goes to the
    /// token endpoint with the code.
    pub code_verifier: String,
    pub created_at: SystemTime,
}

impl fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingLogin")
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// Where to send the browser, and what to keep until it comes back.
#[derive(Debug, Clone)]
pub struct AuthorizationRequest {
    pub url: String,
    pub pending: PendingLogin,
}

/// The callback's query parameters (`/auth/callback?code=..&state=..`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CallbackParams {
    pub code: Option<String>,
    pub state: Option<String>,
    /// RFC 9207's `iss`, when the provider sends it.
    pub iss: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

impl fmt::Debug for CallbackParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackParams")
            .field("code", &self.code.as_ref().map(|_| ".."))
            .field("state", &self.state.as_ref().map(|_| ".."))
            .field("iss", &self.iss)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl CallbackParams {
    /// From a query string (without `?`). A parameter tilgang reads that
    /// appears twice is refused; others are ignored.
    pub fn from_query(query: &str) -> Result<Self, OidcError> {
        let mut params = Self::default();
        for (name, value) in url::parse_query(query) {
            let slot = match name.as_str() {
                "code" => &mut params.code,
                "state" => &mut params.state,
                "iss" => &mut params.iss,
                "error" => &mut params.error,
                "error_description" => &mut params.error_description,
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return Err(OidcError::DuplicateParameter { name: echo(&name) });
            }
        }
        Ok(params)
    }
}

/// An ID token, kept for the logout's `id_token_hint`. `Debug` hides it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdToken(String);

impl IdToken {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for IdToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdToken(..)")
    }
}

/// Who logged in. `Debug` does not show the person id.
#[derive(Clone, PartialEq, Eq)]
pub struct Person {
    /// From the configured person claim (`pid`: the national identity number).
    pub pid: PersonId,
    pub name: Option<String>,
    /// The level the person logged in at; at least the required one.
    pub acr: Acr,
    /// The provider's session id, when it sends one.
    pub sid: Option<String>,
    pub id_token: IdToken,
}

impl fmt::Debug for Person {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Person")
            .field("acr", &self.acr)
            .field("has_name", &self.name.is_some())
            .field("has_sid", &self.sid.is_some())
            .finish_non_exhaustive()
    }
}

/// Where to send the browser to log out at the provider, and the `state`
/// the provider will send back to `post_logout_redirect_uri`.
#[derive(Debug, Clone)]
pub struct LogoutRequest {
    pub url: String,
    pub state: String,
}

/// The relying party. Cheap to clone; clones share keys and metadata. The
/// background key refresh ends when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct OidcClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: OidcConfig,
    meta: ProviderMetadata,
    auth: ClientAuth,
    http: HttpClient,
    keys: ProviderKeys,
    verifier: Verifier,
}

impl OidcClient {
    /// Validate `config`, fetch the provider's metadata and keys, and start
    /// refreshing the keys every `config.key_refresh` (on the current tokio
    /// runtime). Any error here should refuse the start.
    pub async fn discover(config: OidcConfig) -> Result<Self, OidcError> {
        config.validate()?;
        let http = HttpClient::new(config.http_timeout).map_err(|source| OidcError::Http {
            what: "discovery",
            url: echo(&config.issuer),
            source,
        })?;
        let meta = discovery::discover(&http, &config.issuer, config.http()).await?;
        let auth = flow::client_auth(&meta)?;
        let keys = ProviderKeys::fetch(&http, &meta).await?;
        let verifier = Verifier::new(
            keys.jwks.clone(),
            VerifierConfig {
                issuer: Some(meta.issuer.clone()),
                audiences: vec![config.client_id.clone()],
                leeway: config.leeway,
            },
        )
        .map_err(|e| match e {
            ConfigError::LeewayTooLong { leeway, max } => OidcError::LeewayTooLong { leeway, max },
            // `validate` refused an empty client id; the issuer matched the
            // configured one, which is a URL.
            ConfigError::EmptyAudience | ConfigError::EmptyIssuer => OidcError::EmptyClientId,
        })?;
        tracing::info!(
            issuer = %echo(&meta.issuer),
            kids = ?keys.jwks.keys().kids(),
            "OpenID provider discovered"
        );
        let inner = Arc::new(Inner {
            config,
            meta,
            auth,
            http,
            keys,
            verifier,
        });
        tokio::spawn(refresh_keys_every(
            Arc::downgrade(&inner),
            inner.config.key_refresh,
        ));
        Ok(Self { inner })
    }

    pub fn metadata(&self) -> &ProviderMetadata {
        &self.inner.meta
    }

    pub fn config(&self) -> &OidcConfig {
        &self.inner.config
    }

    /// A new login: the provider's authorization URL (code flow, PKCE S256,
    /// fresh `state` and `nonce`, `acr_values`, `scope=openid profile`) and
    /// what to keep in the session until the callback.
    pub fn authorization_request(
        &self,
        ui_locale: Option<UiLocale>,
    ) -> Result<AuthorizationRequest, OidcError> {
        self.login_request(ui_locale, false)
    }

    /// [`Self::authorization_request`]; `fresh` asks the provider to
    /// authenticate the person again (`prompt=login`) rather than reuse its
    /// session: after a refused login, so "try again" is a new try.
    pub fn login_request(
        &self,
        ui_locale: Option<UiLocale>,
        fresh: bool,
    ) -> Result<AuthorizationRequest, OidcError> {
        let config = &self.inner.config;
        let pending = PendingLogin {
            state: flow::random_token()?,
            nonce: flow::random_token()?,
            code_verifier: flow::random_token()?,
            created_at: SystemTime::now(),
        };
        let url = flow::authorization_url(
            &self.inner.meta.authorization_endpoint,
            &AuthorizationParams {
                client_id: &config.client_id,
                redirect_uri: &config.redirect_uri,
                acr: config.required_acr,
                state: &pending.state,
                nonce: &pending.nonce,
                code_challenge: &flow::code_challenge(&pending.code_verifier),
                ui_locale: ui_locale.map(UiLocale::as_str),
                fresh,
            },
        );
        Ok(AuthorizationRequest { url, pending })
    }

    /// Finish a login: check the callback against `pending`, trade the code
    /// for tokens and verify the ID token. `pending` should be removed from
    /// the session whatever the outcome: a login is tried once.
    pub async fn callback(
        &self,
        pending: &PendingLogin,
        params: &CallbackParams,
    ) -> Result<Person, OidcError> {
        let Inner {
            config, meta, http, ..
        } = &*self.inner;
        let state = params.state.as_deref().ok_or(OidcError::MissingState)?;
        if !flow::same_secret(state, &pending.state) {
            return Err(OidcError::StateMismatch);
        }
        match params.iss.as_deref() {
            Some(iss) if iss == meta.issuer => {}
            None if !meta.authorization_response_iss_parameter_supported => {}
            got => {
                return Err(OidcError::CallbackIssuer { got: got.map(echo) });
            }
        }
        if let Some(error) = &params.error {
            return Err(OidcError::Provider {
                error: echo(error),
                description: params.error_description.as_deref().map(echo),
            });
        }
        let age = SystemTime::now()
            .duration_since(pending.created_at)
            .unwrap_or_default();
        if age > config.max_login_age {
            return Err(OidcError::LoginExpired {
                age,
                max: config.max_login_age,
            });
        }
        let code = params.code.as_deref().ok_or(OidcError::MissingCode)?;
        let id_token = flow::exchange_code(
            http,
            meta,
            &Exchange {
                client_id: &config.client_id,
                secret: &config.client_secret,
                auth: self.inner.auth,
                redirect_uri: &config.redirect_uri,
                code,
                code_verifier: &pending.code_verifier,
            },
        )
        .await?;
        let claims = match self.inner.verifier.verify(&id_token) {
            Err(TokenError::UnknownKey { .. })
                if self.inner.keys.refresh_for_unknown_kid(http).await =>
            {
                self.inner.verifier.verify(&id_token)
            }
            other => other,
        }
        .map_err(OidcError::IdToken)?;
        let checked = flow::check_claims(
            &claims,
            &Expected {
                client_id: &config.client_id,
                nonce: &pending.nonce,
                acr: config.required_acr,
                person_claim: &config.person_claim,
                leeway: i64::try_from(config.leeway.as_secs()).unwrap_or(i64::MAX),
            },
            unix_now(),
        )?;
        Ok(Person {
            pid: checked.pid,
            name: checked.name,
            acr: checked.acr,
            sid: checked.sid,
            id_token: IdToken(id_token),
        })
    }

    /// The provider's end-session URL for this login, with `id_token_hint`,
    /// `post_logout_redirect_uri` (registered with the provider),
    /// `client_id` and a fresh `state`; `None` when the provider has no
    /// end-session endpoint (then only the local session ends).
    pub fn logout_request(
        &self,
        id_token: &IdToken,
        post_logout_redirect_uri: &str,
    ) -> Result<Option<LogoutRequest>, OidcError> {
        let Some(endpoint) = &self.inner.meta.end_session_endpoint else {
            return Ok(None);
        };
        let state = flow::random_token()?;
        let url = url::with_query(
            endpoint,
            &[
                ("id_token_hint", id_token.as_str()),
                ("post_logout_redirect_uri", post_logout_redirect_uri),
                ("client_id", &self.inner.config.client_id),
                ("state", &state),
            ],
        );
        Ok(Some(LogoutRequest { url, state }))
    }

    /// Fetch the provider's keys now; on failure the last keys stay.
    pub async fn refresh_keys(&self) -> Result<(), OidcError> {
        self.inner.keys.refresh(&self.inner.http).await
    }
}

async fn refresh_keys_every(inner: Weak<Inner>, every: Duration) {
    let every = every.max(Duration::from_secs(1));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        if let Err(e) = inner.keys.refresh(&inner.http).await {
            tracing::warn!(error = %chain(&e), "refreshing the OpenID provider's keys failed; the last keys stay");
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// An error and its causes, `: `-separated, for a log line.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_levels_satisfy_lower_requirements() {
        assert!(Acr::High.satisfies(Acr::Substantial));
        assert!(Acr::Substantial.satisfies(Acr::Substantial));
        assert!(!Acr::Low.satisfies(Acr::Substantial));
        assert!(!Acr::Substantial.satisfies(Acr::High));
        assert!(Acr::Low < Acr::Substantial && Acr::Substantial < Acr::High);
        for acr in [Acr::Low, Acr::Substantial, Acr::High] {
            assert_eq!(Acr::parse(acr.as_str()), Some(acr));
            assert_eq!(acr.as_str().parse::<Acr>().unwrap(), acr);
        }
        assert_eq!(Acr::parse("Idporten-loa-high"), None);
        assert_eq!(
            "level4".parse::<Acr>().unwrap_err().to_string(),
            "the ID token's acr `level4` is not a known level"
        );
    }

    #[test]
    fn secrets_and_tokens_stay_out_of_debug() {
        let config = OidcConfig::new(
            "https://idporten.no",
            "client",
            ClientSecret::new("hunter2\n"),
            "https://tilgang.example/auth/callback",
        );
        assert_eq!(config.client_secret.expose(), "hunter2");
        assert!(!format!("{config:?}").contains("hunter2"));
        let pending = PendingLogin {
            state: "st4te".into(),
            nonce: "n0nce".into(),
            code_verifier: "v3rifier".into(),
            created_at: SystemTime::now(),
        };
        let shown = format!("{pending:?}");
        assert!(
            !shown.contains("st4te") && !shown.contains("n0nce") && !shown.contains("v3rifier")
        );
        let person = Person {
            pid: PersonId::parse("01017012345").unwrap(),
            name: Some("Dagny".into()),
            acr: Acr::High,
            sid: Some("sid".into()),
            id_token: IdToken("eyJ.x.y".into()),
        };
        let shown = format!("{person:?}");
        assert!(
            !shown.contains("01017012345") && !shown.contains("eyJ"),
            "{shown}"
        );
        let params = CallbackParams::from_query("code=c0de&state=st4te").unwrap();
        let shown = format!("{params:?}");
        assert!(
            !shown.contains("c0de") && !shown.contains("st4te"),
            "{shown}"
        );
    }

    #[test]
    fn config_refuses_http_unless_loopback_and_allowed() {
        let config = |issuer: &str, allow_http| {
            let mut c = OidcConfig::new(
                issuer,
                "client",
                ClientSecret::new("s"),
                "http://127.0.0.1:8080/auth/callback",
            );
            c.allow_http = allow_http;
            c.validate()
        };
        assert!(config("http://127.0.0.1:9000", true).is_ok());
        assert_eq!(
            config("http://op.example", true).unwrap_err().to_string(),
            "the issuer `http://op.example` is refused: http:// is allowed only for a loopback host (127.0.0.1, ::1, localhost); use https"
        );
        assert!(matches!(
            config("http://127.0.0.1:9000", false),
            Err(OidcError::Url {
                problem: UrlProblem::HttpNotAllowed,
                ..
            })
        ));
        let mut c = OidcConfig::new(
            "https://idporten.no",
            "",
            ClientSecret::new("s"),
            "https://x/cb",
        );
        assert!(matches!(c.validate(), Err(OidcError::EmptyClientId)));
        c.client_id = "id".into();
        c.client_secret = ClientSecret::new("\n");
        assert!(matches!(c.validate(), Err(OidcError::EmptyClientSecret)));
    }

    #[test]
    fn callback_params_refuse_a_repeated_parameter() {
        let p = CallbackParams::from_query(
            "code=abc&state=xyz&iss=https%3A%2F%2Fidporten.no&other=1&other=2",
        )
        .unwrap();
        assert_eq!(p.code.as_deref(), Some("abc"));
        assert_eq!(p.state.as_deref(), Some("xyz"));
        assert_eq!(p.iss.as_deref(), Some("https://idporten.no"));
        let e =
            CallbackParams::from_query("error=access_denied&error_description=avbrutt+av+bruker")
                .unwrap();
        assert_eq!(e.error_description.as_deref(), Some("avbrutt av bruker"));
        assert!(matches!(
            CallbackParams::from_query("state=a&state=b"),
            Err(OidcError::DuplicateParameter { .. })
        ));
    }
}
