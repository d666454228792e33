//! What the relying party is told: the provider, this client and its
//! secret, the level required (`Acr`), and the language asked for. No I/O.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::OidcError;
use super::url::{self, Http};
use crate::auth::{DEFAULT_LEEWAY, MAX_LEEWAY};
use crate::ids::echo;

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

    pub(super) fn http(&self) -> Http {
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
