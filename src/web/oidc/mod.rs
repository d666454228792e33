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

mod config;
mod discovery;
mod error;
mod flow;
mod http;
mod url;

use std::fmt;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use config::*;
pub use discovery::{MIN_UNKNOWN_KID_REFRESH, ProviderMetadata};
pub use error::OidcError;
pub use flow::MAX_ID_TOKEN_AGE;
pub use http::{HttpError, MAX_RESPONSE_BYTES};
pub use url::UrlProblem;

use crate::auth::{ConfigError, TokenError, Verifier, VerifierConfig};
use crate::ids::{PersonId, echo};
use discovery::ProviderKeys;
use flow::{AuthorizationParams, ClientAuth, Exchange, Expected};
use http::HttpClient;

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
            tracing::warn!(error = %crate::telemetry::logs::error_chain(&e), "refreshing the OpenID provider's keys failed; the last keys stay");
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;
