//! The OpenID Connect relying party (`tilgang::web::oidc`) against a real
//! OpenID provider: `tests/web/oidc-provider/server.js` (the certified
//! `oidc-provider` package), started per test on a free loopback port. The
//! login is driven over HTTP by a small cookie-keeping client, as a browser
//! would; the redirect to the callback is not followed, its query is read.
//!
//! Needs `npm ci --prefix tests/web/oidc-provider`; without `node_modules`
//! there these tests say so and pass without testing.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

use tilgang::web::oidc::{
    Acr, AuthorizationRequest, CallbackParams, ClientSecret, OidcClient, OidcConfig, OidcError,
    UiLocale, UrlProblem,
};

pub const CLIENT_ID: &str = "tilgang-web";
pub const SECRET: &str = "test-secret-for-the-it-tests";
/// Never served: the test reads the redirect to it instead.
const REDIRECT_URI: &str = "http://127.0.0.1:9/auth/callback";
const POST_LOGOUT: &str = "http://127.0.0.1:9/";

fn provider_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/web/oidc-provider")
}

/// The provider process; killed when dropped (and it exits by itself when
/// its standard input closes, should this process die first).
pub struct Provider {
    pub issuer: String,
    _child: Child,
}

impl Provider {
    /// `None` (with a message) when the provider's packages are not
    /// installed.
    async fn start() -> Option<Self> {
        Self::start_with(&[]).await
    }

    async fn start_with(extra: &[&str]) -> Option<Self> {
        Self::start_for(REDIRECT_URI, POST_LOGOUT, extra).await
    }

    /// For a relying party whose callback and post-logout URLs are these.
    pub async fn start_for(redirect_uri: &str, post_logout: &str, extra: &[&str]) -> Option<Self> {
        let dir = provider_dir();
        if !dir.join("node_modules").is_dir() {
            eprintln!(
                "SKIPPED: the test OpenID provider is not installed; run `npm ci --prefix tests/web/oidc-provider`"
            );
            return None;
        }
        let mut child = Command::new("node")
            .arg(dir.join("server.js"))
            .args([
                "--port",
                "0",
                "--client-id",
                CLIENT_ID,
                "--client-secret",
                SECRET,
                "--redirect-uri",
                redirect_uri,
                "--post-logout-redirect-uri",
                post_logout,
                "--exit-with-stdin",
            ])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs (Node.js 20.19 or later on PATH)");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let issuer = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(issuer) = line.strip_prefix("issuer=") {
                    return issuer.to_owned();
                }
            }
            panic!("the provider exited without printing its issuer");
        })
        .await
        .expect("the provider listens within 20 s");
        Some(Self {
            issuer,
            _child: child,
        })
    }

    fn config(&self) -> OidcConfig {
        let mut config = OidcConfig::new(
            &self.issuer,
            CLIENT_ID,
            ClientSecret::new(SECRET),
            REDIRECT_URI,
        );
        config.allow_http = true;
        config
    }

    async fn client(&self) -> OidcClient {
        OidcClient::discover(self.config()).await.unwrap()
    }
}

/// A response: status, `Location`, body.
struct Page {
    status: u16,
    location: Option<String>,
    body: String,
}

/// A browser without a browser: keeps cookies (all of one host's, whatever
/// their path) and never follows a redirect by itself.
#[derive(Default)]
pub struct Browser {
    cookies: HashMap<String, String>,
}

impl Browser {
    async fn get(&mut self, url: &str) -> Page {
        self.send("GET", url, None).await
    }

    async fn post_form(&mut self, url: &str, form: &str) -> Page {
        self.send("POST", url, Some(form.to_owned())).await
    }

    async fn send(&mut self, method: &str, url: &str, form: Option<String>) -> Page {
        let uri: http::Uri = url.parse().unwrap();
        assert_eq!(uri.scheme_str(), Some("http"), "{url}");
        let authority = uri.authority().unwrap().clone();
        let tcp = TcpStream::connect((authority.host(), authority.port_u16().unwrap_or(80)))
            .await
            .unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        let driver = tokio::spawn(conn);
        let mut request = http::Request::builder()
            .method(method)
            .uri(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header("host", authority.as_str())
            .header("accept", "text/html");
        if !self.cookies.is_empty() {
            let cookie: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            request = request.header("cookie", cookie.join("; "));
        }
        if form.is_some() {
            request = request.header("content-type", "application/x-www-form-urlencoded");
        }
        let request = request
            .body(Full::new(Bytes::from(form.unwrap_or_default())))
            .unwrap();
        let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        for value in response.headers().get_all("set-cookie") {
            let value = value.to_str().unwrap();
            let pair = value.split(';').next().unwrap();
            let (name, val) = pair.split_once('=').unwrap();
            if val.is_empty() {
                self.cookies.remove(name.trim());
            } else {
                self.cookies.insert(name.trim().to_owned(), val.to_owned());
            }
        }
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .map(|v| resolve(url, v.to_str().unwrap()));
        let body = response.into_body().collect().await.unwrap().to_bytes();
        driver.abort();
        Page {
            status,
            location,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }
}

/// A `Location` against the URL it came from (absolute, or a path).
fn resolve(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_owned();
    }
    let uri: http::Uri = base.parse().unwrap();
    format!(
        "{}://{}{location}",
        uri.scheme_str().unwrap(),
        uri.authority().unwrap()
    )
}

/// What the login page does with `account` typed into it: `None` cancels.
/// Follows the provider's redirects until the one to the callback, and
/// returns that one's query.
async fn log_in(
    browser: &mut Browser,
    request: &AuthorizationRequest,
    account: Option<&str>,
) -> String {
    follow_login(browser, &request.url, REDIRECT_URI, account).await
}

/// From the provider's authorization `url`, as the login page does with
/// `account` typed in (`None` cancels), to the redirect to `callback`;
/// that redirect's query.
pub async fn follow_login(
    browser: &mut Browser,
    url: &str,
    callback: &str,
    account: Option<&str>,
) -> String {
    let mut url = url.to_string();
    for _ in 0..10 {
        if let Some(query) = url.strip_prefix(&format!("{callback}?")) {
            return query.to_owned();
        }
        let page = browser.get(&url).await;
        if let Some(next) = page.location {
            assert!(
                matches!(page.status, 302 | 303),
                "{}: {}",
                page.status,
                page.body
            );
            url = next;
            continue;
        }
        assert_eq!(page.status, 200, "{url}: {}", page.body);
        // The login page; the field names are the ones README.md promises.
        assert!(
            page.body.contains(r#"<input id="login" name="login""#),
            "{}",
            page.body
        );
        assert!(page.body.contains(r#"id="login-form""#), "{}", page.body);
        let answer = match account {
            Some(account) => {
                browser
                    .post_form(&format!("{url}/login"), &format!("login={account}"))
                    .await
            }
            None => browser.get(&format!("{url}/abort")).await,
        };
        assert_eq!(answer.status, 303, "{}", answer.body);
        url = answer.location.unwrap();
    }
    panic!("no redirect to the callback after 10 steps");
}

/// A whole login as `account`: the request, the callback parameters.
async fn login(client: &OidcClient, account: &str) -> (AuthorizationRequest, CallbackParams) {
    let request = client.authorization_request(Some(UiLocale::Nb)).unwrap();
    let query = log_in(&mut Browser::default(), &request, Some(account)).await;
    (request, CallbackParams::from_query(&query).unwrap())
}

#[tokio::test]
async fn oidc_login_gives_the_person_and_a_logout_url_the_provider_accepts() {
    let Some(provider) = Provider::start().await else {
        return;
    };
    let client = provider.client().await;
    assert_eq!(client.metadata().issuer, provider.issuer);

    let (request, params) = login(&client, "dagl").await;
    for part in [
        "response_type=code",
        "scope=openid%20profile",
        "acr_values=idporten-loa-substantial",
        "code_challenge_method=S256",
        "ui_locales=nb",
    ] {
        assert!(request.url.contains(part), "{part} in {}", request.url);
    }
    assert_eq!(params.iss.as_deref(), Some(provider.issuer.as_str()));
    let person = client.callback(&request.pending, &params).await.unwrap();
    assert_eq!(person.pid.as_str(), "01017012345");
    assert_eq!(person.name.as_deref(), Some("Dagny Daglig Leder"));
    assert_eq!(person.acr, Acr::Substantial);
    assert!(person.sid.is_some());
    assert_eq!(person.id_token.as_str().split('.').count(), 3);

    let logout = client
        .logout_request(&person.id_token, POST_LOGOUT)
        .unwrap()
        .expect("the provider has an end-session endpoint");
    assert!(logout.url.contains("id_token_hint="), "{}", logout.url);
    assert!(logout.url.contains(&format!("state={}", logout.state)));
    // The provider checks the hint and the registered post-logout URI
    // before it shows its confirmation page.
    let page = Browser::default().get(&logout.url).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(!page.body.contains(r#"id="error""#), "{}", page.body);
    let bad = client
        .logout_request(&person.id_token, "http://127.0.0.1:9/not-registered")
        .unwrap()
        .unwrap();
    let page = Browser::default().get(&bad.url).await;
    assert!(
        page.body.contains("post_logout_redirect_uri"),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn oidc_a_high_login_satisfies_substantial() {
    let Some(provider) = Provider::start().await else {
        return;
    };
    let client = provider.client().await;
    let (request, params) = login(&client, "hoy").await;
    let person = client.callback(&request.pending, &params).await.unwrap();
    assert_eq!(person.pid.as_str(), "02029054321");
    assert_eq!(person.acr, Acr::High);
}

#[tokio::test]
async fn oidc_a_wrong_state_is_refused_and_the_right_one_still_works() {
    let Some(provider) = Provider::start().await else {
        return;
    };
    let client = provider.client().await;
    let (request, params) = login(&client, "dagl").await;
    let mut forged = params.clone();
    forged.state = Some(format!("{}x", request.pending.state));
    let err = client
        .callback(&request.pending, &forged)
        .await
        .unwrap_err();
    assert!(matches!(err, OidcError::StateMismatch), "{err}");
    forged.state = None;
    let err = client
        .callback(&request.pending, &forged)
        .await
        .unwrap_err();
    assert!(matches!(err, OidcError::MissingState), "{err}");
    // Another login's pending state does not fit this callback either.
    let other = client.authorization_request(None).unwrap();
    let err = client.callback(&other.pending, &params).await.unwrap_err();
    assert!(matches!(err, OidcError::StateMismatch), "{err}");
    assert!(client.callback(&request.pending, &params).await.is_ok());
}

#[tokio::test]
async fn oidc_a_replayed_code_is_refused() {
    let Some(provider) = Provider::start().await else {
        return;
    };
    let client = provider.client().await;
    let (request, params) = login(&client, "dagl").await;
    client.callback(&request.pending, &params).await.unwrap();
    let err = client
        .callback(&request.pending, &params)
        .await
        .unwrap_err();
    match &err {
        OidcError::TokenEndpoint { status, error, .. } => {
            assert_eq!(
                (*status, error.as_deref()),
                (400, Some("invalid_grant")),
                "{err}"
            );
        }
        other => panic!("{other}"),
    }
    assert!(err.is_login_problem());
}

#[tokio::test]
async fn oidc_a_nonce_mismatch_is_refused() {
    let Some(provider) = Provider::start().await else {
        return;
    };
    let client = provider.client().await;
    let (request, params) = login(&client, "dagl").await;
    let mut tampered = request.pending.clone();
    tampered.nonce = client.authorization_request(None).unwrap().pending.nonce;
    let err = client.callback(&tampered, &params).await.unwrap_err();
    assert!(matches!(err, OidcError::NonceMismatch), "{err}");
}

#[tokio::test]
async fn oidc_a_tampered_code_verifier_is_refused_by_the_provider() {
    let Some(provider) = Provider::start().await else {
        return;
    };
    let client = provider.client().await;
    let (request, params) = login(&client, "dagl").await;
    let mut tampered = request.pending.clone();
    tampered.code_verifier = client
        .authorization_request(None)
        .unwrap()
        .pending
        .code_verifier;
    let err = client.callback(&tampered, &params).await.unwrap_err();
    assert!(
        matches!(&err, OidcError::TokenEndpoint { error: Some(e), .. } if e == "invalid_grant"),
        "{err}"
    );
}

#[tokio::test]
async fn oidc_too_low_a_level_or_missing_claims_are_refused() {
    let Some(provider) = Provider::start().await else {
        return;
    };
    let client = provider.client().await;
    let (request, params) = login(&client, "lav").await;
    let err = client
        .callback(&request.pending, &params)
        .await
        .unwrap_err();
    assert!(matches!(err, OidcError::InsufficientAcr { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "the login's level `idporten-loa-low` is below the required `idporten-loa-substantial`"
    );
    let (request, params) = login(&client, "utenacr").await;
    let err = client
        .callback(&request.pending, &params)
        .await
        .unwrap_err();
    assert!(matches!(err, OidcError::MissingAcr), "{err}");
    let (request, params) = login(&client, "utenpid").await;
    let err = client
        .callback(&request.pending, &params)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "the ID token has no `pid` claim");

    // Requiring high refuses a substantial login.
    let mut config = provider.config();
    config.required_acr = Acr::High;
    let strict = OidcClient::discover(config).await.unwrap();
    let (request, params) = login(&strict, "dagl").await;
    assert!(request.url.contains("acr_values=idporten-loa-high"));
    let err = strict
        .callback(&request.pending, &params)
        .await
        .unwrap_err();
    assert!(matches!(err, OidcError::InsufficientAcr { .. }), "{err}");
}

#[tokio::test]
async fn oidc_a_cancelled_login_is_the_providers_error() {
    let Some(provider) = Provider::start().await else {
        return;
    };
    let client = provider.client().await;
    let request = client.authorization_request(None).unwrap();
    let query = log_in(&mut Browser::default(), &request, None).await;
    let params = CallbackParams::from_query(&query).unwrap();
    let err = client
        .callback(&request.pending, &params)
        .await
        .unwrap_err();
    match &err {
        OidcError::Provider { error, description } => {
            assert_eq!(error, "access_denied");
            assert_eq!(
                description.as_deref(),
                Some("the person cancelled the login")
            );
        }
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn oidc_client_secret_post_when_basic_is_not_offered() {
    let Some(provider) = Provider::start_with(&["--auth-method", "client_secret_post"]).await
    else {
        return;
    };
    let client = provider.client().await;
    assert_eq!(
        client.metadata().token_endpoint_auth_methods_supported,
        ["client_secret_post"]
    );
    let (request, params) = login(&client, "dagl").await;
    let person = client.callback(&request.pending, &params).await.unwrap();
    assert_eq!(person.pid.as_str(), "01017012345");
}

#[tokio::test]
async fn oidc_a_wrong_client_secret_is_refused_without_showing_it() {
    let Some(provider) = Provider::start().await else {
        return;
    };
    let mut config = provider.config();
    config.client_secret = ClientSecret::new("not-the-secret");
    let client = OidcClient::discover(config).await.unwrap();
    let (request, params) = login(&client, "dagl").await;
    let err = client
        .callback(&request.pending, &params)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OidcError::TokenEndpoint { status: 401, error: Some(e), .. } if e == "invalid_client"),
        "{err}"
    );
    assert!(!err.to_string().contains("not-the-secret"));
    assert!(!format!("{err:?}").contains("not-the-secret"));
}

#[tokio::test]
async fn oidc_a_callback_from_another_issuer_is_refused() {
    let Some(provider) = Provider::start().await else {
        return;
    };
    let client = provider.client().await;
    let (request, mut params) = login(&client, "dagl").await;
    params.iss = Some("http://127.0.0.1:1".into());
    let err = client
        .callback(&request.pending, &params)
        .await
        .unwrap_err();
    assert!(matches!(err, OidcError::CallbackIssuer { .. }), "{err}");
    // The provider says it always sends `iss`, so its absence is refused too.
    params.iss = None;
    let err = client
        .callback(&request.pending, &params)
        .await
        .unwrap_err();
    assert!(
        matches!(err, OidcError::CallbackIssuer { got: None }),
        "{err}"
    );
}

/// A server answering every request with `body` as JSON.
async fn serve_json(body: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(reply.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn oidc_a_discovery_document_naming_another_issuer_is_refused() {
    let doc = serde_json::json!({
        "issuer": "http://127.0.0.1:1",
        "authorization_endpoint": "http://127.0.0.1:1/auth",
        "token_endpoint": "http://127.0.0.1:1/token",
        "jwks_uri": "http://127.0.0.1:1/jwks",
    });
    let issuer = serve_json(doc.to_string()).await;
    let mut config = OidcConfig::new(&issuer, CLIENT_ID, ClientSecret::new(SECRET), REDIRECT_URI);
    config.allow_http = true;
    let err = OidcClient::discover(config).await.unwrap_err();
    match &err {
        OidcError::IssuerMismatch { got, want } => {
            assert_eq!((got.as_str(), want), ("http://127.0.0.1:1", &issuer));
        }
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn oidc_an_http_issuer_that_is_not_loopback_is_refused() {
    let mut config = OidcConfig::new(
        "http://idporten.example",
        CLIENT_ID,
        ClientSecret::new(SECRET),
        REDIRECT_URI,
    );
    config.allow_http = true;
    let err = OidcClient::discover(config.clone()).await.unwrap_err();
    assert!(
        matches!(
            &err,
            OidcError::Url {
                what: "issuer",
                problem: UrlProblem::HttpNotLoopback,
                ..
            }
        ),
        "{err}"
    );
    config.issuer = "http://127.0.0.1:9".into();
    config.allow_http = false;
    let err = OidcClient::discover(config).await.unwrap_err();
    assert!(
        matches!(
            &err,
            OidcError::Url {
                problem: UrlProblem::HttpNotAllowed,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn oidc_discovery_failure_is_an_error() {
    // A port nothing listens on.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let mut config = OidcConfig::new(&issuer, CLIENT_ID, ClientSecret::new(SECRET), REDIRECT_URI);
    config.allow_http = true;
    let err = OidcClient::discover(config).await.unwrap_err();
    assert!(
        matches!(
            err,
            OidcError::Http {
                what: "discovery",
                ..
            }
        ),
        "{err}"
    );
}
