//! The owner's page with a real OpenID provider (`tests/web/oidc-provider`,
//! npm `oidc-provider`): "Logg inn med ID-porten" → the provider's login →
//! the callback → a verified person on a new session, whose writes are on
//! record as `actor_auth: login`; a level too low or a callback without its
//! login under way is refused; logout ends the session at the provider too.

use std::net::SocketAddr;

use tilgang::sidecar::{WebOidc, WebSettings};
use tilgang::web::session::SessionLimits;

use crate::oidc::{self, Provider};
use crate::util::*;
use crate::web::Browser;

/// A free loopback port for the page: the provider must know the callback
/// URL before the page starts.
fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

struct Setup {
    server: TestServer,
    provider: Provider,
    page: SocketAddr,
}

async fn setup() -> Option<Setup> {
    let page = free_addr();
    let public = format!("http://{page}");
    let provider = Provider::start_for(
        &format!("{public}/auth/callback"),
        &format!("{public}/login"),
        &[],
    )
    .await?;
    let work = Workdir::new();
    let secret = work.dir.path().join("client-secret");
    std::fs::write(&secret, format!("{}\n", oidc::SECRET)).unwrap();
    let issuer = provider.issuer.clone();
    let server = TestServer::start_in(work, |c| {
        c.web = Some(WebSettings {
            listen: page.to_string(),
            public_url: None,
            sessions: SessionLimits::default(),
            oidc: Some(WebOidc {
                issuer,
                client_id: oidc::CLIENT_ID.into(),
                client_secret_file: secret,
                acr: "idporten-loa-substantial".into(),
                person_claim: "pid".into(),
            }),
            behind_proxy: false,
            organizations: None,
            max_connections: 512,
            tls: None,
        });
    })
    .await;
    Some(Setup {
        server,
        provider,
        page,
    })
}

/// Log in at the page as the provider's `account`: the page's answer to
/// the callback.
async fn log_in(b: &mut Browser, account: &str) -> crate::web::Answer {
    let start = b.get("/auth/login").await;
    assert_eq!(start.status, 303, "{start:?}");
    let callback = format!("http://{}/auth/callback", b.addr);
    let mut at_provider = oidc::Browser::default();
    let query =
        oidc::follow_login(&mut at_provider, start.location(), &callback, Some(account)).await;
    b.get(&format!("/auth/callback?{query}")).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_general_manager_logs_in_with_the_provider_and_delegates() {
    let Some(Setup {
        server: s,
        provider,
        page,
    }) = setup().await
    else {
        return;
    };
    let mut b = Browser::new(page);
    let login = b.get("/login").await;
    assert!(login.body.contains("/auth/login") && login.body.contains("ID-porten"));
    assert!(
        !login.body.contains("Fødselsnummer"),
        "no typed-in login with a provider"
    );
    assert!(
        !login.body.contains("Utviklingsmodus"),
        "no development banner"
    );
    let csp = login.header("content-security-policy").unwrap();
    assert!(
        csp.contains(&format!("form-action 'self' {}", provider.issuer)),
        "{csp}"
    );
    assert!(
        !login.body.contains("name=\"person\""),
        "no typed-in login form"
    );

    let before = b.cookies.clone();
    let r = log_in(&mut b, "dagl").await;
    assert_eq!((r.status, r.location()), (303, "/overview"), "{r:?}");
    assert_ne!(b.cookies, before, "a new session id at login");
    let overview = b.get("/overview").await;
    assert_eq!(overview.status, 200, "{overview:?}");
    let csrf = overview.hidden("csrf");

    b.post("/add", &format!("csrf={csrf}&org=889640782")).await;
    b.post("/add/rights", &format!("csrf={csrf}&right=instances-read"))
        .await;
    let nonce = b.get("/add/confirm").await.hidden("nonce");
    let r = b
        .post("/add/confirm", &format!("csrf={csrf}&nonce={nonce}"))
        .await;
    assert_eq!(r.status, 303, "{r:?}");
    assert!(s.decide(NEW_SUPPLIER, OWNER, READ).await.allowed);
    let audit = std::fs::read_to_string(s.work.data().join("audit.jsonl")).unwrap();
    let line: serde_json::Value = serde_json::from_str(audit.lines().last().unwrap()).unwrap();
    assert_eq!(line["actor"], DAGL);
    assert_eq!(line["actor_auth"], "login");
    assert_eq!(line["channel"], "web");

    // Logout ends the session here and sends the browser to the provider.
    let r = b.post("/logout", &format!("csrf={csrf}")).await;
    assert_eq!(r.status, 303);
    assert!(
        r.location().starts_with(&provider.issuer),
        "{}",
        r.location()
    );
    assert_eq!(b.get("/overview").await.status, 401);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn too_low_a_level_and_a_callback_without_its_login_are_refused() {
    let Some(Setup {
        server: s,
        page,
        provider: _provider,
    }) = setup().await
    else {
        return;
    };
    let mut b = Browser::new(page);
    let first = b.get("/auth/login").await;
    assert!(
        !first.location().contains("prompt=login"),
        "{}",
        first.location()
    );
    // `lav` logs in at idporten-loa-low: not enough.
    let r = log_in(&mut b, "lav").await;
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.body.contains("Innloggingen mislyktes"), "{}", r.body);
    assert_eq!(b.get("/overview").await.status, 401);
    // Trying again asks the provider to authenticate anew, not to reuse
    // the session that gave the low level.
    let again = b.get("/auth/login").await;
    assert!(
        again.location().contains("prompt=login"),
        "{}",
        again.location()
    );

    // A callback replayed into another browser's session: no login under
    // way there, so nothing is logged in.
    let start = b.get("/auth/login").await;
    let callback = format!("http://{page}/auth/callback");
    let mut at_provider = oidc::Browser::default();
    let query =
        oidc::follow_login(&mut at_provider, start.location(), &callback, Some("dagl")).await;
    let mut other = Browser::new(page);
    let r = other.get(&format!("/auth/callback?{query}")).await;
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(other.get("/overview").await.status, 401);
    // A forged state in the right session is refused too.
    let forged = query.replace("state=", "state=x");
    let r = b.get(&format!("/auth/callback?{forged}")).await;
    assert_eq!(r.status, 401, "{r:?}");
    // `hoy` (idporten-loa-high) satisfies substantial.
    let r = log_in(&mut b, "hoy").await;
    assert_eq!(r.status, 303, "{r:?}");
    s.stop().await;
}
