//! The owner's web page at the HTTP level, on the real server: every step of
//! the add flow, edit and undo, what the store and `IsAuthorized` then say,
//! the audit log's `channel`, and the refusals: bad input, no key role, a
//! form without its CSRF token or from another origin, an edit that lost a
//! race, a double-submitted confirmation. Development mode (typed-in person).

use std::collections::HashMap;
use std::net::SocketAddr;

use tilgang::sidecar::WebSettings;
use tilgang::web::session::SessionLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::*;

/// An HTTP/1.1 answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn location(&self) -> &str {
        self.header("location")
            .unwrap_or_else(|| panic!("no location: {self:?}"))
    }

    /// The value of the hidden input `name` in the body.
    pub fn hidden(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let at = self
            .body
            .find(&marker)
            .unwrap_or_else(|| panic!("no {name} in {}", self.body));
        let rest = &self.body[at + marker.len()..];
        rest[..rest.find('"').unwrap()].to_string()
    }
}

/// A browser-like client: one cookie jar, `Origin` and `Sec-Fetch-Site` on
/// its posts.
pub struct Browser {
    pub addr: SocketAddr,
    pub cookies: HashMap<String, String>,
    pub extra: Vec<(String, String)>,
}

impl Browser {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            cookies: HashMap::new(),
            extra: Vec::new(),
        }
    }

    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut s = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        if !self.cookies.is_empty() {
            let c: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            req.push_str(&format!("Cookie: {}\r\n", c.join("; ")));
        }
        for (k, v) in headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain(self.extra.clone())
        {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        req.push_str("\r\n");
        if let Some(b) = body {
            req.push_str(b);
        }
        s.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status: u16 = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect();
        for (_, v) in headers.iter().filter(|(k, _)| k == "set-cookie") {
            let (kv, _) = v.split_once(';').unwrap_or((v, ""));
            let (k, val) = kv.split_once('=').unwrap();
            if v.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), val.to_string());
            }
        }
        // Chunked bodies: good enough to search in.
        Answer {
            status,
            headers,
            body: body.to_string(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Answer {
        self.request("GET", path, None, &[]).await
    }

    /// A same-origin form post, as a browser sends it.
    pub async fn post(&mut self, path: &str, body: &str) -> Answer {
        let origin = format!("http://{}", self.addr);
        self.request(
            "POST",
            path,
            Some(body),
            &[("Origin", &origin), ("Sec-Fetch-Site", "same-origin")],
        )
        .await
    }

    /// Log in (development mode) as `person`; the CSRF token of the session.
    pub async fn log_in(&mut self, person: &str) -> String {
        let page = self.get("/login").await;
        assert_eq!(page.status, 200, "{page:?}");
        let csrf = page.hidden("csrf");
        let r = self
            .post("/login", &format!("csrf={csrf}&person={person}"))
            .await;
        assert_eq!(r.status, 303, "{r:?}");
        let overview = self.get("/overview").await;
        overview.hidden("csrf")
    }
}

/// The page in development mode on a free loopback port.
pub fn dev_web() -> WebSettings {
    WebSettings {
        listen: "127.0.0.1:0".into(),
        public_url: None,
        sessions: SessionLimits::default(),
        oidc: None,
        behind_proxy: false,
        organizations: None,
        max_connections: 512,
        tls: None,
    }
}

pub async fn web_server() -> TestServer {
    TestServer::start_in(Workdir::new(), |c| {
        c.web = Some(dev_web());
    })
    .await
}

fn audit_lines(s: &TestServer) -> Vec<serde_json::Value> {
    std::fs::read_to_string(s.work.data().join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_general_manager_delegates_edits_and_undoes_in_the_browser() {
    let s = web_server().await;
    let mut b = Browser::new(s.sidecar.web_addr.unwrap());
    // Not logged in: the login page, nothing else.
    let r = b.get("/overview").await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("Fødselsnummer"), "{}", r.body);
    let csrf = b.log_in(DAGL).await;

    let r = b.get("/overview").await;
    assert_eq!(r.status, 200);
    assert!(
        r.body
            .contains("Tilgang til programmeringsgrensesnitt – API")
    );
    assert!(
        r.body.contains("810 418 672"),
        "the fixture's supplier, spaced"
    );
    assert!(r.body.contains("Utviklingsmodus"), "the development banner");

    // Add: org number with spaces → rights → confirm (twice) → one receipt.
    let r = b
        .post("/add", &format!("csrf={csrf}&org=889+640+782"))
        .await;
    assert_eq!((r.status, r.location()), (303, "/add/rights"));
    let r = b.get("/add/rights").await;
    assert!(r.body.contains("Appinstanser (lesetilgang)") && r.body.contains("instances.read"));
    let r = b
        .post("/add/rights", &format!("csrf={csrf}&right=instances-read"))
        .await;
    assert_eq!((r.status, r.location()), (303, "/add/confirm"));
    let r = b.get("/add/confirm").await;
    assert!(r.body.contains("889 640 782"), "{}", r.body);
    let nonce = r.hidden("nonce");
    let form = format!("csrf={csrf}&nonce={nonce}");
    let mut tab1 = Browser {
        addr: b.addr,
        cookies: b.cookies.clone(),
        extra: vec![],
    };
    let mut tab2 = Browser {
        addr: b.addr,
        cookies: b.cookies.clone(),
        extra: vec![],
    };
    let (first, second) = tokio::join!(
        tab1.post("/add/confirm", &form),
        tab2.post("/add/confirm", &form),
    );
    assert_eq!(first.status, 303, "{first:?}");
    assert_eq!(
        first.location(),
        second.location(),
        "a double submit is one confirmation"
    );
    let receipt = b.get(first.location()).await;
    assert_eq!(receipt.status, 200);
    assert!(
        receipt.body.contains("Tilgangen er gitt"),
        "{}",
        receipt.body
    );
    assert!(s.decide(NEW_SUPPLIER, OWNER, READ).await.allowed);
    assert!(!s.decide(NEW_SUPPLIER, OWNER, WRITE).await.allowed);
    let grants: Vec<_> = audit_lines(&s)
        .into_iter()
        .filter(|l| l["supplier"] == NEW_SUPPLIER && l["change"] == "grant")
        .collect();
    assert_eq!(
        grants.len(),
        1,
        "one delegation, one audit line: {grants:?}"
    );
    assert_eq!(grants[0]["channel"], "web");
    assert_eq!(grants[0]["actor"], DAGL);
    assert_eq!(grants[0]["actor_auth"], "unverified");

    // Edit: untick everything → removed, with an undo that works.
    let r = b.get(&format!("/edit/{NEW_SUPPLIER}")).await;
    let version = r.hidden("version");
    let r = b
        .post(
            &format!("/edit/{NEW_SUPPLIER}"),
            &format!("csrf={csrf}&version={version}"),
        )
        .await;
    assert_eq!(r.status, 303, "{r:?}");
    let receipt_path = r.location().to_string();
    let receipt = b.get(&receipt_path).await;
    assert!(
        receipt.body.contains("Tilgangene er fjernet"),
        "{}",
        receipt.body
    );
    assert!(
        !s.decide(NEW_SUPPLIER, OWNER, READ).await.allowed,
        "revoked: the next request is denied"
    );
    let key = receipt_path.trim_start_matches("/receipt/");
    let r = b
        .post(&format!("/undo/{key}"), &format!("csrf={csrf}"))
        .await;
    assert_eq!(r.status, 303, "{r:?}");
    assert!(
        b.get(r.location())
            .await
            .body
            .contains("Endringen er angret")
    );
    assert!(s.decide(NEW_SUPPLIER, OWNER, READ).await.allowed, "undone");
    // The overview shows what remains; then remove it again.
    let r = b.get("/overview").await;
    assert!(r.body.contains("889 640 782"));
    let version = b
        .get(&format!("/edit/{NEW_SUPPLIER}"))
        .await
        .hidden("version");
    let r = b
        .post(
            &format!("/edit/{NEW_SUPPLIER}"),
            &format!("csrf={csrf}&version={version}"),
        )
        .await;
    assert_eq!(r.status, 303);
    assert!(!s.decide(NEW_SUPPLIER, OWNER, READ).await.allowed);
    let changes: Vec<String> = audit_lines(&s)
        .iter()
        .filter(|l| l["supplier"] == NEW_SUPPLIER)
        .map(|l| l["change"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(changes, ["grant", "revoke-last", "undo", "revoke-last"]);

    // Log out: the session is gone.
    let r = b.post("/logout", &format!("csrf={csrf}")).await;
    assert_eq!(r.status, 303);
    assert_eq!(b.get("/overview").await.status, 401);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_told_on_the_page_and_nothing_is_saved() {
    let s = web_server().await;
    let mut b = Browser::new(s.sidecar.web_addr.unwrap());
    let csrf = b.log_in(DAGL).await;
    for (typed, says) in [
        ("", "Skriv inn organisasjonsnummeret"),
        ("12345", "må være 9 siffer"),
        ("889640783", "ikke gyldig"),
        ("991+825+827", "deres eget organisasjonsnummer"),
    ] {
        let r = b.post("/add", &format!("csrf={csrf}&org={typed}")).await;
        assert_eq!(r.status, 422, "{typed}");
        assert!(r.body.contains(says), "{typed}: {}", r.body);
        assert!(r.body.contains("aria-invalid=\"true\""), "{typed}");
        assert!(r.body.contains("class=\"error-summary\""), "{typed}");
        assert!(
            r.body.contains("href=\"#org\""),
            "the summary links to the field"
        );
    }
    // Nothing chosen.
    let r = b.post("/add", &format!("csrf={csrf}&org=889640782")).await;
    assert_eq!(r.status, 303);
    let r = b.post("/add/rights", &format!("csrf={csrf}")).await;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("Velg minst én tilgang"));
    assert!(!s.decide(NEW_SUPPLIER, OWNER, READ).await.allowed);
    assert!(
        audit_lines(&s)
            .iter()
            .all(|l| l["supplier"] != NEW_SUPPLIER)
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_and_cross_site_posts_are_refused() {
    let s = web_server().await;
    let addr = s.sidecar.web_addr.unwrap();
    let mut b = Browser::new(addr);
    let csrf = b.log_in(DAGL).await;
    b.post("/add", &format!("csrf={csrf}&org=889640782")).await;
    b.post("/add/rights", &format!("csrf={csrf}&right=instances-full"))
        .await;
    let nonce = b.get("/add/confirm").await.hidden("nonce");
    // No token, a wrong token, another origin, a cross-site fetch.
    let forged = [
        (format!("nonce={nonce}"), vec![]),
        (format!("csrf={}&nonce={nonce}", "0".repeat(64)), vec![]),
        (
            format!("csrf={csrf}&nonce={nonce}"),
            vec![("Origin", "http://evil.example")],
        ),
        (
            format!("csrf={csrf}&nonce={nonce}"),
            vec![("Sec-Fetch-Site", "cross-site")],
        ),
    ];
    for (body, headers) in forged {
        let r = b
            .request("POST", "/add/confirm", Some(&body), &headers)
            .await;
        assert_eq!(r.status, 403, "{body} {headers:?}");
    }
    assert!(!s.decide(NEW_SUPPLIER, OWNER, WRITE).await.allowed);
    // Nothing changes on GET either.
    assert_eq!(b.get("/add/confirm").await.status, 200);
    assert!(!s.decide(NEW_SUPPLIER, OWNER, WRITE).await.allowed);
    // Another browser (no session) posting: the login page.
    let mut stranger = Browser::new(addr);
    let r = stranger
        .post("/add/confirm", &format!("csrf={csrf}&nonce={nonce}"))
        .await;
    assert_eq!(r.status, 401);
    assert!(!s.decide(NEW_SUPPLIER, OWNER, WRITE).await.allowed);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_without_a_key_role_is_told_who_can_help() {
    let s = web_server().await;
    let mut b = Browser::new(s.sidecar.web_addr.unwrap());
    b.log_in("05057512345").await;
    let r = b.get("/overview").await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("Daglig leder kan hjelpe"), "{}", r.body);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edit_that_lost_a_race_says_so_and_writes_nothing() {
    let s = web_server().await;
    let mut b = Browser::new(s.sidecar.web_addr.unwrap());
    let csrf = b.log_in(DAGL).await;
    let version = b
        .get(&format!("/edit/{FULL_SUPPLIER}"))
        .await
        .hidden("version");
    // Someone else changes the delegation meanwhile (the gRPC admin API).
    let mut admin = s.admin().await;
    admin
        .revoke(tilgang::proto::RevokeRequest {
            owner: OWNER.into(),
            supplier: FULL_SUPPLIER.into(),
            rights: vec!["instances-full".into()],
            actor: DAGL.into(),
        })
        .await
        .unwrap();
    admin
        .delegate(tilgang::proto::DelegateRequest {
            owner: OWNER.into(),
            supplier: FULL_SUPPLIER.into(),
            rights: vec!["instances-read".into()],
            actor: DAGL.into(),
        })
        .await
        .unwrap();
    let r = b
        .post(
            &format!("/edit/{FULL_SUPPLIER}"),
            &format!("csrf={csrf}&version={version}"),
        )
        .await;
    assert_eq!(r.status, 409, "{r:?}");
    assert!(r.body.contains("Noen andre har endret"), "{}", r.body);
    assert!(
        s.decide(FULL_SUPPLIER, OWNER, READ).await.allowed,
        "nothing was overwritten"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn headers_cookies_languages_and_assets() {
    let s = web_server().await;
    let mut b = Browser::new(s.sidecar.web_addr.unwrap());
    let r = b.get("/login").await;
    let csp = r.header("content-security-policy").unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("referrer-policy"), Some("same-origin"));
    let cookie = r.header("set-cookie").unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Max-Age") && !cookie.contains("Expires"),
        "{cookie}"
    );
    // Loopback development mode: a plain name, not Secure.
    assert!(cookie.starts_with("tilgang="), "{cookie}");
    // A new session id at login.
    let before = b.cookies.clone();
    b.log_in(DAGL).await;
    assert_ne!(before, b.cookies, "the session id changes at login");

    let en = b.get("/overview?lang=en").await;
    assert!(en.body.contains("lang=\"en\""));
    assert!(en.body.contains("Add supplier"), "{}", en.body);
    let nn = b.get("/overview?lang=nn").await;
    assert!(nn.body.contains("Rediger tilgangar"));
    let sheet = en.body.split("rel=\"stylesheet\" href=\"").nth(1).unwrap();
    let sheet = &sheet[..sheet.find('"').unwrap()];
    let css = b.get(sheet).await;
    assert_eq!(css.status, 200);
    assert!(css.header("cache-control").unwrap().contains("immutable"));
    assert!(css.header("content-type").unwrap().starts_with("text/css"));
    assert_eq!(b.get("/nope").await.status, 404);
    s.stop().await;
}

/// 120 suppliers: pages of 50 in number order, the next page resumes after
/// the last, and a number search (with spaces) finds exactly its prefix.
#[tokio::test(flavor = "multi_thread")]
async fn the_overview_pages_and_searches_by_number() {
    let work = Workdir::new();
    let suppliers = org_numbers(31_000_000, 120);
    write_owner(&work, OWNER, &suppliers, "instances-read");
    let s = TestServer::start_in(work, |c| {
        c.web = Some(dev_web());
    })
    .await;
    let mut b = Browser::new(s.sidecar.web_addr.unwrap());
    b.log_in(DAGL).await;
    let shown = |body: &str| -> Vec<String> {
        suppliers
            .iter()
            .filter(|o| body.contains(&format!("/edit/{o}\"")))
            .cloned()
            .collect()
    };
    let mut seen = Vec::new();
    let mut path = "/overview".to_string();
    for expected in [50, 50, 20] {
        let r = b.get(&path).await;
        assert_eq!(r.status, 200);
        let page = shown(&r.body);
        assert_eq!(page.len(), expected, "{path}");
        seen.extend(page);
        match r.body.split("&amp;after=").nth(1) {
            Some(rest) => path = format!("/overview?q=&after={}", &rest[..9]),
            None => {
                assert_eq!(expected, 20, "no next page only at the end");
                break;
            }
        }
    }
    let mut all = suppliers.clone();
    all.sort();
    assert_eq!(seen, all, "every supplier once, in order");

    // A prefix: exactly the suppliers it starts.
    let prefix = &suppliers[60][..7];
    let typed = format!("{} {} {}", &prefix[..3], &prefix[3..6], &prefix[6..]);
    let r = b
        .get(&format!("/overview?q={}", typed.replace(' ', "+")))
        .await;
    let want: Vec<String> = all
        .iter()
        .filter(|o| o.starts_with(prefix))
        .cloned()
        .collect();
    assert!(!want.is_empty() && want.len() < 50, "{want:?}");
    assert_eq!(shown(&r.body), want);
    // A name without a register matches nothing, and says so.
    let r = b.get("/overview?q=Acme").await;
    assert!(shown(&r.body).is_empty());
    assert!(r.body.contains("Ingen leverandør passer"), "{}", r.body);
    s.stop().await;
}

/// `--web-tls-cert`: the page over TLS (HTTP/1.1 or HTTP/2 by ALPN), its
/// session cookie then `__Host-` and `Secure`.
#[tokio::test(flavor = "multi_thread")]
async fn the_page_over_tls_has_a_host_only_secure_cookie() {
    use rustls_pki_types::pem::PemObject;
    let ca = crate::pki::Ca::new("web test CA");
    let work = Workdir::new();
    let files = crate::pki::write(work.dir.path(), "web", &ca.server(), None);
    let s = TestServer::start_in(work, |c| {
        c.web = Some(WebSettings {
            tls: Some(files),
            ..dev_web()
        });
    })
    .await;
    let addr = s.sidecar.web_addr.unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca.pem().as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    tls.write_all(b"GET /login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let cookie = text
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap();
    assert!(
        cookie.contains("__Host-tilgang=") && cookie.contains("Secure"),
        "{cookie}"
    );
    // Plaintext to the TLS listener gets no page.
    let mut s2 = tokio::net::TcpStream::connect(addr).await.unwrap();
    s2.write_all(b"GET /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut back = Vec::new();
    let _ = s2.read_to_end(&mut back).await;
    assert!(!String::from_utf8_lossy(&back).contains("200 OK"));
    s.stop().await;
}

/// With `--organizations`: names on the pages, a number the register does
/// not have or has deleted is refused, and a name search finds a supplier.
#[tokio::test(flavor = "multi_thread")]
async fn names_come_from_the_entity_register() {
    let work = Workdir::new();
    let register = work.dir.path().join("enheter.json.gz");
    let entries = format!(
        r#"[{{"organisasjonsnummer":"{OWNER}","navn":"TJENESTEEIER AS","organisasjonsform":{{"kode":"AS"}}}},
            {{"organisasjonsnummer":"{FULL_SUPPLIER}","navn":"FULL LEVERANDØR AS"}},
            {{"organisasjonsnummer":"{READ_SUPPLIER}","navn":"LESER OG SØNN AS"}},
            {{"organisasjonsnummer":"{NEW_SUPPLIER}","navn":"NY PARTNER AS"}},
            {{"organisasjonsnummer":"983887457","navn":"NEDLAGT AS","slettedato":"2020-01-01"}}]"#
    );
    std::fs::write(&register, crate::register::gzip(&entries)).unwrap();
    let s = TestServer::start_in(work, |c| {
        c.web = Some(WebSettings {
            organizations: Some(register),
            ..dev_web()
        });
    })
    .await;
    let mut b = Browser::new(s.sidecar.web_addr.unwrap());
    let csrf = b.log_in(DAGL).await;
    let r = b.get("/overview").await;
    assert!(r.body.contains("FULL LEVERANDØR AS") && r.body.contains("LESER OG SØNN AS"));
    assert!(
        r.body.contains("TJENESTEEIER AS"),
        "the acting organisation by name"
    );
    // A name search.
    let r = b.get("/overview?q=s%C3%B8nn").await;
    assert!(
        r.body.contains(&format!("/edit/{READ_SUPPLIER}\"")),
        "{}",
        r.body
    );
    assert!(!r.body.contains(&format!("/edit/{FULL_SUPPLIER}\"")));
    // Unknown (valid, but not in the register) and deleted numbers.
    for (org, says) in [
        ("889640790", "finner ingen organisasjon"),
        ("983887457", "slettet"),
    ] {
        let r = b.post("/add", &format!("csrf={csrf}&org={org}")).await;
        assert_eq!(r.status, 422, "{org}");
        assert!(r.body.contains(says), "{org}: {}", r.body);
    }
    // A known one: its name on the next step.
    let r = b
        .post("/add", &format!("csrf={csrf}&org={NEW_SUPPLIER}"))
        .await;
    assert_eq!(r.status, 303);
    assert!(
        b.get("/add/rights")
            .await
            .body
            .contains("NY PARTNER AS (889 640 782)")
    );
    s.stop().await;
}

/// A session that ends mid-flow: the next step says so on the login page
/// (and remembers the step), it does not just forget the person.
#[tokio::test(flavor = "multi_thread")]
async fn an_expired_session_mid_flow_says_so() {
    let s = TestServer::start_in(Workdir::new(), |c| {
        c.web = Some(WebSettings {
            sessions: SessionLimits {
                max_sessions: 100,
                idle: std::time::Duration::from_secs(1800),
                absolute: std::time::Duration::from_secs(1),
            },
            ..dev_web()
        });
    })
    .await;
    let mut b = Browser::new(s.sidecar.web_addr.unwrap());
    let csrf = b.log_in(DAGL).await;
    let r = b.post("/add", &format!("csrf={csrf}&org=889640782")).await;
    assert_eq!(r.status, 303);
    let cookies = b.cookies.clone();
    eventually("the session to end and the step to say so", || {
        let cookies = cookies.clone();
        let addr = b.addr;
        async move {
            // The same old cookie each time (a new session is not kept).
            let mut tab = Browser {
                addr,
                cookies,
                extra: vec![],
            };
            let r = tab.get("/add/rights").await;
            r.status == 401 && r.body.contains("Økten din er utløpt")
        }
    })
    .await;
    // A form posted on the ended session: the same, and nothing written.
    let r = b
        .post("/add/rights", &format!("csrf={csrf}&right=instances-read"))
        .await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("Økten din er utløpt"), "{}", r.body);
    assert!(!s.decide(NEW_SUPPLIER, OWNER, READ).await.allowed);
    s.stop().await;
}

/// An undo after the window: told it is too late, and nothing changes.
#[tokio::test(flavor = "multi_thread")]
async fn an_undo_too_late_is_told_so() {
    let s = TestServer::start_in(Workdir::new(), |c| {
        c.undo_window = std::time::Duration::ZERO;
        c.web = Some(dev_web());
    })
    .await;
    let mut b = Browser::new(s.sidecar.web_addr.unwrap());
    let csrf = b.log_in(DAGL).await;
    let version = b
        .get(&format!("/edit/{READ_SUPPLIER}"))
        .await
        .hidden("version");
    let r = b
        .post(
            &format!("/edit/{READ_SUPPLIER}"),
            &format!("csrf={csrf}&version={version}"),
        )
        .await;
    assert_eq!(r.status, 303);
    let key = r.location().trim_start_matches("/receipt/").to_string();
    let r = b
        .post(&format!("/undo/{key}"), &format!("csrf={csrf}"))
        .await;
    assert_eq!(r.status, 409, "{r:?}");
    assert!(r.body.contains("for sent å angre"), "{}", r.body);
    assert!(!s.decide(READ_SUPPLIER, OWNER, READ).await.allowed);
    s.stop().await;
}

/// A person with key roles for two organisations chooses which to act for,
/// and may not choose one they have no role for.
#[tokio::test(flavor = "multi_thread")]
async fn a_person_with_several_organisations_chooses_one() {
    let work = Workdir::new();
    std::fs::write(
        work.data().join("roles.json"),
        format!(
            r#"[{{"org":"{OWNER}","person":"{DAGL}","role":"DAGL"}},
                {{"org":"{OTHER_OWNER}","person":"{DAGL}","role":"DAGL"}}]"#
        ),
    )
    .unwrap();
    let s = TestServer::start_in(work, |c| {
        c.web = Some(dev_web());
    })
    .await;
    let mut b = Browser::new(s.sidecar.web_addr.unwrap());
    let page = b.get("/login").await;
    let csrf = page.hidden("csrf");
    b.post("/login", &format!("csrf={csrf}&person={DAGL}"))
        .await;
    let r = b.get("/overview").await;
    assert_eq!((r.status, r.location()), (303, "/org"));
    let choose = b.get("/org").await;
    assert!(choose.body.contains("Velg organisasjon"));
    assert!(choose.body.contains("991 825 827") && choose.body.contains("983 887 457"));
    let csrf = choose.hidden("csrf");
    // Not one of theirs: refused.
    let r = b
        .post("/org", &format!("csrf={csrf}&org={NEW_SUPPLIER}"))
        .await;
    assert_eq!(r.status, 403);
    let r = b
        .post("/org", &format!("csrf={csrf}&org={OTHER_OWNER}"))
        .await;
    assert_eq!((r.status, r.location()), (303, "/overview"));
    let r = b.get("/overview").await;
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains("på vegne av 983\u{a0}887\u{a0}457"),
        "{}",
        r.body
    );
    assert!(r.body.contains("Bytt organisasjon"));
    s.stop().await;
}
