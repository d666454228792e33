//! Discovery: `<issuer>/.well-known/openid-configuration` fetched and
//! checked (the document's issuer must be the configured one exactly; every
//! endpoint must pass the same URL rules as the issuer), and the provider's
//! signing keys from its `jwks_uri`, swapped whole when refreshed.
//!
//! A failed refresh keeps the keys that worked; only start-up, which has
//! none, turns a failure into an error the caller refuses to start with.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::OidcError;
use super::http::{HttpClient, Reply};
use super::url::{self, Http, Target};
use crate::auth::{JwksFile, KeySet};
use crate::ids::echo;

/// What tilgang uses of the provider's metadata (OpenID Connect Discovery
/// 1.0 §3), each endpoint checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderMetadata {
    /// Identical to the configured issuer.
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    /// RP-initiated logout; `None` when the provider has none.
    pub end_session_endpoint: Option<String>,
    /// As published; absent means `client_secret_basic` (the default).
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// RFC 9207: the provider puts `iss` on every authorization response,
    /// so a callback without it is refused.
    pub authorization_response_iss_parameter_supported: bool,
    // Parsed once, for the requests.
    pub(crate) token_target: Target,
    pub(crate) jwks_target: Target,
}

/// The document's members tilgang reads; the rest is ignored.
#[derive(Deserialize)]
struct Document {
    issuer: Option<String>,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    jwks_uri: Option<String>,
    end_session_endpoint: Option<String>,
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
    code_challenge_methods_supported: Option<Vec<String>>,
    response_types_supported: Option<Vec<String>>,
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
}

/// The discovery document's URL for an issuer (§4.1: the path is appended,
/// after any trailing `/` of the issuer).
pub(crate) fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// Fetch and check the provider's metadata.
pub(crate) async fn discover(
    client: &HttpClient,
    issuer: &str,
    http: Http,
) -> Result<ProviderMetadata, OidcError> {
    let url = discovery_url(issuer);
    let target = url::check(&url, http, false).map_err(|problem| OidcError::Url {
        what: "discovery URL",
        url: echo(&url),
        problem,
    })?;
    let reply = fetch(client, "discovery", &url, &target).await?;
    parse(&reply.body, issuer, http).map_err(|e| match e {
        Parse::Invalid(problem) => OidcError::Discovery {
            url: echo(&url),
            problem,
        },
        Parse::Other(e) => e,
    })
}

pub(crate) enum Parse {
    Invalid(String),
    Other(OidcError),
}

/// Check a discovery document for `issuer`. No I/O.
pub(crate) fn parse(bytes: &[u8], issuer: &str, http: Http) -> Result<ProviderMetadata, Parse> {
    let doc: Document = serde_json::from_slice(bytes)
        .map_err(|e| Parse::Invalid(format!("not a JSON object of the expected shape: {e}")))?;
    let missing = |name: &str| Parse::Invalid(format!("`{name}` is missing"));
    let got = doc.issuer.ok_or_else(|| missing("issuer"))?;
    if got != issuer {
        return Err(Parse::Other(OidcError::IssuerMismatch {
            got: echo(&got),
            want: issuer.to_owned(),
        }));
    }
    let endpoint = |what: &'static str, value: Option<String>| {
        let value = value.ok_or_else(|| missing(what))?;
        let target = url::check(&value, http, true).map_err(|problem| {
            Parse::Other(OidcError::Url {
                what,
                url: echo(&value),
                problem,
            })
        })?;
        Ok::<_, Parse>((value, target))
    };
    let (authorization_endpoint, _) =
        endpoint("authorization_endpoint", doc.authorization_endpoint)?;
    let (token_endpoint, token_target) = endpoint("token_endpoint", doc.token_endpoint)?;
    let (jwks_uri, jwks_target) = endpoint("jwks_uri", doc.jwks_uri)?;
    let end_session_endpoint = match doc.end_session_endpoint {
        None => None,
        Some(v) => Some(endpoint("end_session_endpoint", Some(v))?.0),
    };
    if let Some(methods) = &doc.code_challenge_methods_supported
        && !methods.iter().any(|m| m == "S256")
    {
        return Err(Parse::Other(OidcError::PkceUnsupported));
    }
    if let Some(types) = &doc.response_types_supported
        && !types.iter().any(|t| t == "code")
    {
        return Err(Parse::Invalid(
            "`response_types_supported` does not include `code`".into(),
        ));
    }
    Ok(ProviderMetadata {
        issuer: got,
        authorization_endpoint,
        token_endpoint,
        jwks_uri,
        end_session_endpoint,
        token_endpoint_auth_methods_supported: doc
            .token_endpoint_auth_methods_supported
            .unwrap_or_else(|| vec!["client_secret_basic".to_owned()]),
        authorization_response_iss_parameter_supported: doc
            .authorization_response_iss_parameter_supported,
        token_target,
        jwks_target,
    })
}

/// A GET that must answer 200 with JSON.
async fn fetch(
    client: &HttpClient,
    what: &'static str,
    url: &str,
    target: &Target,
) -> Result<Reply, OidcError> {
    let reply = client
        .get_json(target)
        .await
        .map_err(|source| OidcError::Http {
            what,
            url: echo(url),
            source,
        })?;
    if reply.status != http::StatusCode::OK {
        return Err(OidcError::Status {
            what,
            url: echo(url),
            status: reply.status.as_u16(),
        });
    }
    Ok(reply)
}

/// The least time between two refreshes asked for by an unknown `kid`, so a
/// stream of tokens naming made-up keys cannot make tilgang hammer the
/// provider.
pub const MIN_UNKNOWN_KID_REFRESH: Duration = Duration::from_secs(10);

/// The provider's signing keys, as a [`JwksFile`] the verifier reads
/// lock-free; this side fetches and swaps in new sets.
#[derive(Debug)]
pub(crate) struct ProviderKeys {
    pub jwks: Arc<JwksFile>,
    url: String,
    target: Target,
    /// When the last refresh asked for by an unknown `kid` began.
    last_forced: Mutex<Option<Instant>>,
}

impl ProviderKeys {
    /// The start-up fetch: no keys is an error.
    pub async fn fetch(client: &HttpClient, meta: &ProviderMetadata) -> Result<Self, OidcError> {
        let keys = fetch_keys(client, &meta.jwks_uri, &meta.jwks_target).await?;
        Ok(Self {
            jwks: Arc::new(JwksFile::fixed(keys)),
            url: meta.jwks_uri.clone(),
            target: meta.jwks_target.clone(),
            last_forced: Mutex::new(None),
        })
    }

    /// Fetch the keys again; on failure the current keys stay.
    pub async fn refresh(&self, client: &HttpClient) -> Result<(), OidcError> {
        let keys = fetch_keys(client, &self.url, &self.target).await?;
        if keys.digest() != self.jwks.keys().digest() {
            tracing::info!(url = %echo(&self.url), kids = ?keys.kids(), "OpenID provider keys changed");
        }
        self.jwks.replace(keys);
        Ok(())
    }

    /// A token named a key the set lacks: refresh, unless one such refresh
    /// began less than [`MIN_UNKNOWN_KID_REFRESH`] ago. Returns whether it
    /// refreshed.
    pub async fn refresh_for_unknown_kid(&self, client: &HttpClient) -> bool {
        {
            let mut last = self
                .last_forced
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|t| t.elapsed() < MIN_UNKNOWN_KID_REFRESH) {
                return false;
            }
            *last = Some(Instant::now());
        }
        match self.refresh(client).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %crate::telemetry::logs::error_chain(&e), "refreshing the OpenID provider's keys failed; the last keys stay");
                false
            }
        }
    }
}

async fn fetch_keys(client: &HttpClient, url: &str, target: &Target) -> Result<KeySet, OidcError> {
    let reply = fetch(client, "keys", url, target).await?;
    KeySet::from_json(&reply.body).map_err(|problem| OidcError::Keys {
        url: echo(url),
        problem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ISSUER: &str = "https://idporten.no";

    fn doc() -> serde_json::Value {
        json!({
            "issuer": ISSUER,
            "authorization_endpoint": "https://login.idporten.no/authorize",
            "token_endpoint": "https://idporten.no/token",
            "jwks_uri": "https://idporten.no/jwks.json",
            "end_session_endpoint": "https://login.idporten.no/logout",
            "code_challenge_methods_supported": ["S256"],
            "response_types_supported": ["code"],
            "authorization_response_iss_parameter_supported": true,
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
        })
    }

    fn parse_doc(doc: &serde_json::Value) -> Result<ProviderMetadata, String> {
        parse(doc.to_string().as_bytes(), ISSUER, Http::Refused).map_err(|e| match e {
            Parse::Invalid(p) => p,
            Parse::Other(e) => e.to_string(),
        })
    }

    #[test]
    fn reads_the_endpoints() {
        let meta = parse_doc(&doc()).unwrap();
        assert_eq!(meta.token_endpoint, "https://idporten.no/token");
        assert_eq!(
            meta.end_session_endpoint.as_deref(),
            Some("https://login.idporten.no/logout")
        );
        assert!(meta.authorization_response_iss_parameter_supported);
        assert_eq!(meta.jwks_target.path_and_query, "/jwks.json");
        let mut bare = doc();
        let obj = bare.as_object_mut().unwrap();
        obj.remove("token_endpoint_auth_methods_supported");
        obj.remove("end_session_endpoint");
        let meta = parse_doc(&bare).unwrap();
        assert_eq!(
            meta.token_endpoint_auth_methods_supported,
            ["client_secret_basic"]
        );
        assert_eq!(meta.end_session_endpoint, None);
    }

    #[test]
    fn the_issuer_must_be_identical() {
        for other in [
            "https://idporten.no/",
            "https://IDPORTEN.no",
            "https://evil.example",
        ] {
            let mut d = doc();
            d["issuer"] = json!(other);
            let err = parse_doc(&d).unwrap_err();
            assert!(err.contains("names issuer"), "{err}");
        }
    }

    #[test]
    fn endpoints_follow_the_issuer_rules() {
        let mut d = doc();
        d["token_endpoint"] = json!("http://idporten.no/token");
        assert_eq!(
            parse_doc(&d).unwrap_err(),
            "the token_endpoint `http://idporten.no/token` is refused: http:// is allowed only for a loopback host (127.0.0.1, ::1, localhost); use https"
        );
        let mut d = doc();
        d.as_object_mut().unwrap().remove("jwks_uri");
        assert_eq!(parse_doc(&d).unwrap_err(), "`jwks_uri` is missing");
        let mut d = doc();
        d["code_challenge_methods_supported"] = json!(["plain"]);
        assert_eq!(
            parse_doc(&d).unwrap_err(),
            "the provider does not offer PKCE with S256"
        );
        assert!(
            parse_doc(&json!([1]))
                .unwrap_err()
                .starts_with("not a JSON object")
        );
    }

    /// A JWKS server whose answer the test sets (`None`: HTTP 500), counting requests.
    async fn jwks_server(
        answer: Arc<Mutex<Option<String>>>,
        hits: Arc<std::sync::atomic::AtomicUsize>,
    ) -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body = answer.lock().unwrap().clone();
                let reply = match body {
                    Some(b) => format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{b}",
                        b.len()
                    ),
                    None => "HTTP/1.1 500 Oops\r\ncontent-length: 0\r\n\r\n".to_owned(),
                };
                let _ = conn.write_all(reply.as_bytes()).await;
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn keys_refresh_on_an_unknown_kid_at_most_so_often_and_a_failure_keeps_them() {
        use crate::auth::testkit::{self, jwks};
        use std::sync::atomic::{AtomicUsize, Ordering};
        let answer = Arc::new(Mutex::new(Some(jwks(&[testkit::p256().jwk("old")]))));
        let hits = Arc::new(AtomicUsize::new(0));
        let base = jwks_server(answer.clone(), hits.clone()).await;
        let mut d = doc();
        d["issuer"] = json!(base);
        d["jwks_uri"] = json!(format!("{base}/jwks"));
        let meta = match parse(d.to_string().as_bytes(), &base, Http::LoopbackOnly) {
            Ok(m) => m,
            Err(_) => panic!("the document parses"),
        };
        let client = HttpClient::new(Duration::from_secs(5)).unwrap();
        let keys = ProviderKeys::fetch(&client, &meta).await.unwrap();
        assert_eq!(keys.jwks.keys().kids(), ["old"]);

        *answer.lock().unwrap() = Some(jwks(&[testkit::p256_2().jwk("new")]));
        assert!(keys.refresh_for_unknown_kid(&client).await);
        assert_eq!(keys.jwks.keys().kids(), ["new"]);
        // A second unknown kid right after: no request.
        let before = hits.load(Ordering::SeqCst);
        assert!(!keys.refresh_for_unknown_kid(&client).await);
        assert_eq!(hits.load(Ordering::SeqCst), before);

        // Failures (an error status, a document that is no key set) keep the keys.
        *answer.lock().unwrap() = None;
        let err = keys.refresh(&client).await.unwrap_err();
        assert!(
            matches!(err, OidcError::Status { status: 500, .. }),
            "{err}"
        );
        *answer.lock().unwrap() = Some(r#"{"keys":[]}"#.to_owned());
        let err = keys.refresh(&client).await.unwrap_err();
        assert!(matches!(err, OidcError::Keys { .. }), "{err}");
        assert_eq!(keys.jwks.keys().kids(), ["new"]);
    }

    #[test]
    fn the_discovery_url_appends_to_the_issuer_path() {
        assert_eq!(
            discovery_url("https://idporten.no"),
            "https://idporten.no/.well-known/openid-configuration"
        );
        assert_eq!(
            discovery_url("https://op.example/tenant/"),
            "https://op.example/tenant/.well-known/openid-configuration"
        );
    }
}
