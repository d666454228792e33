//! The authorization code flow, step by step: random `state`, `nonce` and
//! PKCE verifier (RFC 7636, S256); the authorization URL; the callback's
//! checks; the token exchange (`client_secret_basic`, or
//! `client_secret_post` when the provider offers only that); and the ID
//! token's claims beyond what `auth::Verifier` checks (`nonce`, `azp`,
//! `iat`, `acr`, the person claim).
//!
//! The pure parts take the time as an argument; only [`exchange_code`] does
//! I/O.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::HeaderValue;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::discovery::ProviderMetadata;
use super::http::HttpClient;
use super::url::{self, encode};
use super::{Acr, ClientSecret, OidcError};
use crate::auth::Claims;
use crate::ids::{PersonId, echo};

/// Random bytes behind each `state`, `nonce` and code verifier: 256 bits,
/// 43 base64url characters (RFC 7636 asks for 43 to 128).
const RANDOM_BYTES: usize = 32;

/// How old an ID token's `iat` may be when it arrives: it was issued moments
/// ago, in exchange for the code.
pub const MAX_ID_TOKEN_AGE: Duration = Duration::from_secs(600);

/// A fresh random value, base64url without padding.
pub(crate) fn random_token() -> Result<String, OidcError> {
    let mut bytes = [0u8; RANDOM_BYTES];
    getrandom::fill(&mut bytes).map_err(|_| OidcError::Random)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// RFC 7636 §4.2: `BASE64URL(SHA256(ASCII(code_verifier)))`.
pub(crate) fn code_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Whether two secrets are equal, in time that does not depend on where
/// they differ (lengths may show; every value here has the same length).
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// What goes into the authorization URL.
pub(crate) struct AuthorizationParams<'a> {
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub acr: Acr,
    pub state: &'a str,
    pub nonce: &'a str,
    pub code_challenge: &'a str,
    pub ui_locale: Option<&'a str>,
    /// Ask the provider to authenticate again (`prompt=login`), not to
    /// reuse a session it has.
    pub fresh: bool,
}

pub(crate) fn authorization_url(endpoint: &str, p: &AuthorizationParams<'_>) -> String {
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", p.client_id),
        ("redirect_uri", p.redirect_uri),
        ("scope", "openid profile"),
        ("state", p.state),
        ("nonce", p.nonce),
        ("acr_values", p.acr.as_str()),
        ("code_challenge", p.code_challenge),
        ("code_challenge_method", "S256"),
    ];
    if let Some(locale) = p.ui_locale {
        params.push(("ui_locales", locale));
    }
    if p.fresh {
        params.push(("prompt", "login"));
    }
    url::with_query(endpoint, &params)
}

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientAuth {
    Basic,
    Post,
}

/// `client_secret_basic` when offered (it is the default), else
/// `client_secret_post`.
pub(crate) fn client_auth(meta: &ProviderMetadata) -> Result<ClientAuth, OidcError> {
    let offered = |m: &str| {
        meta.token_endpoint_auth_methods_supported
            .iter()
            .any(|x| x == m)
    };
    if offered("client_secret_basic") {
        Ok(ClientAuth::Basic)
    } else if offered("client_secret_post") {
        Ok(ClientAuth::Post)
    } else {
        Err(OidcError::NoSupportedAuthMethod)
    }
}

/// RFC 6749 §2.3.1: id and secret are form-encoded before Basic encoding.
pub(crate) fn basic_auth(client_id: &str, secret: &ClientSecret) -> Option<HeaderValue> {
    let pair = format!("{}:{}", encode(client_id), encode(secret.expose()));
    let mut value = HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(pair))).ok()?;
    value.set_sensitive(true);
    Some(value)
}

#[derive(Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
    token_type: Option<String>,
}

#[derive(Deserialize)]
struct TokenErrorBody {
    error: Option<String>,
    error_description: Option<String>,
}

pub(crate) struct Exchange<'a> {
    pub client_id: &'a str,
    pub secret: &'a ClientSecret,
    pub auth: ClientAuth,
    pub redirect_uri: &'a str,
    pub code: &'a str,
    pub code_verifier: &'a str,
}

/// Trade the code for tokens; returns the ID token (the access token is not
/// used: everything tilgang needs is in the ID token).
pub(crate) async fn exchange_code(
    client: &HttpClient,
    meta: &ProviderMetadata,
    x: &Exchange<'_>,
) -> Result<String, OidcError> {
    let mut params = vec![
        ("grant_type", "authorization_code"),
        ("code", x.code),
        ("redirect_uri", x.redirect_uri),
        ("code_verifier", x.code_verifier),
    ];
    let authorization = match x.auth {
        ClientAuth::Basic => Some(basic_auth(x.client_id, x.secret).ok_or(
            OidcError::TokenResponse {
                problem: "the client id or secret cannot be sent in a header",
            },
        )?),
        ClientAuth::Post => {
            params.push(("client_id", x.client_id));
            params.push(("client_secret", x.secret.expose()));
            None
        }
    };
    let reply = client
        .post_form(&meta.token_target, url::form(&params), authorization)
        .await
        .map_err(|source| OidcError::Http {
            what: "token",
            url: echo(&meta.token_endpoint),
            source,
        })?;
    if reply.status != http::StatusCode::OK {
        let body: Option<TokenErrorBody> = serde_json::from_slice(&reply.body).ok();
        let (error, description) = body
            .map(|b| (b.error, b.error_description))
            .unwrap_or_default();
        return Err(OidcError::TokenEndpoint {
            status: reply.status.as_u16(),
            error: error.as_deref().map(echo),
            description: description.as_deref().map(echo),
        });
    }
    if !reply.is_json() {
        return Err(OidcError::TokenResponse {
            problem: "the content type is not JSON",
        });
    }
    let body: TokenResponse =
        serde_json::from_slice(&reply.body).map_err(|_| OidcError::TokenResponse {
            problem: "not a JSON object of the expected shape",
        })?;
    if !body
        .token_type
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case("bearer") || t.eq_ignore_ascii_case("dpop"))
    {
        return Err(OidcError::TokenResponse {
            problem: "`token_type` is missing or unknown",
        });
    }
    body.id_token.ok_or(OidcError::TokenResponse {
        problem: "there is no `id_token`",
    })
}

/// What the ID token's claims must say, beyond signature, `iss`, `aud`,
/// `exp` and `nbf` (checked by `auth::Verifier`).
pub(crate) struct Expected<'a> {
    pub client_id: &'a str,
    pub nonce: &'a str,
    pub acr: Acr,
    pub person_claim: &'a str,
    /// Seconds.
    pub leeway: i64,
}

/// The claims a login yields.
#[derive(Debug)]
pub(crate) struct Checked {
    pub pid: PersonId,
    pub name: Option<String>,
    pub acr: Acr,
    pub sid: Option<String>,
}

/// Check a verified ID token's claims at `now` (Unix seconds).
pub(crate) fn check_claims(
    claims: &Claims,
    want: &Expected<'_>,
    now: i64,
) -> Result<Checked, OidcError> {
    match claims.get("nonce") {
        Some(Value::String(n)) if same_secret(n, want.nonce) => {}
        _ => return Err(OidcError::NonceMismatch),
    }
    if claims
        .get("aud")
        .and_then(Value::as_array)
        .is_some_and(|a| a.len() > 1)
        && claims.get("azp").is_none()
    {
        return Err(OidcError::MissingAuthorizedParty);
    }
    if let Some(azp) = claims.get("azp")
        && azp.as_str() != Some(want.client_id)
    {
        return Err(OidcError::WrongAuthorizedParty);
    }
    let Some(iat) = claims
        .get("iat")
        .and_then(Value::as_f64)
        .filter(|f| f.is_finite())
    else {
        return Err(OidcError::IssuedAt {
            iat: 0,
            problem: "missing or not a number",
        });
    };
    let iat = iat.floor() as i64;
    if iat > now.saturating_add(want.leeway) {
        return Err(OidcError::IssuedAt {
            iat,
            problem: "in the future",
        });
    }
    let max_age = i64::try_from(MAX_ID_TOKEN_AGE.as_secs()).unwrap_or(i64::MAX);
    if iat < now.saturating_sub(max_age.saturating_add(want.leeway)) {
        return Err(OidcError::IssuedAt {
            iat,
            problem: "too long ago",
        });
    }
    let acr = match claims.get("acr") {
        None | Some(Value::Null) => return Err(OidcError::MissingAcr),
        Some(Value::String(s)) => {
            Acr::parse(s).ok_or_else(|| OidcError::UnknownAcr { got: echo(s) })?
        }
        Some(other) => {
            return Err(OidcError::UnknownAcr {
                got: echo(&other.to_string()),
            });
        }
    };
    if !acr.satisfies(want.acr) {
        return Err(OidcError::InsufficientAcr {
            got: acr.as_str().to_owned(),
            required: want.acr.as_str().to_owned(),
        });
    }
    let pid = match claims.get(want.person_claim) {
        None | Some(Value::Null) => {
            return Err(OidcError::MissingPersonClaim {
                claim: echo(want.person_claim),
            });
        }
        Some(Value::String(s)) => {
            PersonId::parse(s).map_err(|_| OidcError::InvalidPersonClaim {
                claim: echo(want.person_claim),
            })?
        }
        Some(_) => {
            return Err(OidcError::InvalidPersonClaim {
                claim: echo(want.person_claim),
            });
        }
    };
    Ok(Checked {
        pid,
        name: claims.str("name").map(str::to_owned),
        acr,
        sid: claims.str("sid").map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::auth::testkit::{self, now};
    use crate::auth::{JwksFile, KeySet, Verifier, VerifierConfig};

    #[test]
    fn s256_matches_rfc_7636_appendix_b() {
        assert_eq!(
            code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn random_values_are_long_and_distinct() {
        let a = random_token().unwrap();
        let b = random_token().unwrap();
        assert_eq!(a.len(), 43);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_ne!(a, b);
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
        assert!(!same_secret("", "a"));
        assert!(same_secret("", ""));
    }

    #[test]
    fn the_authorization_url_carries_every_parameter_encoded() {
        let url = authorization_url(
            "https://login.idporten.no/authorize",
            &AuthorizationParams {
                client_id: "my client",
                redirect_uri: "https://tilgang.example/auth/callback",
                acr: Acr::Substantial,
                state: "s-1",
                nonce: "n_2",
                code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                ui_locale: Some("nb"),
                fresh: false,
            },
        );
        assert_eq!(
            url,
            "https://login.idporten.no/authorize?response_type=code&client_id=my%20client\
             &redirect_uri=https%3A%2F%2Ftilgang.example%2Fauth%2Fcallback\
             &scope=openid%20profile&state=s-1&nonce=n_2&acr_values=idporten-loa-substantial\
             &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM\
             &code_challenge_method=S256&ui_locales=nb"
        );
    }

    #[test]
    fn basic_auth_form_encodes_id_and_secret() {
        let value = basic_auth("a:b", &ClientSecret::new("p@ss word")).unwrap();
        let encoded = value.to_str().unwrap().strip_prefix("Basic ").unwrap();
        let decoded = String::from_utf8(STANDARD.decode(encoded).unwrap()).unwrap();
        assert_eq!(decoded, "a%3Ab:p%40ss%20word");
        assert!(value.is_sensitive());
    }

    const ISS: &str = "https://idporten.no";

    fn verify(claims: serde_json::Value) -> Result<Checked, OidcError> {
        let key = testkit::rsa();
        let jwks = KeySet::from_json(testkit::jwks(&[key.jwk("k1")]).as_bytes()).unwrap();
        let verifier = Verifier::new(
            Arc::new(JwksFile::fixed(jwks)),
            VerifierConfig {
                issuer: Some(ISS.into()),
                audiences: vec!["tilgang".into()],
                ..VerifierConfig::default()
            },
        )
        .unwrap();
        let token = testkit::token(key, &json!({"alg": "RS256", "kid": "k1"}), &claims);
        let claims = verifier.verify(&token).map_err(OidcError::IdToken)?;
        check_claims(
            &claims,
            &Expected {
                client_id: "tilgang",
                nonce: "the-nonce",
                acr: Acr::Substantial,
                person_claim: "pid",
                leeway: 30,
            },
            now(),
        )
    }

    fn good() -> serde_json::Value {
        json!({
            "iss": ISS, "aud": "tilgang", "exp": now() + 120, "iat": now(),
            "nonce": "the-nonce", "acr": "idporten-loa-substantial",
            "pid": "01017012345", "name": "Dagny", "sid": "s1",
        })
    }

    fn with(changes: serde_json::Value) -> serde_json::Value {
        let mut claims = good();
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        claims
    }

    #[test]
    fn a_good_id_token_gives_the_person() {
        let got = verify(good()).unwrap();
        assert_eq!(got.pid.as_str(), "01017012345");
        assert_eq!(got.name.as_deref(), Some("Dagny"));
        assert_eq!(got.sid.as_deref(), Some("s1"));
        assert_eq!(got.acr, Acr::Substantial);
        let high = verify(with(
            json!({"acr": "idporten-loa-high", "name": null, "sid": null}),
        ))
        .unwrap();
        assert_eq!((high.acr, high.name, high.sid), (Acr::High, None, None));
        let azp = verify(with(json!({"aud": ["tilgang", "other"], "azp": "tilgang"})));
        assert!(azp.is_ok());
    }

    #[test]
    fn each_claim_problem_is_its_own_error() {
        for (changes, kind) in [
            (json!({"nonce": "other"}), "nonce_mismatch"),
            (json!({"nonce": null}), "nonce_mismatch"),
            (json!({"acr": "idporten-loa-low"}), "insufficient_acr"),
            (json!({"acr": null}), "missing_acr"),
            (json!({"acr": "eidas-loa-high"}), "unknown_acr"),
            (json!({"pid": null}), "missing_person_claim"),
            (json!({"pid": "../etc"}), "invalid_person_claim"),
            (json!({"pid": 1017012345}), "invalid_person_claim"),
            (json!({"azp": "other"}), "wrong_authorized_party"),
            (
                json!({"aud": ["tilgang", "other"]}),
                "missing_authorized_party",
            ),
            (json!({"iat": null}), "issued_at"),
            (json!({"iat": now() + 3600}), "issued_at"),
            (json!({"iat": now() - 3600}), "issued_at"),
            (json!({"aud": "other"}), "id_token"),
            (json!({"iss": "https://evil.example"}), "id_token"),
            (json!({"exp": now() - 3600}), "id_token"),
        ] {
            let err = verify(with(changes.clone())).unwrap_err();
            assert_eq!(err.kind(), kind, "{changes}: {err}");
            let text = err.to_string();
            assert!(
                !text.contains("01017012345") && !text.contains("the-nonce"),
                "{text}"
            );
        }
    }
}
