//! [`OidcError`]: everything that can go wrong between tilgang and the
//! OpenID provider, one variant per cause. Messages say what went wrong in
//! lowercase without a final period; values from the provider or the
//! browser are [`echo`](crate::ids::echo)ed, and no message ever holds a
//! client secret, code, code verifier, nonce or token.

use std::time::Duration;

use super::http::HttpError;
use super::url::UrlProblem;
use crate::auth::{KeySetError, TokenError};

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    // Configuration: found before anything is fetched.
    /// The issuer, redirect URI or a discovered endpoint is not a URL
    /// tilgang will use. `what` names which one.
    #[error("the {what} `{url}` is refused: {problem}")]
    Url {
        what: &'static str,
        url: String,
        problem: UrlProblem,
    },
    #[error("the client id is empty")]
    EmptyClientId,
    #[error("the client secret is empty")]
    EmptyClientSecret,
    #[error("the person claim name is empty")]
    EmptyPersonClaim,
    /// A leeway beyond what is clock skew (see `auth::MAX_LEEWAY`).
    #[error("the clock leeway {leeway:?} is longer than the most allowed, {max:?}")]
    LeewayTooLong { leeway: Duration, max: Duration },
    #[error("the operating system's random source failed")]
    Random,

    // Discovery and keys.
    /// `what` is `discovery`, `keys` or `token`.
    #[error("{what} request to `{url}` failed")]
    Http {
        what: &'static str,
        url: String,
        #[source]
        source: HttpError,
    },
    #[error("{what} request to `{url}` answered HTTP {status}")]
    Status {
        what: &'static str,
        url: String,
        status: u16,
    },
    #[error("the discovery document at `{url}` is invalid: {problem}")]
    Discovery { url: String, problem: String },
    /// The document names another issuer than the one configured (OpenID
    /// Connect Discovery §4.3: they must be identical).
    #[error("the discovery document names issuer `{got}`, not the configured `{want}`")]
    IssuerMismatch { got: String, want: String },
    #[error("the provider does not offer PKCE with S256")]
    PkceUnsupported,
    #[error(
        "the provider supports neither client_secret_basic nor client_secret_post at its token endpoint"
    )]
    NoSupportedAuthMethod,
    #[error("the key set at `{url}` is invalid: {problem}")]
    Keys { url: String, problem: KeySetError },

    // The callback.
    /// The provider sent the browser back with an error (the person
    /// cancelled, or the request was refused). `error` is the OAuth code.
    #[error("the provider answered with error `{error}`{}", description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Provider {
        error: String,
        description: Option<String>,
    },
    #[error("the callback has no `state`")]
    MissingState,
    /// Not this browser's login, or a forged callback.
    #[error("the callback's `state` does not match the login in progress")]
    StateMismatch,
    #[error("the callback names parameter `{name}` more than once")]
    DuplicateParameter { name: String },
    #[error("the callback has no `code`")]
    MissingCode,
    /// RFC 9207: the callback's `iss` is not the provider's (mix-up), or is
    /// missing although the provider says it always sends one.
    #[error("the callback's issuer {} is not the provider's", got.as_deref().map(|g| format!("`{g}`")).unwrap_or_else(|| "(none)".into()))]
    CallbackIssuer { got: Option<String> },
    #[error("the login was started {age:?} ago; at most {max:?} is allowed")]
    LoginExpired { age: Duration, max: Duration },
    /// The token endpoint refused the code: `invalid_grant` for a code used
    /// twice, expired, or issued to another client or redirect URI.
    #[error("the token endpoint answered HTTP {status}{}{}", error.as_deref().map(|e| format!(" with error `{e}`")).unwrap_or_default(), description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    TokenEndpoint {
        status: u16,
        error: Option<String>,
        description: Option<String>,
    },
    #[error("the token response is invalid: {problem}")]
    TokenResponse { problem: &'static str },
    /// The ID token's signature, `iss`, `aud`, `exp` or `nbf` is wrong.
    #[error("the ID token is not accepted: {0}")]
    IdToken(#[source] TokenError),
    #[error("the ID token's nonce does not match the login in progress")]
    NonceMismatch,
    #[error("the ID token's `azp` is not this client")]
    WrongAuthorizedParty,
    #[error("the ID token has several audiences and no `azp`")]
    MissingAuthorizedParty,
    #[error("the ID token was issued at {iat} (Unix time), {problem}")]
    IssuedAt { iat: i64, problem: &'static str },
    #[error("the ID token has no `acr`")]
    MissingAcr,
    #[error("the ID token's acr `{got}` is not a known level")]
    UnknownAcr { got: String },
    /// The person logged in at a lower level than required.
    #[error("the login's level `{got}` is below the required `{required}`")]
    InsufficientAcr { got: String, required: String },
    #[error("the ID token has no `{claim}` claim")]
    MissingPersonClaim { claim: String },
    /// Not a string, or not a person id tilgang accepts (the value is not
    /// shown: it is a national identity number).
    #[error("the ID token's `{claim}` claim is not a valid person id")]
    InvalidPersonClaim { claim: String },
}

impl OidcError {
    /// A short, stable name for the variant, for metrics labels and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Url { .. } => "url",
            Self::EmptyClientId => "empty_client_id",
            Self::EmptyClientSecret => "empty_client_secret",
            Self::EmptyPersonClaim => "empty_person_claim",
            Self::LeewayTooLong { .. } => "leeway_too_long",
            Self::Random => "random",
            Self::Http { .. } => "http",
            Self::Status { .. } => "status",
            Self::Discovery { .. } => "discovery",
            Self::IssuerMismatch { .. } => "issuer_mismatch",
            Self::PkceUnsupported => "pkce_unsupported",
            Self::NoSupportedAuthMethod => "no_supported_auth_method",
            Self::Keys { .. } => "keys",
            Self::Provider { .. } => "provider",
            Self::MissingState => "missing_state",
            Self::StateMismatch => "state_mismatch",
            Self::DuplicateParameter { .. } => "duplicate_parameter",
            Self::MissingCode => "missing_code",
            Self::CallbackIssuer { .. } => "callback_issuer",
            Self::LoginExpired { .. } => "login_expired",
            Self::TokenEndpoint { .. } => "token_endpoint",
            Self::TokenResponse { .. } => "token_response",
            Self::IdToken(_) => "id_token",
            Self::NonceMismatch => "nonce_mismatch",
            Self::WrongAuthorizedParty => "wrong_authorized_party",
            Self::MissingAuthorizedParty => "missing_authorized_party",
            Self::IssuedAt { .. } => "issued_at",
            Self::MissingAcr => "missing_acr",
            Self::UnknownAcr { .. } => "unknown_acr",
            Self::InsufficientAcr { .. } => "insufficient_acr",
            Self::MissingPersonClaim { .. } => "missing_person_claim",
            Self::InvalidPersonClaim { .. } => "invalid_person_claim",
        }
    }

    /// Whether the person in the browser can fix this by logging in again
    /// (a stale or crossed login, a cancel, a level too low), as opposed to
    /// a fault of the provider, the network or the configuration.
    pub fn is_login_problem(&self) -> bool {
        matches!(
            self,
            Self::Provider { .. }
                | Self::MissingState
                | Self::StateMismatch
                | Self::DuplicateParameter { .. }
                | Self::MissingCode
                | Self::LoginExpired { .. }
                | Self::InsufficientAcr { .. }
                | Self::MissingAcr
                | Self::NonceMismatch
        ) || matches!(self, Self::TokenEndpoint { error: Some(e), .. } if e == "invalid_grant")
    }
}
