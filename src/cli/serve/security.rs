//! `serve`'s flags for who may call: the gateway's Maskinporten tokens
//! (`--jwks`), the admin listener's ID-porten tokens (`--admin-jwks`), and TLS
//! on both listeners.

use std::path::PathBuf;
use std::time::Duration;

use crate::auth::{DEFAULT_LEEWAY, DEFAULT_PERSON_CLAIM, MAX_LEEWAY, VerifierConfig};
use crate::grpc::ext_authz::DEFAULT_PAYLOAD_KEY;
use crate::sidecar::{AdminAuthConfig, BearerConfig};
use crate::tls::TlsFiles;

/// How Envoy's ext_authz `Check` gets the caller's Maskinporten claims.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Gateway tokens (ext_authz Check)")]
pub struct TokenArgs {
    /// The key under `envoy.filters.http.jwt_authn` metadata holding the
    /// verified token payload (jwt_authn's `payload_in_metadata`)
    #[arg(long, env = "TILGANG_JWT_PAYLOAD_KEY", value_name = "KEY",
          default_value = DEFAULT_PAYLOAD_KEY, value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub jwt_payload_key: String,
    /// Without jwt_authn: verify the `Authorization: Bearer` token against
    /// this JWKS file (hot-reloaded). Unset: a check without jwt_authn
    /// claims is answered 401
    #[arg(long, env = "TILGANG_JWKS", value_name = "FILE")]
    pub jwks: Option<PathBuf>,
    /// With --jwks: the exact `iss` a token must carry (Maskinporten:
    /// `https://maskinporten.no/`)
    #[arg(
        long,
        env = "TILGANG_JWT_ISSUER",
        value_name = "ISS",
        requires = "jwks"
    )]
    pub jwt_issuer: Option<String>,
    /// With --jwks: an accepted `aud` (repeat, or comma-separated in the
    /// variable); a token must name one of them
    #[arg(
        long,
        env = "TILGANG_JWT_AUDIENCE",
        value_name = "AUD",
        requires = "jwks",
        value_delimiter = ','
    )]
    pub jwt_audience: Vec<String>,
    /// With --jwks: clock skew allowed on `exp` and `nbf`, whole seconds
    #[arg(long, env = "TILGANG_JWT_LEEWAY", value_name = "SECONDS", requires = "jwks",
          default_value_t = DEFAULT_LEEWAY.as_secs(),
          value_parser = clap::value_parser!(u64).range(0..=MAX_LEEWAY.as_secs()))]
    pub jwt_leeway: u64,
    /// With --jwks: verified tokens remembered (by a digest of the whole
    /// token, never past `exp` or a change of the key set), so a client's
    /// repeated token skips the signature check; 0 verifies every token in full
    #[arg(long, env = "TILGANG_JWT_CACHE", value_name = "TOKENS",
          default_value_t = crate::auth::verify::DEFAULT_TOKEN_CACHE,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=1_048_576))]
    pub jwt_cache: usize,
}

impl TokenArgs {
    pub(super) fn bearer(&self) -> Option<BearerConfig> {
        let jwks = self.jwks.clone().filter(|p| !p.as_os_str().is_empty())?;
        Some(BearerConfig {
            jwks,
            verifier: VerifierConfig {
                issuer: self.jwt_issuer.clone().filter(|i| !i.is_empty()),
                audiences: self.jwt_audience.clone(),
                leeway: Duration::from_secs(self.jwt_leeway),
            },
        })
    }
}

/// How the admin listener knows who is calling.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Admin authentication")]
pub struct AdminAuthArgs {
    /// Verify every admin call's `Authorization: Bearer` token (ID-porten)
    /// against this JWKS file (hot-reloaded); a call acts for the person the
    /// token names. Unset, and no --admin-client-identities: development
    /// mode, `actor` trusted as written, and the admin listener only on a
    /// loopback address
    #[arg(long, env = "TILGANG_ADMIN_JWKS", value_name = "FILE")]
    pub admin_jwks: Option<PathBuf>,
    /// With --admin-jwks: the exact `iss` a token must carry (ID-porten:
    /// `https://idporten.no`)
    #[arg(
        long,
        env = "TILGANG_ADMIN_JWT_ISSUER",
        value_name = "ISS",
        requires = "admin_jwks"
    )]
    pub admin_jwt_issuer: Option<String>,
    /// With --admin-jwks, required: an accepted `aud` (repeat, or
    /// comma-separated in the variable); a token must name one of them
    #[arg(
        long,
        env = "TILGANG_ADMIN_JWT_AUDIENCE",
        value_name = "AUD",
        requires = "admin_jwks",
        value_delimiter = ','
    )]
    pub admin_jwt_audience: Vec<String>,
    /// With --admin-jwks: clock skew allowed on `exp` and `nbf`, whole seconds
    #[arg(long, env = "TILGANG_ADMIN_JWT_LEEWAY", value_name = "SECONDS", requires = "admin_jwks",
          default_value_t = DEFAULT_LEEWAY.as_secs(),
          value_parser = clap::value_parser!(u64).range(0..=MAX_LEEWAY.as_secs()))]
    pub admin_jwt_leeway: u64,
    /// With --admin-jwks: the claim naming the person (ID-porten's `pid`,
    /// the national identity number)
    #[arg(long, env = "TILGANG_ADMIN_PERSON_CLAIM", value_name = "CLAIM",
          default_value = DEFAULT_PERSON_CLAIM, requires = "admin_jwks",
          value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub admin_person_claim: String,
    /// Admin callers may instead present a client certificate (verified
    /// against --admin-tls-client-ca) that this JSON file maps to a person or
    /// a service (README: "Admin authentication"). Read at start-up
    #[arg(
        long,
        env = "TILGANG_ADMIN_CLIENT_IDENTITIES",
        value_name = "FILE",
        requires = "admin_tls_client_ca"
    )]
    pub admin_client_identities: Option<PathBuf>,
}

impl AdminAuthArgs {
    pub(super) fn clients(&self) -> Option<PathBuf> {
        set(&self.admin_client_identities)
    }

    pub(super) fn config(&self) -> Option<AdminAuthConfig> {
        let jwks = self
            .admin_jwks
            .clone()
            .filter(|p| !p.as_os_str().is_empty())?;
        Some(AdminAuthConfig {
            tokens: BearerConfig {
                jwks,
                verifier: VerifierConfig {
                    issuer: self.admin_jwt_issuer.clone().filter(|i| !i.is_empty()),
                    audiences: self.admin_jwt_audience.clone(),
                    leeway: Duration::from_secs(self.admin_jwt_leeway),
                },
            },
            person_claim: self.admin_person_claim.clone(),
        })
    }
}

/// TLS on the gateway and admin listeners; plaintext when unset.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "TLS")]
pub struct TlsArgs {
    /// Serve the gateway listener over TLS with this PEM certificate chain
    /// (reloaded when it changes)
    #[arg(
        long,
        env = "TILGANG_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert
    #[arg(
        long,
        env = "TILGANG_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// Require gateway clients to present a certificate issued by a CA in
    /// this PEM bundle (mutual TLS)
    #[arg(
        long,
        env = "TILGANG_TLS_CLIENT_CA",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_client_ca: Option<PathBuf>,
    /// Serve the admin listener over TLS with this PEM certificate chain
    /// (reloaded when it changes)
    #[arg(
        long,
        env = "TILGANG_ADMIN_TLS_CERT",
        value_name = "FILE",
        requires = "admin_tls_key"
    )]
    pub admin_tls_cert: Option<PathBuf>,
    /// The PEM private key of --admin-tls-cert
    #[arg(
        long,
        env = "TILGANG_ADMIN_TLS_KEY",
        value_name = "FILE",
        requires = "admin_tls_cert"
    )]
    pub admin_tls_key: Option<PathBuf>,
    /// Require admin clients to present a certificate issued by a CA in this
    /// PEM bundle (mutual TLS)
    #[arg(
        long,
        env = "TILGANG_ADMIN_TLS_CLIENT_CA",
        value_name = "FILE",
        requires = "admin_tls_cert"
    )]
    pub admin_tls_client_ca: Option<PathBuf>,
}

/// A path flag set to a value: an empty variable is unset.
fn set(p: &Option<PathBuf>) -> Option<PathBuf> {
    p.clone().filter(|p| !p.as_os_str().is_empty())
}

fn files(cert: &Option<PathBuf>, key: &Option<PathBuf>, ca: &Option<PathBuf>) -> Option<TlsFiles> {
    Some(TlsFiles {
        cert: set(cert)?,
        key: set(key)?,
        client_ca: set(ca),
    })
}

impl TlsArgs {
    pub(super) fn gateway(&self) -> Option<TlsFiles> {
        files(&self.tls_cert, &self.tls_key, &self.tls_client_ca)
    }

    pub(super) fn admin(&self) -> Option<TlsFiles> {
        files(
            &self.admin_tls_cert,
            &self.admin_tls_key,
            &self.admin_tls_client_ca,
        )
    }
}
